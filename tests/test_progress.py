"""Live training progress: the callback's lines and throttling, and pytest's terminal past capture."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
from transformers import TrainerControl, TrainerState

from pytest_finetune.progress import ProgressCallback, format_duration

ARGS = SimpleNamespace(num_train_epochs=3, max_steps=-1)  # trains for epochs


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make_progress(clock: FakeClock, *, interactive: bool, min_interval: float = 5.0) -> tuple[ProgressCallback, list]:
    """A callback for the test ``t.py::test`` and the list of what it writes."""
    written: list[str] = []
    progress = ProgressCallback(
        "t.py::test", written.append, interactive=interactive, min_interval=min_interval, clock=clock
    )
    return progress, written


def train(progress: ProgressCallback, clock: FakeClock, steps: int, seconds_per_step: float = 1.0) -> TrainerState:
    """Drive ``progress`` through ``steps`` steps of ``seconds_per_step``, over 2 epochs; training is left unended."""
    state = TrainerState(max_steps=steps, num_train_epochs=2)
    progress.on_train_begin(ARGS, state, TrainerControl())
    for step in range(1, steps + 1):
        clock.now += seconds_per_step
        state.global_step, state.epoch = step, 2 * step / steps
        progress.on_step_end(ARGS, state, TrainerControl())
    return state


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0:00"), (59.9, "0:59"), (61, "1:01"), (3599, "59:59"), (3600, "1:00:00"), (36061, "10:01:01")],
)
def test_format_duration(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown


def test_non_interactive_writes_first_step_then_every_interval_and_last_step() -> None:
    clock = FakeClock()
    progress, written = make_progress(clock, interactive=False, min_interval=5.0)
    state = train(progress, clock, steps=100)
    progress.on_train_end(ARGS, state, TrainerControl())
    # steps 1, 6, 11, ..., 96 (one a 5 s), then the last step; nothing more at train end
    assert len(written) == 1 + 19 + 1
    assert all(text.endswith("\n") and text.count("\n") == 1 and "\r" not in text for text in written)
    assert written[0] == "t.py::test  epoch 0.02/2  step 1/100  loss -  0:01 elapsed, ETA 1:39\n"
    assert written[1].startswith("t.py::test  epoch 0.12/2  step 6/100  loss -  0:06 elapsed")
    assert written[-1] == "t.py::test  epoch 2.00/2  step 100/100  loss -  done in 1:40\n"


def test_eta_is_the_average_step_time_times_the_steps_left() -> None:
    clock = FakeClock()
    progress, written = make_progress(clock, interactive=False)
    state = TrainerState(max_steps=1000, num_train_epochs=1, global_step=400)  # resumed from a checkpoint
    progress.on_train_begin(ARGS, state, TrainerControl())
    clock.now = 90.0
    state.global_step, state.epoch = 410, 0.41
    progress.on_step_end(ARGS, state, TrainerControl())
    # 10 steps in 90 s: 9 s a step, 590 steps left
    assert written == [
        f"t.py::test  epoch 0.41/1  step 410/1000  loss -  1:30 elapsed, ETA {format_duration(9 * 590)}\n"
    ]
    assert format_duration(9 * 590) == "1:28:30"


def test_loss_is_the_last_training_loss_logged() -> None:
    clock = FakeClock()
    progress, written = make_progress(clock, interactive=False, min_interval=0)
    state = TrainerState(max_steps=10, num_train_epochs=1, global_step=1)
    progress.on_train_begin(ARGS, state, TrainerControl())
    progress.on_log(ARGS, state, TrainerControl(), logs={"loss": 0.5, "learning_rate": 1e-4})
    progress.on_step_end(ARGS, state, TrainerControl())
    progress.on_log(ARGS, state, TrainerControl(), logs={"eval_loss": 0.123456, "eval_accuracy": 0.5})
    progress.on_log(ARGS, state, TrainerControl(), logs={"train_loss": 0.9})
    progress.on_step_end(ARGS, state, TrainerControl())
    progress.on_log(ARGS, state, TrainerControl(), logs={"loss": 0.123456})
    progress.on_step_end(ARGS, state, TrainerControl())
    assert [text.split("  loss ")[1].split()[0] for text in written] == ["0.5000", "0.5000", "0.1235"]


def test_interactive_redraws_one_line_and_ends_it_at_train_end() -> None:
    clock = FakeClock()
    progress, written = make_progress(clock, interactive=True)
    state = train(progress, clock, steps=10, seconds_per_step=0.15)
    # first step, then when 0.2 s passed: steps 3, 5, 7, 9, and always the last step
    assert [text.split("  step ")[1].split()[0] for text in written] == [
        "1/10",
        "3/10",
        "5/10",
        "7/10",
        "9/10",
        "10/10",
    ]
    assert all(text.startswith("\r") and "\n" not in text for text in written)
    progress.on_train_end(ARGS, state, TrainerControl())
    assert written[-1] == "\n"
    assert written[-2].rstrip() == "\rt.py::test  epoch 2.00/2  step 10/10  loss -  done in 0:01"


def test_interactive_redraw_blanks_the_rest_of_a_longer_line() -> None:
    clock = FakeClock()
    progress, written = make_progress(clock, interactive=True)
    state = TrainerState(max_steps=2, num_train_epochs=1)
    progress.on_train_begin(ARGS, state, TrainerControl())
    clock.now, state.global_step = 600.0, 1
    progress.on_step_end(ARGS, state, TrainerControl())  # "10:00 elapsed, ETA 10:00"
    clock.now, state.global_step = 601.0, 2
    progress.on_step_end(ARGS, state, TrainerControl())  # "done in 10:01": shorter
    shorter = "t.py::test  epoch 0.00/1  step 2/2  loss -  done in 10:01"
    assert written[1] == "\r" + shorter + " " * (len(written[0]) - 1 - len(shorter))
    assert len(written[1]) == len(written[0])


def test_training_stopped_early_ends_with_a_done_line() -> None:
    clock = FakeClock()
    progress, written = make_progress(clock, interactive=False)
    state = TrainerState(max_steps=100, num_train_epochs=1)
    progress.on_train_begin(ARGS, state, TrainerControl())
    for step in (1, 2, 3):
        clock.now, state.global_step = float(step), step
        progress.on_step_end(ARGS, state, TrainerControl())
    progress.on_train_end(ARGS, state, TrainerControl())
    assert [text.split("  step ")[1] for text in written] == [
        "1/100  loss -  0:01 elapsed, ETA 1:39\n",
        "3/100  loss -  done in 0:03\n",
    ]


# The subprocess writes to a pipe: pretend it is a terminal, as a developer's would be
# (``isatty`` is a bool before pytest 8.4, a callable bool since).
TTY_CONFTEST = """
    import pytest

    @pytest.hookimpl(trylast=True)
    def pytest_configure(config):
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        reporter.isatty = type(reporter.isatty)(True)
"""

TRAINING_TESTS = """
    from types import SimpleNamespace

    import torch
    from transformers import (
        AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainerControl, TrainerState, TrainingArguments
    )

    from pytest_finetune.progress import terminal_progress


    def train_two_fake_steps(request, capsys):
        print("noise the test prints")
        progress = terminal_progress(request.config, request.node.nodeid)
        state, args = TrainerState(max_steps=2, num_train_epochs=1), SimpleNamespace(num_train_epochs=1, max_steps=-1)
        progress.on_train_begin(args, state, TrainerControl())
        progress.on_log(args, state, TrainerControl(), logs={{"loss": 0.25}})
        for step in (1, 2):
            state.global_step, state.epoch = step, step / 2
            progress.on_step_end(args, state, TrainerControl())
        progress.on_train_end(args, state, TrainerControl())
        assert capsys.readouterr().out == "noise the test prints\\n"


    def test_redraw(request, capsys, monkeypatch):
        monkeypatch.delenv("CI", raising=False)
        train_two_fake_steps(request, capsys)


    def test_ci_log(request, capsys, monkeypatch):
        monkeypatch.setenv("CI", "true")
        train_two_fake_steps(request, capsys)


    def test_real_fine_tune(request, tmp_path, monkeypatch):
        monkeypatch.setenv("CI", "1")
        tokenizer = AutoTokenizer.from_pretrained({checkpoint!r})
        model = AutoModelForSequenceClassification.from_pretrained({checkpoint!r}, num_labels=2)
        encoded = tokenizer(["the cat sat", "a dog ran on the mat"] * 4, padding="max_length", max_length=8)
        rows = [
            {{"input_ids": torch.tensor(ids), "labels": torch.tensor(n % 2)}}
            for n, ids in enumerate(encoded["input_ids"])
        ]
        args = TrainingArguments(
            output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=2, logging_steps=1,
            report_to=[], save_strategy="no", disable_tqdm=True, use_cpu=True,
        )
        progress = terminal_progress(request.config, request.node.nodeid)
        Trainer(model=model, args=args, train_dataset=rows, callbacks=[progress]).train()
"""


@pytest.fixture(scope="module")
def terminal_output(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> str:
    """The stdout, as written, of a pytest subprocess (real output capture, no ``-s``) whose tests
    report progress: two fake steps on a terminal (``test_redraw``) and in CI (``test_ci_log``), and
    a real 3-step fine-tune in CI (``test_real_fine_tune``). One run, to pay for imports once.
    """
    project = tmp_path_factory.mktemp("progress_project")
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "conftest.py").write_text(textwrap.dedent(TTY_CONFTEST))
    (project / "test_fit.py").write_text(textwrap.dedent(TRAINING_TESTS.format(checkpoint=str(tiny_checkpoint))))
    env = {name: value for name, value in os.environ.items() if name not in ("CI", "PYTEST_ADDOPTS")}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--basetemp={project / 'tmp'}"]
    # bytes, not text: universal newlines would turn the redraws' "\r" into "\n"
    output = subprocess.run(command, cwd=project, env=env, stdout=subprocess.PIPE, check=False, timeout=300)
    stdout = output.stdout.decode()
    assert "3 passed" in stdout, stdout
    return stdout


def test_terminal_redraws_the_line_past_output_capture(terminal_output: str) -> None:
    first = "test_fit.py::test_redraw  epoch 0.50/1  step 1/2  loss 0.2500  0:00 elapsed, ETA 0:00"
    last = "test_fit.py::test_redraw  epoch 1.00/1  step 2/2  loss 0.2500  done in 0:00"
    assert f"\n\r{first}\r{last.ljust(len(first))}\n" in terminal_output


def test_ci_log_gets_whole_lines_even_on_a_terminal(terminal_output: str) -> None:
    first = "test_fit.py::test_ci_log  epoch 0.50/1  step 1/2  loss 0.2500  0:00 elapsed, ETA 0:00"
    last = "test_fit.py::test_ci_log  epoch 1.00/1  step 2/2  loss 0.2500  done in 0:00"
    assert f"\n{first}\n{last}\n" in terminal_output
    assert terminal_output.count("test_fit.py::test_ci_log  epoch") == 2


def test_real_fine_tune_shows_progress(terminal_output: str) -> None:
    lines = re.findall(r"^test_fit.py::test_real_fine_tune  .*$", terminal_output, flags=re.MULTILINE)
    assert len(lines) == 2, terminal_output
    # Trainer logs a step's loss after its on_step_end: the first line has none yet. max_steps ends
    # training at 3/4 of an epoch: no count of epochs (transformers' rounds it up to 1)
    assert re.fullmatch(r".*  epoch 0.25  step 1/3  loss (-|\d\.\d{4})  0:\d\d elapsed, ETA 0:\d\d", lines[0])
    assert re.fullmatch(r".*  epoch 0.75  step 3/3  loss \d\.\d{4}  done in 0:\d\d", lines[1])


def test_test_output_stays_captured(terminal_output: str) -> None:
    assert "noise the test prints" not in terminal_output


def test_no_progress_without_a_terminal_reporter(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        from pytest_finetune.progress import terminal_progress

        def test_none(request):
            assert terminal_progress(request.config, request.node.nodeid) is None
        """)
    result = pytester.runpytest_inprocess("-p", "no:terminal")
    assert result.ret == pytest.ExitCode.OK


TWO_RECIPES = """
    import pytest

    @pytest.mark.finetune(seed=1)
    def test_a(finetune_result):
        pass

    @pytest.mark.finetune(seed=2)
    def test_b(finetune_result):
        pass
"""


def test_xdist_workers_progress_reaches_the_terminal_with_their_ids(finetune_project: pytest.Pytester) -> None:
    """``-n 2``: each worker's progress lines reach the controller's terminal, each a whole line of its own (never
    redrawn, not even on a terminal: the workers share it) prefixed with the id of the worker that ran the test."""
    finetune_project.makeconftest(TTY_CONFTEST)
    finetune_project.makepyfile(test_two=TWO_RECIPES)
    result = finetune_project.runpytest_subprocess("-n", "2", "-v", "--finetune", "--snapshot-update")
    result.assert_outcomes(passed=2)
    output = result.stdout.str()
    assert "\r" not in output
    passed = re.findall(r"^\[(gw[01])\] \[.*\] PASSED test_two.py::(test_[ab])\b", output, flags=re.MULTILINE)
    ran_on = {test: worker for worker, test in passed}
    assert set(ran_on.values()) == {"gw0", "gw1"}, output  # one recipe per worker
    progress = [line for line in output.splitlines() if "  epoch " in line]
    for test, worker in ran_on.items():
        prefix = re.escape(f"[{worker}] test_two.py::{test}  epoch ")
        assert re.search(rf"^{prefix}0\.17  step 1/4  loss -  0:\d\d elapsed, ETA 0:\d\d$", output, re.MULTILINE)
        assert re.search(rf"^{prefix}0\.67  step 4/4  loss (-|\d\.\d{{4}})  done in 0:\d\d$", output, re.MULTILINE)
    assert all(re.match(r"\[gw[01]\] test_two.py::test_[ab]  epoch ", line) for line in progress), progress
