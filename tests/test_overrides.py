"""Fixtures a downstream ``conftest.py`` overrides get what data files get: the same checks of the data a
fixture gives, a tokenizer and model checked against each other, the training arguments the trainer really
holds in the recipe a baseline records, and the ``pytest_finetune_metrics`` hooks with any ``compute_metrics``."""

from __future__ import annotations

import json

import pytest
from helpers import QUALITY_BASELINE, QUALITY_TEST, assert_fails_clearly


def assert_fails_before_recording(project: pytest.Pytester, conftest: str, message: str) -> None:
    """A run of :data:`QUALITY_TEST` under ``conftest`` with ``--snapshot-update`` fails clearly with ``message``
    and records no baseline (one that the next run would refuse, or that means nothing)."""
    project.makeconftest(conftest)
    project.makepyfile(test_quality=QUALITY_TEST)
    result = project.runpytest("--finetune", "--snapshot-update", "--finetune-no-cache")
    assert_fails_clearly(result, message)
    assert not (project.path / QUALITY_BASELINE).exists()


# An ``mrpc_dataset`` of in-memory rows, spoilt as BAD says (the ways a conftest's own data goes wrong).
DATASET_CONFTEST = """
import datasets
import pytest

BAD = {bad!r}

@pytest.fixture
def mrpc_dataset():
    rows = {{"sentence1": ["the cat sat", "a dog ran", "he said it", "she rose"] * 4,
             "sentence2": ["the cat sat on", "big car", "he said that", "blue house"] * 4,
             "label": [1, 0, 1, 0] * 4}}
    if BAD == "label2":
        rows["label"] = [1, 0, 2, 0] * 4
    if BAD == "columns":
        rows["question1"] = rows.pop("sentence1")
    if BAD == "repeated-idx":
        rows["idx"] = [0] * 16  # a concatenation of two sources, each numbered from 0
    if BAD == "null-idx":
        rows["idx"] = [None] + list(range(1, 16))
    data = datasets.Dataset.from_dict(rows)
    if BAD == "no-validation":
        return datasets.DatasetDict(train=data, test=data)
    if BAD == "empty-train":
        return datasets.DatasetDict(train=data.select([]), validation=data)
    if BAD == "empty-validation":
        return datasets.DatasetDict(train=data, validation=data.select([]))
    return datasets.DatasetDict(train=data, validation=data.select(range(8)))
"""


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("repeated-idx", "train split, rows 1 and 2: both have idx 0; give each example an integer id of its own*"),
        ("null-idx", "train split, row 1: idx is missing (null)*"),
        ("label2", "train split: labels [[]2] are outside {0, 1}; the task 'mrpc' has 2 labels (first at *: 2)"),
        ("columns", "train split: missing column(s) sentence1 (it has sentence2, label, question1)*"),
        ("no-validation", "has no 'validation' split (it has train, test)"),
        ("empty-train", "train split has no rows; add sentence pairs to it"),
        ("empty-validation", "validation split has no rows; add sentence pairs to it"),
    ],
)
def test_bad_data_of_an_mrpc_dataset_override_fails_naming_the_fixture_and_records_nothing(
    finetune_project: pytest.Pytester, bad: str, message: str
) -> None:
    """A DatasetDict a conftest returns is checked as data files are: a clear setup error, no traceback from
    torch or datasets, and no baseline that the next run would refuse (repeated ids) or that means nothing."""
    assert_fails_before_recording(
        finetune_project, DATASET_CONFTEST.format(bad=bad), f"the mrpc_dataset fixture of conftest.py*{message}"
    )


# A tokenized_mrpc whose map repeats the validation rows (with their ids), or spoils a label.
TOKENIZED_CONFTEST = """
import datasets
import pytest

@pytest.fixture
def tokenized_mrpc(mrpc_dataset, tokenizer):
    tokenized = mrpc_dataset.map(lambda batch: tokenizer(batch["sentence1"], batch["sentence2"], truncation=True),
                                 batched=True)
    {change}
    return tokenized
"""


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            'tokenized["validation"] = datasets.concatenate_datasets([tokenized["validation"]] * 2)',
            "the trainer's data (the tokenized_mrpc fixture's, or what a trainer fixture gives), validation split, "
            "rows 1 and 25: both have idx *; give each example an integer id of its own, or remove the idx column*",
        ),
        (
            'tokenized["train"] = tokenized["train"].map(lambda row: {"label": row["label"] * 3})',
            "the trainer's data (the tokenized_mrpc fixture's, or what a trainer fixture gives), train split: "
            "labels [[]3] are outside {0, 1}*",
        ),
    ],
    ids=["repeated-validation-ids", "label-3"],
)
def test_bad_data_the_trainer_gets_from_a_tokenized_mrpc_override_fails_before_training(
    finetune_project: pytest.Pytester, change: str, message: str
) -> None:
    assert_fails_before_recording(finetune_project, TOKENIZED_CONFTEST.format(change=change), message)


# A model of the recipe's checkpoint with fewer token embeddings or positions than its tokenizer needs.
SHRUNK_MODEL_CONFTEST = """
import pytest
from transformers import AutoModelForSequenceClassification

@pytest.fixture
def model(finetune_recipe):
    return AutoModelForSequenceClassification.from_pretrained(
        finetune_recipe.model, num_labels=2, ignore_mismatched_sizes=True, {size}
    )
"""


@pytest.mark.parametrize(
    ("size", "message"),
    [
        (
            "vocab_size=10",
            "the tokenizer (BertTokenizer* of 40 tokens) gives token id * in the train split, but the model's input "
            "embeddings hold 10 tokens (vocab_size=10): tokenizer and model do not fit; use the tokenizer the model "
            "was trained with*model.resize_token_embeddings(len(tokenizer))",
        ),
        (
            "max_position_embeddings=8",
            "the train split holds a pair of * tokens, but the model takes at most 8 (max_position_embeddings=8): "
            "the tokenizer (*) does not cut the pairs to fit; tokenize with truncation=True, max_length=8 in a "
            "tokenized_mrpc fixture, or set tokenizer.model_max_length = 8 in a tokenizer fixture",
        ),
    ],
    ids=["vocabulary", "positions"],
)
def test_a_tokenizer_that_does_not_fit_the_model_fails_before_training_naming_the_fix(
    finetune_project: pytest.Pytester, size: str, message: str
) -> None:
    assert_fails_before_recording(finetune_project, SHRUNK_MODEL_CONFTEST.format(size=size), message)


# Training arguments of the conftest's own, which ignore the recipe's learning rate and batch size.
TRAINING_ARGS_CONFTEST = """
import pytest
from transformers import TrainingArguments

@pytest.fixture
def training_args(tmp_path_factory):
    return TrainingArguments(output_dir=str(tmp_path_factory.mktemp("own")), max_steps=2, learning_rate=LR,
                             per_device_train_batch_size=4, eval_strategy="epoch", report_to="none",
                             save_strategy="no", use_cpu=True)
"""
RECORDING_TEST = """
import json
import pytest

@pytest.mark.finetune
def test_quality(finetune_result, trainer):
    with open("recorded.json", "w") as handle:
        json.dump({"used": trainer.args.learning_rate,
                   "recorded": finetune_result.recipe.training_args["learning_rate"]}, handle)
"""


def test_a_training_args_override_is_what_the_baseline_records_and_compares(
    finetune_project: pytest.Pytester,
) -> None:
    """The recipe a baseline records, and the "recipe changed" check, hold the training arguments the trainer
    used: editing the override is a recipe change; recipe options the override ignores are not."""
    finetune_project.makeconftest(TRAINING_ARGS_CONFTEST.replace("LR", "1e-4"))
    finetune_project.makepyfile(test_quality=RECORDING_TEST)
    finetune_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)
    assert json.loads((finetune_project.path / "recorded.json").read_text()) == {"used": 1e-4, "recorded": 1e-4}
    stored = json.loads((finetune_project.path / QUALITY_BASELINE).read_text())["recipe"]["training_args"]
    assert (stored["learning_rate"], stored["per_device_train_batch_size"]) == (1e-4, 4)

    ignored = ("--finetune-set", "learning_rate=3e-5", "--finetune-set", "per_device_train_batch_size=16")
    finetune_project.runpytest("--finetune", *ignored).assert_outcomes(passed=1)

    finetune_project.makeconftest(TRAINING_ARGS_CONFTEST.replace("LR", "5e-2"))
    result = finetune_project.runpytest("--finetune", "--finetune-strict-recipe")  # fails whatever the quality
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*recipe changed*", "training_args.learning_rate*0.0001*0.05*"])


# A compute_metrics of the conftest's own beside a metrics hook.
METRICS_CONFTEST = """
import numpy as np
import pytest

@pytest.fixture
def compute_metrics():
    def compute(prediction):
        predicted = np.argmax(prediction.predictions, axis=-1)
        return {"accuracy": float(np.mean(predicted == prediction.label_ids)), "f1": 0.5}
    return compute

def pytest_finetune_metrics(recipe, logits, label_ids):
    return {"positive_rate": float(np.mean(np.argmax(logits, axis=-1) == 1))}
"""
METRICS_TEST = """
import pytest

@pytest.mark.finetune
def test_quality(finetune_result):
    assert finetune_result.metrics["f1"] == 0.5  # the conftest's compute_metrics scored it
    assert 0.0 <= finetune_result.metrics["positive_rate"] <= 1.0
    assert all("positive_rate" in row for row in finetune_result.history)
"""


def test_metrics_hooks_apply_to_a_compute_metrics_override(finetune_project: pytest.Pytester) -> None:
    finetune_project.makeconftest(METRICS_CONFTEST)
    finetune_project.makepyfile(test_quality=METRICS_TEST)
    result = finetune_project.runpytest("--finetune", "--snapshot-update", "--finetune-tolerance", "positive_rate=0.1")
    result.assert_outcomes(passed=1)
    assert "positive_rate" in json.loads((finetune_project.path / QUALITY_BASELINE).read_text())["metrics"]
