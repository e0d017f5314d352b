"""Baselines per hardware class (``finetune_baseline_classes = hardware``): the class a run computed on, and the
baseline file that holds one entry per class.

A class is ``DEVICE-MACHINE-DTYPE``, and ``-xN`` for a run over N processes (``WORLD_SIZE``):
``cpu-amd-avx2-fp32``, ``cpu-intel-amx_bf16-bf16``, ``cuda-nvidia_h100_80gb_hbm3-bf16-x2``. A CPU's machine is its
vendor and the best of the instruction sets :data:`CPU_ISAS` its ``/proc/cpuinfo`` flags name; a GPU's, its name.

A file of entries per class is ``{"format": 1, "hardware_classes": {CLASS: record, ...}}``, each record naming its
class in its ``environment``. A baseline recorded with one entry per test stays where it is, at the top of the file:
it is the entry of any class whose run records its device, dtype and CPU capability, until that class records its
own entry (which replaces it); another class's entry is added beside it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import FinetuneError
from ..precision import cpu_flags, cpu_vendor
from ..storage import StorageError, read_bounded, write_atomically
from .record import CLASSES, FIX, FORMAT, BaselineError, load_json, to_json

#: The values of ``finetune_baseline_classes``: one baseline per test, or one entry per hardware class in it.
CLASS_SETTINGS = ("none", "hardware")
#: Where a class's entry records its class: a key of its ``environment``.
CLASS_KEY = "hardware_class"
#: The CPU instruction sets a class names, best first: the ``/proc/cpuinfo`` flag, and the class's word for it.
#: Each decides which kernels oneDNN and the BLAS run (and whether bf16 is native), so which numbers come out.
CPU_ISAS = (("amx_bf16", "amx_bf16"), ("avx512_bf16", "avx512_bf16"), ("avx512f", "avx512"), ("avx2", "avx2"))
#: A CPU's ``vendor_id`` as a class names it; another is written as it is, lowercased.
CPU_VENDORS = {"GenuineIntel": "intel", "AuthenticAMD": "amd"}
#: A dtype (as an environment records it) as a class names it.
DTYPES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
#: What the environment of a baseline recorded with one entry per test must share with a run's to stand for its class.
LEGACY_KEYS = ("device", "dtype", "cpu_capability")
#: A class key: lowercase words of letters, digits, ``_`` and ``.``, joined by ``-``, three or more.
_CLASS_PATTERN = re.compile(r"[a-z0-9_.]+(-[a-z0-9_.]+){2,}")


class NoClassBaseline(BaselineError):
    """A baseline file without an entry for the run's hardware class."""


def machine(device: str) -> str:
    """The machine part of a hardware class on ``device``: a CPU's vendor and best instruction set
    (``amd-avx2``), a GPU's name (``nvidia_h100_80gb_hbm3``), or the device's own name."""
    if device == "cpu":
        vendor = cpu_vendor().strip()
        flags = cpu_flags()
        isa = next((word for flag, word in CPU_ISAS if flag in flags), "other")
        return f"{_word(CPU_VENDORS.get(vendor, vendor) or platform.machine() or 'unknown')}-{isa}"
    if device == "cuda":
        import torch

        return _word(torch.cuda.get_device_name(torch.cuda.current_device()))
    return "apple" if device == "mps" else device


def hardware_class(environment: Mapping[str, Any]) -> str:
    """The hardware class of a run whose ``environment`` records its device and dtype (see the module's docstring)."""
    device, dtype = str(environment.get("device")), str(environment.get("dtype"))
    key = f"{_word(device)}-{machine(device)}-{DTYPES.get(dtype, _word(dtype))}"
    processes = world_size()
    return f"{key}-x{processes}" if processes > 1 else key


def world_size() -> int:
    """The processes of a distributed run, as ``torchrun`` and ``accelerate launch`` set ``WORLD_SIZE`` (1 unset)."""
    text = os.environ.get("WORLD_SIZE", "1")
    if not text.strip().isdigit() or int(text) < 1:
        raise FinetuneError(f"WORLD_SIZE={text!r} is not a number of processes; unset it or give a count such as 2")
    return int(text)


def _word(text: str) -> str:
    """``text`` as one word of a class key: lowercase letters, digits and ``_``."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "unknown"


def read_classes(text: str, location: str) -> tuple[dict[str, Any] | None, dict[str, dict[str, Any]]]:
    """A baseline file's entry recorded with one entry per test (``None`` for none) and its entries by class,
    checked: each class key well formed, each entry an object that records that class. Anything else is a
    :class:`BaselineError` naming the entry."""
    stored = load_json(text, location)
    entries = stored.get(CLASSES, {})
    if not isinstance(entries, dict):
        raise BaselineError(f'baseline {location}: "{CLASSES}" is not an object of entries by hardware class; {FIX}')
    for key, entry in entries.items():
        environment = entry.get("environment") if isinstance(entry, dict) else None
        recorded = environment.get(CLASS_KEY) if isinstance(environment, dict) else None
        if not _CLASS_PATTERN.fullmatch(key) or not isinstance(entry, dict) or recorded != key:
            raise BaselineError(
                f'baseline {location}: the hardware-class entry "{key[:80]}" is not a baseline recorded on that class '
                f"(its environment records {json.dumps(recorded)[:80]}): restore it, or delete it and record that "
                "class again with --snapshot-update on its hardware"
            )
    legacy = {key: value for key, value in stored.items() if key != CLASSES}
    if "metrics" in legacy:
        return legacy, entries
    unknown = sorted(set(legacy) - {"format"})
    if unknown:
        shown = ", ".join(unknown)[:200]
        raise BaselineError(f'baseline {location}: unknown key(s) {shown} beside "{CLASSES}"; {FIX}')
    return None, entries


def stands_for(legacy: Mapping[str, Any], environment: Mapping[str, Any]) -> bool:
    """Whether a baseline recorded with one entry per test (``legacy``) is the entry of the class of a run whose
    environment is ``environment``: both record the same device and dtype, and CPU capability where both record one."""
    recorded = legacy.get("environment")
    if not isinstance(recorded, dict) or any(key not in recorded for key in LEGACY_KEYS[:2]):
        return False
    return all(recorded[key] == environment.get(key) for key in LEGACY_KEYS if key in recorded)


def class_entry(text: str, environment: Mapping[str, Any], location: str) -> str:
    """The entry of the file ``text`` that a run whose ``environment`` names its class compares with, as baseline JSON;
    a :class:`NoClassBaseline` naming the classes the file holds when it has none for this one."""
    legacy, entries = read_classes(text, location)
    own = environment[CLASS_KEY]
    if own in entries:
        return to_json(entries[own])
    if legacy is not None and stands_for(legacy, environment):
        return to_json(legacy)
    held = [*entries, *([f"one recorded before per-class baselines ({legacy_class(legacy)})"] if legacy else [])]
    raise NoClassBaseline(f"no baseline for this hardware ({own}) in {location}: it holds {', '.join(held) or 'none'}")


def legacy_class(legacy: Mapping[str, Any]) -> str:
    """What a baseline recorded with one entry per test records of its class: ``device cpu, dtype float32, ...``."""
    recorded = legacy.get("environment")
    recorded = recorded if isinstance(recorded, dict) else {}
    return ", ".join(f"{key} {recorded[key]}" for key in LEGACY_KEYS if key in recorded) or "no environment"


def merged(stored: str | None, record_text: str, location: str) -> str:
    """The baseline file ``stored`` (``None``: none yet) with the entry of ``record_text``'s class added or replaced,
    every other entry kept as it is; a baseline recorded with one entry per test is replaced when it stands for
    that class (see :func:`stands_for`), else kept."""
    record = json.loads(record_text)
    legacy, entries = (None, {}) if stored is None else read_classes(stored, location)
    if legacy is not None and stands_for(legacy, record["environment"]):
        legacy = None
    entries = {**entries, record["environment"][CLASS_KEY]: record}
    return to_json({**(legacy or {}), "format": FORMAT, CLASSES: entries})


def write_entry(path: Path, record_text: str, root: Path, location: str) -> None:
    """Add or replace the entry of ``record_text``'s class in the baseline file ``path`` (see :func:`merged`),
    atomically, under a lock that another process writing ``path`` waits for, so that neither loses the other's
    entry. A file whose entries cannot be read is left as it is (a :class:`StorageError` saying why)."""
    from filelock import FileLock

    with FileLock(_lock_path(path), mode=0o666):
        try:
            stored = read_bounded(path).decode("utf-8", errors="replace")
        except FileNotFoundError:
            stored = None
        try:
            text = merged(stored, record_text, location)
        except BaselineError as error:
            raise StorageError(f"{error}; nothing was written to it") from None
        write_atomically(path, text, root)


def _lock_path(path: Path) -> Path:
    """The lock file of the baseline file ``path``: in the temporary folder, named by ``path``'s real location, so
    that the baseline folder holds baselines alone."""
    digest = hashlib.sha256(os.path.realpath(path).encode("utf-8", errors="surrogatepass")).hexdigest()[:32]
    return Path(tempfile.gettempdir()) / f"pytest-finetune-{digest}.lock"


def holds_classes(path: Path) -> bool:
    """Whether the baseline file ``path`` holds entries per hardware class (``False`` when it cannot be read)."""
    try:
        stored = json.loads(read_bounded(path).decode("utf-8", errors="replace"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(stored, dict) and CLASSES in stored
