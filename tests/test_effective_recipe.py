"""The recipe a result, its baseline and the result cache record is the trainer's effective training arguments
that change what it computes, whatever set them: a ``pytest_finetune_adjust_training_args`` hook included."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import QUALITY_BASELINE, QUALITY_TEST

from pytest_finetune.baselines import recipe_record
from pytest_finetune.recipe import build_recipe
from pytest_finetune.training import build_training_arguments, trained_recipe, training_arguments_kwargs

# Counts trainings (the result hook runs for a fine-tune, not for a cache hit).
COUNTING = """
def pytest_finetune_result(result):
    with open("trainings.txt", "a") as handle:
        handle.write("trained\\n")
"""
# A hook that sets training arguments the recipe does not hold.
TRAINING_HOOK = """
def pytest_finetune_adjust_training_args(recipe, training_args):
    training_args["max_steps"] = 1
    training_args["weight_decay"] = 0.5
"""
# A hook that sets only how the run is logged, saved and fed.
RUN_ONLY_HOOK = """
def pytest_finetune_adjust_training_args(recipe, training_args):
    training_args["logging_steps"] = 2
    training_args["save_total_limit"] = 1
    training_args["eval_accumulation_steps"] = 2
    training_args["skip_memory_metrics"] = False
"""


@pytest.fixture
def project(finetune_project: pytest.Pytester) -> pytest.Pytester:
    """The tiny project with a recipe that holds no ``max_steps`` (one epoch of its 48 pairs)."""
    ini = (finetune_project.path / "tox.ini").read_text()
    (finetune_project.path / "tox.ini").write_text(ini.replace("max_steps = 4", "num_train_epochs = 1"))
    finetune_project.makepyfile(test_quality=QUALITY_TEST)
    return finetune_project


def run(project: pytest.Pytester, hook: str, *args: str) -> tuple[dict, int]:
    """Run the marked test with ``hook`` in the conftest; the report's entry for it and the trainings so far."""
    project.makeconftest(COUNTING + hook)
    project.runpytest("--finetune", "--finetune-report=report.json", *args)
    (entry,) = json.loads((project.path / "report.json").read_text())["tests"]
    return entry, len((project.path / "trainings.txt").read_text().splitlines())


def changed_keys(entry: dict) -> list[str]:
    return sorted(change["key"] for change in entry["recipe_changes"])


def test_removing_a_hook_that_changes_training_is_a_recipe_change(project: pytest.Pytester) -> None:
    """What the hook set is in the baseline's recipe; without the hook, the recipe changed (not "improved"), and
    the result cache misses."""
    run(project, TRAINING_HOOK, "--snapshot-update")
    baseline = json.loads((project.path / QUALITY_BASELINE).read_text())
    assert baseline["recipe"]["training_args"]["max_steps"] == 1
    assert baseline["recipe"]["training_args"]["weight_decay"] == 0.5
    assert [row["step"] for row in baseline["history"]] == [1]

    entry, trainings = run(project, "")
    assert changed_keys(entry) == ["training_args.max_steps", "training_args.weight_decay"]
    assert trainings == 2


def test_adding_a_hook_that_changes_training_is_a_recipe_change(project: pytest.Pytester) -> None:
    """Against a baseline recorded without the hook, the hook's arguments are a recipe change (not "regressed")."""
    run(project, "", "--snapshot-update")
    entry, trainings = run(project, TRAINING_HOOK)
    assert changed_keys(entry) == ["training_args.max_steps", "training_args.weight_decay"]
    assert trainings == 2


def test_a_hook_that_sets_how_the_run_is_logged_saved_or_fed_changes_no_recipe(project: pytest.Pytester) -> None:
    run(project, "", "--snapshot-update")
    entry, _ = run(project, RUN_ONLY_HOOK)
    assert (entry["outcome"], changed_keys(entry)) == ("passed", [])


def arguments_as_built(recipe_layers: dict, tmp_path: Path, **set_by_hook: object) -> SimpleNamespace:
    """A stand-in trainer holding the ``TrainingArguments`` the ``training_args`` fixture builds for the recipe of
    ``recipe_layers`` in fp32, with what a hook sets."""
    recipe = build_recipe([("test", recipe_layers)])
    kwargs = training_arguments_kwargs(recipe, tmp_path, "fp32")
    return SimpleNamespace(recipe=recipe, args=build_training_arguments({**kwargs, **set_by_hook}))


def test_the_examples_seed_recipe_records_what_their_committed_baselines_hold(tmp_path: Path) -> None:
    """The unchanged seed recipe (examples/mrpc, fp32) records the training arguments its baselines hold."""
    trainer = arguments_as_built({}, tmp_path)
    recorded = recipe_record(trained_recipe(trainer.recipe, trainer, "fp32"), tmp_path)["training_args"]  # type: ignore[arg-type]
    for baseline in Path(__file__).parents[1].glob("baselines/examples/mrpc/**/*.json"):
        assert json.loads(baseline.read_text())["recipe"]["training_args"] == recorded, baseline


def test_a_seed_and_a_tuple_a_hook_sets_are_recorded_as_a_baseline_reads_them(tmp_path: Path) -> None:
    """The seed goes to the recipe's ``seed``; a tuple becomes the list JSON gives back; the machine's
    ``use_cpu`` and run-only ``dataloader_num_workers`` stay out."""
    trainer = arguments_as_built(
        {}, tmp_path, seed=7, optim_target_modules=("query", "value"), dataloader_num_workers=1, use_cpu=True
    )
    trained = trained_recipe(trainer.recipe, trainer, "fp32")  # type: ignore[arg-type]
    assert trained.seed == 7
    assert dict(trained.training_args) == {**trainer.recipe.training_args, "optim_target_modules": ["query", "value"]}
