"""The switch, the marker and the settings layers, driven through real pytest sessions."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import assert_fails_clearly, assert_usage_error

RECIPE_DUMP = """
import json

def test_recipe(finetune_recipe):
    with open("recipe.json", "w") as handle:
        json.dump(finetune_recipe.to_dict(), handle)
"""


def run_and_read_recipe(pytester: pytest.Pytester, *args: str) -> dict:
    """Run a session whose one test dumps its recipe; return that recipe."""
    result = pytester.runpytest(*args)
    result.assert_outcomes(passed=1)
    return json.loads(Path("recipe.json").read_text())  # written in the folder pytest ran in


def test_plugin_is_loaded_through_its_entry_point(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*fine-tuning regression tests (pytest-finetune)*", "*--finetune *"])


def test_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.finetune(tolerance=None, **overrides): a fine-tuning test, run only*"])


def test_marked_tests_skip_without_the_switch(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.finetune
        def test_marked():
            raise AssertionError("must not run")

        def test_plain():
            pass
        """)
    result = pytester.runpytest("-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED * fine-tuning tests need --finetune"])


def test_switch_runs_marked_tests(finetune_project: pytest.Pytester) -> None:
    finetune_project.makepyfile("""
        import pytest

        @pytest.mark.finetune
        def test_marked():
            pass
        """)
    finetune_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)


def test_finetune_result_skips_unmarked_tests_without_the_switch(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_trains(finetune_result):\n    raise AssertionError('must not run')\n")
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED * fine-tuning tests need --finetune"])


def test_default_recipe_is_the_seed_recipe(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(RECIPE_DUMP)
    recipe = run_and_read_recipe(pytester)
    assert (recipe["task"], recipe["model"], recipe["data"], recipe["seed"]) == ("mrpc", "bert-base-uncased", None, 42)
    args = recipe["training_args"]
    assert args["learning_rate"] == 5e-5
    assert args["per_device_train_batch_size"] == 8
    assert args["num_train_epochs"] == 3.0
    assert args["eval_strategy"] == "epoch"
    assert args["save_strategy"] == "no"


def test_layers_rise_from_ini_to_environment_to_command_line_to_marker(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tiny_checkpoint: Path, glue_folder: Callable[..., Path]
) -> None:
    # the winners of the marked run fine-tune for real; the others are never loaded
    shutil.copytree(tiny_checkpoint, pytester.path / "marker_model")
    shutil.copytree(glue_folder(), pytester.path / "env_data")
    for name in ("ini_model", "env_model", "cli_model", "ini_data"):
        (pytester.path / name).mkdir()
    pytester.makeini("""
        [pytest]
        finetune_model = ini_model
        finetune_data = ini_data
        finetune_training_args =
            learning_rate = 1e-3
            max_steps = 7
            num_train_epochs = 2
        """)
    pytester.makepyfile(
        RECIPE_DUMP.replace(
            "def test_recipe", "import pytest\n@pytest.mark.finetune(model='marker_model', seed=3)\ndef test_recipe"
        )
    )
    monkeypatch.setenv("PYTEST_FINETUNE_MODEL", "env_model")
    monkeypatch.setenv("PYTEST_FINETUNE_DATA", "env_data")
    recipe = run_and_read_recipe(
        pytester,
        "--finetune",
        "--snapshot-update",
        "--finetune-model",
        "cli_model",
        "--finetune-set",
        "learning_rate=2e-4",
    )
    assert recipe["model"] == str(pytester.path / "marker_model")  # marker beats all
    assert recipe["data"] == str(pytester.path / "env_data")  # environment beats ini
    assert recipe["seed"] == 3
    assert recipe["training_args"]["learning_rate"] == 2e-4  # command line beats ini
    assert recipe["training_args"]["max_steps"] == 7  # ini beats the default
    assert recipe["training_args"]["num_train_epochs"] == 2.0  # converted to the field's type

    monkeypatch.delenv("PYTEST_FINETUNE_MODEL")
    pytester.makepyfile(RECIPE_DUMP)
    assert run_and_read_recipe(pytester)["model"] == str(pytester.path / "ini_model")
    assert run_and_read_recipe(pytester, "--finetune-model", "cli_model")["model"] == str(pytester.path / "cli_model")


def test_closest_marker_wins(finetune_project: pytest.Pytester) -> None:
    finetune_project.makepyfile("""
        import json, pytest

        pytestmark = pytest.mark.finetune(max_steps=5, learning_rate=1e-4)

        @pytest.mark.finetune(max_steps=9)
        def test_recipe(finetune_recipe):
            assert finetune_recipe.training_args["max_steps"] == 9
            assert finetune_recipe.training_args["learning_rate"] == 1e-4
        """)
    finetune_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)


def test_class_marker_applies_below_the_function_marker(finetune_project: pytest.Pytester) -> None:
    finetune_project.makepyfile("""
        import pytest

        @pytest.mark.finetune(seed=5, max_steps=3)
        class TestRecipes:
            def test_class_only(self, finetune_recipe):
                assert (finetune_recipe.seed, finetune_recipe.training_args["max_steps"]) == (5, 3)

            @pytest.mark.finetune(seed=6)
            def test_function_wins(self, finetune_recipe):
                assert (finetune_recipe.seed, finetune_recipe.training_args["max_steps"]) == (6, 3)
        """)
    finetune_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=2)


MARKER_FROM_HOOK = """
    import pytest

    def pytest_collection_modifyitems(items):
        for item in items:
            item.add_marker(pytest.mark.finetune({keywords}), append={append})
    """


@pytest.mark.parametrize(("append", "max_steps"), [(True, 3), (False, 2)])
def test_marker_a_hook_adds_after_collection_counts(
    finetune_project: pytest.Pytester, append: bool, max_steps: int
) -> None:
    """A marker added in ``pytest_collection_modifyitems`` to an already marked test joins the
    decorator's: appended, the decorator stays closest and wins where both set a keyword."""
    finetune_project.makeconftest(MARKER_FROM_HOOK.format(keywords="learning_rate=1e-4, max_steps=2", append=append))
    finetune_project.makepyfile(f"""
        import pytest

        @pytest.mark.finetune(max_steps=3)
        def test_recipe(finetune_recipe):
            assert finetune_recipe.training_args["learning_rate"] == 1e-4
            assert finetune_recipe.training_args["max_steps"] == {max_steps}
        """)
    finetune_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)


@pytest.mark.parametrize("args", [(), ("--finetune",)])
def test_bad_marker_a_hook_adds_is_a_usage_error(pytester: pytest.Pytester, args: tuple[str, ...]) -> None:
    pytester.makeconftest(MARKER_FROM_HOOK.format(keywords="learning_rat=1e-4", append=True))
    pytester.makepyfile(test_x="""
        import pytest

        @pytest.mark.finetune(seed=1)
        def test_x():
            pass
        """)
    assert_usage_error(
        pytester.runpytest(*args), "test_x.py::test_x: @pytest.mark.finetune: unknown keyword 'learning_rat'*"
    )


def test_a_marker_a_hook_puts_on_a_doctest_is_a_usage_error(pytester: pytest.Pytester) -> None:
    """Only test functions ask for fixtures: a marked doctest would pass without fine-tuning."""
    pytester.makeconftest("""
        import pytest

        def pytest_collection_modifyitems(items):
            for item in items:
                item.add_marker(pytest.mark.finetune)
        """)
    pytester.makepyfile(mod='def double(x):\n    """\n    >>> double(2)\n    4\n    """\n    return 2 * x\n')
    for args in ((), ("--finetune",)):
        assert_usage_error(
            pytester.runpytest("--doctest-modules", "mod.py", *args),
            "mod.py::mod.double: @pytest.mark.finetune on a DoctestItem, which cannot fine-tune *: remove the marker*",
        )


MARKED_MODULE_WITH_DOCTESTS = '''
import pytest

pytestmark = pytest.mark.finetune


def make_pair(a, b):
    """A helper of the test module.

    >>> make_pair("a", "b")
    ('a', 'b')
    """
    return a, b


@pytest.mark.finetune(seed=4)
class TestK:
    def helper(self):
        """
        >>> 1 + 1
        2
        """

    def test_k(self):
        pass


def test_a():
    pass
'''


def test_doctests_of_a_marked_module_or_class_run_as_plain_doctests(finetune_project: pytest.Pytester) -> None:
    """A doctest inherits the marker of its module and class: it is neither refused, skipped nor gated,
    and the module's tests are fine-tuned as usual."""
    finetune_project.makepyfile(test_doc=MARKED_MODULE_WITH_DOCTESTS)
    result = finetune_project.runpytest("--doctest-modules")
    result.assert_outcomes(passed=2, skipped=2)
    result = finetune_project.runpytest("--doctest-modules", "--finetune", "--snapshot-update", "-v")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*test_doc.TestK.helper PASSED*", "*test_doc.make_pair PASSED*"])
    baselines = sorted(path.name for path in (finetune_project.path / "baselines").rglob("*.json"))
    assert baselines == ["TestK.test_k.json", "test_a.json"]
    result = finetune_project.runpytest("--doctest-modules", "--finetune")
    result.assert_outcomes(passed=4)
    assert result.ret == pytest.ExitCode.OK


def test_without_syrupy_plain_runs_go_on_and_finetune_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.finetune
        def test_marked():
            pass

        def test_plain():
            pass
        """)
    pytester.runpytest("-p", "no:syrupy").assert_outcomes(passed=1, skipped=1)
    assert_usage_error(
        pytester.runpytest("-p", "no:syrupy", "--finetune"),
        "--finetune keeps its baselines through syrupy's pytest plugin, which is disabled here (-p no:syrupy)*",
    )


def test_command_line_beats_environment(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(RECIPE_DUMP)
    monkeypatch.setenv("PYTEST_FINETUNE_DATA", "env/data")
    assert run_and_read_recipe(pytester)["data"] == "env/data"
    assert run_and_read_recipe(pytester, "--finetune-data", "cli/data")["data"] == "cli/data"


def test_relative_paths_resolve_against_the_ini_folder_and_the_invocation_folder(pytester: pytest.Pytester) -> None:
    """ini values are relative to the ini file, command-line values to where pytest was started."""
    for folder in ("ckpt", "sub/ckpt", "sub/data"):
        (pytester.path / folder).mkdir(parents=True)
    pytester.makeini("[pytest]\nfinetune_model = ckpt\nfinetune_data = ./not-there\n")
    (pytester.path / "sub" / "test_dump.py").write_text(RECIPE_DUMP)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(pytester.path / "sub")
        from_ini = run_and_read_recipe(pytester)
        from_cli = run_and_read_recipe(pytester, "--finetune-model", "ckpt", "--finetune-data", "data")
    assert from_ini["model"] == str(pytester.path / "ckpt")
    assert from_ini["data"] == str(pytester.path / "not-there")  # a path even though missing
    assert from_cli["model"] == str(pytester.path / "sub" / "ckpt")
    assert from_cli["data"] == str(pytester.path / "sub" / "data")


def test_hub_ids_stay_as_written(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(RECIPE_DUMP)
    recipe = run_and_read_recipe(pytester, "--finetune-model", "prajjwal1/bert-tiny", "--finetune-data", "glue")
    assert (recipe["model"], recipe["data"]) == ("prajjwal1/bert-tiny", "glue")


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("learning_rat=1e-4", "*test_bad.py::test_x: @pytest.mark.finetune: unknown keyword 'learning_rat'*"),
        ("learning_rate='fast'", "*test_bad.py::test_x: @pytest.mark.finetune: learning_rate='fast' is not valid*"),
        ("max_steps=2.5", "*test_bad.py::test_x: @pytest.mark.finetune: max_steps=2.5 is not valid: expected int*"),
        ("seed='1'", "*test_bad.py::test_x: @pytest.mark.finetune: seed='1' is not valid*"),
        (
            "eval_strategy='sometimes'",
            "*eval_strategy='sometimes' is not valid: expected one of 'no', 'steps', 'epoch'*",
        ),
        ("'bert'", "*test_bad.py::test_x: @pytest.mark.finetune takes keyword arguments only*"),
        (
            "num_train_epochs=[1]",
            "*@pytest.mark.finetune: num_train_epochs=[[]1] is not valid: expected float, got list",
        ),
        ("seed=1.5", "*@pytest.mark.finetune: seed=1.5 is not valid: expected int, got float"),
        ("trust_remote_code='yes'", "*trust_remote_code='yes' is not valid: expected bool, got str"),
        ("tolerance='x'", "*@pytest.mark.finetune: tolerance must be a number such as 0.01, or 'auto', got 'x'"),
        ("epochs=3", "*unknown keyword 'epochs'; use a recipe field (*) or a transformers.TrainingArguments field*"),
    ],
)
def test_bad_marker_is_a_collection_error_naming_test_and_keyword(
    pytester: pytest.Pytester, marker: str, message: str
) -> None:
    pytester.makepyfile(test_bad=f"""
        import pytest

        @pytest.mark.finetune({marker})
        def test_x():
            pass
        """)
    result = pytester.runpytest()  # checked even without --finetune
    assert_fails_clearly(result, "*ERROR collecting test_bad.py*", message)


def test_unknown_task_in_marker_is_a_collection_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bad="""
        import pytest

        @pytest.mark.finetune(task="sst9")
        def test_x(finetune_recipe):
            pass
        """)
    result = pytester.runpytest()
    assert_fails_clearly(
        result,
        "*test_bad.py::test_x: @pytest.mark.finetune: unknown task 'sst9'; "
        "known tasks: cola, mnli, mrpc, qnli, qqp, rte, sst2, stsb, wnli; or declare a task of your own *",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--finetune-set", "learning_rate"], "*--finetune-set: 'learning_rate' is not KEY=VALUE*"),
        (["--finetune-set", "lr=1e-4"], "*command line: unknown keyword 'lr'*"),
        (["--finetune-set", "max_steps=ten"], "*command line: max_steps=ten is not valid*"),
        (["--finetune-set", "fp16=maybe"], "*command line: fp16=maybe is not valid: expected true or false*"),
        (["--finetune-task", "sst9"], "*command line: unknown task 'sst9'; known tasks: cola, mnli, mrpc, *"),
    ],
)
def test_bad_command_line_is_a_usage_error(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: " + message.lstrip("*")])


def test_bad_ini_line_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nfinetune_training_args =\n    num_train_epochs = three\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: ini file: num_train_epochs=three is not valid*"])


def test_missing_model_folder_fails_the_test_with_the_path(pytester: pytest.Pytester, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-checkpoint"
    pytester.makepyfile("def test_x(model):\n    pass\n")
    result = pytester.runpytest("--finetune-model", str(missing))
    assert_fails_clearly(
        result,
        "*ERROR at setup of test_x*",
        f"model folder '{missing}' does not exist (resolved to {missing}); without the Hub, point finetune_model "
        "(--finetune-model, PYTEST_FINETUNE_MODEL) at a folder that save_pretrained wrote, with its tokenizer; "
        "with the Hub, at a Hub model id (bert-base-uncased)",
        "*= short*",
    )


def test_missing_data_folder_says_how_to_get_data_with_and_without_the_hub(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    missing = tmp_path / "mrpc"
    pytester.makepyfile("def test_x(mrpc_dataset):\n    pass\n")
    result = pytester.runpytest("--finetune-data", str(missing))
    assert_fails_clearly(
        result,
        "*ERROR at setup of test_x*",
        f"data folder '{missing}' does not exist (resolved to {missing}); without the Hub, point finetune_data "
        "(--finetune-data, PYTEST_FINETUNE_DATA) at a folder of the task's files (a GLUE TSV folder or "
        "train/validation csv, json, jsonl or parquet files; see docs/data.md); with the Hub, at a Hub dataset id "
        "(nyu-mll/glue), or leave it unset for the task's own",
    )


def test_missing_dev_tsv_fails_the_test_with_the_fix(pytester: pytest.Pytester, glue_folder) -> None:
    folder = glue_folder()
    (folder / "dev.tsv").unlink()
    pytester.makepyfile("def test_x(mrpc_dataset):\n    pass\n")
    result = pytester.runpytest(f"--finetune-data={folder}")
    assert_fails_clearly(
        result, "*has no dev.tsv (the validation split); a GLUE folder of the task 'mrpc' needs train.tsv and dev.tsv*"
    )


def test_unreachable_hub_says_how_to_work_offline(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    pytester.makepyfile("""
        def test_data(mrpc_dataset):
            pass

        def test_model(model):
            pass

        def test_tokenizer(tokenizer):
            pass
        """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")  # offline mode is read at import
    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines(
        [
            "*could not load dataset 'nyu-mll/glue' from the Hugging Face Hub*--finetune-data=PATH*",
            "*could not load the model of 'bert-base-uncased' from the Hugging Face Hub*--finetune-model=PATH*",
            "*could not load the tokenizer of 'bert-base-uncased' from the Hugging Face Hub*--finetune-model=PATH*",
        ]
    )


@pytest.mark.parametrize(
    ("remove", "message"),
    [
        ("model.safetensors", "*could not load the model of checkpoint folder '*' (OSError: *"),
        ("config.json", "*is not a checkpoint folder (no config.json)*"),
    ],
)
def test_incomplete_checkpoint_folder_fails_the_test(
    pytester: pytest.Pytester, tiny_checkpoint: Path, remove: str, message: str
) -> None:
    broken = pytester.path / "broken-checkpoint"
    shutil.copytree(tiny_checkpoint, broken)
    (broken / remove).unlink()
    pytester.makepyfile("def test_x(model):\n    pass\n")
    result = pytester.runpytest("--finetune-model", str(broken))
    assert_fails_clearly(result, message)


def test_a_run_that_fine_tunes_nothing_imports_no_ml_library(pytester: pytest.Pytester) -> None:
    """The plugin loads with every pytest run: torch and friends must wait until needed."""
    pytester.makepyfile("""
        import sys, pytest

        @pytest.mark.finetune(model="some/checkpoint", seed=3)
        def test_marked():
            pass

        def test_plain():
            assert not {"torch", "transformers", "datasets"} & set(sys.modules)
        """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=1)


def test_checking_a_training_argument_imports_no_trainer(pytester: pytest.Pytester) -> None:
    """A marker that sets a training argument needs TrainingArguments' fields, not Trainer or datasets."""
    pytester.makepyfile("""
        import sys, pytest

        @pytest.mark.finetune(max_steps=3, train_sampling_strategy="random")
        def test_marked():
            pass

        def test_plain():
            assert not {"transformers.trainer", "datasets"} & set(sys.modules)
        """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=1)


def test_a_path_option_written_apart_that_moves_the_rootdir_is_refused(
    pytester: pytest.Pytester, tiny_checkpoint: Path
) -> None:
    """pytest finds the rootdir before plugins load, so ``--finetune-model /elsewhere`` would hide the ini file."""
    pytester.makeini("[pytest]\nfinetune_training_args = max_steps=3\n")
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest("--finetune-model", str(tiny_checkpoint))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"ERROR: write --finetune-model={tiny_checkpoint} (with '='): written apart, pytest takes*for a test path*"]
    )
    pytester.runpytest(f"--finetune-model={tiny_checkpoint}").assert_outcomes(passed=1)
    (pytester.path / "ckpt").mkdir()
    pytester.runpytest("--finetune-model", "ckpt").assert_outcomes(passed=1)  # inside the project: harmless


NATIVE_TOML_SETTINGS = """
from pytest_finetune.session import SESSION_KEY

def test_settings(request):
    session = request.config.stash[SESSION_KEY]
    assert (session.alpha, session.auto_k, session.auto_floor) == (0.05, 2.0, 0.01)
    assert (session.bootstrap_resamples, session.runtime_tuning) == (100, False)
    assert session.tolerance_settings == [0.02, {"f1": 0.015}]
"""


@pytest.mark.skipif(pytest.version_tuple < (9, 2), reason="pytest 9.2 takes TOML types for ini keys")
def test_a_native_toml_table_takes_numbers_and_bools(pytester: pytest.Pytester) -> None:
    """pytest 9 reads ``[tool.pytest]`` with TOML's types: the keys take them as docs/recipes.md writes them."""
    pytester.makepyprojecttoml("""
        [tool.pytest]
        finetune_alpha = 0.05
        finetune_auto_k = 2
        finetune_auto_floor = 0.01
        finetune_bootstrap_resamples = 100
        finetune_runtime_tuning = false
        finetune_tolerance = ["0.02", "f1=0.015"]
        """)
    pytester.makepyfile(NATIVE_TOML_SETTINGS)
    pytester.runpytest().assert_outcomes(passed=1)


@pytest.mark.skipif(pytest.version_tuple < (9, 2), reason="pytest 9.2 takes TOML types for ini keys")
def test_a_native_toml_table_still_takes_the_text_forms(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml("""
        [tool.pytest]
        finetune_alpha = "0.05"
        finetune_auto_k = "2"
        finetune_auto_floor = "0.01"
        finetune_bootstrap_resamples = "100"
        finetune_runtime_tuning = "false"
        finetune_tolerance = ["0.02", "f1=0.015"]
        """)
    pytester.makepyfile(NATIVE_TOML_SETTINGS)
    pytester.runpytest().assert_outcomes(passed=1)


@pytest.mark.skipif(pytest.version_tuple < (9,), reason="pytest 9 reads a native [tool.pytest] table")
@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "finetune_tolerance = 0.02",
            "*config option 'finetune_tolerance' expects a list*; in a [[]tool.pytest[]] table write a list of "
            'strings: finetune_tolerance = [[]"0.02"[]] or *',
        ),
        (
            "finetune_training_args = 3",
            "*'finetune_training_args' expects a list*; in a [[]tool.pytest[]] table write a list of strings: "
            'finetune_training_args = [[]"max_steps=50", *',
        ),
        ("finetune_model = 3", "*'finetune_model' expects a string*; in a [[]tool.pytest[]] table write a string: *"),
        ("finetune_alpha = true", "*'finetune_alpha' expects one of *; in a [[]tool.pytest[]] table write e.g. *"),
    ],
    ids=["tolerance", "training-args", "model", "alpha"],
)
def test_a_native_toml_value_of_another_type_says_how_to_write_it(
    pytester: pytest.Pytester, line: str, message: str
) -> None:
    pytester.makepyprojecttoml(f"[tool.pytest]\n{line}\n")
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    result.stderr.no_fnmatch_line("*Traceback*")


def test_classic_ini_files_keep_their_text_values(pytester: pytest.Pytester) -> None:
    """``[tool.pytest.ini_options]`` (and ini files) give text, read as before the native types."""
    pytester.makepyprojecttoml("""
        [tool.pytest.ini_options]
        finetune_alpha = 0.05
        finetune_auto_k = "2"
        finetune_auto_floor = 0.01
        finetune_bootstrap_resamples = 100
        finetune_runtime_tuning = false
        finetune_tolerance = "0.02 f1=0.015"
        """)
    pytester.makepyfile(NATIVE_TOML_SETTINGS)
    pytester.runpytest("-W", "error").assert_outcomes(passed=1)


def test_bad_json_for_a_dict_training_argument_is_a_usage_error_naming_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x():\n    pass\n")
    assert_usage_error(
        pytester.runpytest("--finetune-set", "lr_scheduler_kwargs={bad"),
        'command line: lr_scheduler_kwargs={bad is not valid: expected a JSON object such as {"num_cycles": 2} (*)',
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--finetune-tolerance", "F1=0.01"], "--finetune-tolerance: tolerance of 'F1': metric names are case-*"),
        (["-o", "finetune_tolerance=Accuracy=0.01"], "ini finetune_tolerance: tolerance of 'Accuracy': *"),
    ],
)
def test_a_tolerance_of_an_own_metric_in_another_case_is_a_usage_error(
    pytester: pytest.Pytester, args: list[str], message: str
) -> None:
    """``F1`` would gate a metric no run has: stop before any fine-tuning, naming the right name."""
    pytester.makepyfile("def test_x():\n    pass\n")
    assert_usage_error(pytester.runpytest(*args), f"{message}")
