"""What a team adds around the recipes: one preprocessing for every task."""

from __future__ import annotations

import pytest


@pytest.fixture
def tokenized_dataset(finetune_dataset, tokenizer, finetune_recipe):
    """Each task's text columns, cut at 128 tokens (RTE's longest pairs are near 300), the text columns dropped."""
    columns = finetune_recipe.task_spec.text_columns

    def tokenize(batch):
        return tokenizer(*(batch[column] for column in columns), truncation=True, max_length=128)

    return finetune_dataset.map(tokenize, batched=True, remove_columns=[*columns, "idx"])
