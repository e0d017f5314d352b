"""Baselines as a team uses them: record, gate, regress, improve, change the recipe, break the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import QUALITY_BASELINE as BASELINE
from helpers import QUALITY_TEST, assert_usage_error, save_tiny_checkpoint


@pytest.fixture
def project(finetune_project: pytest.Pytester) -> pytest.Pytester:
    """A project with one marked test whose baseline is recorded."""
    finetune_project.makepyfile(test_quality=QUALITY_TEST)
    finetune_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)
    return finetune_project


def read_baseline(project: pytest.Pytester, relative: Path = BASELINE) -> dict:
    return json.loads((project.path / relative).read_text())


def shift_baseline(project: pytest.Pytester, **shifts: float) -> dict:
    """Move stored metrics by ``shifts`` (a baseline 0.05 above the run makes the run a 0.05 drop)."""
    record = read_baseline(project)
    for name, shift in shifts.items():
        record["metrics"][name] = round(record["metrics"][name] + shift, 6)
    (project.path / BASELINE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


def test_record_then_pass(project: pytest.Pytester) -> None:
    text = (project.path / BASELINE).read_text()
    record = json.loads(text)
    assert text == json.dumps(record, indent=2, sort_keys=True) + "\n"  # sorted, readable
    assert set(record) == {
        *("date", "environment", "format", "history", "metrics", "recipe", "train_runtime"),
        *("examples", "intervals"),  # for the paired test and the reports (see test_noise.py)
        "validation_id",  # the validation examples by content (see test_recipe_changes.py)
    }
    assert set(record["metrics"]) == {"accuracy", "eval_loss", "f1"}
    assert all(value == round(value, 6) for value in record["metrics"].values())
    assert record["recipe"]["training_args"]["max_steps"] == 4
    assert "save_strategy" not in record["recipe"]["training_args"]  # housekeeping does not define a run
    assert record["recipe"]["model_id"].startswith("sha256:")
    assert {"python", "torch", "transformers", "datasets", "device", "dtype"} <= set(record["environment"])
    assert len(record["history"]) == 1

    result = project.runpytest("--finetune")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*fine-tuning baselines*", "test_quality.py::test_quality *passed*"])
    assert (project.path / BASELINE).read_text() == text

    project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)
    assert (project.path / BASELINE).read_text() == text  # unchanged run: not rewritten, date kept


def test_a_drop_beyond_tolerance_fails_with_the_table(project: pytest.Pytester) -> None:
    before = shift_baseline(project, accuracy=0.05)
    stored = (project.path / BASELINE).read_text()
    result = project.runpytest("--finetune")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_quality.py::test_quality: regressed against the baseline baselines/test_quality/test_quality.json",
            "metric*baseline*current*delta*allowed*verdict",
            f"accuracy*{before['metrics']['accuracy']:.4f}*-0.0500*0.0100*regressed",
            "f1*ok",
            "eval_loss*not gated",
            "*pytest --finetune --snapshot-update*",
        ]
    )
    result.stdout.no_fnmatch_line("*Traceback*")
    assert (project.path / BASELINE).read_text() == stored


def test_a_drop_within_tolerance_passes(project: pytest.Pytester) -> None:
    shift_baseline(project, accuracy=0.009)
    project.runpytest("--finetune").assert_outcomes(passed=1)


def test_an_improvement_passes_and_says_how_to_raise_the_baseline(project: pytest.Pytester) -> None:
    shift_baseline(project, accuracy=-0.05)
    result = project.runpytest("--finetune")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_quality*improved: run with --snapshot-update to raise the baseline"])

    result = project.runpytest("--finetune", "--snapshot-update")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*baseline updated: baselines/test_quality/test_quality.json"])
    result = project.runpytest("--finetune")
    result.assert_outcomes(passed=1)
    assert "improved" not in result.stdout.str()


def test_strict_fails_an_improvement(project: pytest.Pytester) -> None:
    shift_baseline(project, accuracy=-0.05)
    result = project.runpytest("--finetune", "--finetune-strict")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*: changed against the baseline*", "accuracy*+0.0500*0.0100*changed"])


@pytest.mark.parametrize(
    "how",
    [
        ("marker", "@pytest.mark.finetune(tolerance=0.06)"),
        ("marker dict", "@pytest.mark.finetune(tolerance={'accuracy': 0.06})"),
        ("command line", "--finetune-tolerance=accuracy=0.06"),
        ("ini", "finetune_tolerance = 0.06"),
        ("ini with spaces around =", "finetune_tolerance = accuracy = 0.06 f1 =0.06"),
    ],
    ids=lambda how: how[0],
)
def test_tolerance_settings(project: pytest.Pytester, how: tuple[str, str]) -> None:
    shift_baseline(project, accuracy=0.05)
    where, setting = how
    args = ["--finetune"]
    if where.startswith("marker"):
        project.makepyfile(test_quality=QUALITY_TEST.replace("@pytest.mark.finetune", setting))
    elif where == "command line":
        args.append(setting)
    else:
        ini = (project.path / "tox.ini").read_text().replace("[pytest]", f"[pytest]\n{setting}")
        (project.path / "tox.ini").write_text(ini)
    result = project.runpytest(*args)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_quality.py::test_quality*passed*"])


def test_the_marker_beats_the_command_line(project: pytest.Pytester) -> None:
    shift_baseline(project, accuracy=0.05)
    project.makepyfile(
        test_quality=QUALITY_TEST.replace("@pytest.mark.finetune", "@pytest.mark.finetune(tolerance=0.01)")
    )
    project.runpytest("--finetune", "--finetune-tolerance=0.5").assert_outcomes(failed=1)


def test_losses_fail_on_a_rise_only(project: pytest.Pytester) -> None:
    gate_loss = "--finetune-tolerance=eval_loss=0.01"
    shift_baseline(project, eval_loss=-0.05)  # the run's loss is 0.05 higher
    result = project.runpytest("--finetune", gate_loss)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["eval_loss*+0.0500*0.0100*regressed"])
    shift_baseline(project, eval_loss=0.1)  # now 0.05 lower
    result = project.runpytest("--finetune", gate_loss)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*improved: run with --snapshot-update*"])


def test_a_missing_baseline_fails_with_the_command_that_records_it(finetune_project: pytest.Pytester) -> None:
    finetune_project.makepyfile(test_quality=QUALITY_TEST)
    result = finetune_project.runpytest("--finetune")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_quality.py::test_quality: no baseline at baselines/test_quality/test_quality.json; "
            "record it with: pytest --finetune --snapshot-update test_quality.py::test_quality"
        ]
    )
    assert not (finetune_project.path / "baselines").exists()


#: Whatever another recipe scores on the tiny data, its quality holds: the verdict is the recipe change's alone.
ANY_QUALITY = ("--finetune-tolerance=1", "--finetune-alpha=1e-9")


def test_another_model_is_a_changed_recipe(project: pytest.Pytester) -> None:
    """Compared on quality, with a note; in strict recipe mode a failure until the new recipe is recorded."""
    other = save_tiny_checkpoint(project.path / "other-model", seed=1)
    stored = (project.path / BASELINE).read_text()
    result = project.runpytest("--finetune", "--finetune-model", str(other), *ANY_QUALITY)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_quality: recipe changed (model *tiny-bert → other-model); quality held: record the new recipe "
            f"with: pytest --finetune --snapshot-update --finetune-model {other} test_quality.py::test_quality"
        ]
    )
    result = project.runpytest("--finetune", "--finetune-model", str(other), "--finetune-strict-recipe", *ANY_QUALITY)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*: recipe changed against the baseline*",
            "recipe changed (model *tiny-bert → other-model); quality held",
            "key*baseline*current",
            "model*other-model",
            "*record its baseline: pytest --finetune --snapshot-update*",
        ]
    )
    assert (project.path / BASELINE).read_text() == stored


def test_a_training_argument_is_part_of_the_recipe(project: pytest.Pytester) -> None:
    result = project.runpytest("--finetune", "--finetune-set", "learning_rate=1e-3", "--finetune-strict-recipe")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["training_args.learning_rate*5e-05*0.001"])


def test_the_same_checkpoint_elsewhere_is_the_same_recipe(project: pytest.Pytester) -> None:
    model = read_baseline(project)["recipe"]["model"]
    ini = (project.path / "tox.ini").read_text()
    original = next(line.split("=", 1)[1].strip() for line in ini.splitlines() if line.startswith("finetune_model"))
    moved = project.path / "moved" / "checkpoint"
    shutil.copytree(original, moved)
    project.runpytest("--finetune", "--finetune-model", str(moved)).assert_outcomes(passed=1)
    assert model != ".../moved/checkpoint"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "is not valid JSON"),
        ('{"metrics": {"accuracy": 0.5}, "recipe": {}}', "lacks the gated metric(s) f1"),
        ('{"metrics": {"accuracy": "high", "f1": 0.5}}', "metric 'accuracy' is 'high', not a finite number"),
        ('{"metrics": {"accuracy": NaN, "f1": 0.5}}', "metric 'accuracy' is nan, not a finite number"),
        ("[1, 2]", 'has no "metrics" object'),
    ],
    ids=["not-json", "lacks-metric", "not-a-number", "nan", "not-an-object"],
)
def test_a_broken_baseline_fails_naming_the_file_and_stays(
    project: pytest.Pytester, content: str, problem: str
) -> None:
    (project.path / BASELINE).write_text(content)
    result = project.runpytest("--finetune")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*test_quality: baseline baselines/test_quality/test_quality.json*{problem}*"])
    result.stdout.no_fnmatch_line("*Traceback*")
    assert (project.path / BASELINE).read_text() == content


def test_bad_tolerances_are_usage_errors(finetune_project: pytest.Pytester) -> None:
    for value, message in (
        ("-0.1", "*--finetune-tolerance: tolerance must be a finite number >= 0*got -0.1"),
        ("fast", "*--finetune-tolerance: 'fast' is not a number or auto; write 0.02, auto or METRIC=0.02"),
        ("f1=nan", "*tolerance of 'f1' must be a finite number >= 0*"),
    ):
        result = finetune_project.runpytest("--finetune", f"--finetune-tolerance={value}")
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines([f"ERROR: {message}"])


@pytest.mark.parametrize("value", ["'tight'", "-1", "{'f1': True}", "{}"])
def test_a_bad_marker_tolerance_is_a_collection_error(finetune_project: pytest.Pytester, value: str) -> None:
    finetune_project.makepyfile(
        test_quality=QUALITY_TEST.replace("@pytest.mark.finetune", f"@pytest.mark.finetune(tolerance={value})")
    )
    result = finetune_project.runpytest()  # checked even without --finetune
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*test_quality.py::test_quality: @pytest.mark.finetune*tolerance*"])


def test_the_body_may_compare_by_itself(finetune_project: pytest.Pytester) -> None:
    finetune_project.makepyfile(test_flow="""
        import pytest

        @pytest.mark.finetune
        def test_own_flow(trainer, finetune_result, finetune_snapshot):
            assert trainer.evaluate() == finetune_snapshot
        """)
    finetune_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)
    record = read_baseline(finetune_project, Path("baselines/test_flow/test_own_flow.json"))
    assert set(record) == {"date", "format", "metrics"}  # a dict of metrics: no recipe to check
    assert set(record["metrics"]) == {"accuracy", "eval_loss", "f1"}  # speed and epoch keys dropped
    finetune_project.runpytest("--finetune").assert_outcomes(passed=1)

    record["metrics"]["f1"] += 0.2
    (finetune_project.path / "baselines/test_flow/test_own_flow.json").write_text(json.dumps(record))
    result = finetune_project.runpytest("--finetune")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*assert * == *", "*f1*-0.2000*0.0100*regressed*"])


def test_unused_baselines_are_reported_then_removed_by_update(project: pytest.Pytester) -> None:
    stale = project.path / "baselines/test_quality/test_removed.json"
    shutil.copy(project.path / BASELINE, stale)
    result = project.runpytest("--finetune")
    result.stdout.fnmatch_lines(["*1 snapshot unused*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert stale.exists()
    project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)
    assert not stale.exists()
    assert (project.path / BASELINE).exists()


def test_skipped_runs_leave_baselines_alone(project: pytest.Pytester) -> None:
    result = project.runpytest("--snapshot-update")  # no --finetune: the test skips
    result.assert_outcomes(skipped=1)
    assert (project.path / BASELINE).exists()


def test_a_failing_test_keeps_its_baseline(project: pytest.Pytester) -> None:
    stored = (project.path / BASELINE).read_text()
    project.makepyfile(test_quality=QUALITY_TEST + "    raise RuntimeError('the body broke')\n")
    result = project.runpytest("--finetune", "--snapshot-update")
    result.assert_outcomes(failed=1)
    result.stdout.no_fnmatch_line("*unused*")
    assert (project.path / BASELINE).read_text() == stored


def test_parametrize_ids_cannot_write_outside_the_baseline_folder(finetune_project: pytest.Pytester) -> None:
    finetune_project.makepyfile(test_ids="""
        import pytest

        @pytest.mark.finetune
        @pytest.mark.parametrize("name", ["../../escape", "/abs/path", "ok"])
        def test_case(name):
            pass
        """)
    finetune_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=3)
    written = sorted(p.relative_to(finetune_project.path).as_posix() for p in finetune_project.path.rglob("*.json"))
    written = [path for path in written if not path.startswith(".pytest_cache/")]  # the result cache
    assert written == [
        "baselines/test_ids/test_case[%2Fabs%2Fpath].json",
        "baselines/test_ids/test_case[..%2F..%2Fescape].json",
        "baselines/test_ids/test_case[ok].json",
    ]
    finetune_project.runpytest("--finetune").assert_outcomes(passed=3)


@pytest.mark.parametrize("where", ["../escape", "/tmp/pytest-finetune-escape"])
def test_a_marker_cannot_choose_where_training_writes(finetune_project: pytest.Pytester, where: str) -> None:
    finetune_project.makepyfile(test_out=f"""
        import pytest

        @pytest.mark.finetune(output_dir={where!r})
        def test_case():
            pass
        """)
    result = finetune_project.runpytest("--finetune", "--snapshot-update")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*output_dir is chosen by pytest-finetune (a temporary folder per test)*"])
    assert not (finetune_project.path.parent / "escape").exists() and not Path(where).exists()
    assert not (finetune_project.path / "baselines").exists()


def test_the_baseline_folder_can_move(finetune_project: pytest.Pytester) -> None:
    ini = (finetune_project.path / "tox.ini").read_text()
    (finetune_project.path / "tox.ini").write_text(
        ini.replace("[pytest]", "[pytest]\nfinetune_baseline_dir = ci/gates")
    )
    finetune_project.mkpydir("suite")
    (finetune_project.path / "suite" / "test_deep.py").write_text(QUALITY_TEST)
    finetune_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)
    assert (finetune_project.path / "ci/gates/suite/test_deep/test_quality.json").exists()
    assert not (finetune_project.path / "baselines").exists()


def test_an_interrupted_update_leaves_earlier_baselines_whole(project: pytest.Pytester) -> None:
    stored = (project.path / BASELINE).read_text()
    shift_baseline(project, accuracy=0.3)  # to be rewritten by the update below
    project.makepyfile(test_zz_interrupt="""
        import pytest

        @pytest.mark.finetune
        def test_interrupt():
            raise KeyboardInterrupt
        """)
    result = project.runpytest("--finetune", "--snapshot-update", no_reraise_ctrlc=True)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert (project.path / BASELINE).read_text() == stored  # rewritten whole before the interrupt
    leftovers = [p.name for p in (project.path / "baselines").rglob("*") if p.is_file() and p.suffix != ".json"]
    assert leftovers == []


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_hook_metric_that_is_not_finite_fails_naming_it_and_stores_nothing(
    finetune_project: pytest.Pytester, value: str
) -> None:
    """Not "training diverged": accuracy, F1 and the loss are finite; the hook returned 0/0, say."""
    finetune_project.makeconftest(f"""
        def pytest_finetune_metrics(recipe, logits, label_ids):
            return {{"precision": float("{value}")}}
        """)
    finetune_project.makepyfile(test_quality=QUALITY_TEST)
    result = finetune_project.runpytest("--finetune", "--snapshot-update")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            f"*test_quality: the run's metrics are not finite (precision={value}): a pytest_finetune_metrics hook "
            "or compute_metrics (the fixture, or the trainer's) returned that, and a baseline holds finite numbers "
            "only; return one, such as 0.0 for a ratio of 0/0; nothing was compared or stored"
        ]
    )
    result.stdout.no_fnmatch_line("*training diverged*")
    result.stdout.no_fnmatch_line("*Traceback*")
    assert not (finetune_project.path / BASELINE).exists()


def test_a_run_whose_accuracy_is_a_percentage_fails_naming_it_and_stores_nothing(
    finetune_project: pytest.Pytester,
) -> None:
    """A ``compute_metrics`` giving 83 for 83 %: a baseline of it would be refused by every later run."""
    finetune_project.makeconftest("""
        import pytest

        @pytest.fixture
        def compute_metrics():
            return lambda eval_pred: {"accuracy": 83.0, "f1": 0.5}
        """)
    finetune_project.makepyfile(test_quality=QUALITY_TEST)
    result = finetune_project.runpytest("--finetune", "--snapshot-update")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*test_quality: the run's accuracy is 83, outside [[]0, 1[]]*as a fraction (0.83, not 83)*"]
    )
    result.stdout.no_fnmatch_line("*Traceback*")
    assert not (finetune_project.path / BASELINE).exists()


def test_a_hook_metric_undefined_at_an_earlier_evaluation_is_stored_as_null(finetune_project: pytest.Pytester) -> None:
    """Only the final metrics must be finite: the history keeps an evaluation's 0/0 as null."""
    finetune_project.makeconftest("""
        calls = []

        def pytest_finetune_metrics(recipe, logits, label_ids):
            calls.append(1)
            return {"precision": float("nan") if len(calls) == 1 else 0.5}
        """)
    finetune_project.makepyfile(
        test_quality=QUALITY_TEST.replace(
            "@pytest.mark.finetune", "@pytest.mark.finetune(eval_strategy='steps', eval_steps=2)"
        )
    )
    finetune_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)
    history = read_baseline(finetune_project)["history"]
    assert [row["precision"] for row in history] == [None, 0.5]
    assert read_baseline(finetune_project)["metrics"]["precision"] == 0.5


def test_an_update_of_a_selection_leaves_the_other_baselines(project: pytest.Pytester) -> None:
    project.makepyfile(test_quality=QUALITY_TEST + "\n\n@pytest.mark.finetune(seed=3)\ndef test_other():\n    pass\n")
    project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=2)
    other = project.path / "baselines/test_quality/test_other.json"
    stored = other.read_text()
    project.runpytest("--finetune", "--snapshot-update", "-k", "not other").assert_outcomes(passed=1, deselected=1)
    project.runpytest("--finetune", "--snapshot-update", "test_quality.py::test_quality").assert_outcomes(passed=1)
    assert other.read_text() == stored


def test_an_update_keeps_the_calibration(finetune_project: pytest.Pytester) -> None:
    finetune_project.makepyfile(test_quality=QUALITY_TEST.replace("finetune", 'finetune(tolerance="auto")', 1))
    update = ("--finetune", "--snapshot-update")
    finetune_project.runpytest(*update, "--finetune-calibrate", "2").assert_outcomes(passed=1)
    calibrated = (finetune_project.path / BASELINE).read_text()
    assert "calibration" in json.loads(calibrated)

    result = finetune_project.runpytest(*update)  # an unchanged run, not calibrating: the file stays
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*baseline updated*")
    assert (finetune_project.path / BASELINE).read_text() == calibrated
    finetune_project.runpytest("--finetune").assert_outcomes(passed=1)

    record = shift_baseline(finetune_project, accuracy=0.3)  # a changed run is rewritten, its calibration kept
    finetune_project.runpytest(*update).stdout.fnmatch_lines(["*baseline recorded over a regression*"])
    assert read_baseline(finetune_project)["calibration"] == record["calibration"]
    finetune_project.runpytest("--finetune").assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("header", "args", "outcomes"),
    [
        ("pytest.skip('needs a GPU', allow_module_level=True)", (), {"passed": 1, "skipped": 1}),
        ("import not_a_module", ("--continue-on-collection-errors",), {"passed": 1, "errors": 1}),
    ],
    ids=["skipped", "import-error"],
)
def test_baselines_of_a_module_not_collected_are_kept(
    project: pytest.Pytester, header: str, args: tuple[str, ...], outcomes: dict[str, int]
) -> None:
    project.makepyfile(test_other=QUALITY_TEST)
    project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=2)
    other = project.path / "baselines/test_other/test_quality.json"
    stored = other.read_text()
    project.makepyfile(test_other=f"import pytest\n{header}\n{QUALITY_TEST}")
    for update in ((), ("--snapshot-update",)):
        result = project.runpytest("--finetune", *update, *args)
        result.assert_outcomes(**outcomes)
        result.stdout.no_fnmatch_line("*unused*")
        result.stdout.fnmatch_lines(["pytest-finetune: the baselines in baselines/test_other are kept: *"])
        assert other.read_text() == stored
    if not args:
        assert result.ret == pytest.ExitCode.OK


def test_a_tolerance_of_a_metric_the_run_lacks_names_the_tolerance(project: pytest.Pytester) -> None:
    stored = (project.path / BASELINE).read_text()
    for args in (("--finetune-tolerance", "eval_accuracy=0.02"), ("--snapshot-update", "--finetune-tolerance=mcc=0")):
        result = project.runpytest("--finetune", *args)
        result.assert_outcomes(failed=1)
        name = args[-1].split("=")[-2]
        result.stdout.fnmatch_lines(
            [
                f"*test_quality: the run produced no metric {name} (its metrics: accuracy, eval_loss, f1), yet a "
                f"tolerance gates it: drop the tolerance of {name} or fix the metric's name where it is set*"
            ]
        )
        result.stdout.no_fnmatch_line("*lacks the gated metric*")
        assert (project.path / BASELINE).read_text() == stored


def test_the_record_command_repeats_the_recipe_options(finetune_project: pytest.Pytester) -> None:
    finetune_project.makepyfile(test_quality=QUALITY_TEST)
    recipe = ["--finetune-set", "max_steps=2", "--finetune-task=mrpc", "--finetune-precision=fp32"]
    result = finetune_project.runpytest("--finetune", "--finetune-tolerance=0.5", *recipe)
    result.assert_outcomes(failed=1)
    command = "pytest --finetune --snapshot-update --finetune-set max_steps=2 --finetune-task=mrpc "
    result.stdout.fnmatch_lines([f"*record it with: {command}--finetune-precision=fp32 test_quality.py::test_quality"])
    finetune_project.runpytest("--finetune", "--snapshot-update", *recipe).assert_outcomes(passed=1)
    finetune_project.runpytest("--finetune", *recipe).assert_outcomes(passed=1)
    assert read_baseline(finetune_project)["recipe"]["training_args"]["max_steps"] == 2


PARAMETRIZED = """
import pytest

@pytest.mark.finetune
@pytest.mark.parametrize("name", ["a:b", "ab", pytest.param("org/model", marks=MARKS)])
def test_case(name):
    pass
"""


def test_ids_with_characters_a_file_name_cannot_hold_get_files_of_their_own(finetune_project: pytest.Pytester) -> None:
    finetune_project.makepyfile(test_ids=PARAMETRIZED.replace("MARKS", "()"))
    finetune_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=3)
    folder = finetune_project.path / "baselines/test_ids"
    assert sorted(path.name for path in folder.iterdir()) == [
        "test_case[a%3Ab].json",
        "test_case[ab].json",
        "test_case[org%2Fmodel].json",
    ]
    finetune_project.makepyfile(test_ids=PARAMETRIZED.replace("MARKS", "pytest.mark.skip(reason='no GPU')"))
    for update in ((), ("--snapshot-update",)):
        result = finetune_project.runpytest("--finetune", *update)
        result.assert_outcomes(passed=2, skipped=1)
        result.stdout.no_fnmatch_line("*unused*")
        assert result.ret == pytest.ExitCode.OK
    assert (folder / "test_case[org%2Fmodel].json").exists()


def test_two_tests_sharing_a_baseline_file_are_refused(finetune_project: pytest.Pytester) -> None:
    finetune_project.makepyfile(test_ids=PARAMETRIZED.replace('"org/model", marks=MARKS', '"a%3Ab"'))
    result = finetune_project.runpytest("--finetune", "--snapshot-update")
    assert_usage_error(
        result,
        "test_ids.py::test_case?a:b? and test_ids.py::test_case?a%3Ab? would share one baseline file, "  # ?: [ ]
        "baselines/test_ids/test_case?a%3Ab?.json; give one of them another parametrize id*",
    )
    assert not (finetune_project.path / "baselines").exists()


@pytest.mark.parametrize(
    ("conftest", "args"),
    [
        ("", ("--ignore=test_other.py",)),
        ("", ("--ignore-glob=*other*",)),
        ('collect_ignore = ["test_other.py"]', ()),
    ],
    ids=["ignore", "ignore-glob", "collect_ignore"],
)
def test_baselines_of_an_ignored_module_are_kept(
    project: pytest.Pytester, conftest: str, args: tuple[str, ...]
) -> None:
    project.makepyfile(test_other=QUALITY_TEST)
    project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=2)
    other = project.path / "baselines/test_other/test_quality.json"
    stored = other.read_text()
    project.makeconftest(conftest)
    for update in ((), ("--snapshot-update",)):
        result = project.runpytest("--finetune", *update, *args)
        result.assert_outcomes(passed=1)
        result.stdout.no_fnmatch_line("*unused*")
        assert result.ret == pytest.ExitCode.OK
        assert other.read_text() == stored
    (project.path / "test_other.py").unlink()  # a module that is gone: its baselines are unused
    result = project.runpytest("--finetune", "--snapshot-update", *args)
    result.stdout.fnmatch_lines(["*1 unused snapshot deleted*"])
    assert not other.exists()


AUTOUSE_FAILS = """
import pytest

@pytest.fixture(autouse=True)
def env_check(request):
    if request.node.path.name == "test_quality.py":
        raise RuntimeError("database not reachable")
"""


def test_a_test_whose_autouse_fixture_fails_keeps_its_baseline(project: pytest.Pytester) -> None:
    project.makepyfile(test_other=QUALITY_TEST)  # a test that compares: syrupy looks for unused baselines
    project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=2)
    stored = (project.path / BASELINE).read_text()
    project.makeconftest(AUTOUSE_FAILS)
    for update in ((), ("--snapshot-update",)):
        result = project.runpytest("--finetune", *update)
        result.assert_outcomes(passed=1, errors=1)
        result.stdout.no_fnmatch_line("*unused*")
        assert (project.path / BASELINE).read_text() == stored


def test_the_record_command_repeats_finetune_ini_overrides(finetune_project: pytest.Pytester) -> None:
    finetune_project.makepyfile(test_quality=QUALITY_TEST)
    overrides = ["-o", "finetune_training_args=max_steps=2", "--override-ini=finetune_precision=fp32"]
    result = finetune_project.runpytest("--finetune", "-o", "console_output_style=classic", *overrides)
    result.assert_outcomes(failed=1)
    command = "pytest --finetune --snapshot-update -o finetune_training_args=max_steps=2 "
    result.stdout.fnmatch_lines(
        [f"*record it with: {command}--override-ini=finetune_precision=fp32 test_quality.py::*"]
    )
    finetune_project.runpytest("--finetune", "--snapshot-update", *overrides).assert_outcomes(passed=1)
    finetune_project.runpytest("--finetune", *overrides).assert_outcomes(passed=1)
    assert read_baseline(finetune_project)["recipe"]["training_args"]["max_steps"] == 2


def test_a_baseline_without_a_recipe_does_not_gate_a_fine_tune(project: pytest.Pytester) -> None:
    """A baseline recorded from a dict of metrics (``assert trainer.evaluate() == finetune_snapshot``) holds no
    recipe: a marked test, whose result has one, fails naming the file and the fix, whatever its recipe."""
    record = read_baseline(project)
    del record["recipe"]
    (project.path / BASELINE).write_text(json.dumps(record))
    stored = (project.path / BASELINE).read_text()
    result = project.runpytest("--finetune", "--finetune-set", "seed=5")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_quality: baseline baselines/test_quality/test_quality.json records no recipe (it was recorded from "
            "a dict of metrics), so this fine-tune's recipe cannot be checked against it: record it again with "
            "--snapshot-update*"
        ]
    )
    assert (project.path / BASELINE).read_text() == stored
    project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)
    assert read_baseline(project)["recipe"]["seed"] == 42
    project.runpytest("--finetune").assert_outcomes(passed=1)


ACCURACY_ONLY = """
import pytest

@pytest.fixture
def compute_metrics():
    def compute(prediction):
        return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}
    return compute
"""


def test_a_run_without_an_always_gated_metric_says_compute_metrics_must_return_it(
    finetune_project: pytest.Pytester,
) -> None:
    """f1 is gated by default, not by a tolerance anyone set: the fix is in ``compute_metrics``."""
    finetune_project.makeconftest(ACCURACY_ONLY)
    finetune_project.makepyfile(test_quality=QUALITY_TEST)
    result = finetune_project.runpytest("--finetune", "--snapshot-update", "--finetune-tolerance", "mcc=0.1")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_quality: the run produced no metric f1 (its metrics: accuracy, eval_loss), and accuracy and f1 "
            "are always gated: the compute_metrics (the fixture, or the trainer's) must return them, *; the run "
            "produced no metric mcc (*), yet a tolerance gates it: drop the tolerance of mcc or fix the metric's "
            "name where it is set (*); a metric of a pytest_finetune_metrics hook is there once the hook returns it"
        ]
    )
    result.stdout.no_fnmatch_line("*drop the tolerance of f1*")
    assert not (finetune_project.path / "baselines").exists()
