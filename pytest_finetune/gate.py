"""The baseline gate of a ``finetune``-marked test: after its body, its result is compared
with its baseline, and a regression fails the test with the verdict table.

A test whose body compares by itself (``assert result == finetune_snapshot``) is not
compared twice. Every comparison, the gate's or the body's, becomes a
:class:`~pytest_finetune.report.ReportEntry` for the session's reports.
"""

from __future__ import annotations

import inspect
import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .baselines import KEEP, shown_path
from .errors import FinetuneError
from .report import ReportEntry, failure_message, junit_properties
from .session import SESSION_KEY

if TYPE_CHECKING:
    from syrupy.assertion import AssertionResult, SnapshotAssertion

    from .baselines import BaselineExtension

SNAPSHOT_FIXTURE = "finetune_snapshot"
RESULT_FIXTURE = "finetune_result"


def require_fixtures(item: pytest.Item) -> None:
    """Make a marked test use its baseline and its result, even with an empty body.

    They are set up after the autouse and ``usefixtures`` fixtures (which may prepare what
    training sees) and before the test's own arguments; the baseline first, so that it is
    there to be kept if training fails.
    """
    names: list[str] = item.fixturenames  # type: ignore[attr-defined]
    for name in (RESULT_FIXTURE, SNAPSHOT_FIXTURE):
        if name in names:
            names.remove(name)
    arguments = set(inspect.signature(item.obj).parameters) if isinstance(item, pytest.Function) else set()
    first_argument = next((index for index, name in enumerate(names) if name in arguments), len(names))
    names[first_argument:first_argument] = [SNAPSHOT_FIXTURE, RESULT_FIXTURE]


def conclude(item: pytest.Item, *, compare: bool) -> str | None:
    """Record the test's comparison for the reports; with ``compare`` and none made by
    the body, compare first. Returns the failure message when the gate's comparison fails."""
    funcargs = getattr(item, "funcargs", {})
    snapshot: SnapshotAssertion | None = funcargs.get(SNAPSHOT_FIXTURE)
    if snapshot is None:
        return None
    gated = compare and not snapshot.num_executions
    if gated:
        snapshot == funcargs[RESULT_FIXTURE]  # noqa: B015  (syrupy records the comparison)
    if not snapshot.num_executions:
        return None
    entry = entry_for(item, snapshot, snapshot.executions[snapshot.num_executions - 1])
    item.config.stash[SESSION_KEY].entries.append(entry)
    item.user_properties.extend(junit_properties(entry))
    return failure_message(entry) if gated and entry.failed else None


def keep(item: pytest.Item) -> None:
    """A marked test that failed before comparing still owns its baseline: mark it used,
    so that syrupy neither reports it unused nor deletes it under ``--snapshot-update``."""
    snapshot: SnapshotAssertion | None = getattr(item, "funcargs", {}).get(SNAPSHOT_FIXTURE)
    if snapshot is None or snapshot.num_executions:
        return
    location = snapshot.extension.get_location(test_location=snapshot.test_location, index=snapshot.index)
    if Path(location).exists():
        snapshot == KEEP  # noqa: B015


def entry_for(item: pytest.Item, snapshot: SnapshotAssertion, result: AssertionResult) -> ReportEntry:
    """What one comparison came to, in the reports' terms."""
    extension: BaselineExtension = snapshot.extension  # type: ignore[assignment]
    here = item.config.invocation_params.dir
    shown = shown_path(result.snapshot_location, here)
    record = _record(result.asserted_data)
    result_used = getattr(item, "funcargs", {}).get(RESULT_FIXTURE)
    common: dict[str, Any] = {
        "cached": bool(getattr(result_used, "from_cache", False)),
        "nodeid": item.nodeid,
        "baseline": shown,
        "gated": extension.settings.tolerances.metrics,
        "verdict": extension.verdict,
        "record": record,
    }
    if result.exception is not None:
        error = result.exception
        message = str(error) if isinstance(error, FinetuneError | TypeError) else f"{type(error).__name__}: {error}"
        return ReportEntry(outcome="error", message=f"{item.nodeid}: {message}", **common)
    if result.created:
        return ReportEntry(outcome="recorded", **common)
    if result.updated:
        return ReportEntry(outcome="updated", **common)
    if extension.problem is not None:
        return ReportEntry(outcome="invalid baseline", message=f"{item.nodeid}: {extension.problem}", **common)
    if result.recalled_data is None:
        test_id = "::".join([shown_path(item.path, here), *item.nodeid.split("::")[1:]])
        command = shlex.join(["pytest", "--finetune", "--snapshot-update", test_id])
        message = f"{item.nodeid}: no baseline at {shown}; record it with: {command}"
        return ReportEntry(outcome="no baseline", message=message, **common)
    assert extension.verdict is not None
    return ReportEntry(outcome=extension.verdict.outcome.value, **common)


def _record(serialized: Any) -> dict[str, Any] | None:
    try:
        record = json.loads(str(serialized)) if serialized is not None else None
    except json.JSONDecodeError:  # the KEEP marker
        return None
    return record if isinstance(record, dict) else None
