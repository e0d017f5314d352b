"""pytest hook implementations: each a few lines that call the modules that do the work."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from . import hookspecs
from .errors import FinetuneError
from .fixtures import (  # noqa: F401  (fixtures are registered by being in this module)
    compute_metrics,
    data_collator,
    finetune_recipe,
    finetune_result,
    model,
    mrpc_dataset,
    tokenized_mrpc,
    tokenizer,
    trainer,
    training_args,
)
from .options import MARKER, MARKER_HELP, SKIP_REASON, add_options, marker_layer
from .session import SESSION_KEY, FinetuneSession


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    try:
        config.stash[SESSION_KEY] = FinetuneSession.from_config(config)
    except FinetuneError as error:
        raise pytest.UsageError(str(error)) from None


@pytest.hookimpl(wrapper=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: Any) -> Generator[None, Any, Any]:
    """Check each new test's ``finetune`` marker: a mistake is a collection error."""
    collected = yield
    items = collected if isinstance(collected, list) else [collected]
    for item in items:
        if isinstance(item, pytest.Item) and item.get_closest_marker(MARKER):
            try:
                marker_layer(item)
            except FinetuneError as error:
                raise collector.CollectError(str(error)) from None
    return collected


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.stash[SESSION_KEY].enabled:
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if item.get_closest_marker(MARKER):
            item.add_marker(skip)


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
