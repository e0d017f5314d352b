"""Calibration: the recipe fine-tuned with several seeds, to measure how far a run of the
same quality may land from the baseline (``--snapshot-update --finetune-calibrate N``).

Seed ``s`` is the recipe with ``seed=s``, built the way the fixtures build a test's own
run: a fresh model (its new classification head drawn with ``s``), and a trainer of the
test's trainer's class on the same datasets, collator, metrics and arguments but the seed
(data order and dropout follow it).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from .errors import FinetuneError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, Trainer

#: Fewer than two seeds give no spread.
MIN_SEEDS = 2
#: numpy and ``transformers.set_seed`` take seeds from 0 to ``SEEDS - 1``: a calibration has at most that many.
SEEDS = 2**32


def check_seed_count(value: str) -> int:
    """``--finetune-calibrate``'s value: an integer from :data:`MIN_SEEDS` to :data:`SEEDS`."""
    try:
        count = int(value)
    except ValueError:  # also an integer of 4300+ digits
        count = 0
    if count < MIN_SEEDS:
        raise FinetuneError(
            f"--finetune-calibrate {value}: give the number of seeds to train, {MIN_SEEDS} or more "
            "(5 is a fair start: a standard deviation from fewer seeds is mostly noise)"
        )
    if count > SEEDS:
        raise FinetuneError(
            f"--finetune-calibrate {value}: give at most {SEEDS} seeds (2**32, all there are: more would repeat "
            "some), and in practice few: each seed is one more fine-tune, and 5 is a fair start"
        )
    return count


def calibration_seeds(seed: int, count: int) -> list[int]:
    """The recipe's own seed first, then the next ``count - 1`` integers, counting on from 0
    past the last seed numpy takes (``2**32 - 1``, then 0, 1, ...): every recipe seed can be
    calibrated, and the seeds stay distinct (``count`` is at most :data:`SEEDS`, :func:`check_seed_count`)."""
    return [(seed + offset) % SEEDS for offset in range(count)]


def reseeded_trainer(trainer: Trainer, seed: int, model: PreTrainedModel) -> Trainer:
    """A trainer like ``trainer`` (its class, datasets, collator, tokenizer, metrics and
    arguments) for ``model`` with the training seed ``seed``."""
    try:
        return type(trainer)(
            model=model,
            args=dataclasses.replace(trainer.args, seed=seed),
            train_dataset=trainer.train_dataset,
            eval_dataset=trainer.eval_dataset,
            data_collator=trainer.data_collator,
            processing_class=trainer.processing_class,
            compute_metrics=trainer.compute_metrics,
        )
    except TypeError as error:
        raise FinetuneError(
            f"--finetune-calibrate builds one trainer per seed as {type(trainer).__name__}(model=..., args=..., "
            f"train_dataset=..., eval_dataset=..., data_collator=..., processing_class=..., compute_metrics=...), "
            f"which its constructor refused ({error}); give it those keyword arguments"
        ) from None
