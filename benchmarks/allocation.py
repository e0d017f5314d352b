"""What runtime tuning saves on one allocation: a BERT word-embedding gradient made anew.

Each training step of a BERT-vocabulary model allocates and zeroes the word-embedding
gradient (30522 x 384 floats, 47 MB, for MiniLM-L6). This times ``torch.zeros`` of that
shape as glibc's malloc serves it by default, and under ``pytest_finetune.runtime.tuned_runtime``
(freed memory kept for reuse), alternating, and prints the median of each.

    python benchmarks/allocation.py [--rounds 5] [--repeats 10]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from pytest_finetune.runtime import glibc, tuned_runtime

SHAPE = (30522, 384)  # bert-base-uncased's vocabulary x MiniLM-L6's hidden size


def milliseconds_per_allocation(repeats: int) -> float:
    """Mean time of ``torch.zeros(SHAPE)`` made and freed ``repeats`` times."""
    start = time.perf_counter()
    for _ in range(repeats):
        gradient = torch.zeros(SHAPE)
        del gradient
    return (time.perf_counter() - start) / repeats * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    if glibc() is None:
        raise SystemExit("allocation: the C library is not glibc; runtime tuning changes nothing here")
    default, tuned = [], []
    for _ in range(args.rounds):
        default.append(milliseconds_per_allocation(args.repeats))
        with tuned_runtime("cpu"):
            milliseconds_per_allocation(1)  # the first allocation grows the heap
            tuned.append(milliseconds_per_allocation(args.repeats))
    default_ms, tuned_ms = statistics.median(default), statistics.median(tuned)
    megabytes = SHAPE[0] * SHAPE[1] * 4 / 1e6
    print(f"torch.zeros{SHAPE} ({megabytes:.0f} MB), median of {args.rounds} rounds of {args.repeats}:")
    print(f"  glibc defaults: {default_ms:.2f} ms; runtime tuning: {tuned_ms:.2f} ms; {default_ms / tuned_ms:.1f}x")


if __name__ == "__main__":
    main()
