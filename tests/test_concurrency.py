"""Several writers at once: pytest processes sharing one repository (baselines and result
cache), pytest-xdist workers, and the two writers underneath (``storage.write_atomically``,
``cache.ResultCache.store``) raced from threads and processes. Every file ends complete,
nothing is lost, and no temporary file or staging folder is left behind.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import subprocess_environment

from pytest_finetune.cache import LOCK_NOTICE_SECONDS, EntryBusy, ResultCache
from pytest_finetune.storage import write_atomically
from pytest_finetune.tasks import TASKS

# Two recipes (seeds) over three tests: test_a and test_b share a fine-tune.
TESTS = """
import pytest

@pytest.mark.finetune(seed=1)
def test_a():
    "Seed 1."

@pytest.mark.finetune(seed=1)
def test_b():
    "Seed 1 again: one fine-tune for both in a session."

@pytest.mark.finetune(seed=2)
def test_c():
    "Seed 2."
"""
NAMES = ("test_a", "test_b", "test_c")
CACHE = Path(".pytest_cache/d/finetune")
TIMEOUT_S = 300


@pytest.fixture
def project(finetune_project: pytest.Pytester) -> pytest.Pytester:
    finetune_project.makepyfile(test_race_models=TESTS)
    return finetune_project


def baselines(project: pytest.Pytester) -> dict[str, bytes]:
    """Every file under ``baselines/`` (hidden ones included), by path."""
    folder = project.path / "baselines"
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def assert_complete_baselines(project: pytest.Pytester) -> dict[str, dict]:
    """Exactly one complete, valid record per test, nothing else (no temporary file)."""
    files = baselines(project)
    assert sorted(files) == [f"test_race_models/{name}.json" for name in NAMES]
    records = {}
    for path, data in files.items():
        record = json.loads(data)
        assert data.endswith(b"}\n") and {"recipe", "metrics", "history", "environment", "date"} <= set(record)
        records[path] = record
    return records


def assert_complete_cache(project: pytest.Pytester, count: int) -> None:
    """``count`` complete, loadable entries and no staging folder."""
    everything = sorted((project.path / CACHE).iterdir())
    entries = [path for path in everything if path.is_dir()]
    assert [entry.name for entry in entries if entry.name.startswith(".")] == []
    assert len(entries) == count
    assert sorted(path.name for path in everything if not path.is_dir()) == [f"{entry.name}.lock" for entry in entries]
    for entry in entries:
        assert sorted(path.name for path in entry.iterdir()) == ["label_ids.npy", "predictions.npy", "result.json"]
        assert {"accuracy", "f1"} <= set(json.loads((entry / "result.json").read_text())["metrics"])
        assert np.load(entry / "predictions.npy", allow_pickle=False).shape == (24, 2)
        assert np.load(entry / "label_ids.npy", allow_pickle=False).shape == (24,)


def test_processes_recording_the_same_baselines_at_once(project: pytest.Pytester) -> None:
    """Three ``pytest --finetune --snapshot-update`` at once on a fresh repository: each records
    all baselines (so each baseline has three writers); all pass, one complete record per test
    remains, two complete cache entries, and a gated run then passes from the cache."""
    command = [sys.executable, "-m", "pytest", "-p", "no:xdist", "--finetune", "--snapshot-update"]
    processes = [
        subprocess.Popen(
            command,
            cwd=project.path,
            env=subprocess_environment(project),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(3)
    ]
    outputs = [process.communicate(timeout=TIMEOUT_S)[0].decode() for process in processes]
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output
        assert "3 passed" in output, output
    records = assert_complete_baselines(project)
    assert {record["recipe"]["seed"] for record in records.values()} == {1, 2}
    assert_complete_cache(project, count=2)
    before = baselines(project)
    result = project.runpytest("--finetune")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*test_race_models.py::test_a*passed*cached*"])
    assert baselines(project) == before


def test_xdist_updates_and_gates_without_losing_baselines(project: pytest.Pytester) -> None:
    """``-n 2 --snapshot-update`` on a repository holding two of the three baselines and a stale
    one: the missing one is recorded by its worker, the two others are left byte for byte (no
    worker deletes what the other's tests own), and the controller's unused-baseline cleanup
    deletes only the stale file. A gated ``-n 2`` run then passes."""
    project.runpytest("--finetune", "--snapshot-update", "-k", "not test_c").assert_outcomes(passed=2)
    kept = baselines(project)
    assert sorted(kept) == ["test_race_models/test_a.json", "test_race_models/test_b.json"]
    stale = project.path / "baselines" / "test_race_models" / "test_gone.json"
    stale.write_text('{"metrics": {"accuracy": 0.5, "f1": 0.5}}\n')

    result = project.runpytest("-n", "2", "--finetune", "--snapshot-update")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*1 snapshot generated. 1 unused snapshot deleted*"])
    assert not stale.exists()
    assert_complete_baselines(project)
    recorded = baselines(project)
    assert {path: recorded[path] for path in kept} == kept

    result = project.runpytest("-n", "2", "--finetune")
    result.assert_outcomes(passed=3)
    result.stdout.no_fnmatch_line("*unused*")
    assert baselines(project) == recorded
    assert_complete_cache(project, count=2)


def test_write_atomically_from_many_threads(tmp_path: Path) -> None:
    """Eight threads replace one file 40 times each while a reader reads it: the reader only ever
    sees one writer's complete text, the last write wins whole, and no temporary file remains."""
    path = tmp_path / "baseline.json"
    texts = [json.dumps({"writer": writer, "padding": "x" * (20_000 + writer)}) + "\n" for writer in range(8)]
    write_atomically(path, texts[0])
    done = threading.Event()
    seen: set[str] = set()
    errors: list[BaseException] = []

    def write(text: str) -> None:
        try:
            for _ in range(40):
                write_atomically(path, text)
        except BaseException as error:  # noqa: B036  (reported by the test)
            errors.append(error)

    def read() -> None:
        while not done.is_set():
            seen.add(path.read_text())

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=write, args=(text,)) for text in texts]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    done.set()
    reader.join()
    assert errors == []
    assert seen <= set(texts) and len(seen) > 1
    assert path.read_text() in texts
    assert [child.name for child in tmp_path.iterdir()] == ["baseline.json"]


# Waits for the file argv[1] ("go"), then stores (argv[4] == "store") a result whose predictions
# are all argv[3] under key argv[2], or writes argv[3] atomically 30 times to the path argv[2].
RACER = """
import os, sys, time, types, warnings
from pathlib import Path
import numpy as np

warnings.simplefilter("error")  # a "cannot write the result cache" warning fails the racer
go, target, value, what = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
while not go.exists():
    time.sleep(0.001)
if what == "store":
    from pytest_finetune.cache import ResultCache
    from pytest_finetune.tasks import TASKS

    predictions = types.SimpleNamespace(
        metrics={}, predictions=np.full((400, 2), float(value)), label_ids=np.arange(400) % 2
    )
    result = types.SimpleNamespace(
        metrics={"accuracy": 0.5, "racer": float(value)}, history=[], train_runtime=1.0, environment={},
        predictions=predictions, recipe=types.SimpleNamespace(task_spec=TASKS["mrpc"]),
    )
    ResultCache(go.parent / "cache").store(target, result, {"value": value})
else:
    from pytest_finetune.storage import write_atomically

    for _ in range(30):
        write_atomically(Path(target), value * 50_000 + "\\n")
"""


def race(tmp_path: Path, target: str, what: str, count: int = 4) -> None:
    """Start ``count`` racer processes, release them at once, and check that each succeeded."""
    go = tmp_path / "go"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(go), target, str(racer + 1), what],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for racer in range(count)
    ]
    time.sleep(0.5)  # let them import; they spin on the go file
    go.write_text("go")
    for process in processes:
        output = process.communicate(timeout=120)[0].decode()
        assert process.returncode == 0, output


def test_write_atomically_from_many_processes(tmp_path: Path) -> None:
    """Four processes replace one file 30 times each: one complete text remains, no temporary file."""
    path = tmp_path / "baseline.json"
    race(tmp_path, str(path), "write")
    text = path.read_text()
    assert text in {str(racer) * 50_000 + "\n" for racer in range(1, 5)}
    assert sorted(child.name for child in tmp_path.iterdir()) == ["baseline.json", "go"]


def test_result_cache_store_from_many_processes(tmp_path: Path) -> None:
    """Four processes store the same key at once: one of them wins whole (its metrics and its
    arrays, not a mix), none fails or warns, no staging folder is left, and the entry loads."""
    key = "cd" * 32
    race(tmp_path, key, "store")
    cache_folder = tmp_path / "cache"
    assert [entry.name for entry in cache_folder.iterdir()] == [key]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = ResultCache(cache_folder).load(key, recipe=SimpleNamespace(task_spec=TASKS["mrpc"]))  # type: ignore[arg-type]
    assert loaded is not None
    winner = loaded.metrics["racer"]
    assert winner in {1.0, 2.0, 3.0, 4.0}
    assert np.array_equal(loaded.predictions.predictions, np.full((400, 2), winner))
    assert json.loads((cache_folder / key / "result.json").read_text())["inputs"] == {"value": str(int(winner))}


def test_result_cache_store_from_many_threads(tmp_path: Path) -> None:
    """Eight threads store the same key while others load it: loads see a miss or a complete
    entry, never a warning; one entry and no staging folder remain."""
    cache = ResultCache(tmp_path)
    key = "ef" * 32
    errors: list[BaseException] = []

    def result(value: float) -> SimpleNamespace:
        predictions = SimpleNamespace(metrics={}, predictions=np.full((50, 2), value), label_ids=np.arange(50) % 2)
        return SimpleNamespace(
            metrics={"accuracy": 0.5, "thread": value},
            history=[],
            train_runtime=1.0,
            environment={},
            predictions=predictions,
            recipe=SimpleNamespace(task_spec=TASKS["mrpc"]),
        )

    def store(value: float) -> None:
        try:
            for _ in range(10):
                cache.store(key, result(value), {})  # type: ignore[arg-type]
        except BaseException as error:  # noqa: B036  (reported by the test)
            errors.append(error)

    def load() -> None:
        try:
            for _ in range(50):
                loaded = cache.load(key, recipe=SimpleNamespace(task_spec=TASKS["mrpc"]))  # type: ignore[arg-type]
                if loaded is not None:
                    value = loaded.metrics["thread"]
                    assert np.array_equal(loaded.predictions.predictions, np.full((50, 2), value))
        except BaseException as error:  # noqa: B036  (reported by the test)
            errors.append(error)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        threads = [threading.Thread(target=store, args=(float(n),)) for n in range(8)]
        threads += [threading.Thread(target=load) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    assert [str(warning.message) for warning in caught] == []
    assert [entry.name for entry in tmp_path.iterdir()] == [key]


# Another process, while this one trains test_a: records the baseline of test_c (a test its version of the
# module has) or rewrites the stale test_old's (atomically, as pytest-finetune does, or in place).
OTHER_PROCESS_CONFTEST = """
import os, pathlib, pytest

@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item):
    folder = pathlib.Path("baselines/test_q")
    name, how = os.environ["OTHER_PROCESS"].split(":")
    text = (folder / "test_a.json").read_text().replace('"date": "', '"date": "1')
    if how == "in-place":
        with open(folder / name, "w") as handle:
            handle.write(text)
    else:
        (folder / ".other.tmp").write_text(text)
        os.replace(folder / ".other.tmp", folder / name)
"""
#: syrupy's lines that report baselines unused or deleted.
SYRUPY_UNUSED = ("*snapshot* unused.*", "*unused snapshot* deleted.*")


@pytest.fixture
def recorded_q(finetune_project: pytest.Pytester) -> pytest.Pytester:
    """A project whose test_q.py holds test_a, recorded, and a conftest that acts as another process."""
    finetune_project.makepyfile(test_q="import pytest\n\n@pytest.mark.finetune\ndef test_a():\n    pass\n")
    finetune_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)
    finetune_project.makeconftest(OTHER_PROCESS_CONFTEST)
    return finetune_project


@pytest.mark.parametrize("update", [True, False], ids=["update", "gate"])
def test_a_baseline_another_process_records_meanwhile_is_kept(
    recorded_q: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, update: bool
) -> None:
    """A baseline recorded by another process after this session started is not this session's: neither
    deleted by ``--snapshot-update`` nor counted unused (which fails a gated run), and the summary says so."""
    monkeypatch.setenv("OTHER_PROCESS", "test_c.json:atomic")
    result = recorded_q.runpytest("--finetune", *(["--snapshot-update"] if update else []))
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=1)
    new = recorded_q.path / "baselines" / "test_q" / "test_c.json"
    assert new.read_text().count('"date": "1') == 1
    result.stdout.fnmatch_lines(
        [
            "pytest-finetune: 1 baseline written by another process during this pytest run kept, not counted unused: "
            "baselines/test_q/test_c.json (new)"
        ]
    )
    for line in SYRUPY_UNUSED:
        result.stdout.no_fnmatch_line(line)


@pytest.mark.parametrize(
    "how, workers", [("atomic", ()), ("in-place", ()), ("atomic", ("-n", "2"))], ids=["atomic", "in-place", "xdist"]
)
def test_a_stale_baseline_another_process_rewrites_meanwhile_is_kept(
    recorded_q: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, how: str, workers: tuple[str, ...]
) -> None:
    """Two stale baselines when ``--snapshot-update`` starts; another process rewrites one of them meanwhile:
    that one is kept as it wrote it, the other is deleted, and syrupy's counts say one deleted (also under
    pytest-xdist, whose controller deletes)."""
    folder = recorded_q.path / "baselines" / "test_q"
    for name in ("test_old.json", "test_gone.json"):
        shutil.copy(folder / "test_a.json", folder / name)
    monkeypatch.setenv("OTHER_PROCESS", f"test_old.json:{how}")
    result = recorded_q.runpytest("--finetune", "--snapshot-update", *workers)
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=1)
    assert not (folder / "test_gone.json").exists()
    assert (folder / "test_old.json").read_text().count('"date": "1') == 1
    result.stdout.fnmatch_lines(
        [
            "*1 snapshot passed. 1 unused snapshot deleted.",
            "Deleted test_gone (baselines/test_q/test_gone.json)",
            "pytest-finetune: 1 baseline written by another process during this pytest run kept, not counted unused: "
            "baselines/test_q/test_old.json (changed)",
        ]
    )
    result.stdout.no_fnmatch_line("*test_old*deleted*")
    result.stdout.no_fnmatch_line("Deleted test_old*")


# One fine-tune per recipe across processes: the entry's lock ------------------------------------------

# Counts trainings; with HOLD set, a training then stays in the hook (the entry's lock held) until killed;
# with LINGER, it stays there a few seconds (so that another process started with it needs the same entry).
COUNTING = """
import os, pathlib, time

def pytest_finetune_result(result):
    with open("trainings.txt", "a") as handle:
        handle.write(f"{os.getpid()}\\n")
    if os.environ.get("HOLD"):
        pathlib.Path("holding").write_text("")
        time.sleep(600)
    time.sleep(float(os.environ.get("LINGER", "0")))
"""
ONE_RECIPE = ("-k", "test_a or test_b")


def start(project: pytest.Pytester, **extra: str) -> subprocess.Popen:
    """``pytest --finetune --snapshot-update`` on the tests that share one recipe, in a subprocess."""
    command = [sys.executable, "-m", "pytest", "-p", "no:xdist", "--finetune", "--snapshot-update", *ONE_RECIPE]
    return subprocess.Popen(
        command,
        cwd=project.path,
        env={**subprocess_environment(project), **extra},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def trainings(project: pytest.Pytester) -> list[str]:
    counted = project.path / "trainings.txt"
    return counted.read_text().split() if counted.exists() else []


def test_processes_started_together_fine_tune_a_recipe_once(project: pytest.Pytester) -> None:
    """Two pytest processes on one cache folder, needing the same recipe at once: one fine-tunes (and lingers
    before storing), the other waits for the entry's lock and is served the entry."""
    project.makeconftest(COUNTING)
    processes = [start(project, LINGER="4") for _ in range(2)]
    outputs = [process.communicate(timeout=TIMEOUT_S)[0].decode() for process in processes]
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output
        assert "2 passed" in output, output
    assert len(trainings(project)) == 1
    served = [output for output in outputs if "test_race_models.py::test_a" in output and "cached" in output]
    assert len(served) == 1, outputs
    assert_complete_cache(project, count=1)


def test_a_process_killed_while_it_holds_the_lock_does_not_block_the_next(project: pytest.Pytester) -> None:
    """The lock is the operating system's: SIGKILL releases it, and the next run fine-tunes and passes."""
    project.makeconftest(COUNTING)
    holder = start(project, HOLD="1")
    deadline = time.monotonic() + TIMEOUT_S
    while not (project.path / "holding").exists():
        assert holder.poll() is None and time.monotonic() < deadline, holder.communicate()[0].decode()
        time.sleep(0.2)
    holder.kill()
    holder.communicate(timeout=TIMEOUT_S)
    (project.path / "holding").unlink()
    follower = start(project)
    output = follower.communicate(timeout=TIMEOUT_S)[0].decode()
    assert follower.returncode == 0, output
    assert len(trainings(project)) == 2  # the killed one stored nothing: the next trained
    assert_complete_cache(project, count=1)


def wait_for(lock: contextlib.AbstractContextManager[None]) -> None:
    with lock:
        pass


def test_a_process_that_waits_for_the_lock_says_so(tmp_path: Path) -> None:
    from filelock import FileLock

    cache = ResultCache(tmp_path)
    key = "e" * 64
    told: list[Path] = []
    with FileLock(tmp_path / f"{key}.lock"):
        waiter = threading.Thread(target=lambda: wait_for(cache.training(key, told.append)))
        waiter.start()
        waiter.join(timeout=LOCK_NOTICE_SECONDS + 5)
        assert waiter.is_alive()  # still waiting
        assert told == [tmp_path / f"{key}.lock"]
    waiter.join(timeout=30)
    assert not waiter.is_alive()


def test_a_process_that_does_not_wait_is_told_the_entry_is_busy(tmp_path: Path) -> None:
    """``wait=False`` (a calibration's seeds): where another process holds the entry's lock, ``EntryBusy`` at once
    and the block does not run; once the lock is free, the block runs."""
    from filelock import FileLock

    cache = ResultCache(tmp_path)
    key = "f" * 64
    ran: list[str] = []
    with FileLock(tmp_path / f"{key}.lock"):
        with pytest.raises(EntryBusy, match=f"{key}.lock"):
            with cache.training(key, wait=False):
                ran.append("busy")
    with cache.training(key, wait=False):
        ran.append("free")
    assert ran == ["free"]


# Interleaved recipes: under load distribution, test_a and test_c (one recipe) could go to two workers.
GROUPED = """
import os, pytest

def record(name):
    with open("workers.txt", "a") as handle:
        handle.write(f"{name} {os.environ['PYTEST_XDIST_WORKER']}\\n")

@pytest.mark.finetune(seed=1)
def test_a(finetune_result):
    record("a")

@pytest.mark.finetune(seed=1)
def test_b(finetune_result):
    record("b")

@pytest.mark.finetune(seed=2)
def test_c(finetune_result):
    record("c")

@pytest.mark.finetune(seed=2)
def test_d(finetune_result):
    record("d")
"""


def test_under_xdist_each_recipe_is_fine_tuned_once(finetune_project: pytest.Pytester) -> None:
    """``-n 2`` over two recipes of two tests each: two fine-tunes in all, whichever worker runs which test (a
    worker that needs a recipe another is fine-tuning waits for its cache entry)."""
    finetune_project.makeconftest(COUNTING)
    finetune_project.makepyfile(test_grouped=GROUPED)
    finetune_project.runpytest("-n", "2", "--finetune", "--snapshot-update").assert_outcomes(passed=4)
    assert len(trainings(finetune_project)) == 2


def test_under_xdist_the_tests_of_one_recipe_run_on_one_worker(finetune_project: pytest.Pytester) -> None:
    """``-n 2``: the tests that share a recipe go to one worker, and the two recipes to two workers (xdist's
    ``load`` hands out a, c to one worker and b, d to the other). Their node ids stay theirs (xdist's ``loadgroup``
    would append ``@group``)."""
    finetune_project.makepyfile(test_grouped=GROUPED)
    result = finetune_project.runpytest("-n", "2", "-v", "--finetune", "--snapshot-update")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*PASSED test_grouped.py::test_a*"])
    result.stdout.no_fnmatch_line("*::test_*@*")
    workers = dict(line.split() for line in (finetune_project.path / "workers.txt").read_text().splitlines())
    assert workers["a"] == workers["b"] and workers["c"] == workers["d"]
    assert workers["a"] != workers["c"]


# Records which worker fine-tunes which seed. The test's own seed (1) waits, once it is trained, until another
# worker has trained seed 2 (a seed item started beside the test): so the test cannot take every seed itself.
SEEDS_COUNTED = """
import os, pathlib, time

def pytest_finetune_result(result):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "serial")
    with open("trainings.txt", "a") as handle:
        handle.write(f"{worker} {result.recipe.seed}\\n")
    if worker != "serial" and result.recipe.seed == 1:
        deadline = time.monotonic() + 120
        while " 2\\n" not in pathlib.Path("trainings.txt").read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
"""
CALIBRATED = """
import pytest

@pytest.mark.finetune(seed=1)
def test_a(finetune_result):
    pass
"""


def test_xdist_workers_share_a_calibrations_seeds(finetune_project: pytest.Pytester) -> None:
    """``--finetune-calibrate 3 -n 2``: the seeds spread over both workers (the test's companion seed items go to
    other workers), each fine-tuned once, and the calibration recorded is the serial one to the last digit."""
    finetune_project.makeconftest(SEEDS_COUNTED)
    finetune_project.makepyfile(test_calibrated=CALIBRATED)
    calibrate = ("--finetune", "--snapshot-update", "--finetune-calibrate", "3")
    finetune_project.runpytest("-p", "no:xdist", *calibrate, "--finetune-no-cache").assert_outcomes(passed=1)
    baseline = finetune_project.path / "baselines/test_calibrated/test_a.json"
    serial = json.loads(baseline.read_text())
    assert seeds_trained(finetune_project) == {"1": "serial", "2": "serial", "3": "serial"}
    baseline.unlink()
    (finetune_project.path / "trainings.txt").unlink()

    result = finetune_project.runpytest("-n", "2", "-v", *calibrate)
    result.assert_outcomes(passed=3)  # the test and its two seed items
    result.stdout.fnmatch_lines_random(
        [f"*PASSED test_calibrated.py::test_a[[]calibration-{run}-of-3[]]*" for run in (2, 3)]
    )
    trained = seeds_trained(finetune_project)
    assert sorted(trained) == ["1", "2", "3"], trained
    assert trained["1"] != trained["2"] and set(trained.values()) == {"gw0", "gw1"}, trained
    assert json.loads(baseline.read_text())["calibration"] == serial["calibration"]


def seeds_trained(project: pytest.Pytester) -> dict[str, str]:
    """Each seed fine-tuned (:data:`SEEDS_COUNTED`), with the worker that did it; a seed fine-tuned twice fails."""
    lines = [line.split() for line in (project.path / "trainings.txt").read_text().splitlines()]
    assert len({seed for _, seed in lines}) == len(lines), lines
    return {seed: worker for worker, seed in lines}
