"""pytest hook implementations: each a few lines that call the modules that do the work."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from . import argschema, gate, hookspecs
from .baselines import KEPT_FOLDERS, baseline_folder, mirrored_folder, shown_path
from .errors import FinetuneError
from .fixtures import (  # noqa: F401  (fixtures are registered by being in this module)
    compute_metrics,
    data_collator,
    finetune_recipe,
    finetune_result,
    finetune_snapshot,
    model,
    mrpc_dataset,
    tokenized_mrpc,
    tokenizer,
    trainer,
    training_args,
)
from .options import MARKER, MARKER_HELP, SKIP_REASON, add_options, marker_settings
from .report import entry_from_json, entry_to_json, report_json, report_markdown, summary_lines
from .session import SESSION_KEY, FinetuneSession
from .storage import StorageError, unwritten_message, write_atomically

#: Files that could not be written or removed at the end of the session, as messages.
_UNWRITTEN = pytest.StashKey[list[str]]()
#: Set when the session stopped early and the baselines of the tests it did not run were kept.
_KEPT_UNRUN = pytest.StashKey[bool]()
#: The attribute of a pytest-xdist worker's test report that carries the report entries its test
#: made (as :func:`~pytest_finetune.report.entry_to_json` text) to the controller.
_ENTRIES_ATTRIBUTE = "finetune_entries"


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    argschema.use_pytest_cache(getattr(config, "cache", None))  # None under -p no:cacheprovider
    try:
        config.stash[SESSION_KEY] = FinetuneSession.from_config(config)
    except FinetuneError as error:
        raise pytest.UsageError(str(error)) from None
    if not _is_worker(config):
        config.pluginmanager.register(_EntriesFromWorkers(config.stash[SESSION_KEY]), "finetune-entries-from-workers")


def pytest_unconfigure(config: pytest.Config) -> None:
    argschema.use_pytest_cache(None)  # the session's cache goes with it (pytester runs sessions in one process)


def _is_worker(config: pytest.Config) -> bool:
    """Whether this process is a pytest-xdist worker (its controller reports for the session)."""
    return hasattr(config, "workerinput")


class _EntriesFromWorkers:
    """On the controller of a pytest-xdist run (and harmlessly in a serial run, whose reports carry
    none), adds the report entries that come with the workers' test reports to the session's."""

    def __init__(self, session: FinetuneSession) -> None:
        self.session = session

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for text in getattr(report, _ENTRIES_ATTRIBUTE, ()):
            self.session.entries.append(entry_from_json(text))


@pytest.hookimpl(wrapper=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: Any) -> Generator[None, Any, Any]:
    """Check each new test's ``finetune`` marker: a mistake is a collection error."""
    collected = yield
    items = collected if isinstance(collected, list) else [collected]
    for item in items:
        if isinstance(item, pytest.Item) and item.get_closest_marker(MARKER):
            try:
                marker_settings(item)
            except FinetuneError as error:
                raise collector.CollectError(str(error)) from None
    return collected


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    """A test module or folder that collection skipped (``pytest.skip(allow_module_level=True)``)
    or failed to import ran none of its tests: keep its baselines (see :data:`KEPT_FOLDERS`)."""
    report = yield
    session = collector.config.stash[SESSION_KEY]
    if session.enabled and not report.passed and isinstance(collector, pytest.Module | pytest.Directory):
        root, rootdir = session.baseline_dir, collector.config.rootpath
        folder = (
            baseline_folder(collector.path, root, rootdir)
            if isinstance(collector, pytest.Module)
            else mirrored_folder(collector.path, root, rootdir)
        )
        collector.config.stash.setdefault(KEPT_FOLDERS, []).append(folder)
    return report


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without ``--finetune`` marked tests are skipped; with it, each gets its result and a baseline
    of its own. Runs after the other implementations, so that a ``finetune`` marker one of them
    added is checked too: a mistake in it, or a marker on an item that is not a test function
    (a doctest), is a usage error."""
    enabled = config.stash[SESSION_KEY].enabled
    for item in items:
        if not item.get_closest_marker(MARKER):
            continue
        if not isinstance(item, pytest.Function):
            raise pytest.UsageError(
                f"{item.nodeid}: @pytest.mark.{MARKER} on a {type(item).__name__}, which cannot fine-tune "
                "(only test functions ask for fixtures): remove the marker from it"
            )
        try:
            marker_settings(item)
        except FinetuneError as error:
            raise pytest.UsageError(str(error)) from None
        if enabled:
            gate.require_fixtures(item)
        else:
            item.add_marker(pytest.mark.skip(reason=SKIP_REASON))
    if enabled:
        gate.check_distinct_baselines(config, items)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    """After a marked test's body passes, compare its result with its baseline."""
    body_passed = False
    try:
        outcome = yield
        body_passed = True
    finally:
        failure = gate.conclude(item, compare=body_passed and item.get_closest_marker(MARKER) is not None)
    if failure:
        pytest.fail(failure, pytrace=False)
    return outcome


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """The test's report entry follows pytest's outcome of each phase (xfail applied: this wrapper
    is outside pytest's own); a marked test that failed before comparing with its baseline still
    gets one. A pytest-xdist worker hands the entries its test made to the controller in the
    teardown report, once they are settled."""
    report: pytest.TestReport = yield
    gate.settle(item, call, report)
    if _is_worker(item.config) and report.when == "teardown":
        entries = item.config.stash[SESSION_KEY].entries
        setattr(report, _ENTRIES_ATTRIBUTE, [entry_to_json(entry) for entry in entries])
        entries.clear()
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    if item.get_closest_marker(MARKER):
        gate.keep(item)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    entries = config.stash[SESSION_KEY].entries
    if entries:
        terminalreporter.write_sep("-", "fine-tuning baselines")
        for line in summary_lines(entries, verbose=config.get_verbosity() > 0):
            terminalreporter.write_line(line)
    for folder in config.stash.get(KEPT_FOLDERS, []):
        if folder.is_dir():
            terminalreporter.write_line(
                f"pytest-finetune: the baselines in {shown_path(folder, config.invocation_params.dir)} are kept: "
                "their tests were not collected (skipped or failing to import)"
            )
    if config.stash.get(_KEPT_UNRUN, False):
        terminalreporter.write_line(
            "pytest-finetune: the session stopped before every test ran: the baselines of the tests it did not "
            "run are kept (syrupy's unused-snapshot check is off for this session)"
        )
    for message in config.stash.get(_UNWRITTEN, []):
        terminalreporter.write_line(f"ERROR: {message}", red=True, bold=True)


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> Generator[None, Any, Any]:
    """Write the report files (on pytest-xdist's controller), also when the session was interrupted.
    A file that cannot be written or removed at the end of the session (a report; an unused
    baseline syrupy removes under ``--snapshot-update``) fails the session with a message naming
    it, not a traceback.

    A session stopped early (Ctrl-C, ``-x``, ``--maxfail``) did not run every test: syrupy
    would count the baselines of the others unused and, under ``--snapshot-update``, delete them.
    """
    stopped_early = session.exitstatus == pytest.ExitCode.INTERRUPTED or session.shouldstop or session.shouldfail
    if stopped_early and not session.config.option.disable_unused_snapshots:
        session.config.option.disable_unused_snapshots = True
        session.config.stash[_KEPT_UNRUN] = True
    try:
        yield
    except OSError as error:
        _fail_session(session, unwritten_message(error))
    finally:
        if not _is_worker(session.config):
            _write_reports(session)


def _write_reports(session: pytest.Session) -> None:
    """Write ``--finetune-report`` and ``--finetune-report-md``: the controller's job under pytest-xdist."""
    config = session.config
    entries = config.stash[SESSION_KEY].entries
    for option, render in (("--finetune-report", report_json), ("--finetune-report-md", report_markdown)):
        path = config.getoption(option)
        if path:
            try:
                write_atomically(config.invocation_params.dir / path, render(entries))
            except StorageError as error:
                _fail_session(session, str(error))


def _fail_session(session: pytest.Session, message: str) -> None:
    session.config.stash.setdefault(_UNWRITTEN, []).append(message)
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Generator[None, Any, Any]:
    """A :class:`FinetuneError` in any fixture fails the test with its message alone."""
    try:
        return (yield)
    except FinetuneError as error:
        failure = error
    pytest.fail(str(failure), pytrace=False)  # outside the except: no "during handling" chain
