"""Data-parallel sessions: ``torchrun`` (one machine, and two "machines" through a c10d endpoint) and
``accelerate launch`` over a pytester project, on the CPU (gloo). Every process runs the session; only rank 0
writes baselines, the result cache and reports; all reach the same verdict and exit status; the evaluation scores
each validation example once, in order."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import datasets
import numpy as np
import pytest
from helpers import QUALITY_BASELINE, QUALITY_TEST, make_rows, subprocess_environment, write_glue_tsv
from transformers.trainer_utils import PredictionOutput

from pytest_finetune.distributed import rank, wait_for_all, world_size
from pytest_finetune.errors import FinetuneError
from pytest_finetune.tolerances import Tolerances
from pytest_finetune.training import check_lined_up
from pytest_finetune.verdicts import Outcome, compare

TIMEOUT_S = 300
#: 25 validation examples, in evaluation batches of 4 over 2 processes: the last batches are padded with repeats.
DEV_ROWS = 25

#: Records, per process (its ``RANK``), each file it writes, renames, removes or makes a folder of under the
#: project, but for pytest's own cache, the datasets cache and these records: rank 0 alone may touch the others.
WATCHING_CONFTEST = """
import atexit, os, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
# pytest's and Python's own caches (__pycache__: whichever process imports a module first writes its bytecode)
IGNORED = (".pytest_cache/v", "pytest-cache-files-", "__pycache__", "hf_datasets", "touched-", "launcher-logs")
PYTEST_MAKES = (".", ".pytest_cache")  # pytest's own cache folder, made by every process
WRITING = os.O_WRONLY | os.O_RDWR | os.O_CREAT
touched = []


def audit(event, args):
    if event == "open":
        path, mode, flags = args
        if not ((isinstance(mode, str) and set(mode) & set("wax+")) or (isinstance(flags, int) and flags & WRITING)):
            return
        paths = [path]
    elif event in ("os.rename", "os.replace"):
        paths = args[:2]
    elif event in ("os.remove", "os.rmdir", "os.mkdir", "shutil.rmtree"):
        paths = args[:1]
    else:
        return
    for path in paths:
        if isinstance(path, (str, os.PathLike)):
            relative = os.path.relpath(os.path.abspath(path), ROOT)
            if not relative.startswith((os.pardir, *IGNORED)) and relative not in PYTEST_MAKES:
                touched.append(f"{event} {relative}")


sys.addaudithook(audit)
atexit.register(lambda: (ROOT / f"touched-{os.environ.get('RANK', '0')}.txt").write_text("\\n".join(touched)))


def pytest_report_header():
    return f"process rank {os.environ.get('RANK', '0')} of {os.environ.get('WORLD_SIZE', '1')}"
"""


@pytest.fixture
def project(pytester: pytest.Pytester, tiny_checkpoint: Path) -> pytest.Pytester:
    """One marked test over 48 training and :data:`DEV_ROWS` validation pairs, four steps, a report file."""
    data = pytester.path / "mrpc"
    write_glue_tsv(data / "train.tsv", make_rows(48, seed=1))
    write_glue_tsv(data / "dev.tsv", make_rows(DEV_ROWS, seed=2))
    pytester.makeini(f"""
        [pytest]
        addopts = -p no:xdist --finetune-report=report.json
        finetune_model = {tiny_checkpoint}
        finetune_data = {data}
        finetune_training_args =
            max_steps = 4
            per_device_train_batch_size = 8
            per_device_eval_batch_size = 4
        """)
    pytester.makepyfile(test_quality=QUALITY_TEST)
    pytester.makeconftest(WATCHING_CONFTEST)
    return pytester


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return int(listener.getsockname()[1])


def launch(project: pytest.Pytester, launchers: list[list[str]], status: int, *pytest_args: str) -> dict[int, str]:
    """Run ``pytest *pytest_args`` under each launcher command at once (each writing its processes' output under
    ``launcher-logs/``); return each process's output by its ``RANK``, once every launcher ended with ``status``,
    the exit status of its processes."""
    shutil.rmtree(project.path / "launcher-logs", ignore_errors=True)  # an earlier launch's
    processes = [
        subprocess.Popen(
            [*launcher, "-m", "pytest", *pytest_args],
            cwd=project.path,
            env=subprocess_environment(project),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for launcher in launchers
    ]
    try:
        launched = [process.communicate(timeout=TIMEOUT_S)[0].decode() for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:  # it hung: the launchers end their processes on SIGTERM
                process.terminate()
                process.wait()
    outputs = {}
    for log in (project.path / "launcher-logs").rglob("stdout.log"):
        text = log.read_text()
        header = next(line for line in text.splitlines() if line.startswith("process rank "))
        outputs[int(header.split()[2])] = text
    assert sorted(outputs) == [0, 1], launched
    assert [process.returncode for process in processes] == [status] * len(processes), (launched, outputs)
    return outputs


def torchrun(*options: str, number: int = 0) -> list[str]:
    """``torchrun *options``, each process's output in a log file of its own."""
    logs = ["--redirects", "3", "--log-dir", f"launcher-logs/{number}"]
    return [sys.executable, "-m", "torch.distributed.run", *logs, *options]


def one_machine() -> list[list[str]]:
    """One ``torchrun`` of two processes, its rendezvous on a free port of 127.0.0.1."""
    return [torchrun("--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(free_port()))]


def two_machines() -> list[list[str]]:
    """Two ``torchrun`` of one process each, meeting as two nodes at a c10d endpoint on 127.0.0.1."""
    endpoint = f"127.0.0.1:{free_port()}"
    common = ["--nnodes", "2", "--nproc_per_node", "1", "--rdzv_backend", "c10d", "--rdzv_endpoint", endpoint]
    return [torchrun(*common, "--rdzv_id", "two-machines", "--node_rank", str(node), number=node) for node in (0, 1)]


def accelerate_launch() -> list[list[str]]:
    """``accelerate launch`` of two processes on this machine's CPUs: its ``--multi_gpu`` launcher (torchrun's), which
    needs no GPU; its ``--cpu`` launcher starts one process (several only through MPI)."""
    settings = ["--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no"]
    settings += ["--dynamo_backend", "no", "--main_process_ip", "127.0.0.1", "--main_process_port", str(free_port())]
    logs = ["--tee", "3", "--log_dir", "launcher-logs/0"]
    return [[sys.executable, "-m", "accelerate.commands.launch", *settings, *logs]]


def touched(project: pytest.Pytester, rank: int) -> list[str]:
    """What process ``rank`` wrote, renamed, removed or made under the project (see :data:`WATCHING_CONFTEST`)."""
    return [line for line in (project.path / f"touched-{rank}.txt").read_text().split("\n") if line]


def assert_rank_zero_wrote(project: pytest.Pytester) -> None:
    """Rank 0 wrote the baseline, the result cache entry and the report; rank 1 touched none of them."""
    written = " ".join(touched(project, 0))
    for path in (QUALITY_BASELINE.as_posix(), ".pytest_cache/d/finetune/", "report.json"):
        assert path in written, touched(project, 0)
    assert touched(project, 1) == []


def test_torchrun_records_once_and_fails_a_regression_on_every_rank(project: pytest.Pytester) -> None:
    """``torchrun --nproc_per_node 2`` records the baseline: both processes pass and report it recorded, rank 0
    alone writes it, the cache entry and the report. The result has one prediction per validation example, in the
    split's order, and the world size and effective batch (8 per device x 2). With the baseline raised out of reach
    the next run, served from the cache on both processes, fails the test on both, with the same status."""
    outputs = launch(project, one_machine(), 0, "--finetune", "--snapshot-update")
    for output in outputs.values():
        assert "1 passed" in output and "recorded" in output, output
    assert_rank_zero_wrote(project)
    record = json.loads((project.path / QUALITY_BASELINE).read_text())
    assert record["examples"]["count"] == DEV_ROWS
    assert (record["environment"]["world_size"], record["environment"]["effective_batch"]) == (2, 16)
    [entry] = [path for path in (project.path / ".pytest_cache/d/finetune").iterdir() if path.is_dir()]
    assert np.load(entry / "predictions.npy").shape == (DEV_ROWS, 2)
    labels = [label for label, _, _ in make_rows(DEV_ROWS, seed=2)]
    assert np.load(entry / "label_ids.npy").tolist() == labels

    record["metrics"]["accuracy"] += 0.5
    (project.path / QUALITY_BASELINE).write_text(json.dumps(record))
    outputs = launch(project, one_machine(), 1, "--finetune")
    for output in outputs.values():
        assert "1 failed" in output and "regressed" in output and "cached" in output, output


def test_one_process_compares_with_two_of_the_same_effective_batch_with_a_note(project: pytest.Pytester) -> None:
    """A baseline recorded by two processes of 4 examples each, compared by one process of 8 (the same effective
    batch, the same examples at each step): a note, no recipe change, and a validation loss close to the baseline's
    (transformers would multiply a data-parallel run's losses by the number of processes)."""
    launch(project, one_machine(), 0, "--finetune", "--snapshot-update", "--finetune-set=per_device_train_batch_size=4")
    single = subprocess.run(  # not in this process: the project's conftest.py adds an audit hook
        [sys.executable, "-m", "pytest", "--finetune"],
        cwd=project.path,
        env=subprocess_environment(project),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert single.returncode == 0, single.stdout
    note = "baseline trained on 2 processes, this run on 1 process, with the same effective batch of 8"
    assert note in single.stdout and "recipe changed" not in single.stdout, single.stdout
    [test] = json.loads((project.path / "report.json").read_text())["tests"]
    loss = test["metrics"]["eval_loss"]
    assert loss["current"] == pytest.approx(loss["baseline"], abs=0.05)


def test_two_nodes_behave_as_one(project: pytest.Pytester) -> None:
    """Two launchers on one machine, as two nodes of one process each (``--nnodes 2``, a c10d endpoint on
    127.0.0.1), record the baseline as one ``torchrun`` of two processes does: both pass, rank 0 alone writes."""
    outputs = launch(project, two_machines(), 0, "--finetune", "--snapshot-update")
    for output in outputs.values():
        assert "1 passed" in output and "recorded" in output, output
    assert_rank_zero_wrote(project)
    assert json.loads((project.path / QUALITY_BASELINE).read_text())["environment"]["world_size"] == 2


def test_accelerate_launch_records_once(project: pytest.Pytester) -> None:
    """``accelerate launch`` of two processes records the baseline as ``torchrun`` does: both pass, rank 0 alone
    writes."""
    outputs = launch(project, accelerate_launch(), 0, "--finetune", "--snapshot-update")
    for output in outputs.values():
        assert "1 passed" in output and "recorded" in output, output
    assert_rank_zero_wrote(project)
    assert json.loads((project.path / QUALITY_BASELINE).read_text())["environment"]["world_size"] == 2


def scaled_record(per_device: int, world_size: int | None, accuracy: float = 0.8) -> dict:
    """A record of a run with ``per_device`` examples per batch on ``world_size`` processes (``None``: a record
    made before pytest-finetune kept the world size)."""
    training_args = {"learning_rate": 5e-5, "per_device_train_batch_size": per_device}
    environment = {"device": "cpu", "dtype": "float32"}
    if world_size is not None:
        environment |= {"world_size": world_size, "effective_batch": per_device * world_size}
    recipe = {"task": "mrpc", "model": "m", "seed": 42, "training_args": training_args}
    return {"recipe": recipe, "metrics": {"accuracy": accuracy, "f1": 0.8}, "environment": environment}


def test_the_same_effective_batch_on_other_processes_is_a_note() -> None:
    """16 per device on 2 processes against 32 on one (a baseline without a world size): the same effective batch,
    so no recipe change, a note naming both; the comparison itself decides."""
    verdict = compare(scaled_record(16, 2), scaled_record(32, None), Tolerances(), strict_recipe=True)
    assert verdict.outcome is Outcome.PASSED
    assert verdict.recipe_changes == ()
    assert verdict.notes == (
        "baseline trained on 1 process, this run on 2 processes, with the same effective batch of 32: expect "
        "differences of about a seed's spread",
    )
    assert compare(scaled_record(16, 2, accuracy=0.7), scaled_record(32, 1), Tolerances()).outcome is Outcome.REGRESSED


def test_another_effective_batch_is_a_recipe_change() -> None:
    """32 per device on 2 processes against 32 on one: the effective batch doubled, one recipe change naming it (not
    the per-device size, which did not change); strict recipe mode fails it."""
    verdict = compare(scaled_record(32, 2), scaled_record(32, 1), Tolerances(), strict_recipe=True)
    assert verdict.outcome is Outcome.RECIPE_CHANGED
    assert [(change.key, change.baseline, change.current) for change in verdict.recipe_changes] == [
        ("effective_batch", "32 (1 process)", "64 (2 processes)")
    ]
    assert verdict.headline == "recipe changed (effective_batch 32 (1 process) → 64 (2 processes)); quality held"


def test_the_same_world_size_compares_batch_arguments_as_before() -> None:
    """On as many processes as the baseline, another per-device batch is that argument's change."""
    verdict = compare(scaled_record(16, 2), scaled_record(32, 2), Tolerances())
    assert [change.key for change in verdict.recipe_changes] == ["training_args.per_device_train_batch_size"]
    assert verdict.notes == ()


def test_predictions_that_do_not_line_up_with_the_examples_fail() -> None:
    """An evaluation that kept the repeated examples padding the last batch (or lost some) scored other rows than
    the validation split holds: a clear error, not a record that misnames examples."""
    validation = datasets.Dataset.from_dict({"idx": [0, 1, 2], "label": [1, 0, 1]})
    lined_up = PredictionOutput(predictions=np.zeros((3, 2)), label_ids=np.array([1, 0, 1]), metrics={})
    check_lined_up(lined_up, validation)
    padded = PredictionOutput(predictions=np.zeros((4, 2)), label_ids=np.array([1, 0, 1, 1]), metrics={})
    with pytest.raises(FinetuneError, match="scored 4 rows for the 3 validation examples"):
        check_lined_up(padded, validation)


@pytest.mark.parametrize(("variable", "read"), [("RANK", rank), ("WORLD_SIZE", world_size)])
def test_a_launcher_variable_that_is_no_number_is_named(
    monkeypatch: pytest.MonkeyPatch, variable: str, read: Callable[[], int]
) -> None:
    monkeypatch.setenv(variable, "two")
    with pytest.raises(FinetuneError, match=f"^the environment variable {variable}='two' is not a whole number"):
        read()


def test_a_process_that_does_not_reach_the_end_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """The end-of-run barrier timing out (torch.distributed raises a RuntimeError) is a :class:`FinetuneError` that
    says which process lost step and why, with torch's words."""
    import torch.distributed

    def timed_out() -> None:
        raise RuntimeError("Application timeout caused pair closure")

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "barrier", timed_out)
    message = (
        "process 0 of 2 of this data-parallel run lost step with the others (one of them failed, or did not answer"
    )
    with pytest.raises(FinetuneError, match=rf"^{re.escape(message)}.*: Application timeout caused pair closure$"):
        wait_for_all()


#: Rank 1 dies (exit status 7) after its second training step.
DYING_TRAINER = """

@pytest.fixture
def trainer(trainer):
    from transformers import TrainerCallback

    class Dying(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if os.environ.get("RANK") == "1" and state.global_step == 2:
                os._exit(7)

    trainer.add_callback(Dying())
    return trainer
"""


def test_a_rank_that_dies_ends_the_run_and_writes_nothing(project: pytest.Pytester) -> None:
    """Rank 1 dies while training: torchrun ends rank 0 too and fails, naming the rank and its exit status; no
    baseline and no result cache entry is written."""
    (project.path / "conftest.py").write_text("import pytest\n" + WATCHING_CONFTEST + DYING_TRAINER)
    command = torchrun("--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(free_port()))
    process = subprocess.run(
        [*command, "-m", "pytest", "--finetune", "--snapshot-update"],
        cwd=project.path,
        env=subprocess_environment(project),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert process.returncode == 1, process.stdout + process.stderr
    assert "exitcode  : 7" in process.stderr and "rank      : 1" in process.stderr, process.stderr
    assert not (project.path / "baselines").exists()
    cache = project.path / ".pytest_cache/d/finetune"
    assert not cache.exists() or not [path for path in cache.iterdir() if path.is_dir()]


#: Rank 1 stops answering (sleeps for an hour) after its second training step.
HANGING_TRAINER = DYING_TRAINER.replace("Dying", "Hanging").replace("os._exit(7)", "__import__('time').sleep(3600)")
#: The seconds a collective waits for a process that stopped answering, set for the hanging run.
DDP_TIMEOUT_S = 10


def test_a_rank_that_hangs_ends_the_run_within_the_timeout_and_writes_nothing(project: pytest.Pytester) -> None:
    """Rank 1 hangs while training: rank 0 waits in its next collective for ``ddp_timeout`` seconds (on the CPU too,
    where transformers would not pass it on), fails the test with torch.distributed's error and stops the run,
    saying why; torchrun then ends rank 1. The run ends non-zero long before the hour rank 1 sleeps (the
    subprocess's timeout), and no baseline and no result cache entry is written."""
    (project.path / "conftest.py").write_text("import pytest\n" + WATCHING_CONFTEST + HANGING_TRAINER)
    command = torchrun("--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(free_port()))
    process = subprocess.run(
        [*command, "-m", "pytest", "--finetune", "--snapshot-update", f"--finetune-set=ddp_timeout={DDP_TIMEOUT_S}"],
        cwd=project.path,
        env=subprocess_environment(project),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert process.returncode == 1 and "rank      : 0" in process.stderr, process.stderr
    [log] = (project.path / "launcher-logs").rglob("0/stdout.log")
    rank_zero = log.read_text()
    assert "1 error" in rank_zero and "Interrupted: process 0 of 2 of this data-parallel run lost step" in rank_zero
    assert "ddp_timeout); the run stops here" in rank_zero, rank_zero
    assert not (project.path / "baselines").exists()
    cache = project.path / ".pytest_cache/d/finetune"
    assert not cache.exists() or not [path for path in cache.iterdir() if path.is_dir()]
