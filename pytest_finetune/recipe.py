"""What one fine-tune is: the task, model, data, seed and training arguments.

A :class:`Recipe` is built from layers of keyword overrides (ini file, environment,
command line, marker, hooks) by :func:`build_recipe`; every keyword is checked and
converted by :func:`convert_value`, so a wrong name or type is reported once, with the
place it came from.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import compat
from .errors import FinetuneError
from .tasks import CUSTOM_TASK_KEYS, REGRESSION, TASKS, Task, custom_task

#: Training arguments of the seed recipe (the Hugging Face course, chapter 3).
SEED_TRAINING_ARGS: dict[str, Any] = {
    "learning_rate": 5e-5,
    "per_device_train_batch_size": 8,
    "per_device_eval_batch_size": 8,
    "num_train_epochs": 3.0,
    "eval_strategy": "epoch",
}

#: Faster, with the seed's hyperparameters: training batches of pairs of similar length,
#: still shuffled (less padding: 25 % fewer token positions per MRPC epoch, measured by
#: benchmarks/padding.py). Another order of the same pairs, so it is part of the recipe.
FAST_TRAINING_ARGS: dict[str, Any] = {"train_sampling_strategy": "group_by_length"}

#: Settings that change how a run is recorded, never what it computes: no checkpoints,
#: no tracker integrations, no progress bar, and one training-loss log per epoch so the
#: history has the seed's per-epoch table.
HOUSEKEEPING_TRAINING_ARGS: dict[str, Any] = {
    "save_strategy": "no",
    "report_to": "none",
    "logging_strategy": "epoch",
    "disable_tqdm": True,
}

#: Training arguments that change how a run is named, logged, saved, shared or fed its batches, never
#: what it computes (the weights, the metrics), in 5.x and 4.x names. A baseline's recipe leaves them
#: out, whatever set them (the recipe, a hook, a ``training_args`` or ``trainer`` fixture), so changing
#: one is no new recipe; every other field counts, those a newer transformers adds included.
RECORDING_ARGS = frozenset(
    {
        *HOUSEKEEPING_TRAINING_ARGS,
        # where, and under which name, a run writes
        *("output_dir", "overwrite_output_dir", "logging_dir", "run_name", "project"),
        *("trackio_space_id", "trackio_bucket_id", "trackio_static_space_id"),
        # what is logged, and how
        *("logging_steps", "logging_first_step", "logging_nan_inf_filter", "log_level", "log_level_replica"),
        *("log_on_each_node", "include_num_input_tokens_seen", "include_tokens_per_second", "skip_memory_metrics"),
        "debug",
        # checkpoints, resuming from one, the Hub
        *("save_steps", "save_total_limit", "save_safetensors", "save_on_each_node", "save_only_model"),
        *("enable_jit_checkpoint", "resume_from_checkpoint", "ignore_data_skip"),
        "restore_callback_states_from_checkpoint",
        *("push_to_hub", "hub_model_id", "hub_strategy", "hub_token", "hub_private_repo", "hub_always_push"),
        *("hub_revision", "push_to_hub_model_id", "push_to_hub_organization", "push_to_hub_token"),
        # what a script built on TrainingArguments runs: Trainer reads none of them
        *("do_train", "do_eval", "do_predict"),
        # the worker processes and memory that load and hold the same batches
        *("dataloader_num_workers", "dataloader_prefetch_factor", "dataloader_persistent_workers"),
        *("dataloader_pin_memory", "dataloader_multiprocessing_context", "eval_accumulation_steps"),
        "torch_empty_cache_steps",
        # the process's place in a distributed launch
        *("local_rank", "ddp_backend", "ddp_timeout"),
    }
)

#: The training arguments a recipe starts from (read-only).
DEFAULT_TRAINING_ARGS: Mapping[str, Any] = types.MappingProxyType(
    {**SEED_TRAINING_ARGS, **FAST_TRAINING_ARGS, **HOUSEKEEPING_TRAINING_ARGS}
)

#: Keywords that are fields of the recipe itself, with their types.
RECIPE_FIELDS: dict[str, Any] = {
    "task": str,
    "model": str,
    "data": str,
    "seed": int,
    "trust_remote_code": bool,
    # a task of the user's (see tasks.custom_task): names, as a list or comma-separated text
    "text_columns": list | str,
    "label_column": str,
    "labels": list | str,
    "metrics": list | str,
}


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One resolved fine-tuning recipe.

    ``model`` and ``data`` are a Hugging Face Hub id or a local path; ``data`` ``None``
    means the task's own Hub dataset. ``training_args`` are keyword arguments for
    ``transformers.TrainingArguments`` in 5.x spelling, whichever version is installed
    (:func:`pytest_finetune.compat.installed_training_args` respells them), the seed going
    in separately through ``seed``. ``text_columns``, ``label_column``, ``labels`` and ``metrics``
    declare a task of the user's named ``task`` (:func:`~pytest_finetune.tasks.custom_task`); ``None``
    for a GLUE task.
    """

    task: str = "mrpc"
    model: str = "bert-base-uncased"
    data: str | None = None
    seed: int = 42
    trust_remote_code: bool = False
    training_args: Mapping[str, Any] = dataclasses.field(default_factory=lambda: DEFAULT_TRAINING_ARGS, hash=False)
    text_columns: tuple[str, ...] | None = None
    label_column: str | None = None
    labels: tuple[str, ...] | str | None = None
    metrics: tuple[str, ...] | None = None

    def __deepcopy__(self, memo: dict[int, Any]) -> Recipe:
        return self  # immutable: copies of a result share their recipe

    @property
    def is_custom(self) -> bool:
        """Whether the recipe declares a task of the user's rather than naming a GLUE task."""
        return self.text_columns is not None

    @property
    def task_spec(self) -> Task:
        """The :class:`Task` this recipe names, or declares (:func:`~pytest_finetune.tasks.custom_task`)."""
        if not self.is_custom:
            return TASKS[self.task]
        assert self.text_columns is not None
        return custom_task(self.task, self.text_columns, self.label_column, self.labels, self.metrics)

    @property
    def custom_task_fields(self) -> dict[str, Any]:
        """The fields declaring a task of the user's as a baseline records them (lists); none for a GLUE task."""
        fields = {key: getattr(self, key) for key in CUSTOM_TASK_KEYS if getattr(self, key) is not None}
        return {key: list(value) if isinstance(value, tuple) else value for key, value in fields.items()}

    @property
    def data_source(self) -> str:
        """``data``, or the task's Hub dataset when none is set."""
        return self.data if self.data is not None else self.task_spec.hub_dataset

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view, keys sorted (a GLUE task's recipe without the fields of a task of the user's)."""
        as_dict = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        as_dict = {key: value for key, value in as_dict.items() if key not in CUSTOM_TASK_KEYS}
        as_dict |= self.custom_task_fields
        return dict(sorted((as_dict | {"training_args": dict(sorted(self.training_args.items()))}).items()))

    @property
    def defining_training_args(self) -> dict[str, Any]:
        """The training arguments that decide what is computed (all but :data:`RECORDING_ARGS`)."""
        return {key: value for key, value in self.training_args.items() if key not in RECORDING_ARGS}

    @property
    def fingerprint(self) -> str:
        """A stable hash of everything in the recipe (sha256 of its canonical JSON)."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def describe(self) -> str:
        """A one-line summary for messages and reports."""
        return f"{self.task} | model={self.model} | data={self.data_source} | seed={self.seed}"


def build_recipe(layers: Iterable[tuple[str, Mapping[str, Any]]], check_task: bool = True) -> Recipe:
    """Apply keyword layers, lowest priority first, to the seed recipe.

    Each layer is ``(where, {keyword: value})`` with values already checked and
    converted by :func:`convert_value`; with ``check_task``, the task they name or declare is checked too
    (not before a ``pytest_finetune_adjust_recipe`` hook, which may declare it).
    """
    fields: dict[str, Any] = {}
    setters: dict[str, str] = {}
    training_args = dict(DEFAULT_TRAINING_ARGS)
    for where, overrides in layers:
        for key, value in overrides.items():
            if key in RECIPE_FIELDS:
                fields[key] = value
                setters[key] = where
            else:
                training_args.update(compat.modern_training_args({key: value}))
    recipe = Recipe(**fields, training_args=types.MappingProxyType(dict(sorted(training_args.items()))))
    if check_task:
        _check_task(recipe, setters)
    return recipe


def check_named_task(layers: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
    """Fail on a task the session's layers (ini file, environment, command line) name that is no GLUE task where
    they declare none (no ``text_columns``): a mistyped name, reported before any test runs."""
    fields = {key: value for _, overrides in layers for key, value in overrides.items()}
    if fields.get("task", "mrpc") not in TASKS and "text_columns" not in fields:
        build_recipe(layers)


def _check_task(recipe: Recipe, setters: Mapping[str, str]) -> None:
    """Fail on a task that is neither a GLUE task nor declared (the message lists both ways), or a declaration
    that cannot work (:func:`~pytest_finetune.tasks.custom_task`), naming where its keywords were set."""
    declared = [key for key in CUSTOM_TASK_KEYS if key in setters]
    where = "; ".join(dict.fromkeys(setters[key] for key in ("task", *declared) if key in setters)) or "recipe"
    if recipe.task not in TASKS and not recipe.is_custom:
        raise FinetuneError(
            f"{where}: unknown task {recipe.task!r}; known tasks: {', '.join(sorted(TASKS))}; or declare a task of "
            "your own with text_columns (and label_column, labels, metrics): see docs/tasks.md"
        )
    if declared and not recipe.is_custom:
        raise FinetuneError(
            f"{where}: {', '.join(declared)} declare a task of your own and need text_columns too "
            "(finetune_text_columns = sentence, marker text_columns=['sentence'])"
        )
    if not recipe.is_custom:
        return
    try:
        task = recipe.task_spec
    except FinetuneError as error:
        raise FinetuneError(f"{where}: {error}") from None
    if recipe.data is None:
        raise FinetuneError(
            f"{where}: the task {task.name!r} is your own and has no Hub dataset of its own; point data at its "
            "files (finetune_data, --finetune-data, marker data=...): a folder of train and validation csv, json, "
            "jsonl or parquet files"
        )


def looks_like_path(source: str) -> bool:
    """Whether a model or data value can only be meant as a path (Hub ids are ``name`` or ``org/name``)."""
    return source.startswith((".", "/", "~")) or source.count("/") > 1 or "\\" in source


def local_path(source: str, what: str) -> Path | None:
    """The local path ``source`` names, or ``None`` for a Hub id.

    A value that can only be a path (see :func:`looks_like_path`) but does not exist
    is an error naming ``what`` (``"model folder"``, ``"data folder"``).
    """
    path = Path(source).expanduser()
    if path.exists():
        return path
    if looks_like_path(source):
        raise FinetuneError(f"{what} {source!r} does not exist (resolved to {path.resolve()}); {_MISSING_FIX[what]}")
    return None


#: How to get what a missing folder should hold, offline and with the Hub.
_MISSING_FIX = {
    "data folder": "without the Hub, point finetune_data (--finetune-data, PYTEST_FINETUNE_DATA) at a folder of the "
    "task's files (a GLUE TSV folder or train/validation csv, json, jsonl or parquet files; see docs/data.md); "
    "with the Hub, at a Hub dataset id (nyu-mll/glue), or leave it unset for the task's own",
    "model folder": "without the Hub, point finetune_model (--finetune-model, PYTEST_FINETUNE_MODEL) at a folder "
    "that save_pretrained wrote, with its tokenizer; with the Hub, at a Hub model id (bert-base-uncased)",
}


def offline_help(option: str) -> str:
    """How to point a recipe at local files instead of the Hub, for ``--finetune-model`` or ``--finetune-data``."""
    key = option.removeprefix("--finetune-")
    return (
        f"to work offline, point the recipe at local files: {option}=PATH "
        f"(or ini finetune_{key}, env PYTEST_FINETUNE_{key.upper()}, marker {key}=...)"
    )


def convert_value(key: str, value: Any, *, where: str, from_text: bool = False) -> Any:
    """Check ``key`` and convert ``value`` to its field's type.

    ``from_text`` values come from the command line, ini file or environment and are
    parsed (``"3"`` -> 3, ``"true"`` -> True, JSON for dicts and lists); other values
    must already have the right Python type.
    """
    choices: tuple[str, ...] = ()
    if key in RECIPE_FIELDS:
        hint = RECIPE_FIELDS[key]
    elif key == "output_dir":
        raise FinetuneError(
            f"{where}: output_dir is chosen by pytest-finetune (a temporary folder per test); "
            "to write elsewhere, set it in a pytest_finetune_adjust_training_args hook"
        )
    else:
        if key not in compat.accepted_names():
            raise FinetuneError(
                f"{where}: unknown keyword {key!r}; use a recipe field ({', '.join(RECIPE_FIELDS)}) "
                "or a transformers.TrainingArguments field such as learning_rate, num_train_epochs, max_steps"
            )
        hint = compat.training_arg_type(key)
        choices = compat.training_arg_choices(key)
    try:
        converted = _convert(hint, value, from_text)
        _check_allowed(key, converted, choices)
    except (TypeError, ValueError) as error:
        shown = f"{value!r}" if not from_text else f"{value}"
        raise FinetuneError(f"{where}: {key}={shown} is not valid: {error}") from None
    if key in CUSTOM_TASK_KEYS:
        return _task_names(key, converted, where)
    return converted


def _task_names(key: str, value: Any, where: str) -> str | tuple[str, ...]:
    """The value of a keyword declaring a task of the user's: ``label_column`` as given; the others as a tuple of
    names (text is split at commas), ``labels`` of :data:`~pytest_finetune.tasks.REGRESSION` alone as that word."""
    if key == "label_column":
        return str(value).strip()
    names = [part for part in value.split(",")] if isinstance(value, str) else list(value)
    if not all(isinstance(name, str) for name in names):
        raise FinetuneError(f"{where}: {key}={value!r} is not valid: expected names (strings), e.g. ['neg', 'pos']")
    names = [name.strip() for name in names]
    return REGRESSION if key == "labels" and names == [REGRESSION] else tuple(names)


#: Keywords whose values transformers or numpy refuse with a traceback, or that mean another
#: thing under transformers 4 and 5: keyword -> (whether a value is allowed, what is allowed).
_ALLOWED_VALUES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": (lambda seed: 0 <= seed <= 2**32 - 1, "a seed from 0 to 2**32 - 1 (numpy's range)"),
    "per_device_train_batch_size": (lambda size: size >= 1, "a batch size of 1 or more"),
    "per_device_eval_batch_size": (lambda size: size >= 1, "a batch size of 1 or more"),
    "gradient_accumulation_steps": (lambda steps: steps >= 1, "1 or more steps"),
    # transformers 5 reads a warmup_steps below 1 as this ratio, and 1 or more as steps
    "warmup_ratio": (lambda ratio: 0 <= ratio < 1, "a share of the training steps, from 0 up to (not including) 1"),
}


def _check_allowed(key: str, value: Any, choices: tuple[str, ...]) -> None:
    """``ValueError`` naming what is allowed where ``key`` takes only some values of its type:
    those in :data:`_ALLOWED_VALUES`, or one of ``choices`` where transformers lists them."""
    if value is not None and choices and value not in choices:
        raise ValueError(f"expected one of {', '.join(map(repr, choices))}")
    if value is not None and key in _ALLOWED_VALUES:
        allowed, description = _ALLOWED_VALUES[key]
        if not allowed(value):
            raise ValueError(f"expected {description}")


def _type_name(hint: Any) -> str:
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return "one of " + ", ".join(repr(member.value) for member in hint)
    if typing.get_origin(hint) is typing.Literal:
        return " or ".join(repr(arg) for arg in typing.get_args(hint))
    return getattr(hint, "__name__", str(hint)).replace("NoneType", "None")


def parse_bool(text: str) -> bool:
    """``true``/``1``/``yes``/``on`` or ``false``/``0``/``no``/``off`` (any case); else ``ValueError``."""
    word = text.strip().lower()
    if word in ("true", "1", "yes", "on"):
        return True
    if word in ("false", "0", "no", "off"):
        return False
    raise ValueError("expected true or false")


# Union arms are tried in this order, so "3" becomes an int before it becomes a str.
_ARM_ORDER = (bool, int, float)


def _arm_rank(arm: Any) -> int:
    if arm in _ARM_ORDER:
        return _ARM_ORDER.index(arm)
    return len(_ARM_ORDER) + (1 if arm is str else 0)


def _finite(number: float) -> float:
    """``number``, or ``ValueError`` for NaN and infinities (a recipe takes finite numbers only)."""
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {number}")
    return number


def _parsed(parse: Callable[[str], Any], text: str, expected: str) -> Any:
    """``parse(text)`` (stripped), or ``ValueError`` saying what was ``expected`` (not Python's own words)."""
    try:
        return parse(text.strip())
    except ValueError:
        raise ValueError(f"expected {expected}") from None


def _is_dict(hint: Any) -> bool:
    """Whether ``hint`` is ``dict`` or ``dict[...]``."""
    return hint is dict or typing.get_origin(hint) is dict


#: How a dict is written as text, for messages.
_JSON_OBJECT = 'a JSON object such as {"num_cycles": 2}'


def _json_object(text: str) -> dict[str, Any]:
    """``text`` parsed as a JSON object, or ``ValueError`` saying how to write one."""
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError) as error:  # RecursionError: nested deeper than the decoder recurses
        raise ValueError(f"expected {_JSON_OBJECT} ({error})") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"expected {_JSON_OBJECT}")
    return parsed


def _convert(hint: Any, value: Any, from_text: bool) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        nullable = type(None) in typing.get_args(hint)
        arms = [arm for arm in typing.get_args(hint) if arm is not type(None)]
        # "null" and Python's "None" are always None; "none" only where no string is allowed
        # (report_to="none" is a value).
        none_words = ("null",) if str in arms else ("none", "null")
        text = str(value).strip()
        if nullable and (value is None or (from_text and (text == "None" or text.lower() in none_words))):
            return None
        if any(isinstance(arm, type) and issubclass(arm, enum.Enum) for arm in arms):
            arms = [arm for arm in arms if arm is not str]  # "Strategy | str" means one of the strategy values
        if from_text and any(_is_dict(arm) for arm in arms) and text.startswith(("{", "[")):
            return _json_object(text)  # JSON meant for the dict, never a string that happens to fail
        for arm in sorted(arms, key=_arm_rank):
            try:
                return _convert(arm, value, from_text)
            except (TypeError, ValueError):
                continue
        optional = " or None" if nullable else ""
        raise TypeError(f"expected {' or '.join(_type_name(arm) for arm in arms)}{optional}")
    if origin is typing.Literal:
        for allowed in typing.get_args(hint):
            try:
                if _convert(type(allowed), value, from_text) == allowed:
                    return allowed
            except (TypeError, ValueError):
                continue
        raise ValueError(f"expected {_type_name(hint)}")
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        allowed_values = [member.value for member in hint]
        raw = value.value if isinstance(value, enum.Enum) else value  # transformers' enum or argschema's rebuilt one
        if raw not in allowed_values:
            raise ValueError(f"expected {_type_name(hint)}")
        return raw
    if hint is bool:
        if from_text:
            return parse_bool(str(value))
        if isinstance(value, bool):
            return value
        raise TypeError(f"expected bool, got {type(value).__name__}")
    if hint is int:
        if from_text:
            return _parsed(int, str(value), "int (a whole number such as 50)")
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TypeError(f"expected int, got {type(value).__name__}")
    if hint is float:
        if from_text:
            return _finite(_parsed(float, str(value), "float (a number such as 2e-5)"))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return _finite(float(value))
        raise TypeError(f"expected float, got {type(value).__name__}")
    if hint is str:
        if from_text or isinstance(value, str):
            return str(value)
        raise TypeError(f"expected str, got {type(value).__name__}")
    if _is_dict(hint):
        if from_text:
            return _json_object(str(value))
        if isinstance(value, dict):
            return value
        raise TypeError("expected a dict")
    if hint is list or origin is list:
        if from_text:
            text = str(value).strip()
            return json.loads(text) if text.startswith("[") else [part.strip() for part in text.split(",") if part]
        if isinstance(value, (list, tuple)):
            return list(value)
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return value  # a type the plugin does not check (e.g. an accelerate config object)
