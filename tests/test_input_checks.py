"""Checks of what a user or a hand edit gives: a baseline's calibration within what its metrics can be, and
tolerances a bounded metric can use (issue #23). Sessions meeting them are in tests/test_bad_inputs.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pytest_finetune.baselines import BaselineError, parse_baseline
from pytest_finetune.errors import FinetuneError
from pytest_finetune.stats import calibration_record
from pytest_finetune.tolerances import check_setting, parse_setting

LOCATION = "baselines/test_x/test_a.json"
FIX = "record it again: pytest --finetune --snapshot-update --finetune-calibrate N"


def calibrated(spreads: dict[str, Any], seeds: list[int] | None = None) -> str:
    """A baseline's text whose calibration holds ``spreads`` over ``seeds`` (three by default)."""
    seeds = seeds or [42, 43, 44]
    record = {"metrics": {"accuracy": 0.8, "f1": 0.8}, "calibration": {"seeds": seeds, "metrics": spreads}}
    return json.dumps(record)


@pytest.mark.parametrize(
    ("spread", "problem"),
    [
        (
            {"mean": 7.0, "std": 5.0, "min": 2.0, "max": 12.0},
            "the calibration's mean of 'accuracy' is 7, outside [0, 1]",
        ),
        ({"mean": 0.8, "std": 0.01, "min": -0.5, "max": 0.9}, "the calibration's min of 'accuracy' is -0.5, outside"),
        ({"mean": 0.95, "std": 0.01, "min": 0.8, "max": 0.9}, "mean of 'accuracy', 0.95, is not between its min 0.8"),
        # three values from 0.8 to 0.9 have a std of at most 0.05 x sqrt(3 / 2) = 0.061
        ({"mean": 0.85, "std": 0.07, "min": 0.8, "max": 0.9}, "std of 'accuracy', 0.07, is more than 3 values from"),
        ({"mean": 0.85, "std": 0.5, "min": 0.85, "max": 0.85}, "std of 'accuracy', 0.5, is more than 3 values from"),
    ],
    ids=["mean-7-std-5", "min-below-0", "mean-beyond-max", "std-beyond-the-spread", "std-of-equal-values"],
)
def test_an_impossible_calibration_is_refused_naming_the_metric(spread: dict[str, float], problem: str) -> None:
    with pytest.raises(BaselineError) as raised:
        parse_baseline(calibrated({"accuracy": spread}), LOCATION, ())
    assert str(raised.value).startswith(f"baseline {LOCATION}: ")
    assert problem in str(raised.value) and str(raised.value).endswith(FIX)


def test_the_calibration_of_an_unbounded_metric_is_checked_against_its_min_and_max() -> None:
    loss = {"mean": 7.0, "std": 5.0, "min": 2.0, "max": 12.0}  # a loss of 7 is possible, a std of 5 too
    assert parse_baseline(calibrated({"eval_loss": loss}), LOCATION, ())["calibration"]["metrics"]["eval_loss"] == loss
    with pytest.raises(
        BaselineError, match=r"std of .eval_loss., 7, is more than 3 values from 2 to 12 can have \(6\.123724\)"
    ):
        parse_baseline(calibrated({"eval_loss": {**loss, "std": 7.0}}), LOCATION, ())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=1), min_size=2, max_size=9))
@example([0.0, 1.0])
@example([1.0, 0.0, 1.0, 0.0])
@example([0.0, 1.0, 1.0])
def test_every_calibration_a_run_records_is_accepted(values: list[float]) -> None:
    """The spread of any accuracies over seeds, rounded as stored (the widest: half at 0, half at 1) passes."""
    seeds = list(range(len(values)))
    spreads = calibration_record(seeds, [{"accuracy": value} for value in values])["metrics"]
    stored = {name: {key: round(number, 6) for key, number in spread.items()} for name, spread in spreads.items()}
    parse_baseline(calibrated(stored, seeds), LOCATION, ())


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (1.5, "here: tolerance is 1.5, and accuracy and f1 lie in [0, 1], so it would allow any change"),
        ({"accuracy": 1.5}, "here: tolerance of 'accuracy' is 1.5, and accuracy lies in [0, 1]"),
        ({"f1": 2, "eval_loss": 0.1}, "here: tolerance of 'f1' is 2, and f1 lies in [0, 1]"),
    ],
    ids=["every-metric", "accuracy", "f1"],
)
def test_a_tolerance_a_fraction_cannot_move_is_refused(setting: Any, message: str) -> None:
    with pytest.raises(FinetuneError) as raised:
        check_setting(setting, "here")
    assert message in str(raised.value)
    assert str(raised.value).endswith("give an absolute change of at most 1, as a fraction (0.015 for 1.5 points)")


def test_a_tolerance_beyond_1_of_an_unbounded_metric_or_of_1_is_kept() -> None:
    assert check_setting({"eval_loss": 1.5}, "here") == {"eval_loss": 1.5}
    assert check_setting(1, "here") == 1.0
    assert parse_setting("accuracy=auto", "here") == {"accuracy": "auto"}
