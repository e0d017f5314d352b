"""The reports a CI job shows: the terminal table, -v history, JSON, Markdown and JUnit properties."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

TWO_TESTS = """
import pytest

@pytest.mark.finetune
def test_steady():
    pass

@pytest.mark.finetune(seed=7)
def test_reseeded():
    pass
"""


@pytest.fixture
def recorded(finetune_project: pytest.Pytester) -> pytest.Pytester:
    finetune_project.makepyfile(test_two=TWO_TESTS)
    finetune_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=2)
    path = finetune_project.path / "baselines/test_two/test_reseeded.json"
    record = json.loads(path.read_text())
    record["metrics"]["accuracy"] += 0.2  # the next run of test_reseeded is a regression
    path.write_text(json.dumps(record))
    return finetune_project


def test_terminal_table_and_history(recorded: pytest.Pytester) -> None:
    result = recorded.runpytest("--finetune", "-v")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*- fine-tuning baselines -*",
            "test*model*accuracy*f1*verdict*train",
            "test_two.py::test_steady*tiny-bert*(+0.0000)*(+0.0000)*passed*cached",
            "test_two.py::test_reseeded*tiny-bert*(-0.2000)*regressed*cached",
            "test_two.py::test_steady: per-epoch history",
            "*epoch*training loss*validation loss*accuracy*f1",
            "*0.67*",
        ]
    )


def test_no_history_without_verbose(recorded: pytest.Pytester) -> None:
    result = recorded.runpytest("--finetune")
    assert "per-epoch history" not in result.stdout.str()


def test_json_markdown_and_junit(recorded: pytest.Pytester) -> None:
    result = recorded.runpytest(
        "--finetune",
        "--finetune-report=reports/finetune.json",
        "--finetune-report-md=reports/summary.md",
        "--junitxml=reports/junit.xml",
    )
    result.assert_outcomes(passed=1, failed=1)

    report = json.loads((recorded.path / "reports/finetune.json").read_text())
    assert report["summary"] == {"passed": 1, "regressed": 1}
    by_test = {test["test"]: test for test in report["tests"]}
    regressed = by_test["test_two.py::test_reseeded"]
    assert regressed["failed"] is True
    assert regressed["metrics"]["accuracy"]["verdict"] == "regressed"
    assert regressed["metrics"]["accuracy"]["delta"] == pytest.approx(-0.2, abs=1e-6)
    assert regressed["metrics"]["accuracy"]["allowed"] == 0.01
    assert regressed["baseline"] == "baselines/test_two/test_reseeded.json"
    assert by_test["test_two.py::test_steady"]["record"]["recipe"]["seed"] == 42

    markdown = (recorded.path / "reports/summary.md").read_text()
    assert "## Fine-tuning baselines" in markdown
    assert "2 test(s), 1 failed." in markdown
    assert "| `test_two.py::test_reseeded` |" in markdown and "| **regressed** |" in markdown
    assert "### `test_two.py::test_reseeded`: regressed" in markdown

    cases = {case.get("name"): case for case in ET.parse(recorded.path / "reports/junit.xml").iter("testcase")}
    properties = {p.get("name"): p.get("value") for p in cases["test_reseeded"].iter("property")}
    assert properties["finetune.outcome"] == "regressed"
    assert float(properties["finetune.accuracy.baseline"]) - float(properties["finetune.accuracy"]) == pytest.approx(
        0.2
    )


def test_reports_are_written_when_nothing_fine_tunes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    pytester.runpytest("--finetune-report=r.json", "--finetune-report-md=r.md").assert_outcomes(passed=1)
    assert json.loads((pytester.path / "r.json").read_text()) == {"summary": {}, "tests": []}
    assert "0 test(s), 0 failed." in (pytester.path / "r.md").read_text()
