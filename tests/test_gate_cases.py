"""The gate in less common setups: the command that records a baseline under pytest's own options
that choose the recipe, and ``finetune``-marked ``unittest.TestCase`` methods."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from helpers import QUALITY_BASELINE as BASELINE
from helpers import QUALITY_TEST

#: Adjusts every test's recipe to 3 training steps (the project's ini says 4).
THREE_STEPS = """
def pytest_finetune_adjust_recipe(recipe, item):
    return {"max_steps": 3}
"""
IN_TESTS = Path("baselines/tests/test_quality/test_quality.json")  # the test in tests/, rootdir the project's


def record_command(result: pytest.RunResult) -> list[str]:
    """The arguments of the command a missing baseline's failure says records it (``pytest`` dropped)."""
    lines = [line for line in result.stdout.lines if "record it with: " in line]
    assert lines, result.stdout.str()
    command = shlex.split(lines[0].split("record it with: ", 1)[1])
    assert command[0] == "pytest"
    return command[1:]


@pytest.mark.parametrize(
    ("files", "args", "baseline", "steps"),
    [
        ({}, ["-c", "ci.ini"], BASELINE, 3),
        ({}, ["-cci.ini"], BASELINE, 3),
        ({}, ["--config-file=ci.ini"], BASELINE, 3),
        ({}, ["--config-file", "ci.ini"], BASELINE, 3),
        ({"tests/test_quality.py": QUALITY_TEST}, ["--rootdir=tests"], Path("tests") / BASELINE, 4),
        ({"tests/test_quality.py": QUALITY_TEST}, ["--rootdir", "tests"], Path("tests") / BASELINE, 4),
        ({"recipe_plugin.py": THREE_STEPS}, ["-p", "recipe_plugin"], BASELINE, 3),
        ({"recipe_plugin.py": THREE_STEPS}, ["-precipe_plugin"], BASELINE, 3),
        ({"conftest.py": THREE_STEPS}, ["--noconftest"], BASELINE, 4),
        ({"conftest.py": THREE_STEPS, "tests/test_quality.py": QUALITY_TEST}, ["--confcutdir=tests"], IN_TESTS, 4),
    ],
    ids=[
        "-c FILE",
        "-cFILE",
        "--config-file=FILE",
        "--config-file FILE",
        "--rootdir=DIR",
        "--rootdir DIR",
        "-p NAME",
        "-pNAME",
        "--noconftest",
        "--confcutdir=DIR",
    ],
)
def test_following_the_record_command_records_the_baseline_the_options_chose(
    finetune_project: pytest.Pytester, files: dict[str, str], args: list[str], baseline: Path, steps: int
) -> None:
    """``-c`` picks the ini file (all its ``finetune_*`` values), ``--rootdir`` the baseline folder,
    ``-p`` / ``--noconftest`` / ``--confcutdir`` the hooks that adjust the recipe: the command a missing
    baseline prints repeats them as written, so that following it records what the next run compares with."""
    ini = (finetune_project.path / "tox.ini").read_text()
    (finetune_project.path / "ci.ini").write_text(ini.replace("max_steps = 4", "max_steps = 3"))  # for -c
    if not any(name.startswith("tests/") for name in files):
        finetune_project.makepyfile(test_quality=QUALITY_TEST)
    for name, text in files.items():
        (finetune_project.path / name).parent.mkdir(exist_ok=True)
        (finetune_project.path / name).write_text(text)
    finetune_project.syspathinsert()  # recipe_plugin importable by -p
    missing = finetune_project.runpytest("--finetune", *args)
    missing.assert_outcomes(failed=1)
    command = record_command(missing)
    finetune_project.runpytest(*command).assert_outcomes(passed=1)
    finetune_project.runpytest("--finetune", *args).assert_outcomes(passed=1)
    assert json.loads((finetune_project.path / baseline).read_text())["recipe"]["training_args"]["max_steps"] == steps
    assert command[:2] == ["--finetune", "--snapshot-update"]
    assert command[2:-1] == args


UNITTEST_CASES = """
import os
import unittest

import pytest


class TestU(unittest.TestCase):
    @pytest.mark.finetune
    def test_passes(self):
        pass

    @pytest.mark.finetune
    def test_fails(self):
        self.assertEqual(os.environ.get("PASS_IT"), "1", "body check failed")

    @pytest.mark.finetune
    def test_skips(self):
        self.skipTest("not today")

    @pytest.mark.finetune
    @unittest.expectedFailure
    def test_expected_failure(self):
        self.fail("known bug")

    @pytest.mark.finetune
    @unittest.expectedFailure
    def test_unexpected_success(self):
        pass
"""
UNITTEST_FOLDER = Path("baselines/test_u")
#: The report entries of the bodies that do not pass but for ``test_skips`` (which has none): pytest's
#: outcome, no comparison.
NOT_PASSING = {
    "test_fails": "failed before comparing",
    "test_expected_failure": "xfailed",
    "test_unexpected_success": "failed before comparing",
}


def report_outcomes(project: pytest.Pytester) -> dict[str, str]:
    """The JSON report's outcome of each test, by method name."""
    report = json.loads((project.path / "r.json").read_text())
    return {test["test"].split("::")[-1]: test["outcome"] for test in report["tests"]}


def test_a_unittest_method_whose_body_does_not_pass_records_no_baseline(finetune_project: pytest.Pytester) -> None:
    finetune_project.makepyfile(test_u=UNITTEST_CASES)
    result = finetune_project.runpytest("--finetune", "--snapshot-update", "--finetune-report=r.json")
    result.assert_outcomes(passed=1, failed=2, skipped=1, xfailed=1)
    result.stdout.fnmatch_lines(["*AssertionError: None != '1' : body check failed*", "*Unexpected success*"])
    assert sorted(path.name for path in (finetune_project.path / UNITTEST_FOLDER).iterdir()) == [
        "TestU.test_passes.json"
    ]
    assert report_outcomes(finetune_project) == {"test_passes": "recorded", **NOT_PASSING}


def test_a_unittest_method_whose_body_does_not_pass_is_not_compared(finetune_project: pytest.Pytester) -> None:
    """Baselines 0.5 above the run: each would regress if compared, and its file be rewritten by an update."""
    finetune_project.makepyfile(test_u=UNITTEST_CASES)
    finetune_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(
        passed=1, failed=2, skipped=1, xfailed=1
    )
    folder = finetune_project.path / UNITTEST_FOLDER
    record = json.loads((folder / "TestU.test_passes.json").read_text())
    record["metrics"] = {name: round(value + 0.5, 6) for name, value in record["metrics"].items()}
    stored = {name: json.dumps(record, indent=2, sort_keys=True) + "\n" for name in NOT_PASSING.keys() | {"test_skips"}}
    for name, text in stored.items():
        (folder / f"TestU.{name}.json").write_text(text)
    for update in ((), ("--snapshot-update",)):
        result = finetune_project.runpytest("--finetune", *update, "--finetune-report=r.json", "-rs")
        result.assert_outcomes(passed=1, failed=2, skipped=1, xfailed=1)
        result.stdout.fnmatch_lines(["*SKIPPED*not today*"])
        result.stdout.no_fnmatch_line("*regressed*")
        result.stdout.no_fnmatch_line("*unused*")
        assert report_outcomes(finetune_project) == {"test_passes": "passed", **NOT_PASSING}
        assert {name: (folder / f"TestU.{name}.json").read_text() for name in stored} == stored
