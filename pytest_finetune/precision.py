"""The arithmetic precision a fine-tune runs in: ``finetune_precision = auto | fp32 | bf16 | fp16``.

``auto`` picks bf16 autocast only where the hardware computes bf16 natively (a GPU with
bf16, a CPU with AVX-512 BF16 or AMX) and fp32 elsewhere: on a CPU without those
instructions bf16 is emulated and about 16 times slower than fp32. An explicit precision
the hardware cannot run is a :class:`FinetuneError` that names the fix.

The choice becomes training arguments (``bf16``/``fp16``) when the ``training_args`` fixture
builds them; the recipe itself does not change, and the dtype a result was computed in is
recorded in its environment (and its baseline).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import FinetuneError

#: The values of ``finetune_precision``.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: CPU flags (``/proc/cpuinfo``) of instructions that compute bf16 natively.
NATIVE_BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
#: Training arguments a recipe may set that decide the precision itself.
PRECISION_ARGS = ("bf16", "fp16")
#: Where Linux describes the CPU: its flags and vendor.
CPUINFO = Path("/proc/cpuinfo")
#: accelerate's mixed-precision variable. transformers 4.x's ``TrainingArguments`` writes its own
#: precision there and takes it as the default of the next one (and ``Trainer``'s accelerator reads
#: it): after a bf16 run, an fp32 run in the same process computed in bf16. 5.x only reads it.
MIXED_PRECISION_VARIABLE = "ACCELERATE_MIXED_PRECISION"
#: The variable as the process started with it, read when the plugin loads (which imports this
#: module), before any test or fixture can build a ``TrainingArguments`` of its own.
STARTING_MIXED_PRECISION = os.environ.get(MIXED_PRECISION_VARIABLE)


@dataclasses.dataclass(frozen=True)
class Hardware:
    """What a fine-tune will compute on: ``device`` (``cpu``, ``cuda``, ``mps``) and what it runs natively."""

    device: str
    native_bf16: bool
    native_fp16: bool
    #: For messages: the CPU's instruction set or the GPU's name.
    name: str


def detect_hardware(use_cpu: bool = False) -> Hardware:
    """The device ``Trainer`` will pick (a CUDA GPU unless ``use_cpu``, else the CPU) and its abilities."""
    import torch

    if torch.cuda.is_available() and not use_cpu:
        return Hardware(
            "cuda",
            torch.cuda.is_bf16_supported(including_emulation=False),
            True,
            torch.cuda.get_device_name(torch.cuda.current_device()),
        )
    if torch.backends.mps.is_available() and not use_cpu:
        return Hardware("mps", False, False, "Apple MPS")  # Trainer's mixed precision on MPS is not relied upon
    return cpu_hardware(cpu_flags(), torch.backends.cpu.get_cpu_capability())


def accelerator_available() -> bool:
    """Whether torch sees an accelerator of any kind (CUDA, MPS, XPU, ...) to train on."""
    import torch

    accelerator = getattr(torch, "accelerator", None)  # torch 2.6 and newer
    if accelerator is None:
        return torch.cuda.is_available() or torch.backends.mps.is_available()
    return bool(accelerator.is_available())


def cpu_hardware(flags: frozenset[str], capability: str) -> Hardware:
    """A CPU with the given ``/proc/cpuinfo`` flags and torch's CPU capability (``AVX2``, ``AVX512``, ...)."""
    native = bool(flags & NATIVE_BF16_CPU_FLAGS)
    return Hardware("cpu", native, False, f"this CPU ({capability}{', native bf16' if native else ''})")


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The CPU's feature flags (Linux); empty where ``cpuinfo`` cannot be read."""
    return frozenset(_cpuinfo_field("flags", cpuinfo).split())


def cpu_vendor(cpuinfo: Path = CPUINFO) -> str:
    """The CPU's ``vendor_id`` (``GenuineIntel``, ``AuthenticAMD``; Linux); empty where ``cpuinfo`` cannot be read."""
    return _cpuinfo_field("vendor_id", cpuinfo).strip()


def _cpuinfo_field(name: str, cpuinfo: Path) -> str:
    """The value of the first processor's ``name`` line in ``cpuinfo``; empty where there is none."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value
    return ""


def choose_precision(setting: str, hardware: Hardware) -> str:
    """``fp32``, ``bf16`` or ``fp16`` for ``setting`` on ``hardware``; an impossible explicit setting is an error."""
    if setting == "auto":
        return "bf16" if hardware.native_bf16 else "fp32"
    if setting == "bf16" and not hardware.native_bf16:
        why = "emulated, about 16x slower than fp32" if hardware.device == "cpu" else "not supported"
        raise FinetuneError(
            f"finetune_precision=bf16: {hardware.name} has no native bf16 ({why}); use "
            "finetune_precision=auto or fp32 (to force bf16 anyway, set the training argument bf16=True)"
        )
    if setting == "fp16" and not hardware.native_fp16:
        raise FinetuneError(
            f"finetune_precision=fp16 needs a CUDA GPU; this run computes on {hardware.name}; "
            "use finetune_precision=auto, fp32 or (where native) bf16"
        )
    return setting


def precision_training_args(setting: str, training_args: Mapping[str, Any], hardware: Hardware) -> dict[str, Any]:
    """The training arguments that make a run compute in the chosen precision; none where
    the recipe sets ``bf16`` or ``fp16`` itself (it then decides its precision, see :func:`check_recipe_precision`)."""
    if any(name in training_args for name in PRECISION_ARGS):
        check_recipe_precision(training_args, hardware)
        return {}
    chosen = choose_precision(setting, hardware)
    return {} if chosen == "fp32" else {chosen: True}


def check_recipe_precision(training_args: Mapping[str, Any], hardware: Hardware) -> None:
    """Fail on the training argument ``fp16=True`` where the run computes on a CPU: accelerate
    ignores it there and computes in fp32 (bf16 runs on a CPU, emulated where not native)."""
    if training_args.get("fp16") and hardware.device == "cpu":
        raise FinetuneError(
            f"the training argument fp16=True needs a GPU; this run computes on {hardware.name}, where "
            "transformers ignores it and computes in fp32; remove fp16 from the recipe (finetune_precision "
            "then chooses: auto, fp32 or, where native, bf16), or set bf16=True to force bf16"
        )
