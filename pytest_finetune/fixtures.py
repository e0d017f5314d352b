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
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .errors import FinetuneError
from .key import cache_inputs, serving_definitions, training_key
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
    from .result import FinetuneResult


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
    serving = serving_definitions(request)
    inputs = cache_inputs(request, recipe, trainer, serving)
    if inputs is None:  # nothing shows that another test's trainer holds the same data
        _warn_not_cached(request)
        return _fine_tune(request, recipe, trainer, inputs, serving)
    key = (training_key(request, recipe, serving), cache_key(inputs))
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
    summarized. ``serving``: the fixture definitions that decide the training (``serving_definitions``)."""
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
                _trained_or_cached(request, seeded, again, cache_inputs(request, seeded, again, serving), label).metrics
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
            trainer, recipe, callbacks, runtime_tuning=session.runtime_tuning, dropout_masks=session.dropout_masks
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


#: The fixtures that decide which examples the trainer holds: where the test suite overrides one, the recipe's
#: data folder is not (or not all of) what was trained on.
_DATA_FIXTURES = ("finetune_dataset", "mrpc_dataset", "tokenized_dataset", "tokenized_mrpc", "trainer")


def _data_identities(request: pytest.FixtureRequest, trainer: Trainer) -> dict[str, Any]:
    """The ``validation_id`` of ``trainer``'s validation examples, and its ``trained_data`` where a fixture of the
    test suite gave it other examples than the recipe's data holds (see
    :class:`~pytest_finetune.result.FinetuneResult`): its splits by content, so that a file of the recipe's data
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
