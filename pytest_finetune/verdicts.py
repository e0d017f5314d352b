"""Compare a run's record with its baseline: whether the two can be compared at all, then each
metric against its tolerance, then the examples one by one (the paired test).

Records are the dictionaries :mod:`pytest_finetune.baselines` stores (``recipe``,
``metrics``, ``history``, ``environment``, and where known ``intervals``, ``examples``,
``validation_id`` and ``calibration``); this module only reads them.

The policy: a test fails when a gated metric moves the wrong way by more than its
tolerance (or by more than its relative threshold, or past its floor), when the run's model
predicts almost only one class (see :func:`pytest_finetune.metrics.collapse`), or when the
paired test finds the run significantly worse than the baseline's run on the same validation
examples (two-sided, at ``alpha``: exact McNemar of the examples each got right; for a
regression, Wilcoxon signed-rank of each example's absolute error). A changed recipe (training
data, model, seed, training arguments) is compared like an unchanged one, and the verdict names
the change; with ``strict_recipe`` one whose quality held fails too.
Only what cannot be compared is refused: another task (its labels and metrics), or other
validation examples (the yardstick moved, and the paired test needs the same examples).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import FinetuneError
from .stats import PairedTest, paired_test, wilcoxon_test
from .tolerances import EPSILON, Tolerances, lower_is_better

#: The paired test's significance level (ini ``finetune_alpha``). Two runs of equal quality
#: are called significantly worse at most alpha / 2 of the time (the test is two-sided and
#: fails only the worse side); 0.01 keeps that to one benign rerun in 200.
DEFAULT_ALPHA = 0.01


class Outcome(enum.StrEnum):
    """The verdict on a run, as the report words it."""

    PASSED = "passed"
    IMPROVED = "improved"
    REGRESSED = "regressed"
    CHANGED = "changed"  # strict mode: moved beyond tolerance, either way
    COLLAPSED = "collapsed"  # the model predicts almost only one class
    MISSING_METRIC = "missing metric"
    RECIPE_CHANGED = "recipe changed"  # strict recipe mode: the recipe changed, quality held
    NOT_COMPARABLE = "not comparable"

    @property
    def failed(self) -> bool:
        return self not in (Outcome.PASSED, Outcome.IMPROVED)


#: The verdicts on the run's quality that warn-only mode (``--finetune-warn-only``) reports as warnings instead
#: of failures. The others still fail: a recipe changed under strict recipe mode, a run not comparable with its
#: baseline, a gated metric the run no longer produces.
WARNABLE = frozenset({Outcome.REGRESSED, Outcome.CHANGED, Outcome.COLLAPSED})


@dataclasses.dataclass(frozen=True)
class MetricRow:
    """One line of the verdict table. ``allowed`` is ``None`` for a metric that is not gated."""

    metric: str
    baseline: float | None
    current: float | None
    allowed: float | None
    verdict: str
    #: This run's bootstrap interval of the metric, where known.
    interval: tuple[float, float] | None = None
    #: The rules the metric failed: ``below floor 0.8``, ``dropped 6.1 % > 5 %``, ``dropped 0.0410 > tolerance 0.0100``.
    rules: tuple[str, ...] = ()

    @property
    def delta(self) -> float | None:
        if self.baseline is None or self.current is None:
            return None
        return self.current - self.baseline

    @property
    def verdict_said(self) -> str:
        """The verdict, with the rules it failed where one is not the tolerance (the row shows its delta and amount):
        ``regressed: dropped 0.0410 > tolerance 0.0100; below floor 0.8``."""
        if all(TOLERANCE_RULE in rule for rule in self.rules):
            return self.verdict
        return f"{self.verdict}: {'; '.join(self.rules)}"


@dataclasses.dataclass(frozen=True)
class RecipeChange:
    """A recipe key whose value differs between the baseline and this run."""

    key: str
    baseline: Any
    current: Any


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The comparison of one run with its baseline."""

    outcome: Outcome
    rows: tuple[MetricRow, ...] = ()
    recipe_changes: tuple[RecipeChange, ...] = ()
    #: Differences worth a reader's attention that do not decide the outcome (another device, say).
    notes: tuple[str, ...] = ()
    #: The example-by-example comparison, where both runs' examples are known and the same.
    paired: PairedTest | None = None
    #: Why the run could not be compared with the baseline (outcome ``not comparable``).
    not_comparable: str | None = None
    #: How the run's model collapsed to one class (outcome ``collapsed``), where it did.
    collapsed: str | None = None

    @property
    def headline(self) -> str:
        """One line: the recipe's changes, where any, and what the comparison came to: ``recipe changed
        (learning_rate 5e-05 → 3e-05); quality held``, ``regressed by 0.041 accuracy, paired test p = 0.003``."""
        if self.not_comparable is not None:
            said = f"not comparable: {self.not_comparable}"
        elif self.outcome is Outcome.COLLAPSED:
            said = "the model collapsed to one class"
        elif self.outcome is Outcome.REGRESSED:
            said = _regression(self.rows, self.paired)
        elif self.outcome in (Outcome.PASSED, Outcome.RECIPE_CHANGED):
            said = "quality held"
        else:
            said = self.outcome.value
        return f"recipe changed ({describe_changes(self.recipe_changes)}); {said}" if self.recipe_changes else said


def compare(
    current: Mapping[str, Any],
    baseline: Mapping[str, Any],
    tolerances: Tolerances,
    alpha: float = DEFAULT_ALPHA,
    strict_recipe: bool = False,
    collapsed: str | None = None,
) -> Verdict:
    """The verdict on ``current`` against ``baseline`` (both checked records); ``collapsed`` says how the
    run's model collapsed to one class, where it did (outcome ``collapsed``, unless not comparable).

    A changed recipe is compared like an unchanged one, its changes kept in the verdict; with
    ``strict_recipe``, a change whose quality held is ``recipe changed`` (a failure). Runs that
    cannot be compared (:func:`not_comparable`) are ``not comparable``. A record without a recipe
    (a plain dict of metrics was compared) has no changes. ``auto`` tolerances need the
    baseline's calibration (else :class:`FinetuneError`).
    """
    notes = environment_notes(current.get("environment"), baseline.get("environment"))
    changes: tuple[RecipeChange, ...] = ()
    if "recipe" in current and "recipe" in baseline:
        changes, scaled = scale_out_changes(recipe_changes(current["recipe"], baseline["recipe"]), current, baseline)
        notes += scaled
    why_not = not_comparable(current, baseline)
    if why_not is not None:
        return Verdict(
            Outcome.NOT_COMPARABLE, recipe_changes=changes, notes=notes, not_comparable=why_not, collapsed=collapsed
        )
    if tolerances.auto_metrics:
        tolerances, note = _calibrated(tolerances, baseline)
        notes += (note,)
    rows = metric_rows(current["metrics"], baseline["metrics"], tolerances, current.get("intervals") or {})
    paired, why_no_test = _paired_test(current, baseline, alpha)
    notes += (why_no_test,) if why_no_test else ()
    outcome = Outcome.COLLAPSED if collapsed else _outcome(rows, paired, tolerances.strict)
    if changes and strict_recipe and not outcome.failed:
        outcome = Outcome.RECIPE_CHANGED
    return Verdict(outcome, rows=rows, recipe_changes=changes, notes=notes, paired=paired, collapsed=collapsed)


def not_comparable(current: Mapping[str, Any], baseline: Mapping[str, Any]) -> str | None:
    """Why ``current`` cannot be compared with ``baseline``, or ``None`` where it can: another task (other
    labels and metrics), or other validation examples. Those are known by content (``validation_id``: ids,
    texts and labels, so another label set is other examples too); else, for a record made before
    pytest-finetune kept that, by ids (the ``examples`` digest); else, with neither, by the recipe's
    ``data_id`` (whose files hold the validation split): unchanged data is the same examples, changed data
    cannot be told apart from a changed validation split."""
    tasks = [record.get("recipe", {}).get("task") for record in (baseline, current)]
    if None not in tasks and tasks[0] != tasks[1]:
        return f"the task changed ({tasks[0]} → {tasks[1]}): its labels and metrics are another task's"
    then, now = (record.get("recipe", {}).get("labels") for record in (baseline, current))
    if then != now:
        return (
            f"the task's labels changed ({_labels(then)} → {_labels(now)}): a class id means another class, "
            "or the model predicts another kind of label"
        )
    then, now = baseline.get("validation_id"), current.get("validation_id")
    if then and now:
        if then == now:
            return None
        return f"the validation examples changed (by content: {short_identity(then)} → {short_identity(now)})"
    if _examples_of(baseline) and _examples_of(current):
        if _examples_of(baseline) == _examples_of(current):
            return None
        counts = baseline["examples"]["count"], current["examples"]["count"]
        return f"the validation examples changed (by ids: {counts[0]} there, {counts[1]} here, other ids)"
    then, now = (record.get("recipe", {}).get("data_id") for record in (baseline, current))
    if then and now and then != now:
        return (
            "the data changed, and the baseline names its validation examples neither by content nor by ids "
            "(recorded by an older pytest-finetune): whether they are the same cannot be told"
        )
    return None


def _labels(labels: Any) -> str:
    """A task's class names (a list), ``regression`` or, for a GLUE task (none recorded), its own, as a message
    shows them."""
    if labels is None:
        return "the GLUE task's"
    return ", ".join(map(str, labels)) if isinstance(labels, list) else str(labels)


def _outcome(rows: tuple[MetricRow, ...], paired: PairedTest | None, strict: bool) -> Outcome:
    """The policy: a failing metric, then a significantly worse paired test (which no improved
    metric hides: a tolerance must never weaken the gate), then an improvement."""
    verdicts = {row.verdict for row in rows}
    for outcome in (Outcome.MISSING_METRIC, Outcome.REGRESSED, Outcome.CHANGED):
        if outcome.value in verdicts:
            return outcome
    if paired is not None and paired.significantly_worse:
        return Outcome.REGRESSED
    if Outcome.IMPROVED.value in verdicts:
        return Outcome.IMPROVED
    if paired is not None and paired.significant and strict:
        return Outcome.CHANGED
    return Outcome.PASSED


def metric_rows(
    current: Mapping[str, float],
    baseline: Mapping[str, float],
    tolerances: Tolerances,
    intervals: Mapping[str, Any] | None = None,
) -> tuple[MetricRow, ...]:
    """One row per metric in either record or in the tolerances: gated ones first."""
    gated = tolerances.metrics
    names = sorted(set(current) | set(baseline) | set(gated), key=lambda n: (n not in gated, n))
    rows = (_row(name, current.get(name), baseline.get(name), tolerances) for name in names)
    intervals = intervals or {}
    return tuple(dataclasses.replace(row, interval=_interval(intervals.get(row.metric))) for row in rows)


def _interval(value: Any) -> tuple[float, float] | None:
    return (float(value[0]), float(value[1])) if isinstance(value, list | tuple) and len(value) == 2 else None


def _row(name: str, current: float | None, baseline: float | None, tolerances: Tolerances) -> MetricRow:
    """The metric's row: each rule it has (tolerance, relative threshold, floor) applies on its own."""
    allowed = tolerances[name]
    assert not isinstance(allowed, str), "auto amounts are resolved before the comparison"
    if name not in tolerances.metrics:
        return MetricRow(name, baseline, current, allowed, "not gated")
    if current is None:
        return MetricRow(name, baseline, current, allowed, Outcome.MISSING_METRIC.value)
    floor = tolerances.broken_floor(name, current)
    rules = [floor] if floor else []
    beyond = False
    if baseline is not None:  # a baseline lacking a compared metric is refused before it gets here
        delta = current - baseline
        worse = delta > 0 if lower_is_better(name) else delta < 0
        beyond = allowed is not None and abs(delta) > allowed + EPSILON
        if beyond and (worse or tolerances.strict):
            verb = "moved" if tolerances.strict else "rose" if lower_is_better(name) else "dropped"
            rules.insert(0, f"{verb} {abs(delta):.4f} {TOLERANCE_RULE} {allowed:.4f}")
        relative = tolerances.broken_relative(name, current, baseline)
        rules += [relative] if relative else []
    if beyond and tolerances.strict:
        verdict = Outcome.CHANGED.value
    elif rules:
        verdict = Outcome.REGRESSED.value
    elif beyond:
        verdict = Outcome.IMPROVED.value
    else:
        verdict = "ok" if baseline is not None else "new"
    return MetricRow(name, baseline, current, allowed, verdict, rules=tuple(rules))


#: How a broken tolerance is said in a row's rules: ``dropped 0.0410 > tolerance 0.0100``.
TOLERANCE_RULE = "> tolerance"


def _calibrated(tolerances: Tolerances, baseline: Mapping[str, Any]) -> tuple[Tolerances, str]:
    """The ``auto`` amounts from the baseline's calibration (made on the same validation examples: see
    :func:`not_comparable`), and a note saying how they came."""
    calibration = baseline.get("calibration")
    fix = "record it with: pytest --finetune --snapshot-update --finetune-calibrate 5"
    if not calibration:
        raise FinetuneError(f"tolerance auto needs a calibrated baseline and this one has no calibration; {fix}")
    missing = [name for name in tolerances.auto_metrics if name not in calibration["metrics"]]
    if missing:
        raise FinetuneError(f"tolerance auto: the calibration has no spread of {', '.join(missing)}; {fix}")
    resolved = tolerances.resolved(calibration["metrics"])
    spreads = ", ".join(
        f"{name} std {calibration['metrics'][name]['std']:.4f} -> {resolved[name]:.4f}"
        for name in tolerances.auto_metrics
    )
    seeds = calibration["seeds"]
    note = (
        f"tolerance auto = max({tolerances.auto_k:g} x std, {tolerances.auto_floor:g}) over {len(seeds)} seeds "
        f"({', '.join(map(str, seeds))}): {spreads}"
    )
    return resolved, note


def _examples_of(record: Mapping[str, Any]) -> str | None:
    examples = record.get("examples")
    return examples.get("digest") if isinstance(examples, Mapping) else None


def _paired_test(
    current: Mapping[str, Any], baseline: Mapping[str, Any], alpha: float
) -> tuple[PairedTest | None, str | None]:
    """The paired test, or why there is none (a note; ``None`` for a plain dict of metrics)."""
    if "examples" not in current:
        return None, None
    if "examples" not in baseline:
        return None, "the baseline holds no per-example results: record it again for the paired test"
    now, then = current["examples"], baseline["examples"]  # the same examples: see not_comparable
    if "abs_errors" in now:  # a regression
        if "abs_errors" not in then:
            return None, "the baseline holds no per-example errors: record it again for the paired test"
        return wilcoxon_test(now["abs_errors"], then["abs_errors"], alpha), None
    return paired_test(now["wrong"], then["wrong"], now["count"], alpha), None


#: Recipe keys compared by identity (content digest or Hub id) rather than as displayed.
_IDENTITY_KEYS = {"model": "model_id", "data": "data_id"}


def recipe_changes(current: Mapping[str, Any], baseline: Mapping[str, Any]) -> tuple[RecipeChange, ...]:
    """The recipe keys that differ, training arguments one by one.

    A model or data folder at another path with the same content is the same; the same
    path with other content is a change (shown by its digests).
    """
    now, then = _flat_recipe(current), _flat_recipe(baseline)
    changes = []
    for key in sorted(now.keys() | then.keys()):
        identity = _IDENTITY_KEYS.get(key)
        if identity is None:
            if now.get(key) != then.get(key):
                changes.append(RecipeChange(key, then.get(key), now.get(key)))
        elif current.get(identity) != baseline.get(identity):
            shown = key if now.get(key) != then.get(key) else identity
            changes.append(RecipeChange(key, baseline.get(shown), current.get(shown)))
    return tuple(changes)


#: The training arguments that, times the processes of a data-parallel run, make the effective batch, with
#: ``TrainingArguments``' defaults.
BATCH_ARGS = {"per_device_train_batch_size": 8, "gradient_accumulation_steps": 1}


def scale_out_changes(
    changes: tuple[RecipeChange, ...], current: Mapping[str, Any], baseline: Mapping[str, Any]
) -> tuple[tuple[RecipeChange, ...], tuple[str, ...]]:
    """``changes``, and a note, for runs trained on another number of processes (the environment's
    ``world_size``; 1 where a record has none). The batch that each optimizer step averages over, the effective
    batch (per device x accumulation steps x processes), decides the training, not its split: the same effective
    batch on other processes is a note, like another dtype (the batches hold the same examples, drawn in another
    order and reduced in another order); another effective batch is one recipe change, ``effective_batch``, in
    place of the changes of :data:`BATCH_ARGS` that make it."""
    then, now = _world_size(baseline), _world_size(current)
    if then == now:
        return changes, ()
    batches = _effective_batch(baseline, then), _effective_batch(current, now)
    kept = tuple(change for change in changes if change.key.removeprefix("training_args.") not in BATCH_ARGS)
    if batches[0] != batches[1]:
        change = RecipeChange(
            "effective_batch", f"{batches[0]} ({_processes(then)})", f"{batches[1]} ({_processes(now)})"
        )
        return (*kept, change), ()
    note = (
        f"baseline trained on {_processes(then)}, this run on {_processes(now)}, with the same effective batch of "
        f"{batches[0]}: expect differences of about a seed's spread"
    )
    return kept, (note,)


def _processes(count: int) -> str:
    return f"{count} process" + ("es" if count != 1 else "")


def _world_size(record: Mapping[str, Any]) -> int:
    """How many processes trained ``record``'s run (a record made before pytest-finetune kept that: one)."""
    return int((record.get("environment") or {}).get("world_size", 1))


def _effective_batch(record: Mapping[str, Any], world_size: int) -> int:
    """The effective batch ``record``'s environment holds, else the one its recipe and ``world_size`` make."""
    recorded = (record.get("environment") or {}).get("effective_batch")
    if recorded is not None:
        return int(recorded)
    training_args = record.get("recipe", {}).get("training_args", {})
    per_device, accumulation = (int(training_args.get(key, default)) for key, default in BATCH_ARGS.items())
    return per_device * accumulation * world_size


def describe_changes(changes: Sequence[RecipeChange]) -> str:
    """The changes on one line: ``learning_rate 5e-05 → 3e-05, data sha256:83398777bdc3… → sha256:1f0a…``
    (training arguments by their own names, digests shortened)."""
    return ", ".join(
        f"{change.key.removeprefix('training_args.')} {_shown(change.baseline)} → {_shown(change.current)}"
        for change in changes
    )


def _shown(value: Any) -> str:
    return "(absent)" if value is None else short_identity(str(value))


def short_identity(value: str) -> str:
    """A content digest (``sha256:`` and 64 hex digits) shortened to 12 digits for a reader; others as they are."""
    return value[:19] + "…" if value.startswith("sha256:") and len(value) > 20 else value


def _regression(rows: Sequence[MetricRow], paired: PairedTest | None) -> str:
    """``regressed by 0.041 accuracy (below floor 0.8), paired test p = 0.003``: the metrics that regressed,
    each with the rules it failed other than its tolerance, and the paired test where one was made."""
    drops = [
        f"{abs(row.delta or 0.0):.3f} {row.metric}" + _other_rules(row)
        for row in rows
        if row.verdict == Outcome.REGRESSED.value
    ]
    said = f"regressed by {', '.join(drops)}" if drops else "regressed"
    return f"{said}, paired test p = {paired.p_value:.3g}" if paired is not None else said


def _other_rules(row: MetricRow) -> str:
    """`` (below floor 0.8)``: the rules ``row`` failed other than its tolerance, or nothing."""
    others = [rule for rule in row.rules if TOLERANCE_RULE not in rule]
    return f" ({'; '.join(others)})" if others else ""


def _flat_recipe(recipe: Mapping[str, Any]) -> dict[str, Any]:
    flat = {
        key: value for key, value in recipe.items() if key != "training_args" and key not in _IDENTITY_KEYS.values()
    }
    flat.update((f"training_args.{key}", value) for key, value in recipe.get("training_args", {}).items())
    return flat


#: Environment entries whose change moves the metrics by about a seed's spread.
SPREAD_MOVING_ENVIRONMENT = ("device", "dtype", "dropout_masks")


def environment_notes(current: Mapping[str, Any] | None, baseline: Mapping[str, Any] | None) -> tuple[str, ...]:
    """A note when the device, dtype or source of dropout masks differs from what the baseline
    records: metrics then move by about a seed's spread."""
    if not current or not baseline:
        return ()
    moved = [key for key in SPREAD_MOVING_ENVIRONMENT if key in baseline and current.get(key) != baseline[key]]
    if not moved:
        return ()
    was = ", ".join(f"{key} {baseline.get(key)}" for key in moved)
    now = ", ".join(f"{key} {current.get(key)}" for key in moved)
    return (f"baseline recorded with {was}; this run used {now}: expect differences of about a seed's spread",)
