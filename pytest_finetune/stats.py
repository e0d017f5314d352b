"""How sure a verdict can be: a run's bootstrap intervals, a paired test against the
baseline's run, and the spread of a calibration over seeds.

All of it uses what a fine-tune already has, the predicted class (or score) of each validation
example: no extra training, well under a second for MRPC's 408 pairs. numpy is imported
where it is used, so that the verdict's vocabulary costs a plain pytest run nothing.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .tasks import ACCURACY, F1, MATTHEWS, PEARSON, SPEARMAN, TASKS, Task

if TYPE_CHECKING:
    import numpy as np

#: Resamples of a bootstrap interval, and its coverage.
DEFAULT_RESAMPLES = 1000
#: The most resamples ini ``finetune_bootstrap_resamples`` takes: per resample 40 bytes stay in memory
#: until the percentiles are taken (40 MB at most), and about 10 s on MRPC's 408 pairs.
MAX_RESAMPLES = 1_000_000
LEVEL = 0.95
#: The bootstrap's seed: the same predictions always give the same interval.
_BOOTSTRAP_SEED = 0
#: Indices drawn at once (8 bytes each, and a gathered byte per outcome counted): memory stays
#: bounded, 32 MiB of indices, however many resamples ini ``finetune_bootstrap_resamples`` asks for.
_CHUNK_INDICES = 2**22


def bootstrap_intervals(
    predicted: np.ndarray, labels: np.ndarray, resamples: int = DEFAULT_RESAMPLES, task: Task = TASKS["mrpc"]
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals (:data:`LEVEL`) of each of ``task``'s metrics (the seed's: MRPC's
    accuracy and F1) over the examples (``predicted``: class ids, or scores for a regression).

    The resamples are drawn in chunks of at most :data:`_CHUNK_INDICES` indices, in order from one
    generator (the same numbers as one ``(resamples, n)`` draw), then scored per resample.
    """
    import numpy as np

    predicted = np.asarray(predicted).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if labels.size == 0 or resamples < 1:
        return {}
    score = _resampled_correlations if task.is_regression else _resampled_class_scores
    rng = np.random.default_rng(_BOOTSTRAP_SEED)
    per_chunk = max(1, _CHUNK_INDICES // labels.size)
    chunks = []
    for start in range(0, resamples, per_chunk):
        rows = rng.integers(0, labels.size, size=(min(per_chunk, resamples - start), labels.size))
        chunks.append(score(predicted, labels, rows))
    tail = (1 - LEVEL) / 2 * 100
    intervals = {}
    for name in task.metrics:
        values = np.concatenate([chunk[name] for chunk in chunks])
        intervals[name] = (float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail)))
    return intervals


def _resampled_class_scores(predicted: np.ndarray, labels: np.ndarray, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, F1 (of class 1) and Matthews correlation of each resample (a row of ``rows``) of class ids."""
    import numpy as np

    from .metrics import matthews_from_counts

    examples = labels.size
    correct = (predicted == labels)[rows].sum(axis=1)
    true_positives = ((predicted == 1) & (labels == 1))[rows].sum(axis=1)
    false_positives = ((predicted == 1) & (labels != 1))[rows].sum(axis=1)
    false_negatives = ((predicted != 1) & (labels == 1))[rows].sum(axis=1)
    denominator = 2 * true_positives + false_positives + false_negatives
    classes = np.union1d(predicted, labels)
    true_counts = np.stack([(labels == value)[rows].sum(axis=1) for value in classes], axis=-1)
    predicted_counts = np.stack([(predicted == value)[rows].sum(axis=1) for value in classes], axis=-1)
    return {
        ACCURACY: correct / examples,
        F1: np.divide(2 * true_positives, denominator, out=np.zeros(len(rows)), where=denominator > 0),
        MATTHEWS: matthews_from_counts(correct, true_counts, predicted_counts, examples),
    }


def _resampled_correlations(predicted: np.ndarray, labels: np.ndarray, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Pearson and Spearman correlations of each resample (a row of ``rows``) of predicted scores; 0.0
    where a resample's predictions or labels are constant (as :func:`pytest_finetune.metrics.pearson`)."""
    from scipy.stats import rankdata

    return {
        PEARSON: _row_pearson(predicted[rows], labels[rows]),
        SPEARMAN: _row_pearson(rankdata(predicted[rows], axis=1), rankdata(labels[rows], axis=1)),
    }


def _row_pearson(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of ``first`` with the same row of ``second`` (0.0 for a constant row)."""
    import numpy as np

    varies = (np.ptp(first, axis=1) > 0) & (np.ptp(second, axis=1) > 0)
    first = first - first.mean(axis=1, keepdims=True)
    second = second - second.mean(axis=1, keepdims=True)
    spread = np.sqrt((first**2).sum(axis=1) * (second**2).sum(axis=1))
    return np.divide((first * second).sum(axis=1), spread, out=np.zeros(len(first)), where=varies & (spread > 0))


def mcnemar_exact(worse: int, better: int) -> float:
    """Two-sided exact McNemar p-value for ``worse`` examples that became wrong and
    ``better`` that became right: the binomial test of ``min(worse, better)`` in
    ``worse + better`` flips at p = 1/2, in exact integer arithmetic."""
    flips = worse + better
    if flips == 0:
        return 1.0
    tail = sum(math.comb(flips, k) for k in range(min(worse, better) + 1))
    return min(1.0, 2 * tail / 2**flips)


#: The paired test of a classification (class ids right or wrong), and of a regression (absolute errors).
MCNEMAR = "exact McNemar"
WILCOXON = "Wilcoxon signed-rank"


@dataclasses.dataclass(frozen=True)
class PairedTest:
    """Example-by-example comparison of a run with its baseline's run on the same examples: of a classification,
    which examples each got right (:data:`MCNEMAR`); of a regression, each example's absolute error
    (:data:`WILCOXON`)."""

    examples: int
    #: Examples the baseline's run got right and this run gets wrong (a regression: whose error grew).
    worse: int
    #: Examples the baseline's run got wrong and this run gets right (a regression: whose error shrank).
    better: int
    p_value: float
    alpha: float
    method: str = MCNEMAR
    #: A regression's mean change of the absolute error (this run's less the baseline's); ``None`` for McNemar.
    mean_change: float | None = None

    @property
    def significant(self) -> bool:
        return self.p_value < self.alpha

    @property
    def worse_side(self) -> bool:
        """Whether the run moved towards worse: more examples became wrong, or the errors grew on average."""
        return self.mean_change > 0 if self.mean_change is not None else self.worse > self.better

    @property
    def significantly_worse(self) -> bool:
        return self.significant and self.worse_side

    def describe(self) -> str:
        """One line: the changes each way, the p-value, and what it means at ``alpha``."""
        if not self.significant:
            meaning = "no significant difference"
        else:
            meaning = "significantly worse" if self.worse_side else "significantly better"
        if self.mean_change is None:
            moved = f"{self.worse} became wrong, {self.better} became right"
        else:
            moved = (
                f"{self.worse} got a larger absolute error, {self.better} a smaller "
                f"(mean change {self.mean_change:+.4g})"
            )
        return (
            f"paired test on {self.examples} examples: {moved}; "
            f"{self.method} p = {self.p_value:.3g} (alpha {self.alpha:g}): {meaning}"
        )


def paired_test(current_wrong: Sequence[int], baseline_wrong: Sequence[int], examples: int, alpha: float) -> PairedTest:
    """:class:`PairedTest` of two runs on the same ``examples``, each given by the ids it got wrong."""
    now, then = set(current_wrong), set(baseline_wrong)
    worse, better = len(now - then), len(then - now)
    return PairedTest(examples, worse, better, mcnemar_exact(worse, better), alpha)


def wilcoxon_test(current_errors: Sequence[float], baseline_errors: Sequence[float], alpha: float) -> PairedTest:
    """:class:`PairedTest` of two regressions on the same examples, each given by its absolute error on each
    example in one order: the two-sided Wilcoxon signed-rank test of the differences (``scipy.stats.wilcoxon``;
    examples whose error did not change are left out, as Wilcoxon's test does)."""
    import numpy as np
    from scipy.stats import wilcoxon

    now, then = np.asarray(current_errors, dtype=np.float64), np.asarray(baseline_errors, dtype=np.float64)
    change = now - then
    worse, better = int(np.sum(change > 0)), int(np.sum(change < 0))
    p_value = float(wilcoxon(now, then).pvalue) if worse + better else 1.0
    mean_change = float(change.mean()) if change.size else 0.0
    return PairedTest(now.size, worse, better, p_value, alpha, WILCOXON, mean_change)


def spread(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation (n - 1), min and max of one metric over seeds."""
    import numpy as np

    array = np.asarray(values, dtype=float)
    return {
        "mean": float(array.mean()),
        "std": float(array.std(ddof=1)) if array.size > 1 else 0.0,
        "min": float(array.min()),
        "max": float(array.max()),
    }


def calibration_record(seeds: Sequence[int], runs: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    """What a baseline stores of a calibration: the seeds, and each metric's spread over them."""
    names = sorted(set.intersection(*(set(run) for run in runs))) if runs else []
    return {"seeds": list(seeds), "metrics": {name: spread([run[name] for run in runs]) for name in names}}
