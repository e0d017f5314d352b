"""The history file (``--finetune-history``): one JSON line per fine-tuning test per session, appended.

Each line holds the time (UTC), the git commit of the rootdir's checkout (``null`` outside one), the
test, its recipe and recipe key (the sha256 of the recipe as the baseline stores it), the environment,
the metrics with their bootstrap intervals and the outcome. A session appends all its lines with one
``os.write`` to a file opened with ``O_APPEND``: writers at the same time (pytest-xdist runs, two CI
jobs on one file) never interleave parts of lines. A line that is not a JSON object (a write cut short
by a full disk, a hand edit) is skipped when the file is read, and said; the others are kept.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .cache import cache_key
from .report import ReportEntry, finite_json

#: How long ``git rev-parse`` may take before the history does without the commit.
_GIT_TIMEOUT_S = 10


def git_commit(folder: Path) -> str | None:
    """The commit checked out at ``folder`` (``git rev-parse HEAD``), or ``None``: not a git checkout, or no git."""
    try:
        command = ["git", "rev-parse", "HEAD"]
        done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=_GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else None


def history_lines(entries: Sequence[ReportEntry], commit: str | None, when: datetime.datetime) -> str:
    """One JSON line per entry, each ended by a newline."""
    lines = []
    for entry in entries:
        record = entry.record or {}
        recipe = record.get("recipe")
        line = {
            "time": when.isoformat(timespec="seconds"),
            "commit": commit,
            "test": entry.nodeid,
            "recipe_key": None if recipe is None else cache_key(recipe),
            "recipe": recipe,
            "environment": record.get("environment"),
            "metrics": record.get("metrics", {}),
            "intervals": record.get("intervals", {}),
            "outcome": entry.outcome,
            "failed": entry.failed,
            "warn_only": entry.warn_only,
        }
        lines.append(json.dumps(finite_json(line), sort_keys=True, default=str, allow_nan=False) + "\n")
    return "".join(lines)


def append_history(path: Path, text: str) -> None:
    """Append ``text`` (whole lines) to ``path`` with one ``os.write`` (``O_APPEND``), making the file if needed;
    an ``OSError`` when it cannot, or when the write was cut short."""
    data = text.encode("utf-8")
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(descriptor, data)
    finally:
        os.close(descriptor)
    if written != len(data):
        raise OSError(f"wrote {written} of {len(data)} bytes (is the disk full?)")


def read_history(path: Path) -> tuple[list[dict[str, Any]], list[int]]:
    """The lines of the history file at ``path`` that are JSON objects, and the numbers (from 1) of the others."""
    records: list[dict[str, Any]] = []
    corrupt: list[int] = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                record = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                record = None
            if isinstance(record, dict):
                records.append(record)
            elif raw.strip():
                corrupt.append(number)
    return records, corrupt


def write_history(path: Path, entries: Sequence[ReportEntry], rootdir: Path) -> tuple[str, list[dict[str, Any]]]:
    """Append the session's ``entries`` to the history at ``path``; the summary's line on it, and the file's lines
    read back (see :func:`read_history`). Raises ``OSError`` when the file cannot be appended to or read."""
    when = datetime.datetime.now(datetime.UTC)
    append_history(path, history_lines(entries, git_commit(rootdir), when))
    records, corrupt = read_history(path)
    said = f"pytest-finetune: history {path}: {len(entries)} line(s) appended, {len(records)} in all"
    if corrupt:
        shown = ", ".join(map(str, corrupt[:10])) + (", ..." if len(corrupt) > 10 else "")
        said += f"; warning: {len(corrupt)} line(s) that are not JSON objects skipped (line {shown})"
    return said, records
