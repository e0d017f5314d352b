"""Results that outlive the session: the same inputs are never fine-tuned twice.

An entry is a folder named by the sha256 of everything that can change the outcome (see
``fixtures._cache_inputs``): ``result.json`` (metrics, history,
runtime, environment) and ``predictions.npy`` / ``label_ids.npy``. Entries are data only
(JSON and ``.npy`` read without pickle) and appear atomically: written in a temporary
folder, then renamed. An unreadable entry is a miss, with a warning, and is rewritten; a
folder that cannot be written means no caching, with a warning, never a failed test.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .recipe import Recipe
    from .training import FinetuneResult

#: Bumped when an entry's layout changes: older entries then miss.
FORMAT = 1
_RESULT = "result.json"
_ARRAYS = ("predictions", "label_ids")


@functools.lru_cache(maxsize=1)
def package_digest() -> str:
    """sha256 of this package's source: another plugin version computes differently, so it misses."""
    digest = hashlib.sha256()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()


def cache_key(inputs: Mapping[str, Any]) -> str:
    """The sha256 of ``inputs`` as canonical JSON."""
    canonical = json.dumps({"format": FORMAT, **inputs}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class ResultCache:
    """Fine-tuning results stored under ``folder``, one entry per key."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def load(self, key: str, recipe: Recipe) -> FinetuneResult | None:
        """The stored result for ``key``, or ``None`` (a miss)."""
        import numpy as np
        from transformers.trainer_utils import PredictionOutput

        from .training import FinetuneResult

        entry = self.folder / key
        if not entry.is_dir():
            return None
        try:
            stored = json.loads((entry / _RESULT).read_text(encoding="utf-8"))
            arrays = {name: np.load(entry / f"{name}.npy", allow_pickle=False) for name in _ARRAYS}
            return FinetuneResult(
                recipe=recipe,
                metrics=stored["metrics"],
                history=stored["history"],
                predictions=PredictionOutput(metrics=stored["prediction_metrics"], **arrays),
                train_runtime=stored["train_runtime"],
                environment=stored["environment"],
                from_cache=True,
            )
        except (OSError, ValueError, KeyError, TypeError, EOFError) as error:
            _warn(f"cache entry {entry} is unreadable ({type(error).__name__}: {error}); fine-tuning again")
            shutil.rmtree(entry, ignore_errors=True)
            return None

    def store(self, key: str, result: FinetuneResult, inputs: Mapping[str, Any]) -> None:
        """Keep ``result`` under ``key``; ``inputs`` are written beside it for whoever wonders why."""
        import numpy as np

        stored = {
            "metrics": result.metrics,
            "history": result.history,
            "prediction_metrics": result.predictions.metrics,
            "train_runtime": result.train_runtime,
            "environment": result.environment,
            "inputs": inputs,
        }
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=self.folder, prefix=f".{key[:12]}-"))
            try:
                (staging / _RESULT).write_text(json.dumps(stored, indent=1, default=str), encoding="utf-8")
                np.save(staging / "predictions.npy", np.asarray(result.predictions.predictions), allow_pickle=False)
                np.save(staging / "label_ids.npy", np.asarray(result.predictions.label_ids), allow_pickle=False)
                for file in staging.iterdir():
                    with open(file, "rb") as handle:
                        os.fsync(handle.fileno())
                _publish(staging, self.folder / key)
            finally:
                shutil.rmtree(staging, ignore_errors=True)  # still there only when another process published first
        except OSError as error:
            _warn(f"cannot write the result cache in {self.folder} ({error}); results are not cached")

    def clear(self) -> None:
        """Remove every entry (``--cache-clear``)."""
        shutil.rmtree(self.folder, ignore_errors=True)


def _publish(staging: Path, entry: Path) -> None:
    """Rename the finished ``staging`` folder to ``entry``; an entry stored meanwhile by another process wins."""
    try:
        os.replace(staging, entry)
    except OSError:
        if not entry.is_dir():
            raise


def _warn(message: str) -> None:
    warnings.warn(pytest.PytestWarning(f"pytest-finetune: {message}"), stacklevel=3)
