"""The reports follow pytest's outcome of each test: a failure after the comparison, xfail,
a teardown failure; an error keeps its run's record, a NaN is JSON's null, shared training says so."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

AFTER_COMPARING = """
import pytest

@pytest.fixture
def broken_teardown():
    yield
    raise RuntimeError("teardown broke")

@pytest.mark.finetune
def test_assert_after(finetune_result, finetune_snapshot):
    assert finetune_result == finetune_snapshot
    assert finetune_result.metrics["accuracy"] > 2, "my own quality bar"

@pytest.mark.finetune
def test_raise_after(finetune_result, finetune_snapshot):
    assert finetune_result == finetune_snapshot
    raise RuntimeError("post-check failed")

@pytest.mark.finetune
def test_teardown_fails(broken_teardown):
    pass

@pytest.mark.xfail(reason="known regression")
@pytest.mark.finetune
def test_xfail_regress():
    pass

@pytest.mark.xfail(reason="should regress", strict=True)
@pytest.mark.finetune
def test_xpass_strict():
    pass

@pytest.mark.finetune
def test_steady():
    pass
"""


@pytest.fixture
def recorded(finetune_project: pytest.Pytester) -> pytest.Pytester:
    """The tests of :data:`AFTER_COMPARING` with their baselines; ``test_xfail_regress``'s is 0.2 too high."""
    finetune_project.makepyfile(test_after=AFTER_COMPARING)
    finetune_project.runpytest("--finetune", "--snapshot-update")
    path = finetune_project.path / "baselines/test_after/test_xfail_regress.json"
    record = json.loads(path.read_text())
    record["metrics"]["accuracy"] += 0.2
    path.write_text(json.dumps(record))
    return finetune_project


def report_by_name(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The JSON report's summary and its tests by function name."""
    report = json.loads(path.read_text())
    return report["summary"], {test["test"].split("::")[-1]: test for test in report["tests"]}


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_reports_follow_pytests_outcome(recorded: pytest.Pytester, workers: list[str]) -> None:
    result = recorded.runpytest(
        "--finetune", "--finetune-report=r.json", "--finetune-report-md=r.md", "--junitxml=j.xml", *workers
    )
    result.assert_outcomes(passed=2, failed=3, errors=1, xfailed=1)
    result.stdout.fnmatch_lines(["*- fine-tuning baselines -*"])
    result.stdout.fnmatch_lines(["test_after.py::test_assert_after*tiny-bert*(+0.0000)*failed after comparing*"])
    result.stdout.fnmatch_lines(["test_after.py::test_xfail_regress*tiny-bert*(-0.2000)*xfailed*"])

    summary, tests = report_by_name(recorded.path / "r.json")
    assert summary == {"failed after comparing": 4, "xfailed": 1, "passed": 1}
    expected = {
        "test_assert_after": "(call): AssertionError: my own quality bar",
        "test_raise_after": "(call): RuntimeError: post-check failed",
        "test_teardown_fails": "(teardown): RuntimeError: teardown broke",
        "test_xpass_strict": "(call): [XPASS(strict)] should regress",
    }
    for name, reason in expected.items():
        test = tests[name]
        assert (test["outcome"], test["failed"], test["compared"]) == ("failed after comparing", True, "passed")
        assert test["message"] == f"test_after.py::{name}: failed after comparing {reason}; the comparison: passed"
        assert test["metrics"]["accuracy"]["delta"] == 0  # the comparison's values are kept
    xfailed = tests["test_xfail_regress"]
    assert (xfailed["outcome"], xfailed["failed"], xfailed["compared"]) == ("xfailed", False, "regressed")
    assert xfailed["message"].startswith("test_after.py::test_xfail_regress: xfailed (call): xfail: known regression")
    assert xfailed["metrics"]["accuracy"]["verdict"] == "regressed"
    assert (tests["test_steady"]["outcome"], tests["test_steady"]["failed"]) == ("passed", False)

    assert "6 test(s), 4 failed." in (recorded.path / "r.md").read_text()
    cases = {case.get("name"): case for case in ET.parse(recorded.path / "j.xml").iter("testcase")}
    for name, outcome in (("test_teardown_fails", "failed after comparing"), ("test_xfail_regress", "xfailed")):
        properties = [p.get("value") for p in cases[name].iter("property") if p.get("name") == "finetune.outcome"]
        assert properties == [outcome]


def test_xfailed_before_comparing_is_not_counted_failed(finetune_project: pytest.Pytester) -> None:
    finetune_project.makepyfile(test_x="""
        import pytest

        @pytest.mark.xfail(reason="no quality yet")
        @pytest.mark.finetune
        def test_weak(finetune_result):
            assert finetune_result.metrics["accuracy"] > 2
        """)
    result = finetune_project.runpytest("--finetune", "--snapshot-update", "--finetune-report=r.json")
    result.assert_outcomes(xfailed=1)
    summary, tests = report_by_name(finetune_project.path / "r.json")
    assert summary == {"xfailed": 1}
    assert (tests["test_weak"]["failed"], tests["test_weak"]["compared"]) == (False, "failed before comparing")


def test_an_error_keeps_the_runs_record_and_nan_is_null(finetune_project: pytest.Pytester) -> None:
    """A non-finite hook metric cannot be stored (outcome ``error``): the reports still show the
    run's model and metrics, and the JSON report is strict JSON (``null`` for NaN)."""
    finetune_project.makeconftest("""
        def pytest_finetune_metrics(recipe, logits, label_ids):
            return {"precision": float("nan")}
        """)
    finetune_project.makepyfile(test_nan="import pytest\n\n@pytest.mark.finetune\ndef test_gate():\n    pass\n")
    result = finetune_project.runpytest("--finetune", "--snapshot-update", "--finetune-report=r.json")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["test_nan.py::test_gate*tiny-bert*0.*0.*error*"])

    def refuse(constant: str) -> None:
        raise AssertionError(f"not JSON: {constant}")

    text = (finetune_project.path / "r.json").read_text()
    report = json.loads(text, parse_constant=refuse)
    (test,) = report["tests"]
    assert test["outcome"] == "error"
    assert test["record"]["recipe"]["model"].endswith("tiny-bert")
    assert test["record"]["metrics"]["precision"] is None
    assert not math.isnan(test["metrics"]["accuracy"]["current"])


def test_a_shared_fine_tune_shows_shared(finetune_project: pytest.Pytester) -> None:
    """Two tests of one recipe share one fine-tune: the second's train column says ``shared``, not
    the first's seconds again. (Needs ``FinetuneResult.shared_from``, set by the ``finetune_result`` fixture.)"""
    finetune_project.makepyfile(test_two="""
        import pytest

        @pytest.mark.finetune
        def test_first():
            pass

        @pytest.mark.finetune
        def test_second():
            pass
        """)
    result = finetune_project.runpytest(
        "--finetune", "--snapshot-update", "-p", "no:randomly", "--finetune-report=r.json", "--finetune-report-md=r.md"
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        ["test_two.py::test_first*recorded*[0-9] s", "test_two.py::test_second*recorded*shared"]
    )
    _, tests = report_by_name(finetune_project.path / "r.json")
    assert tests["test_first"]["shared_from"] is None
    assert tests["test_second"]["shared_from"] == "test_two.py::test_first"
    assert "| recorded | shared |" in (finetune_project.path / "r.md").read_text()


TWO_TESTS = """
import pytest

@pytest.mark.finetune
def test_a():
    pass

@pytest.mark.finetune
def test_b():
    pass
"""
#: The tests named in ``{broken}`` error at setup, after their baselines were set up: their trainer breaks.
TRAINER_BREAKS = """
import pytest

@pytest.fixture
def trainer(trainer, request):
    if request.node.name in {broken}:
        raise RuntimeError("no trainer today")
    return trainer
"""


BOTH_UPDATING = ({"test_a", "test_b"}, ["--snapshot-update"])


@pytest.mark.parametrize(
    ("workers", "runs"),
    [
        ([], [({"test_a", "test_b"}, []), BOTH_UPDATING, ({"test_b"}, [])]),
        (["-n", "2"], [BOTH_UPDATING]),  # the controller hears of the kept baselines from its workers
    ],
    ids=["serial", "xdist"],
)
def test_tests_that_error_before_comparing_are_not_counted_passed(
    finetune_project: pytest.Pytester, workers: list[str], runs: list[tuple[set[str], list[str]]]
) -> None:
    """syrupy counted the baselines the plugin keeps for tests that error at setup as "2 snapshots passed": its
    summary counts only what compared, the plugin's line says what was kept, and the baselines stay."""
    finetune_project.makepyfile(test_two=TWO_TESTS)
    finetune_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=2)
    baselines = {path: path.read_bytes() for path in (finetune_project.path / "baselines").rglob("*.json")}
    assert len(baselines) == 2
    for broken, update in runs:
        finetune_project.makeconftest(TRAINER_BREAKS.format(broken=sorted(broken)))
        result = finetune_project.runpytest("--finetune", *update, *workers)
        result.assert_outcomes(passed=2 - len(broken), errors=len(broken))
        if len(broken) < 2:
            result.stdout.fnmatch_lines(["1 snapshot passed."])
        else:
            result.stdout.no_fnmatch_line("*snapshot* passed*")
        result.stdout.no_fnmatch_line("*unused*")
        result.stdout.fnmatch_lines(
            [f"pytest-finetune: {len(broken)} baseline(s) kept as they are, not compared: their tests stopped *"]
        )
        assert {path: path.read_bytes() for path in baselines} == baselines
