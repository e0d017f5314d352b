"""Load a recipe's tokenizer and sequence-classification model from the Hub or a folder."""

from __future__ import annotations

from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel, set_seed
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from .errors import FinetuneError
from .recipe import Recipe, local_path, offline_help


def load_tokenizer(recipe: Recipe) -> PreTrainedTokenizerBase:
    """``AutoTokenizer`` for ``recipe.model``."""
    local = _checked_source(recipe.model)
    try:
        return AutoTokenizer.from_pretrained(recipe.model, trust_remote_code=recipe.trust_remote_code)
    except (OSError, ValueError) as error:
        raise _load_error("tokenizer", recipe.model, local, error) from None


def load_model(recipe: Recipe) -> PreTrainedModel:
    """A fresh ``AutoModelForSequenceClassification`` for ``recipe.model``.

    The global seed is set first, so the new classification head is the same for the
    same seed.
    """
    local = _checked_source(recipe.model)
    set_seed(recipe.seed)
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            recipe.model,
            num_labels=recipe.task_spec.num_labels,
            trust_remote_code=recipe.trust_remote_code,
        )
    except (OSError, ValueError, RuntimeError) as error:
        raise _load_error("model", recipe.model, local, error) from None


def _checked_source(model: str) -> bool:
    """Whether ``model`` is a local checkpoint folder (checked) rather than a Hub id."""
    path = local_path(model, "model folder")
    if path is not None and not (path / "config.json").is_file():
        raise FinetuneError(
            f"model {model!r} is not a checkpoint folder (no config.json); point model at the folder "
            "that save_pretrained wrote"
        )
    return path is not None


def _load_error(what: str, model: str, local: bool, error: Exception) -> FinetuneError:
    where = f"checkpoint folder {model!r}" if local else f"{model!r} from the Hugging Face Hub"
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    hint = "" if local else f"; {offline_help('--finetune-model')}: a checkpoint folder"
    return FinetuneError(f"could not load the {what} of {where} ({type(error).__name__}: {first_line}){hint}")
