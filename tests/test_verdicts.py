"""Tolerances, the comparison and atomic writes, unit by unit (answers known by construction)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_finetune.errors import FinetuneError
from pytest_finetune.storage import write_atomically
from pytest_finetune.tolerances import Tolerances, build_tolerances, check_setting, parse_setting
from pytest_finetune.verdicts import Outcome, compare, recipe_changes

RECIPE = {
    "task": "mrpc",
    "model": "a/model",
    "model_id": "sha256:1",
    "data": "d",
    "data_id": "sha256:2",
    "seed": 42,
    "training_args": {"learning_rate": 5e-5},
}


def record(**metrics: float) -> dict:
    return {"recipe": RECIPE, "metrics": metrics, "environment": {"device": "cpu", "dtype": "float32"}}


def test_defaults_gate_accuracy_and_f1_at_one_point() -> None:
    assert dict(Tolerances().allowed) == {"accuracy": 0.01, "f1": 0.01}


def test_settings_apply_in_order() -> None:
    tolerances = build_tolerances([0.05, {"f1": 0.02, "eval_loss": 0.1}, parse_setting("accuracy=0.03", "here")])
    assert dict(tolerances.allowed) == {"accuracy": 0.03, "f1": 0.02, "eval_loss": 0.1}
    assert dict(build_tolerances([{"eval_loss": 0.1}, 0.5]).allowed) == {"accuracy": 0.5, "f1": 0.5, "eval_loss": 0.5}


@pytest.mark.parametrize("value", [-0.01, float("nan"), float("inf"), "0.1", True, None, {"f1": -1}, {"": 0.1}, {}])
def test_bad_settings_name_the_place(value: object) -> None:
    with pytest.raises(FinetuneError, match="^marker here: "):
        check_setting(value, "marker here")


@pytest.mark.parametrize(
    ("baseline", "current", "outcome"),
    [
        (0.80, 0.80, Outcome.PASSED),
        (0.80, 0.79, Outcome.PASSED),  # exactly the tolerance
        (0.80, 0.789, Outcome.REGRESSED),
        (0.80, 0.811, Outcome.IMPROVED),
    ],
)
def test_scores_fail_on_a_drop_only(baseline: float, current: float, outcome: Outcome) -> None:
    verdict = compare(record(accuracy=current, f1=0.5), record(accuracy=baseline, f1=0.5), Tolerances())
    assert verdict.outcome is outcome
    assert verdict.rows[0].metric == "accuracy"
    assert verdict.rows[0].delta == pytest.approx(current - baseline)


def test_losses_fail_on_a_rise_only() -> None:
    tolerances = build_tolerances([{"eval_loss": 0.01}])
    up = compare(record(accuracy=0.8, f1=0.8, eval_loss=0.6), record(accuracy=0.8, f1=0.8, eval_loss=0.5), tolerances)
    down = compare(record(accuracy=0.8, f1=0.8, eval_loss=0.4), record(accuracy=0.8, f1=0.8, eval_loss=0.5), tolerances)
    assert (up.outcome, down.outcome) == (Outcome.REGRESSED, Outcome.IMPROVED)


def test_strict_fails_both_ways() -> None:
    strict = Tolerances(strict=True)
    verdict = compare(record(accuracy=0.9, f1=0.8), record(accuracy=0.8, f1=0.8), strict)
    assert verdict.outcome is Outcome.CHANGED and verdict.outcome.failed


def test_a_regression_outweighs_an_improvement_and_ungated_metrics_are_shown() -> None:
    verdict = compare(record(accuracy=0.9, f1=0.7, extra=1.0), record(accuracy=0.8, f1=0.8, extra=0.0), Tolerances())
    assert verdict.outcome is Outcome.REGRESSED
    assert [(row.metric, row.verdict) for row in verdict.rows] == [
        ("accuracy", "improved"),
        ("f1", "regressed"),
        ("extra", "not gated"),
    ]


def test_a_gated_metric_the_run_lacks_fails() -> None:
    verdict = compare(record(accuracy=0.8), record(accuracy=0.8, f1=0.8), Tolerances())
    assert verdict.outcome is Outcome.MISSING_METRIC


def test_an_improved_metric_does_not_hide_a_significantly_worse_paired_test() -> None:
    """15 examples became wrong and 2 right (McNemar p = 0.0023) while eval_loss improved beyond
    its tolerance: the paired test still fails the run, as without that tolerance."""

    def examples(wrong: list[int]) -> dict:
        return {"examples": {"count": 408, "digest": "same", "wrong": wrong}}

    baseline = record(accuracy=1 - 112 / 408, f1=0.8, eval_loss=0.55) | examples([*range(100, 210), 400, 401])
    current = record(accuracy=1 - 125 / 408, f1=0.8, eval_loss=0.53) | examples([*range(100, 210), *range(15)])
    with_loss = compare(current, baseline, build_tolerances([0.05, {"eval_loss": 0.01}]))
    assert [row.verdict for row in with_loss.rows] == ["ok", "improved", "ok"]
    assert with_loss.paired is not None and with_loss.paired.significantly_worse
    assert with_loss.outcome is Outcome.REGRESSED
    assert compare(current, baseline, build_tolerances([0.05])).outcome is Outcome.REGRESSED


def test_recipe_changes_compare_model_and_data_by_identity() -> None:
    moved = RECIPE | {"model": "b/model"}  # same content elsewhere
    assert recipe_changes(moved, RECIPE) == ()
    edited = RECIPE | {"model_id": "sha256:9"}  # same path, new content
    (change,) = recipe_changes(edited, RECIPE)
    assert (change.key, change.baseline, change.current) == ("model", "sha256:1", "sha256:9")
    retrained = RECIPE | {"seed": 1, "training_args": {"learning_rate": 1e-3, "max_steps": 5}}
    assert [c.key for c in recipe_changes(retrained, RECIPE)] == [
        "seed",
        "training_args.learning_rate",
        "training_args.max_steps",
    ]
    verdict = compare(record(accuracy=0.1, f1=0.1) | {"recipe": retrained}, record(accuracy=0.8, f1=0.8), Tolerances())
    assert verdict.outcome is Outcome.REGRESSED and [row.verdict for row in verdict.rows] == ["regressed"] * 2
    assert verdict.recipe_changes == recipe_changes(retrained, RECIPE)
    assert verdict.headline == (
        "recipe changed (seed 42 → 1, learning_rate 5e-05 → 0.001, max_steps (absent) → 5); "
        "regressed by 0.700 accuracy, 0.700 f1"
    )


def test_another_task_is_not_comparable() -> None:
    """Another task's labels and metrics are not this one's: refused, whatever the numbers."""
    current = record(accuracy=0.8, f1=0.8) | {"recipe": RECIPE | {"task": "rte"}}
    verdict = compare(current, record(accuracy=0.8, f1=0.8), Tolerances())
    assert verdict.outcome is Outcome.NOT_COMPARABLE and verdict.outcome.failed and verdict.rows == ()
    assert verdict.not_comparable == "the task changed (mrpc → rte): its labels and metrics are another task's"


def test_another_device_or_dtype_is_noted_not_failed() -> None:
    current = record(accuracy=0.8, f1=0.8) | {"environment": {"device": "cuda", "dtype": "bfloat16"}}
    verdict = compare(current, record(accuracy=0.8, f1=0.8), Tolerances())
    assert verdict.outcome is Outcome.PASSED
    assert verdict.notes == (
        "baseline recorded with device cpu, dtype float32; this run used device cuda, dtype bfloat16: "
        "expect differences of about a seed's spread",
    )


def test_other_dropout_masks_are_noted_where_the_baseline_records_them() -> None:
    masks = {"device": "cpu", "dtype": "float32", "dropout_masks": "numpy"}
    current = record(accuracy=0.8, f1=0.8) | {"environment": masks}
    baseline = record(accuracy=0.8, f1=0.8) | {"environment": masks | {"dropout_masks": "torch"}}
    assert compare(current, baseline, Tolerances()).notes == (
        "baseline recorded with dropout_masks torch; this run used dropout_masks numpy: "
        "expect differences of about a seed's spread",
    )
    older = record(accuracy=0.8, f1=0.8)  # recorded before the source of masks was: nothing to compare
    assert compare(current, older, Tolerances()).notes == ()


def test_an_atomic_write_that_fails_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "baseline.json"
    write_atomically(target, "old\n")

    def disk_full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_atomically(target, "new\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["baseline.json"]


def test_an_atomic_write_keeps_the_files_permissions(tmp_path: Path) -> None:
    shared = tmp_path / "shared.json"
    write_atomically(shared, "old\n")
    shared.chmod(0o664)
    write_atomically(shared, "new\n")
    assert (shared.read_text(), shared.stat().st_mode & 0o777) == ("new\n", 0o664)

    umask = os.umask(0o027)
    try:
        write_atomically(tmp_path / "fresh.json", "new\n")
    finally:
        os.umask(umask)
    assert (tmp_path / "fresh.json").stat().st_mode & 0o777 == 0o640  # 0o666 less the umask, as open() gives


def test_an_atomic_write_through_a_symlink_replaces_its_target(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "baseline.json"
    write_atomically(target, "old\n")
    link = tmp_path / "baseline.json"
    link.symlink_to(target)
    write_atomically(link, "new\n")
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert target.read_text() == "new\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["baseline.json"]
