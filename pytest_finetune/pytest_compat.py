"""Every use of a private name of pytest, syrupy or pytest-xdist, in one place (as :mod:`pytest_finetune.compat`
does for transformers): no public API gives what these functions return. ``tests/test_pytest_compat.py`` fails,
naming the name and the installed version, when a new version of one moves it.

- pytest: ``FixtureRequest._fixturemanager`` (the fixture definitions that serve a test), an item's
  ``_excinfo`` (an outcome a ``unittest.TestCase`` body stored), a fixture function's
  ``_get_wrapped_function`` (pytest >= 8.4), a test function's ``_fixtureinfo`` (its fixtures, direct
  parameters included, which a copy of the test needs);
- syrupy: ``config._syrupy`` (its session) with its ``report``, ``_collected_modules`` and ``collect_items``, the
  report's ``unused`` and ``num_unused`` (``functools.cached_property`` values), and the extension methods
  :class:`~pytest_finetune.baselines.BaselineExtension` overrides: ``_sanitize_filename``, ``_write_mode``;
- pytest-xdist: ``LoadScopeScheduling._split_scope`` (what scope a test is in), replaced to make a recipe a scope.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from syrupy.data import SnapshotCollections
    from syrupy.report import SnapshotReport


def fixture_definitions(request: pytest.FixtureRequest, name: str) -> Sequence[Any]:
    """The definitions of fixture ``name`` that serve ``request``'s test, least specific first (none for a name
    that no fixture defines)."""
    return request._fixturemanager.getfixturedefs(name, request.node) or ()


def fixture_info(item: pytest.Function) -> Any:
    """What pytest knows of the fixtures of the test function ``item`` (its direct parameters' too): a copy of the
    test made with it (``pytest.Function.from_parent(..., fixtureinfo=...)``) sets up the same fixtures."""
    return item._fixtureinfo


def wrapped_function(held: Any) -> Any:
    """The function a module holds as a fixture: pytest >= 8.4 holds a ``FixtureFunctionDefinition`` wrapping it."""
    wrapped = getattr(held, "_get_wrapped_function", None)
    return wrapped() if callable(wrapped) else held


def stored_outcome(item: pytest.Item) -> bool:
    """Whether pytest's unittest support stored an outcome of ``item``'s body (a failure, ``skipTest``, an
    expected failure) to report later, rather than raising it."""
    return bool(getattr(item, "_excinfo", None))


def syrupy_report(config: pytest.Config) -> SnapshotReport | None:
    """syrupy's report of the session (``None`` before syrupy made it, or without syrupy)."""
    return getattr(getattr(config, "_syrupy", None), "report", None)


def collected_modules(config: pytest.Config) -> set[str] | None:
    """The test modules the session collected, as syrupy 7 records them (``None`` if it does not)."""
    modules = getattr(getattr(config, "_syrupy", None), "_collected_modules", None)
    return modules if isinstance(modules, set) else None


def add_collected(config: pytest.Config, items: Sequence[pytest.Item]) -> None:
    """Count ``items``, added to the session after syrupy recorded the collected items, as collected (syrupy warns
    about selected items it did not see collected, and its check of unused baselines compares the two)."""
    session = getattr(config, "_syrupy", None)
    if session is not None:
        session.collect_items(list(items))


def set_unused(report: SnapshotReport, unused: SnapshotCollections) -> None:
    """Make ``report`` count ``unused`` as the unused baselines (both values are ``functools.cached_property``)."""
    report.__dict__["unused"] = unused
    report.__dict__.pop("num_unused", None)


def scope_scheduling(config: pytest.Config, log: Any, scope: Callable[[str], str]) -> Any:
    """pytest-xdist's ``loadscope`` scheduler, whose unit of work (tests that go to one worker together) is the tests
    of one ``scope(node_id)`` rather than of one module or class."""
    from xdist.scheduler import LoadScopeScheduling  # pytest-xdist is optional: only its controller calls this

    scheduling = LoadScopeScheduling(config, log)
    scheduling._split_scope = scope  # type: ignore[method-assign]
    return scheduling
