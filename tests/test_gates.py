"""The gate's rules beside the tolerance, as users run them: floors, relative thresholds, warn-only mode and
the collapsed-model guard (a tiny model that predicts one class only, which these projects' models do)."""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import QUALITY_BASELINE as BASELINE
from helpers import QUALITY_TEST, assert_usage_error

from pytest_finetune.errors import FinetuneError
from pytest_finetune.history import append_history, read_history
from pytest_finetune.metrics import collapse
from pytest_finetune.report import ReportEntry, entry_from_json, entry_to_json
from pytest_finetune.tasks import TASKS
from pytest_finetune.tolerances import build_tolerances, check_floors, parse_relative
from pytest_finetune.verdicts import Outcome, compare


def record(**metrics: float) -> dict:
    return {"metrics": metrics}


def read_baseline(project: pytest.Pytester) -> dict:
    return json.loads((project.path / BASELINE).read_text())


def write_baseline(project: pytest.Pytester, baseline: dict) -> None:
    (project.path / BASELINE).write_text(json.dumps(baseline, indent=2, sort_keys=True) + "\n")


@pytest.fixture
def project(finetune_project: pytest.Pytester) -> pytest.Pytester:
    """A project with one marked test whose baseline is recorded (the collapsed-model guard off, see conftest)."""
    finetune_project.makepyfile(test_quality=QUALITY_TEST)
    finetune_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)
    return finetune_project


# ---------------------------------------------------------------- the rules, unit by unit


def test_each_rule_says_what_failed() -> None:
    tolerances = build_tolerances(
        [0.1], floors=[{"accuracy": 0.78}, {"eval_loss": 0.4}], relative=[parse_relative("f1=5%", "here")]
    )
    current = record(accuracy=0.75, f1=0.80, eval_loss=0.5)
    verdict = compare(current, record(accuracy=0.80, f1=0.85, eval_loss=0.45), tolerances)
    assert verdict.outcome is Outcome.REGRESSED
    said = {row.metric: row.verdict_said for row in verdict.rows}
    assert said == {
        "accuracy": "regressed: below floor 0.78",  # within its tolerance, 0.1
        "eval_loss": "regressed: above floor 0.4",  # a loss: its floor is the most it may be
        "f1": "regressed: dropped 5.9 % > 5 %",
    }
    assert verdict.headline == (
        "regressed by 0.050 accuracy (below floor 0.78), 0.050 eval_loss (above floor 0.4), "
        "0.050 f1 (dropped 5.9 % > 5 %)"
    )


def test_every_rule_applies_so_the_strictest_wins() -> None:
    """A floor fails a run its tolerance allows, a tolerance one its floor allows; an improvement beyond the
    tolerance that stays below the floor still fails."""
    loose_floor = build_tolerances([0.01], floors=[{"accuracy": 0.5}])
    tight_floor = build_tolerances([0.5], floors=[{"accuracy": 0.9}])
    run, baseline = record(accuracy=0.75, f1=0.8), record(accuracy=0.80, f1=0.8)
    tolerance_fails = compare(run, baseline, loose_floor).rows[0]
    assert (tolerance_fails.verdict_said, tolerance_fails.rules) == (
        "regressed",
        ("dropped 0.0500 > tolerance 0.0100",),
    )
    assert compare(run, baseline, tight_floor).rows[0].verdict_said == "regressed: below floor 0.9"
    improved = compare(record(accuracy=0.85, f1=0.8), baseline, build_tolerances([0.01], floors=[{"accuracy": 0.9}]))
    assert improved.outcome is Outcome.REGRESSED
    assert compare(run, baseline, build_tolerances([0.5], relative=[0.1])).outcome is Outcome.PASSED  # 6.25 %


def test_a_relative_threshold_from_a_baseline_of_zero_allows_no_worse() -> None:
    tolerances = build_tolerances([1.0], relative=[0.05])
    worse = compare(record(accuracy=0.8, f1=0.0, eval_loss=0.1), record(accuracy=0.8, f1=0.001), tolerances)
    assert worse.rows[1].verdict_said == "regressed: dropped 100.0 % > 5 %"
    rise = build_tolerances([1.0], relative=[{"eval_loss": 0.05}])
    from_zero = compare(record(accuracy=0.8, f1=0.5, eval_loss=0.1), record(accuracy=0.8, f1=0.5, eval_loss=0.0), rise)
    assert [row.verdict_said for row in from_zero.rows if row.metric == "eval_loss"] == [
        "regressed: rose 0.1000 from 0 > 5 %"
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0.8, "a floor names its metric"),
        ({"accuracy": 80}, r"floor of 'accuracy' is 80, and accuracy lies in \[0, 1\]"),
        ({"matthews_correlation": -2}, r"lies in \[-1, 1\]"),
        ({"eval_loss": -0.1}, "eval_loss lies in 0 or more"),
        ({"f1": float("nan")}, "finite number"),
        ({"F1": 0.8}, "case-sensitive"),
    ],
)
def test_impossible_floors_are_refused(value: object, message: str) -> None:
    with pytest.raises(FinetuneError, match=f"^here: .*{message}"):
        check_floors(value, "here")


def test_collapse_is_one_class_where_the_labels_are_not() -> None:
    mrpc, labels = TASKS["mrpc"], np.array([1] * 279 + [0] * 129)  # MRPC dev: 68.4 % paraphrases
    logits = np.zeros((408, 2))
    logits[:395, 1] = 1.0  # 96.8 % predicted paraphrase
    said = collapse(mrpc, logits, labels, 0.95)
    assert said is not None and said.startswith(
        "the model predicts class 1 (equivalent) for 96.8 % of the 408 validation examples, and 68.4 % of them"
    )
    assert collapse(mrpc, logits, labels, 0.97) is None
    assert collapse(mrpc, logits, np.array([1] * 400 + [0] * 8), 0.95) is None  # the labels are one class too
    assert collapse(TASKS["stsb"], np.zeros((408, 1)), np.zeros(408), 0.95) is None  # a regression


def test_a_pytest_xdist_worker_hands_over_the_rules_and_the_collapse() -> None:
    """The controller's reports (see plugin.py) get what the worker's verdict said, rule by rule."""
    tolerances = build_tolerances([0.1], floors=[{"accuracy": 0.78}])
    verdict = compare(record(accuracy=0.75, f1=0.8), record(accuracy=0.8, f1=0.8), tolerances, collapsed="all 1")
    entry = ReportEntry("t.py::t", verdict.outcome.value, "b.json", verdict=verdict, warn_only=True)
    assert entry_from_json(entry_to_json(entry)) == entry
    assert (entry.outcome, entry.failed, verdict.rows[0].rules) == ("collapsed", False, ("below floor 0.78",))


# ---------------------------------------------------------------- through pytest --finetune


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--finetune-relative=5"], "--finetune-relative: relative threshold is '5': give a drop between 0 and 100 %*"),
        (["--finetune-relative=accuracy=100%"], "*relative threshold of 'accuracy' is '100%'*"),
        (["--finetune-relative=0"], "*relative threshold is '0'*"),
        (["--finetune-floor=accuracy=80"], "--finetune-floor: floor of 'accuracy' is 80, and accuracy lies in*"),
        (["--finetune-floor=0.8"], "--finetune-floor: '0.8' names no metric; write METRIC=VALUE*"),
        (["-o", "finetune_floor=f1=high"], "ini finetune_floor: 'f1=high': 'high' is not a number*"),
        (["-o", "finetune_collapse_guard=0.4"], "ini finetune_collapse_guard: collapse guard '0.4'*above 0.5*"),
        (["-o", "finetune_warn_only=maybe"], "ini finetune_warn_only = maybe: use true or false"),
    ],
)
def test_bad_rules_are_usage_errors(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    assert_usage_error(pytester.runpytest("--finetune", *args), message)


def test_a_bad_rule_in_the_marker_is_a_collection_error(pytester: pytest.Pytester) -> None:
    marked = "@pytest.mark.finetune(relative={'f1': 1.5}, collapse_guard=2)"
    pytester.makepyfile(test_quality=QUALITY_TEST.replace("@pytest.mark.finetune", marked))
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*@pytest.mark.finetune: relative threshold of 'f1' is 1.5: give a drop*"])


@pytest.mark.parametrize(
    ("where", "setting"),
    [
        ("command line", "--finetune-floor=accuracy=0.95"),
        ("ini", "finetune_floor = accuracy=0.95"),
        ("marker", "@pytest.mark.finetune(floor={'accuracy': 0.95})"),
    ],
)
def test_a_floor_fails_the_run_below_it(project: pytest.Pytester, where: str, setting: str) -> None:
    args = ["--finetune"]
    if where == "marker":
        project.makepyfile(test_quality=QUALITY_TEST.replace("@pytest.mark.finetune", setting))
    elif where == "ini":
        (project.path / "tox.ini").write_text(
            (project.path / "tox.ini").read_text().replace("[pytest]", f"[pytest]\n{setting}")
        )
    else:
        args.append(setting)
    result = project.runpytest(*args)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["accuracy * regressed: below floor 0.95"])


def test_a_run_below_its_floor_is_not_recorded(finetune_project: pytest.Pytester) -> None:
    finetune_project.makepyfile(test_quality=QUALITY_TEST)
    result = finetune_project.runpytest("--finetune", "--snapshot-update", "--finetune-floor=accuracy=0.95")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the run is not recorded as a baseline: it is accuracy 0.* below floor 0.95; fix*"])
    assert not (finetune_project.path / BASELINE).exists()


def test_a_relative_threshold_fails_a_drop_its_tolerance_allows(project: pytest.Pytester) -> None:
    baseline = read_baseline(project)
    baseline["metrics"]["accuracy"] = round(baseline["metrics"]["accuracy"] / 0.93, 6)  # the run: 7 % lower
    write_baseline(project, baseline)
    project.runpytest("--finetune", "--finetune-tolerance=0.05").assert_outcomes(passed=1)
    result = project.runpytest("--finetune", "--finetune-tolerance=0.05", "--finetune-relative=5%")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["accuracy * regressed: dropped 7.0 % > 5 %"])


def test_warn_only_reports_a_regression_without_failing(project: pytest.Pytester) -> None:
    baseline = read_baseline(project)
    baseline["metrics"]["accuracy"] = round(baseline["metrics"]["accuracy"] + 0.05, 6)
    write_baseline(project, baseline)
    report = ["--finetune-report=report.json", "--finetune-report-md=report.md"]
    result = project.runpytest("--finetune", "--finetune-warn-only", *report)
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "*PytestWarning: pytest-finetune (warn-only): test_quality.py::test_quality: regressed against the*",
            "*test_quality.py::test_quality * regressed (warn-only) *",
        ]
    )
    test = json.loads((project.path / "report.json").read_text())["tests"][0]
    assert (test["outcome"], test["failed"], test["warn_only"]) == ("regressed", False, True)
    assert "1 test(s), 0 failed, 1 would fail (warn-only)." in (project.path / "report.md").read_text()
    ini = (project.path / "tox.ini").read_text()
    (project.path / "tox.ini").write_text(ini.replace("[pytest]", "[pytest]\nfinetune_warn_only = true"))
    assert project.runpytest("--finetune").ret == pytest.ExitCode.OK
    (project.path / "tox.ini").write_text(ini)
    project.runpytest("--finetune").assert_outcomes(failed=1)  # without it, the regression fails


def test_warn_only_still_fails_what_cannot_be_compared(project: pytest.Pytester) -> None:
    baseline = read_baseline(project)
    baseline["validation_id"] = "sha256:" + "0" * 64
    write_baseline(project, baseline)
    result = project.runpytest("--finetune", "--finetune-warn-only")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*not comparable*"])


def test_warn_only_still_fails_a_recipe_change_under_strict_recipe_mode(project: pytest.Pytester) -> None:
    result = project.runpytest(
        "--finetune", "--finetune-warn-only", "--finetune-strict-recipe", "--finetune-set=seed=7"
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*recipe changed*"])


def test_a_collapsed_model_fails_and_is_not_recorded(
    finetune_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYTEST_ADDOPTS")  # the guard as users get it: on
    finetune_project.makepyfile(test_quality=QUALITY_TEST)
    refused = finetune_project.runpytest("--finetune", "--snapshot-update")
    refused.assert_outcomes(failed=1)
    refused.stdout.fnmatch_lines(
        [
            "*the run is not recorded as a baseline: it collapsed: the model predicts class 0 (not_equivalent) for "
            "100.0 % of the 24 validation examples, and 33.3 % of them are labelled so*"
        ]
    )
    assert not (finetune_project.path / BASELINE).exists()
    finetune_project.runpytest("--finetune", "--snapshot-update", "-o", "finetune_collapse_guard=off").assert_outcomes(
        passed=1
    )
    compared = finetune_project.runpytest("--finetune")
    compared.assert_outcomes(failed=1)
    compared.stdout.fnmatch_lines(
        [
            "*test_quality: collapsed against the baseline*",
            "collapsed: the model predicts class 0 (not_equivalent) for 100.0 % of the 24 validation examples*",
        ]
    )
    allowed = "@pytest.mark.finetune(collapse_guard=False)"
    finetune_project.makepyfile(test_quality=QUALITY_TEST.replace("@pytest.mark.finetune", allowed))
    finetune_project.runpytest("--finetune").assert_outcomes(passed=1)


def test_a_collapsed_model_only_warns_in_warn_only_mode(
    finetune_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    finetune_project.makepyfile(test_quality=QUALITY_TEST)
    finetune_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)  # guard off
    monkeypatch.delenv("PYTEST_ADDOPTS")
    result = finetune_project.runpytest("--finetune", "--finetune-warn-only")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*test_quality.py::test_quality * collapsed (warn-only) *"])


# ---------------------------------------------------------------- history


def history(project: pytest.Pytester, name: str = "history.jsonl") -> list[dict]:
    return [json.loads(line) for line in (project.path / name).read_text().splitlines()]


def test_each_session_appends_a_line_per_test(project: pytest.Pytester) -> None:
    subprocess.run(["git", "init", "-q"], cwd=project.path, check=True)
    subprocess.run(["git", "add", "-A"], cwd=project.path, check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"], cwd=project.path, check=True
    )
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project.path, capture_output=True, text=True).stdout
    result = project.runpytest("--finetune", "--finetune-history=history.jsonl")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["pytest-finetune: history */history.jsonl: 1 line(s) appended, 1 in all"])
    ini = (project.path / "tox.ini").read_text()
    (project.path / "tox.ini").write_text(ini.replace("[pytest]", "[pytest]\nfinetune_history = history.jsonl"))
    project.runpytest("--finetune", "--finetune-warn-only").assert_outcomes(passed=1)
    first, second = history(project)
    assert first["commit"] == commit.strip() and first["test"] == "test_quality.py::test_quality"
    assert first["outcome"] == "passed" and first["failed"] is False
    assert set(first["metrics"]) == {"accuracy", "eval_loss", "f1"} and set(first["intervals"]) == {"accuracy", "f1"}
    assert first["environment"]["device"] == "cpu" and first["recipe"]["task"] == "mrpc"
    assert first["recipe_key"] == second["recipe_key"] and len(first["recipe_key"]) == 64
    assert first["time"] <= second["time"] and first["time"].endswith("+00:00")


def test_a_corrupt_history_line_is_skipped_and_kept(project: pytest.Pytester) -> None:
    project.runpytest("--finetune", "--finetune-history=history.jsonl").assert_outcomes(passed=1)
    with (project.path / "history.jsonl").open("a") as handle:
        handle.write('{"time": "cut short\n[1, 2]\n')
    result = project.runpytest("--finetune", "--finetune-history=history.jsonl")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["*1 line(s) appended, 2 in all; warning: 2 line(s) that are not JSON objects skipped (line 2, 3)"]
    )
    assert len((project.path / "history.jsonl").read_text().splitlines()) == 4


def test_an_unwritable_history_warns_and_changes_no_verdict(project: pytest.Pytester) -> None:
    baseline = read_baseline(project)
    baseline["metrics"]["accuracy"] = round(baseline["metrics"]["accuracy"] + 0.05, 6)
    write_baseline(project, baseline)
    for args, outcomes in ((["--finetune-warn-only"], {"passed": 1}), ([], {"failed": 1})):
        result = project.runpytest("--finetune", "--finetune-history=no/such/folder/h.jsonl", *args)
        result.assert_outcomes(**outcomes)
        result.stdout.fnmatch_lines(
            [
                "pytest-finetune: warning: cannot append to the history */no/such/folder/h.jsonl (*No such file*); the "
                "tests' verdicts are unchanged"
            ]
        )
        assert result.ret == (pytest.ExitCode.OK if outcomes == {"passed": 1} else pytest.ExitCode.TESTS_FAILED)


def test_writers_at_the_same_time_never_interleave_lines(tmp_path: Path) -> None:
    """Eight writers append 25 sessions each of 3 long lines: every line comes back whole."""
    path = tmp_path / "history.jsonl"

    def write(writer: int) -> None:
        for session in range(25):
            append_history(
                path, "".join(json.dumps({"w": writer, "s": session, "pad": "x" * 20000}) + "\n" for _ in "abc")
            )

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(8)))
    records, corrupt = read_history(path)
    assert corrupt == [] and len(records) == 8 * 25 * 3
    for start in range(0, len(records), 3):  # a session's lines stay together
        assert len({(record["w"], record["s"]) for record in records[start : start + 3]}) == 1
