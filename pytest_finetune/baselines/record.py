"""The baseline record: what a baseline stores for a fine-tune or a dict of metrics, read back and checked."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import FinetuneError
from ..provenance import display_source, examples_digest, source_identity
from ..result import FinetuneResult
from ..tolerances import DEFAULT_TOLERANCES, FRACTIONS, OWN_METRICS, Tolerances
from ..values import is_count, is_finite_number, metric_problem, shown
from ..verdicts import DEFAULT_ALPHA, recipe_changes

if TYPE_CHECKING:

    from ..recipe import Recipe

#: Bumped when the layout of a record changes incompatibly.
FORMAT = 1


#: Keys that differ from run to run without the run being different; ``--snapshot-update``
#: does not rewrite a baseline for them alone.
VOLATILE_KEYS = ("date", "train_runtime")


_DECIMALS = 6

#: How a baseline file that cannot be used is fixed.
FIX = "fix it, or delete it and record it again with --snapshot-update"
#: The key of a baseline file's entries per hardware class (see :mod:`.classes`).
CLASSES = "hardware_classes"


class BaselineError(FinetuneError):
    """A baseline file that cannot be used; the message names the file and what is wrong."""


def result_record(result: FinetuneResult, rootdir: Path) -> dict[str, Any]:
    """What a baseline stores for a fine-tune (without the date): also, where known, the
    metrics' bootstrap ``intervals``, the validation ``examples`` the run got wrong (by
    ``idx``, for the paired test; a regression's: the absolute error of each, in ``idx`` order), the
    ``validation_id`` naming those examples by content and the ``calibration`` over seeds. The recipe's data is
    the data the trainer held (see :attr:`~pytest_finetune.result.FinetuneResult.trained_data`)."""
    recipe = recipe_record(result.recipe, rootdir)
    if result.trained_data is not None:
        recipe["data"], recipe["data_id"] = result.trained_data
    record: dict[str, Any] = {
        "format": FORMAT,
        "recipe": recipe,
        "metrics": _rounded(result.metrics),
        "history": [_history_row(row) for row in result.history],
        "environment": result.environment,
        "train_runtime": round(result.train_runtime, 1),
    }
    if result.intervals:
        record["intervals"] = {
            name: [round(bound, _DECIMALS) for bound in pair] for name, pair in result.intervals.items()
        }
    wrong, errors = result.wrong_examples, result.absolute_errors
    if result.example_ids is not None and (wrong is not None or errors is not None):
        ids = [int(idx) for idx in result.example_ids]
        record["examples"] = {"count": len(ids), "digest": examples_digest(ids)}
        if wrong is not None:
            record["examples"]["wrong"] = wrong
        if errors is not None:
            record["examples"]["abs_errors"] = [round(error, _DECIMALS) for error in errors]
    if result.validation_id is not None:
        record["validation_id"] = result.validation_id
    if result.calibration:
        record["calibration"] = {
            "seeds": result.calibration["seeds"],
            "metrics": {name: _rounded(spread) for name, spread in result.calibration["metrics"].items()},
        }
    return record


def recipe_record(recipe: Recipe, rootdir: Path) -> dict[str, Any]:
    """The recipe as a baseline shows it: model and data by display name and by identity."""
    from ..data import data_identity  # datasets: imported once a fine-tune records its data

    return {
        "task": recipe.task,
        "model": display_source(recipe.model, rootdir),
        "model_id": source_identity(recipe.model),
        "data": display_source(recipe.data_source, rootdir),
        "data_id": data_identity(recipe.data_source),
        "seed": recipe.seed,
        "training_args": dict(sorted(recipe.defining_training_args.items())),
        **recipe.custom_task_fields,
    }


def metrics_record(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """What a baseline stores for a plain dict of metrics (``trainer.evaluate()``'s, say)."""
    from ..metrics import final_metrics  # numpy: imported once a fine-tune compares

    values = final_metrics({name: _number(value, f"metric {name!r}") for name, value in metrics.items()})
    check_storable(values)
    return {"format": FORMAT, "metrics": _rounded(values)}


def load_json(text: str, location: str) -> dict[str, Any]:
    """A baseline file's JSON object, refused (a :class:`BaselineError`) when it is not one, or has a key twice in
    one object."""

    def one_value_per_key(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        """An object of the file, refused when it has a key twice (JSON keeps the last; a reader may see another)."""
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise BaselineError(
                    f"baseline {location} has the key {key!r} twice in one object (a reader may read one value of "
                    f"it, the gate another); {FIX}"
                )
            seen.add(key)
        return dict(pairs)

    try:
        loaded = json.loads(text, object_pairs_hook=one_value_per_key)
    except (ValueError, RecursionError) as error:  # ValueError: JSONDecodeError, or an integer of 4300+ digits
        raise BaselineError(f"baseline {location} is not valid JSON ({str(error)[:200]}); {FIX}") from None
    if not isinstance(loaded, dict):
        raise BaselineError(f'baseline {location} has no "metrics" object; {FIX}')
    return loaded


def parse_baseline(
    text: str, location: str, gated: tuple[str, ...], example_ids: Sequence[int] | None = None
) -> dict[str, Any]:
    """A stored record, checked: a JSON object without a key twice in one object, whose ``metrics`` are finite
    numbers (:data:`FRACTIONS` in [0, 1]), including every gated metric; whose ``history`` holds finite numbers or
    nulls; whose ``examples`` got wrong are distinct and no more than its ``count``, and among ``example_ids`` (the
    run's validation examples, where known) when the baseline's digest names those; whose calibration's seeds are
    distinct and its spreads possible (:func:`_check_calibration`). Anything else is a :class:`BaselineError`."""
    record = load_json(text, location)
    if CLASSES in record:
        raise BaselineError(
            f'baseline {location} holds baselines per hardware class (its "{CLASSES}"): compare with '
            "this hardware's own with finetune_baseline_classes = hardware in the ini file (or "
            "--finetune-baseline-classes hardware)"
        )
    if not isinstance(record.get("metrics"), dict):
        raise BaselineError(f'baseline {location} has no "metrics" object; {FIX}')
    if not is_count(record.get("format", FORMAT)):
        raise BaselineError(
            f'baseline {location}: "format" is {json.dumps(record["format"])[:40]}, not an integer; {FIX}'
        )
    if record.get("format", FORMAT) != FORMAT:
        raise BaselineError(
            f'baseline {location} is in format {json.dumps(record["format"])[:40]}, and this pytest-finetune reads '
            f"format {FORMAT}: use the pytest-finetune that recorded it, or record it again with --snapshot-update"
        )
    for name, value in record["metrics"].items():
        problem = metric_problem(name, value)
        if problem:
            raise BaselineError(f"baseline {location}: metric {name!r} is {problem}; {FIX}")
    missing = [name for name in gated if name not in record["metrics"]]
    if missing:
        raise BaselineError(f"baseline {location} lacks the gated metric(s) {', '.join(missing)}; {FIX}")
    if not isinstance(record.get("recipe", {}), dict):
        raise BaselineError(f'baseline {location}: "recipe" is not an object; {FIX}')
    if not isinstance(record.get("recipe", {}).get("training_args", {}), dict):
        raise BaselineError(f'baseline {location}: "recipe"."training_args" is not an object; {FIX}')
    if not isinstance(record.get("environment", {}), dict | None):
        raise BaselineError(f'baseline {location}: "environment" is not an object; {FIX}')
    if not isinstance(record.get("intervals", {}), dict):
        raise BaselineError(f'baseline {location}: "intervals" is not an object; {FIX}')
    if not isinstance(record.get("validation_id", ""), str):
        raise BaselineError(f'baseline {location}: "validation_id" is not a string; {FIX}')
    history = record.get("history", [])
    if not isinstance(history, list) or not all(isinstance(row, dict) for row in history):
        raise BaselineError(f'baseline {location}: "history" is not a list of objects (one per epoch); {FIX}')
    for number, row in enumerate(history, start=1):
        for name, value in row.items():
            if value is not None and not is_finite_number(value):
                raise BaselineError(
                    f'baseline {location}: "history" row {number}: {name!r} is {shown(value)}, not a finite number '
                    f"or null; {FIX}"
                )
    _check_examples(record.get("examples"), location, FIX, example_ids)
    _check_calibration(record, location, FIX)
    return record


def _check_examples(examples: Any, location: str, fix: str, example_ids: Sequence[int] | None) -> None:
    """``examples`` is ``{"count", "digest", "wrong"}``, ``wrong`` distinct ids, at most ``count``, and
    among ``example_ids`` when ``digest`` names them."""
    if examples is None:
        return
    if (
        not isinstance(examples, dict)
        or not isinstance(examples.get("digest"), str)
        or not is_count(examples.get("count"))
        or not isinstance(examples.get("wrong", []), list)
        or not all(is_count(idx) for idx in examples.get("wrong", []))
        or ("wrong" in examples) == ("abs_errors" in examples)
    ):
        raise BaselineError(
            f'baseline {location}: "examples" is not {{"count": int, "digest": str, "wrong": [idx, ...]}} (or, for a '
            f'regression, "abs_errors": [number, ...] in place of "wrong"); {fix}'
        )
    if "abs_errors" in examples:
        _check_errors(examples["abs_errors"], examples["count"], location, fix)
    wrong, count = examples.get("wrong", []), examples["count"]
    if len(set(wrong)) != len(wrong) or len(wrong) > count:
        raise BaselineError(
            f'baseline {location}: "examples"."wrong" lists {len(wrong)} ids, {len(set(wrong))} of them distinct, '
            f'of {count} examples ("count"): it lists each example the run got wrong once; {fix}'
        )
    if example_ids is None or examples["digest"] != examples_digest(example_ids):
        return
    unknown = sorted(set(wrong) - {int(idx) for idx in example_ids})
    if unknown:
        shown = ", ".join(map(str, unknown[:5])) + (", ..." if len(unknown) > 5 else "")
        raise BaselineError(
            f'baseline {location}: "examples"."wrong" lists ids that are not among the validation examples its '
            f'"digest" names ({shown}); {fix}'
        )
    if count != len(example_ids):
        raise BaselineError(
            f'baseline {location}: "examples"."count" is {count}, and its "digest" names {len(example_ids)} '
            f"validation examples; {fix}"
        )


def _check_errors(errors: Any, count: int, location: str, fix: str) -> None:
    """A regression's ``abs_errors``: one finite number of 0 or more per example (``count``)."""
    if not isinstance(errors, list) or len(errors) != count:
        raise BaselineError(
            f'baseline {location}: "examples"."abs_errors" is not a list of {count} absolute errors, one per example '
            f'("count"); {fix}'
        )
    bad = next((error for error in errors if not is_finite_number(error) or error < 0), None)
    if bad is not None:
        raise BaselineError(
            f'baseline {location}: "examples"."abs_errors" holds {shown(bad)}, not an absolute error (a finite number '
            f"of 0 or more); {fix}"
        )


def _check_calibration(record: dict[str, Any], location: str, fix: str) -> None:
    """A calibration is the recipe's seed and others, and per metric mean/std/min/max, all finite, whose mean, min
    and max the metric may have (:func:`metric_problem`), mean between min and max, and std no more than values
    between them have over that many seeds."""
    calibration = record.get("calibration")
    if calibration is None:
        return
    fix = "record it again: pytest --finetune --snapshot-update --finetune-calibrate N"
    seeds = calibration.get("seeds") if isinstance(calibration, dict) else None
    spreads = calibration.get("metrics") if isinstance(calibration, dict) else None
    if (
        not isinstance(seeds, list)
        or len(seeds) < 2
        or not all(isinstance(seed, int) and not isinstance(seed, bool) for seed in seeds)
        or len(set(seeds)) != len(seeds)
        or not isinstance(spreads, dict)
        or not all(
            isinstance(spread, dict)
            and all(is_finite_number(spread.get(key)) for key in ("mean", "std", "min", "max"))
            and spread["std"] >= 0
            for spread in spreads.values()
        )
    ):
        raise BaselineError(
            f'baseline {location}: "calibration" is not {{"seeds": [2 or more distinct ints], "metrics": '
            f'{{metric: {{"mean", "std", "min", "max"}}}}}}; {fix}'
        )
    seed = record.get("recipe", {}).get("seed")
    if seed is not None and seed not in seeds:
        raise BaselineError(
            f"baseline {location}: its calibration used seeds {', '.join(map(str, seeds))}, not the recipe's "
            f"seed {seed}; {fix}"
        )
    for name, spread in spreads.items():
        for key in ("mean", "min", "max"):
            problem = metric_problem(name, spread[key])
            if problem:
                raise BaselineError(f"baseline {location}: the calibration's {key} of {name!r} is {problem}; {fix}")
        if not spread["min"] <= spread["mean"] <= spread["max"]:
            raise BaselineError(
                f"baseline {location}: the calibration's mean of {name!r}, {spread['mean']:g}, is not between its "
                f"min {spread['min']:g} and max {spread['max']:g}; {fix}"
            )
        # n values in [min, max] have a sample std of at most (max - min) / 2 * sqrt(n / (n - 1)); each is rounded
        largest = (spread["max"] - spread["min"]) / 2 * math.sqrt(len(seeds) / (len(seeds) - 1))
        if spread["std"] > largest + 2 * 10**-_DECIMALS:
            raise BaselineError(
                f"baseline {location}: the calibration's std of {name!r}, {spread['std']:g}, is more than "
                f"{len(seeds)} values from {spread['min']:g} to {spread['max']:g} can have ({largest:.6f}); {fix}"
            )


def with_stored_calibration(record: dict[str, Any], stored_text: str | None) -> dict[str, Any]:
    """``record`` (a run that did not calibrate) with the stored baseline's calibration when it
    still applies: a readable baseline of the same recipe, on the same validation examples.

    So an unchanged run leaves a calibrated baseline as it is, and a changed one keeps it.
    """
    if "calibration" in record or stored_text is None:
        return record
    try:
        stored = parse_baseline(stored_text, "(stored)", ())
    except BaselineError:
        return record
    same_examples = (record.get("examples") or {}).get("digest") == (stored.get("examples") or {}).get("digest")
    same_recipe = "recipe" in stored and not recipe_changes(record["recipe"], stored["recipe"])
    if "calibration" not in stored or not same_examples or not same_recipe:
        return record
    return {**record, "calibration": stored["calibration"]}


def check_gated_metrics(metrics: Mapping[str, Any], tolerances: Tolerances) -> None:
    """A :class:`FinetuneError` when the run has no value for a metric a tolerance gates: one of
    :data:`~pytest_finetune.tolerances.DEFAULT_TOLERANCES`, always gated, that ``compute_metrics`` did not
    return; or one a setting names that the run never produces (a typo, a metric of another flow)."""
    from ..metrics import COMPUTE_METRICS, METRICS_HOOK  # numpy: imported once a fine-tune compares

    produced = f"(its metrics: {', '.join(sorted(metrics))})"
    missing = [name for name in tolerances.metrics if name not in metrics]
    always = ", ".join(name for name in missing if name in DEFAULT_TOLERANCES)
    named = ", ".join(name for name in missing if name not in DEFAULT_TOLERANCES)
    problems = []
    if always:
        problems.append(
            f"the run produced no metric {always} {produced}, and {' and '.join(DEFAULT_TOLERANCES)} are always "
            f"gated: the {COMPUTE_METRICS} must return them, from a validation split that has rows"
        )
    if named:
        problems.append(
            f"the run produced no metric {named} {produced}, yet a tolerance gates it: drop the tolerance of {named} "
            "or fix the metric's name where it is set (ini finetune_tolerance, --finetune-tolerance or the test's "
            "finetune marker; or its floor or relative threshold: finetune_floor, finetune_relative); a metric of a "
            f"{METRICS_HOOK} is there once the hook returns it"
        )
    if problems:
        raise FinetuneError("; ".join(problems))


def check_recordable(metrics: Mapping[str, float], tolerances: Tolerances, collapsed: str | None) -> None:
    """A :class:`FinetuneError` refusing to record a run as a baseline: one below a floor, or whose model collapsed
    to one class (``collapsed`` says how), would let every later run as bad pass."""
    problems = [f"it is {rule}" for rule in tolerances.broken_floors(metrics)]
    problems += [f"it collapsed: {collapsed}"] if collapsed else []
    if problems:
        raise FinetuneError(
            f"the run is not recorded as a baseline: {'; '.join(problems)}; fix the recipe, or lower the floor "
            "(ini finetune_floor, --finetune-floor, marker floor=) or the guard (ini finetune_collapse_guard, marker "
            "collapse_guard=) if the run is as intended; the stored baseline, if any, is kept"
        )


def check_recipe_recorded(current: Mapping[str, Any], baseline: Mapping[str, Any], location: str) -> None:
    """A :class:`BaselineError` for a baseline without a recipe (recorded from a dict of metrics, such as
    ``trainer.evaluate()``'s) compared with a fine-tune's result, whose recipe it could not check."""
    if "recipe" in current and "recipe" not in baseline:
        raise BaselineError(
            f"baseline {location} records no recipe (it was recorded from a dict of metrics), so this fine-tune's "
            "recipe cannot be checked against it: record it again with --snapshot-update"
        )


def same_record(current: Mapping[str, Any], stored: Mapping[str, Any]) -> bool:
    """Equal but for :data:`VOLATILE_KEYS`: ``--snapshot-update`` leaves such a baseline alone."""

    def stable(record: Mapping[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in record.items() if key not in VOLATILE_KEYS}

    return stable(current) == stable(stored)


@dataclasses.dataclass(frozen=True)
class BaselineSettings:
    """What a :class:`BaselineExtension` needs to know of the session."""

    tolerances: Tolerances = Tolerances()
    #: The paired test's significance level.
    alpha: float = DEFAULT_ALPHA
    #: ``finetune_strict_recipe``: a changed recipe fails even where quality held.
    strict_recipe: bool = False
    #: Whether baselines are written (syrupy's ``--snapshot-update``).
    update: bool = False
    #: The baseline folder.
    root: Path = Path("baselines")
    #: pytest's rootdir: test modules' paths are mirrored relative to it.
    rootdir: Path = Path(".")
    #: Where pytest was started: messages show paths relative to it.
    invocation_dir: Path = Path(".")
    #: The collapsed-model guard: the share of one predicted class that fails a run (``None``: off).
    collapse_guard: float | None = None
    #: ``--finetune-warn-only``: quality verdicts (:data:`~pytest_finetune.verdicts.WARNABLE`) warn, not fail.
    warn_only: bool = False
    #: ``finetune_baseline_classes = hardware``: a baseline file holds one entry per hardware class (see ``classes``).
    hardware_classes: bool = False


def to_json(record: Mapping[str, Any]) -> str:
    """Baseline JSON: keys sorted, two-space indent, a final newline."""
    return json.dumps(record, sort_keys=True, indent=2, allow_nan=False) + "\n"


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise TypeError(f"finetune_snapshot: {what} is {value!r}, not a number")
    return float(value)


def check_storable(metrics: Mapping[str, float]) -> None:
    """A :class:`BaselineError` for a run's metric that no baseline may hold (nothing is compared or
    stored): one that is not finite, of the plugin's own (training diverged) or another (a hook or
    ``compute_metrics`` returned it), or one of :data:`FRACTIONS` outside [0, 1]."""
    from ..metrics import COMPUTE_METRICS, METRICS_HOOK  # numpy: imported once a fine-tune compares

    broken = ", ".join(f"{name}={value}" for name, value in metrics.items() if not math.isfinite(value))
    if broken and any(not math.isfinite(metrics.get(name, 0.0)) for name in OWN_METRICS):
        raise BaselineError(
            f"the run's metrics are not finite ({broken}): training diverged; nothing was compared or stored"
        )
    if broken:
        raise BaselineError(
            f"the run's metrics are not finite ({broken}): a {METRICS_HOOK} or {COMPUTE_METRICS} returned that, "
            "and a baseline holds finite numbers only; return one, such as 0.0 for a ratio of 0/0; "
            "nothing was compared or stored"
        )
    for name in FRACTIONS:
        if not 0 <= metrics.get(name, 0.0) <= 1:
            raise BaselineError(
                f"the run's {name} is {metrics[name]:g}, outside [0, 1] where {' and '.join(FRACTIONS)} lie: give it "
                f"as a fraction (0.83, not 83) where it is computed ({COMPUTE_METRICS}), or another name; "
                "nothing was compared or stored"
            )


def _history_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """One evaluation of the history as stored: rounded, with null for a score a hook or ``compute_metrics``
    gave no finite value then (a ratio of 0/0 before the model predicts a class; the final metrics must be
    finite)."""
    from ..metrics import HISTORY_LOSS_KEYS  # numpy: imported once a fine-tune compares

    return {
        name: None if name not in HISTORY_LOSS_KEYS and isinstance(value, float) and not math.isfinite(value) else value
        for name, value in _rounded(row).items()
    }


def _rounded(values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: round(value, _DECIMALS) if isinstance(value, float) else value for name, value in values.items()}
