"""The plugin's state for one pytest session, kept in one place."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .cache import ResultCache
from .distributed import is_main_process
from .errors import FinetuneError
from .options import (
    Layer,
    alpha_setting,
    auto_settings,
    baseline_classes_setting,
    baseline_dir,
    bootstrap_setting,
    cache_dir,
    calibration_setting,
    check_path_options,
    clear_result_cache,
    collapse_guard_setting,
    dropout_masks_setting,
    history_path,
    html_path,
    marker_settings,
    precision_setting,
    python_layer,
    runtime_tuning_setting,
    session_floors,
    session_layers,
    session_relative,
    session_tolerances,
    strict_recipe_setting,
    update_setting,
    warn_only_setting,
)
from .recipe import Recipe, build_recipe, check_named_task
from .tolerances import FloorSetting, RelativeSetting, Setting, Tolerances, build_tolerances

if TYPE_CHECKING:
    from .report import ReportEntry
    from .result import FinetuneResult

_RECIPE_KEY = pytest.StashKey[Recipe]()


@dataclasses.dataclass
class FinetuneSession:
    """Whether fine-tuning runs, the session-wide settings and the results so far."""

    enabled: bool
    layers: list[Layer]
    tolerance_settings: list[Setting]
    strict: bool
    #: ``finetune_strict_recipe``: a changed recipe fails even where quality held.
    strict_recipe: bool
    #: Whether baselines are written (syrupy's ``--snapshot-update``).
    update: bool
    baseline_dir: Path
    #: ``finetune_precision``: ``auto``, ``fp32``, ``bf16`` or ``fp16`` (see :mod:`pytest_finetune.precision`).
    precision: str
    #: ``finetune_runtime_tuning``: memory settings while training on a CPU (see :mod:`pytest_finetune.runtime`).
    runtime_tuning: bool
    #: ``finetune_dropout_masks``: ``auto``, ``torch`` or ``numpy`` (see :mod:`pytest_finetune.dropout`).
    dropout_masks: str
    #: Results kept across sessions; ``None`` when caching is off.
    cache: ResultCache | None
    #: ``--finetune-calibrate``: seeds per recipe, ``None`` when not calibrating.
    calibrate: int | None
    #: The paired test's significance level (``finetune_alpha``).
    alpha: float
    #: ``tolerance="auto"``: ``max(k * std, floor)``.
    auto_k: float
    auto_floor: float
    #: Resamples of each bootstrap interval (0: none).
    bootstrap_resamples: int
    #: ``finetune_floor`` and ``--finetune-floor``: the worst value of each metric they name.
    floor_settings: list[FloorSetting] = dataclasses.field(default_factory=list)
    #: ``finetune_relative`` and ``--finetune-relative``: the largest drop as a share of the baseline's value.
    relative_settings: list[RelativeSetting] = dataclasses.field(default_factory=list)
    #: ``--finetune-warn-only``: quality verdicts warn rather than fail.
    warn_only: bool = False
    #: ``finetune_baseline_classes = hardware``: one baseline entry per hardware class (see ``baselines.classes``).
    hardware_classes: bool = False
    #: ``finetune_collapse_guard``: the share of one predicted class that fails a run (``None``: off).
    collapse_guard: float | None = None
    #: ``--finetune-history``: the file each session appends its tests' lines to (see :mod:`pytest_finetune.history`).
    history: Path | None = None
    #: ``--finetune-html``: the HTML report the session writes (see :mod:`pytest_finetune.html_report`).
    html: Path | None = None
    #: Finished fine-tunes by training key (see ``fixtures.finetune_result``).
    results: dict[Any, FinetuneResult] = dataclasses.field(default_factory=dict)
    #: Each fine-tuning test's comparison with its baseline, for the reports.
    entries: list[ReportEntry] = dataclasses.field(default_factory=list)
    #: The baselines (as syrupy locates them) of tests that stopped before comparing, marked used without a comparison
    #: (see ``gate.keep``), so that syrupy's summary does not count them passed (see ``gate.uncount_kept``).
    kept: set[str] = dataclasses.field(default_factory=set)

    @classmethod
    def from_config(cls, config: pytest.Config) -> FinetuneSession:
        """Read the options, ini keys and environment (checked here)."""
        check_path_options(config)
        enabled = config.getoption("--finetune")
        main = is_main_process()  # of a data-parallel run, rank 0 alone clears, reads and writes the result cache
        cleared = clear_result_cache(config) if main else True  # --cache-clear, with or without --finetune
        folder = cache_dir(config) if enabled and cleared and main else None
        auto_k, auto_floor = auto_settings(config)
        layers = session_layers(config)
        check_named_task(layers)
        return cls(
            enabled=enabled,
            layers=layers,
            tolerance_settings=session_tolerances(config),
            strict=config.getoption("--finetune-strict"),
            strict_recipe=strict_recipe_setting(config),
            update=update_setting(config, enabled),
            baseline_dir=baseline_dir(config),
            precision=precision_setting(config),
            runtime_tuning=runtime_tuning_setting(config),
            dropout_masks=dropout_masks_setting(config),
            cache=ResultCache(folder) if folder else None,
            calibrate=calibration_setting(config),
            alpha=alpha_setting(config),
            auto_k=auto_k,
            auto_floor=auto_floor,
            bootstrap_resamples=bootstrap_setting(config),
            floor_settings=session_floors(config),
            relative_settings=session_relative(config),
            warn_only=warn_only_setting(config),
            hardware_classes=baseline_classes_setting(config),
            collapse_guard=collapse_guard_setting(config),
            history=history_path(config),
            html=html_path(config),
        )

    def recipe_for(self, item: pytest.Item) -> Recipe:
        """``item``'s recipe: session layers, its marker, then the adjust-recipe hook."""
        if _RECIPE_KEY not in item.stash:
            layers = [*self.layers, marker_settings(item)[0]]
            recipe = build_recipe(layers, check_task=False)
            # pluggy calls the last registered implementation (the closest conftest) first;
            # apply it last so that it wins.
            where = f"{item.nodeid}: pytest_finetune_adjust_recipe hook"
            for overrides in reversed(item.ihook.pytest_finetune_adjust_recipe(recipe=recipe, item=item)):
                if not isinstance(overrides, Mapping):
                    raise FinetuneError(
                        f"{where} returned {type(overrides).__name__} {overrides!r}; return a dict of "
                        "keyword overrides, e.g. {'max_steps': 50}, or None to leave the recipe"
                    )
                if overrides:
                    layers.append(python_layer(where, overrides, item.config.rootpath))
            from .data import with_class_names  # datasets: imported once a fine-tune needs its recipe

            item.stash[_RECIPE_KEY] = with_class_names(build_recipe(layers))
        return item.stash[_RECIPE_KEY]

    def check_task(self, item: pytest.Item) -> None:
        """Fail on the task ``item``'s ini file, environment, command line and marker name or declare (an unknown
        name, a declaration that cannot work), unless a ``pytest_finetune_adjust_recipe`` hook may still declare it."""
        if not item.ihook.pytest_finetune_adjust_recipe.get_hookimpls():
            build_recipe([*self.layers, marker_settings(item)[0]])

    def tolerances_for(self, item: pytest.Item) -> Tolerances:
        """``item``'s tolerances, floors and relative thresholds: its task's defaults, the ini file, the command
        line, then its marker."""
        marker = marker_settings(item)
        return build_tolerances(
            [*self.tolerance_settings, *marker.tolerances],
            defaults=self.recipe_for(item).task_spec.default_tolerances,
            strict=self.strict,
            auto_k=self.auto_k,
            auto_floor=self.auto_floor,
            floors=[*self.floor_settings, *marker.floors],
            relative=[*self.relative_settings, *marker.relative],
        )

    def collapse_guard_for(self, item: pytest.Item) -> float | None:
        """``item``'s collapsed-model guard: its closest marker's, else the ini file's (``None``: off)."""
        return ([self.collapse_guard, *marker_settings(item).collapse_guards])[-1]


SESSION_KEY = pytest.StashKey[FinetuneSession]()
