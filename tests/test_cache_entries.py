"""Cache entries that no fine-tune can have written (edited, damaged, forged, or a link in an entry's place):
each is a miss with a warning naming what is wrong, and is rewritten; never a wrong verdict or a traceback."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from test_cache import CONFTEST, TEST, entries, keyed, run, shared_cache


@pytest.fixture
def project(finetune_project: pytest.Pytester) -> pytest.Pytester:
    finetune_project.makeconftest(CONFTEST)
    finetune_project.makepyfile(test_quality=TEST)
    return finetune_project


def save_array(name: str, change: Callable[[np.ndarray], np.ndarray]) -> Callable[[Path], None]:
    """Replace the entry's array ``name`` by ``change`` of it (a loadable ``.npy`` file)."""
    return lambda entry: np.save(entry / f"{name}.npy", change(np.load(entry / f"{name}.npy")), allow_pickle=False)


def set_metric(name: str, value: float) -> Callable[[Path], None]:
    """Set metric ``name`` in the entry's ``result.json`` (NaN is written as JSON's ``NaN``, as Python reads it)."""

    def change(entry: Path) -> None:
        stored = json.loads((entry / "result.json").read_text())
        stored["metrics"][name] = value
        (entry / "result.json").write_text(json.dumps(stored))

    return change


def huge_header(entry: Path) -> None:
    """A ``predictions.npy`` whose header claims 800 GB, followed by 64 bytes."""
    with open(entry / "predictions.npy", "wb") as handle:
        header = {"descr": "<f4", "fortran_order": False, "shape": (10**11, 2)}
        np.lib.format.write_array_header_1_0(handle, header)
        handle.write(b"\0" * 64)


def deeply_nested(entry: Path) -> None:
    (entry / "result.json").write_text("[" * 100_000 + "]" * 100_000)


def shorter_arrays(entry: Path) -> None:
    """Both arrays cut to 10 examples: consistent with each other, not with the 24 the entry holds."""
    for name in ("predictions", "label_ids"):
        save_array(name, lambda array: array[:10])(entry)


CORRUPTIONS = {
    "labels-fractions": (
        save_array("label_ids", lambda labels: np.full(len(labels), 0.5)),
        "ValueError: label_ids are an array of float64 of shape (24,), not one integer per example",
    ),
    "labels-out-of-range": (
        save_array("label_ids", lambda labels: np.where(np.arange(len(labels)) == 0, 7, labels)),
        "ValueError: label_ids range from 0 to 7, the predictions' classes 0 to 1",
    ),
    "predictions-strings": (
        save_array("predictions", lambda logits: np.array(["x", "y"] * (len(logits) // 2))),
        "ValueError: predictions are an array of <U1, not of numbers",
    ),
    "predictions-one-dimensional": (
        save_array("predictions", lambda logits: logits[:, 0]),
        "ValueError: predictions are an array of shape (24,), not one row of class scores*for each of the 24 labels",
    ),
    "predictions-shorter": (
        save_array("predictions", lambda logits: logits[:10]),
        "ValueError: predictions are an array of shape (10, 2), not one row of class scores*for each of the 24 labels",
    ),
    "both-shorter": (shorter_arrays, "ValueError: the arrays hold 10 examples, and result.json says 24"),
    "huge-header": (
        huge_header,
        "ValueError: predictions.npy claims shape (100000000000, 2) of float32 (800000000000 bytes)*holds 64 bytes",
    ),
    "deeply-nested-json": (deeply_nested, "RecursionError: *"),
    "accuracy-nan": (set_metric("accuracy", float("nan")), "ValueError: metric 'accuracy' is nan, not a finite number"),
    "accuracy-percent": (set_metric("accuracy", 83), "ValueError: metric 'accuracy' is 83, outside [0, 1]"),
    "f1-negative": (set_metric("f1", -0.5), "ValueError: metric 'f1' is -0.5, outside [0, 1]"),
    "eval-loss-infinite": (
        set_metric("eval_loss", float("inf")),
        "ValueError: metric 'eval_loss' is inf, not a finite number",
    ),
}


@pytest.mark.parametrize("corrupt, message", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_an_entry_no_fine_tune_gives_is_a_miss_with_a_warning_and_is_rewritten(
    project: pytest.Pytester, corrupt: Callable[[Path], None], message: str
) -> None:
    """Loadable but wrong (the test would get a wrong verdict, or intervals that miss its metric), or built
    to make the reader fail (a MemoryError, a RecursionError): a miss, fine-tuned again, the test passes
    against its baseline, and the next run is served the rewritten entry."""
    _, trained, first = run(project)
    (entry,) = entries(project)
    corrupt(entry)
    result, trained, again = run(project)
    assert trained == 2 and again["from_cache"] is False
    shown = message.replace("[", "[[]")  # fnmatch: "[0, 1]" is a character class
    result.stdout.fnmatch_lines([f"*pytest-finetune: cache entry {entry} is unreadable ({shown}); fine-tuning again"])
    result.stdout.no_fnmatch_line("*regressed*")
    assert again == first
    assert run(project)[1:] == (2, {**first, "from_cache": True})  # rewritten


def test_a_diverged_result_is_not_cached(project: pytest.Pytester) -> None:
    """What a cache entry may not hold is not stored either (a run whose loss became NaN fails, and is not
    served later as a cached NaN): a warning, nothing stored, the next run fine-tunes again."""
    project.makeconftest("""
def pytest_finetune_result(result):
    with open("trainings.txt", "a") as handle:
        handle.write("trained\\n")
    result.metrics["eval_loss"] = float("nan")
""")
    for trainings in (1, 2):
        result = project.runpytest("--finetune", "--snapshot-update")
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(
            ["*pytest-finetune: metric 'eval_loss' is nan, not a finite number; this result is not cached"]
        )
        assert entries(project) == []
        assert len((project.path / "trainings.txt").read_text().splitlines()) == trainings


def linked_away(entry: Path, target: Path) -> None:
    """Move ``entry`` to ``target`` and leave a symbolic link to it in its place."""
    shutil.move(entry, target)
    entry.symlink_to(target, target_is_directory=True)


def test_a_link_to_a_corrupt_entry_is_replaced_by_an_entry(project: pytest.Pytester, tmp_path: Path) -> None:
    """A symbolic link in an entry's place, to a folder whose ``result.json`` is damaged: a miss with a
    warning, the link is replaced by a new entry (what it pointed to is left alone), the next run is served."""
    run(project)
    (entry,) = entries(project)
    target = tmp_path / "elsewhere"
    linked_away(entry, target)
    (target / "result.json").write_text("{")
    result, trained, _ = run(project)
    assert trained == 2
    result.stdout.fnmatch_lines([f"*pytest-finetune: cache entry {entry} is unreadable (JSONDecodeError*"])
    assert entry.is_dir() and not entry.is_symlink()
    assert (target / "result.json").read_text() == "{"
    assert run(project)[1] == 2


def test_cache_clear_removes_a_link_in_an_entrys_place(project: pytest.Pytester, tmp_path: Path) -> None:
    """``--cache-clear`` removes a symbolic link named like an entry (a valid entry behind it would be served
    otherwise), not the folder it points to."""
    shared = shared_cache(project)
    run(project)
    (entry,) = keyed(shared)
    target = tmp_path / "elsewhere"
    linked_away(entry, target)
    assert run(project)[1] == 1  # served through the link
    assert run(project, "--cache-clear")[1] == 2
    assert [path.name for path in keyed(shared)] == [entry.name] and not entry.is_symlink()
    assert sorted(path.name for path in target.iterdir()) == ["label_ids.npy", "predictions.npy", "result.json"]
