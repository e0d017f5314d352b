"""Scores, computed offline exactly as GLUE's MRPC metric computes them.

``evaluate.load("glue", "mrpc")`` fetches its script from the Hub; the same numbers
come from a few lines of numpy: accuracy = mean(prediction == label) and F1 = the
binary F1 of class 1, ``2TP / (2TP + FP + FN)`` (0.0 when that is 0/0, as in
scikit-learn).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import FinetuneError

if TYPE_CHECKING:
    from transformers import EvalPrediction


def accuracy_and_f1(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """GLUE MRPC's metric for predicted class ids against label ids."""
    predictions = np.asarray(predictions).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if predictions.shape != labels.shape:
        raise ValueError(f"{predictions.size} predictions for {labels.size} labels")
    true_positives = np.sum((predictions == 1) & (labels == 1))
    false_positives = np.sum((predictions == 1) & (labels != 1))
    false_negatives = np.sum((predictions != 1) & (labels == 1))
    denominator = 2 * true_positives + false_positives + false_negatives
    return {
        "accuracy": float(np.mean(predictions == labels)) if labels.size else 0.0,
        "f1": float(2 * true_positives / denominator) if denominator else 0.0,
    }


def class_logits(predictions: Any) -> np.ndarray:
    """The class logits of a model's predictions (the first array, for models that also return hidden states)."""
    return np.asarray(predictions[0] if isinstance(predictions, tuple) else predictions)


def predicted_classes(predictions: Any) -> np.ndarray:
    """The predicted class id of each example: the argmax of its logits."""
    return np.argmax(class_logits(predictions), axis=-1)


MetricsFunction = Callable[["EvalPrediction"], dict[str, float]]

#: Keys ``Trainer`` adds to an evaluation that measure speed, not quality.
SPEED_KEYS = ("runtime", "samples_per_second", "steps_per_second")
#: Keys ``Trainer`` logs with an evaluation that are neither scores nor speed.
PROGRESS_KEYS = ("epoch", "step")
#: The losses in each row of ``FinetuneResult.history``.
HISTORY_LOSS_KEYS = ("training_loss", "validation_loss")
#: Names an extra metric may not take: the GLUE scores, what ``Trainer`` logs itself and the history's losses.
RESERVED_NAMES = frozenset({"accuracy", "f1", "loss", *PROGRESS_KEYS, *SPEED_KEYS, *HISTORY_LOSS_KEYS})
#: What a ``compute_metrics`` function is called in messages about what it returned.
COMPUTE_METRICS = "compute_metrics (the fixture, or the trainer's)"
#: What a ``pytest_finetune_metrics`` implementation is called in messages about what it returned.
METRICS_HOOK = "pytest_finetune_metrics hook"


def final_metrics(evaluation: Mapping[str, float]) -> dict[str, float]:
    """The scores of an evaluation (``Trainer.evaluate``, ``.predict``, a log entry):
    ``eval_accuracy`` -> ``accuracy`` (``eval_loss`` keeps its name); speed and progress keys dropped.
    A value that is not a number (``compute_metrics`` returned it) is a :class:`FinetuneError`."""
    metrics = {}
    for key, value in evaluation.items():
        name = key.removeprefix("eval_")
        if name in SPEED_KEYS or name in PROGRESS_KEYS:
            continue
        metrics["eval_loss" if name == "loss" else name] = _number(value, name, COMPUTE_METRICS)
    return metrics


def metrics_dict(returned: object, source: str) -> Mapping[str, Any]:
    """``returned``, what ``source`` (:data:`COMPUTE_METRICS`, :data:`METRICS_HOOK`) returned, if it is
    a dict keyed by metric names; else a :class:`FinetuneError` naming ``source``."""
    if not isinstance(returned, Mapping) or not all(isinstance(name, str) for name in returned):
        raise FinetuneError(
            f"{source} returned {_shown(returned)} ({type(returned).__name__}), not a dict of metrics; "
            "return a dict of metric names to numbers, such as {'positive_rate': 0.5}"
        )
    return returned


def checked_metrics(returned: object, source: str) -> Mapping[str, Any]:
    """``returned``, what ``source`` returned, if it is a dict of metric names to numbers (see :func:`metrics_dict`)."""
    metrics = metrics_dict(returned, source)
    for name, value in metrics.items():
        _number(value, name, source)
    return metrics


def _number(value: object, name: str, source: str) -> float:
    """``value``, the metric ``name`` that ``source`` returned, as a float; not a number: a :class:`FinetuneError`."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise FinetuneError(
            f"{source}: metric {name!r} is {_shown(value)}, not a number; return a dict of numbers (floats)"
        )
    return float(value)


def _shown(value: object) -> str:
    """``value`` as a message shows it, cut to 60 characters."""
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def make_compute_metrics(extra: Callable[[np.ndarray, np.ndarray], dict[str, Any]] | None = None) -> MetricsFunction:
    """A ``compute_metrics`` for ``Trainer``: argmax of the logits, then GLUE MRPC's metric.

    ``extra(logits, label_ids)`` may add metrics (the ``pytest_finetune_metrics`` hook): see :class:`WithExtraMetrics`.
    """

    def compute_metrics(eval_prediction: EvalPrediction) -> dict[str, float]:
        return accuracy_and_f1(predicted_classes(eval_prediction.predictions), np.asarray(eval_prediction.label_ids))

    return compute_metrics if extra is None else WithExtraMetrics(compute_metrics, extra)


class WithExtraMetrics:
    """A ``compute_metrics`` (the plugin's, or a ``conftest.py``'s) that also returns what ``extra(logits,
    label_ids)`` adds (the ``pytest_finetune_metrics`` hooks), checked: numbers under names of their own."""

    def __init__(self, compute_metrics: Callable[..., object], extra: Callable[[np.ndarray, np.ndarray], object]):
        self.compute_metrics = compute_metrics
        self.extra = extra

    def __call__(self, eval_prediction: EvalPrediction, *more: Any, **keywords: Any) -> dict[str, Any]:
        scores = dict(metrics_dict(self.compute_metrics(eval_prediction, *more, **keywords), COMPUTE_METRICS))
        logits = class_logits(eval_prediction.predictions)
        scores.update(
            _checked_extra(metrics_dict(self.extra(logits, np.asarray(eval_prediction.label_ids)), METRICS_HOOK))
        )
        return scores


def _checked_extra(extra: Mapping[str, Any]) -> dict[str, float]:
    """Extra metrics as floats, refusing a reserved name or a value that is not a number."""
    checked = {}
    for name, value in extra.items():
        if name in RESERVED_NAMES or name.startswith("eval_"):
            raise FinetuneError(
                f"{METRICS_HOOK}: the metric name {name!r} is taken; "
                f"choose another than {', '.join(sorted(RESERVED_NAMES))} or an eval_ prefix"
            )
        checked[name] = _number(value, name, METRICS_HOOK)
    return checked
