"""How the process runs while a model trains on a CPU: memory settings that change speed and
memory use, never the arithmetic (ini ``finetune_runtime_tuning``, on by default).

While ``Trainer.train`` runs on a CPU, :func:`tuned_runtime` applies three settings:

- **torch's CPU kernels use the process's share of the CPUs it may use** (:func:`fitting_threads`):
  torch starts as many threads as the machine has cores, whatever the process may use. In a
  container with a CPU quota (``docker --cpus 2`` on a 16-core host), under ``taskset``, or beside
  other pytest-xdist workers or local ranks, those threads outnumber the CPUs, and OpenMP threads
  that wait for each other at every kernel lose their time slices to one another. The number is the
  CPUs of the process's affinity, bounded by a cgroup CPU quota (``joblib.cpu_count``), divided by
  the processes that train on the machine at once (:data:`SHARING_VARIABLES`), at least 1; it is
  only ever lowered from torch's own. A thread count the user set (:data:`THREAD_VARIABLES`) is
  left alone, and torch's count comes back after training.
- **OpenMP's idle threads sleep rather than spin** (``OMP_WAIT_POLICY=PASSIVE``, see
  :func:`quiet_openmp_waits`): between kernels, GNU OpenMP's threads spin for a while before they
  sleep. Beside other busy processes (CI runners, xdist workers, a second job) the spinning threads
  take the CPU from the thread that has work: beside one busy process, two spinning threads trained
  2.1 times slower than one; waiting passively, two threads were as fast as one
  (``python benchmarks/threads.py``). OpenMP reads
  the policy once, when torch loads it: the plugin sets it in a ``pytest --finetune`` process before
  any conftest imports torch, where the user set neither of :data:`WAIT_VARIABLES`.

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

Fewer threads split a kernel's work differently, which may change the last bits of a sum (a tiny BERT
in fp32 computed identical losses and gradients with one thread and two). The memory settings touch
no number a fine-tune computes: the same kernels run on the same data,
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
import sys
from collections.abc import Iterator
from typing import Any

#: The environment variables that bound each kernel cache (oneDNN's primitive cache, whose
#: current name comes first, then ideep's computation cache); the plugin sets a cache's first name.
KERNEL_CACHE_VARIABLES = (
    ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "DNNL_PRIMITIVE_CACHE_CAPACITY"),
    ("LRU_CACHE_CAPACITY",),
)
KERNEL_CACHE_CAPACITY = 8
#: Environment variables through which a user sets the threads of torch's CPU kernels: set, they win.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
#: Environment variables that count the processes training on this machine at once: pytest-xdist's
#: workers; the local ranks of ``torchrun`` and ``accelerate launch``.
SHARING_VARIABLES = ("PYTEST_XDIST_WORKER_COUNT", "LOCAL_WORLD_SIZE")
#: Environment variables through which a user sets how OpenMP's idle threads wait: set, they win.
WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
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
        stack.enter_context(_threads_fitted())
        for names in KERNEL_CACHE_VARIABLES:
            stack.enter_context(_kernel_cache_capacity(names, KERNEL_CACHE_CAPACITY))
        stack.enter_context(_freed_memory_kept())
        yield


def usable_cpus() -> int:
    """The CPUs this process may use: its CPU affinity, bounded by a cgroup CPU quota (v1 or v2)."""
    import joblib

    return int(joblib.cpu_count())


def processes_sharing() -> int:
    """How many processes train on this machine at once, as :data:`SHARING_VARIABLES` say (at least 1)."""
    counts = [int(os.environ[name]) for name in SHARING_VARIABLES if os.environ.get(name, "").strip().isdigit()]
    return max([1, *counts])


def fitting_threads() -> int | None:
    """Threads for torch's CPU kernels while a model trains: this process's share of the CPUs it may use,
    at least 1; ``None`` where the user set the count (:data:`THREAD_VARIABLES`)."""
    if any(os.environ.get(name, "").strip() for name in THREAD_VARIABLES):
        return None
    return max(1, usable_cpus() // processes_sharing())


def threads_line() -> str:
    """One line for the session header: the threads a CPU fine-tune will use, and why."""
    chosen = [f"{name}={os.environ[name]}" for name in THREAD_VARIABLES if os.environ.get(name, "").strip()]
    if chosen:
        threads = f"as {', '.join(chosen)} sets"
    else:
        sharing = processes_sharing()
        shared = f", shared by {sharing} processes" if sharing > 1 else ""
        threads = f"at most {fitting_threads()} ({usable_cpus()} CPUs usable{shared})"
    waiting = os.environ.get("OMP_WAIT_POLICY", "").strip().lower() or "OpenMP's default"
    return f"finetune: torch threads while training on a CPU: {threads}; idle threads wait: {waiting}"


def quiet_openmp_waits() -> None:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` for this process where the user set no wait policy and OpenMP has not
    started (torch not imported yet)."""
    if not any(name in os.environ for name in WAIT_VARIABLES) and "torch" not in sys.modules:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


@contextlib.contextmanager
def _threads_fitted() -> Iterator[None]:
    import torch

    fitting, before = fitting_threads(), torch.get_num_threads()
    if fitting is None or fitting >= before:
        yield
        return
    torch.set_num_threads(fitting)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
