"""An empty model, data or task value (an unset shell variable: ``--finetune-model=$MODEL``) is a
usage error that names the option, not silently the ini file's value, nor the folder a relative
path is resolved against."""

from __future__ import annotations

import pytest
from helpers import QUALITY_TEST, assert_fails_clearly, assert_usage_error

MODEL_HELP = "give a Hub id or a checkpoint folder, or leave it out"
DATA_HELP = "give a Hub dataset id or a data folder, or leave it out"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--finetune-model="], f"--finetune-model= gives an empty model: {MODEL_HELP}"),
        (["--finetune-data="], f"--finetune-data= gives an empty data: {DATA_HELP}"),
        (["--finetune-model", ""], f"--finetune-model= gives an empty model: {MODEL_HELP}"),
        (["--finetune-data=  "], f"--finetune-data=* gives an empty data: {DATA_HELP}"),
        (["--finetune-task="], "--finetune-task= gives an empty task: give a task such as mrpc, or leave it out"),
        (["--finetune-set", "model="], f"--finetune-set model= gives an empty model: {MODEL_HELP}"),
        (["--finetune-set", "data="], f"--finetune-set data= gives an empty data: {DATA_HELP}"),
    ],
    ids=["model", "data", "model-apart", "data-blank", "task", "set-model", "set-data"],
)
def test_an_empty_value_on_the_command_line_is_a_usage_error(
    finetune_project: pytest.Pytester, args: list[str], message: str
) -> None:
    """The project's ini file sets the model and data: an empty option must not fall back to them."""
    finetune_project.makepyfile(test_quality=QUALITY_TEST)
    result = finetune_project.runpytest("--finetune", *args)
    assert_usage_error(result, message)
    assert not (finetune_project.path / "baselines").exists()


def test_an_empty_value_is_refused_without_finetune_too(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x():\n    pass\n")
    assert_usage_error(pytester.runpytest("--finetune-model="), f"--finetune-model= gives an empty model: {MODEL_HELP}")


def test_an_empty_value_in_the_ini_training_args_names_the_ini_file(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nfinetune_training_args =\n    data =\n")
    pytester.makepyfile("def test_x():\n    pass\n")
    assert_usage_error(pytester.runpytest(), f"ini file: data='' gives an empty data: {DATA_HELP}")


def test_an_empty_marker_value_is_a_collection_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x="""
        import pytest

        @pytest.mark.finetune(model="")
        def test_a():
            pass
        """)
    assert_fails_clearly(
        pytester.runpytest(),
        "*ERROR collecting test_x.py*",
        f"*test_x.py::test_a: @pytest.mark.finetune: model='' gives an empty model: {MODEL_HELP}",
    )


def test_an_empty_ini_key_or_environment_variable_is_unset(
    finetune_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``finetune_model =`` in an ini file and ``PYTEST_FINETUNE_DATA=`` mean "not set here", as before."""
    monkeypatch.setenv("PYTEST_FINETUNE_DATA", "")
    ini = (finetune_project.path / "tox.ini").read_text().replace("[pytest]", "[pytest]\nfinetune_task =")
    (finetune_project.path / "tox.ini").write_text(ini)
    finetune_project.makepyfile("def test_x(finetune_recipe):\n    assert finetune_recipe.task == 'mrpc'\n")
    finetune_project.runpytest("--finetune").assert_outcomes(passed=1)
