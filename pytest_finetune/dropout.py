"""Where dropout's random masks come from while a model trains on a CPU:
``finetune_dropout_masks = auto | torch | numpy``.

On a CPU, torch draws each dropout mask (``bernoulli_``) one number at a time from its
Mersenne Twister, on one thread, unless it has MKL and the CPU is an Intel one (then MKL
draws them in parallel). On the other CPUs, AMD's among them, drawing the masks took 24 of
the 169 ms of a bf16 training step of MiniLM, and 8 ms with numpy
(``benchmarks/step_profile.py``). With ``numpy``, the masks of the same
probability are drawn from numpy's SFC64 generator instead, 64 random bits at a time,
seeded for each mask from torch's generator, so that ``torch.manual_seed`` (and
``Trainer``'s ``seed``) still decide them: a run repeats itself exactly, as before.

What changes is which masks a seed gives, not what dropout computes: every element is
kept with probability ``p`` (to within 2**-32), independently, as torch's own kernels do,
whose masks already differ between CPU vendors and between a CPU and a GPU. The metrics
then move by about a seed's spread, so the choice is recorded in the result's environment
(``dropout_masks``) and is part of the result cache's key.

``auto`` (the default) takes ``numpy`` where torch would draw one number at a time, and
``torch`` on an Intel CPU with MKL and on a GPU (the setting applies to CPU training only).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

from .precision import cpu_vendor

#: The values of ``finetune_dropout_masks``.
DROPOUT_MASKS = ("auto", "torch", "numpy")
#: ``/proc/cpuinfo``'s ``vendor_id`` of the CPUs whose masks torch draws in parallel (with MKL).
MKL_MASK_VENDOR = "GenuineIntel"


def choose_dropout_masks(setting: str, device: str, vendor: str, mkl: bool) -> str:
    """``torch`` or ``numpy``: who draws the masks of a run on ``device``, on a CPU of ``vendor``
    (``/proc/cpuinfo``'s ``vendor_id``) with or without ``mkl`` in torch."""
    if device != "cpu" or setting == "torch":
        return "torch"
    if setting == "numpy":
        return "numpy"
    return "torch" if mkl and vendor == MKL_MASK_VENDOR else "numpy"


def dropout_masks_for(setting: str, device: str) -> str:
    """``torch`` or ``numpy``: who draws the masks of a run on ``device`` under ``setting``, here."""
    import torch

    return choose_dropout_masks(setting, device, cpu_vendor(), torch.backends.mkl.is_available())


def numpy_bernoulli_(self: Any, p: float = 0.5, generator: Any = None) -> Any:
    """``Tensor.bernoulli_(p)`` on a CPU, the elements drawn from numpy's SFC64 generator,
    seeded from torch's ``generator`` (the default one when ``None``)."""
    import numpy as np
    import torch

    if not 0 <= p <= 1:
        raise RuntimeError(f"bernoulli_ expects p to be in [0, 1], but got p={p}")
    count = self.numel()
    if count == 0 or p in (0, 1):
        return self.fill_(p)
    seed = int(torch.randint(0, 2**63 - 1, (), generator=generator))
    bits = np.random.SFC64(seed).random_raw((count + 1) // 2).view(np.uint32)[:count]
    kept = bits < np.uint32(p * 2**32)  # P(kept) = floor(p * 2**32) / 2**32
    return self.copy_(torch.from_numpy(kept).view(self.shape))


@contextlib.contextmanager
def dropout_masks_from(source: str) -> Iterator[None]:
    """While the block runs, CPU dropout masks come from ``source`` (``torch``: as always)."""
    if source != "numpy":
        yield
        return
    import torch

    library = torch.library.Library("aten", "IMPL")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Warning only once for all operators", UserWarning)
        library.impl("bernoulli_.float", numpy_bernoulli_, "CPU")
    try:
        yield
    finally:
        # torch's kernel back now, whoever else holds the library (dropping the last reference
        # to it would also do it, in CPython); no public API takes a registration back
        library._destroy()
