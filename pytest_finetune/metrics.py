"""Scores, computed offline exactly as GLUE's metric computes them for each task.

``evaluate.load("glue", task)`` fetches its script from the Hub and calls scikit-learn and scipy;
the same numbers come from numpy and scipy here: accuracy = mean(prediction == label); F1 = the
binary F1 of class 1, ``2TP / (2TP + FP + FN)`` (0.0 when that is 0/0, as in scikit-learn);
Matthews correlation from the confusion counts as scikit-learn computes it (0.0 when a margin
is constant); Pearson and Spearman correlations by ``scipy.stats`` (0.0 for constant predictions,
where scipy has none). Which of them a task reports is the task's (:mod:`pytest_finetune.tasks`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import FinetuneError
from .tasks import ACCURACY, F1, MATTHEWS, PEARSON, SPEARMAN, TASK_METRICS, TASKS, Task

if TYPE_CHECKING:
    from transformers import EvalPrediction


def _flat_pair(predictions: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``predictions`` and ``labels`` as flat arrays of one length (else ``ValueError``)."""
    predictions = np.asarray(predictions).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if predictions.shape != labels.shape:
        raise ValueError(f"{predictions.size} predictions for {labels.size} labels")
    return predictions, labels


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    """The share of predicted class ids equal to the label ids (0.0 without examples)."""
    predictions, labels = _flat_pair(predictions, labels)
    return float(np.mean(predictions == labels)) if labels.size else 0.0


def f1(predictions: np.ndarray, labels: np.ndarray) -> float:
    """The binary F1 of class 1: ``2TP / (2TP + FP + FN)``, 0.0 when that is 0/0 (as in scikit-learn)."""
    predictions, labels = _flat_pair(predictions, labels)
    true_positives = np.sum((predictions == 1) & (labels == 1))
    false_positives = np.sum((predictions == 1) & (labels != 1))
    false_negatives = np.sum((predictions != 1) & (labels == 1))
    denominator = 2 * true_positives + false_positives + false_negatives
    return float(2 * true_positives / denominator) if denominator else 0.0


def accuracy_and_f1(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """GLUE MRPC's metric for predicted class ids against label ids."""
    return {ACCURACY: accuracy(predictions, labels), F1: f1(predictions, labels)}


def matthews_from_counts(correct: Any, true_counts: Any, predicted_counts: Any, examples: int) -> Any:
    """Matthews correlation from the number of ``correct`` predictions and the count of each class among
    the labels and the predictions (last axis), as scikit-learn computes it; 0.0 where a margin is constant.
    Works elementwise over leading axes (one value per bootstrap resample)."""
    true_counts = np.asarray(true_counts, dtype=np.float64)
    predicted_counts = np.asarray(predicted_counts, dtype=np.float64)
    covariance = np.asarray(correct, dtype=np.float64) * examples - np.sum(true_counts * predicted_counts, axis=-1)
    spread = (examples**2 - np.sum(true_counts**2, axis=-1)) * (examples**2 - np.sum(predicted_counts**2, axis=-1))
    return np.divide(covariance, np.sqrt(spread), out=np.zeros_like(covariance), where=spread > 0)


def matthews_correlation(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Matthews correlation of predicted class ids with the label ids (any number of classes)."""
    predictions, labels = _flat_pair(predictions, labels)
    _, classes = np.unique(np.concatenate([labels, predictions]), return_inverse=True)
    true_ids, predicted_ids = classes[: labels.size], classes[labels.size :]
    width = int(classes.max()) + 1 if classes.size else 0
    return float(
        matthews_from_counts(
            np.sum(true_ids == predicted_ids),
            np.bincount(true_ids, minlength=width),
            np.bincount(predicted_ids, minlength=width),
            labels.size,
        )
    )


def _correlation(method: Callable[..., Any], predictions: np.ndarray, labels: np.ndarray) -> float:
    """``method`` (``scipy.stats.pearsonr`` or ``spearmanr``) of the predictions with the labels; 0.0 where
    either is constant (scipy gives NaN) or there are fewer than two examples."""
    predictions, labels = _flat_pair(predictions, labels)
    if labels.size < 2 or np.ptp(predictions) == 0 or np.ptp(labels) == 0:
        return 0.0
    return float(method(predictions.astype(np.float64), labels.astype(np.float64))[0])


def pearson(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Pearson correlation of predicted scores with the labels (``scipy.stats.pearsonr``)."""
    from scipy.stats import pearsonr

    return _correlation(pearsonr, predictions, labels)


def spearman(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Spearman rank correlation of predicted scores with the labels (``scipy.stats.spearmanr``)."""
    from scipy.stats import spearmanr

    return _correlation(spearmanr, predictions, labels)


#: Each metric a task may name, as a function of (predictions, labels): class ids, or scores for a regression.
METRIC_FUNCTIONS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    ACCURACY: accuracy,
    F1: f1,
    MATTHEWS: matthews_correlation,
    PEARSON: pearson,
    SPEARMAN: spearman,
}


def task_scores(task: Task, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """``task``'s metrics of its predictions (:func:`predicted_values`) against the labels."""
    return {name: METRIC_FUNCTIONS[name](predictions, labels) for name in task.metrics}


def class_logits(predictions: Any) -> np.ndarray:
    """The class logits of a model's predictions (the first array, for models that also return hidden states)."""
    return np.asarray(predictions[0] if isinstance(predictions, tuple) else predictions)


def predicted_classes(predictions: Any) -> np.ndarray:
    """The predicted class id of each example: the argmax of its logits."""
    return np.argmax(class_logits(predictions), axis=-1)


#: The collapsed-model guard's default (ini ``finetune_collapse_guard``): a run whose model predicts one class
#: for 95 % or more of the validation examples, when fewer of their labels are that class, collapsed. MRPC's
#: majority class is 68 % of its dev pairs; a model that learned anything predicts both classes.
DEFAULT_COLLAPSE_GUARD = 0.95


def collapse(task: Task, predictions: Any, label_ids: Any, guard: float) -> str | None:
    """How a classifier collapsed to one class, or ``None``: its most predicted class makes up at least
    ``guard`` (a share) of the validation examples while the labels' most frequent class makes up less.
    A regression, or a validation split without rows, never collapses."""
    labels = np.asarray(label_ids).reshape(-1)
    if task.is_regression or not labels.size:
        return None
    classes = predicted_classes(predictions).reshape(-1)
    predicted, counts = np.unique(classes, return_counts=True)
    top, share = int(predicted[np.argmax(counts)]), counts.max() / classes.size
    if share < guard or np.unique(labels, return_counts=True)[1].max() / labels.size >= guard:
        return None
    labelled = float(np.mean(labels == top))
    name = task.label_names[top] if task.label_names and top < len(task.label_names) else str(top)
    return (
        f"the model predicts class {top} ({name}) for {100 * share:.1f} % of the {classes.size} validation examples, "
        f"and {100 * labelled:.1f} % of them are labelled so (the guard: {100 * guard:g} % of one class, "
        "ini finetune_collapse_guard, marker collapse_guard=...; false turns it off)"
    )


def predicted_values(task: Task, predictions: Any) -> np.ndarray:
    """What a model predicts for each example of ``task``: its class id, or for a regression its score."""
    return class_logits(predictions).reshape(-1) if task.is_regression else predicted_classes(predictions)


MetricsFunction = Callable[["EvalPrediction"], dict[str, float]]

#: Keys ``Trainer`` adds to an evaluation that measure speed, not quality.
SPEED_KEYS = ("runtime", "samples_per_second", "steps_per_second")
#: Keys ``Trainer`` logs with an evaluation that are neither scores nor speed.
PROGRESS_KEYS = ("epoch", "step")
#: The losses in each row of ``FinetuneResult.history``.
HISTORY_LOSS_KEYS = ("training_loss", "validation_loss")
#: Names an extra metric may not take: the GLUE scores, what ``Trainer`` logs itself and the history's losses.
RESERVED_NAMES = frozenset({*TASK_METRICS, "loss", *PROGRESS_KEYS, *SPEED_KEYS, *HISTORY_LOSS_KEYS})
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


def make_compute_metrics(
    extra: Callable[[np.ndarray, np.ndarray], dict[str, Any]] | None = None, task: Task = TASKS["mrpc"]
) -> MetricsFunction:
    """A ``compute_metrics`` for ``Trainer``: the argmax of the logits (a regression: the score), then
    ``task``'s GLUE metrics (the seed's: MRPC's accuracy and F1).

    ``extra(logits, label_ids)`` may add metrics (the ``pytest_finetune_metrics`` hook): see :class:`WithExtraMetrics`.
    """

    def compute_metrics(eval_prediction: EvalPrediction) -> dict[str, float]:
        predicted = predicted_values(task, eval_prediction.predictions)
        return task_scores(task, predicted, np.asarray(eval_prediction.label_ids))

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
