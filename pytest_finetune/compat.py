"""Differences between transformers 4.x and 5.x, in one place.

Users may spell training arguments the way either major version does (for example
``evaluation_strategy``, ``no_cuda`` or ``group_by_length=True``);
:func:`translate_training_args` rewrites them for the installed version, and
:func:`training_arg_type` gives the type a value must have.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from transformers import TrainingArguments

_HINTS = typing.get_type_hints(TrainingArguments)
_FIELD_TYPES: dict[str, Any] = {
    field.name: _HINTS[field.name] for field in dataclasses.fields(TrainingArguments) if field.init
}

# Spellings some transformers version uses -> (the other spelling, value mapping, type).
# A type of ``None`` means "the type of the other spelling".
_LEGACY: dict[str, tuple[str, Any, Any]] = {
    "evaluation_strategy": ("eval_strategy", lambda v: v, None),
    "no_cuda": ("use_cpu", lambda v: v, None),
    "group_by_length": ("train_sampling_strategy", lambda v: "group_by_length" if v else "random", bool),
    "train_sampling_strategy": ("group_by_length", lambda v: v == "group_by_length", str),
}

#: Every training-argument name a user may write on this installation.
ACCEPTED_NAMES = frozenset(_FIELD_TYPES) | frozenset(
    name for name, (other, _, _) in _LEGACY.items() if other in _FIELD_TYPES
)


def training_arg_type(name: str) -> Any:
    """The annotated type of training argument ``name`` (any accepted spelling)."""
    if name in _FIELD_TYPES:
        return _FIELD_TYPES[name]
    other, _, own_type = _LEGACY[name]
    return own_type or _FIELD_TYPES[other]


def translate_training_args(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Rewrite ``kwargs`` (accepted names only) for the installed ``TrainingArguments``."""
    translated: dict[str, Any] = {}
    for name, value in kwargs.items():
        if name not in _FIELD_TYPES:
            name, convert, _ = _LEGACY[name]
            value = convert(value)
        translated[name] = value
    return translated
