"""Every GLUE task's data: GLUE's own TSV layout of each task, Hub-named files, and bad input."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import datasets
import numpy as np
import pytest
from glue_layouts import Example, glue_lines, task_examples, write_glue_folder
from helpers import QUALITY_TEST, REAL_MRPC_DIR, SHUFFLED_LABELS

from pytest_finetune.baselines import BaselineError, parse_baseline
from pytest_finetune.data import check_fixture_data, load_raw_dataset
from pytest_finetune.errors import FinetuneError
from pytest_finetune.tasks import TASKS
from pytest_finetune.tolerances import build_tolerances
from pytest_finetune.verdicts import Outcome, compare

GLUE = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli")
#: The real GLUE-layout folders beside the repository (../shared/data).
SHARED_DATA = REAL_MRPC_DIR.parent


def assert_examples(dataset: object, name: str, examples: list[Example]) -> None:
    """``dataset`` holds ``examples`` as task ``name``'s columns: its texts, class ids or scores, ids 0, 1, ..."""
    task = TASKS[name]
    assert dataset.column_names == list(task.columns)  # type: ignore[attr-defined]
    rows = dataset.to_list()  # type: ignore[attr-defined]
    assert [tuple(row[column] for column in task.text_columns) for row in rows] == [texts for _, texts in examples]
    assert [row["label"] for row in rows] == pytest.approx([label for label, _ in examples], abs=1e-6)
    assert [row["idx"] for row in rows] == list(range(len(examples)))


@pytest.mark.parametrize("name", GLUE)
def test_each_tasks_glue_tsv_layout_loads_as_its_hub_columns(tmp_path: Path, name: str) -> None:
    train, dev = task_examples(name, 12, seed=1), task_examples(name, 6, seed=2)
    raw = load_raw_dataset(str(write_glue_folder(tmp_path / name, name, train, dev)), TASKS[name])
    assert_examples(raw["train"], name, train)
    assert_examples(raw["validation"], name, dev)
    if name == "mnli":  # its mismatched dev file too
        assert_examples(raw["validation_mismatched"], name, dev[::-1])
    else:
        assert list(raw) == ["train", "validation"]


def test_string_labels_become_the_hubs_class_ids(tmp_path: Path) -> None:
    write_glue_folder(tmp_path, "rte", task_examples("rte", 4), task_examples("rte", 4))
    assert "\tnot_entailment\n" in (tmp_path / "train.tsv").read_text()
    raw = load_raw_dataset(str(tmp_path), TASKS["rte"])
    assert raw["train"]["label"] == [0, 1, 0, 1]  # entailment = 0, not_entailment = 1, as on the Hub


def test_a_regressions_scores_are_float32(tmp_path: Path) -> None:
    write_glue_folder(tmp_path, "stsb", task_examples("stsb", 5), task_examples("stsb", 5))
    assert load_raw_dataset(str(tmp_path), TASKS["stsb"])["train"].features["label"].dtype == "float32"


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_hub_named_files_with_label_names(tmp_path: Path, suffix: str) -> None:
    """Files with the Hub's column names (QNLI: question, sentence) may write labels as names or ids."""
    rows = [
        {"question": f"q{n} is it", "sentence": f"s{n} it is", "label": label}
        for n, label in enumerate(["entailment", "not_entailment", "not_entailment"])
    ]
    for stem in ("train", "validation"):
        if suffix == ".csv":
            lines = ["question,sentence,label", *(f"{r['question']},{r['sentence']},{r['label']}" for r in rows)]
            (tmp_path / f"{stem}.csv").write_text("\n".join(lines) + "\n")
        else:
            (tmp_path / f"{stem}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    raw = load_raw_dataset(str(tmp_path), TASKS["qnli"])
    assert raw["validation"].column_names == ["question", "sentence", "label", "idx"]
    assert raw["validation"]["label"] == [0, 1, 1]


def test_a_single_text_task_from_csv(tmp_path: Path) -> None:
    for stem in ("train", "dev"):
        (tmp_path / f"{stem}.csv").write_text("sentence,label\na fine film,1\na dull film,0\n")
    raw = load_raw_dataset(str(tmp_path), TASKS["sst2"])
    assert raw["train"].to_list() == [
        {"sentence": "a fine film", "label": 1, "idx": 0},
        {"sentence": "a dull film", "label": 0, "idx": 1},
    ]


def _write_csv(folder: Path, header: str, *lines: str) -> None:
    for stem in ("train", "dev"):
        (folder / f"{stem}.csv").write_text("\n".join((header, *lines)) + "\n")


def _parquet_scores(folder: Path, scores: list[float]) -> None:
    import pandas as pd

    for stem in ("train", "validation"):
        pd.DataFrame({"sentence1": ["a"] * len(scores), "sentence2": ["b"] * len(scores), "label": scores}).to_parquet(
            folder / f"{stem}.parquet"
        )


def _tsv_of(folder: Path, name: str, lines: list[str]) -> None:
    layout = TASKS[name].glue_layout
    for file in ("train.tsv", layout.validation_file):
        (folder / file).write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "task, write, message",
    [
        pytest.param(
            "mrpc",
            lambda folder: write_glue_folder(folder, "stsb", task_examples("stsb", 4), task_examples("stsb", 4)),
            r"train\.tsv: header is \['index', 'genre', .*expected the GLUE MRPC header \['Quality'.*; the file "
            r"looks like GLUE's stsb layout: set the recipe's task to stsb",
            id="stsb-file-for-mrpc",
        ),
        pytest.param(
            "qnli",
            lambda folder: write_glue_folder(folder, "rte", task_examples("rte", 4), task_examples("rte", 4)),
            r"looks like GLUE's rte or wnli layout",
            id="rte-file-for-qnli",
        ),
        pytest.param(
            "sst2",
            lambda folder: write_glue_folder(folder, "cola", task_examples("cola", 4), task_examples("cola", 4)),
            r"header is \['0', '0', '0', '.*'\], expected the GLUE SST2 header .*looks like GLUE's cola layout",
            id="cola-file-for-sst2",
        ),
        pytest.param(
            "cola",
            lambda folder: write_glue_folder(folder, "sst2", task_examples("sst2", 4), task_examples("sst2", 4)),
            r"train\.tsv, line 1: \['sentence', 'label'\] is not a row of GLUE COLA's layout, 4 tab-separated fields "
            r".*without a header; the file looks like GLUE's sst2 layout",
            id="sst2-file-for-cola",
        ),
        pytest.param(
            "rte",
            lambda folder: _tsv_of(folder, "rte", ["index\tsentence1\tsentence2\tlabel", "0\ta\tb\tmaybe"]),
            r"train\.tsv, line 2: label 'maybe' is not one of the task 'rte''s labels \(entailment, not_entailment\)",
            id="rte-unknown-label-name",
        ),
        pytest.param(
            "stsb",
            lambda folder: _tsv_of(
                folder,
                "stsb",
                glue_lines("stsb", task_examples("stsb", 2), TASKS["stsb"].glue_layout.headers[0])
                + ["9\tg\tf\ty\to\ts\ts\ta\tb\tnan"],
            ),
            r"train\.tsv, line 4: score 'nan' is not a finite number; the task 'stsb' is a regression",
            id="stsb-nan-score",
        ),
        pytest.param(
            "stsb",
            lambda folder: _tsv_of(
                folder,
                "stsb",
                glue_lines("stsb", task_examples("stsb", 2), TASKS["stsb"].glue_layout.headers[0])
                + ["9\tg\tf\ty\to\ts\ts\ta\tb\thigh"],
            ),
            r"line 4: score 'high' is not a finite number",
            id="stsb-text-score",
        ),
        pytest.param(
            "mnli",
            lambda folder: write_glue_folder(folder, "mnli", task_examples("mnli", 4), task_examples("mnli", 4))
            and (folder / "train.tsv").write_text(
                "\n".join(glue_lines("mnli", task_examples("mnli", 4), TASKS["mnli"].glue_layout.headers[0])).replace(
                    "\tneutral\n", "\t3\n"
                )
                + "\n"
            ),
            r"label '3' is not one of the task 'mnli''s labels \(entailment, neutral, contradiction\)",
            id="mnli-label-id-where-names-are-written",
        ),
        pytest.param(
            "rte",
            lambda folder: _write_csv(folder, "sentence1,sentence2,label", "a,b,entailment", "c,d,perhaps"),
            r"train split, row 2: label 'perhaps' is not one of the task 'rte''s labels",
            id="csv-unknown-label-name",
        ),
        pytest.param(
            "mnli",
            lambda folder: _write_csv(folder, "premise,hypothesis,label,idx", "a,b,0,10", "c,d,3,11"),
            r"train split: labels \[3\] are outside \{0, 1, 2\}; the task 'mnli' has 3 labels \(first at idx 11: 3\)",
            id="csv-label-outside-three-classes",
        ),
        pytest.param(
            "stsb",
            lambda folder: _write_csv(folder, "sentence1,sentence2,label", "a,b,3.5", "c,d,nan"),
            r"train split, row 2: score 'nan' is not a finite number",
            id="csv-nan-score",
        ),
        pytest.param(
            "stsb",
            lambda folder: _parquet_scores(folder, [1.0, 2.0, float("nan")]),
            r"train\.parquet, row 3: label is missing \(null\); give every row sentence1, sentence2 and label",
            id="parquet-nan-score",
        ),
        pytest.param(
            "stsb",
            lambda folder: _write_csv(folder, "sentence1,sentence2,label,idx", "a,b,3.5,7", "c,d,high,8"),
            r"train split, idx 8: score 'high' is not a finite number; the task 'stsb' is a regression",
            id="csv-text-score",
        ),
        pytest.param(
            "sst2",
            lambda folder: _write_csv(folder, "text,label", "a fine film,1"),
            r"train split: missing column\(s\) sentence \(it has text, label\); the task 'sst2' needs sentence, label",
            id="csv-missing-text-column",
        ),
        pytest.param(
            "mnli",
            lambda folder: write_glue_folder(folder, "mnli", task_examples("mnli", 2), task_examples("mnli", 2))
            and (folder / "dev_matched.tsv").unlink(),
            r"has no dev_matched\.tsv \(the validation split\); a GLUE folder of the task 'mnli' needs train\.tsv and "
            r"dev_matched\.tsv",
            id="mnli-without-dev-matched",
        ),
    ],
)
def test_bad_task_data_names_the_value_and_the_fix(tmp_path: Path, task: str, write: object, message: str) -> None:
    write(tmp_path)  # type: ignore[operator]
    with pytest.raises(FinetuneError, match=message):
        load_raw_dataset(str(tmp_path), TASKS[task])


def test_a_fixtures_nan_score_names_its_row() -> None:
    split = datasets.Dataset.from_dict(
        {"sentence1": ["a", "b"], "sentence2": ["c", "d"], "label": [1.5, float("nan")], "idx": [4, 5]}
    )
    with pytest.raises(FinetuneError, match=r"^conftest, train split, idx 5: score nan is not a finite number"):
        check_fixture_data(datasets.DatasetDict(train=split, validation=split), "conftest", TASKS["stsb"])


@pytest.mark.parametrize(
    "name, rows, labels",
    [
        ("rte", (1244, 139), {0, 1}),
        ("wnli", (565, 70), {0, 1}),
        ("stsb", (4249, 1500), None),
        ("cola", (7250, 1301), {0, 1}),
    ],
)
def test_real_glue_folders(name: str, rows: tuple[int, int], labels: set[int] | None) -> None:
    folder = SHARED_DATA / name
    if not (folder / "train.tsv").exists():
        pytest.skip(f"real GLUE {name} TSV files are absent from {folder}")
    raw = load_raw_dataset(str(folder), TASKS[name])
    assert (raw["train"].num_rows, raw["validation"].num_rows) == rows
    scores = raw["validation"]["label"]
    if labels is None:
        assert all(0 <= score <= 5 and not math.isnan(score) for score in scores)
    else:
        assert set(scores) == labels
    assert all(re.search(r"\w", text) for text in raw["validation"][TASKS[name].text_columns[0]])


#: A budget at which the tiny BERT learns each task's rule (a word of the first text tells the label); a
#: regression learns its scores at a higher learning rate than classes, which collapse to one class there.
BUDGET = "max_steps=60, learning_rate={}, per_device_train_batch_size=8, eval_strategy='no'"
#: A task of each shape (single text; pair; three classes with label names; Matthews; regression) is also
#: trained on shuffled labels.
SHAPES = ("sst2", "mrpc", "mnli", "cola", "stsb")


@pytest.mark.parametrize("name", GLUE)
def test_each_glue_task_trains_scores_and_gates(
    pytester: pytest.Pytester, tiny_checkpoint: Path, tmp_path: Path, name: str
) -> None:
    """Recorded from GLUE's TSV layout of the task, the run passes against its baseline, served from the result
    cache (a regression's float scores too); for a task of each shape, trained on shuffled labels, it fails the
    gate on the task's gated metrics."""
    task = TASKS[name]
    data = write_glue_folder(tmp_path / name, name, task_examples(name, 64, seed=1), task_examples(name, 40, seed=2))
    pytester.makeini(f"""
        [pytest]
        finetune_model = {tiny_checkpoint}
        finetune_data = {data}
        finetune_task = {name}
        """)
    pytester.makepyfile(f"""
        import pytest

        @pytest.mark.finetune({BUDGET.format(1e-2 if task.is_regression else 3e-3)})
        def test_task():
            "Fine-tune, then compare with the baseline."
        """)
    pytester.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)
    (baseline_file,) = (pytester.path / "baselines").glob("*/test_task.json")
    metrics = json.loads(baseline_file.read_text())["metrics"]
    assert all(metrics[metric] > 0.6 for metric in task.gated), metrics  # learnt: well above a constant predictor
    gate = pytester.runpytest("--finetune", "--finetune-report=report.json")
    gate.assert_outcomes(passed=1)
    (entry,) = json.loads((pytester.path / "report.json").read_text())["tests"]
    assert all(entry["metrics"][metric]["verdict"] == "ok" for metric in task.gated), entry["metrics"]
    assert entry["cached"], gate.stdout.str()
    if name == "mnli":  # validation_mismatched: computed and shown, not gated
        assert metrics["accuracy_mismatched"] == metrics["accuracy"]  # the same examples, in another order
        assert entry["metrics"]["accuracy_mismatched"]["verdict"] == "not gated", entry["metrics"]
    if name not in SHAPES:
        return
    pytester.makeconftest(SHUFFLED_LABELS)
    shuffled = pytester.runpytest("--finetune", "--finetune-report=report.json")
    shuffled.assert_outcomes(failed=1)
    (entry,) = json.loads((pytester.path / "report.json").read_text())["tests"]
    assert entry["outcome"] == "regressed", entry


@pytest.mark.parametrize(
    "overridden, requested",
    [
        ("finetune_dataset", "tokenized_mrpc"),
        ("mrpc_dataset", "tokenized_dataset"),
        ("finetune_dataset", "trainer"),
        ("tokenized_dataset", "trainer"),
        ("tokenized_mrpc", "trainer"),
    ],
)
def test_an_override_of_either_name_is_honoured(
    finetune_project: pytest.Pytester, overridden: str, requested: str
) -> None:
    """The task-neutral fixture names and the seed's name the same fixtures: a ``conftest.py`` that overrides
    one name (keeping 8 validation examples) changes what every later fixture, under either name, gets."""
    finetune_project.makeconftest(f"""
        import pytest

        @pytest.fixture
        def {overridden}({overridden}):
            {overridden}["validation"] = {overridden}["validation"].select(range(8))
            return {overridden}
        """)
    finetune_project.makepyfile(f"""
        def test_x({requested}):
            validation = {requested}.eval_dataset if {requested!r} == "trainer" else {requested}["validation"]
            assert len(validation) == 8
        """)
    finetune_project.runpytest().assert_outcomes(passed=1)


def test_an_unknown_task_in_a_marker_fails_its_test_listing_the_known_ones(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.finetune(task="imdb")
        def test_x():
            pass
        """)
    result = pytester.runpytest("--finetune")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*unknown task 'imdb'; known tasks: cola, mnli, mrpc, qnli, qqp, rte, sst2, stsb, wnli; or declare *"]
    )
    result.stdout.no_fnmatch_line("*INTERNALERROR*")


@pytest.mark.parametrize("overridden", ["finetune_dataset", "tokenized_dataset"])
def test_a_task_neutral_override_records_the_data_it_gives(finetune_project: pytest.Pytester, overridden: str) -> None:
    """As for ``mrpc_dataset`` and ``tokenized_mrpc``: the baseline names the data the trainer held."""
    finetune_project.makeconftest(f"""
        import pytest

        @pytest.fixture
        def {overridden}({overridden}):
            {overridden}["train"] = {overridden}["train"].select(range(40))
            return {overridden}
        """)
    finetune_project.makepyfile(test_quality=QUALITY_TEST)
    finetune_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)
    (baseline_file,) = (finetune_project.path / "baselines").glob("*/test_quality.json")
    assert json.loads(baseline_file.read_text())["recipe"]["data"] == f"{overridden} fixture of conftest.py"


def regression_record(errors: list[float] | None, pearson: float = 0.8) -> dict:
    """A regression's record: its metrics, and where given each example's absolute error."""
    record: dict = {"metrics": {"pearson": pearson, "spearmanr": pearson}}
    if errors is not None:
        record["examples"] = {"count": len(errors), "digest": "same", "abs_errors": errors}
    return record


def test_a_regressions_paired_test_is_wilcoxons_on_the_absolute_errors() -> None:
    """Within the metrics' tolerance, errors that grew on most examples fail the run (as McNemar fails a
    classification's); errors that moved both ways do not; the numbers are scipy's."""
    from scipy.stats import wilcoxon

    rng = np.random.default_rng(0)
    then = rng.uniform(0.1, 1.5, 60)
    grown = then + rng.uniform(0.0, 0.3, 60)
    tolerances = build_tolerances([0.05], defaults=TASKS["stsb"].default_tolerances)
    verdict = compare(regression_record(list(grown), 0.78), regression_record(list(then)), tolerances)
    assert verdict.paired is not None and verdict.paired.method == "Wilcoxon signed-rank"
    assert verdict.paired.p_value == pytest.approx(wilcoxon(grown, then).pvalue, abs=1e-12)
    assert [row.verdict for row in verdict.rows] == ["ok", "ok"]  # the metrics alone were within tolerance
    assert verdict.outcome is Outcome.REGRESSED
    assert verdict.paired.describe().startswith(
        f"paired test on 60 examples: 60 got a larger absolute error, 0 a smaller (mean change "
        f"+{np.mean(grown - then):.4g}); Wilcoxon signed-rank p = "
    )
    assert verdict.paired.describe().endswith("(alpha 0.01): significantly worse")
    moved = then + rng.normal(0, 0.05, 60)
    held = compare(regression_record(list(moved)), regression_record(list(then)), tolerances)
    assert held.outcome is Outcome.PASSED and held.paired is not None and not held.paired.significant
    better = compare(regression_record(list(then)), regression_record(list(grown)), tolerances)
    assert better.outcome is Outcome.PASSED and better.paired is not None and better.paired.significant


def test_a_regression_baseline_without_errors_has_no_paired_test() -> None:
    """A baseline recorded before the errors were kept is compared on its metrics, as before, with a note."""
    tolerances = build_tolerances([0.05], defaults=TASKS["stsb"].default_tolerances)
    verdict = compare(regression_record([0.5] * 10), regression_record(None), tolerances)
    assert verdict.paired is None and verdict.outcome is Outcome.PASSED
    assert "the baseline holds no per-example results: record it again for the paired test" in verdict.notes


@pytest.mark.parametrize(
    "errors, message",
    [
        ([0.5, 0.5], r'"examples"."abs_errors" is not a list of 3 absolute errors'),
        ([0.5, -0.1, 0.2], r'"examples"."abs_errors" holds -0.1, not an absolute error'),
        ([0.5, "x", 0.2], r"\"examples\".\"abs_errors\" holds 'x', not an absolute error"),
    ],
)
def test_a_baselines_bad_absolute_errors_are_refused(errors: list[object], message: str) -> None:
    text = json.dumps({"metrics": {"pearson": 0.8}, "examples": {"count": 3, "digest": "d", "abs_errors": errors}})
    with pytest.raises(BaselineError, match=message):
        parse_baseline(text, "b.json", ("pearson",))
