"""What a team adds around the recipe: its own preprocessing."""

from __future__ import annotations

import pytest


@pytest.fixture
def tokenized_mrpc(mrpc_dataset, tokenizer):
    """The team's preprocessing, pinned: pairs cut at 128 tokens and the text columns dropped.

    MRPC's longest pair is 103 tokens, so this computes what the seed recipe computes;
    a change here (a new cleaning step, a shorter cut) is what the baselines catch.
    """

    def tokenize(batch):
        return tokenizer(batch["sentence1"], batch["sentence2"], truncation=True, max_length=128)

    return mrpc_dataset.map(tokenize, batched=True, remove_columns=["sentence1", "sentence2", "idx"])
