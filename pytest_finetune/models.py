"""Load a recipe's tokenizer and sequence-classification model from the Hub or a folder."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel, set_seed
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from .errors import FinetuneError
from .recipe import Recipe, looks_like_path

OFFLINE_HELP = (
    "to work offline, point the recipe at a local checkpoint folder: --finetune-model PATH "
    "(or ini finetune_model, env PYTEST_FINETUNE_MODEL, marker model=...)"
)


def load_tokenizer(recipe: Recipe) -> PreTrainedTokenizerBase:
    """``AutoTokenizer`` for ``recipe.model``."""
    _check_source(recipe.model)
    try:
        return AutoTokenizer.from_pretrained(recipe.model, trust_remote_code=recipe.trust_remote_code)
    except (OSError, ValueError) as error:
        raise _load_error("tokenizer", recipe.model, error) from None


def load_model(recipe: Recipe) -> PreTrainedModel:
    """A fresh ``AutoModelForSequenceClassification`` for ``recipe.model``.

    The global seed is set first, so the new classification head is the same for the
    same seed.
    """
    _check_source(recipe.model)
    set_seed(recipe.seed)
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            recipe.model,
            num_labels=recipe.task_spec.num_labels,
            trust_remote_code=recipe.trust_remote_code,
        )
    except (OSError, ValueError, RuntimeError) as error:
        raise _load_error("model", recipe.model, error) from None


def _check_source(model: str) -> None:
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").exists():
            raise FinetuneError(
                f"model {model!r} is not a checkpoint folder (no config.json); point model at the folder "
                "that save_pretrained wrote"
            )
    elif looks_like_path(model):
        raise FinetuneError(f"model folder {model!r} does not exist (resolved to {path.resolve()})")


def _load_error(what: str, model: str, error: Exception) -> FinetuneError:
    local = Path(model).expanduser().exists()
    where = f"checkpoint folder {model!r}" if local else f"{model!r} from the Hugging Face Hub"
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    hint = "" if local else f"; {OFFLINE_HELP}"
    return FinetuneError(f"could not load the {what} of {where} ({type(error).__name__}: {first_line}){hint}")
