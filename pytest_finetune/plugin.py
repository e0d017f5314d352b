"""pytest hook implementations: each a few lines that call the modules that do the work."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from . import argschema, gate, hookspecs
from .baselines import (
    ALL_KEPT,
    KEPT_BASELINES,
    KEPT_FOLDERS,
    SEEN_BASELINES,
    SeenBaselines,
    baseline_folder,
    foreign_baselines_line,
    mirrored_folder,
    removing_unused,
    shown_path,
)
from .calibration import CalibrationSeed, with_seed_items
from .distributed import agreed_exit_status, is_main_process, wait_for_all
from .errors import FinetuneError
from .fixtures import (  # noqa: F401  (fixtures are registered by being in this module)
    compute_metrics,
    data_collator,
    finetune_dataset,
    finetune_recipe,
    finetune_result,
    finetune_snapshot,
    model,
    mrpc_dataset,
    tokenized_dataset,
    tokenized_mrpc,
    tokenizer,
    trainer,
    training_args,
)
from .history import write_history
from .html_report import report_html
from .options import (
    MARKER,
    MARKER_HELP,
    SKIP_REASON,
    add_options,
    marker_settings,
    recipe_group,
    runtime_tuning_setting,
)
from .relay import ProgressRelay
from .report import entry_from_json, entry_to_json, report_json, report_markdown, summary_lines
from .runtime import quiet_openmp_waits, threads_line
from .scheduling import RecipeScheduler, scheduled_by_recipe, send_recipe_groups
from .session import SESSION_KEY, FinetuneSession
from .storage import StorageError, unwritten_message, write_atomically

#: Files that could not be written or removed at the end of the session, as messages.
_UNWRITTEN = pytest.StashKey[list[str]]()
#: The summary's line on the history file (``--finetune-history``): what was appended, or why nothing was.
_HISTORY = pytest.StashKey[str]()
#: The summary's warning when the HTML report (``--finetune-html``) could not be written.
_HTML = pytest.StashKey[str]()
#: Why the session did not run to its end (see :func:`_stopped_early`, :class:`_CrashedWorkers`), said with the
#: baselines it keeps; unset when it did.
_INCOMPLETE = pytest.StashKey[str]()
_STOPPED_EARLY = "the session stopped before every test ran: the baselines of the tests it did not run are kept"
_WORKER_CRASHED = (
    "a pytest-xdist worker crashed: the baselines of the tests it ran are kept (their comparisons were lost with it)"
)
#: The attribute of a pytest-xdist worker's test report that carries the report entries its test
#: made (as :func:`~pytest_finetune.report.entry_to_json` text) to the controller.
_ENTRIES_ATTRIBUTE = "finetune_entries"
#: The attribute of a pytest-xdist worker's test report that carries the baselines its test kept without comparing
#: (see :func:`gate.keep`) to the controller.
_KEPT_ATTRIBUTE = "finetune_kept"


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    """Before a conftest can import torch: OpenMP's wait policy for a ``--finetune`` run (see :mod:`.runtime`)."""
    if not getattr(early_config.known_args_namespace, "finetune", False):
        return
    try:
        tuning = runtime_tuning_setting(early_config)
    except FinetuneError:
        return  # pytest_configure names the bad value
    if tuning:
        quiet_openmp_waits()


def pytest_report_header(config: pytest.Config) -> str | None:
    if config.getoption("--finetune") and config.stash[SESSION_KEY].runtime_tuning:
        return threads_line()
    return None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    argschema.use_pytest_cache(getattr(config, "cache", None))  # None under -p no:cacheprovider
    try:
        config.stash[SESSION_KEY] = FinetuneSession.from_config(config)
    except FinetuneError as error:
        raise pytest.UsageError(str(error)) from None
    config.stash[SEEN_BASELINES] = SeenBaselines.scan(config.stash[SESSION_KEY].baseline_dir)
    config.pluginmanager.register(_Interruptions(config), "finetune-interruptions")
    if not _is_worker(config):
        config.pluginmanager.register(_EntriesFromWorkers(config.stash[SESSION_KEY]), "finetune-entries-from-workers")
        if config.pluginmanager.has_plugin("xdist") or config.pluginmanager.has_plugin("xdist.plugin"):
            config.pluginmanager.register(_CrashedWorkers(config), "finetune-crashed-workers")
            if config.stash[SESSION_KEY].enabled:
                config.pluginmanager.register(ProgressRelay(config), "finetune-progress-relay")
                if config.getoption("dist") == "load":  # -n's default: the tests of one recipe go to one worker
                    config.pluginmanager.register(RecipeScheduler(), "finetune-recipe-scheduler")


def pytest_unconfigure(config: pytest.Config) -> None:
    argschema.use_pytest_cache(None)  # the session's cache goes with it (pytester runs sessions in one process)


def _is_worker(config: pytest.Config) -> bool:
    """Whether this process is a pytest-xdist worker (its controller reports for the session)."""
    return hasattr(config, "workerinput")


class _EntriesFromWorkers:
    """On the controller of a pytest-xdist run (and harmlessly in a serial run, whose reports carry
    none), adds the report entries and kept baselines that come with the workers' test reports to the session's."""

    def __init__(self, session: FinetuneSession) -> None:
        self.session = session

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for text in getattr(report, _ENTRIES_ATTRIBUTE, ()):
            self.session.entries.append(entry_from_json(text))
        self.session.kept.update(getattr(report, _KEPT_ATTRIBUTE, ()))


class _Interruptions:
    """Notes a session stopped by Ctrl-C or ``pytest.exit()``, whatever exit status it gives: the hook
    that says so has no ``config`` argument."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        self.config.stash[_INCOMPLETE] = _STOPPED_EARLY


class _CrashedWorkers:
    """On pytest-xdist's controller, notes a worker that went down with an error (killed, out of memory):
    what its tests compared never reached the controller, so their baselines would look unused."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        if error is not None:
            self.config.stash[_INCOMPLETE] = _WORKER_CRASHED


def _marked_test(item: pytest.Item) -> bool:
    """Whether ``item`` is a test function marked ``finetune`` (a doctest under a marked module or class,
    which inherits the marker, is not one; nor is a calibration's seed item, which has no baseline)."""
    return (
        isinstance(item, pytest.Function)
        and not isinstance(item, CalibrationSeed)
        and item.get_closest_marker(MARKER) is not None
    )


def _calibrated_training(item: pytest.Item) -> tuple[Any, ...] | None:
    """What decides a marked test's fine-tune as collection tells it (recipe, where the test is, its fixtures and
    parameters), ``None`` for an item that does not fine-tune: tests alike share a calibration's seed items."""
    if not isinstance(item, pytest.Function) or not _marked_test(item) or "finetune_result" not in item.fixturenames:
        return None
    callspec = getattr(item, "callspec", None)
    return (
        recipe_group(item),
        item.parent.nodeid if item.parent else "",
        tuple(item.fixturenames),
        callspec and callspec.id,
    )


def _owns_baseline(item: pytest.Item) -> bool:
    """Whether ``item`` has a baseline: a marked test, or one comparing with ``finetune_snapshot``."""
    return _marked_test(item) or (isinstance(item, pytest.Function) and gate.SNAPSHOT_FIXTURE in item.fixturenames)


@pytest.hookimpl(wrapper=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: Any) -> Generator[None, Any, Any]:
    """Check each new test's ``finetune`` marker: a mistake is a collection error."""
    collected = yield
    items = collected if isinstance(collected, list) else [collected]
    for item in items:
        if isinstance(item, pytest.Item) and item.get_closest_marker(MARKER):
            try:
                marker_settings(item)
                collector.config.stash[SESSION_KEY].check_task(item)
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


@pytest.hookimpl(wrapper=True, tryfirst=True, specname="pytest_collection_modifyitems")
def pytest_collection_modifyitems_first(items: list[pytest.Item], config: pytest.Config) -> Generator[None, None, None]:
    """Keep the baselines of the tests that any implementation deselects (``-k``, ``--sw``, a conftest's,
    with or without ``pytest_deselected``): runs before all of them and looks after them."""
    collected = list(items)
    yield
    selected = set(items)
    kept = config.stash.setdefault(KEPT_BASELINES, set())
    kept.update(gate.baseline_location(item) for item in collected if item not in selected and _owns_baseline(item))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without ``--finetune`` marked tests are skipped; with it, each gets its result and a baseline
    of its own. Runs after the other implementations, so that a ``finetune`` marker one of them
    added is checked too: a mistake in it, or a marker put on an item that is not a test function
    (a doctest), is a usage error; a doctest that inherits the marker of its module or class is left
    alone."""
    enabled = config.stash[SESSION_KEY].enabled
    for item in items:
        if not item.get_closest_marker(MARKER):
            continue
        if not isinstance(item, pytest.Function):
            if all(marker.name != MARKER for marker in item.own_markers):
                continue
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
        session = config.stash[SESSION_KEY]
        if scheduled_by_recipe(config) and session.calibrate and session.cache is not None:
            with_seed_items(items, session.calibrate, _calibrated_training)  # other workers fine-tune its seeds


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """On a pytest-xdist worker: the tests' recipes to the controller, before pytest-xdist sends it the collection."""
    send_recipe_groups(session)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    """After a marked test's body passes, compare its result with its baseline."""
    body_passed = False
    try:
        outcome = yield
        body_passed = True
    finally:
        failure = gate.conclude(item, compare=body_passed and _marked_test(item))
    if failure:
        pytest.fail(failure, pytrace=False)
    return outcome


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """The test's report entry follows pytest's outcome of each phase (xfail applied: this wrapper
    is outside pytest's own); a marked test that failed before comparing with its baseline still
    gets one. A pytest-xdist worker hands the entries its test made, and the baseline it kept, to the controller in
    the teardown report, once they are settled."""
    report: pytest.TestReport = yield
    if isinstance(item, pytest.Function) and not isinstance(item, CalibrationSeed):
        gate.settle(item, call, report)
    if _is_worker(item.config) and report.when == "teardown":
        session = item.config.stash[SESSION_KEY]
        setattr(report, _ENTRIES_ATTRIBUTE, [entry_to_json(entry) for entry in session.entries])
        setattr(report, _KEPT_ATTRIBUTE, sorted(session.kept))
        session.entries.clear()
        session.kept.clear()
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    if _marked_test(item):
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
    if ALL_KEPT in config.stash:
        terminalreporter.write_line(f"pytest-finetune: {config.stash[_INCOMPLETE]}; none counts as unused this session")
    kept = len(config.stash[SESSION_KEY].kept)
    if kept:
        terminalreporter.write_line(
            f"pytest-finetune: {kept} baseline(s) kept as they are, not compared: their tests stopped before comparing"
        )
    foreign = foreign_baselines_line(config)
    if foreign:
        terminalreporter.write_line(foreign)
    for message in config.stash.get(_UNWRITTEN, []):
        terminalreporter.write_line(f"ERROR: {message}", red=True, bold=True)
    if _HISTORY in config.stash:
        terminalreporter.write_line(config.stash[_HISTORY], yellow="warning:" in config.stash[_HISTORY])
    if _HTML in config.stash:
        terminalreporter.write_line(config.stash[_HTML], yellow=True)


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> Generator[None, Any, Any]:
    """Write the report files (on pytest-xdist's controller), also when the session was interrupted.
    A file that cannot be written or removed at the end of the session (a report; an unused
    baseline syrupy removes under ``--snapshot-update``) fails the session with a message naming
    it, not a traceback. syrupy removes only the baselines this session saw when it started, unchanged
    (see :class:`~pytest_finetune.baselines.SeenBaselines`).

    A session stopped early (Ctrl-C, ``pytest.exit()``, ``-x``, ``--maxfail``) did not run every test,
    and a crashed pytest-xdist worker took what its tests compared with it: syrupy would count their
    baselines unused and, under ``--snapshot-update``, delete them. Every baseline is kept then
    (:data:`ALL_KEPT`); on pytest-xdist's controller, whose workers looked for unused baselines, by
    turning syrupy's unused-snapshot check off. The baselines of tests that stopped before comparing, which syrupy
    counts passed, are taken out of its summary's counts (:func:`gate.uncount_kept`).

    In a data-parallel run (see :mod:`~pytest_finetune.distributed`) rank 0 alone writes baselines and reports,
    once every process got here, and every process ends with the worst exit status of them all.
    """
    config = session.config
    if _stopped_early(session):
        config.stash.setdefault(_INCOMPLETE, _STOPPED_EARLY)
    if _INCOMPLETE in config.stash and not config.option.disable_unused_snapshots:
        config.stash[ALL_KEPT] = True
        if config.pluginmanager.has_plugin("dsession"):
            config.option.disable_unused_snapshots = True
    together = session.exitstatus != pytest.ExitCode.INTERRUPTED  # else the other ranks may be gone: no collective
    if together:
        try:
            wait_for_all()  # each compared with its baselines before rank 0 writes them
        except FinetuneError as error:
            _fail_session(session, f"pytest-finetune: {error}")
            together = False
    try:
        with removing_unused(config):
            yield
    except OSError as error:
        _fail_session(session, unwritten_message(error))
    finally:
        if not _is_worker(session.config):
            gate.uncount_kept(config)
            if is_main_process():
                _write_reports(session)
        if together:
            session.exitstatus = agreed_exit_status(session.exitstatus)


def _stopped_early(session: pytest.Session) -> bool:
    """``-x``, ``--maxfail``, or an interruption (a collection error stops a session so too)."""
    return session.exitstatus == pytest.ExitCode.INTERRUPTED or bool(session.shouldstop or session.shouldfail)


def _write_reports(session: pytest.Session) -> None:
    """Write ``--finetune-report`` and ``--finetune-report-md``, append to ``--finetune-history``, then write
    ``--finetune-html`` (with the history's runs): the controller's job under pytest-xdist. A history or an HTML
    report that cannot be written is a warning: the verdicts stand."""
    config = session.config
    entries = config.stash[SESSION_KEY].entries
    for option, render in (("--finetune-report", report_json), ("--finetune-report-md", report_markdown)):
        path = config.getoption(option)
        if path:
            try:
                write_atomically(config.invocation_params.dir / path, render(entries))
            except StorageError as error:
                _fail_session(session, str(error))
    history = config.stash[SESSION_KEY].history
    runs: list[dict[str, Any]] = []
    if history is not None and entries:
        try:
            config.stash[_HISTORY], runs = write_history(history, entries, config.rootpath)
        except OSError as error:
            config.stash[_HISTORY] = (
                f"pytest-finetune: warning: cannot append to the history {history} ({error}); the tests' verdicts "
                "are unchanged"
            )
    html = config.stash[SESSION_KEY].html
    if html is not None:
        try:
            write_atomically(html, report_html(entries, runs))
        except StorageError as error:
            config.stash[_HTML] = f"pytest-finetune: warning: HTML report: {error}; the tests' verdicts are unchanged"


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
