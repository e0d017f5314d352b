"""Loading a checkpoint: remote code stays off unless the recipe turns it on; a tokenizer must be usable."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import tokenizers
from helpers import QUALITY_TEST, SPECIAL_TOKENS, WORDS, assert_fails_clearly
from transformers import BertTokenizerFast, GPT2Config, GPT2Model, PreTrainedTokenizerFast

from pytest_finetune import models
from pytest_finetune.errors import FinetuneError
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


EOS = "<|endoftext|>"


def without_tokenizer_files(tiny_checkpoint: Path, folder: Path, keep: tuple[str, ...] = ()) -> Path:
    """A copy of ``tiny_checkpoint`` as ``model.save_pretrained`` alone writes it (config and weights),
    with the tokenizer files named in ``keep``."""
    shutil.copytree(tiny_checkpoint, folder)
    for file in folder.iterdir():
        if file.name not in ("config.json", "model.safetensors", *keep):
            file.unlink()
    return folder


def save_tiny_gpt2(folder: Path) -> Path:
    """A tiny GPT-2 checkpoint whose tokenizer, like GPT-2's, has no padding token."""
    vocab = {token: index for index, token in enumerate([EOS, *WORDS])}
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token=EOS))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=EOS, eos_token=EOS, unk_token=EOS).save_pretrained(
        folder
    )
    config = GPT2Config(vocab_size=len(vocab), n_embd=32, n_layer=2, n_head=2, n_positions=64)
    GPT2Model(config).save_pretrained(folder)
    return folder


def test_a_folder_without_tokenizer_files_is_refused_naming_the_fix(tiny_checkpoint: Path, tmp_path: Path) -> None:
    folder = without_tokenizer_files(tiny_checkpoint, tmp_path / "model-only")
    with pytest.raises(FinetuneError) as raised:
        models.load_tokenizer(Recipe(model=str(folder)))
    assert str(raised.value) == (
        f"checkpoint folder '{folder}' has no tokenizer files (such as tokenizer.json, tokenizer_config.json, "
        f"vocab.txt); save the checkpoint's tokenizer there with tokenizer.save_pretrained('{folder}'), "
        "or override the tokenizer fixture in a conftest.py"
    )


def test_tokenizer_files_without_the_vocabulary_are_refused(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """transformers 5 builds a tokenizer of the special tokens alone from tokenizer_config.json (4.x fails to load)."""
    folder = without_tokenizer_files(tiny_checkpoint, tmp_path / "settings-only", keep=("tokenizer_config.json",))
    with pytest.raises(FinetuneError, match=rf"checkpoint folder {re.escape(repr(str(folder)))}.*tokenizer"):
        models.load_tokenizer(Recipe(model=str(folder)))


def test_a_tokenizer_of_special_tokens_alone_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """What transformers 5 gives for tokenizer files without a vocabulary; the same check serves Hub ids."""
    vocab_file = tmp_path / "vocab.txt"
    vocab_file.write_text("".join(f"{token}\n" for token in SPECIAL_TOKENS))
    empty = BertTokenizerFast(vocab_file=str(vocab_file))
    monkeypatch.setattr(models.AutoTokenizer, "from_pretrained", lambda *args, **kwargs: empty)
    with pytest.raises(FinetuneError) as raised:
        models.load_tokenizer(Recipe(model="org/bert"))
    assert str(raised.value) == (
        "'org/bert' gives a tokenizer of its 5 special token(s) alone, without a vocabulary (every word would be "
        "the unknown token); point model at a checkpoint folder whose tokenizer save_pretrained wrote, "
        "or override the tokenizer fixture in a conftest.py"
    )


def test_a_tokenizer_without_a_padding_token_is_refused_naming_the_fix(tmp_path: Path) -> None:
    folder = save_tiny_gpt2(tmp_path / "gpt2")
    with pytest.raises(FinetuneError) as raised:
        models.load_tokenizer(Recipe(model=str(folder)))
    assert str(raised.value) == (
        f"the tokenizer of checkpoint folder '{folder}' has no padding token, which the data_collator needs to pad "
        "each batch; override the tokenizer fixture in a conftest.py to set tokenizer.pad_token = "
        "tokenizer.eos_token, and the model fixture to set model.config.pad_token_id = tokenizer.pad_token_id"
    )


def test_a_model_without_its_tokenizer_fails_at_setup_and_records_nothing(
    finetune_project: pytest.Pytester, tiny_checkpoint: Path
) -> None:
    folder = without_tokenizer_files(tiny_checkpoint, finetune_project.path / "model-only")
    finetune_project.makepyfile(test_quality=QUALITY_TEST)
    result = finetune_project.runpytest("--finetune", "--snapshot-update", f"--finetune-model={folder}")
    assert_fails_clearly(
        result, "*ERROR at setup of test_quality*", f"*checkpoint folder '{folder}' has no tokenizer files*"
    )
    assert not (finetune_project.path / "baselines").exists()


PADDING_CONFTEST = """
import pytest
from transformers import AutoModelForSequenceClassification, AutoTokenizer


@pytest.fixture
def tokenizer(finetune_recipe):
    tokenizer = AutoTokenizer.from_pretrained(finetune_recipe.model)
    tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@pytest.fixture
def model(finetune_recipe, tokenizer):
    model = AutoModelForSequenceClassification.from_pretrained(finetune_recipe.model, num_labels=2)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model
"""


def test_a_tokenizer_without_padding_fails_at_setup_and_the_named_fix_trains(
    finetune_project: pytest.Pytester,
) -> None:
    folder = save_tiny_gpt2(finetune_project.path / "gpt2")
    finetune_project.makepyfile(test_quality=QUALITY_TEST)
    result = finetune_project.runpytest("--finetune", "--snapshot-update", f"--finetune-model={folder}")
    assert_fails_clearly(result, "*ERROR at setup of test_quality*", "*has no padding token*")

    finetune_project.makeconftest(PADDING_CONFTEST)
    result = finetune_project.runpytest("--finetune", "--snapshot-update", f"--finetune-model={folder}")
    result.assert_outcomes(passed=1)


def test_a_model_path_to_a_file_of_the_checkpoint_names_its_folder(
    pytester: pytest.Pytester, tiny_checkpoint: Path
) -> None:
    pytester.makepyfile("def test_x(model):\n    pass\n")
    result = pytester.runpytest(f"--finetune-model={tiny_checkpoint / 'config.json'}")
    assert_fails_clearly(
        result,
        f"model '{tiny_checkpoint / 'config.json'}' is a file, not a checkpoint folder; point model at the folder "
        f"that save_pretrained wrote (this file's is '{tiny_checkpoint}')",
    )


def test_a_mistyped_model_folder_is_named_beside_the_hub_failure(
    pytester: pytest.Pytester, tiny_checkpoint: Path
) -> None:
    shutil.copytree(tiny_checkpoint, pytester.path / "tiny-bert")
    pytester.makepyfile("def test_x(model):\n    pass\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        result = pytester.runpytest_subprocess("--finetune-model=tiny-bret")
    assert_fails_clearly(
        result,
        "could not load the model of 'tiny-bret' from the Hugging Face Hub (*); to work offline, *: a checkpoint "
        f"folder; nor is there a folder 'tiny-bret' in {pytester.path}, where a relative path is looked for (there "
        "is 'tiny-bert': a typo?)",
    )
