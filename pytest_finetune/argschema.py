"""The fields of transformers' ``TrainingArguments`` as plain data: each one's type and the
values transformers lists for it, kept in pytest's cache between runs.

Checking a training argument that a marker, an ini line or an option sets needs only these,
yet importing ``TrainingArguments`` (and torch with it) takes about 3 s on a 2-core machine:
a run without ``--finetune`` would pay it on every collection. So the first run that checks an
argument describes the fields as JSON under the cache key
``pytest-finetune/training-args/<transformers version>``, stamped with the installation
(transformers' version and its ``training_args.py``: path, size and modification time), and
later runs rebuild the types from it without importing transformers. An entry whose stamp
differs, or that does not read back, is ignored and written again; without pytest's cache
(``-p no:cacheprovider``) the fields come from transformers each run.

A rebuilt type checks values as the original does: builtins stay themselves, unions and
literals are rebuilt with ``typing``, an enumeration becomes an ``Enum`` of the same name and
members, and any other class (``ParallelismConfig``) a class of the same name, which
:func:`pytest_finetune.recipe.convert_value` passes through unchecked, as it does the original.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import importlib.metadata
import importlib.util
import operator
import os
import types
import typing
from collections.abc import Mapping
from typing import Any

import pytest

#: pytest cache key of the description, under which each transformers version has its own entry.
CACHE_KEY = "pytest-finetune/training-args"

_BUILTINS: dict[str, Any] = {"bool": bool, "int": int, "float": float, "str": str, "None": type(None)}


@dataclasses.dataclass(frozen=True)
class FieldTable:
    """The installed ``TrainingArguments``' fields that its constructor takes."""

    #: Field name -> its type, as ``typing.get_type_hints`` gives it (or rebuilt alike).
    types: Mapping[str, Any]
    #: Field name -> the values transformers lists for it (its field's ``choices``), where it lists them.
    choices: Mapping[str, tuple[str, ...]]


_pytest_cache: pytest.Cache | None = None
_table: FieldTable | None = None


def use_pytest_cache(cache: pytest.Cache | None) -> None:
    """Keep the description in ``cache`` (``config.cache``; ``None`` without pytest's cache provider)."""
    global _pytest_cache
    _pytest_cache = cache


def field_table() -> FieldTable:
    """The installed ``TrainingArguments``' fields: from pytest's cache where it holds them for
    this installation, else from transformers (stored in the cache for the next run)."""
    global _table
    if _table is None:
        _table = _from_cache(_pytest_cache) or _from_transformers(_pytest_cache)
    return _table


def describe(hint: Any) -> Any:
    """``hint`` (a field's type) as JSON-ready data that :func:`rebuild` turns back into a type."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return {"union": [describe(arm) for arm in typing.get_args(hint)]}
    if origin is typing.Literal:
        return {"literal": list(typing.get_args(hint))}
    if hint is dict or origin is dict:
        return "dict"
    if hint is list or origin is list:
        return "list"
    for name, builtin in _BUILTINS.items():
        if hint is builtin:
            return name
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return {"enum": hint.__name__, "members": [[member.name, member.value] for member in hint]}
    return {"class": getattr(hint, "__name__", str(hint))}


def rebuild(described: Any) -> Any:
    """The type that :func:`describe` described (``ValueError`` for anything else)."""
    if described == "dict":
        return dict
    if described == "list":
        return list
    if isinstance(described, str) and described in _BUILTINS:
        return _BUILTINS[described]
    if isinstance(described, dict) and len(described) in (1, 2):
        if list(described) == ["union"] and described["union"]:
            return functools.reduce(operator.or_, map(rebuild, described["union"]))
        if list(described) == ["literal"] and described["literal"]:
            return typing.Literal[tuple(described["literal"])]
        if list(described) == ["class"] and isinstance(described["class"], str):
            return type(described["class"], (), {})
        if sorted(described) == ["enum", "members"]:
            members = [(str(name), value) for name, value in described["members"]]
            return enum.Enum(str(described["enum"]), members)  # type: ignore[misc]
    raise ValueError(f"not a described type: {described!r}")


def _stamp() -> list[Any] | None:
    """What identifies the installed transformers' ``TrainingArguments``, found without importing
    transformers; ``None`` where it cannot be found (then nothing is cached)."""
    try:
        spec = importlib.util.find_spec("transformers")
        version = importlib.metadata.version("transformers")
    except (ImportError, ValueError, importlib.metadata.PackageNotFoundError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "training_args.py")
    try:
        status = os.stat(path)
    except OSError:
        return None
    return [version, path, status.st_size, status.st_mtime_ns]


def _from_cache(cache: pytest.Cache | None) -> FieldTable | None:
    stamp = _stamp()
    if cache is None or stamp is None:
        return None
    entry = cache.get(f"{CACHE_KEY}/{stamp[0]}", None)
    if not isinstance(entry, dict) or entry.get("stamp") != stamp or not isinstance(entry.get("fields"), dict):
        return None
    try:
        return FieldTable(
            types={name: rebuild(field["type"]) for name, field in entry["fields"].items()},
            choices={
                name: tuple(map(str, field["choices"])) for name, field in entry["fields"].items() if "choices" in field
            },
        )
    except (AttributeError, KeyError, TypeError, ValueError):  # an entry written otherwise: describe anew
        return None


def _from_transformers(cache: pytest.Cache | None) -> FieldTable:
    from transformers import TrainingArguments

    hints = typing.get_type_hints(TrainingArguments)
    fields = [field for field in dataclasses.fields(TrainingArguments) if field.init]
    table = FieldTable(
        types={field.name: hints[field.name] for field in fields},
        choices={field.name: tuple(field.metadata["choices"]) for field in fields if "choices" in field.metadata},
    )
    stamp = _stamp()
    if cache is not None and stamp is not None:
        described = {
            name: {"type": describe(hint), **({"choices": list(table.choices[name])} if name in table.choices else {})}
            for name, hint in table.types.items()
        }
        cache.set(f"{CACHE_KEY}/{stamp[0]}", {"stamp": stamp, "fields": described})
    return table
