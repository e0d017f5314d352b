"""Build ``TrainingArguments`` from a recipe, run a ``Trainer``, keep the result."""

from __future__ import annotations

import dataclasses
import json
import re
import types
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow.compute  # type: ignore[import-untyped]  # no stubs; pyproject.toml covers only datasets
from transformers import EvalPrediction, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback
from transformers.trainer_utils import PredictionOutput

from .compat import (
    evaluate_in_dataset_order,
    fused_adamw_training_args,
    installed_training_args,
    mean_loss_per_process,
    modern_training_args,
    sharing_accelerator_state,
    training_arguments,
)
from .data import FIXTURE_DATA_FIX, UNNAMED_ROWS, check_ids, check_labels, check_rows
from .distributed import start_cpu_process_group
from .dropout import dropout_masks_for, dropout_masks_from
from .errors import FinetuneError
from .metrics import COMPUTE_METRICS, checked_metrics, final_metrics
from .precision import PRECISION_ARGS, accelerator_available, detect_hardware, precision_training_args
from .provenance import environment
from .recipe import RECORDING_ARGS, Recipe
from .result import FinetuneResult
from .runtime import heap_frozen, tuned_runtime
from .tasks import Task


def training_arguments_kwargs(recipe: Recipe, output_dir: Path, precision: str) -> dict[str, Any]:
    """The keyword arguments of ``TrainingArguments`` for ``recipe``, computing in ``precision``
    (``finetune_precision``: see :mod:`pytest_finetune.precision`), with the fused AdamW
    where the installed versions would take the unfused one."""
    kwargs = {
        **installed_training_args(dict(recipe.training_args)),
        "seed": recipe.seed,
        "output_dir": str(output_dir),
        **device_training_args(),
    }
    hardware = detect_hardware(use_cpu=bool(kwargs.get("use_cpu")))
    return (
        kwargs
        | precision_training_args(precision, kwargs, hardware)
        | fused_adamw_training_args(kwargs, hardware.device)
    )


def device_training_args() -> dict[str, Any]:
    """``use_cpu=True`` where torch sees no accelerator, so the run computes on the CPU either way:
    ``TrainingArguments`` accepts bf16 on a CPU only with it, and with it transformers does not
    pin memory for a GPU there is not (torch warns at every ``DataLoader`` otherwise)."""
    return {} if accelerator_available() else {"use_cpu": True}


def build_training_arguments(kwargs: Mapping[str, Any], hook_set: Collection[str] = ()) -> TrainingArguments:
    """``TrainingArguments(**kwargs)``, its own checks turned into a :class:`FinetuneError` that names
    the ``pytest_finetune_adjust_training_args`` hook where the keywords it set (``hook_set``: added
    or changed) are named in transformers' error, else the recipe. A data-parallel run on the CPU starts its process
    group first, with the recipe's ``ddp_timeout`` (:func:`~pytest_finetune.distributed.start_cpu_process_group`)."""
    start_cpu_process_group(kwargs)
    try:
        return training_arguments(kwargs)
    except (TypeError, ValueError) as error:
        named = [key for key in sorted(hook_set) if re.search(rf"\b{re.escape(key)}\b", str(error))]
        if named:
            raise FinetuneError(
                f"transformers.TrainingArguments rejected {', '.join(named)}, which a "
                f"pytest_finetune_adjust_training_args hook set: {error}; change that hook"
            ) from None
        raise FinetuneError(
            f"transformers.TrainingArguments rejected the recipe's training arguments: {error}"
        ) from None


#: What a message calls the datasets ``finetune_result`` hands the trainer: where they come from.
TRAINER_DATA = "the trainer's data (the tokenized_mrpc fixture's, or what a trainer fixture gives)"


def validation_ids(trainer: Trainer) -> np.ndarray | None:
    """The ``idx`` of ``trainer``'s validation examples in row order, where the split has that column; ids
    that cannot name the examples a baseline lists (repeated, null, not integers) are a :class:`FinetuneError`."""
    dataset = trainer.eval_dataset
    if "idx" not in (getattr(dataset, "column_names", None) or ()):
        return None
    if isinstance(dataset, datasets.Dataset):
        check_ids(dataset, f"{TRAINER_DATA}, validation split", without_ids=UNNAMED_ROWS)
    return np.asarray(list(dataset["idx"]))  # type: ignore[index, arg-type]


#: Training arguments the plugin chooses for the machine (:func:`device_training_args`, ``finetune_precision``): a
#: recipe records them only as it sets them; the device and dtype a run computed in are in its environment.
MACHINE_ARGS = frozenset({"use_cpu", *PRECISION_ARGS})


def trained_recipe(recipe: Recipe, trainer: Trainer, precision: str) -> Recipe:
    """``recipe`` with the training arguments ``trainer`` holds that change what it computes, in 5.x spelling.

    Each field that differs from the ``TrainingArguments`` the plugin builds for ``recipe`` in ``precision`` (as
    the ``training_args`` fixture does before its hooks) replaces or joins the recipe's, whatever set it: a
    ``pytest_finetune_adjust_training_args`` hook's ``max_steps``, what a ``training_args`` or ``trainer`` fixture
    of a ``conftest.py`` holds; the trainer's seed is the recipe's ``seed``. So the result, its baseline, the
    result cache and the "recipe changed" check describe what was trained, field by field. Left out:
    :data:`~pytest_finetune.recipe.RECORDING_ARGS`, and :data:`MACHINE_ARGS`, which stay the recipe's.
    """
    held = trainer.args.to_dict()  # enums as their values, as a recipe holds them
    plugin_kwargs = training_arguments_kwargs(recipe, Path(str(trainer.args.output_dir)), precision)
    plugin = build_training_arguments(sharing_accelerator_state(plugin_kwargs)).to_dict()
    differing = modern_training_args({key: value for key, value in held.items() if plugin.get(key, ...) != value})
    changed = {key: _as_json(value) for key, value in differing.items() if key not in RECORDING_ARGS | MACHINE_ARGS}
    seed = changed.pop("seed", recipe.seed)
    if not changed and seed == recipe.seed:
        return recipe
    training_args = dict(sorted({**recipe.training_args, **changed}.items()))
    return dataclasses.replace(recipe, seed=seed, training_args=types.MappingProxyType(training_args))


def _as_json(value: Any) -> Any:
    """``value`` as a baseline reads it back (a tuple as a list; an object as its ``str``), so that
    the recipe of a result and that of its baseline compare equal."""
    return json.loads(json.dumps(value, default=str))


def run_finetune(
    trainer: Trainer,
    recipe: Recipe,
    callbacks: Sequence[TrainerCallback] = (),
    runtime_tuning: bool = True,
    dropout_masks: str = "auto",
    reported: datasets.Dataset | None = None,
) -> FinetuneResult:
    """Train (with ``callbacks`` added, e.g. progress, in place of transformers' log printer;
    under :func:`~pytest_finetune.runtime.tuned_runtime` unless ``runtime_tuning`` is false;
    dropout masks drawn as :mod:`pytest_finetune.dropout`'s setting ``dropout_masks`` says),
    then take the final metrics and logits on the validation split: from the evaluation at
    the last step where there was one (the seed's ``eval_strategy="epoch"``), else from one
    ``Trainer.predict``. Both see the same weights and data, so they give the same numbers. ``reported``: the
    task's reported split (MNLI's mismatched one), also scored (:func:`reported_metrics`).
    A model whose head has another number of labels than the task is refused before training."""
    validation = trainer.eval_dataset
    if validation is None or isinstance(validation, dict):
        raise FinetuneError(
            "the trainer needs one eval_dataset, the validation split (a conftest trainer fixture "
            "that sets none, or a dict of several, cannot be scored)"
        )
    check_num_labels(trainer, recipe.task_spec)
    check_trainer_data(trainer, recipe.task_spec)
    check_tokens_fit(trainer)
    if callbacks:
        trainer.remove_callback(PrinterCallback)  # its log dicts would repeat what progress shows
    for callback in callbacks:
        trainer.add_callback(callback)
    evaluate_in_dataset_order(trainer)
    mean_loss_per_process(trainer)
    environment = run_environment(trainer, dropout_masks)
    with (
        heap_frozen(),
        tuned_runtime(trainer.args.device.type, runtime_tuning),
        dropout_masks_from(environment["dropout_masks"]),
        _LastEvaluation(trainer) as last_evaluation,
    ):
        train_output = trainer.train()
    prediction = last_evaluation.at_final_step()
    if prediction is None:
        prediction = trainer.predict(validation, metric_key_prefix="eval")
    check_lined_up(prediction, validation)
    metrics = final_metrics(prediction.metrics or {})
    if reported is not None:
        metrics.update(reported_metrics(trainer, reported, recipe.task_spec))
    return FinetuneResult(
        recipe=recipe,
        metrics=metrics,
        history=epoch_history(trainer.state.log_history),
        predictions=prediction,
        train_runtime=float(train_output.metrics["train_runtime"]),
        environment=environment,
    )


def check_lined_up(prediction: PredictionOutput, validation: Any) -> None:
    """Fail where the evaluation's labels are not the validation split's, row for row: the per-example record (the
    paired test, the examples' ids) needs one prediction per example, in the split's order. A data-parallel
    evaluation pads each process's last batch with repeated examples; accelerate's ``gather_for_metrics``, which
    ``Trainer`` uses, drops them, and this is where a trainer that does not would show."""
    column = next(
        (name for name in ("label", "labels") if name in (getattr(validation, "column_names", None) or ())), None
    )
    if column is None or not isinstance(prediction.label_ids, np.ndarray):  # none, or several arrays of labels
        return
    scored, held = prediction.label_ids, np.asarray(list(validation[column]))
    if scored.shape != held.shape or not np.array_equal(scored, held.astype(scored.dtype)):
        raise FinetuneError(
            f"the evaluation scored {scored.shape[0]} rows for the {held.shape[0]} validation examples, and their "
            f"labels are not the split's in order: the per-example record would not line up with the examples; "
            "evaluate every example once, in order: dataloader_drop_last=True drops the last batch from the "
            "evaluation too, and an evaluation loop that gathers the processes' predictions must drop the repeated "
            "examples that pad the last batch (as transformers.Trainer's gather_for_metrics does)"
        )


def reported_metrics(trainer: Trainer, dataset: datasets.Dataset, task: Task) -> dict[str, float]:
    """``task``'s metrics of ``trainer``'s model on ``dataset``, its reported split, under the names
    :meth:`~pytest_finetune.tasks.Task.reported_metric` gives them (``accuracy_mismatched``): shown, never gated."""
    scores = final_metrics(trainer.predict(dataset, metric_key_prefix="eval").metrics or {})
    return {task.reported_metric(name): scores[name] for name in task.metrics if name in scores}


def check_num_labels(trainer: Trainer, task: Task) -> None:
    """Fail on a model whose classification head (its config's ``num_labels``, where it has one) has another
    number of outputs than ``task`` has labels: the metrics take the argmax of its logits."""
    num_labels = getattr(getattr(trainer.model, "config", None), "num_labels", None)
    if num_labels is not None and num_labels != task.num_labels:
        has = "is a regression (one output)" if task.is_regression else f"has {task.num_labels} labels"
        raise FinetuneError(
            f"the model's classification head has num_labels={num_labels}, but the task {task.name!r} "
            f"{has}; load the model with num_labels={task.num_labels} (from a checkpoint "
            "with another head: also ignore_mismatched_sizes=True)"
        )


def _trainer_splits(trainer: Trainer) -> Iterator[tuple[str, datasets.Dataset]]:
    """``trainer``'s train and validation splits, where they are ``datasets.Dataset`` (not lists of features)."""
    for split, dataset in (("train", trainer.train_dataset), ("validation", trainer.eval_dataset)):
        if isinstance(dataset, datasets.Dataset):
            yield split, dataset


def check_trainer_data(trainer: Trainer, task: Task) -> None:
    """Fail, as the data loaders do (:mod:`pytest_finetune.data`), on a split of ``trainer`` without rows or
    with labels (``label`` or ``labels``) that are not ``task``'s: a fixture's data is not loaded from files."""
    for split, dataset in _trainer_splits(trainer):
        check_rows(dataset, TRAINER_DATA, split, FIXTURE_DATA_FIX)
        column = next((name for name in ("label", "labels") if name in dataset.column_names), None)
        if column is not None:
            check_labels(dataset, TRAINER_DATA, split, task, column)


def check_tokens_fit(trainer: Trainer) -> None:
    """Fail on tokenized splits (their ``input_ids``) that ``trainer``'s model cannot embed: a token id beyond its
    input embeddings (a tokenizer of another checkpoint), or a sequence longer than its learned positions
    (``max_position_embeddings``: a tokenizer that does not cut the pairs to them)."""
    vocabulary, positions = _input_limits(trainer.model)
    for split, dataset in _trainer_splits(trainer):
        if "input_ids" not in dataset.column_names or not dataset.num_rows:
            continue
        input_ids = dataset.with_format("arrow")["input_ids"]  # the rows the split shows, without a copy
        largest = pyarrow.compute.max(pyarrow.compute.list_flatten(input_ids)).as_py()
        if vocabulary is not None and largest is not None and largest >= vocabulary:
            raise FinetuneError(
                f"the tokenizer ({_tokenizer_name(trainer)}) gives token id {largest} in the {split} split, but the "
                f"model's input embeddings hold {vocabulary} tokens (vocab_size={vocabulary}): tokenizer and model "
                "do not fit; use the tokenizer the model was trained with (the plugin's tokenizer fixture loads the "
                "checkpoint's own: where that one does not fit, the checkpoint's config.json has the wrong "
                "vocab_size), or grow the model's embeddings in a model fixture: "
                "model.resize_token_embeddings(len(tokenizer))"
            )
        longest = pyarrow.compute.max(pyarrow.compute.list_value_length(input_ids)).as_py()
        if positions is not None and longest is not None and longest > positions:
            raise FinetuneError(
                f"the {split} split holds a pair of {longest} tokens, but the model takes at most {positions} "
                f"(max_position_embeddings={positions}): the tokenizer ({_tokenizer_name(trainer)}) does not cut "
                f"the pairs to fit; tokenize with truncation=True, max_length={positions} in a tokenized_mrpc fixture, "
                f"or set tokenizer.model_max_length = {positions} in a tokenizer fixture"
            )


def _input_limits(model: Any) -> tuple[int | None, int | None]:
    """The number of token embeddings of ``model`` and of its learned positions; ``None`` where it has no such limit
    (no single embedding matrix; relative positions, which fit any length)."""
    try:
        vocabulary = getattr(model.get_input_embeddings(), "num_embeddings", None)
    except (AttributeError, NotImplementedError):
        vocabulary = None
    config = getattr(model, "config", None)
    absolute = getattr(config, "position_embedding_type", "absolute") == "absolute"
    positions = getattr(config, "max_position_embeddings", None) if absolute else None
    return vocabulary, positions if getattr(config, "position_biased_input", True) else None


def _tokenizer_name(trainer: Trainer) -> str:
    """``trainer``'s tokenizer for a message: its class, size and (where known) checkpoint."""
    tokenizer = trainer.processing_class
    if tokenizer is None:
        return "none given to the trainer"
    size = f" of {len(tokenizer)} tokens" if hasattr(tokenizer, "__len__") else ""
    source = getattr(tokenizer, "name_or_path", "")
    return f"{type(tokenizer).__name__}{size}" + (f" from {source!r}" if source else "")


class _LastEvaluation:
    """While training, keeps the logits of ``trainer``'s evaluations (by wrapping its
    ``compute_metrics``, which then also checks that it returns a dict of numbers) with the step each was made at.

    Not used where the last evaluation may not score the final weights on the whole split:
    ``load_best_model_at_end`` (the weights are swapped after it) and ``batch_eval_metrics``
    (``compute_metrics`` sees one batch at a time).
    """

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.original = trainer.compute_metrics
        self.seen: tuple[int, EvalPrediction] | None = None

    def __enter__(self) -> _LastEvaluation:
        args, compute_metrics = self.trainer.args, self.original
        if compute_metrics is None or args.load_best_model_at_end or getattr(args, "batch_eval_metrics", False):
            return self

        def keeping(eval_prediction: EvalPrediction, *more: Any, **keywords: Any) -> dict[str, float]:
            self.seen = (self.trainer.state.global_step, eval_prediction)
            return dict(checked_metrics(compute_metrics(eval_prediction, *more, **keywords), COMPUTE_METRICS))

        self.trainer.compute_metrics = keeping
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.trainer.compute_metrics = self.original

    def at_final_step(self) -> PredictionOutput | None:
        """The evaluation of the trained weights, if the trainer evaluated after its last step."""
        state = self.trainer.state
        evaluations = [entry for entry in state.log_history if "eval_loss" in entry]
        if self.seen is None or not evaluations or not self.seen[0] == evaluations[-1]["step"] == state.global_step:
            return None
        metrics = {key: value for key, value in evaluations[-1].items() if key.startswith("eval_")}
        return PredictionOutput(predictions=self.seen[1].predictions, label_ids=self.seen[1].label_ids, metrics=metrics)


def run_environment(trainer: Trainer, dropout_masks: str) -> dict[str, Any]:
    """The library versions, device, dtype and source of dropout masks (for the setting
    ``dropout_masks``) ``trainer`` computes with, and the processes it trains on (:func:`scale_out`)."""
    device = trainer.args.device.type
    described = environment(
        device=device, dtype=_dtype(trainer), dropout_masks=dropout_masks_for(dropout_masks, device)
    )
    return described | scale_out(trainer.args)


def scale_out(args: TrainingArguments) -> dict[str, int]:
    """The processes a data-parallel run trains on (``world_size``: 1 without one), and the examples each optimizer
    step averages over (``effective_batch``: per device, times accumulation steps and processes)."""
    world_size = args.world_size
    return {
        "world_size": world_size,
        "effective_batch": args.train_batch_size * args.gradient_accumulation_steps * world_size,
    }


#: The dtype each of accelerate's mixed precisions computes in.
_MIXED_PRECISION_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}


def _dtype(trainer: Trainer) -> str:
    """The arithmetic precision: the mixed precision ``trainer``'s accelerator applies, else the model's
    parameter dtype. Not the arguments' ``fp16``: on a CPU accelerate ignores it and computes in fp32."""
    accelerator = trainer.accelerator
    if accelerator.native_amp and accelerator.mixed_precision in _MIXED_PRECISION_DTYPES:
        return _MIXED_PRECISION_DTYPES[accelerator.mixed_precision]
    return str(getattr(trainer.model, "dtype", None)).removeprefix("torch.")


def epoch_history(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The seed's table from ``trainer.state.log_history``: one row per evaluation."""
    rows: list[dict[str, Any]] = []
    training_loss = None
    for entry in log_history:
        if "loss" in entry:
            training_loss = entry["loss"]
        elif "eval_loss" in entry:
            row = {
                "epoch": entry["epoch"],
                "step": int(entry["step"]),
                "training_loss": training_loss,
                "validation_loss": entry["eval_loss"],
            }
            row.update((name, value) for name, value in final_metrics(entry).items() if name != "eval_loss")
            rows.append(row)
            training_loss = None
    return rows
