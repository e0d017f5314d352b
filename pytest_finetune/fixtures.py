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
import os
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
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
    "mrpc_dataset",
    "tokenizer",
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
def mrpc_dataset(finetune_recipe: Recipe) -> datasets.DatasetDict:
    """The raw data: a ``DatasetDict`` with ``train`` and ``validation`` splits of
    ``sentence1``, ``sentence2``, ``label`` and ``idx``, from the recipe's Hub dataset,
    GLUE TSV folder or csv/json/jsonl/parquet files.
    """
    from .data import load_raw_dataset

    return load_raw_dataset(finetune_recipe.data_source, finetune_recipe.task_spec)


@pytest.fixture
def tokenizer(finetune_recipe: Recipe) -> PreTrainedTokenizerBase:
    """The recipe model's tokenizer (``AutoTokenizer.from_pretrained``)."""
    from .models import load_tokenizer

    return load_tokenizer(finetune_recipe)


@pytest.fixture
def tokenized_mrpc(mrpc_dataset: datasets.DatasetDict, tokenizer: PreTrainedTokenizerBase) -> datasets.DatasetDict:
    """``mrpc_dataset`` with each pair tokenized as ``tokenizer(sentence1, sentence2,
    truncation=True)`` (``Dataset.map``, batched, cached by ``datasets``); no padding
    here, the ``data_collator`` pads each batch.
    """

    def tokenize(batch: dict[str, list[Any]]) -> Any:
        return tokenizer(batch["sentence1"], batch["sentence2"], truncation=True)

    return mrpc_dataset.map(tokenize, batched=True)


@pytest.fixture
def data_collator(tokenizer: PreTrainedTokenizerBase) -> DataCollatorWithPadding:
    """Dynamic padding: ``DataCollatorWithPadding(tokenizer)`` pads each batch to its longest pair."""
    from transformers import DataCollatorWithPadding

    return DataCollatorWithPadding(tokenizer=tokenizer)


@pytest.fixture
def model(finetune_recipe: Recipe) -> PreTrainedModel:
    """A fresh ``AutoModelForSequenceClassification`` of the recipe's checkpoint for
    each test, with a new classification head (``num_labels=2``) seeded by the recipe's seed.
    """
    from .models import load_model

    return load_model(finetune_recipe)


@pytest.fixture
def compute_metrics(request: pytest.FixtureRequest, finetune_recipe: Recipe) -> MetricsFunction:
    """``compute_metrics`` for ``Trainer``: accuracy and F1 as GLUE MRPC scores them
    (offline), plus what ``pytest_finetune_metrics`` hooks add.
    """
    from .metrics import METRICS_HOOK, make_compute_metrics, metrics_dict

    ihook = request.node.ihook

    def extra_metrics(logits: np.ndarray, label_ids: np.ndarray) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        for metrics in ihook.pytest_finetune_metrics(recipe=finetune_recipe, logits=logits, label_ids=label_ids):
            extra.update(metrics_dict(metrics, METRICS_HOOK))
        return extra

    return make_compute_metrics(extra_metrics)


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
    returned = request.node.ihook.pytest_finetune_adjust_training_args(recipe=finetune_recipe, training_args=kwargs)
    for value in returned:
        if value is not None:
            raise FinetuneError(
                f"{request.node.nodeid}: a pytest_finetune_adjust_training_args hook returned "
                f"{type(value).__name__} {value!r}, which would be ignored; change its training_args "
                "dict in place (training_args['logging_steps'] = 10) and return None"
            )
    return build_training_arguments(kwargs)


@pytest.fixture
def trainer(
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

    return Trainer(
        model=model,
        args=training_args,
        train_dataset=tokenized_mrpc["train"],
        eval_dataset=tokenized_mrpc["validation"],
        data_collator=data_collator,
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
    )


@pytest.fixture
def finetune_result(request: pytest.FixtureRequest, finetune_recipe: Recipe) -> FinetuneResult:
    """The recipe fine-tuned and evaluated: ``.metrics`` (``accuracy``, ``f1``,
    ``eval_loss``), ``.history`` (one row per epoch), ``.predictions`` (validation
    logits and labels) and ``.train_runtime``.

    Trains once per session for each recipe and set of fixtures (with their parameters) and
    hooks whose trainer holds the same inputs (the result cache's: tokenized data, weights,
    training arguments, ...): tests that share them share one fine-tune, each getting its own
    copy of the result.
    Across sessions, a result stored in the result cache for the same inputs is served instead
    (``.from_cache`` is true). The test's ``trainer`` is trained only when this test's result was
    fine-tuned: not when it was served from the cache or shared with an earlier test (then
    ``trainer.evaluate()`` scores an untrained model; use ``.metrics``). Needs ``--finetune``;
    the test is skipped without it.
    """
    session = request.config.stash[SESSION_KEY]
    if not session.enabled:
        pytest.skip(SKIP_REASON)
    from .cache import cache_key

    trainer = request.getfixturevalue("trainer")
    serving = _serving_definitions(request)
    inputs = _cache_inputs(request, finetune_recipe, trainer, serving)
    key = (_training_key(request, finetune_recipe, serving), cache_key(inputs) if inputs is not None else None)
    if key not in session.results:
        session.results[key] = _fine_tune(request, finetune_recipe, trainer, inputs, serving)
    return copy.deepcopy(session.results[key])  # a test that edits its result cannot change another's


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
    from .metrics import predicted_classes
    from .progress import terminal_progress
    from .stats import bootstrap_intervals
    from .training import run_finetune, validation_ids

    session = request.config.stash[SESSION_KEY]
    cache = session.cache
    key = cache_key(inputs) if cache is not None and inputs is not None else None
    result = cache.load(key, recipe) if cache is not None and key is not None else None
    if result is None:
        progress = terminal_progress(request.config, label)
        callbacks = [progress] if progress else []
        result = run_finetune(
            trainer, recipe, callbacks, runtime_tuning=session.runtime_tuning, dropout_masks=session.dropout_masks
        )
        request.node.ihook.pytest_finetune_result(result=result)
        if cache is not None and key is not None and inputs is not None:
            cache.store(key, result, inputs)
    predictions = result.predictions
    intervals = bootstrap_intervals(
        predicted_classes(predictions.predictions), np.asarray(predictions.label_ids), session.bootstrap_resamples
    )
    return dataclasses.replace(result, example_ids=validation_ids(trainer), intervals=intervals)


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
    """The fixtures that decide what ``finetune_result`` trains: the training fixtures and every
    fixture they request, transitively, each name with the definitions that serve this test, least
    specific first. An override that requests its own name (``def model(model)``, possibly through
    another fixture) gets the definition it overrides, as in pytest. A name that no definition
    serves (``request``, a test's direct parameter) has none.
    """
    manager = request._fixturemanager  # no public API lists the definitions that serve a node
    definitions: dict[str, Sequence[Any]] = {}
    reached: dict[str, set[int]] = {}
    walked: set[tuple[str, tuple[str, ...]]] = set()
    # (name, the overridden names that request it, directly or not): they decide which definition it gets
    pending: list[tuple[str, tuple[str, ...]]] = [(name, ()) for name in _TRAINING_FIXTURES]
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
    """The parameters of this test's parametrized fixtures (and direct parameters) named in ``names``."""
    callspec = getattr(request.node, "callspec", None)
    params = callspec.params.items() if callspec else ()
    return sorted((name, repr(value)) for name, value in params if name in names)


def _cache_inputs(
    request: pytest.FixtureRequest, recipe: Recipe, trainer: Trainer, serving: dict[str, list[Any]]
) -> dict[str, Any] | None:
    """Everything that can change what ``trainer`` computes, for the result cache; ``None``
    when the datasets carry no ``datasets`` fingerprint (then nothing is cached).

    The tokenized splits' fingerprints cover the data rows and the tokenize function; the
    digest of the untrained weights covers whatever model the ``model`` fixture gives (new
    weights pushed under a Hub id, a ``conftest.py`` that loads or changes one); the
    source of the modules that define the fixtures deciding the training and the hook
    implementations covers a ``conftest.py`` edit, inside a fixture or not (a constant, a
    ``Trainer`` subclass). Parameters count only when they reach those fixtures: one whose
    ``repr`` changes every session (a function's) would otherwise never hit.
    """
    from .baselines import recipe_record
    from .cache import package_digest
    from .provenance import weights_digest
    from .training import run_environment

    session = request.config.stash[SESSION_KEY]
    fingerprints = {
        split: getattr(dataset, "_fingerprint", None)
        for split, dataset in (("train", trainer.train_dataset), ("validation", trainer.eval_dataset))
    }
    if not all(fingerprints.values()):
        return None
    code = {name: [_source(fixture_def.func) for fixture_def in fixture_defs] for name, fixture_defs in serving.items()}
    code.update(
        (hook.name, [_source(impl.function) for impl in hook.get_hookimpls()]) for hook in _result_hooks(request)
    )
    model_config = getattr(trainer.model, "config", None)
    config = {k: v for k, v in (model_config.to_dict() if model_config else {}).items() if k != "_name_or_path"}
    return {
        "plugin": package_digest(),
        "recipe": {
            k: v for k, v in recipe_record(recipe, request.config.rootpath).items() if k not in ("model", "data")
        },
        "training_arguments": _without_run_folder(trainer.args.to_dict(), str(trainer.args.output_dir)),
        "tokenized": fingerprints,
        "model": {
            "class": type(trainer.model).__qualname__,
            "config": config,
            "weights": weights_digest(trainer.model),
        },
        "collator": type(trainer.data_collator).__qualname__,
        "trainer": f"{type(trainer).__module__}.{type(trainer).__qualname__}",
        "params": _training_params(request, serving),
        "code": code,
        "environment": run_environment(trainer, session.dropout_masks),
    }


def _without_run_folder(arguments: dict[str, Any], output_dir: str) -> dict[str, Any]:
    """``arguments`` without those naming the run's output folder or a path inside it (``output_dir``,
    ``logging_dir``, a ``run_name`` taken from it): a new temporary folder every session."""
    inside = output_dir.rstrip(os.sep) + os.sep
    return {
        key: value
        for key, value in arguments.items()
        if not (isinstance(value, str) and (value == output_dir or value.startswith(inside)))
    }


def _source(function: Any) -> str:
    """``function``'s qualified name and the sha256 of the whole source file that defines it (what it
    uses from its own module counts; other modules are not followed); its name alone when no source is kept.
    A decorated function (``functools.wraps``) is the one it wraps."""
    import hashlib
    import inspect

    function = inspect.unwrap(function)
    name = f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', repr(function))}"
    try:
        file = inspect.getsourcefile(function)
        return f"{name} sha256:{hashlib.sha256(Path(file).read_bytes()).hexdigest()}" if file else name
    except (OSError, TypeError):  # defined where no source is kept: its name must do
        return name
