"""The public fixtures: the seed recipe, one ingredient each.

Each fixture builds one thing from the fixtures before it, so a downstream
``conftest.py`` can replace any one of them (say ``tokenized_mrpc``, to test a new
preprocessing step) and everything after it picks up the replacement.

torch, transformers and datasets are imported inside the fixtures that use them, so
that a pytest run that fine-tunes nothing does not pay for importing them.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
import re
import warnings
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest

from .errors import FinetuneError
from .options import SKIP_REASON
from .recipe import Recipe
from .session import SESSION_KEY

if TYPE_CHECKING:
    import datasets
    import numpy as np
    from syrupy.assertion import SnapshotAssertion
    from transformers import DataCollatorWithPadding, PreTrainedModel, Trainer, TrainingArguments
    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

    from .metrics import MetricsFunction
    from .training import FinetuneResult

# Fixtures whose definitions decide what ``finetune_result`` trains.
_TRAINING_FIXTURES = (
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


@pytest.fixture
def finetune_recipe(request: pytest.FixtureRequest) -> Recipe:
    """The resolved fine-tuning recipe of this test (a frozen ``Recipe``).

    Built from the seed recipe (bert-base-uncased, GLUE MRPC, lr 5e-5, batch 8,
    3 epochs, seed 42), then the ini file, environment, command line, the test's
    ``finetune`` marker and the ``pytest_finetune_adjust_recipe`` hook.
    """
    return request.config.stash[SESSION_KEY].recipe_for(request.node)


@pytest.fixture
def finetune_dataset(request: pytest.FixtureRequest, finetune_recipe: Recipe) -> datasets.DatasetDict:
    """The raw data: a ``DatasetDict`` with ``train`` and ``validation`` splits of the task's
    columns (MRPC: ``sentence1``, ``sentence2``, ``label`` and ``idx``), from the recipe's Hub
    dataset, GLUE TSV folder or csv/json/jsonl/parquet files.
    """
    from .data import load_raw_dataset

    source = finetune_recipe.data_source
    return load_raw_dataset(source, finetune_recipe.task_spec, functools.partial(_hub_note, request.config, source))


@pytest.fixture
def mrpc_dataset(finetune_dataset: datasets.DatasetDict) -> datasets.DatasetDict:
    """``finetune_dataset`` under the seed recipe's name. ``tokenized_dataset`` reads the data through
    this name, so that a ``conftest.py`` may override either name and the run uses its data."""
    return finetune_dataset


@pytest.fixture
def tokenizer(request: pytest.FixtureRequest, finetune_recipe: Recipe) -> PreTrainedTokenizerBase:
    """The recipe model's tokenizer (``AutoTokenizer.from_pretrained``)."""
    from .models import load_tokenizer

    return load_tokenizer(finetune_recipe, functools.partial(_hub_note, request.config, finetune_recipe.model))


@pytest.fixture
def tokenized_dataset(
    request: pytest.FixtureRequest,
    finetune_recipe: Recipe,
    mrpc_dataset: datasets.DatasetDict,
    tokenizer: PreTrainedTokenizerBase,
) -> datasets.DatasetDict:
    """The data (``finetune_dataset``, or ``mrpc_dataset``: the same fixture) with each example tokenized as
    ``tokenizer(sentence1, sentence2, truncation=True)`` (the task's text columns: one for a single-text
    task such as SST-2; ``Dataset.map``, batched, cached by ``datasets``); no padding here, the
    ``data_collator`` pads each batch. Data a ``conftest.py`` gives is checked as data files are
    (splits, rows, columns, labels, ids) first.
    """
    from .data import check_fixture_data

    overridden = _overridden(request, "mrpc_dataset", "finetune_dataset")
    if overridden is not None:  # the plugin's own was checked as it loaded
        check_fixture_data(mrpc_dataset, _fixture_named(request, overridden), finetune_recipe.task_spec)

    def tokenize(batch: dict[str, list[Any]]) -> Any:
        return tokenizer(*(batch[column] for column in finetune_recipe.task_spec.text_columns), truncation=True)

    return mrpc_dataset.map(tokenize, batched=True)


@pytest.fixture
def tokenized_mrpc(tokenized_dataset: datasets.DatasetDict) -> datasets.DatasetDict:
    """``tokenized_dataset`` under the seed recipe's name. The ``trainer`` reads the tokenized data through
    this name, so that a ``conftest.py`` may override either name and the run trains on its data."""
    return tokenized_dataset


@pytest.fixture
def data_collator(tokenizer: PreTrainedTokenizerBase) -> DataCollatorWithPadding:
    """Dynamic padding: ``DataCollatorWithPadding(tokenizer)`` pads each batch to its longest pair."""
    from transformers import DataCollatorWithPadding

    return DataCollatorWithPadding(tokenizer=tokenizer)


@pytest.fixture
def model(request: pytest.FixtureRequest, finetune_recipe: Recipe) -> PreTrainedModel:
    """A fresh ``AutoModelForSequenceClassification`` of the recipe's checkpoint for
    each test, with a new classification head for the task (MRPC: ``num_labels=2``; a regression: one output)
    seeded by the recipe's seed.
    """
    from .models import load_model

    return load_model(finetune_recipe, functools.partial(_hub_note, request.config, finetune_recipe.model))


@pytest.fixture
def compute_metrics(request: pytest.FixtureRequest, finetune_recipe: Recipe) -> MetricsFunction:
    """``compute_metrics`` for ``Trainer``: the task's GLUE metrics as GLUE scores them (offline; MRPC:
    accuracy and F1), plus what ``pytest_finetune_metrics`` hooks add.
    """
    from .metrics import make_compute_metrics

    return make_compute_metrics(_hook_metrics(request, finetune_recipe), finetune_recipe.task_spec)


def _hook_metrics(request: pytest.FixtureRequest, recipe: Recipe) -> Callable[[np.ndarray, np.ndarray], dict[str, Any]]:
    """The metrics the ``pytest_finetune_metrics`` hooks that apply to the test add for ``(logits, label_ids)``."""
    from .metrics import METRICS_HOOK, metrics_dict

    ihook = request.node.ihook

    def extra_metrics(logits: np.ndarray, label_ids: np.ndarray) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        for metrics in ihook.pytest_finetune_metrics(recipe=recipe, logits=logits, label_ids=label_ids):
            extra.update(metrics_dict(metrics, METRICS_HOOK))
        return extra

    return extra_metrics


@pytest.fixture
def training_args(
    request: pytest.FixtureRequest, finetune_recipe: Recipe, tmp_path_factory: pytest.TempPathFactory
) -> TrainingArguments:
    """``TrainingArguments`` of the recipe (seed settings: eval each epoch, lr 5e-5,
    batch 8, 3 epochs; no checkpoints saved, no trackers), writing under a new folder of
    pytest's base temporary directory (``trainer0``, ``trainer1``, ...);
    ``pytest_finetune_adjust_training_args`` hooks may change them.
    """
    from .training import build_training_arguments, training_arguments_kwargs

    # Not ``tmp_path``: after a Ctrl-C during training (a test's setup) its teardown raises
    # KeyError (pytest's bug), which turns a clean interruption into a traceback.
    precision = request.config.stash[SESSION_KEY].precision
    kwargs = training_arguments_kwargs(finetune_recipe, tmp_path_factory.mktemp("trainer"), precision)
    recipe_kwargs = dict(kwargs)
    returned = request.node.ihook.pytest_finetune_adjust_training_args(recipe=finetune_recipe, training_args=kwargs)
    for value in returned:
        if value is not None:
            raise FinetuneError(
                f"{request.node.nodeid}: a pytest_finetune_adjust_training_args hook returned "
                f"{type(value).__name__} {value!r}, which would be ignored; change its training_args "
                "dict in place (training_args['logging_steps'] = 10) and return None"
            )
    hook_set = [key for key, value in kwargs.items() if key not in recipe_kwargs or recipe_kwargs[key] != value]
    return build_training_arguments(kwargs, hook_set)


@pytest.fixture
def trainer(
    request: pytest.FixtureRequest,
    model: PreTrainedModel,
    training_args: TrainingArguments,
    tokenized_mrpc: datasets.DatasetDict,
    data_collator: DataCollatorWithPadding,
    tokenizer: PreTrainedTokenizerBase,
    compute_metrics: MetricsFunction,
) -> Trainer:
    """A ``transformers.Trainer`` configured with the fixtures above, not yet trained. Requesting
    ``finetune_result`` trains it only when this test's result is fine-tuned: when the result is
    served from the result cache (``finetune_result.from_cache``) or shared with an earlier test
    of the session, this trainer stays untrained (``trainer.state.global_step == 0``) and
    ``trainer.evaluate()`` scores the untrained model.
    """
    from transformers import Trainer

    from .data import split_of

    where = _fixture_named(request, _overridden(request, "tokenized_mrpc", "tokenized_dataset") or "tokenized_mrpc")
    return Trainer(
        model=model,
        args=training_args,
        train_dataset=split_of(tokenized_mrpc, where, "train"),
        eval_dataset=split_of(tokenized_mrpc, where, "validation"),
        data_collator=data_collator,
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
    )


@pytest.fixture
def finetune_result(request: pytest.FixtureRequest, finetune_recipe: Recipe) -> FinetuneResult:
    """The recipe fine-tuned and evaluated, a ``FinetuneResult``; needs ``--finetune`` (without it the test is skipped).

    Its attributes:

    - ``.metrics`` (``accuracy``, ``f1``, ``eval_loss``, what ``pytest_finetune_metrics`` adds);
    - ``.history`` (one row per evaluation), ``.predictions`` (validation logits and labels),
      ``.train_runtime``;
    - ``.recipe`` (the resolved recipe, its training arguments as the trainer holds them, whatever set them: a
      ``pytest_finetune_adjust_training_args`` hook, a ``training_args`` or ``trainer`` fixture of a
      ``conftest.py``; see :func:`~pytest_finetune.training.trained_recipe`), ``.environment`` (library
      versions, device, dtype, dropout masks), ``.intervals`` (95 % bootstrap intervals of accuracy and F1);
    - ``.from_cache``: served from the result cache rather than fine-tuned in this session;
    - ``.shared_from``: the node id of the earlier test of this session whose fine-tune (or cache
      hit) this result shares, ``None`` for that test itself.

    Trains once per session for each recipe and set of fixtures (with their parameters, and the test's
    own fixtures that request a training fixture, which may change the trainer) and hooks whose trainer
    holds the same inputs (the result cache's: tokenized data, weights, training arguments, callbacks,
    ...): tests that share them share one fine-tune, each getting its own copy of the result. A trainer
    whose datasets have no ``datasets`` fingerprint (lists of features) is fine-tuned for each test, and
    its result is not cached.
    Across sessions, a result stored in the result cache for the same inputs is served instead
    (``.from_cache`` is true). The test's ``trainer`` is trained only when this test's result was
    fine-tuned: not when it was served from the cache or shared with an earlier test (then
    ``trainer.evaluate()`` scores an untrained model; use ``.metrics``).
    """
    session = request.config.stash[SESSION_KEY]
    if not session.enabled:
        pytest.skip(SKIP_REASON)
    from .cache import cache_key
    from .training import trained_recipe

    trainer = request.getfixturevalue("trainer")
    recipe = trained_recipe(finetune_recipe, trainer, session.precision)
    _add_hook_metrics(request, recipe, trainer)
    serving = _serving_definitions(request)
    inputs = _cache_inputs(request, recipe, trainer, serving)
    if inputs is None:  # nothing shows that another test's trainer holds the same data
        _warn_not_cached(request)
        return _fine_tune(request, recipe, trainer, inputs, serving)
    key = (_training_key(request, recipe, serving), cache_key(inputs))
    shared = session.results.get(key)
    if shared is None:
        result = _fine_tune(request, recipe, trainer, inputs, serving)
        session.results[key] = dataclasses.replace(result, shared_from=request.node.nodeid)
        shared = result
    return copy.deepcopy(shared)  # a test that edits its result cannot change another's


def _add_hook_metrics(request: pytest.FixtureRequest, recipe: Recipe, trainer: Trainer) -> None:
    """Make ``trainer``'s ``compute_metrics`` also return what the ``pytest_finetune_metrics`` hooks that apply
    to the test add, where it does not already: a ``compute_metrics`` (or ``trainer``) fixture of a
    ``conftest.py`` replaces the plugin's, which calls them."""
    from .metrics import WithExtraMetrics

    compute_metrics = trainer.compute_metrics
    if compute_metrics is None or isinstance(compute_metrics, WithExtraMetrics):
        return
    if request.node.ihook.pytest_finetune_metrics.get_hookimpls():
        trainer.compute_metrics = WithExtraMetrics(compute_metrics, _hook_metrics(request, recipe))


def _overriding_file(request: pytest.FixtureRequest, name: str) -> Path | None:
    """The file of the definition of fixture ``name`` that serves the test, where that is not this plugin's
    (a ``conftest.py`` that overrides it); ``None`` for the plugin's own."""
    import inspect

    definitions = request._fixturemanager.getfixturedefs(name, request.node) or ()
    function = inspect.unwrap(definitions[-1].func) if definitions else None
    if function is None or function.__module__ == __name__:
        return None
    return Path(inspect.getsourcefile(function) or "?")


def _overridden(request: pytest.FixtureRequest, *names: str) -> str | None:
    """The first of the fixtures ``names`` (one fixture under two names) that a ``conftest.py`` overrides."""
    return next((name for name in names if _overriding_file(request, name) is not None), None)


def _fixture_named(request: pytest.FixtureRequest, name: str) -> str:
    """The fixture ``name`` for a message: ``the NAME fixture``, and the file of the definition that serves the
    test where that is not this plugin's (``of conftest.py``)."""
    file = _overriding_file(request, name)
    if file is None:
        return f"the {name} fixture"
    shown = file.relative_to(request.config.rootpath) if file.is_relative_to(request.config.rootpath) else file
    return f"the {name} fixture of {shown}"


def _hub_note(config: pytest.Config, source: str) -> str:
    """The end of the message for a model or data value that the Hub does not give, where it may be a mistyped
    folder (a name without ``/``): the folders a relative path is looked for in (the ini file's, the rootdir, the
    directory pytest started in) hold no folder of that name; the folders there of a similar name, if any."""
    import difflib

    if "/" in source:
        return ""
    ini_folder = config.inipath.parent if config.inipath else None
    folders = list(
        dict.fromkeys(folder for folder in (ini_folder, config.rootpath, config.invocation_params.dir) if folder)
    )
    try:
        beside = sorted(
            {entry.name for folder in folders if folder.is_dir() for entry in folder.iterdir() if entry.is_dir()}
        )
    except OSError:  # a folder that cannot be listed: no suggestion
        beside = []
    close = difflib.get_close_matches(source, beside, n=3)
    similar = f" (there is {' and '.join(repr(name) for name in close)}: a typo?)" if close else ""
    places = " or ".join(map(str, folders))
    return f"; nor is there a folder {source!r} in {places}, where a relative path is looked for{similar}"


#: Set once the session has warned that results without ``datasets`` fingerprints are not cached.
_WARNED_NOT_CACHED = pytest.StashKey[bool]()


def _warn_not_cached(request: pytest.FixtureRequest) -> None:
    """Warn, once per session, that a test's result is neither cached nor shared: its trainer's
    datasets have no ``datasets`` fingerprint (lists of features, a torch dataset)."""
    if request.config.stash.get(_WARNED_NOT_CACHED, False):
        return
    request.config.stash[_WARNED_NOT_CACHED] = True
    from .cache import cache_warning

    message = (
        f"the datasets of {request.node.nodeid}'s trainer have no `datasets` fingerprint (they are not "
        "datasets.Dataset splits): the results of such trainers are neither cached nor shared with other tests, "
        "each such test fine-tunes anew; return datasets.Dataset splits from tokenized_mrpc to have them cached"
    )
    warnings.warn(cache_warning(message), stacklevel=2)


@pytest.fixture
def finetune_snapshot(request: pytest.FixtureRequest, snapshot: SnapshotAssertion) -> SnapshotAssertion:
    """This test's baseline, compared within tolerance: ``assert result == finetune_snapshot``
    with a ``FinetuneResult`` or a dict of metrics (``trainer.evaluate()``'s, say).

    Stored as JSON under ``baselines/`` (ini ``finetune_baseline_dir``), one file per test;
    ``--snapshot-update`` records and refreshes it. A ``finetune``-marked test is compared
    this way automatically after its body.
    """
    from .baselines import BaselineExtension, BaselineSettings

    session = request.config.stash[SESSION_KEY]
    settings = BaselineSettings(
        tolerances=session.tolerances_for(request.node),
        alpha=session.alpha,
        strict_recipe=session.strict_recipe,
        update=session.update,
        root=session.baseline_dir,
        rootdir=request.config.rootpath,
        invocation_dir=request.config.invocation_params.dir,
    )
    return snapshot.use_extension(BaselineExtension.configured(settings))


def _fine_tune(
    request: pytest.FixtureRequest,
    recipe: Recipe,
    trainer: Trainer,
    inputs: dict[str, Any] | None,
    serving: dict[str, list[Any]],
) -> FinetuneResult:
    """The test's ``trainer`` fine-tuned (or its result from the cache, by ``inputs``), with the
    uncertainty of its metrics; with ``--finetune-calibrate N``, the same for N - 1 more seeds,
    summarized. ``serving``: the fixture definitions that decide the training (``_serving_definitions``)."""
    from .calibration import calibration_seeds, reseeded_trainer
    from .stats import calibration_record

    session = request.config.stash[SESSION_KEY]
    seeds = calibration_seeds(recipe.seed, session.calibrate) if session.calibrate else []
    fresh_model = _fresh_models(serving["model"], trainer) if seeds else None  # copied before training
    result = _trained_or_cached(request, recipe, trainer, inputs, request.node.nodeid)
    if fresh_model is not None:
        runs = [result.metrics]
        for seed in seeds[1:]:
            seeded = dataclasses.replace(recipe, seed=seed)
            again = reseeded_trainer(trainer, seed, fresh_model(seeded))
            label = f"{request.node.nodeid} (seed {seed})"
            runs.append(
                _trained_or_cached(
                    request, seeded, again, _cache_inputs(request, seeded, again, serving), label
                ).metrics
            )
        result = dataclasses.replace(result, calibration=calibration_record(seeds, runs))
    return result


def _trained_or_cached(
    request: pytest.FixtureRequest, recipe: Recipe, trainer: Trainer, inputs: dict[str, Any] | None, label: str
) -> FinetuneResult:
    """The result from the result cache (keyed by ``inputs``; ``None``: not cached), or a fine-tune
    of ``trainer`` (then stored), with the validation examples' ids and the bootstrap intervals of
    its metrics."""
    import numpy as np

    from .cache import cache_key
    from .metrics import predicted_values
    from .progress import terminal_progress
    from .stats import bootstrap_intervals
    from .training import run_finetune, validation_ids

    session = request.config.stash[SESSION_KEY]
    example_ids = validation_ids(trainer)  # checked before a fine-tune: a baseline names examples by them
    cache = session.cache
    key = cache_key(inputs) if cache is not None and inputs is not None else None
    result = cache.load(key, recipe) if cache is not None and key is not None else None
    if result is None:
        progress = terminal_progress(request.config, label)
        callbacks = [progress] if progress else []
        result = run_finetune(
            trainer,
            recipe,
            callbacks,
            runtime_tuning=session.runtime_tuning,
            dropout_masks=session.dropout_masks,
            reported=_reported_split(request, recipe, trainer),
        )
        request.node.ihook.pytest_finetune_result(result=result)
        if cache is not None and key is not None and inputs is not None:
            cache.store(key, result, inputs)
    predictions = result.predictions
    task = recipe.task_spec
    intervals = bootstrap_intervals(
        predicted_values(task, predictions.predictions),
        np.asarray(predictions.label_ids),
        session.bootstrap_resamples,
        task,
    )
    return dataclasses.replace(
        result, example_ids=example_ids, intervals=intervals, **_data_identities(request, trainer)
    )


def _reported_split(request: pytest.FixtureRequest, recipe: Recipe, trainer: Trainer) -> datasets.Dataset | None:
    """The tokenized data's split that the task reports besides its validation split (MNLI's
    ``validation_mismatched``), where the data has it and the trainer scores that data's validation split."""
    split = recipe.task_spec.reported_split
    if split is None or "tokenized_mrpc" not in request.fixturenames:
        return None
    tokenized = request.getfixturevalue("tokenized_mrpc")
    if split not in tokenized or trainer.eval_dataset is not tokenized.get("validation"):
        return None
    return tokenized[split]


#: The fixtures that decide which examples the trainer holds: where the test suite overrides one, the recipe's
#: data folder is not (or not all of) what was trained on.
_DATA_FIXTURES = ("finetune_dataset", "mrpc_dataset", "tokenized_dataset", "tokenized_mrpc", "trainer")


def _data_identities(request: pytest.FixtureRequest, trainer: Trainer) -> dict[str, Any]:
    """The ``validation_id`` of ``trainer``'s validation examples, and its ``trained_data`` where a fixture of the
    test suite gave it other examples than the recipe's data holds (see
    :class:`~pytest_finetune.training.FinetuneResult`): its splits by content, so that a file of the recipe's data
    folder that this test never reads does not change what its baseline records."""
    from .provenance import examples_identity

    splits = {"train": trainer.train_dataset, "validation": trainer.eval_dataset}
    identities: dict[str, Any] = {"validation_id": examples_identity({"validation": trainer.eval_dataset})}
    overridden = next((name for name in _DATA_FIXTURES if _overriding_file(request, name) is not None), None)
    data_id = examples_identity(splits) if overridden else None
    if overridden is None or data_id is None or data_id == _recipe_data_identity(request):
        return identities
    identities["trained_data"] = (_fixture_named(request, overridden).removeprefix("the "), data_id)
    return identities


def _recipe_data_identity(request: pytest.FixtureRequest) -> str | None:
    """:func:`~pytest_finetune.provenance.examples_identity` of the plugin's ``mrpc_dataset`` (the recipe's data as
    loaded), where it served the test; ``None`` where a fixture of the test suite overrides it (or
    ``finetune_dataset``, the same fixture)."""
    from .provenance import examples_identity

    overridden = _overridden(request, "mrpc_dataset", "finetune_dataset")
    if overridden is not None or "mrpc_dataset" not in request.fixturenames:
        return None
    raw = request.getfixturevalue("mrpc_dataset")
    return examples_identity({split: raw[split] for split in ("train", "validation") if split in raw})


def _fresh_models(model_definitions: list[Any], trainer: Trainer) -> Callable[[Recipe], PreTrainedModel]:
    """Makes an untrained model for a calibration seed: the plugin's ``model`` fixture loads the
    checkpoint with that seed; a ``model`` fixture of the test suite is copied before training
    (its classification head then stays the same for every seed)."""
    from .models import load_model

    if model_definitions and model_definitions[-1].func.__module__ == __name__:
        return load_model
    untrained: PreTrainedModel = copy.deepcopy(trainer.model)  # type: ignore[assignment]
    return lambda recipe: copy.deepcopy(untrained)


def _serving_definitions(request: pytest.FixtureRequest) -> dict[str, list[Any]]:
    """The fixtures that decide what ``finetune_result`` trains: the training fixtures, the test's
    fixtures that can change what they hold (:func:`_trainer_changers`), and every fixture these
    request, transitively, each name with the definitions that serve this test, least
    specific first. An override that requests its own name (``def model(model)``, possibly through
    another fixture) gets the definition it overrides, as in pytest. A name that no definition
    serves (``request``, a test's direct parameter) has none.
    """
    manager = request._fixturemanager  # no public API lists the definitions that serve a node
    definitions: dict[str, Sequence[Any]] = {}
    reached: dict[str, set[int]] = {}
    walked: set[tuple[str, tuple[str, ...]]] = set()
    # (name, the overridden names that request it, directly or not): they decide which definition it gets
    roots = (*_TRAINING_FIXTURES, *_trainer_changers(request))
    pending: list[tuple[str, tuple[str, ...]]] = [(name, ()) for name in roots]
    while pending:
        name, overriders = pending.pop()
        if name not in definitions:
            definitions[name] = manager.getfixturedefs(name, request.node) or ()
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
_CHANGEABLE_FIXTURES = frozenset(_TRAINING_FIXTURES) - {"finetune_recipe"}


def _trainer_changers(request: pytest.FixtureRequest) -> list[str]:
    """The test's other fixtures (autouse, ``usefixtures``, requested) that request a training fixture
    other than the recipe, directly or through other fixtures, not through ``finetune_result``: set up
    before ``finetune_result`` trains, they may change what the trainer holds (add a callback, replace
    its optimizer or ``compute_metrics``), so they decide the training too."""
    manager = request._fixturemanager
    reaches: dict[str, bool] = {}

    def reaches_training(name: str) -> bool:
        if name not in reaches:
            reaches[name] = False  # a cycle (an override requesting its own name) adds nothing
            argnames = {
                arg for fixture_def in manager.getfixturedefs(name, request.node) or () for arg in fixture_def.argnames
            }
            reaches[name] = bool(argnames & _CHANGEABLE_FIXTURES) or any(
                reaches_training(arg) for arg in argnames if arg != "finetune_result"
            )
        return reaches[name]

    return [
        name
        for name in request.fixturenames
        if name not in _TRAINING_FIXTURES and name != "finetune_result" and reaches_training(name)
    ]


def _result_hooks(request: pytest.FixtureRequest) -> list[Any]:
    """The hooks whose implementations change what a fine-tune computes."""
    hooks = request.node.ihook
    return [hooks.pytest_finetune_adjust_training_args, hooks.pytest_finetune_metrics]


def _training_key(request: pytest.FixtureRequest, recipe: Recipe, serving: dict[str, list[Any]]) -> tuple[Any, ...]:
    """What decides a fine-tune beyond the recipe, so tests share one only when it is the same:

    - where the fixtures that decide the training (``_serving_definitions``) are defined for
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


def _cache_inputs(
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
    from .baselines import recipe_record
    from .cache import package_digest
    from .provenance import tokenizer_identity, weights_digest
    from .training import run_environment

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
    from .provenance import dataset_digest

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
    import inspect

    function = inspect.unwrap(fixture_def.func)
    for module in modules:
        held = vars(module).get(fixture_def.argname)
        wrapped = getattr(held, "_get_wrapped_function", None)  # pytest >= 8.4: a FixtureFunctionDefinition
        if held is not None and inspect.unwrap(wrapped() if callable(wrapped) else held) is function:
            return module
    return None


def _source(function: Any, registrar: object = None) -> str:
    """``function``'s qualified name and the sha256 of the whole source file that defines it (what it
    uses from its own module counts; other modules are not followed), and of the module ``registrar``
    (the conftest that registers a fixture or hook defined elsewhere) where that is another file; its
    name alone when no source is kept. A decorated function (``functools.wraps``) is the one it wraps."""
    import inspect

    function = inspect.unwrap(function)
    name = f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', repr(function))}"
    try:
        file = inspect.getsourcefile(function)
    except TypeError:  # defined where no source is kept: its name must do
        file = None
    described = f"{name} {_file_digest(file)}" if file else name
    registered = getattr(registrar, "__file__", None) if isinstance(registrar, ModuleType) else None
    if registered and (not file or os.path.realpath(registered) != os.path.realpath(file)):
        described += f" registered in {getattr(registrar, '__name__', '?')} {_file_digest(registered)}"
    return described


def _file_digest(file: str) -> str:
    """``sha256:`` and the hex digest of ``file``'s bytes; ``unreadable`` when it cannot be read."""
    import hashlib

    try:
        return f"sha256:{hashlib.sha256(Path(file).read_bytes()).hexdigest()}"
    except OSError:
        return "unreadable"
