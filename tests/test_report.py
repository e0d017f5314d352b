"""The reports a CI job shows: the terminal table, -v history, JSON, Markdown and JUnit properties."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

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
    empty = {"summary": {}, "tests": [], "recorded_over_regression": []}
    assert json.loads((pytester.path / "r.json").read_text()) == empty
    assert "0 test(s), 0 failed." in (pytester.path / "r.md").read_text()


def test_history_shows_a_hook_metric_missing_at_some_evaluations(finetune_project: pytest.Pytester) -> None:
    finetune_project.makeconftest("""
        calls = []

        def pytest_finetune_metrics(recipe, logits, label_ids):
            calls.append(1)
            return {"warmup_score": 0.5} if len(calls) == 1 else {}  # at the first evaluation only
        """)
    finetune_project.makepyfile(test_two="import pytest\n\n@pytest.mark.finetune\ndef test_steady():\n    pass\n")
    two_epochs = ("per_device_train_batch_size=24", "num_train_epochs=2", "max_steps=-1")
    args = [f"--finetune-set={assignment}" for assignment in two_epochs]
    result = finetune_project.runpytest("--finetune", "--snapshot-update", "-v", *args)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "test_two.py::test_steady: per-epoch history",
            "*epoch*training loss*validation loss*accuracy*f1*warmup_score",
            "*1.00*0.5000",
            "*2.00*-",
        ]
    )
    result.stdout.no_fnmatch_line("*KeyError*")


def test_tests_that_fail_before_comparing_are_reported_failed(finetune_project: pytest.Pytester) -> None:
    finetune_project.makeconftest("""
        def pytest_finetune_adjust_training_args(recipe, training_args):
            if recipe.seed == 7:
                raise RuntimeError("training crashed")
        """)
    finetune_project.makepyfile(test_two="""
        import pytest

        @pytest.mark.finetune
        def test_steady():
            pass

        @pytest.mark.finetune
        def test_body_fails(finetune_result):
            assert finetune_result.metrics["accuracy"] > 2, "model too weak"

        @pytest.mark.finetune(seed=7)
        def test_crashes():
            pass
        """)
    result = finetune_project.runpytest(
        "--finetune", "--snapshot-update", "--finetune-report=r.json", "--finetune-report-md=r.md"
    )
    result.assert_outcomes(passed=1, failed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*- fine-tuning baselines -*",
            "test_two.py::test_steady*recorded*",
            "test_two.py::test_body_fails*tiny-bert*0.*failed before comparing*",
            "test_two.py::test_crashes*-*failed before comparing*",
        ]
    )
    report = json.loads((finetune_project.path / "r.json").read_text())
    assert report["summary"] == {"recorded": 1, "failed before comparing": 2}
    by_test = {test["test"]: test for test in report["tests"]}
    crashed = by_test["test_two.py::test_crashes"]
    assert crashed["failed"] is True
    assert crashed["baseline"] == "baselines/test_two/test_crashes.json"
    assert crashed["message"] == (
        "test_two.py::test_crashes: failed before comparing with its baseline (setup): RuntimeError: training crashed"
    )
    body_failed = by_test["test_two.py::test_body_fails"]
    assert "AssertionError: model too weak" in body_failed["message"]
    assert body_failed["record"]["metrics"] == by_test["test_two.py::test_steady"]["record"]["metrics"]  # it trained
    assert crashed["record"] is None
    markdown = (finetune_project.path / "r.md").read_text()
    assert "3 test(s), 2 failed." in markdown
    assert "### `test_two.py::test_crashes`: failed before comparing" in markdown


def test_reports_under_xdist_match_a_serial_run(recorded: pytest.Pytester) -> None:
    """With ``-n 2`` the workers' comparisons reach the controller: the terminal table, the JSON
    (verdict rows, paired test and all) and the Markdown are those of a serial run, written once."""
    serial = recorded.runpytest("--finetune", "-p", "no:xdist", "--finetune-report=serial.json")
    serial.assert_outcomes(passed=1, failed=1)
    result = recorded.runpytest(
        "--finetune", "-n", "2", "--finetune-report=reports/finetune.json", "--finetune-report-md=reports/summary.md"
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*- fine-tuning baselines -*", "test*model*accuracy*f1*verdict*train"])
    result.stdout.fnmatch_lines(["test_two.py::test_steady*tiny-bert*(+0.0000)*(+0.0000)*passed*cached"])
    result.stdout.fnmatch_lines(["test_two.py::test_reseeded*tiny-bert*(-0.2000)*regressed*cached"])

    def by_test(path: str) -> dict[str, dict]:
        report = json.loads((recorded.path / path).read_text())
        assert report["summary"] == {"passed": 1, "regressed": 1}
        return {test["test"]: test for test in report["tests"]}

    assert by_test("reports/finetune.json") == by_test("serial.json")
    assert by_test("serial.json")["test_two.py::test_reseeded"]["paired_test"] is not None
    markdown = (recorded.path / "reports/summary.md").read_text()
    assert "2 test(s), 1 failed." in markdown
    assert "### `test_two.py::test_reseeded`: regressed" in markdown
    assert sorted(path.name for path in (recorded.path / "reports").iterdir()) == ["finetune.json", "summary.md"]


def test_xdist_reports_recorded_baselines(finetune_project: pytest.Pytester) -> None:
    """``-n 2 --snapshot-update`` on a fresh repository names each recorded baseline, as a serial run does."""
    finetune_project.makepyfile(test_two=TWO_TESTS)
    result = finetune_project.runpytest("--finetune", "--snapshot-update", "-n", "2", "--finetune-report=r.json")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["test_two.py::test_steady: baseline recorded: baselines/test_two/test_steady.json"])
    result.stdout.fnmatch_lines(
        ["test_two.py::test_reseeded: baseline recorded: baselines/test_two/test_reseeded.json"]
    )
    assert json.loads((finetune_project.path / "r.json").read_text())["summary"] == {"recorded": 2}


def test_failure_advice_repeats_the_recipe_options(recorded: pytest.Pytester, tiny_checkpoint: Path) -> None:
    """A regression's and a changed recipe's advice record the baseline with this session's recipe
    options and the test's id, as the missing-baseline message does."""
    model = f"--finetune-model={tiny_checkpoint}"
    regressed = recorded.runpytest("--finetune", model, "-o", "finetune_alpha=0.05", "test_two.py::test_reseeded")
    regressed.assert_outcomes(failed=1)
    regressed.stdout.fnmatch_lines(
        [
            "if this change is intended, raise or lower the baseline: pytest --finetune --snapshot-update "
            f"{model} -o finetune_alpha=0.05 test_two.py::test_reseeded"
        ]
    )
    strict_recipe = ("--finetune-strict-recipe", "--finetune-tolerance=1", "--finetune-alpha=1e-9")  # held: strict
    changed = recorded.runpytest(
        "--finetune", "--finetune-set", "learning_rate=0.001", *strict_recipe, "test_two.py::test_steady"
    )
    changed.assert_outcomes(failed=1)
    changed.stdout.fnmatch_lines(
        [
            "*if the new recipe is intended, record its baseline: pytest --finetune --snapshot-update "
            "--finetune-set learning_rate=0.001 test_two.py::test_steady"
        ]
    )


def test_notes_are_in_the_terminal_and_markdown_summaries(recorded: pytest.Pytester) -> None:
    """A passing test's note (its baseline was recorded on another device) is in the JSON report, the terminal
    summary and the Markdown summary, whose sections (a failing test's verdict table) show only their own."""
    path = recorded.path / "baselines/test_two/test_steady.json"
    record = json.loads(path.read_text())
    device = record["environment"]["device"]
    record["environment"]["device"] = "elsewhere"
    path.write_text(json.dumps(record))
    result = recorded.runpytest("--finetune", "--finetune-report=r.json", "--finetune-report-md=r.md")
    result.assert_outcomes(passed=1, failed=1)
    note = f"baseline recorded with device elsewhere; this run used device {device}: expect differences of about a "
    result.stdout.fnmatch_lines([f"test_two.py::test_steady: note: {note}seed's spread"])
    steady = next(
        test for test in json.loads((recorded.path / "r.json").read_text())["tests"] if "steady" in test["test"]
    )
    assert steady["outcome"] == "passed" and steady["notes"] == [f"{note}seed's spread"]
    markdown = (recorded.path / "r.md").read_text()
    assert f"- `test_two.py::test_steady`: note: {note}seed's spread" in markdown
    assert markdown.count("note:") == 1
