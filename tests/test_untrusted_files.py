"""Files a careless or hostile hand put where the plugin writes or reads: a symbolic link that leads out of
the folder a baseline, a report or a cache entry belongs in is refused, never followed (nothing outside is
written or removed); a device, a pipe or an oversized file is never read whole, and the message names it."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from test_bad_inputs import assert_no_traceback, files_under
from test_cache import CONFTEST, TEST, entries, run

TEST_Q = """
import pytest

@pytest.mark.finetune
def test_a():
    pass
"""
BASELINE = Path("baselines/test_q/test_a.json")
#: The most bytes the plugin reads of a baseline or a cache entry's result.json (as documented).
MAX_READ_BYTES = 64 * 2**20


@pytest.fixture
def recorded(finetune_project: pytest.Pytester) -> pytest.Pytester:
    """A project whose test_q.py holds test_a, recorded."""
    finetune_project.makepyfile(test_q=TEST_Q)
    finetune_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)
    return finetune_project


@pytest.fixture
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder outside the project."""
    return tmp_path_factory.mktemp("outside")


def outdated(text: str) -> str:
    """A baseline's text with another accuracy, so that ``--snapshot-update`` rewrites it."""
    record = json.loads(text)
    record["metrics"]["accuracy"] = 1.0 if record["metrics"]["accuracy"] != 1.0 else 0.0
    return json.dumps(record, indent=2, sort_keys=True) + "\n"


def link_to(link: Path, target: Path) -> None:
    """Move what is at ``link`` to ``target`` and leave a symbolic link to it in its place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(link, target)
    link.symlink_to(target, target_is_directory=target.is_dir())


def test_an_update_refuses_a_baseline_linked_out_of_the_baseline_folder(
    recorded: pytest.Pytester, outside: Path
) -> None:
    """``--snapshot-update`` rewrites no file outside the baseline folder through a link: the test fails naming
    the link, where it leads and the fix; the file it leads to and the link stay as they were."""
    baseline, target = recorded.path / BASELINE, outside / "target.json"
    baseline.write_text(outdated(baseline.read_text()))
    link_to(baseline, target)
    before = target.read_bytes()
    result = recorded.runpytest("--finetune", "--snapshot-update")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            f"*test_q.py::test_a: refusing to write {baseline}: the symbolic link {baseline} leads to {target}, "
            f"outside {recorded.path / 'baselines'}, the folder pytest-finetune changes files in; nothing was "
            "written; remove the link (a file or folder of its own then takes its place) or point it inside that "
            "folder, and run again"
        ]
    )
    assert_no_traceback(result)
    assert target.read_bytes() == before
    assert baseline.is_symlink() and baseline.resolve() == target.resolve()


def test_an_update_writes_through_a_link_inside_the_baseline_folder(recorded: pytest.Pytester) -> None:
    """A link to a file inside the baseline folder is followed, as before: its target is rewritten, the link
    stays one (and the target, which looks like the baseline of a removed module ``shared.py``, is kept)."""
    baseline = recorded.path / BASELINE
    target = recorded.path / "baselines" / "shared" / "test_a.json"
    recorded_text = baseline.read_text()
    baseline.write_text(outdated(recorded_text))
    link_to(baseline, target)
    result = recorded.runpytest("--finetune", "--snapshot-update")
    result.assert_outcomes(passed=1)
    assert baseline.is_symlink() and baseline.resolve() == target.resolve()
    assert json.loads(target.read_text())["metrics"] == json.loads(recorded_text)["metrics"]
    result.stdout.no_fnmatch_line("*another process*")


def test_a_baseline_folder_linked_out_of_the_baseline_folder_is_neither_written_nor_emptied(
    finetune_project: pytest.Pytester, outside: Path
) -> None:
    """``baselines/tests`` a link to a folder elsewhere: the update neither rewrites the baseline there nor
    removes the unused one beside it; the test fails and the session ends in an error, each naming the link,
    and syrupy does not report the unused baseline deleted."""
    finetune_project.mkpydir("tests")
    (finetune_project.path / "tests" / "test_q.py").write_text(TEST_Q)
    finetune_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)
    linked = finetune_project.path / "baselines" / "tests"
    baseline, stale = linked / "test_q" / "test_a.json", linked / "test_q" / "test_old.json"
    baseline.write_text(outdated(baseline.read_text()))
    shutil.copy(baseline, stale)
    link_to(linked, outside / "tests")
    before = files_under(outside)
    result = finetune_project.runpytest("--finetune", "--snapshot-update")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            f"*test_q.py::test_a: refusing to write {baseline}: the symbolic link {linked} leads to {outside / 'tests'}"
            f", outside {finetune_project.path / 'baselines'}, *; nothing was written; *",
            f"ERROR: refusing to delete {stale}: the symbolic link {linked} leads to {outside / 'tests'}, *; "
            "it is unchanged; *",
        ]
    )
    result.stdout.no_fnmatch_line("*deleted*")
    assert_no_traceback(result)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert files_under(outside) == before


def character_device(path: Path) -> None:
    path.unlink()
    path.symlink_to("/dev/zero")


def pipe(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def oversized(path: Path) -> None:
    """A sparse file of one byte more than the plugin reads (no disk space taken)."""
    with open(path, "r+b") as handle:
        handle.truncate(MAX_READ_BYTES + 1)


UNFIT = {
    "dev-zero": (character_device, "test_a.json (it leads to /dev/zero) is a character device, not a regular file"),
    "fifo": (pipe, "test_a.json is a pipe, not a regular file"),
    "oversized": (oversized, "test_a.json holds more than 67,108,864 bytes, the most pytest-finetune reads of it"),
}


@pytest.mark.parametrize("make, reason", UNFIT.values(), ids=UNFIT.keys())
def test_a_baseline_that_is_no_regular_file_of_a_sane_size_fails_naming_it(
    recorded: pytest.Pytester, make: Callable[[Path], None], reason: str
) -> None:
    """A baseline that is a link to ``/dev/zero``, a pipe (which would block the reader forever) or a file over
    the limit is not read: the test fails naming it and the fix, at once; with ``--snapshot-update`` the file
    is not written through either."""
    baseline = recorded.path / BASELINE
    make(baseline)
    result = recorded.runpytest("--finetune")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            f"*test_q.py::test_a: could not read {baseline} ({reason}); nothing was compared or written; "
            f"replace {baseline} with a regular file and run again"
        ]
    )
    assert_no_traceback(result)


def test_a_report_linked_out_of_its_folder_is_refused(recorded: pytest.Pytester, outside: Path) -> None:
    """``--finetune-report`` at a link that leads out of the report's folder: the session fails naming the link,
    and the file it leads to is unchanged; a link inside the folder (``--finetune-report-md``) is followed."""
    report, target = recorded.path / "report.json", outside / "report.json"
    target.write_text("not a report\n")
    report.symlink_to(target)
    (recorded.path / "reports").mkdir()
    (recorded.path / "reports" / "summary.md").symlink_to("latest.md")
    result = recorded.runpytest(
        "--finetune", "--finetune-report=report.json", "--finetune-report-md=reports/summary.md"
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [f"ERROR: refusing to write {report}: the symbolic link {report} leads to {target}, outside {recorded.path}, *"]
    )
    assert_no_traceback(result)
    assert target.read_text() == "not a report\n"
    assert "test_q.py::test_a" in (recorded.path / "reports" / "latest.md").read_text()


ENTRY_FILES = {
    "result-dev-zero": ("result.json", character_device, "result.json (it leads to /dev/zero) is a character device"),
    "result-fifo": ("result.json", pipe, "result.json is a pipe"),
    "result-oversized": ("result.json", oversized, "result.json holds more than 67,108,864 bytes*"),
    "predictions-fifo": ("predictions.npy", pipe, "predictions.npy is a pipe"),
}


@pytest.mark.parametrize("name, make, reason", ENTRY_FILES.values(), ids=ENTRY_FILES.keys())
def test_a_cache_entry_file_that_is_no_regular_file_of_a_sane_size_is_a_miss(
    finetune_project: pytest.Pytester, name: str, make: Callable[[Path], None], reason: str
) -> None:
    """An entry's file that is a link to ``/dev/zero``, a pipe or a file over the limit: a miss with a warning
    naming it, at once, and the entry is rewritten (what a link pointed to is left alone)."""
    finetune_project.makeconftest(CONFTEST)
    finetune_project.makepyfile(test_quality=TEST)
    _, _, first = run(finetune_project)
    (entry,) = entries(finetune_project)
    make(entry / name)
    result, trained, again = run(finetune_project)
    assert trained == 2 and again == first
    result.stdout.fnmatch_lines([f"*pytest-finetune: cache entry {entry} is unreadable (UnfitFile: {reason}*"])
    assert run(finetune_project)[1] == 2  # rewritten: served
