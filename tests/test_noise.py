"""Noise-aware verdicts: bootstrap intervals, the paired test, calibration and ``tolerance="auto"``.

Unit tests check the statistics on answers known by construction; pytester sessions on the
tiny model check them as a user meets them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import QUALITY_BASELINE as BASELINE
from helpers import QUALITY_TEST, make_rows, write_glue_tsv

from pytest_finetune.errors import FinetuneError
from pytest_finetune.stats import bootstrap_intervals, mcnemar_exact, paired_test, spread
from pytest_finetune.tolerances import AUTO, Tolerances, build_tolerances, parse_setting
from pytest_finetune.verdicts import Outcome, compare

# ---------------------------------------------------------------- statistics


@pytest.mark.parametrize("worse, better", [(0, 0), (1, 0), (10, 0), (12, 4), (4, 12), (30, 31), (60, 35), (0, 200)])
def test_mcnemar_exact_is_the_binomial_test_of_the_flips(worse: int, better: int) -> None:
    scipy_stats = pytest.importorskip("scipy.stats", reason="scipy (from scikit-learn) checks the p-values")
    expected = 1.0 if worse + better == 0 else scipy_stats.binomtest(worse, worse + better, 0.5).pvalue
    assert mcnemar_exact(worse, better) == pytest.approx(expected, rel=1e-9)


def test_ten_flips_one_way_are_significant_at_one_percent() -> None:
    assert mcnemar_exact(10, 0) == 2 / 2**10
    test = paired_test(current_wrong=range(10), baseline_wrong=[], examples=100, alpha=0.01)
    assert (test.worse, test.better, test.significantly_worse) == (10, 0, True)
    assert "10 became wrong, 0 became right" in test.describe() and "significantly worse" in test.describe()
    balanced = paired_test(current_wrong=[1, 2, 3], baseline_wrong=[4, 5, 6], examples=100, alpha=0.01)
    assert (balanced.worse, balanced.better, balanced.significant) == (3, 3, False)


def test_the_paired_test_matches_examples_by_id_not_position() -> None:
    test = paired_test(current_wrong=[7, 3, 5], baseline_wrong=[5, 7, 3], examples=10, alpha=0.05)
    assert (test.worse, test.better, test.p_value) == (0, 0, 1.0)


def test_bootstrap_intervals_of_a_perfect_run_are_points() -> None:
    labels = np.array([0, 1, 1, 0, 1] * 20)
    assert bootstrap_intervals(labels, labels) == {"accuracy": (1.0, 1.0), "f1": (1.0, 1.0)}


def test_bootstrap_interval_of_accuracy_matches_the_normal_approximation() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 4000)
    predicted = np.where(rng.random(4000) < 0.8, labels, 1 - labels)  # 80 % right
    accuracy = float(np.mean(predicted == labels))
    low, high = bootstrap_intervals(predicted, labels)["accuracy"]
    half_width = 1.96 * np.sqrt(accuracy * (1 - accuracy) / 4000)
    assert low == pytest.approx(accuracy - half_width, abs=0.004)
    assert high == pytest.approx(accuracy + half_width, abs=0.004)
    assert bootstrap_intervals(predicted, labels) == bootstrap_intervals(predicted, labels)  # seeded


def test_bootstrap_interval_of_f1_holds_the_f1() -> None:
    labels = np.array([1] * 60 + [0] * 40)
    predicted = np.array([1] * 50 + [0] * 10 + [1] * 10 + [0] * 30)  # tp 50, fn 10, fp 10: F1 = 100/120
    low, high = bootstrap_intervals(predicted, labels)["f1"]
    assert low < 100 / 120 < high
    assert high - low < 0.2


def one_draw_intervals(predicted: np.ndarray, labels: np.ndarray, resamples: int) -> dict[str, tuple[float, float]]:
    """The intervals as the bootstrap computed them in one ``(resamples, n)`` draw (recorded baselines hold them)."""
    rows = np.random.default_rng(0).integers(0, labels.size, size=(resamples, labels.size))
    tp = ((predicted == 1) & (labels == 1))[rows].sum(axis=1)
    wrong = (predicted != labels)[rows].sum(axis=1)
    denominator = 2 * tp + wrong
    f1 = np.divide(2 * tp, denominator, out=np.zeros(resamples), where=denominator > 0)
    accuracy = (labels.size - wrong) / labels.size
    return {
        name: (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5)))
        for name, v in (("accuracy", accuracy), ("f1", f1))
    }


def test_the_bootstrap_draws_in_chunks_of_bounded_memory_and_the_same_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    """However many resamples are asked for, the indices drawn at once stay under the chunk's size,
    and the intervals are those of one draw of them all."""
    import tracemalloc

    from pytest_finetune import stats

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 409)
    predicted = np.where(rng.random(409) < 0.8, labels, 1 - labels)
    expected = one_draw_intervals(predicted, labels, 3001)
    monkeypatch.setattr(stats, "_CHUNK_INDICES", 2**14)  # 40 resamples of 409 at once: 128 KiB of indices
    tracemalloc.start()
    try:
        intervals = bootstrap_intervals(predicted, labels, 3001)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert intervals == expected
    assert peak < 2**20  # one draw of them all: 3001 x 409 x 8 bytes, 9.4 MiB


def test_spread_is_the_sample_standard_deviation() -> None:
    assert spread([0.8, 0.82, 0.84]) == pytest.approx({"mean": 0.82, "std": 0.02, "min": 0.8, "max": 0.84})


# ---------------------------------------------------------------- the verdict


def record(accuracy: float, wrong: list[int], digest: str = "ids", calibration: dict | None = None) -> dict:
    result = {
        "metrics": {"accuracy": accuracy, "f1": 0.8},
        "examples": {"count": 100, "digest": digest, "wrong": wrong},
    }
    return result | ({"calibration": calibration} if calibration else {})


def test_a_significant_drop_within_tolerance_fails() -> None:
    verdict = compare(record(0.88, list(range(12))), record(0.90, list(range(10, 20))[:10]), build_tolerances([0.05]))
    # 10 became wrong (0-9), 8 became right (12-19): accuracy -0.02, not significant
    assert verdict.outcome is Outcome.PASSED and verdict.paired is not None
    assert (verdict.paired.worse, verdict.paired.better) == (10, 8)
    worse = compare(record(0.88, list(range(12))), record(0.99, []), build_tolerances([0.2]))
    assert worse.outcome is Outcome.REGRESSED and worse.paired is not None and worse.paired.significantly_worse
    assert worse.rows[0].verdict == "ok"  # the metric alone was within tolerance
    assert compare(record(0.88, list(range(12))), record(0.99, []), build_tolerances([0.2]), alpha=1e-6).outcome is (
        Outcome.PASSED
    )


def test_strict_also_fails_a_significant_improvement() -> None:
    better = (record(0.99, []), record(0.88, list(range(12))))
    assert compare(*better, build_tolerances([0.2])).outcome is Outcome.PASSED
    assert compare(*better, build_tolerances([0.2], strict=True)).outcome is Outcome.CHANGED


def test_other_validation_examples_are_not_comparable() -> None:
    """The yardstick moved: no paired test can be made, and the metrics measure other examples."""
    verdict = compare(record(0.88, list(range(12))), record(0.99, [], digest="other"), build_tolerances([0.2]))
    assert verdict.paired is None and verdict.outcome is Outcome.NOT_COMPARABLE
    assert verdict.not_comparable == "the validation examples changed (by ids: 100 there, 100 here, other ids)"
    old_baseline = {"metrics": {"accuracy": 0.88, "f1": 0.8}}
    assert any("no per-example results" in note for note in compare(record(0.88, []), old_baseline, Tolerances()).notes)


CALIBRATION = {
    "seeds": [42, 43, 44],
    "metrics": {
        "accuracy": {"mean": 0.85, "std": 0.01, "min": 0.84, "max": 0.86},
        "f1": {"mean": 0.85, "std": 0.001, "min": 0.84, "max": 0.86},
    },
}


def test_auto_allows_k_std_with_a_floor() -> None:
    auto = build_tolerances([parse_setting("auto", "here")])
    assert auto.auto_metrics == ("accuracy", "f1")
    resolved = auto.resolved(CALIBRATION["metrics"])
    assert resolved["accuracy"] == pytest.approx(0.03) and resolved["f1"] == 0.005  # 3 x 0.001 is below the floor
    verdict = compare(
        record(0.871, [], calibration=None), record(0.90, [], calibration=CALIBRATION), auto
    )  # -0.029: within 3 x 0.01
    assert verdict.outcome is Outcome.PASSED
    assert any("tolerance auto = max(3 x std, 0.005) over 3 seeds" in note for note in verdict.notes)
    assert compare(record(0.869, []), record(0.90, [], calibration=CALIBRATION), auto).outcome is Outcome.REGRESSED
    wider = build_tolerances([{"accuracy": AUTO}], auto_k=4)
    assert compare(record(0.869, []), record(0.90, [], calibration=CALIBRATION), wider).outcome is Outcome.PASSED


def test_auto_without_a_usable_calibration_says_how_to_get_one() -> None:
    auto = build_tolerances([AUTO])
    with pytest.raises(FinetuneError, match="no calibration; record it with: pytest --finetune --snapshot-update"):
        compare(record(0.9, []), record(0.9, []), auto)
    other_examples = compare(record(0.9, []), record(0.9, [], digest="other", calibration=CALIBRATION), auto)
    assert other_examples.outcome is Outcome.NOT_COMPARABLE  # its calibration measured other examples


# ---------------------------------------------------------------- as a user meets it


@pytest.fixture
def noise_project(finetune_project: pytest.Pytester) -> pytest.Pytester:
    """The tiny project with 100 validation pairs (enough flips for the paired test to speak)."""
    data = finetune_project.path / "data100"
    write_glue_tsv(data / "train.tsv", make_rows(48, seed=1))
    write_glue_tsv(data / "dev.tsv", make_rows(100, seed=2))
    ini = (finetune_project.path / "tox.ini").read_text()
    ini = "\n".join(
        f"finetune_data = {data}" if line.startswith("finetune_data") else line for line in ini.splitlines()
    )
    (finetune_project.path / "tox.ini").write_text(ini + "\n")
    finetune_project.makepyfile(test_quality=QUALITY_TEST)
    return finetune_project


def read(project: pytest.Pytester, relative: Path = BASELINE) -> dict:
    return json.loads((project.path / relative).read_text())


def write(project: pytest.Pytester, record: dict, relative: Path = BASELINE) -> None:
    (project.path / relative).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def test_a_baseline_keeps_intervals_and_the_examples_it_got_wrong(noise_project: pytest.Pytester) -> None:
    result = noise_project.runpytest("--finetune", "--snapshot-update", "--finetune-report=report.json")
    result.assert_outcomes(passed=1)
    stored = read(noise_project)
    examples, intervals, accuracy = stored["examples"], stored["intervals"], stored["metrics"]["accuracy"]
    assert examples["count"] == 100 and len(examples["digest"]) == 64
    assert len(examples["wrong"]) == round((1 - accuracy) * 100)
    assert set(examples["wrong"]) <= set(range(100)) and examples["wrong"] == sorted(examples["wrong"])
    assert intervals["accuracy"][0] <= accuracy <= intervals["accuracy"][1]
    assert intervals["f1"][0] <= stored["metrics"]["f1"] <= intervals["f1"][1]
    low, high = intervals["accuracy"]
    result.stdout.fnmatch_lines([f"*test_quality.py::test_quality*{accuracy:.4f} [[]{low:.3f}, {high:.3f}[]]*"])

    rerun = noise_project.runpytest("--finetune", "-o", "finetune_bootstrap_resamples=0", "--finetune-report=r.json")
    rerun.assert_outcomes(passed=1)
    report = json.loads((noise_project.path / "r.json").read_text())["tests"][0]
    assert report["paired_test"] == {
        "examples": 100,
        "worse": 0,
        "better": 0,
        "p_value": 1.0,
        "alpha": 0.01,
        "method": "exact McNemar",
        "mean_change": None,
        "significantly_worse": False,
    }
    assert "intervals" not in report["record"]  # 0 resamples: none


def test_the_paired_test_fails_a_run_worse_on_many_examples(noise_project: pytest.Pytester) -> None:
    noise_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)
    stored = read(noise_project)
    wrong = len(stored["examples"]["wrong"])
    assert wrong >= 10, "the tiny model should miss some of 100 pairs"
    stored["examples"]["wrong"] = []  # as if the baseline's run got every pair right, with the same metrics
    write(noise_project, stored)

    result = noise_project.runpytest("--finetune")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*regressed against the baseline*",
            "accuracy*ok",
            f"paired test on 100 examples: {wrong} became wrong, 0 became right; exact McNemar p = *"
            "(alpha 0.01): significantly worse",
        ]
    )
    p_value = mcnemar_exact(wrong, 0)
    noise_project.runpytest("--finetune", f"--finetune-alpha={p_value / 2}").assert_outcomes(passed=1)
    noise_project.makeini((noise_project.path / "tox.ini").read_text() + f"finetune_alpha = {p_value / 2}\n")
    noise_project.runpytest("--finetune").assert_outcomes(passed=1)


def test_reordered_validation_rows_still_line_up_by_idx(noise_project: pytest.Pytester) -> None:
    noise_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)
    noise_project.makeconftest("""
        import pytest

        @pytest.fixture
        def tokenized_mrpc(tokenized_mrpc):
            tokenized_mrpc["validation"] = tokenized_mrpc["validation"].shuffle(seed=3)
            return tokenized_mrpc
        """)
    result = noise_project.runpytest("--finetune", "--finetune-report=report.json")
    result.assert_outcomes(passed=1)
    report = json.loads((noise_project.path / "report.json").read_text())["tests"][0]
    assert report["paired_test"]["examples"] == 100
    assert report["paired_test"]["worse"] == report["paired_test"]["better"] == 0


def test_other_validation_examples_are_refused_as_not_comparable(noise_project: pytest.Pytester) -> None:
    """60 of the 100 validation examples: the yardstick moved, so no tolerance makes the numbers comparable."""
    noise_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)
    noise_project.makeconftest("""
        import pytest

        @pytest.fixture
        def tokenized_mrpc(tokenized_mrpc):
            tokenized_mrpc["validation"] = tokenized_mrpc["validation"].select(range(60))
            return tokenized_mrpc
        """)
    result = noise_project.runpytest("--finetune", "-v", "--finetune-tolerance=1", "--finetune-report=report.json")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_quality: not comparable against the baseline*",
            "*not comparable: the validation examples changed (by content: sha256:* → sha256:*)",
            "*record the baseline anew: pytest --finetune --snapshot-update test_quality.py::test_quality",
        ]
    )
    report = json.loads((noise_project.path / "report.json").read_text())["tests"][0]
    assert (report["outcome"], report["paired_test"], report["metrics"]["accuracy"]["baseline"]) == (
        "not comparable",
        None,
        None,
    )


def test_calibration_stores_the_spread_of_the_seeds_runs(noise_project: pytest.Pytester) -> None:
    """Seed s of a calibration is the run a recipe with seed=s gives: the spread is theirs."""
    noise_project.makepyfile(test_seeds="""
        import pytest

        @pytest.mark.finetune(seed=43)
        def test_43():
            pass

        @pytest.mark.finetune(seed=44)
        def test_44():
            pass
        """)
    noise_project.runpytest("--finetune", "--snapshot-update", "test_seeds.py").assert_outcomes(passed=2)
    result = noise_project.runpytest(
        "--finetune", "--snapshot-update", "--finetune-calibrate", "3", "--finetune-no-cache", "test_quality.py"
    )
    result.assert_outcomes(passed=1)
    stored = read(noise_project)
    runs = [
        stored["metrics"],
        read(noise_project, Path("baselines/test_seeds/test_43.json"))["metrics"],
        read(noise_project, Path("baselines/test_seeds/test_44.json"))["metrics"],
    ]
    calibration = stored["calibration"]
    assert calibration["seeds"] == [42, 43, 44]
    for name in ("accuracy", "f1", "eval_loss"):
        expected = spread([run[name] for run in runs])
        assert calibration["metrics"][name] == pytest.approx(expected, abs=2e-6), name

    # tolerance auto now allows max(3 x std, floor) of the calibration; beyond it, a failure naming the rule
    allowed = max(3 * calibration["metrics"]["accuracy"]["std"], 0.005)
    original = stored["metrics"]["accuracy"]
    stored["metrics"]["accuracy"] = round(original + allowed - 0.001, 6)
    write(noise_project, stored)
    noise_project.runpytest("--finetune", "--finetune-tolerance=auto", "test_quality.py").assert_outcomes(passed=1)
    stored["metrics"]["accuracy"] = round(original + allowed + 0.001, 6)
    write(noise_project, stored)
    failed = noise_project.runpytest("--finetune", "--finetune-tolerance=auto", "test_quality.py")
    failed.assert_outcomes(failed=1)
    failed.stdout.fnmatch_lines(
        [
            f"accuracy *{allowed:.4f}  regressed",
            "note: tolerance auto = max(3 x std, 0.005) over 3 seeds (42, 43, 44): accuracy std *",
        ]
    )


def test_auto_needs_a_calibrated_baseline(noise_project: pytest.Pytester) -> None:
    noise_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)
    before = (noise_project.path / BASELINE).read_bytes()
    result = noise_project.runpytest("--finetune", "--finetune-tolerance=auto")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*baseline baselines/test_quality/test_quality.json: tolerance auto needs a calibrated baseline and "
            "this one has no calibration; record it with: pytest --finetune --snapshot-update --finetune-calibrate 5"
        ]
    )
    result.stdout.no_fnmatch_line("*Traceback*")
    assert (noise_project.path / BASELINE).read_bytes() == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["--finetune-calibrate", "1"], "*--finetune-calibrate 1: give the number of seeds to train, 2 or more*"),
        (["--finetune-calibrate", "many"], "*--finetune-calibrate many: give the number of seeds*"),
        (["--finetune-calibrate", "3"], "*--finetune-calibrate 3 stores a calibration in the baselines: add --snap*"),
        (["--finetune-alpha", "1.5"], "*--finetune-alpha = 1.5: a significance level is between 0 and 1*"),
        (["--finetune-alpha", "0"], "*--finetune-alpha = 0: a significance level is between 0 and 1*"),
        (["--finetune-alpha", "x"], "*--finetune-alpha = x: not a number*"),
        (["-o", "finetune_alpha=1"], "*ini finetune_alpha = 1: a significance level is between 0 and 1*"),
        (["-o", "finetune_auto_k=0"], "*finetune_auto_k = 0, finetune_auto_floor = 0.005: k must be above 0*"),
        (["-o", "finetune_auto_floor=-1"], "*k must be above 0 and floor 0 or more*"),
        (["-o", "finetune_bootstrap_resamples=lots"], "*finetune_bootstrap_resamples = lots: give a whole number*"),
        (
            ["-o", "finetune_bootstrap_resamples=100000000"],
            "*finetune_bootstrap_resamples = 100000000: give at most 1000000 resamples (the default, 1000, is plenty*",
        ),
        (["-o", "finetune_bootstrap_resamples=1" + "0" * 5000], "*finetune_bootstrap_resamples = 1000*: give at most*"),
        (
            ["--snapshot-update", "--finetune-calibrate", "10000000000"],
            "*--finetune-calibrate 10000000000: give at most 4294967296 seeds (2**32, all there are: more would "
            "repeat some)*",
        ),
        (["--finetune-tolerance=often"], "*--finetune-tolerance: 'often' is not a number or auto*"),
    ],
)
def test_bad_settings_are_usage_errors(finetune_project: pytest.Pytester, args: list[str], message: str) -> None:
    finetune_project.makepyfile(test_quality=QUALITY_TEST)
    result = finetune_project.runpytest("--finetune", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])


def test_a_calibration_of_other_seeds_is_refused(noise_project: pytest.Pytester) -> None:
    noise_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)
    stored = read(noise_project)
    stored["calibration"] = {"seeds": [1, 2], "metrics": CALIBRATION["metrics"]}
    write(noise_project, stored)
    before = (noise_project.path / BASELINE).read_bytes()
    result = noise_project.runpytest("--finetune")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*its calibration used seeds 1, 2, not the recipe's seed 42; record it again*"])
    assert (noise_project.path / BASELINE).read_bytes() == before


def test_calibration_with_a_suite_model_fixture_copies_it_per_seed(noise_project: pytest.Pytester) -> None:
    noise_project.makeconftest("""
        import pytest
        from transformers import AutoModelForSequenceClassification, set_seed

        LOADS = []

        @pytest.fixture
        def model(finetune_recipe):
            set_seed(finetune_recipe.seed)
            LOADS.append(finetune_recipe.seed)
            return AutoModelForSequenceClassification.from_pretrained(finetune_recipe.model, num_labels=2)

        def pytest_finetune_result(result):
            print(f"trained seed {result.recipe.seed}; model fixture loads {LOADS}")
        """)
    result = noise_project.runpytest("--finetune", "--snapshot-update", "--finetune-calibrate", "2", "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["*trained seed 42; model fixture loads [[]42[]]", "*trained seed 43; model fixture loads [[]42[]]"]
    )
    assert read(noise_project)["calibration"]["seeds"] == [42, 43]


def test_calibration_names_a_trainer_it_cannot_rebuild(noise_project: pytest.Pytester) -> None:
    noise_project.makeconftest("""
        import pytest
        from transformers import Trainer

        class MyTrainer(Trainer):
            def __init__(self, *, model, args, datasets, collator, tokenizer, metrics):
                super().__init__(
                    model=model, args=args, train_dataset=datasets["train"], eval_dataset=datasets["validation"],
                    data_collator=collator, processing_class=tokenizer, compute_metrics=metrics,
                )

        @pytest.fixture
        def trainer(model, training_args, tokenized_mrpc, data_collator, tokenizer, compute_metrics):
            return MyTrainer(
                model=model, args=training_args, datasets=tokenized_mrpc, collator=data_collator,
                tokenizer=tokenizer, metrics=compute_metrics,
            )
        """)
    result = noise_project.runpytest("--finetune", "--snapshot-update", "--finetune-calibrate", "2")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*--finetune-calibrate builds one trainer per seed as MyTrainer(model=..., args=..., *"
            "which its constructor refused (*); give it those keyword arguments"
        ]
    )
    result.stdout.no_fnmatch_line("*Traceback*")
    assert not (noise_project.path / BASELINE).exists()


def test_auto_applies_to_a_plain_dict_of_metrics() -> None:
    """``assert trainer.evaluate() == finetune_snapshot`` compares metrics alone: no examples to match."""
    verdict = compare(
        {"metrics": {"accuracy": 0.88, "f1": 0.8}}, record(0.90, [], calibration=CALIBRATION), build_tolerances([AUTO])
    )
    assert verdict.outcome is Outcome.PASSED and verdict.paired is None


def test_calibration_seeds_count_on_from_0_past_the_last_seed() -> None:
    """numpy takes seeds up to 2**32 - 1: the seeds after it are 0, 1, ..., never out of range."""
    from pytest_finetune.calibration import calibration_seeds

    assert calibration_seeds(42, 3) == [42, 43, 44]
    assert calibration_seeds(2**32 - 2, 4) == [2**32 - 2, 2**32 - 1, 0, 1]


def test_calibrating_the_last_seed_records_it_and_the_first(finetune_project: pytest.Pytester) -> None:
    finetune_project.makepyfile(test_quality="""
        import pytest

        @pytest.mark.finetune(seed=4294967295)
        def test_quality():
            pass
        """)
    result = finetune_project.runpytest("--finetune", "--snapshot-update", "--finetune-calibrate", "2")
    result.assert_outcomes(passed=1)
    assert read(finetune_project)["calibration"]["seeds"] == [4294967295, 0]
