"""The baseline gate of a ``finetune``-marked test: after its body, its result is compared
with its baseline, and a regression fails the test with the verdict table.

A test whose body compares by itself (``assert result == finetune_snapshot``) is not
compared twice. Every comparison, the gate's or the body's, becomes a
:class:`~pytest_finetune.report.ReportEntry` for the session's reports.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import shlex
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .baselines import (
    KEEP,
    KEPT_BASELINES,
    BaselineExtension,
    BaselineSettings,
    NoClassBaseline,
    result_record,
    shown_path,
)
from .errors import FinetuneError
from .options import MARKER, RECIPE_CHANGING_OPTIONS
from .pytest_compat import stored_outcome, syrupy_report
from .report import (
    FAILED_AFTER_COMPARING,
    NOT_COMPARED,
    OUTCOME_PROPERTY,
    XFAILED,
    ReportEntry,
    failure_message,
    junit_properties,
)
from .session import SESSION_KEY
from .verdicts import WARNABLE

if TYPE_CHECKING:
    from syrupy.assertion import AssertionResult, SnapshotAssertion

SNAPSHOT_FIXTURE = "finetune_snapshot"
RESULT_FIXTURE = "finetune_result"
#: The report entry a test made, to be settled by pytest's outcome of its phases (see :func:`settle`).
_ENTRY = pytest.StashKey[ReportEntry]()


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
    """Record the test's comparison for the reports; with ``compare``, a body that passed (see
    :func:`_body_stored_an_outcome`) and no comparison made by the body, compare first. Returns the
    failure message when the gate's comparison fails."""
    funcargs = getattr(item, "funcargs", {})
    snapshot: SnapshotAssertion | None = funcargs.get(SNAPSHOT_FIXTURE)
    if snapshot is None:
        return None
    gated = compare and not snapshot.num_executions and not _body_stored_an_outcome(item)
    if gated:
        snapshot == funcargs[RESULT_FIXTURE]  # noqa: B015  (syrupy records the comparison)
    if not snapshot.num_executions:
        return None
    entry = entry_for(item, snapshot, snapshot.executions[snapshot.num_executions - 1])
    _add_entry(item, entry)
    if entry.warn_only:
        message = f"pytest-finetune (warn-only): {failure_message(entry, record_command(item))}"
        warnings.warn_explicit(message, pytest.PytestWarning, str(item.path), (item.location[1] or 0) + 1)
    return failure_message(entry, record_command(item)) if gated and entry.failed else None


def _body_stored_an_outcome(item: pytest.Item) -> bool:
    """Whether the body of a ``unittest.TestCase`` method failed, was skipped (``skipTest``) or
    was an expected failure: pytest's unittest support does not raise these out of the body but
    stores them in the item's ``_excinfo``, to become the test's outcome when it is reported.
    Such a body did not pass: it is not compared, and its entry follows pytest's outcome (see
    :func:`settle`)."""
    return stored_outcome(item)


def keep(item: pytest.Item) -> None:
    """A marked test that failed before comparing still owns its baseline: mark it used,
    so that syrupy neither reports it unused nor deletes it under ``--snapshot-update`` (nor counts it passed: see
    :func:`uncount_kept`). One whose ``finetune_snapshot`` was never set up (an autouse or ``usefixtures`` fixture
    failed first) goes to :data:`~pytest_finetune.baselines.KEPT_BASELINES`."""
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
        item.config.stash[SESSION_KEY].kept.add(location)


def uncount_kept(config: pytest.Config) -> None:
    """Take the baselines :func:`keep` marked used out of the snapshots syrupy's summary counts passed: their tests
    stopped before comparing (pytest counts them failed, errors or skipped)."""
    from syrupy.data import SnapshotCollections

    kept = config.stash[SESSION_KEY].kept
    report = syrupy_report(config)
    if report is not None:
        matched = SnapshotCollections()
        for collection in report.matched:
            if collection.location not in kept:
                matched.add(collection)
        report.matched = matched


def settle(item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport) -> None:
    """Make the test's report entry follow pytest's outcome of one of its phases (``report``,
    xfail applied): a marked test that failed or xfailed before comparing gets its entry (see
    :func:`not_compared`); a test xfailed after comparing is shown ``xfailed``, one that failed
    after a comparison that did not fail it (its body, its teardown, an ``xfail(strict=True)``
    that passed) ``failed after comparing``: both keep the comparison's values."""
    xfailed = report.skipped and hasattr(report, "wasxfail")
    if not (report.failed or xfailed):
        return
    entry = item.stash.get(_ENTRY, None)
    if entry is None:
        if report.when == "teardown" or not item.get_closest_marker(MARKER):
            return
        entry = not_compared(item, call)
    if xfailed:
        outcome, reason = XFAILED, f"xfail: {report.wasxfail}" if report.wasxfail else "xfail"
    elif not entry.failed:
        outcome, reason = FAILED_AFTER_COMPARING, _failure_reason(call, report)
    else:
        return
    head = f"{item.nodeid}: {outcome} ({report.when}): {reason}"
    told = f"; the comparison: {entry.outcome}" if entry.message is None else f"\n{entry.message}"
    settled = dataclasses.replace(entry, outcome=outcome, compared=entry.outcome, message=head + told)
    entries = item.config.stash[SESSION_KEY].entries
    entries[next(index for index, kept in enumerate(entries) if kept is entry)] = settled
    item.stash[_ENTRY] = settled
    for properties in (item.user_properties, report.user_properties):  # JUnit reads the teardown report's
        properties[:] = [(name, outcome if name == OUTCOME_PROPERTY else value) for name, value in properties]


def not_compared(item: pytest.Item, call: pytest.CallInfo[None]) -> ReportEntry:
    """Record for the reports a marked test that failed (its setup: training crashed; or its
    body) before any comparison with its baseline: the reports count it failed, with its run's
    model and metrics when it trained."""
    here = item.config.invocation_params.dir
    reason = _failure_reason(call, None)
    result = getattr(item, "funcargs", {}).get(RESULT_FIXTURE)  # trained, then the body failed
    try:
        gated = item.config.stash[SESSION_KEY].tolerances_for(item).metrics
    except FinetuneError:  # its recipe cannot be resolved (a hook's task, say): the test's error says why
        gated = ()
    entry = ReportEntry(
        nodeid=item.nodeid,
        outcome=NOT_COMPARED,
        baseline=shown_path(baseline_location(item), here),
        gated=gated,
        record=_run_record(item),
        message=f"{item.nodeid}: {NOT_COMPARED} with its baseline ({call.when}): {reason}",
        cached=bool(getattr(result, "from_cache", False)),
        shared_from=getattr(result, "shared_from", None),
    )
    _add_entry(item, entry)
    return entry


def _add_entry(item: pytest.Item, entry: ReportEntry) -> None:
    """Add the test's entry to the session's, and its JUnit properties to the test's."""
    item.stash[_ENTRY] = entry
    item.config.stash[SESSION_KEY].entries.append(entry)
    item.user_properties.extend(junit_properties(entry))


def _failure_reason(call: pytest.CallInfo[None], report: pytest.TestReport | None) -> str:
    """The first line of what failed the phase: its exception, else the report's text
    (``[XPASS(strict)] ...``), else the phase's name."""
    if call.excinfo is not None:
        text = call.excinfo.exconly()
    elif report is not None and report.longrepr is not None:
        text = str(report.longrepr)
    else:
        text = call.when
    return (text.strip().splitlines() or [call.when])[0][:300]


def _run_record(item: pytest.Item) -> dict[str, Any] | None:
    """The record of the run the test's ``finetune_result`` holds, when it trained (or was served)."""
    result = getattr(item, "funcargs", {}).get(RESULT_FIXTURE)
    return None if result is None else result_record(result, item.config.rootpath)


def entry_for(item: pytest.Item, snapshot: SnapshotAssertion, result: AssertionResult) -> ReportEntry:
    """What one comparison came to, in the reports' terms."""
    extension: BaselineExtension = snapshot.extension  # type: ignore[assignment]
    here = item.config.invocation_params.dir
    shown = shown_path(result.snapshot_location, here)
    result_used = getattr(item, "funcargs", {}).get(RESULT_FIXTURE)
    common: dict[str, Any] = {
        "cached": bool(getattr(result_used, "from_cache", False)),
        "shared_from": getattr(result_used, "shared_from", None),
        "nodeid": item.nodeid,
        "baseline": shown,
        "hardware_class": extension.hardware_class,
        "gated": extension.settings.tolerances.metrics,
        "verdict": extension.verdict,
        "record_command": record_command(item),
        # the compared record; the run's when comparing failed (an unknown gated metric, a non-finite one)
        "record": _record(result.asserted_data) or _run_record(item),
    }
    error = result.exception if result.exception is not None else extension.refused
    if error is not None:
        message = str(error) if isinstance(error, FinetuneError | TypeError) else f"{type(error).__name__}: {error}"
        return ReportEntry(outcome="error", message=f"{item.nodeid}: {message}", **common)
    no_class = isinstance(extension.problem, NoClassBaseline)
    if result.created or (result.updated and no_class):
        return ReportEntry(outcome="recorded", **common)
    if no_class:
        message = f"{item.nodeid}: {extension.problem}; record it with: {record_command(item)}"
        return ReportEntry(outcome="no baseline", message=message, **common)
    if result.updated:
        return ReportEntry(outcome="updated", **common)
    if extension.problem is not None:
        return ReportEntry(outcome="invalid baseline", message=f"{item.nodeid}: {extension.problem}", **common)
    if result.recalled_data is None:
        message = f"{item.nodeid}: no baseline at {shown}; record it with: {record_command(item)}"
        return ReportEntry(outcome="no baseline", message=message, **common)
    assert extension.verdict is not None
    warn_only = extension.settings.warn_only and extension.verdict.outcome in WARNABLE
    return ReportEntry(outcome=extension.verdict.outcome.value, warn_only=warn_only, **common)


def record_command(item: pytest.Item) -> str:
    """The command that records the test's baseline: ``--snapshot-update`` for this test alone,
    with the recipe options of this session's command line (see :func:`recipe_arguments`)."""
    test_id = "::".join([shown_path(item.path, item.config.invocation_params.dir), *item.nodeid.split("::")[1:]])
    recipe_options = recipe_arguments(item.config.invocation_params.args)
    return shlex.join(["pytest", "--finetune", "--snapshot-update", *recipe_options, test_id])


#: Command-line options that change what a fine-tune computes: a command that records a
#: baseline repeats them, else it would record another recipe. pytest's own among them: the
#: ini file (all its ``finetune_*`` values), the rootdir (the baseline folder) and the plugins
#: and ``conftest.py`` files loaded (their hooks and fixtures may adjust the recipe).
RECIPE_OPTIONS = (*RECIPE_CHANGING_OPTIONS, *("-c", "--config-file", "--rootdir", "-p", "--confcutdir"))
#: Flags (no value) that change what a fine-tune computes, repeated too: no ``conftest.py`` is loaded.
RECIPE_FLAGS = ("--noconftest",)
#: pytest's ini overrides: repeated too when they set a ``finetune_*`` ini value.
OVERRIDE_OPTIONS = ("-o", "--override-ini")


def recipe_arguments(args: Sequence[str]) -> list[str]:
    """The :data:`RECIPE_OPTIONS` and :data:`RECIPE_FLAGS` among ``args`` (a command line), and the
    :data:`OVERRIDE_OPTIONS` of ``finetune_*`` ini values, each with its value, as written."""
    kept: list[str] = []
    pending: str | None = None  # an option whose value is the next argument
    for arg in map(str, args):
        if pending is not None:
            if _repeated(pending, arg):
                kept += [pending, arg]
            pending = None
            continue
        option, value = _option_and_value(arg)
        if option in RECIPE_FLAGS:
            kept.append(arg)
        elif option in RECIPE_OPTIONS + OVERRIDE_OPTIONS:
            if value is None:
                pending = option
            elif _repeated(option, value):
                kept.append(arg)
    return kept


def _option_and_value(arg: str) -> tuple[str, str | None]:
    """A short option's ``-oKEY=VALUE``, ``-o=KEY=VALUE`` (argparse's spellings) and ``--option=VALUE``
    split; the value None when the next argument holds it."""
    if not arg.startswith("--") and arg[:2] in RECIPE_OPTIONS + OVERRIDE_OPTIONS:
        return arg[:2], arg[2:].removeprefix("=") or None
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
