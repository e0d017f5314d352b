"""The seed recipe on MRPC, gated by the baselines in baselines/examples/mrpc/."""

from __future__ import annotations

import pytest


@pytest.mark.finetune
def test_seed_recipe_holds_its_baseline():
    """The marker alone: fine-tune, then compare accuracy and F1 with the baseline."""


@pytest.mark.finetune
def test_trainer_and_result(trainer, finetune_result):
    """The same fine-tune (shared, not repeated), checked through the trainer and the result."""
    assert trainer.args.learning_rate == 5e-5
    assert trainer.args.per_device_train_batch_size == 8
    assert type(trainer.data_collator).__name__ == "DataCollatorWithPadding"
    assert len(finetune_result.predictions.label_ids) == len(trainer.eval_dataset)

    epochs = finetune_result.recipe.training_args["num_train_epochs"]
    assert [row["epoch"] for row in finetune_result.history] == [float(e) for e in range(1, int(epochs) + 1)]
