"""How far each metric may move from its baseline: the rules, apart from the comparison.

A tolerance is an absolute amount per metric. Scores (accuracy, F1, ...) fail only when
they drop by more than it, losses (any metric whose name ends in ``loss``) only when
they rise by more than it; in strict mode a move beyond it either way fails. Metrics
without a tolerance are recorded and shown, never gated.

Settings come, lowest priority first, from ini ``finetune_tolerance``, the command line
``--finetune-tolerance`` and the test's ``finetune(tolerance=...)`` marker. Each setting is
an amount (applies to every gated metric) or ``{metric: amount}`` (sets or adds those
metrics); as text, ``0.02`` or ``f1=0.015``. An amount is a number or ``"auto"``: the
spread the baseline's calibration measured over seeds, ``max(k * std, floor)`` (ini
``finetune_auto_k``, ``finetune_auto_floor``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import FinetuneError
from .tasks import TASK_METRICS, TASKS

#: The seed task's (MRPC's) gated metrics and their default tolerance; each task names its own
#: (:attr:`pytest_finetune.tasks.Task.default_tolerances`, the same amount). MRPC's dev split has 408 pairs, so one
#: pair is 0.0025 of accuracy: 0.01 lets about four pairs flip (numeric noise between
#: library versions and kernels) and catches any drop of a point or more. A CPU run of a
#: fixed recipe and seed repeats exactly, so noise needs no wider default.
DEFAULT_TOLERANCES: Mapping[str, float] = TASKS["mrpc"].default_tolerances

#: The metrics the plugin computes (each task some of them; a ``pytest_finetune_metrics`` hook may add others).
OWN_METRICS = (*TASK_METRICS, "eval_loss")
#: The metrics that are fractions: a value (a run's, a baseline's) lies in [0, 1], so no change exceeds 1.
FRACTIONS = ("accuracy", "f1")

#: The amount that asks for the calibrated spread.
AUTO = "auto"
#: ``auto``: the allowed drop is ``max(k * std, floor)`` of the metric over the calibration's
#: seeds. The baseline is one run and the new run another, so their difference has
#: ``sqrt(2) * std``; k = 3 puts the limit at 2.1 of those, which a run of equal quality
#: crosses downwards about 2 % of the time. The floor, two of MRPC's 408 pairs, keeps a
#: calibration whose seeds happened to agree from failing on a single flipped pair.
DEFAULT_AUTO_K = 3.0
DEFAULT_AUTO_FLOOR = 0.005

#: One amount: a number, or :data:`AUTO`.
Amount = float | str
#: A tolerance setting: one amount for every gated metric, or an amount per metric.
Setting = Amount | Mapping[str, Amount]


def lower_is_better(metric: str) -> bool:
    """Losses improve by going down; every other metric by going up."""
    return metric.endswith("loss")


@dataclasses.dataclass(frozen=True)
class Tolerances:
    """The allowed absolute change per gated metric, and whether gains beyond it fail too."""

    allowed: tuple[tuple[str, Amount], ...] = tuple(DEFAULT_TOLERANCES.items())
    strict: bool = False
    auto_k: float = DEFAULT_AUTO_K
    auto_floor: float = DEFAULT_AUTO_FLOOR

    def __getitem__(self, metric: str) -> Amount | None:
        return dict(self.allowed).get(metric)

    @property
    def auto_metrics(self) -> tuple[str, ...]:
        """The gated metrics whose amount is :data:`AUTO`."""
        return tuple(name for name, amount in self.allowed if amount == AUTO)

    def resolved(self, spreads: Mapping[str, Mapping[str, float]]) -> Tolerances:
        """A copy with each :data:`AUTO` amount replaced by ``max(k * std, floor)`` of the
        metric's spread in ``spreads`` (a calibration's ``metrics``; checked to hold them)."""
        amounts = {
            name: max(self.auto_k * spreads[name]["std"], self.auto_floor) if amount == AUTO else amount
            for name, amount in self.allowed
        }
        return dataclasses.replace(self, allowed=tuple(amounts.items()))

    @property
    def metrics(self) -> tuple[str, ...]:
        """The gated metrics, in name order."""
        return tuple(sorted(name for name, _ in self.allowed))

    def apply(self, setting: Setting) -> Tolerances:
        """A copy with ``setting`` (already checked by :func:`check_setting`) applied."""
        if isinstance(setting, Mapping):
            updated = dict(self.allowed) | dict(setting)
        else:
            updated = {name: setting for name, _ in self.allowed}
        return dataclasses.replace(self, allowed=tuple(sorted(updated.items())))


def build_tolerances(
    settings: Iterable[Setting],
    *,
    strict: bool = False,
    auto_k: float = DEFAULT_AUTO_K,
    auto_floor: float = DEFAULT_AUTO_FLOOR,
    defaults: Mapping[str, float] = DEFAULT_TOLERANCES,
) -> Tolerances:
    """The ``defaults`` (the task's gated metrics) with ``settings`` applied in order (later ones win)."""
    tolerances = Tolerances(tuple(sorted(defaults.items())), strict=strict, auto_k=auto_k, auto_floor=auto_floor)
    for setting in settings:
        tolerances = tolerances.apply(setting)
    return tolerances


def check_setting(value: Any, where: str) -> Setting:
    """``value`` as a tolerance setting, or a :class:`FinetuneError` naming ``where``."""
    if isinstance(value, Mapping):
        if not value:
            raise FinetuneError(f"{where}: tolerance {{}} names no metric; e.g. tolerance={{'f1': 0.015}}")
        setting = {
            _check_name(name, where): _check_amount(amount, f"{where}: tolerance of {name!r}")
            for name, amount in value.items()
        }
        for name, amount in setting.items():
            _check_possible(amount, (name,), f"{where}: tolerance of {name!r}")
        return setting
    amount = _check_amount(value, f"{where}: tolerance")
    _check_possible(amount, FRACTIONS, f"{where}: tolerance")  # one amount gates them all (always gated)
    return amount


def parse_setting(text: str, where: str) -> Setting:
    """A setting written as text: ``0.02`` (every gated metric) or ``f1=0.015``."""
    name, sep, amount = text.partition("=")
    if sep:
        return check_setting({name.strip(): _parse_amount(amount, f"{where}: {text!r}")}, where)
    return check_setting(_parse_amount(text, f"{where}: {text!r}"), where)


def _parse_amount(text: str, where: str) -> Amount:
    if text.strip() == AUTO:
        return AUTO
    try:
        return float(text.strip())
    except ValueError:
        raise FinetuneError(f"{where} is not a number or auto; write 0.02, auto or METRIC=0.02") from None


def _check_name(name: Any, where: str) -> str:
    """``name`` stripped; a usage error for a non-name, or for one of :data:`OWN_METRICS` in another
    case (``F1``): names are case-sensitive, and such a tolerance would gate a metric no run has."""
    if not isinstance(name, str) or not name.strip():
        raise FinetuneError(f"{where}: tolerance keys are metric names such as 'accuracy', got {name!r}")
    meant = {metric.lower(): metric for metric in OWN_METRICS}.get(name.strip().lower())
    if meant is not None and meant != name.strip():
        raise FinetuneError(
            f"{where}: tolerance of {name.strip()!r}: metric names are case-sensitive; write {meant!r} "
            f"(the plugin's metrics: {', '.join(OWN_METRICS)})"
        )
    return name.strip()


def _check_possible(amount: Amount, metrics: tuple[str, ...], where: str) -> None:
    """A :class:`FinetuneError` for an amount beyond 1 that gates one of :data:`FRACTIONS` among ``metrics``: no
    change of a value in [0, 1] exceeds 1, so such a tolerance gates nothing (a percentage, perhaps)."""
    bounded = [name for name in metrics if name in FRACTIONS]
    if amount != AUTO and bounded and float(amount) > 1:
        raise FinetuneError(
            f"{where} is {amount:g}, and {' and '.join(bounded)} {'lie' if len(bounded) > 1 else 'lies'} in [0, 1], "
            "so it would allow any change: give an absolute change of at most 1, as a fraction (0.015 for 1.5 points)"
        )


def _check_amount(amount: Any, where: str) -> Amount:
    if isinstance(amount, str) and amount.strip() == AUTO:
        return AUTO
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        raise FinetuneError(f"{where} must be a number such as 0.01, or 'auto', got {amount!r}")
    if not math.isfinite(amount) or amount < 0:
        raise FinetuneError(f"{where} must be a finite number >= 0 (an absolute change such as 0.01), got {amount!r}")
    return float(amount)
