"""pytest-finetune: fixtures, a marker and a switch for fine-tuning regression tests."""

from .errors import FinetuneError
from .metrics import accuracy_and_f1
from .recipe import Recipe
from .training import FinetuneResult

__all__ = ["FinetuneError", "FinetuneResult", "Recipe", "accuracy_and_f1"]
__version__ = "0.1.0"
