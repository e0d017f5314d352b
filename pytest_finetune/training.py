"""Build ``TrainingArguments`` from a recipe, run a ``Trainer``, keep the result."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from transformers import EvalPrediction, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback
from transformers.trainer_utils import PredictionOutput

from .compat import (
    evaluate_in_dataset_order,
    fused_adamw_training_args,
    installed_training_args,
    training_arguments,
)
from .dropout import dropout_masks_for, dropout_masks_from
from .errors import FinetuneError
from .metrics import COMPUTE_METRICS, checked_metrics, final_metrics, predicted_classes
from .precision import accelerator_available, detect_hardware, precision_training_args
from .provenance import environment
from .recipe import Recipe, Task
from .runtime import tuned_runtime


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
    or changed) are named in transformers' error, else the recipe."""
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


@dataclasses.dataclass(frozen=True)
class FinetuneResult:
    """What one fine-tune produced.

    - ``metrics``: the final evaluation on the validation split: ``accuracy``, ``f1``,
      ``eval_loss`` and any metric added by the ``pytest_finetune_metrics`` hook;
    - ``history``: one row per evaluation (per epoch in the seed recipe) with
      ``epoch``, ``training_loss``, ``validation_loss``, ``accuracy``, ``f1``, ...;
      ``training_loss`` is ``None`` where none was logged since the last row;
    - ``predictions``: a ``PredictionOutput`` on the validation split, in the split's row
      order (``.predictions`` holds the logits, ``.label_ids`` the labels): the last
      evaluation's, or ``Trainer.predict``'s where the last step was not evaluated;
    - ``train_runtime``: seconds spent in ``Trainer.train``;
    - ``environment``: library versions, device, dtype and the source of dropout masks (see
      :func:`provenance.environment`);
    - ``from_cache``: whether it was read from the result cache rather than trained in this session;
    - ``example_ids``: the validation split's ``idx`` column, in its row order (``None`` without one);
    - ``intervals``: 95 % bootstrap intervals of ``accuracy`` and ``f1`` over the validation examples;
    - ``calibration``: with ``--finetune-calibrate``, the seeds and each metric's spread over them;
    - ``shared_from``: the node id of the test whose fine-tune (or cache hit) this test's result shares
      within the session; ``None`` for that test itself.
    """

    recipe: Recipe
    metrics: dict[str, float]
    history: list[dict[str, Any]]
    predictions: PredictionOutput
    train_runtime: float
    environment: dict[str, Any]
    from_cache: bool = False
    example_ids: np.ndarray | None = None
    intervals: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    calibration: dict[str, Any] | None = None
    shared_from: str | None = None

    @property
    def wrong_examples(self) -> list[int] | None:
        """The ``idx`` of each validation example this run classified wrongly (``None`` without ids)."""
        labels = np.asarray(self.predictions.label_ids)
        if self.example_ids is None or len(self.example_ids) != len(labels):
            return None
        wrong = predicted_classes(self.predictions.predictions) != labels
        return sorted(int(idx) for idx in self.example_ids[wrong])


def validation_ids(trainer: Trainer) -> np.ndarray | None:
    """The ``idx`` of ``trainer``'s validation examples in row order, where the split has that column."""
    dataset = trainer.eval_dataset
    if "idx" not in (getattr(dataset, "column_names", None) or ()):
        return None
    return np.asarray(list(dataset["idx"]))  # type: ignore[index, arg-type]


def run_finetune(
    trainer: Trainer,
    recipe: Recipe,
    callbacks: Sequence[TrainerCallback] = (),
    runtime_tuning: bool = True,
    dropout_masks: str = "auto",
) -> FinetuneResult:
    """Train (with ``callbacks`` added, e.g. progress, in place of transformers' log printer;
    under :func:`~pytest_finetune.runtime.tuned_runtime` unless ``runtime_tuning`` is false;
    dropout masks drawn as :mod:`pytest_finetune.dropout`'s setting ``dropout_masks`` says),
    then take the final metrics and logits on the validation split: from the evaluation at
    the last step where there was one (the seed's ``eval_strategy="epoch"``), else from one
    ``Trainer.predict``. Both see the same weights and data, so they give the same numbers.
    A model whose head has another number of labels than the task is refused before training."""
    validation = trainer.eval_dataset
    if validation is None or isinstance(validation, dict):
        raise FinetuneError(
            "the trainer needs one eval_dataset, the validation split (a conftest trainer fixture "
            "that sets none, or a dict of several, cannot be scored)"
        )
    check_num_labels(trainer, recipe.task_spec)
    if callbacks:
        trainer.remove_callback(PrinterCallback)  # its log dicts would repeat what progress shows
    for callback in callbacks:
        trainer.add_callback(callback)
    evaluate_in_dataset_order(trainer)
    environment = run_environment(trainer, dropout_masks)
    with (
        tuned_runtime(trainer.args.device.type, runtime_tuning),
        dropout_masks_from(environment["dropout_masks"]),
        _LastEvaluation(trainer) as last_evaluation,
    ):
        train_output = trainer.train()
    prediction = last_evaluation.at_final_step()
    if prediction is None:
        prediction = trainer.predict(validation, metric_key_prefix="eval")
    return FinetuneResult(
        recipe=recipe,
        metrics=final_metrics(prediction.metrics or {}),
        history=epoch_history(trainer.state.log_history),
        predictions=prediction,
        train_runtime=float(train_output.metrics["train_runtime"]),
        environment=environment,
    )


def check_num_labels(trainer: Trainer, task: Task) -> None:
    """Fail on a model whose classification head (its config's ``num_labels``, where it has one) has another
    number of outputs than ``task`` has labels: the metrics take the argmax of its logits."""
    num_labels = getattr(getattr(trainer.model, "config", None), "num_labels", None)
    if num_labels is not None and num_labels != task.num_labels:
        raise FinetuneError(
            f"the model's classification head has num_labels={num_labels}, but the task {task.name!r} has "
            f"{task.num_labels} labels; load the model with num_labels={task.num_labels} (from a checkpoint "
            "with another head: also ignore_mismatched_sizes=True)"
        )


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
    ``dropout_masks``) ``trainer`` computes with."""
    device = trainer.args.device.type
    return environment(device=device, dtype=_dtype(trainer), dropout_masks=dropout_masks_for(dropout_masks, device))


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
