"""Hooks a team adds around the recipe: an extra metric and a per-epoch table."""

from __future__ import annotations

import numpy as np


def pytest_finetune_metrics(recipe, logits, label_ids):
    """Share of pairs predicted "paraphrase": 1.0 means the model collapsed to one class."""
    return {"positive_rate": float(np.mean(np.argmax(logits, axis=-1) == 1))}


def pytest_finetune_result(result):
    """Print the seed's per-epoch table (shown with -s, or in the report of a failing test)."""
    print(f"\n{result.recipe.describe()}: trained in {result.train_runtime:.0f} s")
    print(f"{'epoch':>6} {'train loss':>11} {'val loss':>9} {'accuracy':>9} {'f1':>7}")
    for row in result.history:
        training_loss = "no log" if row["training_loss"] is None else f"{row['training_loss']:.4f}"
        print(
            f"{row['epoch']:>6.2f} {training_loss:>11} {row['validation_loss']:>9.4f} "
            f"{row['accuracy']:>9.4f} {row['f1']:>7.4f}"
        )
