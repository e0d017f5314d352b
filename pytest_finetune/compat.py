"""Differences between transformers 4.x and 5.x, in one place.

Users may spell training arguments the way either major version does (for example
``evaluation_strategy``, ``no_cuda``, ``group_by_length=True`` or ``warmup_ratio``). A recipe keeps them in
5.x spelling (:func:`modern_training_args`), so that a recipe and its baseline are the same
under either version; :func:`installed_training_args` spells them for the installed
``TrainingArguments``, :func:`training_arg_type` gives the type a value must have, and
:func:`training_arg_choices` the values it must be one of, where transformers lists them.
:func:`fused_adamw_training_args` gives every version the fused AdamW that newer ones default to;
:func:`training_arguments` keeps 4.x's ``TrainingArguments`` from inheriting an earlier one's precision.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .argschema import field_table
from .errors import FinetuneError
from .precision import MIXED_PRECISION_VARIABLE, STARTING_MIXED_PRECISION

if TYPE_CHECKING:
    # importing these costs seconds: checking a training argument's name, type and value needs
    # only argschema's description of the fields, which pytest's cache keeps between runs
    from transformers import Trainer, TrainingArguments

# 4.x spellings that 5.x renamed -> (the 5.x name, value mapping, the 4.x type or None for the 5.x one).
# 5.x reads a warmup_steps below 1 as 4.x's warmup_ratio (recipe.py refuses a ratio of 1, which 5.x cannot say).
_RENAMED: dict[str, tuple[str, Any, Any]] = {
    "evaluation_strategy": ("eval_strategy", lambda v: v, None),
    "no_cuda": ("use_cpu", lambda v: v, None),
    "group_by_length": ("train_sampling_strategy", lambda v: "group_by_length" if v else "random", bool),
    "warmup_ratio": ("warmup_steps", lambda v: v, None),
}


def _group_by_length_4x(strategy: str) -> bool:
    """transformers 4.x's ``group_by_length`` for a 5.x ``train_sampling_strategy``."""
    if strategy not in ("random", "group_by_length"):
        raise FinetuneError(
            f"train_sampling_strategy={strategy!r} needs transformers 5; on 4.x use "
            "train_sampling_strategy='random' or 'group_by_length' (group_by_length=True)"
        )
    return strategy == "group_by_length"


def _warmup_4x(steps: float) -> dict[str, Any]:
    """transformers 4.x's keywords for a 5.x ``warmup_steps``: below 1 (and above 0), the ratio of
    the training steps (4.x's ``warmup_ratio``), else ``int(steps)`` steps, as 5.x reads it."""
    return {"warmup_ratio": steps} if 0 < steps < 1 else {"warmup_steps": int(steps)}


# 5.x fields that a 4.x installation lacks or reads otherwise -> (the 4.x field that only a 4.x
# installation has, the 4.x keyword arguments for a value, the 5.x type).
_NEWER: dict[str, tuple[str, Any, Any]] = {
    "train_sampling_strategy": (
        "group_by_length",
        lambda strategy: {"group_by_length": _group_by_length_4x(strategy)},
        str,
    ),
    "warmup_steps": ("warmup_ratio", _warmup_4x, float),
}


#: 5.x's ``train_sampling_strategy`` values, which 4.x does not list (it refuses those it cannot run).
_SAMPLING_STRATEGIES = ("random", "sequential", "group_by_length", "batch_rebalance")


def accepted_names() -> frozenset[str]:
    """Every training-argument name a user may write on this installation."""
    fields = field_table().types
    return (
        frozenset(fields)
        | frozenset(_RENAMED)
        | frozenset(name for name, (older, _, _) in _NEWER.items() if older in fields)
    )


def training_arg_type(name: str) -> Any:
    """The annotated type of training argument ``name`` (any accepted spelling)."""
    if name in _RENAMED:
        modern, _, own_type = _RENAMED[name]
        return own_type or training_arg_type(modern)
    if name in _NEWER:
        return _NEWER[name][2]
    return field_table().types[name]


def training_arg_choices(name: str) -> tuple[str, ...]:
    """The values training argument ``name`` (any accepted spelling) takes where transformers lists
    them (``train_sampling_strategy``, ``log_level``, ...); empty where any value of its type goes."""
    if name in _RENAMED:
        modern, _, own_type = _RENAMED[name]
        return () if own_type else training_arg_choices(modern)
    if name == "train_sampling_strategy":
        return _SAMPLING_STRATEGIES
    return field_table().choices.get(name, ())


def modern_training_args(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` (accepted names only) in 5.x spelling, whichever version is installed."""
    modern: dict[str, Any] = {}
    for name, value in kwargs.items():
        if name in _RENAMED:
            name, convert, _ = _RENAMED[name]
            value = convert(value)
        modern[name] = value
    return modern


def installed_training_args(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` (accepted names only) spelled for the installed ``TrainingArguments``."""
    installed: dict[str, Any] = {}
    for name, value in modern_training_args(kwargs).items():
        if name in _NEWER and _NEWER[name][0] in field_table().types:
            installed.update(_NEWER[name][1](value))
        else:
            installed[name] = value
    return installed


def training_arguments(kwargs: Mapping[str, Any]) -> TrainingArguments:
    """``TrainingArguments(**kwargs)`` as the process's first would be: accelerate's precision
    variable set back to what it was when the plugin loaded (see :data:`.precision.MIXED_PRECISION_VARIABLE`)."""
    if STARTING_MIXED_PRECISION is None:
        os.environ.pop(MIXED_PRECISION_VARIABLE, None)
    else:
        os.environ[MIXED_PRECISION_VARIABLE] = STARTING_MIXED_PRECISION
    from transformers import TrainingArguments

    return TrainingArguments(**kwargs)


def sharing_accelerator_state(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``kwargs`` for a ``TrainingArguments`` that uses accelerate's process-wide state as a ``Trainer`` set it up
    (``accelerator_config``'s ``use_configured_state``) instead of resetting it, as each one does while it sets
    up its device: the trainer's accelerator, which shares that state, could no longer prepare its data loaders.
    ``kwargs`` as they are where no state is set up, or where their ``accelerator_config`` names a file."""
    from accelerate.state import is_initialized  # type: ignore[import-untyped]

    config = kwargs.get("accelerator_config")
    if not is_initialized() or not (config is None or isinstance(config, dict)):
        return dict(kwargs)
    return {**kwargs, "accelerator_config": {**(config or {}), "use_configured_state": True}}


#: transformers' name of torch's fused AdamW, which updates every weight in one pass.
FUSED_ADAMW = "adamw_torch_fused"
#: transformers' name of torch's multi-tensor (``foreach``) AdamW: the same update in several passes.
UNFUSED_ADAMW = "adamw_torch"


def fused_adamw_training_args(training_args: Mapping[str, Any], device: str) -> dict[str, Any]:
    """``optim="adamw_torch_fused"`` where the installed ``TrainingArguments`` would take the
    unfused AdamW and torch has the fused one for ``device``; nothing where the recipe names
    an optimizer (``optim``), or where the fused one is already the default.

    transformers 4.54 and newer, with torch 2.8 and newer, default to the fused AdamW; older
    pairs default to the multi-tensor one, which computes the same update in several passes
    over the weights (on a CPU, clipping and AdamW over MiniLM's 22.7 million weights took 67
    to 80 ms with it, 21 to 23 ms with the fused one: ``benchmarks/optimizer_step.py``).
    torch fuses AdamW on CUDA and on a CPU (from 2.4, the oldest torch this package takes).
    """
    if "optim" in training_args or _default_optimizer() != UNFUSED_ADAMW:
        return {}
    return {"optim": FUSED_ADAMW} if device in ("cuda", "cpu") else {}


def _default_optimizer() -> str:
    """The ``optim`` the installed ``TrainingArguments`` takes when none is given."""
    from transformers import TrainingArguments

    default = next(field.default for field in dataclasses.fields(TrainingArguments) if field.name == "optim")
    return str(getattr(default, "value", default))


def evaluate_in_dataset_order(trainer: Trainer) -> None:
    """Make ``trainer`` evaluate its validation split in the split's own order.

    With length-grouped training batches, transformers also draws evaluation batches
    length-grouped and shuffled (4.x from the global random generator, which shifts the
    training's dropout; 5.x from a seeded one), so the predictions would not line up with
    the validation rows. Each pair is scored alone, so the order changes nothing else (but
    for rounding: batches of other pairs pad to other lengths).
    """
    from torch.utils.data import SequentialSampler
    from transformers.trainer_utils import has_length

    def in_order(dataset: Any) -> SequentialSampler | None:
        return SequentialSampler(dataset) if has_length(dataset) else None

    trainer._get_eval_sampler = in_order  # type: ignore[method-assign,assignment]


def mean_loss_per_process(trainer: Trainer) -> None:
    """Make a data-parallel ``trainer`` (more than one process) take its model's loss as the model gives it.

    transformers (5.x, and late 4.x releases) counts the labels of each batch across the processes for a model whose
    ``forward`` takes ``**kwargs`` (``model_accepts_loss_kwargs``), and multiplies the loss by the number of
    processes, expecting a loss summed over the labels and divided by that count. A sequence classifier's loss is
    a mean over its batch and takes no count, so the training and evaluation losses came out that many times too
    large (``eval_loss`` doubled on two processes). Trainer's own attribute, set off, leaves the mean as it is; a
    ``compute_loss_func`` is left to its own count. One process is left as it was."""
    if trainer.args.world_size > 1 and getattr(trainer, "compute_loss_func", None) is None:
        trainer.model_accepts_loss_kwargs = False


def mismatched_weights(loading_info: dict[str, Any], model: Any) -> list[tuple[str, str, str]]:
    """``(key, shape in the checkpoint, shape the model needs)`` of each weight ``from_pretrained``
    skipped for its shape (``output_loading_info``): 5.x gives the shapes, 4.x the key alone."""
    parameters = model.state_dict()
    mismatched = []
    for entry in loading_info.get("mismatched_keys") or ():
        if isinstance(entry, str):
            needed = _shape(parameters[entry].shape) if entry in parameters else "another shape"
            mismatched.append((entry, "another shape", needed))
        else:
            key, stored, built = entry
            mismatched.append((key, _shape(stored), _shape(built)))
    return sorted(mismatched)


def _shape(shape: Any) -> str:
    return "x".join(str(size) for size in shape)
