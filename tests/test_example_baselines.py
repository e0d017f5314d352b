"""The committed baselines of the examples are what a current run records, so that the README's commands compare
with them; those of examples/glue match the suite that gates on them: each test's task, training arguments and
floors, and they compare with themselves as a rerun of the same recipe would."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest

from pytest_finetune.baselines import parse_baseline
from pytest_finetune.tasks import TASKS
from pytest_finetune.tolerances import Tolerances
from pytest_finetune.verdicts import Outcome, compare

ROOT = Path(__file__).parents[1]
COMMITTED = sorted((ROOT / "baselines" / "examples").rglob("*.json"))
SUITE = ROOT / "examples" / "glue" / "test_glue_tasks.py"
BASELINES = ROOT / "baselines" / "examples" / "glue" / SUITE.stem
#: Training arguments transformers 5 records under another name: a warm-up ratio is ``warmup_steps`` below 1.
RENAMED = {"warmup_ratio": "warmup_steps"}


def _marked_tests() -> dict[str, dict[str, Any]]:
    """The ``finetune`` marker keywords of each test of the example suite, by test name."""
    spec = importlib.util.spec_from_file_location("glue_example_suite", SUITE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {
        name: next(mark.kwargs for mark in function.pytestmark if mark.name == "finetune")
        for name, function in vars(module).items()
        if name.startswith("test_")
    }


MARKED = _marked_tests()


def test_each_example_test_has_its_committed_baseline() -> None:
    assert sorted(path.stem for path in BASELINES.glob("*.json")) == sorted(MARKED)
    assert {keywords["task"] for keywords in MARKED.values()} == {"rte", "stsb", "cola"}


@pytest.mark.parametrize("name", sorted(MARKED))
def test_a_committed_glue_baseline_is_its_test_s_recipe_and_passes_its_floors(name: str) -> None:
    keywords = MARKED[name]
    task = TASKS[keywords["task"]]
    path = BASELINES / f"{name}.json"
    baseline = parse_baseline(path.read_text(), str(path), task.gated)
    recipe = baseline["recipe"]
    assert recipe["task"] == task.name
    trained = {key: value for key, value in keywords.items() if key not in ("task", "data", "floor")}
    recorded = recipe["training_args"]
    assert {key: recorded.get(key, recorded.get(RENAMED.get(key, key))) for key in trained} == pytest.approx(trained)
    tolerances = Tolerances(allowed=tuple(task.default_tolerances.items()), floors=tuple(keywords["floor"].items()))
    rerun = compare(baseline, baseline, tolerances)
    assert (rerun.outcome, rerun.recipe_changes) == (Outcome.PASSED, ())


@pytest.mark.parametrize("path", COMMITTED, ids=lambda path: path.stem)
def test_a_committed_example_baseline_is_in_the_current_format(path: Path) -> None:
    """It names its validation examples by content and its data as the example's ``conftest.py`` supplies it: a
    baseline recorded before either is ``not comparable`` in a run of the example (re-record it with
    ``--snapshot-update``)."""
    record = json.loads(path.read_text())
    assert str(record.get("validation_id")).startswith("sha256:"), path
    example = path.relative_to(ROOT / "baselines" / "examples").parts[0]
    fixture = re.search(r"^def (tokenized_\w+)\(", (ROOT / "examples" / example / "conftest.py").read_text(), re.M)
    assert fixture, example
    assert record["recipe"]["data"] == f"{fixture[1]} fixture of conftest.py", path
