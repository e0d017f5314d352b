"""Load a recipe's tokenizer and sequence-classification model from the Hub or a folder."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

from safetensors import SafetensorError
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel, set_seed
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from .compat import mismatched_weights
from .errors import FinetuneError
from .recipe import Recipe, local_path, offline_help

#: Files transformers builds a tokenizer from: its own serialization, its settings, or the vocabulary
#: file of one of its tokenizer classes. A checkpoint folder holds at least one where a tokenizer's
#: ``save_pretrained`` wrote to it.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
    "sentencepiece.model",
    "spm.model",
    "tokenizer.model",
)


def load_tokenizer(recipe: Recipe, hub_note: Callable[[], str] | None = None) -> PreTrainedTokenizerBase:
    """``AutoTokenizer`` for ``recipe.model``, checked by :func:`_check_tokenizer`; from a checkpoint
    folder, its ``name_or_path`` is left empty (the result cache knows the folder by its content).
    ``hub_note()`` ends the message of a Hub id the Hub does not give (where a folder of that name was looked for).

    A checkpoint folder without tokenizer files (one ``model.save_pretrained`` alone wrote) is
    refused before loading: transformers 5 would build a tokenizer of the special tokens alone.
    """
    local = _checked_source(recipe.model)
    if local and not any((Path(recipe.model).expanduser() / name).is_file() for name in TOKENIZER_FILES):
        raise _vocabulary_error(
            recipe.model, local, f"has no tokenizer files (such as {', '.join(TOKENIZER_FILES[:3])})"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(recipe.model, trust_remote_code=recipe.trust_remote_code)
    except (OSError, ValueError, ImportError) as error:
        raise _load_error("tokenizer", recipe.model, local, error, hub_note) from None
    _check_tokenizer(tokenizer, recipe.model, local)
    # A loading option that transformers keeps among the tokenizer's settings (true whenever
    # HF_HUB_OFFLINE is set): left there, it would change datasets' fingerprint of every
    # tokenization, and switching the Hub off would tokenize again (datasets' own cache misses;
    # the result cache knows the tokenized data by content).
    tokenizer.init_kwargs.pop("local_files_only", None)
    if local:  # its path, likewise: the same checkpoint at another path (another clone, CI's) tokenizes the same
        tokenizer.name_or_path = tokenizer.init_kwargs["name_or_path"] = ""
    return tokenizer


def _check_tokenizer(tokenizer: PreTrainedTokenizerBase, model: str, local: bool) -> None:
    """Refuse a tokenizer whose vocabulary is its special tokens alone (what transformers 5 builds
    from tokenizer files that lack the vocabulary, ``tokenizer_config.json`` alone, say) or that
    has no padding token (GPT-2's, say), which the ``data_collator`` needs to pad each batch."""
    if len(tokenizer) <= len(set(tokenizer.all_special_tokens)):
        raise _vocabulary_error(
            model,
            local,
            f"gives a tokenizer of its {len(tokenizer)} special token(s) alone, without a vocabulary "
            "(every word would be the unknown token)",
        )
    if tokenizer.pad_token is None:
        raise FinetuneError(
            f"the tokenizer of {_where(model, local)} has no padding token, which the data_collator needs to pad "
            "each batch; override the tokenizer fixture in a conftest.py to set tokenizer.pad_token = "
            "tokenizer.eos_token, and the model fixture to set model.config.pad_token_id = tokenizer.pad_token_id"
        )


def _vocabulary_error(model: str, local: bool, problem: str) -> FinetuneError:
    """The checkpoint ``model`` lacks its tokenizer's vocabulary (``problem`` says how)."""
    if local:
        fix = f"save the checkpoint's tokenizer there with tokenizer.save_pretrained({model!r})"
    else:
        fix = "point model at a checkpoint folder whose tokenizer save_pretrained wrote"
    return FinetuneError(f"{_where(model, local)} {problem}; {fix}, or override the tokenizer fixture in a conftest.py")


def load_model(recipe: Recipe, hub_note: Callable[[], str] | None = None) -> PreTrainedModel:
    """A fresh ``AutoModelForSequenceClassification`` for ``recipe.model`` (``hub_note``: as :func:`load_tokenizer`'s).

    The global seed is set first, so the new classification head is the same for the
    same seed. The head follows the task (:attr:`~pytest_finetune.tasks.Task.head_config`: its number of
    labels and their names, or one output for a regression). A checkpoint whose classification head
    has another number of labels (one fine-tuned on MNLI, say) is refused, naming ``num_labels``:
    replacing its trained head has to be asked for (see :func:`_mismatch_error`).
    """
    local = _checked_source(recipe.model)
    set_seed(recipe.seed)
    try:
        # Loaded with mismatched sizes allowed so that the mismatch can be named, then refused below.
        model, loading_info = AutoModelForSequenceClassification.from_pretrained(
            recipe.model,
            **recipe.task_spec.head_config,
            trust_remote_code=recipe.trust_remote_code,
            ignore_mismatched_sizes=True,
            output_loading_info=True,
        )
    except (OSError, ValueError, RuntimeError, pickle.UnpicklingError, SafetensorError) as error:
        raise _load_error("model", recipe.model, local, error, hub_note) from None
    mismatched = mismatched_weights(loading_info, model)
    if mismatched:
        raise _mismatch_error(recipe, local, mismatched, model.base_model_prefix)
    return model


def _mismatch_error(
    recipe: Recipe, local: bool, mismatched: list[tuple[str, str, str]], base_prefix: str
) -> FinetuneError:
    """The checkpoint holds weights whose shapes differ from the model built for the task: its
    classification head (another number of labels) or, for a broken checkpoint, its encoder."""
    where = _where(recipe.model, local)
    needed = recipe.task_spec.num_labels
    shapes = "; ".join(f"{key}: {stored} in the checkpoint, {built} needed" for key, stored, built in mismatched)
    if any(key.startswith(f"{base_prefix}.") for key, _, _ in mismatched):
        return FinetuneError(
            f"{where} holds weights whose shapes do not match its config.json ({shapes}); point model at a "
            "checkpoint folder that save_pretrained wrote"
        )
    try:
        stored_labels = AutoConfig.from_pretrained(recipe.model, trust_remote_code=recipe.trust_remote_code).num_labels
    except (OSError, ValueError):
        stored_labels = "?"
    return FinetuneError(
        f"{where} has a classification head for num_labels={stored_labels} ({shapes}); the task "
        f"{recipe.task!r} needs num_labels={needed}: point model at the checkpoint without that head (its base "
        "model), or, to start from it with a new head, override the model fixture in a conftest.py with "
        f"AutoModelForSequenceClassification.from_pretrained(..., num_labels={needed}, ignore_mismatched_sizes=True)"
    )


def _checked_source(model: str) -> bool:
    """Whether ``model`` is a local checkpoint folder (checked) rather than a Hub id."""
    path = local_path(model, "model folder")
    if path is not None and path.is_file():
        raise FinetuneError(
            f"model {model!r} is a file, not a checkpoint folder; point model at the folder that save_pretrained "
            f"wrote (this file's is {str(path.parent)!r})"
        )
    if path is not None and not (path / "config.json").is_file():
        raise FinetuneError(
            f"model {model!r} is not a checkpoint folder (no config.json); point model at the folder "
            "that save_pretrained wrote"
        )
    return path is not None


def _where(model: str, local: bool) -> str:
    """``model`` for a message: ``checkpoint folder '...'`` or the Hub id."""
    return f"checkpoint folder {model!r}" if local else repr(model)


def _load_error(
    what: str, model: str, local: bool, error: Exception, hub_note: Callable[[], str] | None = None
) -> FinetuneError:
    """The error for a ``what`` (tokenizer, model) that transformers could not load; ``hub_note()`` ends the
    message where ``model`` is a Hub id."""
    where = f"checkpoint folder {model!r}" if local else f"{model!r} from the Hugging Face Hub"
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if "trust_remote_code" in str(error):
        hint = (
            "; the checkpoint's own code runs only if you trust it: set trust_remote_code=True "
            "(marker trust_remote_code=True, --finetune-set trust_remote_code=true or ini finetune_training_args)"
        )
    elif local:
        hint = (
            "; point model at a folder that save_pretrained wrote (config.json, model.safetensors or "
            "pytorch_model.bin, and the tokenizer files)"
        )
    else:
        hint = f"; {offline_help('--finetune-model')}: a checkpoint folder{hub_note() if hub_note else ''}"
    return FinetuneError(f"could not load the {what} of {where} ({type(error).__name__}: {first_line}){hint}")
