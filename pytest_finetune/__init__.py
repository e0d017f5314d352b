"""pytest-finetune: fixtures, a marker and a switch for fine-tuning regression tests.

The plugin loads with every pytest run, so this package imports torch, transformers and
datasets only when a fine-tune needs them; ``FinetuneResult`` and ``accuracy_and_f1``
are loaded on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import FinetuneError
from .recipe import Recipe

__all__ = ["FinetuneError", "FinetuneResult", "Recipe", "accuracy_and_f1"]
__version__ = "0.1.0"

_LAZY = {"FinetuneResult": ".result", "accuracy_and_f1": ".metrics"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
