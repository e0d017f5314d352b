"""Unit tests of ``pytest_finetune.metrics``: GLUE MRPC's accuracy and F1, checked against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score
from transformers import EvalPrediction

from pytest_finetune.errors import FinetuneError
from pytest_finetune.metrics import WithExtraMetrics, accuracy_and_f1, make_compute_metrics


def sklearn_scores(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The reference: scikit-learn's accuracy and binary F1 of class 1 (0.0 for 0/0)."""
    return {
        "accuracy": accuracy_score(labels, predictions),
        "f1": f1_score(labels, predictions, labels=[0, 1], pos_label=1, average="binary", zero_division=0.0),
    }


def random_case(seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Random binary predictions and labels, with a seed-dependent share of positives."""
    rng = np.random.default_rng(seed)
    positive_rate = rng.uniform(0.05, 0.95)
    return (rng.random(size) < positive_rate).astype(np.int64), rng.integers(0, 2, size)


@pytest.mark.parametrize("size", [1, 2, 7, 64, 1000])
@pytest.mark.parametrize("seed", range(8))
def test_random_cases_match_sklearn(seed: int, size: int) -> None:
    predictions, labels = random_case(seed, size)
    assert accuracy_and_f1(predictions, labels) == pytest.approx(sklearn_scores(predictions, labels))


def _degenerate(size: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    labels = np.random.default_rng(size).integers(0, 2, size)
    ones, zeros = np.ones(size, dtype=np.int64), np.zeros(size, dtype=np.int64)
    return {
        "all-positive": (ones, ones),
        "all-negative": (zeros, zeros),
        "no-positive-predictions": (zeros, labels),
        "no-positive-labels": (labels, zeros),
        "only-positive-predictions": (ones, labels),
        "no-agreement": (1 - labels, labels),
        "perfect": (labels, labels),
    }


@pytest.mark.parametrize("size", [1, 5, 40])
@pytest.mark.parametrize("case", list(_degenerate(1)))
def test_degenerate_cases_match_sklearn(case: str, size: int) -> None:
    predictions, labels = _degenerate(size)[case]
    assert accuracy_and_f1(predictions, labels) == pytest.approx(sklearn_scores(predictions, labels))


def test_results_are_python_floats() -> None:
    scores = accuracy_and_f1(*random_case(0, 10))
    assert set(scores) == {"accuracy", "f1"}
    assert all(type(value) is float for value in scores.values())


def test_empty_input_scores_zero() -> None:
    """scikit-learn refuses empty input; the plugin documents 0.0 for 0/0."""
    empty = np.array([], dtype=np.int64)
    assert accuracy_and_f1(empty, empty) == {"accuracy": 0.0, "f1": 0.0}


def test_column_vectors_are_flattened() -> None:
    predictions, labels = random_case(3, 12)
    assert accuracy_and_f1(predictions.reshape(-1, 1), labels) == pytest.approx(sklearn_scores(predictions, labels))


@pytest.mark.parametrize("prediction_count, label_count", [(5, 4), (4, 5), (0, 3)])
def test_mismatched_lengths_raise(prediction_count: int, label_count: int) -> None:
    with pytest.raises(ValueError, match=f"{prediction_count} predictions for {label_count} labels"):
        accuracy_and_f1(np.zeros(prediction_count, dtype=np.int64), np.zeros(label_count, dtype=np.int64))


def random_logits(seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Random float logits and binary label ids."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(size, 2)).astype(np.float32), rng.integers(0, 2, size)


@pytest.mark.parametrize("with_hidden", [False, True], ids=["logits", "logits-and-hidden"])
@pytest.mark.parametrize("seed, size", [(0, 1), (1, 17), (2, 256)])
def test_compute_metrics_takes_the_argmax(seed: int, size: int, with_hidden: bool) -> None:
    logits, label_ids = random_logits(seed, size)
    hidden = np.random.default_rng(seed).normal(size=(size, 4, 3))
    predictions = (logits, hidden) if with_hidden else logits
    scores = make_compute_metrics()(EvalPrediction(predictions=predictions, label_ids=label_ids))
    assert scores == pytest.approx(sklearn_scores(logits.argmax(axis=-1), label_ids))


def test_compute_metrics_merges_extra_metrics() -> None:
    logits, label_ids = random_logits(4, 30)
    seen: list[tuple[np.ndarray, np.ndarray]] = []

    def extra(extra_logits: np.ndarray, extra_labels: np.ndarray) -> dict[str, float]:
        seen.append((extra_logits, extra_labels))
        return {"positive_rate": float(np.mean(extra_labels == 1)), "mean_logit": float(extra_logits.mean())}

    hidden = np.zeros((30, 2, 2))
    scores = make_compute_metrics(extra)(EvalPrediction(predictions=(logits, hidden), label_ids=label_ids))

    assert scores == pytest.approx(
        sklearn_scores(logits.argmax(axis=-1), label_ids)
        | {"positive_rate": np.mean(label_ids == 1), "mean_logit": logits.mean()}
    )
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0][0], logits)  # the logits, not the (logits, hidden) tuple
    np.testing.assert_array_equal(seen[0][1], label_ids)


def test_compute_metrics_mismatched_shapes_raise() -> None:
    logits, _ = random_logits(5, 6)
    with pytest.raises(ValueError, match="6 predictions for 5 labels"):
        make_compute_metrics()(EvalPrediction(predictions=logits, label_ids=np.zeros(5, dtype=np.int64)))


@pytest.mark.parametrize("name", ["training_loss", "validation_loss", "accuracy", "step", "eval_f1"])
def test_an_extra_metric_may_not_take_a_name_of_the_history(name: str) -> None:
    """A hook's ``training_loss`` would overwrite the real loss in ``finetune_result.history``."""
    logits, label_ids = random_logits(6, 8)
    compute_metrics = make_compute_metrics(lambda *_: {name: 0.5})
    with pytest.raises(FinetuneError, match=rf"^pytest_finetune_metrics hook: the metric name '{name}' is taken; "):
        compute_metrics(EvalPrediction(predictions=logits, label_ids=label_ids))


@pytest.mark.parametrize(
    "value, shown", [("good", "'good'"), ([0.5, 0.25], r"\[0\.5, 0\.25\]"), (None, "None"), (True, "True")]
)
def test_a_compute_metrics_value_that_is_not_a_number_is_an_error_naming_it(value: object, shown: str) -> None:
    """What a compute_metrics override returned reaches the final metrics: a clear error, not a bare ValueError."""
    from pytest_finetune.metrics import final_metrics

    evaluation = {"eval_loss": 0.5, "eval_accuracy": 0.75, "eval_note": value, "eval_runtime": 1.0}
    with pytest.raises(
        FinetuneError,
        match=rf"^compute_metrics \(the fixture, or the trainer's\): metric 'note' is {shown}, not a number; "
        r"return a dict of numbers",
    ):
        final_metrics(evaluation)


@pytest.mark.parametrize(
    "returned, shown", [(0.5, r"0\.5 \(float\)"), ([("rate", 0.5)], r"\[\('rate', 0\.5\)\] \(list\)")]
)
def test_a_metrics_hook_that_returns_no_dict_is_an_error_naming_the_hook(returned: object, shown: str) -> None:
    logits, label_ids = random_logits(7, 8)
    compute_metrics = make_compute_metrics(lambda *_: returned)  # type: ignore[arg-type, return-value]
    with pytest.raises(
        FinetuneError, match=rf"^pytest_finetune_metrics hook returned {shown}, not a dict of metrics; return a dict"
    ):
        compute_metrics(EvalPrediction(predictions=logits, label_ids=label_ids))


def test_checked_metrics_keeps_a_dict_of_numbers_and_refuses_anything_else() -> None:
    from pytest_finetune.metrics import checked_metrics

    metrics = {"accuracy": np.float32(0.5), "count": 3}
    assert checked_metrics(metrics, "compute_metrics") is metrics
    with pytest.raises(FinetuneError, match=r"^compute_metrics returned 'good' \(str\), not a dict of metrics"):
        checked_metrics("good", "compute_metrics")
    with pytest.raises(FinetuneError, match=r"^compute_metrics: metric 'f1' is 'x', not a number"):
        checked_metrics({"f1": "x"}, "compute_metrics")


def test_extra_metrics_join_any_compute_metrics_and_its_keywords_pass_through() -> None:
    """A conftest's compute_metrics gets the hook metrics too (``finetune_result`` wraps the trainer's)."""
    logits, label_ids = random_logits(5, 12)
    calls: list[dict[str, object]] = []

    def own(eval_prediction: EvalPrediction, **keywords: object) -> dict[str, float]:
        calls.append(keywords)
        return {"accuracy": 0.25, "f1": 0.5}

    wrapped = WithExtraMetrics(own, lambda hook_logits, hook_labels: {"positives": float(np.sum(hook_labels))})
    scores = wrapped(EvalPrediction(predictions=logits, label_ids=label_ids), compute_result=True)
    assert scores == {"accuracy": 0.25, "f1": 0.5, "positives": float(np.sum(label_ids))}
    assert calls == [{"compute_result": True}]
    with pytest.raises(FinetuneError, match=r"^compute_metrics \(the fixture, or the trainer's\) returned 0\.5"):
        WithExtraMetrics(lambda prediction: 0.5, lambda *_: {})(EvalPrediction(predictions=logits, label_ids=label_ids))
