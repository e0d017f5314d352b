"""Live training progress on pytest's terminal, shown even while pytest captures output.

A test that fine-tunes gets a :class:`ProgressCallback` from :func:`terminal_progress`: on an
interactive terminal it redraws one line in place; in a CI log it appends a line every few seconds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import pytest
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from .distributed import is_main_process
from .relay import worker_progress

#: Seconds between two redraws of the line on an interactive terminal.
REDRAW_INTERVAL = 0.2


def format_duration(seconds: float) -> str:
    """``seconds`` as ``m:ss``, or ``h:mm:ss`` from one hour on."""
    hours, rest = divmod(int(seconds), 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class ProgressCallback(TrainerCallback):
    """Report the training progress of the test ``label`` through ``write``.

    Each report is one line: test, epoch (of the epochs to train, unless ``max_steps`` ends
    training), step/total, last training loss, elapsed time and ETA; the last step shows the total
    time instead. When ``interactive``, the line is redrawn in place (``"\\r"``) at most every
    :data:`REDRAW_INTERVAL` seconds, and ended by a newline when training ends; otherwise a full
    line is written for the first step, then at most once every ``min_interval`` seconds, and for
    the last step.
    """

    def __init__(
        self,
        label: str,
        write: Callable[[str], None],
        *,
        interactive: bool,
        min_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.write = write
        self.interactive = interactive
        self.interval = REDRAW_INTERVAL if interactive else min_interval
        self.clock = clock
        self._started = 0.0
        self._first_step = 0
        self._loss: float | None = None
        self._last_write: float | None = None
        self._shown_step: int | None = None
        self._finished = False
        self._drawn_width = 0
        self._epochs = ""

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Start the clock (steps already done when resuming from a checkpoint do not count for the ETA)."""
        self._started = self.clock()
        self._first_step = state.global_step
        # under ``max_steps`` training ends at a step: transformers' epoch count is a rounded-up guess
        self._epochs = "" if args.max_steps > 0 else f"/{state.num_train_epochs}"

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        """Remember the latest training loss; evaluation logs carry none."""
        if logs and "loss" in logs:
            self._loss = logs["loss"]

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        """Show the line when the last one is old enough, and always for the last step."""
        now = self.clock()
        last = state.global_step >= state.max_steps
        if last or self._last_write is None or now - self._last_write >= self.interval:
            self._show(state, now, finished=last)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Show the final line unless the last step did, and end the redrawn line."""
        if not self._finished:
            self._show(state, self.clock(), finished=True)
        if self.interactive:
            self.write("\n")

    def _show(self, state: TrainerState, now: float, *, finished: bool) -> None:
        line = self._line(state, now - self._started, finished=finished)
        if self.interactive:
            self.write("\r" + line.ljust(self._drawn_width))
            self._drawn_width = len(line)
        else:
            self.write(line + "\n")
        self._last_write = now
        self._finished = finished

    def _line(self, state: TrainerState, elapsed: float, *, finished: bool) -> str:
        loss = "-" if self._loss is None else f"{self._loss:.4f}"
        if finished:
            timing = f"done in {format_duration(elapsed)}"
        else:
            steps_done = max(state.global_step - self._first_step, 1)
            eta = elapsed / steps_done * (state.max_steps - state.global_step)
            timing = f"{format_duration(elapsed)} elapsed, ETA {format_duration(eta)}"
        return (
            f"{self.label}  epoch {state.epoch or 0:.2f}{self._epochs}"
            f"  step {state.global_step}/{state.max_steps}  loss {loss}  {timing}"
        )


def terminal_progress(config: pytest.Config, label: str) -> ProgressCallback | None:
    """A :class:`ProgressCallback` for the test ``label`` writing to pytest's terminal past output
    capture, or ``None`` when pytest has no terminal reporter (``-p no:terminal``) or this process is not rank 0
    of a data-parallel run (one line per fine-tune, not one per process).

    The line is redrawn in place when pytest writes to a TTY and the ``CI`` environment variable is
    unset (or ``0``/``false``); otherwise lines are appended, as a CI log wants. A pytest-xdist worker
    sends whole lines to its controller, which writes them (:mod:`.relay`): workers share its terminal.
    """
    if not is_main_process():
        return None
    relayed = worker_progress(config)
    if relayed is not None:
        return ProgressCallback(label, relayed, interactive=False)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return None
    capture = config.pluginmanager.get_plugin("capturemanager")
    started = False

    def write(text: str) -> None:
        nonlocal started
        bypass: AbstractContextManager[None] = capture.global_and_fixture_disabled() if capture else nullcontext()
        with bypass:
            if not started:  # leave the line of test results pytest is writing
                reporter.ensure_newline()
                started = True
            reporter.write(text)
            reporter.flush()

    in_ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false")
    # ``isatty`` is a bool before pytest 8.4 and a callable bool since: ``bool()`` reads both.
    return ProgressCallback(label, write, interactive=bool(reporter.isatty) and not in_ci)
