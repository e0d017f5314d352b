"""Calibration: the recipe fine-tuned with several seeds, to measure how far a run of the
same quality may land from the baseline (``--snapshot-update --finetune-calibrate N``).

Seed ``s`` is the recipe with ``seed=s``, built the way the fixtures build a test's own
run: a fresh model (its new classification head drawn with ``s``), and a trainer of the
test's trainer's class on the same datasets, collator, metrics and arguments but the seed
(data order and dropout follow it).

Under pytest-xdist the test that calibrates has N - 1 companions, :class:`CalibrationSeed` items that
other workers run: each fine-tunes one more seed into the result cache, each seed an entry of its own
under its own lock, and the test takes the seeds nobody else is fine-tuning, then reads the others' entries.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

import pytest

from .errors import FinetuneError
from .pytest_compat import add_collected, fixture_info

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


class SeedRunOver(Exception):
    """Ends the setup of a :class:`CalibrationSeed` once its seed is in the result cache (or another process is
    fine-tuning it, or the result cannot be cached): the fixtures the test sets up after ``finetune_result``
    would need a result."""


class CalibrationSeed(pytest.Function):
    """Seed run ``run`` (1 to N - 1; run 0 is the test's own) of a test's calibration, as pytest-xdist's workers
    run it: a copy of the test with its fixtures and markers, set up as the test is up to ``finetune_result``,
    which fine-tunes that seed into the result cache (see :func:`~pytest_finetune.finetuning.result_for`); its
    body does not run, and it has no baseline."""

    run: int
    count: int

    def setup(self) -> None:
        """The test's fixtures in the test's order, up to ``finetune_result``, which ends the setup."""
        try:
            super().setup()
        except SeedRunOver:
            pass

    def runtest(self) -> None:
        """Nothing: the seed was fine-tuned while setting up."""


def seed_item_seed(item: pytest.Item, recipe_seed: int) -> int | None:
    """The seed that ``item`` fine-tunes where it is a :class:`CalibrationSeed` of a test whose recipe has the seed
    ``recipe_seed``; ``None`` for any other item."""
    return calibration_seeds(recipe_seed, item.count)[item.run] if isinstance(item, CalibrationSeed) else None


def with_seed_items(items: list[pytest.Item], count: int, training: Callable[[pytest.Item], Hashable | None]) -> None:
    """Add ``count - 1`` :class:`CalibrationSeed` items after each test that calibrates a training of its own
    (``training``: what decides the test's fine-tune, ``None`` for a test that does not fine-tune): tests that
    share one, as far as collection tells, share its seed items."""
    seen: set[Hashable] = set()
    ordered: list[pytest.Item] = []
    for item in items:
        ordered.append(item)
        key = training(item)
        if isinstance(item, pytest.Function) and key is not None and key not in seen:
            seen.add(key)
            seeds = [_seed_item(item, run, count) for run in range(1, count)]
            add_collected(item.config, seeds)
            ordered.extend(seeds)
    items[:] = ordered


def _seed_item(test: pytest.Function, run: int, count: int) -> CalibrationSeed:
    """Seed run ``run`` of ``count`` of ``test``'s calibration (``test_x[calibration-2-of-5]``), with the test's
    fixtures, parameters and markers (outside the test's recipe group: another worker may run it, see
    :func:`~pytest_finetune.scheduling.send_recipe_groups`)."""
    suffix = f"calibration-{run + 1}-of-{count}"
    name = f"{test.name[:-1]}-{suffix}]" if test.name.endswith("]") else f"{test.name}[{suffix}]"
    item = CalibrationSeed.from_parent(test.parent, name=name, callobj=test.obj, fixtureinfo=fixture_info(test))
    if hasattr(test, "callspec"):  # given after: pytest would make the node id of the test's parameters alone
        item.callspec = test.callspec
    item.originalname = test.originalname
    item.run, item.count = run, count
    return item
