"""The task registry: the nine GLUE tasks, their metrics as scikit-learn and scipy compute them, and
the bootstrap intervals and default gates of every metric."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef
from transformers import EvalPrediction

from pytest_finetune import stats
from pytest_finetune.metrics import make_compute_metrics, matthews_correlation, task_scores
from pytest_finetune.recipe import Recipe
from pytest_finetune.stats import bootstrap_intervals
from pytest_finetune.tasks import TASKS, Task
from pytest_finetune.tolerances import build_tolerances

GLUE = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli")


def glue_reference(task: str, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """What ``evaluate``'s ``glue`` metric returns for ``task`` (its code, which calls scikit-learn and scipy)."""
    if task == "cola":
        return {"matthews_correlation": float(matthews_corrcoef(labels, predictions))}
    if task == "stsb":
        return {
            "pearson": float(pearsonr(predictions, labels)[0]),
            "spearmanr": float(spearmanr(predictions, labels)[0]),
        }
    if task in ("mrpc", "qqp"):
        return {"accuracy": float(accuracy_score(labels, predictions)), "f1": float(f1_score(labels, predictions))}
    return {"accuracy": float(accuracy_score(labels, predictions))}


def random_case(task: Task, seed: int, size: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Predictions and labels of ``task``'s shape: class ids, or scores from 0 to 5 with ties."""
    rng = np.random.default_rng(seed)
    if task.is_regression:
        labels = np.round(rng.uniform(0, 5, size), 1)
        return labels + rng.normal(0, 1.5, size), labels
    labels = rng.integers(0, task.num_labels, size)
    flipped = rng.random(size) < 0.3
    return np.where(flipped, rng.integers(0, task.num_labels, size), labels), labels


def test_the_nine_glue_tasks_are_known_by_their_hub_config_names() -> None:
    assert sorted(TASKS) == sorted(GLUE)
    assert all(task.hub_dataset == "nyu-mll/glue" and task.hub_config == name for name, task in TASKS.items())


@pytest.mark.parametrize(
    "name, text_columns, num_labels, gated, validation",
    [
        ("cola", ("sentence",), 2, ("matthews_correlation",), "validation"),
        ("sst2", ("sentence",), 2, ("accuracy",), "validation"),
        ("mrpc", ("sentence1", "sentence2"), 2, ("accuracy", "f1"), "validation"),
        ("qqp", ("question1", "question2"), 2, ("accuracy", "f1"), "validation"),
        ("stsb", ("sentence1", "sentence2"), 1, ("pearson", "spearmanr"), "validation"),
        ("mnli", ("premise", "hypothesis"), 3, ("accuracy",), "validation_matched"),
        ("qnli", ("question", "sentence"), 2, ("accuracy",), "validation"),
        ("rte", ("sentence1", "sentence2"), 2, ("accuracy",), "validation"),
        ("wnli", ("sentence1", "sentence2"), 2, ("accuracy",), "validation"),
    ],
)
def test_each_task_has_the_hubs_columns_labels_and_glues_metric(
    name: str, text_columns: tuple[str, ...], num_labels: int, gated: tuple[str, ...], validation: str
) -> None:
    task = TASKS[name]
    assert (task.text_columns, task.num_labels, task.gated, task.validation_split) == (
        text_columns,
        num_labels,
        gated,
        validation,
    )
    assert task.is_regression == (name == "stsb")


def test_label_names_are_the_hubs_class_ids() -> None:
    assert TASKS["rte"].label_names == ("entailment", "not_entailment")
    assert TASKS["wnli"].label_names == ("not_entailment", "entailment")
    assert TASKS["mnli"].label_names == ("entailment", "neutral", "contradiction")


@pytest.mark.parametrize("name", GLUE)
@pytest.mark.parametrize("seed", range(5))
def test_scores_equal_scikit_learn_and_scipy(name: str, seed: int) -> None:
    task = TASKS[name]
    predictions, labels = random_case(task, seed)
    expected = glue_reference(name, predictions, labels)
    assert task_scores(task, predictions, labels) == pytest.approx(expected, abs=1e-9, rel=0)


@pytest.mark.parametrize("classes", [2, 3, 5])
def test_matthews_equals_scikit_learn_for_any_number_of_classes(classes: int) -> None:
    rng = np.random.default_rng(classes)
    labels = rng.integers(0, classes, 300)
    predictions = np.where(rng.random(300) < 0.4, rng.integers(0, classes, 300), labels)
    assert matthews_correlation(predictions, labels) == pytest.approx(matthews_corrcoef(labels, predictions), abs=1e-9)


def test_a_constant_predictor_scores_zero_correlation() -> None:
    labels = np.array([0, 1, 1, 0, 1])
    assert matthews_correlation(np.ones(5), labels) == 0.0
    assert task_scores(TASKS["stsb"], np.full(5, 2.5), labels.astype(float)) == {"pearson": 0.0, "spearmanr": 0.0}


def test_compute_metrics_scores_a_regression_heads_single_output() -> None:
    labels = np.array([0.0, 1.5, 3.0, 4.5, 5.0])
    logits = (labels * 0.8 + np.array([0.3, -0.2, 0.1, 0.0, -0.4])).reshape(-1, 1)
    scores = make_compute_metrics(task=TASKS["stsb"])(EvalPrediction(predictions=logits, label_ids=labels))
    assert scores == pytest.approx(glue_reference("stsb", logits.reshape(-1), labels), abs=1e-9)


def test_compute_metrics_takes_the_argmax_of_three_classes() -> None:
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 3.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    scores = make_compute_metrics(task=TASKS["mnli"])(
        EvalPrediction(predictions=logits, label_ids=np.array([0, 2, 2, 0]))
    )
    assert scores == {"accuracy": 0.75}


@pytest.mark.parametrize("name", ["cola", "mnli", "stsb", "mrpc"])
def test_bootstrap_intervals_cover_every_metric_of_the_task(name: str) -> None:
    task = TASKS[name]
    predictions, labels = random_case(task, 7, size=300)
    intervals = bootstrap_intervals(predictions, labels, 500, task)
    scores = task_scores(task, predictions, labels)
    assert sorted(intervals) == sorted(task.metrics)
    for metric, (low, high) in intervals.items():
        assert low < scores[metric] < high, metric
        assert high - low < 0.3, metric


def test_bootstrap_scores_each_resample_as_the_metric_does() -> None:
    """Each resample's Matthews, Pearson and Spearman (vectorised) equal scikit-learn's and scipy's."""
    rows = np.random.default_rng(0).integers(0, 60, size=(4, 60))
    for name, score in (("cola", stats._resampled_class_scores), ("stsb", stats._resampled_correlations)):
        task = TASKS[name]
        predictions, labels = random_case(task, 3, size=60)
        resampled = score(predictions, labels, rows)
        for row, drawn in enumerate(rows):
            expected = glue_reference(name, predictions[drawn], labels[drawn])
            assert {metric: resampled[metric][row] for metric in expected} == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("name", GLUE)
def test_the_task_decides_the_gated_metrics_and_their_default_tolerance(name: str) -> None:
    tolerances = build_tolerances([], defaults=TASKS[name].default_tolerances)
    assert tolerances.metrics == tuple(sorted(TASKS[name].gated))
    assert all(tolerances[metric] == 0.01 for metric in TASKS[name].gated)
    assert build_tolerances([0.03], defaults=TASKS[name].default_tolerances)[TASKS[name].gated[0]] == 0.03


def test_a_recipe_names_its_task() -> None:
    assert Recipe(task="stsb").task_spec is TASKS["stsb"]
    assert Recipe().task_spec.name == "mrpc"


@pytest.mark.parametrize("name", GLUE)
def test_the_examples_identity_reads_each_tasks_texts_not_its_tokens(name: str) -> None:
    """Another tokenizer leaves the identity of a task's examples the same; another text changes it."""
    import datasets

    from pytest_finetune.provenance import examples_identity

    task = TASKS[name]

    def split(tokens: list[int], text: str = "a text") -> datasets.Dataset:
        return datasets.Dataset.from_dict(
            {**{column: [text] for column in task.text_columns}, "label": [0], "idx": [7], "input_ids": [tokens]}
        )

    assert examples_identity({"validation": split([1, 2])}) == examples_identity({"validation": split([3, 4, 5])})
    assert examples_identity({"validation": split([1, 2])}) != examples_identity({"validation": split([1, 2], "b")})
