"""Build ``TrainingArguments`` from a recipe, run a ``Trainer``, keep the result."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback
from transformers.trainer_utils import PredictionOutput

from .errors import FinetuneError
from .metrics import final_metrics
from .provenance import environment
from .recipe import Recipe


def training_arguments_kwargs(recipe: Recipe, output_dir: Path) -> dict[str, Any]:
    """The keyword arguments of ``TrainingArguments`` for ``recipe``."""
    return {**recipe.training_args, "seed": recipe.seed, "output_dir": str(output_dir)}


def build_training_arguments(kwargs: Mapping[str, Any]) -> TrainingArguments:
    """``TrainingArguments(**kwargs)``, its own checks turned into a :class:`FinetuneError`."""
    try:
        return TrainingArguments(**kwargs)
    except (TypeError, ValueError) as error:
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
    - ``predictions``: ``Trainer.predict``'s output on the validation split
      (``.predictions`` holds the logits, ``.label_ids`` the labels);
    - ``train_runtime``: seconds spent in ``Trainer.train``;
    - ``environment``: library versions, device and dtype (see :func:`provenance.environment`);
    - ``from_cache``: whether it was read from the result cache rather than trained in this session.
    """

    recipe: Recipe
    metrics: dict[str, float]
    history: list[dict[str, Any]]
    predictions: PredictionOutput
    train_runtime: float
    environment: dict[str, Any]
    from_cache: bool = False


def run_finetune(trainer: Trainer, recipe: Recipe, callbacks: Sequence[TrainerCallback] = ()) -> FinetuneResult:
    """Train (with ``callbacks`` added, e.g. progress, in place of transformers' log printer),
    then predict on the validation split once for the final metrics and logits."""
    validation = trainer.eval_dataset
    if validation is None or isinstance(validation, dict):
        raise FinetuneError(
            "the trainer needs one eval_dataset, the validation split (a conftest trainer fixture "
            "that sets none, or a dict of several, cannot be scored)"
        )
    if callbacks:
        trainer.remove_callback(PrinterCallback)  # its log dicts would repeat what progress shows
    for callback in callbacks:
        trainer.add_callback(callback)
    train_output = trainer.train()
    prediction = trainer.predict(validation, metric_key_prefix="eval")
    return FinetuneResult(
        recipe=recipe,
        metrics=final_metrics(prediction.metrics or {}),
        history=epoch_history(trainer.state.log_history),
        predictions=prediction,
        train_runtime=float(train_output.metrics["train_runtime"]),
        environment=run_environment(trainer),
    )


def run_environment(trainer: Trainer) -> dict[str, Any]:
    """The library versions, device and dtype ``trainer`` computes with."""
    return environment(device=trainer.args.device.type, dtype=_dtype(trainer))


def _dtype(trainer: Trainer) -> str:
    """The arithmetic precision: the mixed-precision setting, else the model's parameter dtype."""
    if trainer.args.bf16:
        return "bfloat16"
    if trainer.args.fp16:
        return "float16"
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
