"""Property tests: whatever a baseline file holds, the gate gives a verdict or a clear
:class:`BaselineError`, never another exception and never a pass for garbage; and the
tolerance comparison keeps its promises for any finite numbers.

Driven through the public functions (``parse_baseline``, ``compare``, ``Outcome``,
``BaselineExtension.matches``), so that new optional record fields do not break them.
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pytest_finetune.baselines import BaselineError, BaselineExtension, BaselineSettings, parse_baseline
from pytest_finetune.tolerances import DEFAULT_TOLERANCES, Tolerances, build_tolerances
from pytest_finetune.verdicts import Outcome, Verdict, compare

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
GATED = tuple(sorted(DEFAULT_TOLERANCES))
LOCATION = "baselines/test_x/test_a.json"
DEFAULTS = Tolerances()

#: A run's record as the plugin makes it (the current side of every comparison).
RECIPE = {
    "task": "mrpc",
    "model": ".../tiny-bert",
    "model_id": "sha256:" + "0" * 64,
    "data": ".../mrpc",
    "data_id": "sha256:" + "1" * 64,
    "seed": 42,
    "training_args": {"learning_rate": 5e-05, "max_steps": 4},
}
CURRENT = {
    "format": 1,
    "recipe": RECIPE,
    "metrics": {"accuracy": 0.75, "f1": 0.8, "eval_loss": 0.5},
    "history": [{"epoch": 1.0, "accuracy": 0.75, "f1": 0.8, "training_loss": 0.6, "validation_loss": 0.5, "step": 4}],
    "environment": {"device": "cpu", "dtype": "float32", "python": "3.11"},
    "train_runtime": 1.0,
    "date": "2025-01-01",
}

# Arbitrary JSON values, with the numbers JSON can spell: huge, tiny, negative, NaN and infinities
# (Python's json reads NaN and Infinity), and integers longer than Python converts by default.
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(),
    st.sampled_from([10**400, -(10**400), 2**63, 1e308, -1e308, 5e-324]),
)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def near_valid_records() -> st.SearchStrategy[dict[str, Any]]:
    """Records shaped like baselines, each part either right or replaced by any JSON value:
    metrics of any numbers, missing keys, wrong types in the recipe, history, environment and the
    optional fields (intervals, examples, calibration)."""
    metric = st.one_of(numbers, json_values)
    metrics = st.dictionaries(st.sampled_from([*GATED, "eval_loss", "other"]), metric, max_size=4) | json_values
    training_args = st.just(RECIPE["training_args"]) | st.dictionaries(st.text(max_size=5), json_values) | json_values
    recipe_parts = {key: st.just(value) | json_values for key, value in RECIPE.items() if key != "training_args"}
    recipe = st.fixed_dictionaries({}, optional={**recipe_parts, "training_args": training_args})
    optional = {
        "recipe": recipe | json_values,
        "history": st.lists(st.dictionaries(st.text(max_size=5), json_values, max_size=3), max_size=2) | json_values,
        "environment": st.just(CURRENT["environment"])
        | st.dictionaries(st.text(max_size=6), json_values)
        | json_values,
        "format": json_values,
        "date": json_values,
        "train_runtime": json_values,
        "intervals": st.dictionaries(st.sampled_from(GATED), json_values) | json_values,
        "examples": st.fixed_dictionaries({"count": json_values, "digest": json_values, "wrong": json_values})
        | json_values,
        "calibration": st.fixed_dictionaries({"seeds": json_values, "metrics": json_values}) | json_values,
    }
    return st.fixed_dictionaries({}, optional={"metrics": metrics, **optional})


def verdict_or_baseline_error(text: str, tolerances: Tolerances = DEFAULTS) -> Verdict | BaselineError:
    """What the gate makes of ``text`` as a baseline for :data:`CURRENT`; any other exception fails."""
    try:
        baseline = parse_baseline(text, LOCATION, tolerances.metrics)
    except BaselineError as error:
        assert LOCATION in str(error)  # the message names the file
        return error
    verdict = compare(CURRENT, baseline, tolerances)
    assert isinstance(verdict.outcome, Outcome)
    if not verdict.outcome.failed:  # a pass or an improvement: the baseline held real, finite gated metrics
        for name in tolerances.metrics:
            value = baseline["metrics"][name]
            assert not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
    return verdict


def dumps(value: Any) -> str:
    """JSON as a hand-edited file may hold it: NaN and Infinity spelled out."""
    return json.dumps(value, allow_nan=True)


@FAST
@given(st.binary(max_size=300))
@example(b"")
@example(b"\xff\xfe{")
@example(b'{"metrics": {"accuracy": 0.75, "f1": 0.8}}')
def test_any_bytes(data: bytes) -> None:
    """Bytes as the extension reads them (UTF-8, undecodable bytes replaced)."""
    verdict_or_baseline_error(data.decode("utf-8", errors="replace"))


@FAST
@given(st.text(max_size=300))
@example("NaN")
@example("[" * 100_000)  # deeper than Python's JSON decoder recurses
@example('{"metrics": {"accuracy": 1' + "0" * 5000 + ', "f1": 0.8}}')  # past int's digit limit
def test_any_text(text: str) -> None:
    verdict_or_baseline_error(text)


@FAST
@given(json_values)
@example({"metrics": {"accuracy": 10**400, "f1": 0.8}})  # an integer too large for a float
@example({"metrics": {"accuracy": float("nan"), "f1": 0.8}})
@example({"metrics": {"accuracy": True, "f1": 0.8}})
def test_any_json_value(value: Any) -> None:
    verdict_or_baseline_error(dumps(value))


@FAST
@given(near_valid_records(), st.sampled_from([Tolerances(), build_tolerances([{"eval_loss": 0.05}], strict=True)]))
@example({"metrics": {"accuracy": 0.75, "f1": 0.8}, "recipe": {**RECIPE, "training_args": [1]}}, Tolerances())
@example({"metrics": {"accuracy": 0.75, "f1": 0.8}, "environment": ["cpu"]}, Tolerances())
@example({"metrics": {"accuracy": 0.75, "f1": 0.8}, "environment": "cpu"}, Tolerances())
@example({"metrics": {"accuracy": 0.75, "f1": 0.8}, "recipe": None, "environment": None}, Tolerances())
def test_near_valid_records(record: dict[str, Any], tolerances: Tolerances) -> None:
    verdict_or_baseline_error(dumps(record), tolerances)


@FAST
@given(
    st.binary(max_size=200)
    | json_values.map(lambda value: dumps(value).encode())
    | near_valid_records().map(lambda record: dumps(record).encode())
)
def test_the_extension_matches_or_reports_a_problem(data: bytes) -> None:
    """syrupy's side: ``matches`` answers True or False for any file; False for an unusable file
    (with the problem kept for the message), True only for a usable baseline the run holds."""
    extension = BaselineExtension.configured(BaselineSettings())()
    matched = extension.matches(
        serialized_data=json.dumps(CURRENT), snapshot_data=data.decode("utf-8", errors="replace")
    )
    assert isinstance(matched, bool)
    if extension.problem is not None:
        assert isinstance(extension.problem, BaselineError) and not matched
    if matched:
        assert extension.verdict is not None and not extension.verdict.outcome.failed


# Tolerance properties, for finite numbers in the range metrics live in (well away from the
# tolerance itself, where 6-decimal rounding decides).
values = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
amounts = st.floats(min_value=0, max_value=10, allow_nan=False, allow_infinity=False)
MARGIN = 1e-6


def one_metric(name: str, baseline: float, current: float, amount: float, strict: bool = False) -> Verdict:
    tolerances = build_tolerances([{name: amount}], strict=strict)
    other = {gated: 0.5 for gated in GATED if gated != name}
    return compare({"metrics": {**other, name: current}}, {"metrics": {**other, name: baseline}}, tolerances)


@FAST
@given(values, values, amounts, st.sampled_from(["accuracy", "f1", "positive_rate"]))
def test_a_score_fails_only_on_a_drop_beyond_its_tolerance(
    baseline: float, current: float, amount: float, name: str
) -> None:
    delta = current - baseline
    outcome = one_metric(name, baseline, current, amount).outcome
    if -delta > amount + MARGIN:
        assert outcome == Outcome.REGRESSED
    elif delta > amount + MARGIN:
        assert outcome == Outcome.IMPROVED
    elif abs(delta) < amount - MARGIN:
        assert outcome == Outcome.PASSED
    if -delta <= amount - MARGIN:
        assert not outcome.failed


@FAST
@given(values, values, amounts, st.sampled_from(["eval_loss", "loss", "train_loss"]))
def test_a_loss_fails_only_on_a_rise_beyond_its_tolerance(
    baseline: float, current: float, amount: float, name: str
) -> None:
    delta = current - baseline
    outcome = one_metric(name, baseline, current, amount).outcome
    if delta > amount + MARGIN:
        assert outcome == Outcome.REGRESSED
    elif -delta > amount + MARGIN:
        assert outcome == Outcome.IMPROVED
    elif abs(delta) < amount - MARGIN:
        assert outcome == Outcome.PASSED
    if delta <= amount - MARGIN:
        assert not outcome.failed


@FAST
@given(values, values, amounts, st.sampled_from(["accuracy", "f1", "eval_loss"]))
def test_strict_fails_a_move_beyond_tolerance_either_way(
    baseline: float, current: float, amount: float, name: str
) -> None:
    delta = current - baseline
    outcome = one_metric(name, baseline, current, amount, strict=True).outcome
    if abs(delta) > amount + MARGIN:
        assert outcome == Outcome.CHANGED and outcome.failed
    elif abs(delta) < amount - MARGIN:
        assert outcome == Outcome.PASSED


@FAST
@given(values, amounts, st.sampled_from(["accuracy", "eval_loss"]))
def test_a_missing_gated_metric_is_never_a_pass(baseline: float, amount: float, name: str) -> None:
    tolerances = build_tolerances([{name: amount}])
    other = {gated: 0.5 for gated in GATED if gated != name}
    verdict = compare({"metrics": other}, {"metrics": {**other, name: baseline}}, tolerances)
    assert verdict.outcome == Outcome.MISSING_METRIC and verdict.outcome.failed
