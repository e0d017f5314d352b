"""Data-parallel sessions (``torchrun``, ``accelerate launch``): which process this is, and what the processes agree on.

Each process of such a run is a whole pytest session that runs every test; the fine-tunes in them are one
data-parallel training (``Trainer``'s own DDP). The launchers say which process is which in the environment:
``RANK`` (0 to ``WORLD_SIZE`` - 1, across machines) and ``WORLD_SIZE``. Rank 0 alone writes what outlives the
session (baselines, the result cache, reports, the history) and draws progress lines; the decisions that make
the processes train or not (a result cache hit) are rank 0's, handed to the others (:func:`from_main_process`).

The collectives go through the process group that ``Trainer`` (accelerate) starts, or on the CPU the one
:func:`start_cpu_process_group` starts; they wait at most its timeout, the recipe's ``ddp_timeout`` (transformers'
default: 1800 seconds), for a process that hangs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, TypeVar

from .errors import FinetuneError

T = TypeVar("T")


def _launcher_number(name: str, default: int) -> int:
    """The launcher's variable ``name`` as a whole number (``default`` where unset); another value is a
    :class:`FinetuneError`."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit():
        raise FinetuneError(
            f"the environment variable {name}={value!r} is not a whole number: torchrun and accelerate launch set "
            f"it for each process of a data-parallel run; unset it, or start the run through one of them"
        )
    return int(value)


def world_size() -> int:
    """How many processes train each fine-tune together (1 without a launcher)."""
    return max(_launcher_number("WORLD_SIZE", 1), 1)


def rank() -> int:
    """This process's number among them, 0 to :func:`world_size` - 1."""
    return _launcher_number("RANK", 0)


def is_main_process() -> bool:
    """Whether this process writes what outlives the session: rank 0 (every process without a launcher)."""
    return rank() == 0


def _process_group_ready() -> bool:
    """Whether this is a data-parallel session whose processes can talk: more than one, the group started."""
    if world_size() == 1:
        return False
    import torch.distributed

    return torch.distributed.is_available() and torch.distributed.is_initialized()


def start_cpu_process_group(training_args: Mapping[str, Any]) -> None:
    """Start the process group of a data-parallel run on the CPU (``use_cpu`` in ``training_args``, the keywords of
    a ``TrainingArguments``) with their ``ddp_timeout``, before ``TrainingArguments`` starts it without: transformers
    passes the timeout to accelerate except with ``use_cpu``, so a rank that hangs would keep the others waiting
    torch's default (30 minutes) whatever the recipe says. accelerate then uses the group as it is."""
    if world_size() == 1 or not training_args.get("use_cpu"):
        return
    import torch.distributed
    from transformers import TrainingArguments

    if torch.distributed.is_available() and not torch.distributed.is_initialized():
        seconds = training_args.get("ddp_timeout", TrainingArguments.ddp_timeout)
        backend = training_args.get("ddp_backend") or "gloo"
        torch.distributed.init_process_group(backend=backend, timeout=timedelta(seconds=seconds))


def from_main_process(value: T) -> T:
    """Rank 0's ``value``, on every process (each passes its own; only rank 0's counts): a decision all must
    share, such as whether to train. ``value`` itself where there is one process. Every process must call it at
    the same point; the process group must be started (a ``Trainer`` starts it)."""
    if world_size() == 1:
        return value
    import torch.distributed

    if not _process_group_ready():
        raise FinetuneError(
            f"this is process {rank()} of {world_size()} (WORLD_SIZE), but torch.distributed has no process group "
            "to share rank 0's decisions through: build the trainer with transformers.Trainer, which starts it"
        )
    shared = [value]
    torch.distributed.broadcast_object_list(shared, src=0)
    return shared[0]


def agreed_exit_status(status: int) -> int:
    """The worst (highest) of every process's exit ``status``, so that all end alike; ``status`` where the
    session has no started process group (one process, or nothing fine-tuned)."""
    if not _process_group_ready():
        return status
    import torch.distributed

    statuses: list[int] = [0] * world_size()
    torch.distributed.all_gather_object(statuses, int(status))  # objects: a CPU tensor would not do under NCCL
    return max(statuses)


def wait_for_all() -> None:
    """Return once every process got here: rank 0 writes baselines only after each process compared with them. A
    process that does not get there within the group's timeout (``ddp_timeout``) is a :class:`FinetuneError`."""
    if _process_group_ready():
        import torch.distributed

        try:
            torch.distributed.barrier()
        except RuntimeError as error:  # torch.distributed's errors (a timeout, a lost peer) are RuntimeErrors
            raise FinetuneError(f"{_out_of_step()}: {error}") from None


def out_of_step_stop() -> str | None:
    """Why a data-parallel run stops after one of its fine-tunes raised (the processes may no longer be in step:
    one may wait in a collective that another will never enter); ``None`` where there is one process."""
    return f"{_out_of_step()}; the run stops here" if world_size() > 1 else None


def _out_of_step() -> str:
    """What a process says when the others did not answer, or it cannot tell whether they are still in step."""
    return (
        f"process {rank()} of {world_size()} of this data-parallel run lost step with the others (one of them "
        "failed, or did not answer within the recipe's ddp_timeout)"
    )
