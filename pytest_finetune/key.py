"""What decides a fine-tune beyond its recipe: which tests share one (:func:`training_key`) and what the result
cache knows it by (:func:`cache_inputs`), from the fixture definitions and hooks that serve a test."""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Collection, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest

from .baselines import recipe_record
from .provenance import dataset_digest, file_digest, package_digest, tokenizer_identity, weights_digest
from .pytest_compat import fixture_definitions, wrapped_function
from .session import SESSION_KEY

if TYPE_CHECKING:
    import datasets
    from transformers import Trainer

    from .recipe import Recipe


#: The module of the plugin's own fixtures (a definition of another module overrides one).
PLUGIN_FIXTURES = f"{__package__}.fixtures"
# Fixtures whose definitions decide what ``finetune_result`` trains.
TRAINING_FIXTURES = (
    "finetune_recipe",
    "finetune_dataset",
    "mrpc_dataset",
    "tokenizer",
    "tokenized_dataset",
    "tokenized_mrpc",
    "data_collator",
    "model",
    "compute_metrics",
    "training_args",
    "trainer",
)


def serving_definitions(request: pytest.FixtureRequest) -> dict[str, list[Any]]:
    """The fixtures that decide what ``finetune_result`` trains: the training fixtures, the test's
    fixtures that can change what they hold (:func:`_trainer_changers`), and every fixture these
    request, transitively, each name with the definitions that serve this test, least
    specific first. An override that requests its own name (``def model(model)``, possibly through
    another fixture) gets the definition it overrides, as in pytest. A name that no definition
    serves (``request``, a test's direct parameter) has none.
    """
    definitions: dict[str, Sequence[Any]] = {}
    reached: dict[str, set[int]] = {}
    walked: set[tuple[str, tuple[str, ...]]] = set()
    # (name, the overridden names that request it, directly or not): they decide which definition it gets
    roots = (*TRAINING_FIXTURES, *_trainer_changers(request))
    pending: list[tuple[str, tuple[str, ...]]] = [(name, ()) for name in roots]
    while pending:
        name, overriders = pending.pop()
        if name not in definitions:
            definitions[name] = fixture_definitions(request, name)
            reached[name] = set()
        index = len(definitions[name]) - 1 - overriders.count(name)
        if index < 0 or (name, overriders) in walked:
            continue
        walked.add((name, overriders))
        reached[name].add(index)
        below = tuple(sorted((*overriders, name))) if len(definitions[name]) > 1 else overriders
        pending.extend((argname, below) for argname in definitions[name][index].argnames)
    return {name: [definitions[name][index] for index in sorted(reached[name])] for name in sorted(definitions)}


#: The training fixtures whose values a fixture can change in place (the recipe is frozen).
_CHANGEABLE_FIXTURES = frozenset(TRAINING_FIXTURES) - {"finetune_recipe"}


def _trainer_changers(request: pytest.FixtureRequest) -> list[str]:
    """The test's other fixtures (autouse, ``usefixtures``, requested) that request a training fixture
    other than the recipe, directly or through other fixtures, not through ``finetune_result``: set up
    before ``finetune_result`` trains, they may change what the trainer holds (add a callback, replace
    its optimizer or ``compute_metrics``), so they decide the training too."""
    reaches: dict[str, bool] = {}

    def reaches_training(name: str) -> bool:
        if name not in reaches:
            reaches[name] = False  # a cycle (an override requesting its own name) adds nothing
            argnames = {arg for fixture_def in fixture_definitions(request, name) for arg in fixture_def.argnames}
            reaches[name] = bool(argnames & _CHANGEABLE_FIXTURES) or any(
                reaches_training(arg) for arg in argnames if arg != "finetune_result"
            )
        return reaches[name]

    return [
        name
        for name in request.fixturenames
        if name not in TRAINING_FIXTURES and name != "finetune_result" and reaches_training(name)
    ]


def _result_hooks(request: pytest.FixtureRequest) -> list[Any]:
    """The hooks whose implementations change what a fine-tune computes."""
    hooks = request.node.ihook
    return [hooks.pytest_finetune_adjust_training_args, hooks.pytest_finetune_metrics]


def training_key(request: pytest.FixtureRequest, recipe: Recipe, serving: dict[str, list[Any]]) -> tuple[Any, ...]:
    """What decides a fine-tune beyond the recipe, so tests share one only when it is the same:

    - where the fixtures that decide the training (``serving_definitions``) are defined for
      this test (a ``conftest.py`` that overrides ``tokenized_mrpc``, or a fixture it requests,
      gets its own training);
    - the parameters of those fixtures (a parametrized ``max_length`` that ``tokenized_mrpc``
      requests trains once per value), and of no other fixture;
    - which ``pytest_finetune_adjust_training_args`` and ``pytest_finetune_metrics``
      implementations apply to the test (conftest hooks are per directory).
    """
    definitions = [
        f"{name}={fixture_def.func.__module__}.{fixture_def.func.__qualname__}@{fixture_def.baseid}"
        for name, fixture_defs in serving.items()
        for fixture_def in fixture_defs
    ]
    implementations = [
        (hook.name, tuple(impl.plugin_name for impl in hook.get_hookimpls())) for hook in _result_hooks(request)
    ]
    return recipe.fingerprint, tuple(definitions), tuple(_training_params(request, serving)), tuple(implementations)


def _training_params(request: pytest.FixtureRequest, names: Collection[str]) -> list[tuple[str, str]]:
    """The parameters of this test's parametrized fixtures (and direct parameters) named in ``names``, by
    ``repr`` without memory addresses (a function's, ``<function lower at 0x7f...>``, changes every session)."""
    callspec = getattr(request.node, "callspec", None)
    params = callspec.params.items() if callspec else ()
    return sorted((name, _MEMORY_ADDRESS.sub("", repr(value))) for name, value in params if name in names)


#: Where a ``repr`` names a memory address (``object.__repr__``, functions, classes' instances).
_MEMORY_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def cache_inputs(
    request: pytest.FixtureRequest, recipe: Recipe, trainer: Trainer, serving: dict[str, list[Any]]
) -> dict[str, Any] | None:
    """Everything that can change what ``trainer`` computes, for the result cache; ``None``
    when the datasets carry no ``datasets`` fingerprint (then nothing is cached).

    Each is known by content, never by path, so that the same checkpoint or data at another path (a
    copy, a fresh clone of the project with its ``.pytest_cache``) is a hit: the tokenized splits by
    their rows and format (:func:`_split_identity`), the tokenizers of the trainer and its collator by
    :func:`~pytest_finetune.provenance.tokenizer_identity`; the
    digest of the untrained weights covers whatever model the ``model`` fixture gives (new
    weights pushed under a Hub id, a ``conftest.py`` that loads or changes one); the
    source of the modules that define the fixtures deciding the training and the hook
    implementations covers a ``conftest.py`` edit, inside a fixture or not (a constant, a
    ``Trainer`` subclass; also the conftest that registers a fixture or hook defined elsewhere), and
    the test's fixtures that change the trainer (:func:`_trainer_changers`);
    the trainer's callbacks by class and source file. Parameters count only when they reach those
    fixtures, by their ``repr`` less memory addresses (a function's would otherwise never hit).
    """
    from .training import run_environment  # transformers: imported once a fine-tune is keyed

    session = request.config.stash[SESSION_KEY]
    splits = {"train": trainer.train_dataset, "validation": trainer.eval_dataset}
    if not all(getattr(dataset, "_fingerprint", None) for dataset in splits.values()):
        return None
    modules = _fixture_modules(request)
    code = {
        name: [_source(fixture_def.func, _registering_module(fixture_def, modules)) for fixture_def in fixture_defs]
        for name, fixture_defs in serving.items()
    }
    code.update(
        (hook.name, [_source(impl.function, impl.plugin) for impl in hook.get_hookimpls()])
        for hook in _result_hooks(request)
    )
    tokenizer = tokenizer_identity(trainer.processing_class)
    padding = getattr(trainer.data_collator, "tokenizer", None)  # DataCollatorWithPadding's pads with its own
    model_config = getattr(trainer.model, "config", None)
    config = {k: v for k, v in (model_config.to_dict() if model_config else {}).items() if k != "_name_or_path"}
    return {
        "plugin": package_digest(),
        "recipe": {
            k: v for k, v in recipe_record(recipe, request.config.rootpath).items() if k not in ("model", "data")
        },
        "training_arguments": _without_run_folder(trainer.args.to_dict(), str(trainer.args.output_dir)),
        "tokenized": {split: _split_identity(dataset) for split, dataset in splits.items()},
        "tokenizer": tokenizer,
        "model": {
            "class": type(trainer.model).__qualname__,
            "config": config,
            "weights": weights_digest(trainer.model),
        },
        "collator": type(trainer.data_collator).__qualname__,
        "collator_tokenizer": tokenizer if padding is trainer.processing_class else tokenizer_identity(padding),
        "trainer": f"{type(trainer).__module__}.{type(trainer).__qualname__}",
        "callbacks": [_source(type(callback)) for callback in trainer.callback_handler.callbacks],
        "params": _training_params(request, serving),
        "code": code,
        "environment": run_environment(trainer, session.dropout_masks),
    }


def _split_identity(dataset: datasets.Dataset) -> dict[str, Any]:
    """A split of the trainer by content: its rows (:func:`~pytest_finetune.provenance.dataset_digest`) and
    the format it is read in, a transform (``set_transform``) by its source (:func:`_source`)."""
    shown = dict(dataset.format)
    kwargs = {key: _source(value) if callable(value) else value for key, value in shown.pop("format_kwargs").items()}
    return {"rows": dataset_digest(dataset), "format": {**shown, "format_kwargs": kwargs}}


def _without_run_folder(arguments: dict[str, Any], output_dir: str) -> dict[str, Any]:
    """``arguments`` without those naming the run's output folder or a path inside it (``output_dir``,
    ``logging_dir``, a ``run_name`` taken from it): a new temporary folder every session."""
    inside = output_dir.rstrip(os.sep) + os.sep
    return {
        key: value
        for key, value in arguments.items()
        if not (isinstance(value, str) and (value == output_dir or value.startswith(inside)))
    }


def _fixture_modules(request: pytest.FixtureRequest) -> list[ModuleType]:
    """The modules that can register a fixture for this test: its test module, conftests and plugins."""
    test_module = getattr(request.node, "module", None)
    plugins = [plugin for plugin in request.config.pluginmanager.get_plugins() if isinstance(plugin, ModuleType)]
    return [test_module, *plugins] if isinstance(test_module, ModuleType) else plugins


def _registering_module(fixture_def: Any, modules: list[ModuleType]) -> ModuleType | None:
    """The module among ``modules`` that holds ``fixture_def``'s fixture under its name (the conftest
    that calls a factory of another module, ``compute_metrics = metrics_fixture(...)``), if any."""
    function = inspect.unwrap(fixture_def.func)
    for module in modules:
        held = vars(module).get(fixture_def.argname)
        if held is not None and inspect.unwrap(wrapped_function(held)) is function:
            return module
    return None


def _source(function: Any, registrar: object = None) -> str:
    """``function``'s qualified name and the sha256 of the whole source file that defines it (what it
    uses from its own module counts; other modules are not followed), and of the module ``registrar``
    (the conftest that registers a fixture or hook defined elsewhere) where that is another file; its
    name alone when no source is kept. A decorated function (``functools.wraps``) is the one it wraps."""
    function = inspect.unwrap(function)
    name = f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', repr(function))}"
    try:
        file = inspect.getsourcefile(function)
    except TypeError:  # defined where no source is kept: its name must do
        file = None
    described = f"{name} {file_digest(file)}" if file else name
    registered = getattr(registrar, "__file__", None) if isinstance(registrar, ModuleType) else None
    if registered and (not file or os.path.realpath(registered) != os.path.realpath(file)):
        described += f" registered in {getattr(registrar, '__name__', '?')} {file_digest(registered)}"
    return described


def overriding_file(request: pytest.FixtureRequest, name: str) -> Path | None:
    """The file of the definition of fixture ``name`` that serves the test, where that is not this plugin's
    (a ``conftest.py`` that overrides it); ``None`` for the plugin's own."""
    definitions = fixture_definitions(request, name)
    function = inspect.unwrap(definitions[-1].func) if definitions else None
    if function is None or function.__module__ == PLUGIN_FIXTURES:
        return None
    return Path(inspect.getsourcefile(function) or "?")


def overriding_fixture(request: pytest.FixtureRequest, *names: str) -> str | None:
    """The first of the fixtures ``names`` (one fixture under two names) that a ``conftest.py`` overrides."""
    return next((name for name in names if overriding_file(request, name) is not None), None)


def fixture_named(request: pytest.FixtureRequest, name: str) -> str:
    """The fixture ``name`` for a message: ``the NAME fixture``, and the file of the definition that serves the
    test where that is not this plugin's (``of conftest.py``)."""
    file = overriding_file(request, name)
    if file is None:
        return f"the {name} fixture"
    shown = file.relative_to(request.config.rootpath) if file.is_relative_to(request.config.rootpath) else file
    return f"the {name} fixture of {shown}"
