"""The work behind the fixtures: a test's fine-tune (trained, shared within the session or served from the
result cache, with its uncertainty and calibration), the metrics its hooks add, and the notes of their messages."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import difflib
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .baselines import BaselineSettings
from .cache import EntryBusy, cache_key, cache_warning
from .calibration import SeedRunOver, calibration_seeds, reseeded_trainer, seed_item_seed
from .distributed import from_main_process, out_of_step_stop
from .errors import FinetuneError
from .key import (
    PLUGIN_FIXTURES,
    cache_inputs,
    fixture_named,
    overriding_file,
    overriding_fixture,
    serving_definitions,
    training_key,
)
from .provenance import examples_identity
from .recipe import Recipe
from .result import FinetuneResult
from .session import SESSION_KEY
from .stats import bootstrap_intervals, calibration_record

if TYPE_CHECKING:
    import datasets
    import numpy as np
    from transformers import PreTrainedModel, Trainer, TrainingArguments


def result_for(request: pytest.FixtureRequest, finetune_recipe: Recipe) -> FinetuneResult:
    """The test's ``finetune_result``: its trainer fine-tuned once per session for the same inputs (each test gets
    its own copy), or served from the result cache."""
    from .training import trained_recipe  # transformers: imported once a test fine-tunes

    session = request.config.stash[SESSION_KEY]
    trainer = request.getfixturevalue("trainer")
    recipe = trained_recipe(finetune_recipe, trainer, session.precision)
    _add_hook_metrics(request, recipe, trainer)
    serving = serving_definitions(request)
    inputs = cache_inputs(request, recipe, trainer, serving)
    seed = seed_item_seed(request.node, recipe.seed)
    if seed is not None:  # a calibration's seed item (pytest-xdist): its seed into the result cache, nothing more
        if inputs is not None and session.cache is not None:
            fresh_model = _fresh_models(serving["model"], trainer)
            with contextlib.suppress(EntryBusy):  # another process is fine-tuning it
                _seed_run(request, recipe, trainer, serving, fresh_model, seed, wait=False)
        raise SeedRunOver
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


def training_arguments_for(request: pytest.FixtureRequest, recipe: Recipe, output_dir: Path) -> TrainingArguments:
    """The test's ``training_args``: the recipe's, writing to ``output_dir``, as the
    ``pytest_finetune_adjust_training_args`` hooks that apply to the test leave them."""
    from .training import build_training_arguments, training_arguments_kwargs  # transformers

    precision = request.config.stash[SESSION_KEY].precision
    kwargs = training_arguments_kwargs(recipe, output_dir, precision)
    recipe_kwargs = dict(kwargs)
    returned = request.node.ihook.pytest_finetune_adjust_training_args(recipe=recipe, training_args=kwargs)
    for value in returned:
        if value is not None:
            raise FinetuneError(
                f"{request.node.nodeid}: a pytest_finetune_adjust_training_args hook returned "
                f"{type(value).__name__} {value!r}, which would be ignored; change its training_args "
                "dict in place (training_args['logging_steps'] = 10) and return None"
            )
    hook_set = [key for key, value in kwargs.items() if key not in recipe_kwargs or recipe_kwargs[key] != value]
    return build_training_arguments(kwargs, hook_set)


def baseline_settings(request: pytest.FixtureRequest) -> BaselineSettings:
    """What the test's ``finetune_snapshot`` compares with: its tolerances and the session's settings."""
    session = request.config.stash[SESSION_KEY]
    return BaselineSettings(
        tolerances=session.tolerances_for(request.node),
        alpha=session.alpha,
        strict_recipe=session.strict_recipe,
        update=session.update,
        root=session.baseline_dir,
        rootdir=request.config.rootpath,
        invocation_dir=request.config.invocation_params.dir,
        collapse_guard=session.collapse_guard_for(request.node),
        warn_only=session.warn_only,
        hardware_classes=session.hardware_classes,
    )


def hook_metrics(request: pytest.FixtureRequest, recipe: Recipe) -> Callable[[np.ndarray, np.ndarray], dict[str, Any]]:
    """The metrics the ``pytest_finetune_metrics`` hooks that apply to the test add for ``(logits, label_ids)``."""
    from .metrics import METRICS_HOOK, metrics_dict

    ihook = request.node.ihook

    def extra_metrics(logits: np.ndarray, label_ids: np.ndarray) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        for metrics in ihook.pytest_finetune_metrics(recipe=recipe, logits=logits, label_ids=label_ids):
            extra.update(metrics_dict(metrics, METRICS_HOOK))
        return extra

    return extra_metrics


def _add_hook_metrics(request: pytest.FixtureRequest, recipe: Recipe, trainer: Trainer) -> None:
    """Make ``trainer``'s ``compute_metrics`` also return what the ``pytest_finetune_metrics`` hooks that apply
    to the test add, where it does not already: a ``compute_metrics`` (or ``trainer``) fixture of a
    ``conftest.py`` replaces the plugin's, which calls them."""
    from .metrics import WithExtraMetrics

    compute_metrics = trainer.compute_metrics
    if compute_metrics is None or isinstance(compute_metrics, WithExtraMetrics):
        return
    if request.node.ihook.pytest_finetune_metrics.get_hookimpls():
        trainer.compute_metrics = WithExtraMetrics(compute_metrics, hook_metrics(request, recipe))


def hub_note(config: pytest.Config, source: str) -> str:
    """The end of the message for a model or data value that the Hub does not give, where it may be a mistyped
    folder (a name without ``/``): the folders a relative path is looked for in (the ini file's, the rootdir, the
    directory pytest started in) hold no folder of that name; the folders there of a similar name, if any."""
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
    message = (
        f"the datasets of {request.node.nodeid}'s trainer have no `datasets` fingerprint (they are not "
        "datasets.Dataset splits): the results of such trainers are neither cached nor shared with other tests, "
        "each such test fine-tunes anew; return datasets.Dataset splits from tokenized_mrpc to have them cached"
    )
    warnings.warn(cache_warning(message), stacklevel=2)


def _fine_tune(
    request: pytest.FixtureRequest,
    recipe: Recipe,
    trainer: Trainer,
    inputs: dict[str, Any] | None,
    serving: dict[str, list[Any]],
) -> FinetuneResult:
    """The test's ``trainer`` fine-tuned (or its result from the cache, by ``inputs``), with the
    uncertainty of its metrics; with ``--finetune-calibrate N``, the same for N - 1 more seeds,
    summarized. ``serving``: the fixture definitions that decide the training (``serving_definitions``).

    The seeds that no other process is fine-tuning come first (under pytest-xdist, workers running the
    calibration's seed items take the others), then the entries of the others, waiting for their locks."""
    session = request.config.stash[SESSION_KEY]
    seeds = calibration_seeds(recipe.seed, session.calibrate) if session.calibrate else []
    fresh_model = _fresh_models(serving["model"], trainer) if seeds else None  # copied before training
    result = _trained_or_cached(request, recipe, trainer, inputs, request.node.nodeid)
    if fresh_model is not None:
        runs: dict[int, FinetuneResult] = {}
        for wait in (False, True):  # the seeds no other process is fine-tuning first, then waiting for the others
            for seed in seeds[1:]:
                if seed not in runs:
                    with contextlib.suppress(EntryBusy):
                        runs[seed] = _seed_run(request, recipe, trainer, serving, fresh_model, seed, wait=wait)
        metrics = [result.metrics, *(runs[seed].metrics for seed in seeds[1:])]
        result = dataclasses.replace(result, calibration=calibration_record(seeds, metrics))
    return result


def _seed_run(
    request: pytest.FixtureRequest,
    recipe: Recipe,
    trainer: Trainer,
    serving: dict[str, list[Any]],
    fresh_model: Callable[[Recipe], PreTrainedModel],
    seed: int,
    *,
    wait: bool,
) -> FinetuneResult:
    """Seed ``seed`` of the calibration of ``trainer``: a trainer like it for a fresh model, fine-tuned with that seed
    or served from the result cache (see :func:`_stored_run`)."""
    seeded = dataclasses.replace(recipe, seed=seed)
    again = reseeded_trainer(trainer, seed, fresh_model(seeded))
    label = f"{request.node.nodeid} (seed {seed})"
    return _stored_run(request, seeded, again, cache_inputs(request, seeded, again, serving), label, wait=wait)


def _trained_or_cached(
    request: pytest.FixtureRequest, recipe: Recipe, trainer: Trainer, inputs: dict[str, Any] | None, label: str
) -> FinetuneResult:
    """The result from the result cache (keyed by ``inputs``; ``None``: not cached), or a fine-tune
    of ``trainer`` (then stored), with the validation examples' ids and the bootstrap intervals of
    its metrics."""
    import numpy as np

    from .metrics import predicted_values
    from .training import validation_ids  # transformers, like training

    session = request.config.stash[SESSION_KEY]
    example_ids = validation_ids(trainer)  # checked before a fine-tune: a baseline names examples by them
    result = _stored_run(request, recipe, trainer, inputs, label)
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


def _stored_run(
    request: pytest.FixtureRequest,
    recipe: Recipe,
    trainer: Trainer,
    inputs: dict[str, Any] | None,
    label: str,
    *,
    wait: bool = True,
) -> FinetuneResult:
    """The result from the result cache (keyed by ``inputs``; ``None``: not cached), or a fine-tune of ``trainer``
    (then stored), its progress shown as ``label``'s. Without ``wait``, :class:`~pytest_finetune.cache.EntryBusy`
    where another process holds the entry's lock (see :meth:`~pytest_finetune.cache.ResultCache.training`)."""
    from .progress import terminal_progress  # transformers, like training
    from .training import run_finetune

    session = request.config.stash[SESSION_KEY]
    cache = session.cache
    key = cache_key(inputs) if cache is not None and inputs is not None else None
    progress = terminal_progress(request.config, label)

    def waiting(lock: Path) -> None:
        if progress is not None:
            progress.write(f"{label}: waiting for another process fine-tuning the same recipe (lock {lock})\n")

    with cache.training(key, waiting, wait=wait) if cache is not None and key is not None else contextlib.nullcontext():
        result = cache.load(key, recipe) if cache is not None and key is not None else None
        try:
            result = _from_main_process(result, recipe)  # every process trains, or none does
            trained = result is None
            if trained:
                callbacks = [progress] if progress else []
                result = run_finetune(
                    trainer,
                    recipe,
                    callbacks,
                    runtime_tuning=session.runtime_tuning,
                    dropout_masks=session.dropout_masks,
                    reported=_reported_split(request, recipe, trainer),
                )
        except Exception:
            # a data-parallel run's processes may be out of step now: its next collective could only wait
            request.session.shouldstop = out_of_step_stop() or request.session.shouldstop
            raise
        if trained:
            request.node.ihook.pytest_finetune_result(result=result)
            if cache is not None and key is not None and inputs is not None:
                cache.store(key, result, inputs)
    return result


def _from_main_process(result: FinetuneResult | None, recipe: Recipe) -> FinetuneResult | None:
    """Rank 0's ``result`` (a result cache hit, or ``None``) on every process of a data-parallel run (see
    :func:`~pytest_finetune.distributed.from_main_process`), with this process's ``recipe``: the other fields
    travel, the recipe (its read-only mapping does not pickle) stays."""
    fields = None if result is None else {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
    shared = from_main_process(fields and {name: value for name, value in fields.items() if name != "recipe"})
    return None if shared is None else FinetuneResult(recipe=recipe, **shared)


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
    :class:`~pytest_finetune.result.FinetuneResult`): its splits by content, so that a file of the recipe's data
    folder that this test never reads does not change what its baseline records."""
    splits = {"train": trainer.train_dataset, "validation": trainer.eval_dataset}
    identities: dict[str, Any] = {"validation_id": examples_identity({"validation": trainer.eval_dataset})}
    overridden = next((name for name in _DATA_FIXTURES if overriding_file(request, name) is not None), None)
    data_id = examples_identity(splits) if overridden else None
    if overridden is None or data_id is None or data_id == _recipe_data_identity(request):
        return identities
    identities["trained_data"] = (fixture_named(request, overridden).removeprefix("the "), data_id)
    return identities


def _recipe_data_identity(request: pytest.FixtureRequest) -> str | None:
    """:func:`~pytest_finetune.provenance.examples_identity` of the plugin's ``mrpc_dataset`` (the recipe's data as
    loaded), where it served the test; ``None`` where a fixture of the test suite overrides it (or
    ``finetune_dataset``, the same fixture)."""
    overridden = overriding_fixture(request, "mrpc_dataset", "finetune_dataset")
    if overridden is not None or "mrpc_dataset" not in request.fixturenames:
        return None
    raw = request.getfixturevalue("mrpc_dataset")
    return examples_identity({split: raw[split] for split in ("train", "validation") if split in raw})


def _fresh_models(model_definitions: list[Any], trainer: Trainer) -> Callable[[Recipe], PreTrainedModel]:
    """Makes an untrained model for a calibration seed: the plugin's ``model`` fixture loads the
    checkpoint with that seed; a ``model`` fixture of the test suite is copied before training
    (its classification head then stays the same for every seed)."""
    from .models import load_model

    if model_definitions and model_definitions[-1].func.__module__ == PLUGIN_FIXTURES:
        return load_model
    untrained: PreTrainedModel = copy.deepcopy(trainer.model)  # type: ignore[assignment]
    return lambda recipe: copy.deepcopy(untrained)
