"""How the process runs while a model trains on a CPU: memory settings that change speed and
memory use, never the arithmetic (ini ``finetune_runtime_tuning``, on by default).

While ``Trainer.train`` runs on a CPU, :func:`tuned_runtime` applies two settings:

- **oneDNN and PyTorch's oneDNN wrapper keep at most** :data:`KERNEL_CACHE_CAPACITY` **kernels
  each**: oneDNN's primitive cache (``ONEDNN_PRIMITIVE_CACHE_CAPACITY``) and ideep's
  computation cache (``LRU_CACHE_CAPACITY``), both 1024 by default. bf16 matrix products on a
  CPU run through ideep and oneDNN, which compile a kernel per shape; with dynamic padding
  nearly every batch has a new length, so the default caches filled with kernels (and their
  buffers) that were seldom used again: about 360 MB together over 100 bf16 steps of MiniLM
  on MRPC (``python benchmarks/kernel_caches.py``), for no measurable speed. Both read their
  variable once, when they first compile: the setting takes effect in a process that has not
  run a oneDNN kernel before, and then holds for the rest of the process (the variables
  themselves are removed after training). A value the user set, under any of a cache's names
  in :data:`KERNEL_CACHE_VARIABLES`, is left alone.
- **glibc's malloc keeps freed memory for reuse** (``M_MMAP_MAX`` 0, ``M_TRIM_THRESHOLD``
  1 GiB): the word-embedding gradient (30522 x 384 floats, 47 MB, for MiniLM-L6; 94 MB for
  bert-base) is allocated anew at every step; above malloc's 32 MB ``mmap`` limit it came from
  fresh pages of the kernel each time, and zeroing them cost several times more than zeroing
  reused memory (``python benchmarks/allocation.py``). Afterwards glibc's documented defaults
  come back (fixed from then on: glibc stops adapting its mmap threshold once ``mallopt`` set
  one) and ``malloc_trim`` returns the kept memory to the system. Nothing changes where the
  C library is not glibc.

Neither setting touches a number a fine-tune computes: the same kernels run on the same data,
at the same 64-byte alignment (tested: identical logits with and without, and identical bf16
products and gradients in fresh processes, where the cache bounds take effect).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import os
import platform
from collections.abc import Iterator
from typing import Any

#: The environment variables that bound each kernel cache (oneDNN's primitive cache, whose
#: current name comes first, then ideep's computation cache); the plugin sets a cache's first name.
KERNEL_CACHE_VARIABLES = (
    ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "DNNL_PRIMITIVE_CACHE_CAPACITY"),
    ("LRU_CACHE_CAPACITY",),
)
KERNEL_CACHE_CAPACITY = 8
#: ``mallopt`` parameters (glibc's malloc.h) and the values used while training.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
KEEP_FREED_MEMORY = {M_MMAP_MAX: 0, M_TRIM_THRESHOLD: 1 << 30}
#: glibc's documented defaults, restored afterwards.
GLIBC_DEFAULTS = {M_MMAP_MAX: 65536, M_TRIM_THRESHOLD: 128 * 1024}


@functools.cache
def glibc() -> Any | None:
    """The process's C library where it is glibc (it has ``mallopt`` and ``malloc_trim``), else ``None``."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    libc = ctypes.CDLL(None)
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


@contextlib.contextmanager
def tuned_runtime(device: str, enabled: bool = True) -> Iterator[None]:
    """Apply the settings above while the block runs, when ``enabled`` and ``device`` is ``"cpu"``."""
    if not enabled or device != "cpu":
        yield
        return
    with contextlib.ExitStack() as stack:
        for names in KERNEL_CACHE_VARIABLES:
            stack.enter_context(_kernel_cache_capacity(names, KERNEL_CACHE_CAPACITY))
        stack.enter_context(_freed_memory_kept())
        yield


@contextlib.contextmanager
def _kernel_cache_capacity(names: tuple[str, ...], capacity: int) -> Iterator[None]:
    if any(name in os.environ for name in names):
        yield  # the user's own setting
        return
    os.environ[names[0]] = str(capacity)
    try:
        yield
    finally:
        os.environ.pop(names[0], None)


@contextlib.contextmanager
def _freed_memory_kept() -> Iterator[None]:
    libc = glibc()
    if libc is None:
        yield
        return
    for parameter, value in KEEP_FREED_MEMORY.items():
        libc.mallopt(parameter, value)
    try:
        yield
    finally:
        for parameter, value in GLIBC_DEFAULTS.items():
            libc.mallopt(parameter, value)
        libc.malloc_trim(0)


@contextlib.contextmanager
def heap_frozen() -> Iterator[None]:
    """Keep the objects that exist before a fine-tune out of the garbage collector's passes while it runs.

    ``Trainer.train`` starts with accelerate's ``free_memory``, a full ``gc.collect()``: in a long pytest
    session (many tests, their fixtures and reports) that pass over the whole heap costs more than a small
    fine-tune. Objects made while training are collected as usual; the frozen ones are handed back after.
    Where the process froze objects itself (``gc.freeze``), it is left as it is.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
