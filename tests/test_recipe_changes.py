"""A changed recipe is gated on quality, not sent to re-record: what held passes with a note, what lost quality
fails naming the change, what cannot be compared (another task, other validation examples) is refused, and strict
recipe mode fails every change until it is recorded."""

from __future__ import annotations

import json
import random
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
import transformers
from helpers import QUALITY_BASELINE as BASELINE
from helpers import QUALITY_TEST, WORDS, make_rows, write_glue_tsv
from transformers import AutoTokenizer, BertConfig, BertModel

from pytest_finetune.baselines import parse_baseline
from pytest_finetune.report import ReportEntry, entry_from_json, entry_to_json, junit_properties, pass_note
from pytest_finetune.tolerances import Tolerances
from pytest_finetune.verdicts import Outcome, compare, not_comparable

EXAMPLE_BASELINES = sorted((Path(__file__).parents[1] / "baselines" / "examples" / "mrpc").glob("*/*.json"))
LEARNABLE_ARGS = "--finetune-set=learning_rate=2e-3"


def learnable_rows(count: int, seed: int, flipped: float = 0.0) -> list[tuple[int, str, str]]:
    """Pairs whose label says whether the first sentence holds the word "red" (a rule the tiny model learns in
    60 steps); with ``flipped``, that share of the labels turned over (a data bug)."""
    rng = random.Random(seed)
    others = [word for word in WORDS if word != "red"]
    rows = []
    for index in range(count):
        words = rng.sample(others, 5)
        if index % 2:
            words[rng.randrange(5)] = "red"
        rows.append((index % 2, " ".join(words), " ".join(rng.sample(others, 5))))
    turned = set(rng.sample(range(count), int(flipped * count)))
    return [(1 - label if index in turned else label, *texts) for index, (label, *texts) in enumerate(rows)]


@pytest.fixture
def learnable(pytester: pytest.Pytester, tiny_checkpoint: Path) -> pytest.Pytester:
    """A project whose tiny model learns its data (accuracy 1.0 on 48 validation pairs), its baseline recorded; a
    tolerance of 0.05 (two of the 48 pairs)."""
    data = pytester.path / "data"
    write_glue_tsv(data / "train.tsv", learnable_rows(96, seed=1))
    write_glue_tsv(data / "dev.tsv", learnable_rows(48, seed=2))
    pytester.makeini(f"""
        [pytest]
        finetune_model = {tiny_checkpoint}
        finetune_data = data
        finetune_training_args =
            max_steps = 60
            learning_rate = 3e-3
            per_device_train_batch_size = 16
            per_device_eval_batch_size = 48
            eval_strategy = no
        finetune_tolerance = 0.05
        """)
    pytester.makepyfile(test_quality=QUALITY_TEST)
    pytester.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)
    assert read(pytester)["metrics"]["accuracy"] == 1.0, "the premise: the tiny model learns the rule"
    return pytester


def read(project: pytest.Pytester, relative: Path = BASELINE) -> dict:
    return json.loads((project.path / relative).read_text())


def test_a_hyperparameter_change_that_holds_quality_passes_with_a_note(learnable: pytest.Pytester) -> None:
    stored = (learnable.path / BASELINE).read_text()
    reports = ("--finetune-report=r.json", "--finetune-report-md=r.md", "--junitxml=j.xml")
    result = learnable.runpytest("--finetune", LEARNABLE_ARGS, *reports)
    result.assert_outcomes(passed=1)
    held = "recipe changed (learning_rate 0.003 → 0.002); quality held"
    result.stdout.fnmatch_lines(
        [
            "test_quality.py::test_quality *passed (recipe: learning_rate)*",
            f"test_quality.py::test_quality: {held}: record the new recipe with: "
            f"pytest --finetune --snapshot-update {LEARNABLE_ARGS} test_quality.py::test_quality",
        ]
    )
    assert (learnable.path / BASELINE).read_text() == stored
    report = json.loads((learnable.path / "r.json").read_text())["tests"][0]
    assert (report["outcome"], report["headline"], report["failed"]) == ("passed", held, False)
    assert report["recipe_changes"] == [{"key": "training_args.learning_rate", "baseline": 0.003, "current": 0.002}]
    markdown = (learnable.path / "r.md").read_text()
    assert "| passed (recipe: learning_rate) |" in markdown and held in markdown
    properties = {p.get("name"): p.get("value") for p in ElementTree.parse(learnable.path / "j.xml").iter("property")}
    assert properties["finetune.verdict"] == held

    for strict in (("--finetune-strict-recipe",), ("-o", "finetune_strict_recipe=true")):
        result = learnable.runpytest("--finetune", LEARNABLE_ARGS, *strict)
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(
            [
                "*test_quality: recipe changed against the baseline baselines/test_quality/test_quality.json",
                held,
                "key*baseline*current",
                "training_args.learning_rate*0.003*0.002",
                "accuracy*1.0000*0.05*ok",
                "quality held, and strict recipe mode (finetune_strict_recipe) asks that each recipe change be "
                "recorded: if the new recipe is intended, record its baseline: pytest --finetune --snapshot-update*",
            ]
        )
    assert (learnable.path / BASELINE).read_text() == stored

    result = learnable.runpytest("--finetune", "--snapshot-update", LEARNABLE_ARGS)
    result.stdout.fnmatch_lines(["*baseline updated: baselines/test_quality/test_quality.json"])
    assert read(learnable)["recipe"]["training_args"]["learning_rate"] == 0.002
    result = learnable.runpytest("--finetune", "--finetune-strict-recipe", LEARNABLE_ARGS)
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*recipe changed*")


def test_flipped_training_labels_fail_as_regressed_naming_the_data_change(learnable: pytest.Pytester) -> None:
    """45 % of the training labels turned over: a worse model, said to be one, and recorded over only on
    request, with the summary saying so."""
    stored = (learnable.path / BASELINE).read_text()
    write_glue_tsv(learnable.path / "data" / "train.tsv", learnable_rows(96, seed=1, flipped=0.45))
    result = learnable.runpytest("--finetune")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_quality: regressed against the baseline baselines/test_quality/test_quality.json",
            "recipe changed (data sha256:*… → sha256:*…); regressed by 0.* accuracy*, paired test p = *",
            "data*sha256:*sha256:*",
            "accuracy*1.0000*regressed",
        ]
    )
    assert (learnable.path / BASELINE).read_text() == stored

    result = learnable.runpytest(
        "--finetune", "--snapshot-update", "--finetune-report=r.json", "--finetune-report-md=r.md"
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "test_quality.py::test_quality *updated over a regression (recipe: data)*",
            "test_quality.py::test_quality: baseline recorded over a regression (recipe changed (data *); "
            "regressed by *): baselines/test_quality/test_quality.json",
            "recorded over a regression (review the baselines' diff): test_quality.py::test_quality",
        ]
    )
    report = json.loads((learnable.path / "r.json").read_text())
    assert report["recorded_over_regression"] == ["test_quality.py::test_quality"]
    assert report["tests"][0]["recorded_over_regression"] is True
    assert "### `test_quality.py::test_quality`: recorded over a regression" in (learnable.path / "r.md").read_text()
    assert read(learnable)["metrics"]["accuracy"] < 0.9


def test_a_smaller_model_that_scores_lower_fails_naming_the_model_change(learnable: pytest.Pytester) -> None:
    small = learnable.path / "small-bert"
    tokenizer = AutoTokenizer.from_pretrained(read_model_folder(learnable))
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=4,
        num_hidden_layers=1,
        num_attention_heads=1,
        intermediate_size=4,
        max_position_embeddings=64,
    )
    transformers.set_seed(0)
    BertModel(config).save_pretrained(small)
    tokenizer.save_pretrained(small)
    result = learnable.runpytest("--finetune", "--finetune-model=small-bert")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_quality: regressed against the baseline*",
            "recipe changed (model */tiny-bert → small-bert); regressed by 0.* accuracy*",
            "model*tiny-bert*small-bert",
        ]
    )


def read_model_folder(project: pytest.Pytester) -> str:
    ini = (project.path / "tox.ini").read_text()
    return next(line.split("=", 1)[1].strip() for line in ini.splitlines() if line.startswith("finetune_model"))


def test_a_changed_validation_file_is_not_comparable(learnable: pytest.Pytester) -> None:
    """One validation pair's text edited: the yardstick moved, so the run is refused, not compared."""
    rows = learnable_rows(48, seed=2)
    rows[0] = (rows[0][0], rows[0][1], "he said that")
    write_glue_tsv(learnable.path / "data" / "dev.tsv", rows)
    result = learnable.runpytest("--finetune", "--finetune-report=r.json")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_quality: not comparable against the baseline*",
            "recipe changed (data sha256:*); not comparable: the validation examples changed "
            "(by content: sha256:*… → sha256:*…)",
            "*not compared; if the change is intended, record the baseline anew: "
            "pytest --finetune --snapshot-update test_quality.py::test_quality",
        ]
    )
    result.stdout.no_fnmatch_line("metric*baseline*current*delta*")
    report = json.loads((learnable.path / "r.json").read_text())["tests"][0]
    assert report["outcome"] == "not comparable" and report["not_comparable"].startswith("the validation examples")
    learnable.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)
    learnable.runpytest("--finetune").assert_outcomes(passed=1)


OWN_DATA_CONFTEST = """
import datasets
import pytest

@pytest.fixture
def mrpc_dataset():
    rows = [line.split("\\t") for line in open("own.tsv").read().splitlines()]
    def split(part):
        return datasets.Dataset.from_dict({
            "sentence1": [row[1] for row in part], "sentence2": [row[2] for row in part],
            "label": [int(row[0]) for row in part], "idx": list(range(len(part))),
        })
    return datasets.DatasetDict({"train": split(rows[:40]), "validation": split(rows[40:])})
"""


def test_an_mrpc_dataset_override_records_the_data_it_gives(finetune_project: pytest.Pytester) -> None:
    """Issue 23, 7: the baseline names the data the trainer held, so editing the configured data folder, which
    this test never reads, changes nothing; editing the data it reads is a data change."""
    rows = make_rows(60, seed=5)
    (finetune_project.path / "own.tsv").write_text("".join(f"{label}\t{a}\t{b}\n" for label, a, b in rows))
    finetune_project.makeconftest(OWN_DATA_CONFTEST)
    finetune_project.makepyfile(test_quality=QUALITY_TEST)
    finetune_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)
    recipe = read(finetune_project)["recipe"]
    assert recipe["data"] == "mrpc_dataset fixture of conftest.py"

    ini = (finetune_project.path / "tox.ini").read_text()
    folder = Path(next(line.split("=", 1)[1].strip() for line in ini.splitlines() if line.startswith("finetune_data")))
    write_glue_tsv(folder / "train.tsv", make_rows(48, seed=9))  # a file this test never reads
    result = finetune_project.runpytest("--finetune", "--finetune-strict-recipe")
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*recipe changed*")
    assert read(finetune_project)["recipe"] == recipe

    rows[0] = (1 - rows[0][0], *rows[0][1:])  # a training label the test does read
    (finetune_project.path / "own.tsv").write_text("".join(f"{label}\t{a}\t{b}\n" for label, a, b in rows))
    result = finetune_project.runpytest("--finetune", "--finetune-strict-recipe")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["recipe changed (data sha256:*… → sha256:*…); *"])


# ---------------------------------------------------------------- the rule, unit by unit

RECIPE = {"task": "mrpc", "model": "m", "model_id": "m", "data": "d", "data_id": "sha256:" + "1" * 64, "seed": 42}


def run_record(accuracy: float, wrong: list[int], **recipe: object) -> dict:
    return {
        "recipe": RECIPE | recipe,
        "metrics": {"accuracy": accuracy, "f1": 0.8},
        "examples": {"count": 100, "digest": "ids", "wrong": wrong},
        "validation_id": "sha256:" + "a" * 64,
    }


def test_a_changed_recipe_is_compared_and_strict_recipe_fails_what_held() -> None:
    baseline = run_record(0.9, list(range(10)))
    held = compare(run_record(0.9, list(range(10)), seed=1), baseline, Tolerances())
    assert (held.outcome, held.headline) == (Outcome.PASSED, "recipe changed (seed 42 → 1); quality held")
    strict = compare(run_record(0.9, list(range(10)), seed=1), baseline, Tolerances(), strict_recipe=True)
    assert strict.outcome is Outcome.RECIPE_CHANGED and strict.outcome.failed and strict.rows == held.rows
    assert compare(run_record(0.9, list(range(10))), baseline, Tolerances(), strict_recipe=True).outcome is (
        Outcome.PASSED
    )
    worse = compare(run_record(0.8, list(range(20)), seed=1), baseline, Tolerances(), strict_recipe=True)
    assert worse.outcome is Outcome.REGRESSED
    assert worse.headline == "recipe changed (seed 42 → 1); regressed by 0.100 accuracy, paired test p = 0.00195"


def test_training_data_may_change_the_validation_examples_may_not() -> None:
    new_data = {"data_id": "sha256:" + "2" * 64}
    baseline = run_record(0.9, [])
    assert not_comparable(run_record(0.9, [], **new_data), baseline) is None  # same validation_id
    moved = run_record(0.9, []) | {"validation_id": "sha256:" + "b" * 64}
    assert not_comparable(moved, baseline) == (
        "the validation examples changed (by content: sha256:aaaaaaaaaaaa… → sha256:bbbbbbbbbbbb…)"
    )
    # older baselines: by ids where both have them, else by the data they were read from
    older = {key: value for key, value in baseline.items() if key != "validation_id"}
    assert not_comparable(run_record(0.9, [], **new_data), older) is None
    oldest = {key: value for key, value in older.items() if key != "examples"}
    assert not_comparable(run_record(0.9, []), oldest) is None
    assert "neither by content nor by ids" in str(not_comparable(run_record(0.9, [], **new_data), oldest))


@pytest.mark.parametrize("path", EXAMPLE_BASELINES, ids=lambda path: path.stem)
def test_the_committed_example_baselines_still_compare(path: Path) -> None:
    """The examples' baselines pass against a run of the same recipe, and against one of another learning rate with
    a note; a run on other validation examples (another ``validation_id``) is refused."""
    baseline = parse_baseline(path.read_text(), str(path), Tolerances().metrics)
    run = dict(baseline)
    same = compare(run, baseline, Tolerances())
    assert (same.outcome, same.recipe_changes) == (Outcome.PASSED, ())
    retuned = run | {"recipe": baseline["recipe"] | {"training_args": {**baseline["recipe"]["training_args"]}}}
    retuned["recipe"]["training_args"]["learning_rate"] = 3e-5
    assert compare(retuned, baseline, Tolerances()).headline == (
        "recipe changed (learning_rate 5e-05 → 3e-05); quality held"
    )
    other_examples = run | {"validation_id": "sha256:" + "d" * 64}
    assert compare(other_examples, baseline, Tolerances()).outcome is Outcome.NOT_COMPARABLE


def test_reports_carry_the_verdict_and_its_recipe_diff_across_xdist() -> None:
    baseline = run_record(0.9, [])
    verdict = compare(run_record(0.9, [], seed=7) | {"validation_id": "sha256:" + "e" * 64}, baseline, Tolerances())
    entry = ReportEntry(nodeid="t.py::t", outcome=verdict.outcome.value, baseline="b.json", verdict=verdict)
    assert entry_from_json(entry_to_json(entry)) == entry
    assert ("finetune.verdict", verdict.headline) in junit_properties(entry)
    updated = ReportEntry(
        nodeid="t.py::t",
        outcome="updated",
        baseline="b.json",
        verdict=compare(run_record(0.5, list(range(40)), seed=7), baseline, Tolerances()),
    )
    assert updated.recorded_over_regression
    assert str(pass_note(updated)).startswith("baseline recorded over a regression (recipe changed (seed 42 → 7)")
