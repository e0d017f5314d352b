"""Results that outlive the session: the same inputs are never fine-tuned twice.

An entry is a folder named by the sha256 of everything that can change the outcome (see
:func:`pytest_finetune.key.cache_inputs`): ``result.json`` (metrics, history,
runtime, environment, the number of validation examples) and ``predictions.npy`` / ``label_ids.npy``.
Entries are data only (JSON and ``.npy`` read without pickle, from regular files only, ``result.json`` of at
most ``storage.MAX_READ_BYTES``, an array's size checked against its file before it is read) and appear
atomically: written in a hidden staging folder (``.{key[:12]}-*``), then renamed. While a process looks
an entry up and, on a miss, fine-tunes and stores it, it holds the entry's lock file (``{key}.lock``, see
:meth:`ResultCache.training`): other processes that need the same entry (pytest-xdist workers, CI jobs
sharing the folder) wait, then read it. An entry that is
unreadable, or that no fine-tune can have written (see :func:`_unusable`:
arrays of other shapes or kinds, metrics that are not finite or out of range), is a miss, with a warning,
and is rewritten (a symbolic link in its place is removed, not what it points to); a folder that cannot
be written, or a result that cannot be such an entry (predictions that are not one numeric array, e.g.
logits with hidden states; metrics no baseline may hold), means no caching, with a warning, never a
failed test. The cache folder may hold other files: only entries, staging folders, lock files and links in
an entry's place are the cache's own (see :func:`is_entry`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .result import FinetuneResult
from .storage import open_regular, read_bounded
from .values import is_count, is_number, metric_problem

if TYPE_CHECKING:
    import numpy as np

    from .recipe import Recipe

#: Bumped when an entry's layout changes: older entries then miss.
FORMAT = 1
_RESULT = "result.json"
_ARRAYS = ("predictions", "label_ids")
#: The names of the cache's own folders: an entry (a sha256 key) or a staging folder (see ``store``).
_ENTRY_NAME = re.compile(r"[0-9a-f]{64}|\.[0-9a-f]{12}-[A-Za-z0-9_]+")
#: The name of an entry's lock file (see :meth:`ResultCache.training`).
_LOCK_NAME = re.compile(r"[0-9a-f]{64}\.lock")
#: Seconds a process waits for another's lock before it says that it waits (then it waits on).
LOCK_NOTICE_SECONDS = 2.0


def cache_key(inputs: Mapping[str, Any]) -> str:
    """The sha256 of ``inputs`` as canonical JSON."""
    canonical = json.dumps({"format": FORMAT, **inputs}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def is_entry(path: Path) -> bool:
    """Whether ``path`` is one of the cache's own: an entry or a staging folder, or a symbolic link
    in such a place (the cache removes the link, never what it points to), or an entry's lock file."""
    if _LOCK_NAME.fullmatch(path.name):
        return path.is_symlink() or path.is_file()
    return bool(_ENTRY_NAME.fullmatch(path.name)) and (path.is_symlink() or path.is_dir())


def cache_warning(message: str) -> pytest.PytestWarning:
    """The warning the cache gives when it cannot do its work (the session goes on without it)."""
    return pytest.PytestWarning(f"pytest-finetune: {message}")


class EntryBusy(Exception):
    """Another process holds the lock of the entry (it is fine-tuning it): see :meth:`ResultCache.training`."""


class ResultCache:
    """Fine-tuning results stored under ``folder``, one entry per key."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @contextlib.contextmanager
    def training(self, key: str, waiting: Callable[[Path], None] | None = None, *, wait: bool = True) -> Iterator[None]:
        """Hold ``key``'s lock while the block looks its entry up and, on a miss, fine-tunes and stores it: another
        process that needs the same entry waits, then reads it. ``waiting`` is told the lock file's path when the
        lock is not free within :data:`LOCK_NOTICE_SECONDS`. The lock is the operating system's (``filelock``,
        ``fcntl.flock`` on POSIX): a holder that ends, killed or not, releases it. Where the lock file cannot be
        made (a read-only folder), the block runs unlocked, with a warning. Without ``wait``, :class:`EntryBusy`
        at once where another process holds the lock."""
        from filelock import FileLock, Timeout

        path = self.folder / f"{key}.lock"
        lock = FileLock(path)
        held = False
        try:
            if path.is_symlink():
                path.unlink()  # its own file, never what a link points to
            self.folder.mkdir(parents=True, exist_ok=True)
            try:
                lock.acquire(timeout=LOCK_NOTICE_SECONDS if wait else 0)
            except Timeout:
                if not wait:
                    raise EntryBusy(path) from None
                if waiting is not None:
                    waiting(path)
                lock.acquire()
            held = True
        except OSError as error:
            _warn(f"cannot lock the result cache in {self.folder} ({error}); another process may fine-tune this")
        try:
            yield
        finally:
            if held:
                lock.release()

    def load(self, key: str, recipe: Recipe) -> FinetuneResult | None:
        """The stored result for ``key``, or ``None`` (a miss). An entry that cannot be read, or that
        holds what no fine-tune gives (see :func:`_unusable`), is a miss with a warning, and is removed."""
        from transformers.trainer_utils import PredictionOutput

        entry = self.folder / key
        if not os.path.lexists(entry):
            return None
        try:
            if not entry.is_dir():
                raise NotADirectoryError("not a folder")  # a file, or a link to nothing
            stored = _checked_entry(json.loads(read_bounded(entry / _RESULT).decode("utf-8")))
            arrays = {name: _read_array(entry / f"{name}.npy") for name in _ARRAYS}
            reason = _unusable(stored["metrics"], arrays, recipe.task_spec.is_regression, stored["examples"])
            if reason:
                raise ValueError(reason)
            return FinetuneResult(
                recipe=recipe,
                metrics=stored["metrics"],
                history=stored["history"],
                predictions=PredictionOutput(metrics=stored["prediction_metrics"], **arrays),
                train_runtime=stored["train_runtime"],
                environment=stored["environment"],
                from_cache=True,
            )
        # RecursionError: JSON nested too deeply; MemoryError: an array too large to hold after all
        except (OSError, ValueError, KeyError, TypeError, EOFError, RecursionError, MemoryError) as error:
            _warn(f"cache entry {entry} is unreadable ({type(error).__name__}: {error}); fine-tuning again")
            _remove(entry)
            return None

    def store(self, key: str, result: FinetuneResult, inputs: Mapping[str, Any]) -> None:
        """Keep ``result`` under ``key``; ``inputs`` are written beside it for whoever wonders why.

        A result that cannot be stored (predictions that are not one numeric array, a folder
        that cannot be written, anything that cannot be serialised) is not cached, with a
        warning; the test goes on. No half-written entry is left behind.
        """
        arrays = {name: getattr(result.predictions, name) for name in _ARRAYS}
        reason = _unusable(result.metrics, arrays, result.recipe.task_spec.is_regression)
        if reason:
            _warn(f"{reason}; this result is not cached")
            return
        stored = {
            "metrics": result.metrics,
            "history": result.history,
            "prediction_metrics": result.predictions.metrics,
            "train_runtime": result.train_runtime,
            "environment": result.environment,
            "examples": len(arrays["label_ids"]),
            "inputs": inputs,
        }
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=self.folder, prefix=f".{key[:12]}-"))
            try:
                _write_entry(staging, stored, arrays)
                _publish(staging, self.folder / key)
            finally:
                shutil.rmtree(staging, ignore_errors=True)  # still there only when another process published first
        except OSError as error:
            _warn(f"cannot write the result cache in {self.folder} ({error}); results are not cached")
        except Exception as error:  # anything else: a finished fine-tune never fails for its cache entry
            _warn(
                f"cannot write this result to the cache in {self.folder} ({type(error).__name__}: {error}); "
                "this result is not cached"
            )

    def clear(self) -> None:
        """Remove every entry and staging folder, and every symbolic link in the place of one (the link,
        not what it points to) (``--cache-clear``), and nothing else: the folder may be shared with other
        files (``finetune_cache_dir = .``).

        Raises the first :class:`OSError` of an entry that could not be removed, after
        removing all it can (an entry removed meanwhile by another process is no error).
        """
        if not self.folder.is_dir():
            return
        failure: OSError | None = None
        for path in sorted(self.folder.iterdir()):
            if not is_entry(path):
                continue
            try:
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
            except OSError as error:
                shutil.rmtree(path, ignore_errors=True)  # what it can: one file's error stops rmtree (a link: no-op)
                if os.path.lexists(path) and failure is None:
                    failure = error
        if failure is not None:
            raise failure


def _checked_entry(stored: Any) -> Mapping[str, Any]:
    """``stored``, a ``result.json``, if its fields have the types a result needs (metrics: a dict of
    numbers; the prediction metrics: a dict; history: a list of dicts; environment: a dict; the runtime:
    a number; the examples: a count); else a ``ValueError`` naming the first field that has not (an entry
    edited by hand)."""
    checks: dict[str, tuple[str, Callable[[Any], bool]]] = {
        "metrics": (
            "a dict of numbers",
            lambda v: isinstance(v, dict) and all(map(is_number, v.values())),
        ),
        "prediction_metrics": ("a dict", lambda value: isinstance(value, dict)),
        "history": (
            "a list of dicts",
            lambda v: isinstance(v, list) and all(isinstance(r, dict) for r in v),
        ),
        "environment": ("a dict", lambda value: isinstance(value, dict)),
        "train_runtime": ("a number", is_number),
        "examples": ("a count of examples", is_count),
    }
    if not isinstance(stored, dict):
        raise ValueError(f"{_RESULT} holds {type(stored).__name__}, not an object")
    for field, (expected, valid) in checks.items():
        if not valid(stored[field]):
            raise ValueError(f"{field} is {json.dumps(stored[field])[:60]}, not {expected}")
    return stored


def _not_storable(name: str, value: Any) -> str | None:
    """Why ``value`` (``predictions`` or ``label_ids``) cannot be an entry's ``.npy`` file, or ``None``."""
    import numpy as np

    if isinstance(value, tuple | list):
        return (
            f"{name} are a {type(value).__name__} of {len(value)} arrays, not one array (the model returns more "
            "than its logits, e.g. hidden states or attentions, which the cache does not keep: they can be large)"
        )
    if not isinstance(value, np.ndarray):
        return f"{name} are {type(value).__name__}, not a numpy array"
    if value.dtype.kind not in "biufc":
        return f"{name} are an array of {value.dtype}, not of numbers"
    return None


def _unusable(
    metrics: Mapping[str, Any], arrays: Mapping[str, Any], regression: bool, examples: int | None = None
) -> str | None:
    """Why ``metrics`` and ``arrays`` (``predictions``, ``label_ids``) cannot be a cached result, or ``None``:
    arrays that are not numbers (:func:`_not_storable`), metrics no baseline may hold (:func:`_metrics_problem`),
    or arrays of the wrong shapes for a classifier or a ``regression`` (:func:`_arrays_problem`,
    :func:`_scores_problem`; of other than ``examples`` examples, where given)."""
    for name, value in arrays.items():
        reason = _not_storable(name, value)
        if reason:
            return reason
    shapes = _scores_problem if regression else _arrays_problem
    return _metrics_problem(metrics) or shapes(arrays["predictions"], arrays["label_ids"], examples)


def _metrics_problem(metrics: Mapping[str, Any]) -> str | None:
    """Which metric no baseline may hold (see :func:`~pytest_finetune.values.metric_problem`); ``None`` when all
    are fine."""
    for name, value in metrics.items():
        problem = metric_problem(name, value)
        if problem:
            return f"metric {name!r} is {problem}"
    return None


def _arrays_problem(predictions: np.ndarray, label_ids: np.ndarray, examples: int | None) -> str | None:
    """Why ``predictions`` and ``label_ids`` are not a classifier's logits and labels, or ``None``: logits are
    one row of class scores per example (two classes or more), labels one integer class per example, each a
    column of the logits; ``examples`` of each, where given."""
    if label_ids.ndim != 1 or label_ids.dtype.kind not in "iu":
        return f"label_ids are an array of {label_ids.dtype} of shape {label_ids.shape}, not one integer per example"
    if predictions.ndim != 2 or predictions.shape[1] < 2 or predictions.shape[0] != len(label_ids):
        return (
            f"predictions are an array of shape {predictions.shape}, not one row of class scores (two or more) "
            f"for each of the {len(label_ids)} labels"
        )
    if examples is not None and len(label_ids) != examples:
        return f"the arrays hold {len(label_ids)} examples, and {_RESULT} says {examples}"
    if len(label_ids) and not 0 <= label_ids.min() <= label_ids.max() < predictions.shape[1]:
        classes = predictions.shape[1]
        return (
            f"label_ids range from {label_ids.min()} to {label_ids.max()}, the predictions' classes 0 to {classes - 1}"
        )
    return None


def _scores_problem(predictions: np.ndarray, label_ids: np.ndarray, examples: int | None) -> str | None:
    """Why ``predictions`` and ``label_ids`` are not a regression's scores and targets, or ``None``: one finite
    number per example in each (predictions as one column, or flat); ``examples`` of each, where given."""
    import numpy as np

    if label_ids.ndim != 1 or not np.isfinite(label_ids).all():
        return f"label_ids are an array of {label_ids.dtype} of shape {label_ids.shape}, not one score per example"
    if predictions.shape not in ((len(label_ids),), (len(label_ids), 1)) or not np.isfinite(predictions).all():
        return f"predictions are an array of shape {predictions.shape}, not one finite score for each of the labels"
    if examples is not None and len(label_ids) != examples:
        return f"the arrays hold {len(label_ids)} examples, and {_RESULT} says {examples}"
    return None


def _read_array(path: Path) -> np.ndarray:
    """An entry's ``.npy`` file, without pickle; a ``ValueError`` before anything is allocated when its header
    claims more data than the file holds (a truncated file, or a header edited to claim a huge shape); an
    ``OSError`` for a file that is not a regular file (see :func:`~pytest_finetune.storage.open_regular`)."""
    import numpy as np

    with open_regular(path) as handle:
        version = np.lib.format.read_magic(handle)
        readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in readers:  # np.save writes 1.0, or 2.0 for a header over 64 KiB
            raise ValueError(f"{path.name} is a .npy file of format version {version}, not 1.0 or 2.0")
        shape, _, dtype = readers[version](handle)
        claimed = math.prod(shape) * dtype.itemsize
        held = os.fstat(handle.fileno()).st_size - handle.tell()
        if claimed > held:
            raise ValueError(f"{path.name} claims shape {shape} of {dtype} ({claimed} bytes), and holds {held} bytes")
        handle.seek(0)
        return np.load(handle, allow_pickle=False)


def _write_entry(staging: Path, stored: Mapping[str, Any], arrays: Mapping[str, Any]) -> None:
    """Write an entry's files into ``staging`` and flush them to disk."""
    import numpy as np

    (staging / _RESULT).write_text(json.dumps(stored, indent=1, default=str), encoding="utf-8")
    for name, array in arrays.items():
        np.save(staging / f"{name}.npy", array, allow_pickle=False)
    for file in staging.iterdir():
        with open(file, "rb") as handle:
            os.fsync(handle.fileno())


def _publish(staging: Path, entry: Path) -> None:
    """Rename the finished ``staging`` folder to ``entry``; an entry stored meanwhile by another process wins."""
    try:
        os.replace(staging, entry)
    except OSError:
        if not entry.is_dir():
            raise


def _remove(entry: Path) -> None:
    """Remove what stands in an entry's place: a folder with its files; a symbolic link or a file itself
    (never what a link points to). What cannot be removed stays (the next store warns)."""
    if entry.is_symlink() or not entry.is_dir():
        with contextlib.suppress(OSError):
            entry.unlink()
    else:
        shutil.rmtree(entry, ignore_errors=True)


def _warn(message: str) -> None:
    warnings.warn(cache_warning(message), stacklevel=3)
