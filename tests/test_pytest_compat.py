"""The private names of pytest, syrupy and pytest-xdist that pytest_finetune/pytest_compat.py (and the baseline
extension) rely on are where the installed versions keep them: a new version that moves one fails here, naming it."""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import types

import pytest
from _pytest import unittest as pytest_unittest
from syrupy.extensions.single_file import SingleFileSnapshotExtension
from syrupy.report import SnapshotReport
from xdist.scheduler import LoadScopeScheduling

from pytest_finetune.pytest_compat import collected_modules, fixture_definitions, fixture_info, wrapped_function

MOVED = "{library} {version} has no {name}: update pytest_finetune/pytest_compat.py for it"


def moved(library: str, name: str) -> str:
    """The failure message for a private ``name`` of ``library`` that the installed version lacks."""
    version = importlib.metadata.version(library)
    return MOVED.format(library=library, version=version, name=name)


@pytest.fixture
def held_fixture() -> str:
    """A fixture of this module, as a conftest.py defines one."""
    return "held"


def test_fixture_definitions(request: pytest.FixtureRequest, held_fixture: str) -> None:
    """``FixtureRequest._fixturemanager`` lists the definitions that serve the test, and a module holds a
    fixture function wrapped so that ``_get_wrapped_function`` (pytest >= 8.4) gives it back."""
    assert hasattr(request, "_fixturemanager"), moved("pytest", "FixtureRequest._fixturemanager")
    definitions = fixture_definitions(request, "held_fixture")
    assert [definition.argname for definition in definitions] == ["held_fixture"]
    assert fixture_definitions(request, "no_such_fixture") == ()
    function = wrapped_function(globals()["held_fixture"])
    assert isinstance(function, types.FunctionType), moved("pytest", "FixtureFunctionDefinition._get_wrapped_function")
    assert inspect.unwrap(definitions[-1].func) is inspect.unwrap(function)


@pytest.mark.parametrize("direct", [1])
def test_fixture_info(request: pytest.FixtureRequest, held_fixture: str, direct: int) -> None:
    """A test function's ``_fixtureinfo`` names its fixtures and direct parameters, with their definitions."""
    assert hasattr(request.node, "_fixtureinfo"), moved("pytest", "Function._fixtureinfo")
    info = fixture_info(request.node)
    assert {"held_fixture", "direct"} <= set(info.names_closure) and "direct" in info.name2fixturedefs


def test_stored_outcome_attribute() -> None:
    """pytest's unittest support keeps a body's outcome in the item's ``_excinfo``."""
    assert "_excinfo" in vars(pytest_unittest.TestCaseFunction), moved("pytest", "TestCaseFunction._excinfo")


def test_syrupy_session(pytestconfig: pytest.Config) -> None:
    """syrupy keeps its session as ``config._syrupy``, with the ``report`` and ``_collected_modules`` (this
    module among them) that the plugin reads, and the ``collect_items`` it calls."""
    session = getattr(pytestconfig, "_syrupy", None)
    assert session is not None, moved("syrupy", "config._syrupy")
    assert hasattr(session, "report"), moved("syrupy", "SnapshotSession.report")
    assert callable(getattr(session, "collect_items", None)), moved("syrupy", "SnapshotSession.collect_items")
    modules = collected_modules(pytestconfig)
    assert modules is not None, moved("syrupy", "SnapshotSession._collected_modules")
    assert any(module.endswith("test_pytest_compat.py") for module in modules)


@pytest.mark.parametrize("name", ["unused", "num_unused"])
def test_syrupy_report_caches(name: str) -> None:
    """The report's ``unused`` and ``num_unused`` are ``functools.cached_property`` values, which
    ``pytest_compat.set_unused`` replaces in the report's ``__dict__``."""
    value = inspect.getattr_static(SnapshotReport, name, None)
    assert isinstance(value, functools.cached_property), moved("syrupy", f"SnapshotReport.{name} (a cached_property)")


@pytest.mark.parametrize("name", ["_sanitize_filename", "_write_mode"])
def test_extension_overrides(name: str) -> None:
    """The names of syrupy's single-file extension that the baseline extension overrides."""
    assert name in vars(SingleFileSnapshotExtension), moved("syrupy", f"SingleFileSnapshotExtension.{name}")


def test_scheduler_override() -> None:
    """The method of pytest-xdist's ``loadscope`` scheduler that the recipe scheduler overrides."""
    assert "_split_scope" in vars(LoadScopeScheduling), moved("pytest-xdist", "LoadScopeScheduling._split_scope")
