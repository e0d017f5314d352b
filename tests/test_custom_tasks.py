"""Tasks of the user's: declared from ini, marker or a conftest hook, trained, recorded and gated."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from glue_layouts import task_examples
from helpers import SHUFFLED_LABELS

from pytest_finetune.data import load_raw_dataset, with_class_names
from pytest_finetune.errors import FinetuneError
from pytest_finetune.recipe import build_recipe, convert_value

#: A budget at which the tiny BERT learns the rule of the examples (see test_glue_tasks.BUDGET).
BUDGET = "max_steps=60, learning_rate={}, per_device_train_batch_size=8, eval_strategy='no'"


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    """``rows`` under ``header`` as a csv file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def sentiment_folder(folder: Path, names: tuple[str, ...] = ("neg", "pos")) -> Path:
    """A single-text classification in csv files: ``review`` and ``sentiment`` (class names as text)."""
    for stem, count, seed in (("train", 64, 1), ("validation", 40, 2)):
        examples = task_examples("sst2", count, seed=seed)
        write_csv(folder / f"{stem}.csv", ["review", "sentiment"], [[t[0], names[int(y)]] for y, t in examples])
    return folder


def similarity_folder(folder: Path) -> Path:
    """A sentence-pair regression in csv files: ``first``, ``second`` and ``score``."""
    for stem, count, seed in (("train", 64, 1), ("validation", 40, 2)):
        examples = task_examples("stsb", count, seed=seed)
        write_csv(folder / f"{stem}.csv", ["first", "second", "score"], [[*t, y] for y, t in examples])
    return folder


def recorded(pytester: pytest.Pytester) -> dict[str, object]:
    """The one baseline the project holds."""
    (baseline_file,) = (pytester.path / "baselines").glob("**/*.json")
    return json.loads(baseline_file.read_text())


def gate_outcome(pytester: pytest.Pytester) -> dict[str, object]:
    """The report entry of a ``--finetune`` run of the project's one test."""
    pytester.runpytest("--finetune", "--finetune-report=report.json")
    (entry,) = json.loads((pytester.path / "report.json").read_text())["tests"]
    return entry


def test_a_single_text_classification_from_ini_and_csv(
    pytester: pytest.Pytester, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """Declared in the ini file, its class names read from the data: trained, recorded with its class names,
    gated (passes), and trained on shuffled labels it regresses."""
    data = sentiment_folder(tmp_path / "reviews")
    pytester.makeini(f"""
        [pytest]
        finetune_model = {tiny_checkpoint}
        finetune_data = {data}
        finetune_task = sentiment
        finetune_text_columns = review
        finetune_label_column = sentiment
        finetune_metrics = accuracy, f1
        """)
    pytester.makepyfile(f"""
        import pytest

        @pytest.mark.finetune({BUDGET.format(3e-3)})
        def test_sentiment(finetune_result):
            assert finetune_result.recipe.labels == ("neg", "pos")
        """)
    pytester.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)
    record = recorded(pytester)
    assert record["recipe"]["labels"] == ["neg", "pos"]  # type: ignore[index]
    assert record["recipe"]["text_columns"] == ["review"]  # type: ignore[index]
    assert record["metrics"]["accuracy"] > 0.8 and record["metrics"]["f1"] > 0.8, record["metrics"]  # type: ignore[index]
    pytester.runpytest("--finetune").assert_outcomes(passed=1)
    pytester.makeconftest(SHUFFLED_LABELS)
    assert gate_outcome(pytester)["outcome"] == "regressed"


def test_a_regression_from_the_marker_and_csv(pytester: pytest.Pytester, tiny_checkpoint: Path, tmp_path: Path) -> None:
    """Declared in the marker: a pair regression trains, records and gates; on shuffled labels it regresses."""
    data = similarity_folder(tmp_path / "similarity")
    pytester.makeini(f"""
        [pytest]
        finetune_model = {tiny_checkpoint}
        finetune_data = {data}
        """)
    pytester.makepyfile(f"""
        import pytest

        @pytest.mark.finetune(
            task="similarity", text_columns=["first", "second"], label_column="score", labels="regression",
            {BUDGET.format(1e-2)},
        )
        def test_similarity():
            "Fine-tune, then compare with the baseline."
        """)
    pytester.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)
    record = recorded(pytester)
    assert record["recipe"]["labels"] == "regression"  # type: ignore[index]
    assert record["metrics"]["pearson"] > 0.6 and record["metrics"]["spearmanr"] > 0.6, record["metrics"]  # type: ignore[index]
    assert len(record["examples"]["abs_errors"]) == 40  # type: ignore[index]
    held = gate_outcome(pytester)
    assert held["outcome"] == "passed" and held["paired_test"]["method"] == "Wilcoxon signed-rank", held
    pytester.makeconftest(SHUFFLED_LABELS)
    shuffled = gate_outcome(pytester)
    assert shuffled["outcome"] == "regressed" and shuffled["paired_test"]["significantly_worse"], shuffled


def test_a_conftest_hook_declares_the_task(pytester: pytest.Pytester, tiny_checkpoint: Path, tmp_path: Path) -> None:
    """``pytest_finetune_adjust_recipe`` returns the marker's keywords: a task for every test below the conftest."""
    data = sentiment_folder(tmp_path / "reviews", names=("bad", "good"))
    pytester.makeini(f"""
        [pytest]
        finetune_model = {tiny_checkpoint}
        finetune_data = {data}
        finetune_training_args =
            max_steps = 2
        """)
    pytester.makeconftest("""
        def pytest_finetune_adjust_recipe(recipe, item):
            return {"task": "sentiment", "text_columns": "review", "label_column": "sentiment",
                    "labels": ["bad", "good"], "metrics": ["matthews_correlation"]}
        """)
    pytester.makepyfile("""
        import pytest

        @pytest.mark.finetune
        def test_sentiment(finetune_result, model):
            assert finetune_result.recipe.task_spec.label_names == ("bad", "good")
            assert model.config.id2label == {0: "bad", 1: "good"}
            assert set(finetune_result.metrics) == {"matthews_correlation", "eval_loss"}
        """)
    pytester.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)


def test_a_class_that_appears_later_is_not_compared(
    pytester: pytest.Pytester, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """Class names read from the data are recorded: a new class in the training data is no silent relabelling."""
    data = sentiment_folder(tmp_path / "reviews")
    pytester.makeini(f"""
        [pytest]
        finetune_model = {tiny_checkpoint}
        finetune_data = {data}
        finetune_task = sentiment
        finetune_text_columns = review
        finetune_label_column = sentiment
        finetune_training_args =
            max_steps = 2
        """)
    pytester.makepyfile("""
        import pytest

        @pytest.mark.finetune
        def test_sentiment():
            "Fine-tune, then compare with the baseline."
        """)
    pytester.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)
    with (data / "train.csv").open("a") as handle:
        handle.write("the cat sat,mixed\n")
    entry = gate_outcome(pytester)
    assert entry["outcome"] == "not comparable", entry
    assert entry["not_comparable"].startswith("the task's labels changed (neg, pos → mixed, neg, pos)"), entry


def declared(**keywords: object) -> object:
    """The recipe the marker ``keywords`` give (checked, its class names read from its data)."""
    where = "@pytest.mark.finetune"
    layer = {key: convert_value(key, value, where=where) for key, value in keywords.items()}
    return with_class_names(build_recipe([(where, layer)]))


@pytest.mark.parametrize(
    "keywords, message",
    [
        (
            {"task": "imdb"},
            r"unknown task 'imdb'; known tasks: cola, .*, wnli; or declare a task of your own with text_columns",
        ),
        ({"task": "sst2", "text_columns": "review"}, r"task 'sst2' is a GLUE task, which has its own columns"),
        ({"label_column": "stars"}, r"label_column declare a task of your own and need text_columns too"),
        (
            {"task": "t", "text_columns": "review", "labels": ["neg", "regression"]},
            r"labels gives class names and 'regression' \(neg, regression\); give the class names .* or "
            r"'regression' alone",
        ),
        (
            {"task": "t", "text_columns": "review", "labels": "regression", "metrics": ["matthews_correlation"]},
            r"the metric 'matthews_correlation' cannot be computed for a regression; name one of pearson, spearmanr",
        ),
        (
            {"task": "t", "text_columns": "review", "labels": ["a", "b", "c"], "metrics": "f1"},
            r"the metric 'f1' cannot be computed for a classification of 3 classes; name one of accuracy, "
            r"matthews_correlation",
        ),
        (
            {"task": "t", "text_columns": "review", "metrics": "bleu"},
            r"the metric 'bleu' cannot be computed .*or compute your own with a pytest_finetune_metrics hook",
        ),
        ({"task": "t", "text_columns": ["a", "b", "c"]}, r"text_columns is \['a', 'b', 'c'\]; give the one or two"),
        ({"task": "t", "text_columns": "review", "labels": ["pos"]}, r"labels \['pos'\] are not two or more"),
        ({"task": "t", "text_columns": "review", "label_column": " "}, r"label_column is ''; give the column"),
        ({"task": "t", "text_columns": "review"}, r"the task 't' is your own and has no Hub dataset of its own"),
    ],
)
def test_a_declaration_that_cannot_work_names_the_fix(keywords: dict[str, object], message: str) -> None:
    with pytest.raises(FinetuneError, match=rf"^@pytest\.mark\.finetune: (task .t.: )?{message}"):
        declared(**keywords)


def sentiment_task(data: Path, **keywords: object) -> object:
    """The task a recipe declares for the reviews in ``data``."""
    base = {"task": "sentiment", "data": str(data), "text_columns": "review", "label_column": "sentiment"}
    return declared(**{**base, **keywords}).task_spec  # type: ignore[attr-defined]


def test_class_names_from_the_data_are_sorted_and_integer_labels_are_class_ids(tmp_path: Path) -> None:
    write_csv(tmp_path / "text" / "train.csv", ["review", "sentiment"], [["a", "pos"], ["b", "neg"], ["c", "meh"]])
    write_csv(tmp_path / "text" / "validation.csv", ["review", "sentiment"], [["d", "pos"]])
    assert sentiment_task(tmp_path / "text").label_names == ("meh", "neg", "pos")  # type: ignore[attr-defined]
    write_csv(tmp_path / "ids" / "train.csv", ["review", "sentiment"], [["a", 0], ["b", 2]])
    write_csv(tmp_path / "ids" / "validation.csv", ["review", "sentiment"], [["d", 1]])
    task = sentiment_task(tmp_path / "ids")
    assert task.label_names == ("0", "1", "2")  # type: ignore[attr-defined]
    assert load_raw_dataset(str(tmp_path / "ids"), task)["train"]["label"] == [0, 2]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "rows, keywords, message",
    [
        (
            [["a fine film", "pos"], ["a dull film", "neutral"]],
            {"labels": ["neg", "pos"]},
            r"train split, row 2: label 'neutral' is not one of the task 'sentiment''s labels \(neg, pos\)",
        ),
        ([["a fine film", 3.5]], {"labels": "regression", "label_column": "stars"}, r"no label column 'stars'"),
        ([["a fine film", "nan"], ["b", 2]], {"labels": "regression"}, r"row 1: score 'nan' is not a finite number"),
        ([["a fine film", "high"]], {"labels": "regression"}, r"row 1: score 'high' is not a finite number"),
        ([["a fine film", 1.5], ["b", 2.5]], {}, r"labels are float64, neither class names nor class ids; .*regress"),
        ([["a fine film", "pos"], ["b", "pos"]], {}, r"the labels hold 1 class \(pos\); a classification needs two"),
        ([[" ", "pos"], ["", "neg"]], {"labels": ["neg", "pos"]}, r"the text column 'review' is empty in every row"),
        ([["a", "pos"], ["b", "neg"]], {"text_columns": "text"}, r"train split: missing column\(s\) text \(it has"),
    ],
)
def test_bad_data_of_a_declared_task_names_the_value_and_the_fix(
    tmp_path: Path, rows: list[list[object]], keywords: dict[str, object], message: str
) -> None:
    for stem in ("train", "validation"):
        write_csv(tmp_path / f"{stem}.csv", ["review", "sentiment"], rows)
    with pytest.raises(FinetuneError, match=message):
        load_raw_dataset(str(tmp_path), sentiment_task(tmp_path, **keywords))  # type: ignore[arg-type]


def test_a_glue_tsv_folder_for_a_declared_task_is_refused(tmp_path: Path) -> None:
    (tmp_path / "train.tsv").write_text("sentence\tlabel\na\t1\n")
    with pytest.raises(FinetuneError, match=r"holds GLUE TSV files .* and the task 'sentiment' is your own"):
        sentiment_task(tmp_path)


def test_a_hooks_task_that_cannot_work_fails_its_test_clearly(pytester: pytest.Pytester) -> None:
    """A task that only a ``pytest_finetune_adjust_recipe`` hook gives is checked as the test sets up: its error,
    not an internal error of the session's reports."""
    pytester.makeconftest("""
        def pytest_finetune_adjust_recipe(recipe, item):
            return {"task": "imdb"}
        """)
    pytester.makepyfile("""
        import pytest

        @pytest.mark.finetune
        def test_x():
            pass
        """)
    result = pytester.runpytest("--finetune")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*pytest_finetune_adjust_recipe hook: unknown task 'imdb'; known tasks: cola, *"])
    result.stdout.no_fnmatch_line("*INTERNALERROR*")
