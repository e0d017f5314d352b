"""The seed recipe: fine-tune on MRPC, then check quality and the shape of the run."""

from __future__ import annotations

import pytest

MAJORITY_CLASS_ACCURACY = 0.684  # always "paraphrase" on MRPC dev


@pytest.mark.finetune
def test_beats_the_majority_class(finetune_result):
    assert finetune_result.metrics["accuracy"] > MAJORITY_CLASS_ACCURACY
    assert 0.05 < finetune_result.metrics["positive_rate"] < 0.95, "the model predicts one class only"


@pytest.mark.finetune
def test_one_evaluation_per_epoch(finetune_result):
    epochs = finetune_result.recipe.training_args["num_train_epochs"]
    assert [row["epoch"] for row in finetune_result.history] == [float(e) for e in range(1, int(epochs) + 1)]
    assert finetune_result.history[-1]["training_loss"] < finetune_result.history[0]["training_loss"]


@pytest.mark.finetune
def test_trainer_is_the_seed_setup(trainer, finetune_result):
    assert trainer.args.learning_rate == 5e-5
    assert trainer.args.per_device_train_batch_size == 8
    assert type(trainer.data_collator).__name__ == "DataCollatorWithPadding"
    assert len(finetune_result.predictions.label_ids) == len(trainer.eval_dataset)
