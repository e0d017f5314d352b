"""A ``pytest --finetune --snapshot-update`` killed mid-run (SIGKILL, Ctrl-C) leaves every
baseline whole (the old bytes or a complete new record), no temporary file that passes for a
baseline, only complete cache entries, and a repository where the next run just works.

Each test records three baselines in-process, then starts a real pytest subprocess that
re-records them with another learning rate (so every baseline would be rewritten and every
result-cache lookup misses), stops it at a chosen point and inspects the files.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from helpers import GUARD_OFF

from pytest_finetune.tasks import TASKS

# Three tests, three recipes (seeds), so three trainings, three baselines and three cache entries.
TESTS = """
import pytest

@pytest.mark.finetune(seed=1)
def test_a():
    "Trained first."

@pytest.mark.finetune(seed=2)
def test_b():
    "Trained second."

@pytest.mark.finetune(seed=3)
def test_c():
    "Trained last."
"""
NAMES = ("test_a", "test_b", "test_c")
# Counts trainings; pauses at training $PAUSE_AT (marker file, then sleep) so that the test can
# kill it there; with $CRASH_AT, SIGKILLs itself when os.replace publishes a path matching it:
# after the temporary file or folder is complete and fsync'd, before it becomes the real one.
CONFTEST = """
import fnmatch, os, signal, time
from pathlib import Path

# Ctrl-C raises KeyboardInterrupt even where the test runs in a background job, which starts
# its children with SIGINT ignored (CI runners, nohup).
signal.signal(signal.SIGINT, signal.default_int_handler)

if os.environ.get("CRASH_AT"):
    _replace = os.replace

    def _crashing_replace(src, dst, *args, **kwargs):
        if fnmatch.fnmatch(str(dst), os.environ["CRASH_AT"]):
            Path("crashing").write_text(str(dst))
            os.kill(os.getpid(), signal.SIGKILL)
        return _replace(src, dst, *args, **kwargs)

    os.replace = _crashing_replace


def pytest_finetune_result(result):
    log = Path("trainings.txt")
    with log.open("a") as handle:
        handle.write("trained\\n")
    if os.environ.get("PAUSE_AT") == str(len(log.read_text().splitlines())):
        Path("paused").write_text(str(os.getpid()))
        time.sleep(300)
"""
NEW_RECIPE = "--finetune-set=learning_rate=0.001"
CACHE = Path(".pytest_cache/d/finetune")
DEADLINE_S = 180.0


@pytest.fixture
def recorded(finetune_project: pytest.Pytester) -> pytest.Pytester:
    """The project with its three baselines and cache entries recorded (in-process)."""
    finetune_project.makeconftest(CONFTEST)
    finetune_project.makepyfile(test_kill_models=TESTS)
    finetune_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=3)
    (finetune_project.path / "trainings.txt").unlink()
    return finetune_project


def baseline(project: pytest.Pytester, name: str) -> Path:
    return project.path / "baselines" / "test_kill_models" / f"{name}.json"


def baseline_bytes(project: pytest.Pytester) -> dict[str, bytes]:
    return {name: baseline(project, name).read_bytes() for name in NAMES}


def start(project: pytest.Pytester, *args: str, **env: str) -> subprocess.Popen[bytes]:
    """A real ``python -m pytest --finetune --snapshot-update`` (new recipe) in the project."""
    environment = {
        **{key: value for key, value in os.environ.items() if key not in ("PYTEST_ADDOPTS", "CI")},
        "PYTEST_ADDOPTS": GUARD_OFF,  # the tiny model collapses (see conftest)
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_DATASETS_CACHE": str(project.path / "hf_datasets"),
        **env,
    }
    command = [sys.executable, "-m", "pytest", "-p", "no:xdist", "--finetune", "--snapshot-update", NEW_RECIPE, *args]
    return subprocess.Popen(
        command, cwd=project.path, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def wait_for(path: Path, process: subprocess.Popen[bytes]) -> None:
    """Poll until ``path`` exists; fail (with the output) if the process ends first or the deadline passes."""
    deadline = time.monotonic() + DEADLINE_S
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"pytest ended (rc {process.returncode}) before {path.name}:\n{process.stdout.read().decode()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no {path.name} after {DEADLINE_S} s")
        time.sleep(0.05)


def finish(process: subprocess.Popen[bytes]) -> tuple[int, str]:
    """Wait for the process (killing it past the deadline); its return code and output."""
    try:
        output, _ = process.communicate(timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"pytest did not end within {DEADLINE_S} s:\n{output.decode()}")
    return process.returncode, output.decode()


def assert_whole(project: pytest.Pytester, old: dict[str, bytes]) -> dict[str, str]:
    """Each baseline is its old bytes or a complete new record; no temporary file could pass for
    one. Returns each baseline's state: ``old`` or ``new``."""
    states = {}
    for name in NAMES:
        data = baseline(project, name).read_bytes()
        if data == old[name]:
            states[name] = "old"
            continue
        record = json.loads(data)  # complete, valid JSON ...
        assert data.endswith(b"}\n")
        assert set(record) >= {"format", "recipe", "metrics", "history", "environment", "date"}
        assert record["recipe"]["training_args"]["learning_rate"] == 0.001  # ... of the new run
        states[name] = "new"
    folder = project.path / "baselines"
    visible = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
    # a temporary file is hidden and ends in .tmp: syrupy never takes it for a baseline
    assert [path for path in visible if not path.rsplit("/", 1)[-1].startswith(".")] == [
        f"test_kill_models/{name}.json" for name in NAMES
    ]
    assert all(path.endswith(".tmp") for path in visible if path.rsplit("/", 1)[-1].startswith("."))
    return states


def cache_entries(project: pytest.Pytester) -> tuple[list[float], list[str]]:
    """The learning rates of the cache's entries, each checked complete and loadable; and the
    names of hidden (staging) folders left beside them."""
    rates, hidden = [], []
    for entry in sorted((project.path / CACHE).iterdir()):
        if entry.name.endswith(".lock"):  # an entry's lock file (ResultCache.training)
            continue
        if entry.name.startswith("."):
            hidden.append(entry.name)
            continue
        assert sorted(path.name for path in entry.iterdir()) == ["label_ids.npy", "predictions.npy", "result.json"]
        stored = json.loads((entry / "result.json").read_text())
        assert {"accuracy", "f1", "eval_loss"} <= set(stored["metrics"])
        predictions = np.load(entry / "predictions.npy", allow_pickle=False)
        labels = np.load(entry / "label_ids.npy", allow_pickle=False)
        assert predictions.shape == (24, 2) and labels.shape == (24,)
        rates.append(stored["inputs"]["recipe"]["training_args"]["learning_rate"])
    return sorted(rates), hidden


def trainings(project: pytest.Pytester) -> int:
    log = project.path / "trainings.txt"
    return len(log.read_text().splitlines()) if log.exists() else 0


def assert_next_runs_work(project: pytest.Pytester, trained_before: int) -> None:
    """Re-recording finishes the job (training only what the cache lacks), then the gate passes
    and leaves the baselines byte for byte."""
    rates_before, _ = cache_entries(project)
    result = project.runpytest("--finetune", "--snapshot-update", NEW_RECIPE)
    result.assert_outcomes(passed=3)
    assert trainings(project) - trained_before == 3 - rates_before.count(0.001)  # cached results are not trained again
    assert cache_entries(project)[0] == [5e-05] * 3 + [0.001] * 3
    recorded = baseline_bytes(project)
    assert set(assert_whole(project, recorded).values()) == {"old"}
    assert all(json.loads(data)["recipe"]["training_args"]["learning_rate"] == 0.001 for data in recorded.values())
    result = project.runpytest("--finetune", NEW_RECIPE)
    result.assert_outcomes(passed=3)
    result.stdout.no_fnmatch_line("*unused*")
    assert baseline_bytes(project) == recorded


#: The fix these tests wait for (pytest_finetune/plugin.py): syrupy counts the baselines of the
#: tests a stopped session never ran as unused, and ``--snapshot-update`` deletes them.
@pytest.mark.parametrize(
    "how",
    [
        pytest.param(signal.SIGKILL, id="SIGKILL"),
        pytest.param(signal.SIGINT, id="SIGINT"),
    ],
)
def test_killed_mid_run(recorded: pytest.Pytester, how: signal.Signals) -> None:
    """Stopped while the second test's result is being handed out: the first test's baseline and
    cache entry are new and whole, the second's and third's baselines untouched (Ctrl-C must not
    make syrupy delete the baselines of the tests it never finished)."""
    old = baseline_bytes(recorded)
    process = start(recorded, PAUSE_AT="2")
    wait_for(recorded.path / "paused", process)
    process.send_signal(how)
    returncode, output = finish(process)
    if how == signal.SIGKILL:
        assert returncode == -signal.SIGKILL
    else:
        # pytest 9.2 ends with 1, not 2 (INTERRUPTED): a Ctrl-C in a test's setup leaves no setup
        # report, and the teardown of its tmp_path fixture then raises KeyError (pytest's bug).
        assert returncode in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.TESTS_FAILED), output
        assert "KeyboardInterrupt" in output
    assert "deleted" not in output, output
    assert assert_whole(recorded, old) == {"test_a": "new", "test_b": "old", "test_c": "old"}, output
    assert cache_entries(recorded) == ([5e-05] * 3 + [0.001], [])
    assert_next_runs_work(recorded, trained_before=trainings(recorded))


def test_killed_between_writing_and_renaming_a_baseline(recorded: pytest.Pytester) -> None:
    """The worst moment: test_b's temporary file is complete and fsync'd, the rename not done.
    The old baseline stays; the leftover is hidden and never taken for a baseline (not reported
    unused, not deleted, not compared)."""
    old = baseline_bytes(recorded)
    returncode, output = finish(start(recorded, CRASH_AT="*/baselines/test_kill_models/test_b.json"))
    assert returncode == -signal.SIGKILL, output
    assert (recorded.path / "crashing").exists()
    assert assert_whole(recorded, old) == {"test_a": "new", "test_b": "old", "test_c": "old"}
    (leftover,) = (recorded.path / "baselines/test_kill_models").glob(".test_b.json.*.tmp")
    assert json.loads(leftover.read_text())["recipe"]["training_args"]["learning_rate"] == 0.001
    assert cache_entries(recorded) == ([5e-05] * 3 + [0.001] * 2, [])
    assert_next_runs_work(recorded, trained_before=trainings(recorded))
    assert leftover.exists()  # nobody's to clean: harmless, hidden


# Stores a result in the cache folder argv[1] under key argv[2], SIGKILLed as it renames the
# complete, fsync'd staging folder into place.
STORE_AND_DIE = """
import os, signal, sys, types
from pathlib import Path
import numpy as np
from pytest_finetune.tasks import TASKS
from pytest_finetune.cache import ResultCache
from pytest_finetune.tasks import TASKS

os.replace = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
predictions = types.SimpleNamespace(metrics={}, predictions=np.ones((3, 2)), label_ids=np.array([0, 1, 1]))
result = types.SimpleNamespace(metrics={"accuracy": 0.5}, history=[], train_runtime=1.0, environment={},
                               predictions=predictions, recipe=types.SimpleNamespace(task_spec=TASKS["mrpc"]))
ResultCache(Path(sys.argv[1])).store(sys.argv[2], result, {})
"""


def test_killed_while_publishing_a_cache_entry(tmp_path: Path) -> None:
    """Killed as a complete staging folder is renamed to its entry: there is no entry (a miss,
    without a warning), the staging folder is hidden, and the next store and load work."""
    from types import SimpleNamespace

    from pytest_finetune.cache import ResultCache

    key = "ab" * 32
    process = subprocess.run(
        [sys.executable, "-c", STORE_AND_DIE, str(tmp_path), key], capture_output=True, text=True, timeout=120
    )
    assert process.returncode == -signal.SIGKILL, process.stderr
    (staging,) = tmp_path.iterdir()
    assert staging.name.startswith(f".{key[:12]}-")
    cache = ResultCache(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a plain miss: no "unreadable entry" warning
        assert cache.load(key, recipe=SimpleNamespace(task_spec=TASKS["mrpc"])) is None  # type: ignore[arg-type]
    predictions = SimpleNamespace(metrics={}, predictions=np.ones((3, 2)), label_ids=np.array([0, 1, 1]))
    result = SimpleNamespace(
        metrics={"accuracy": 0.5},
        history=[],
        train_runtime=1.0,
        environment={},
        predictions=predictions,
        recipe=SimpleNamespace(task_spec=TASKS["mrpc"]),
    )
    cache.store(key, result, {})  # type: ignore[arg-type]
    loaded = cache.load(key, recipe=SimpleNamespace(task_spec=TASKS["mrpc"]))  # type: ignore[arg-type]
    assert loaded is not None and loaded.metrics == {"accuracy": 0.5}
    assert np.array_equal(loaded.predictions.predictions, np.ones((3, 2)))


def test_a_run_stopped_by_a_failure_keeps_the_baselines_it_did_not_reach(recorded: pytest.Pytester) -> None:
    """``-x``: the first test fails, the session stops; the tests after it never ran, and their
    baselines must survive ``--snapshot-update``."""
    old = baseline_bytes(recorded)
    recorded.makepyfile(test_kill_models=TESTS.replace('"Trained first."', "assert False"))
    result = recorded.runpytest("--finetune", "--snapshot-update", "-x")
    result.assert_outcomes(failed=1)
    result.stdout.no_fnmatch_line("*deleted*")
    result.stdout.fnmatch_lines(
        ["pytest-finetune: the session stopped before every test ran: the baselines of the tests*"]
    )
    assert baseline_bytes(recorded) == old


def test_ctrl_c_while_training_ends_cleanly_and_writes_the_reports(recorded: pytest.Pytester) -> None:
    """Ctrl-C while the second test trains (its setup): exit code 2 (interrupted), no traceback,
    the "kept" message, the reports of what finished, and the baselines whole (test_a's new)."""
    old = baseline_bytes(recorded)
    process = start(recorded, "--finetune-report=r.json", "--finetune-report-md=r.md", PAUSE_AT="2")
    wait_for(recorded.path / "paused", process)
    process.send_signal(signal.SIGINT)
    returncode, output = finish(process)
    assert returncode == pytest.ExitCode.INTERRUPTED, output
    assert "KeyboardInterrupt" in output
    assert "Traceback (most recent call last)" not in output and "KeyError" not in output, output
    assert "pytest-finetune: the session stopped before every test ran" in output, output
    report = json.loads((recorded.path / "r.json").read_text())
    assert [(test["test"], test["outcome"]) for test in report["tests"]] == [("test_kill_models.py::test_a", "updated")]
    assert "1 test(s), 0 failed." in (recorded.path / "r.md").read_text()
    assert assert_whole(recorded, old) == {"test_a": "new", "test_b": "old", "test_c": "old"}, output


# Baseline names as long as a file name may be: the temporary file beside one must fit as well ------

LONG_IDS = """
import pytest

@pytest.mark.finetune
@pytest.mark.parametrize("v", [1, 2], ids=["L" * 300, "\\u65e5\\u672c\\u8a9e" * 30])
def test_long(v):
    "Both share one fine-tune."
"""


def test_a_baseline_named_at_the_file_name_limit_is_recorded_and_gated(finetune_project: pytest.Pytester) -> None:
    """A 300-character id (cut to a 255-byte file name, the limit of common file systems), and a unicode id
    that pytest escapes to as many bytes: the temporary file beside each baseline has a name that fits too."""
    finetune_project.makepyfile(test_ids=LONG_IDS)
    result = finetune_project.runpytest("--finetune", "--snapshot-update")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*2 snapshots generated*"])
    folder = finetune_project.path / "baselines" / "test_ids"
    names = sorted(path.name for path in folder.iterdir())
    assert len(names) == 2 and all(len(os.fsencode(name)) == 255 for name in names)
    assert {name[:13] for name in names} == {"test_long[LLL", "test_long[%5C"}
    result = finetune_project.runpytest("--finetune")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*2 snapshots passed*"])
    assert sorted(path.name for path in folder.iterdir()) == names  # no temporary file left
