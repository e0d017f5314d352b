"""The baselines of tests a session did not run are kept, neither reported unused nor deleted by
``--snapshot-update``: tests left out by a node id in a subfolder, deselected by ``--sw`` or a conftest,
stopped by ``pytest.exit()``, or run by a pytest-xdist worker that crashed."""

from __future__ import annotations

from pathlib import Path

import pytest

#: A test module in a subfolder, with a class and a parametrized test: each test has a baseline.
SUBFOLDER_TESTS = """
import pytest

@pytest.mark.finetune
def test_a():
    pass

@pytest.mark.finetune(seed=4)
def test_other():
    pass

@pytest.mark.finetune
class TestK:
    def test_k(self):
        pass

@pytest.mark.finetune
@pytest.mark.parametrize("n", [1, 2])
def test_p(n):
    pass
"""

#: Two marked tests, each failing when its environment variable is set, and an unmarked one.
TWO_TESTS = """
import os
import pytest

@pytest.mark.finetune
def test_a():
    assert not os.environ.get("FAIL_A")

@pytest.mark.finetune(seed=7)
def test_b():
    assert not os.environ.get("FAIL_B")

def test_plain():
    pass
"""

#: syrupy's lines that report baselines unused or deleted.
SYRUPY_UNUSED = ("*snapshot* unused.*", "*unused snapshot* deleted.*")
#: The syrupy line that would tell the user they passed an option they did not.
SYRUPY_DISABLED = "*--snapshot-disable-unused*"


def baseline_texts(project: pytest.Pytester) -> dict[str, str]:
    """Every baseline file of the project, by its path under ``baselines/``."""
    root = project.path / "baselines"
    return {path.relative_to(root).as_posix(): path.read_text() for path in sorted(root.rglob("*.json"))}


def assert_kept(result: pytest.RunResult, project: pytest.Pytester, stored: dict[str, str]) -> None:
    """No baseline reported unused or deleted, and every one unchanged."""
    for line in (*SYRUPY_UNUSED, SYRUPY_DISABLED):
        result.stdout.no_fnmatch_line(line)
    assert baseline_texts(project) == stored


@pytest.fixture
def subfolder(finetune_project: pytest.Pytester) -> pytest.Pytester:
    """:data:`SUBFOLDER_TESTS` as ``tests/test_q.py`` (the ini file one folder above), recorded."""
    finetune_project.mkpydir("tests")
    (finetune_project.path / "tests" / "test_q.py").write_text(SUBFOLDER_TESTS)
    finetune_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=5)
    return finetune_project


@pytest.mark.parametrize(
    ("where", "node_id", "passed"),
    [
        ("", "tests/test_q.py::test_a", 1),
        ("", "tests/test_q.py::TestK", 1),
        ("", "tests/test_q.py::TestK::test_k", 1),
        ("", "tests/test_q.py::test_p[1]", 1),
        ("tests", "test_q.py::test_a", 1),
    ],
    ids=["function", "class", "method", "parametrize-id", "from-the-subfolder"],
)
def test_a_node_id_in_a_subfolder_keeps_the_other_baselines_of_its_module(
    subfolder: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, where: str, node_id: str, passed: int
) -> None:
    """The command the plugin prints to record one test's baseline touches no other baseline."""
    stored = baseline_texts(subfolder)
    assert len(stored) == 5
    monkeypatch.chdir(subfolder.path / where)
    for update in ((), ("--snapshot-update",)):
        result = subfolder.runpytest("--finetune", *update, node_id)
        result.assert_outcomes(passed=passed)
        assert result.ret == pytest.ExitCode.OK
        assert_kept(result, subfolder, stored)


def test_a_module_given_whole_still_loses_its_stale_baselines(subfolder: pytest.Pytester) -> None:
    """A node id and the whole module on one command line: the module is selected whole, so a baseline
    no test owns is still unused and removed by ``--snapshot-update``."""
    stale = subfolder.path / "baselines/tests/test_q/test_removed.json"
    stale.write_text((subfolder.path / "baselines/tests/test_q/test_a.json").read_text())
    result = subfolder.runpytest("--finetune", "--snapshot-update", "tests/test_q.py::test_a", "tests")
    result.stdout.fnmatch_lines(["*1 unused snapshot deleted*"])
    assert not stale.exists()


@pytest.fixture
def two_tests(finetune_project: pytest.Pytester) -> pytest.Pytester:
    """:data:`TWO_TESTS` with their baselines."""
    finetune_project.makepyfile(test_q=TWO_TESTS)
    finetune_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=3)
    return finetune_project


def test_tests_stepwise_deselects_keep_their_baselines(
    two_tests: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = baseline_texts(two_tests)
    for update in ((), ("--snapshot-update",)):
        monkeypatch.setenv("FAIL_B", "1")
        two_tests.runpytest("--finetune", "--sw").assert_outcomes(passed=1, failed=1)  # stepwise remembers test_b
        monkeypatch.delenv("FAIL_B")
        result = two_tests.runpytest("--finetune", "--sw", *update)  # resumes at test_b: test_a is deselected
        result.assert_outcomes(passed=2, deselected=1)
        assert result.ret == pytest.ExitCode.OK
        assert_kept(result, two_tests, stored)


def test_tests_a_marker_expression_deselects_keep_their_baselines(two_tests: pytest.Pytester) -> None:
    """``-m "not finetune"``: pytest's own deselection by marker leaves every baseline as it is."""
    stored = baseline_texts(two_tests)
    for update in ((), ("--snapshot-update",)):
        result = two_tests.runpytest("--finetune", "-m", "not finetune", *update)
        result.assert_outcomes(passed=1, deselected=2)
        assert result.ret == pytest.ExitCode.OK
        assert_kept(result, two_tests, stored)


@pytest.mark.parametrize("tells_pytest", [True, False], ids=["pytest_deselected", "silently"])
def test_tests_a_conftest_deselects_keep_their_baselines(two_tests: pytest.Pytester, tells_pytest: bool) -> None:
    two_tests.makeconftest(f"""
        def pytest_addoption(parser):
            parser.addoption("--skip-seeded", action="store_true")

        def pytest_collection_modifyitems(config, items):
            if config.getoption("--skip-seeded"):
                dropped = [item for item in items if item.name == "test_b"]
                items[:] = [item for item in items if item.name != "test_b"]
                if {tells_pytest}:
                    config.hook.pytest_deselected(items=dropped)
        """)
    stored = baseline_texts(two_tests)
    for update in ((), ("--snapshot-update",)):
        result = two_tests.runpytest("--finetune", "--skip-seeded", *update)
        result.assert_outcomes(passed=2, deselected=1 if tells_pytest else 0)
        assert result.ret == pytest.ExitCode.OK
        assert_kept(result, two_tests, stored)


@pytest.mark.parametrize("returncode", [0, 1])
def test_pytest_exit_with_a_return_code_keeps_every_baseline(
    two_tests: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, returncode: int
) -> None:
    """``pytest.exit(..., returncode=N)`` ends the session on purpose, with exit status N: the tests
    after it did not run (nor did the one that called it compare)."""
    two_tests.makepyfile(
        test_q=TWO_TESTS.replace(
            '    assert not os.environ.get("FAIL_A")',
            '    pytest.exit("nothing to do on this runner", returncode=int(os.environ["EXIT_WITH"]))',
        )
    )
    monkeypatch.setenv("EXIT_WITH", str(returncode))
    stored = baseline_texts(two_tests)
    for update in ((), ("--snapshot-update",)):
        result = two_tests.runpytest("--finetune", *update)
        assert result.ret == returncode
        assert_kept(result, two_tests, stored)
        result.stdout.fnmatch_lines(
            ["pytest-finetune: the session stopped before every test ran: the baselines of the tests it did not *"]
        )


def test_a_session_stopped_by_a_failure_keeps_the_baselines_without_syrupys_disabled_line(
    two_tests: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``-x``: the plugin's own line says why nothing is unused; syrupy does not claim that the user
    passed ``--snapshot-disable-unused``."""
    monkeypatch.setenv("FAIL_A", "1")
    stored = baseline_texts(two_tests)
    result = two_tests.runpytest("--finetune", "--snapshot-update", "-x")
    result.assert_outcomes(failed=1)
    assert_kept(result, two_tests, stored)
    result.stdout.fnmatch_lines(["pytest-finetune: the session stopped before every test ran: *"])


#: Four tests in one module; the last SIGKILLs its pytest-xdist worker once (a stand-in for the OOM killer).
WORKER_KILLED = """
import os
import signal
from pathlib import Path

import pytest

@pytest.mark.finetune
def test_a():
    pass

@pytest.mark.finetune(seed=1)
def test_b():
    pass

@pytest.mark.finetune(seed=2)
def test_c():
    pass

@pytest.mark.finetune(seed=3)
def test_d():
    flag = Path(os.environ["KILL_FLAG"])
    if os.environ.get("PYTEST_XDIST_WORKER") and not flag.exists():
        flag.write_text("killed")
        os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_crashed_xdist_worker_loses_no_baseline(
    finetune_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The worker's record of what its passing tests compared dies with it: their baselines must not
    look unused to the controller."""
    pytest.importorskip("xdist")
    finetune_project.makepyfile(test_k=WORKER_KILLED)
    monkeypatch.setenv("KILL_FLAG", str(tmp_path / "killed"))
    finetune_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=4)
    stored = baseline_texts(finetune_project)
    assert len(stored) == 4
    for update in ((), ("--snapshot-update",)):
        (tmp_path / "killed").unlink(missing_ok=True)
        result = finetune_project.runpytest("--finetune", *update, "-n", "2", "--dist", "loadfile")
        assert result.parseoutcomes()["failed"] == 1  # test_d, which pytest-xdist may run again on a new worker
        result.stdout.fnmatch_lines(["*crashed*test_k.py::test_d*"])
        for line in SYRUPY_UNUSED:
            result.stdout.no_fnmatch_line(line)
        assert baseline_texts(finetune_project) == stored
        result.stdout.fnmatch_lines(["pytest-finetune: a pytest-xdist worker crashed: the baselines of the tests *"])
