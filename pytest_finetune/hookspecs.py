"""Hook specifications: how a ``conftest.py`` or plugin joins a fine-tune.

Implement any of these in a ``conftest.py`` (it applies to the tests below it) or in a
plugin. Each is called with keyword arguments; take only the ones you need.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import numpy as np

    from .recipe import Recipe
    from .result import FinetuneResult


def pytest_finetune_adjust_recipe(recipe: Recipe, item: pytest.Item) -> Mapping[str, Any] | None:
    """Return keyword overrides for ``item``'s recipe, or ``None`` to leave it.

    Called once per test, when its recipe is first needed, with the recipe resolved
    from the ini file, environment, command line and marker. The keywords are those
    the ``finetune`` marker takes, checked the same way, and they take precedence over
    every other layer; when several implementations return overrides, the one
    registered last (the ``conftest.py`` closest to the test) wins.
    """


def pytest_finetune_adjust_training_args(recipe: Recipe, training_args: dict[str, Any]) -> None:
    """Change the keyword arguments of ``TrainingArguments`` in place before it is built.

    ``training_args`` holds the recipe's training arguments plus ``seed`` and
    ``output_dir``, and the ones the plugin chose for the machine (``use_cpu``, ``bf16`` or
    ``fp16``, the fused AdamW's ``optim``: see docs/performance.md), named as the
    installed transformers names them. What it sets that changes the computation (``max_steps``,
    ``weight_decay``, ...) is part of the result's recipe, as the recipe's own arguments are: adding,
    changing or removing it is a recipe change against a baseline. Settings of how a run is logged,
    saved or fed (``report_to``, ``dataloader_num_workers``: :data:`~pytest_finetune.recipe.RECORDING_ARGS`)
    and the machine's (``use_cpu``, ``bf16``, ``fp16``) are not recorded; names that transformers 4 and 5
    share are safest (5 has no ``logging_dir``). To change what a test trains, prefer
    :func:`pytest_finetune_adjust_recipe`, checked as the ini and marker are.
    """


def pytest_finetune_metrics(recipe: Recipe, logits: np.ndarray, label_ids: np.ndarray) -> Mapping[str, float] | None:
    """Return extra metrics computed from the validation ``logits`` and ``label_ids``.

    Called at every evaluation, so the metrics appear in ``finetune_result.metrics``
    and in each row of ``finetune_result.history``. Names must not clash with
    ``accuracy``, ``f1`` or ``loss``.
    """


def pytest_finetune_result(result: FinetuneResult) -> None:
    """Observe a finished fine-tune (to log it to an experiment tracker, say).

    Called once per training, right after it ends; a result shared by several tests is
    reported once, and a result served from the result cache (no training) is not.
    """
