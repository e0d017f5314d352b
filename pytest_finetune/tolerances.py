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

Beside the tolerance, two more rules per metric, from ini ``finetune_floor`` / ``finetune_relative``, the
command line ``--finetune-floor`` / ``--finetune-relative`` and the marker's ``floor=`` / ``relative=``:
a *floor*, the worst value a metric may take whatever its baseline (a minimum for a score, a maximum for
a loss), and a *relative* threshold, the largest change for the worse as a fraction of the baseline's
value (``0.05`` or ``5%``). Each rule applies on its own: a run fails when any one of them fails, so
the strictest wins and none loosens another.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import FinetuneError
from .tasks import MATTHEWS, PEARSON, SPEARMAN, TASK_METRICS, TASKS

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

#: Rounding guard: baselines keep 6 decimals, so a delta equal to a limit may carry 1e-17 noise.
EPSILON = 1e-9

#: The metrics that are correlations: a value lies in [-1, 1].
CORRELATIONS = (MATTHEWS, PEARSON, SPEARMAN)

#: One amount: a number, or :data:`AUTO`.
Amount = float | str
#: A tolerance setting: one amount for every gated metric, or an amount per metric.
Setting = Amount | Mapping[str, Amount]
#: A floor setting: the worst value of each metric it names.
FloorSetting = Mapping[str, float]
#: A relative setting: one fraction of the baseline's value for every gated metric, or one per metric.
RelativeSetting = float | Mapping[str, float]


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
    #: The worst value each metric may take whatever its baseline: a minimum for a score, a maximum for a loss.
    floors: tuple[tuple[str, float], ...] = ()
    #: The largest change for the worse of each metric, as a fraction of its baseline's value.
    relative: tuple[tuple[str, float], ...] = ()

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
        """The gated metrics (those with a tolerance, a floor or a relative threshold), in name order."""
        return tuple(sorted({name for rules in (self.allowed, self.floors, self.relative) for name, _ in rules}))

    @property
    def compared(self) -> tuple[str, ...]:
        """The gated metrics a baseline must hold: those with a tolerance or a relative threshold."""
        return tuple(sorted({name for rules in (self.allowed, self.relative) for name, _ in rules}))

    def broken_floor(self, metric: str, value: float) -> str | None:
        """The floor ``value`` of ``metric`` breaks (``below floor 0.8``), or ``None``."""
        floor = dict(self.floors).get(metric)
        if floor is None:
            return None
        if lower_is_better(metric):
            return f"above floor {floor:g}" if value > floor + EPSILON else None
        return f"below floor {floor:g}" if value < floor - EPSILON else None

    def broken_floors(self, metrics: Mapping[str, float]) -> list[str]:
        """Each floor ``metrics`` (a run's) break, as ``accuracy 0.7500 below floor 0.8``."""
        broken = ((name, self.broken_floor(name, value)) for name, value in sorted(metrics.items()))
        return [f"{name} {metrics[name]:.4f} {rule}" for name, rule in broken if rule]

    def broken_relative(self, metric: str, current: float, baseline: float) -> str | None:
        """The relative threshold ``metric`` breaks by moving from ``baseline`` to ``current``
        (``dropped 6.1 % > 5 %``), or ``None``: a change for the worse of more than the threshold times
        the baseline's magnitude (so from a baseline of 0, any change for the worse)."""
        share = dict(self.relative).get(metric)
        worse = current - baseline if lower_is_better(metric) else baseline - current
        if share is None or worse <= share * abs(baseline) + EPSILON:
            return None
        verb = "rose" if lower_is_better(metric) else "dropped"
        moved = f"{100 * worse / abs(baseline):.1f} %" if baseline else f"{worse:.4f} from 0"
        return f"{verb} {moved} > {100 * share:g} %"

    def apply(self, setting: Setting) -> Tolerances:
        """A copy with ``setting`` (already checked by :func:`check_setting`) applied."""
        if isinstance(setting, Mapping):
            updated = dict(self.allowed) | dict(setting)
        else:
            updated = {name: setting for name, _ in self.allowed}
        return dataclasses.replace(self, allowed=tuple(sorted(updated.items())))

    def with_floors(self, setting: FloorSetting) -> Tolerances:
        """A copy with the floors of ``setting`` (checked by :func:`check_floors`) set or added."""
        return dataclasses.replace(self, floors=tuple(sorted((dict(self.floors) | dict(setting)).items())))

    def with_relative(self, setting: RelativeSetting) -> Tolerances:
        """A copy with ``setting`` (checked by :func:`check_relative`) applied: one fraction sets every
        metric with a tolerance, a mapping sets or adds those it names."""
        named = setting if isinstance(setting, Mapping) else {name: setting for name, _ in self.allowed}
        return dataclasses.replace(self, relative=tuple(sorted((dict(self.relative) | dict(named)).items())))


def build_tolerances(
    settings: Iterable[Setting],
    *,
    strict: bool = False,
    auto_k: float = DEFAULT_AUTO_K,
    auto_floor: float = DEFAULT_AUTO_FLOOR,
    defaults: Mapping[str, float] = DEFAULT_TOLERANCES,
    floors: Iterable[FloorSetting] = (),
    relative: Iterable[RelativeSetting] = (),
) -> Tolerances:
    """The ``defaults`` (the task's gated metrics) with ``settings``, then ``relative`` and ``floors``,
    applied in order (later ones win)."""
    tolerances = Tolerances(tuple(sorted(defaults.items())), strict=strict, auto_k=auto_k, auto_floor=auto_floor)
    for setting in settings:
        tolerances = tolerances.apply(setting)
    for share in relative:
        tolerances = tolerances.with_relative(share)
    for floor in floors:
        tolerances = tolerances.with_floors(floor)
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


def check_floors(value: Any, where: str) -> FloorSetting:
    """``value`` as a floor setting, ``{metric: worst value}``, or a :class:`FinetuneError` naming ``where``:
    each floor a finite number the metric can take (:data:`FRACTIONS` in [0, 1], :data:`CORRELATIONS` in
    [-1, 1], losses 0 or more)."""
    if not isinstance(value, Mapping) or not value:
        raise FinetuneError(
            f"{where}: floor={value!r}: a floor names its metric, e.g. floor={{'accuracy': 0.8}} "
            "(finetune_floor = accuracy=0.8)"
        )
    floors = {}
    for name, floor in value.items():
        checked = _check_name(name, where)
        told = f"{where}: floor of {checked!r}"
        if isinstance(floor, bool) or not isinstance(floor, int | float) or not math.isfinite(floor):
            raise FinetuneError(f"{told} must be a finite number such as 0.8, got {floor!r}")
        low, high = (0.0, 1.0) if checked in FRACTIONS else (-1.0, 1.0) if checked in CORRELATIONS else (None, None)
        if lower_is_better(checked):
            low = 0.0
        if (low is not None and floor < low) or (high is not None and floor > high):
            span = f"[{low:g}, {high:g}]" if high is not None else f"{low:g} or more"
            hint = ", as a fraction (0.8, not 80)" if high is not None and floor > high else ""
            raise FinetuneError(f"{told} is {floor:g}, and {checked} lies in {span}: give a value it can take{hint}")
        floors[checked] = float(floor)
    return floors


def check_relative(value: Any, where: str) -> RelativeSetting:
    """``value`` as a relative setting, or a :class:`FinetuneError` naming ``where``: each threshold a
    fraction in (0, 1), as a number (``0.05``) or a percentage (``"5%"``)."""
    if isinstance(value, Mapping):
        if not value:
            raise FinetuneError(f"{where}: relative {{}} names no metric; e.g. relative={{'accuracy': 0.05}}")
        return {
            _check_name(name, where): _check_share(share, f"{where}: relative threshold of {name!r}")
            for name, share in value.items()
        }
    return _check_share(value, f"{where}: relative threshold")


def parse_floors(text: str, where: str) -> FloorSetting:
    """A floor written as text: ``accuracy=0.8``."""
    name, sep, floor = text.partition("=")
    if not sep:
        raise FinetuneError(f"{where}: {text!r} names no metric; write METRIC=VALUE, e.g. accuracy=0.8")
    try:
        number = float(floor.strip())
    except ValueError:
        raise FinetuneError(f"{where}: {text!r}: {floor.strip()!r} is not a number; write e.g. accuracy=0.8") from None
    return check_floors({name.strip(): number}, where)


def parse_relative(text: str, where: str) -> RelativeSetting:
    """A relative threshold written as text: ``5%`` or ``0.05`` (every gated metric), ``accuracy=5%``."""
    name, sep, share = text.partition("=")
    if sep:
        return check_relative({name.strip(): share.strip()}, where)
    return check_relative(text.strip(), where)


def _check_share(share: Any, where: str) -> float:
    """``share`` (a number, or text: ``0.05``, ``5%``) as a fraction in (0, 1)."""
    number: Any = share
    if isinstance(share, str):
        text = share.strip()
        try:
            number = float(text.removesuffix("%")) / (100 if text.endswith("%") else 1)
        except ValueError:
            raise FinetuneError(f"{where}: {share!r} is not a number or a percentage; write 0.05 or 5%") from None
    if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number):
        raise FinetuneError(f"{where} must be a fraction such as 0.05 or a percentage such as '5%', got {share!r}")
    if not 0 < number < 1:
        raise FinetuneError(
            f"{where} is {share!r}: give a drop between 0 and 100 % of the baseline's value (exclusive), "
            "as a fraction (0.05) or a percentage (5%)"
        )
    return float(number)
