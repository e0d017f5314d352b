"""Under pytest-xdist, the live progress lines of the workers, written on the controller's terminal.

A worker's standard output is execnet's pipe to the controller and its terminal reporter writes nowhere,
so the controller hands each worker an execnet channel of its own (in ``workerinput``, before the worker
starts): the worker sends each progress line whole through it, and the controller writes the line on its
terminal, prefixed with the worker's id (``[gw0] test_x  epoch ...``), starting a new line first, so
that a progress line never lands inside pytest-xdist's own progress output.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

#: The key of ``workerinput`` that holds the channel a worker sends its progress lines through.
PROGRESS_CHANNEL = "finetune_progress"


def worker_progress(config: pytest.Config) -> Callable[[str], None] | None:
    """On a pytest-xdist worker whose controller relays progress (:class:`ProgressRelay`), what sends a
    progress line to it; ``None`` elsewhere."""
    channel = getattr(config, "workerinput", {}).get(PROGRESS_CHANNEL)
    return None if channel is None else channel.send


class ProgressRelay:
    """On pytest-xdist's controller: gives each worker a channel for its progress lines (pytest-xdist's
    ``pytest_configure_node`` hook), and writes the lines that come through it on the terminal."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        # execnet calls back from one receiving thread per worker: one line at a time
        self.lock = threading.Lock()

    def pytest_configure_node(self, node: Any) -> None:
        """Before the worker starts: its channel, whose lines :meth:`write` writes (none without a terminal
        reporter, ``-p no:terminal``)."""
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            return
        gateway = node.gateway
        channel = gateway.newchannel()
        channel.setcallback(lambda text: self.write(reporter, gateway.id, text))
        node.workerinput[PROGRESS_CHANNEL] = channel

    def write(self, reporter: pytest.TerminalReporter, worker: str, text: str) -> None:
        """Write the lines of ``text`` from ``worker``, each on a line of its own, prefixed with the worker's id."""
        writer = self.config.get_terminal_writer()
        with self.lock:
            for line in str(text).splitlines():
                if not line.strip():
                    continue
                if writer.width_of_current_line:  # pytest-xdist's line of test outcomes: leave it
                    writer.line()
                reporter.write_line(f"[{worker}] {line}")
            reporter.flush()
