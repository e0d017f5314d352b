"""Loading a checkpoint: remote code stays off unless the recipe turns it on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_finetune import models
from pytest_finetune.recipe import Recipe


@pytest.mark.parametrize("trust_remote_code", [False, True])
def test_trust_remote_code_is_passed_as_the_recipe_says(
    monkeypatch: pytest.MonkeyPatch, tiny_checkpoint: Path, trust_remote_code: bool
) -> None:
    calls: dict[str, dict[str, Any]] = {}

    def spy(name: str, loader: Any) -> None:
        real = loader.from_pretrained

        def from_pretrained(*args: Any, **kwargs: Any) -> Any:
            calls[name] = kwargs
            return real(*args, **kwargs)

        monkeypatch.setattr(loader, "from_pretrained", from_pretrained)

    spy("model", models.AutoModelForSequenceClassification)
    spy("tokenizer", models.AutoTokenizer)
    recipe = Recipe(model=str(tiny_checkpoint), trust_remote_code=trust_remote_code)

    models.load_tokenizer(recipe)
    model = models.load_model(recipe)

    assert calls["model"]["trust_remote_code"] is trust_remote_code
    assert calls["tokenizer"]["trust_remote_code"] is trust_remote_code
    assert calls["model"]["num_labels"] == 2
    assert model.config.num_labels == 2


def test_remote_code_is_off_by_default() -> None:
    assert Recipe().trust_remote_code is False
