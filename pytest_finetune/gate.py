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
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .baselines import KEEP, KEPT_BASELINES, BaselineExtension, BaselineSettings, result_record, shown_path
from .errors import FinetuneError
from .report import NOT_COMPARED, ReportEntry, failure_message, junit_properties
from .session import SESSION_KEY

if TYPE_CHECKING:
    from syrupy.assertion import AssertionResult, SnapshotAssertion

SNAPSHOT_FIXTURE = "finetune_snapshot"
RESULT_FIXTURE = "finetune_result"


def require_fixtures(item: pytest.Function) -> None:
    """Make a marked test use its baseline and its result, even with an empty body.

    They are set up after the autouse and ``usefixtures`` fixtures (which may prepare what
    training sees) and before the test's own arguments; the baseline first, so that it is
    there to be kept if training fails.
    """
    names: list[str] = item.fixturenames
    for name in (RESULT_FIXTURE, SNAPSHOT_FIXTURE):
        if name in names:
            names.remove(name)
    arguments = set(inspect.signature(item.obj).parameters)
    first_argument = next((index for index, name in enumerate(names) if name in arguments), len(names))
    names[first_argument:first_argument] = [SNAPSHOT_FIXTURE, RESULT_FIXTURE]


def baseline_location(item: pytest.Item) -> Path:
    """Where a test's baseline is, known from the item alone (its ``finetune_snapshot`` may never
    have been set up)."""
    from syrupy.location import PyTestLocation

    settings = BaselineSettings(root=item.config.stash[SESSION_KEY].baseline_dir, rootdir=item.config.rootpath)
    extension = BaselineExtension.configured(settings)
    return Path(extension.get_location(test_location=PyTestLocation(item), index=0))


def check_distinct_baselines(config: pytest.Config, items: Sequence[pytest.Item]) -> None:
    """Refuse (a usage error) two tests whose baselines would be one file: parametrize ids that
    differ only where a file name cannot (``a:b`` and ``a%3Ab``), or beyond its 255 characters."""
    owners: dict[Path, str] = {}
    for item in items:
        if not isinstance(item, pytest.Function) or SNAPSHOT_FIXTURE not in item.fixturenames:
            continue
        location = baseline_location(item)
        owner = owners.setdefault(location, item.nodeid)
        if owner != item.nodeid:
            raise pytest.UsageError(
                f"{owner} and {item.nodeid} would share one baseline file, "
                f"{shown_path(location, config.invocation_params.dir)}; give one of them another parametrize id "
                "(pytest.param(..., id=...) or ids=[...])"
            )


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
    so that syrupy neither reports it unused nor deletes it under ``--snapshot-update``. One whose
    ``finetune_snapshot`` was never set up (an autouse or ``usefixtures`` fixture failed first) goes
    to :data:`~pytest_finetune.baselines.KEPT_BASELINES`."""
    snapshot: SnapshotAssertion | None = getattr(item, "funcargs", {}).get(SNAPSHOT_FIXTURE)
    if snapshot is None:
        if item.config.stash[SESSION_KEY].enabled:
            item.config.stash.setdefault(KEPT_BASELINES, set()).add(baseline_location(item))
        return
    if snapshot.num_executions:
        return
    location = snapshot.extension.get_location(test_location=snapshot.test_location, index=snapshot.index)
    if Path(location).exists():
        snapshot == KEEP  # noqa: B015


def not_compared(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    """Record for the reports a marked test that failed (its setup: training crashed; or its
    body) before any comparison with its baseline: the reports count it failed, with its run's
    model and metrics when it trained."""
    snapshot: SnapshotAssertion | None = getattr(item, "funcargs", {}).get(SNAPSHOT_FIXTURE)
    if snapshot is not None and snapshot.num_executions:
        return  # compared: conclude() made its entry
    here = item.config.invocation_params.dir
    reason = call.excinfo.exconly().strip().splitlines()[0][:300] if call.excinfo is not None else call.when
    result = getattr(item, "funcargs", {}).get(RESULT_FIXTURE)  # trained, then the body failed
    entry = ReportEntry(
        nodeid=item.nodeid,
        outcome=NOT_COMPARED,
        baseline=shown_path(baseline_location(item), here),
        gated=item.config.stash[SESSION_KEY].tolerances_for(item).metrics,
        record=None if result is None else result_record(result, item.config.rootpath),
        message=f"{item.nodeid}: {NOT_COMPARED} with its baseline ({call.when}): {reason}",
        cached=bool(getattr(result, "from_cache", False)),
    )
    item.config.stash[SESSION_KEY].entries.append(entry)
    item.user_properties.extend(junit_properties(entry))


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
    error = result.exception if result.exception is not None else extension.refused
    if error is not None:
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
        recipe_options = recipe_arguments(item.config.invocation_params.args)
        command = shlex.join(["pytest", "--finetune", "--snapshot-update", *recipe_options, test_id])
        message = f"{item.nodeid}: no baseline at {shown}; record it with: {command}"
        return ReportEntry(outcome="no baseline", message=message, **common)
    assert extension.verdict is not None
    return ReportEntry(outcome=extension.verdict.outcome.value, **common)


#: Command-line options that change what a fine-tune computes: a command that records a
#: baseline repeats them, else it would record another recipe.
RECIPE_OPTIONS = ("--finetune-model", "--finetune-data", "--finetune-task", "--finetune-set", "--finetune-precision")
#: pytest's ini overrides: repeated too when they set a ``finetune_*`` ini value.
OVERRIDE_OPTIONS = ("-o", "--override-ini")


def recipe_arguments(args: Sequence[str]) -> list[str]:
    """The :data:`RECIPE_OPTIONS` among ``args`` (a command line), and the :data:`OVERRIDE_OPTIONS`
    of ``finetune_*`` ini values, each with its value, as written."""
    kept: list[str] = []
    pending: str | None = None  # an option whose value is the next argument
    for arg in map(str, args):
        if pending is not None:
            if _repeated(pending, arg):
                kept += [pending, arg]
            pending = None
            continue
        option, value = _option_and_value(arg)
        if option in RECIPE_OPTIONS + OVERRIDE_OPTIONS:
            if value is None:
                pending = option
            elif _repeated(option, value):
                kept.append(arg)
    return kept


def _option_and_value(arg: str) -> tuple[str, str | None]:
    """``-oKEY=VALUE`` and ``--option=VALUE`` split; the value None when the next argument holds it."""
    if arg.startswith("-o") and not arg.startswith("--"):
        return "-o", arg[2:] or None
    option, equals, value = arg.partition("=")
    return option, value if equals else None


def _repeated(option: str, value: str) -> bool:
    """Whether a record command repeats ``option`` with ``value``: a recipe option, or an ini override
    of a ``finetune_*`` value."""
    return option in RECIPE_OPTIONS or value.startswith("finetune_")


def _record(serialized: Any) -> dict[str, Any] | None:
    try:
        record = json.loads(str(serialized)) if serialized is not None else None
    except json.JSONDecodeError:  # the KEEP marker
        return None
    return record if isinstance(record, dict) else None
