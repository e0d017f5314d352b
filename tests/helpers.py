"""Plain helpers of the tests: a tiny BERT checkpoint and small GLUE-format data, made here, and assertions on
what a pytest session reports (the fixtures that use them are in conftest.py)."""

from __future__ import annotations

import csv
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import transformers
from transformers import BertConfig, BertModel, BertTokenizerFast

WORDS = (
    "the a cat dog sat ran on under mat rug house car big small red blue quickly slowly "
    "he she said that it was is and or not yesterday today company shares rose fell percent"
).split()


SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


GLUE_HEADER = ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]


#: The real GLUE MRPC TSV folder: ../shared/data/mrpc beside the repository, or $PYTEST_FINETUNE_MRPC_DIR.
REAL_MRPC_DIR = Path(
    os.environ.get("PYTEST_FINETUNE_MRPC_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data" / "mrpc"
)


#: A test module with one marked test, and where its baseline goes.
#: A conftest.py that trains on the same texts with their labels shuffled (the same recipe and data files).
SHUFFLED_LABELS = """
import random

import pytest


@pytest.fixture
def tokenized_dataset(tokenized_dataset):
    train = tokenized_dataset["train"]
    labels = list(train["label"])
    random.Random(0).shuffle(labels)
    tokenized_dataset["train"] = train.remove_columns("label").add_column("label", labels)
    return tokenized_dataset
"""

#: The tiny models of these tests predict one class after their few steps: the collapsed-model guard, on by
#: default, would fail them all. Inner sessions run with it off; test_gates.py tests it with PYTEST_ADDOPTS unset.
GUARD_OFF = "-o finetune_collapse_guard=false"

QUALITY_TEST = """
import pytest

@pytest.mark.finetune
def test_quality():
    "The marker alone: fine-tune, then compare with the baseline."
"""


QUALITY_BASELINE = Path("baselines/test_quality/test_quality.json")


#: The environment variable that makes the browser tests fail, rather than skip, without Chromium or Playwright (CI).
REQUIRE_BROWSER = "PYTEST_FINETUNE_REQUIRE_BROWSER"

# (label, sentence1, sentence2) rows; label 1 when sentence2 restates sentence1.
Row = tuple[int, str, str]


def assert_fails_clearly(result: pytest.RunResult, *lines: str) -> None:
    """The session reports one error showing ``lines``, with no traceback or exception chain."""
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(list(lines))
    result.stdout.no_fnmatch_line("*Traceback*")
    result.stdout.no_fnmatch_line("*During handling*")


def assert_usage_error(result: pytest.RunResult, message: str) -> None:
    """The session stopped with a usage error saying ``message`` (fnmatch), with no traceback."""
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    result.stderr.no_fnmatch_line("*Traceback*")


def subprocess_environment(project: pytest.Pytester) -> dict[str, str]:
    """The environment of a pytest subprocess: offline, its own ``datasets`` cache."""
    return {
        **{key: value for key, value in os.environ.items() if key not in ("PYTEST_ADDOPTS", "CI")},
        "PYTEST_ADDOPTS": GUARD_OFF,  # the tiny model collapses (see conftest)
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_DATASETS_CACHE": str(project.path / "hf_datasets"),
    }


def save_tiny_checkpoint(folder: Path, seed: int = 0) -> Path:
    """Write a 2-layer, 32-wide pretrained-style BERT (no classification head) with its
    WordPiece tokenizer to ``folder``.
    """
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS + WORDS)}
    if transformers.__version__.startswith("4."):
        vocab_file = folder.parent / f"{folder.name}-vocab.txt"
        vocab_file.parent.mkdir(parents=True, exist_ok=True)
        vocab_file.write_text("\n".join(vocab) + "\n")
        tokenizer = BertTokenizerFast(vocab_file=str(vocab_file))
    else:  # 5.x builds a 5-token vocabulary from vocab_file: pass the mapping
        tokenizer = BertTokenizerFast(vocab=vocab)
    assert len(tokenizer) == len(vocab), "the tiny tokenizer lost its vocabulary"
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    transformers.set_seed(seed)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_rows(count: int, seed: int = 0) -> list[Row]:
    """Sentence pairs with a learnable rule: paraphrases share their words."""
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        words = rng.sample(WORDS, 6)
        if index % 3:  # two in three are paraphrases, as in MRPC
            other = words[:]
            rng.shuffle(other)
            rows.append((1, " ".join(words), " ".join(other)))
        else:
            rows.append((0, " ".join(words), " ".join(rng.sample(WORDS, 6))))
    return rows


def write_glue_tsv(path: Path, rows: Sequence[Sequence[object]], header: Sequence[str] = GLUE_HEADER) -> Path:
    """Write ``rows`` of (label, sentence1, sentence2) as a GLUE MRPC TSV file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar=None, quotechar=None)
        writer.writerow(header)
        for number, row in enumerate(rows):
            if len(row) == 3:
                label, sentence1, sentence2 = row
                writer.writerow([label, 1000 + number, 2000 + number, sentence1, sentence2])
            else:
                handle.write("\t".join(map(str, row)) + "\n")
    return path


def open_offline(browser: Any, path: Path) -> tuple[Any, list[str]]:
    """A new page of the Playwright ``browser`` showing the file at ``path``, and a list that gathers what went
    wrong while it loads: console errors, uncaught page errors, and each request for anything but a ``file:`` URL
    (refused: the page must need nothing from a network)."""
    problems: list[str] = []
    page = browser.new_page()
    page.on("console", lambda message: problems.append(f"console: {message.text}") if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("request", lambda request: None if request.url.startswith("file:") else problems.append(request.url))

    def route(route: Any) -> None:
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            route.abort()

    page.route("**/*", route)
    page.goto(path.resolve().as_uri())
    return page, problems
