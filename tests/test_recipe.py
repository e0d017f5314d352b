"""Unit tests of ``pytest_finetune.recipe`` (keyword conversion, layering, fingerprints) and ``compat``."""

from __future__ import annotations

import dataclasses
import enum
import re
import typing
from pathlib import Path
from typing import Any

import pytest
from helpers import assert_fails_clearly, assert_usage_error
from transformers import TrainingArguments
from transformers.trainer_utils import IntervalStrategy

from pytest_finetune import compat
from pytest_finetune.errors import FinetuneError
from pytest_finetune.recipe import (
    DEFAULT_TRAINING_ARGS,
    FAST_TRAINING_ARGS,
    HOUSEKEEPING_TRAINING_ARGS,
    SEED_TRAINING_ARGS,
    TASKS,
    Recipe,
    build_recipe,
    convert_value,
    looks_like_path,
)

#: The ``TrainingArguments`` fields of the installed transformers.
FIELDS = frozenset(field.name for field in dataclasses.fields(TrainingArguments) if field.init)
WHERE = "ini finetune_training_args"


def strategy_values(field: str) -> list[str]:
    """The allowed values of a strategy field, read from its enum annotation."""
    arms = typing.get_args(compat.training_arg_type(field))
    enums = [arm for arm in arms if isinstance(arm, type) and issubclass(arm, enum.Enum)]
    assert len(enums) == 1, f"{field} is not annotated with one enum"
    return [member.value for member in enums[0]]


@pytest.mark.parametrize(
    "key, text, expected",
    [
        ("max_steps", "3", 3),
        ("max_steps", " -1 ", -1),
        ("seed", "7", 7),
        ("learning_rate", "5e-5", 5e-5),
        ("num_train_epochs", "2", 2.0),
        ("fp16", "true", True),
        ("fp16", "False", False),
        ("trust_remote_code", "yes", True),
        ("eval_strategy", "epoch", "epoch"),
        ("eval_strategy", "no", "no"),
        ("lr_scheduler_kwargs", '{"num_cycles": 2, "power": 0.5}', {"num_cycles": 2, "power": 0.5}),
        ("lr_scheduler_kwargs", "null", None),
        ("torch_compile_backend", "None", None),  # Python's spelling, not the text "None"
        ("torch_compile_backend", "null", None),
        ("torch_compile_backend", "inductor", "inductor"),
        ("report_to", "none", ["none"]),  # "none" means no trackers here, not None (which means all)
        ("gradient_accumulation_steps", "4", 4),
        ("model", "prajjwal1/bert-tiny", "prajjwal1/bert-tiny"),
        ("seed", "0", 0),
        ("seed", "4294967295", 2**32 - 1),
        ("per_device_train_batch_size", "1", 1),
        ("gradient_accumulation_steps", "1", 1),
        ("warmup_ratio", "0", 0.0),
        ("warmup_steps", "0.1", 0.1),  # 5.x: a ratio of the training steps, under 4.x too
    ],
)
def test_convert_from_text(key: str, text: str, expected: Any) -> None:
    converted = convert_value(key, text, where=WHERE, from_text=True)
    assert converted == expected
    assert type(converted) is type(expected)


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("learning_rate", 1, 1.0),
        ("num_train_epochs", 3, 3.0),
        ("learning_rate", 2e-5, 2e-5),
        ("max_steps", 10, 10),
        ("seed", 0, 0),
        ("fp16", False, False),
        ("eval_strategy", "steps", "steps"),
        ("lr_scheduler_kwargs", {"num_cycles": 2}, {"num_cycles": 2}),
        ("data", "./data/mrpc", "./data/mrpc"),
    ],
)
def test_convert_python_value(key: str, value: Any, expected: Any) -> None:
    converted = convert_value(key, value, where="marker finetune", from_text=False)
    assert converted == expected
    assert type(converted) is type(expected)


@pytest.mark.parametrize(
    "key, value, from_text, reason",
    [
        ("max_steps", "3.0", True, "expected int (a whole number such as 50)"),
        ("max_steps", "three", True, "expected int (a whole number such as 50)"),
        ("learning_rate", "fast", True, "expected float (a number such as 2e-5)"),
        ("fp16", "maybe", True, "expected true or false"),
        ("learning_rate", "5e-5", False, "expected float, got str"),
        ("learning_rate", True, False, "expected float, got bool"),
        ("max_steps", True, False, "expected int, got bool"),
        ("max_steps", 3.0, False, "expected int, got float"),
        ("seed", "42", False, "expected int, got str"),
        ("fp16", "true", False, "expected bool, got str"),
        ("trust_remote_code", 1, False, "expected bool, got int"),
        ("model", 3, False, "expected str, got int"),
        ("learning_rate", "nan", True, "expected a finite number, got nan"),
        ("learning_rate", float("nan"), False, "expected a finite number, got nan"),
        ("num_train_epochs", "inf", True, "expected a finite number, got inf"),
        ("num_train_epochs", "1e400", True, "expected a finite number, got inf"),
        ("weight_decay", float("-inf"), False, "expected a finite number, got -inf"),
        ("seed", "-1", True, "expected a seed from 0 to 2**32 - 1 (numpy's range)"),
        ("seed", 2**32, False, "expected a seed from 0 to 2**32 - 1 (numpy's range)"),
        ("per_device_train_batch_size", "0", True, "expected a batch size of 1 or more"),
        ("per_device_eval_batch_size", 0, False, "expected a batch size of 1 or more"),
        ("per_device_train_batch_size", -8, False, "expected a batch size of 1 or more"),
        ("gradient_accumulation_steps", "0", True, "expected 1 or more steps"),
        ("warmup_ratio", "1", True, "expected a share of the training steps, from 0 up to (not including) 1"),
        ("warmup_ratio", -0.1, False, "expected a share of the training steps, from 0 up to (not including) 1"),
    ],
)
def test_convert_rejects_wrong_values(key: str, value: Any, from_text: bool, reason: str) -> None:
    with pytest.raises(FinetuneError, match=rf"^{re.escape(WHERE)}: {key}=.* is not valid: .*{re.escape(reason)}"):
        convert_value(key, value, where=WHERE, from_text=from_text)


@pytest.mark.parametrize("from_text", [True, False], ids=["text", "python"])
@pytest.mark.parametrize(
    "key, field",
    [
        ("eval_strategy", "eval_strategy"),
        ("logging_strategy", "logging_strategy"),
        ("save_strategy", "save_strategy"),
        ("evaluation_strategy", "eval_strategy"),  # the legacy spelling checks the same values
    ],
)
def test_invalid_strategy_lists_allowed_values(key: str, field: str, from_text: bool) -> None:
    with pytest.raises(FinetuneError, match=rf"^{re.escape(WHERE)}: {key}=.*epoc.* is not valid") as raised:
        convert_value(key, "epoc", where=WHERE, from_text=from_text)
    for allowed in strategy_values(field):
        assert repr(allowed) in str(raised.value)


@pytest.mark.parametrize("key", ["eval_strategy", "evaluation_strategy"])
def test_strategy_enum_member_gives_its_value(key: str) -> None:
    assert convert_value(key, IntervalStrategy.EPOCH, where=WHERE) == "epoch"


def test_invalid_strategy_message_does_not_offer_any_string() -> None:
    """'epoc' is a str: a message saying "... or str" contradicts the rejection."""
    with pytest.raises(FinetuneError) as raised:
        convert_value("eval_strategy", "epoc", where=WHERE, from_text=True)
    assert not re.search(r"\bor str\b", str(raised.value)), str(raised.value)


@pytest.mark.parametrize("from_text, value", [(True, "none"), (False, None)], ids=["text", "python"])
def test_a_strategy_that_takes_no_none_does_not_offer_none(from_text: bool, value: str | None) -> None:
    """eval_strategy is not optional: a message offering "... or None" would contradict the rejection."""
    with pytest.raises(FinetuneError) as raised:
        convert_value("eval_strategy", value, where=WHERE, from_text=from_text)
    message = str(raised.value)
    assert message.startswith(f"{WHERE}: eval_strategy={value} is not valid: expected one of 'no', "), message
    assert not message.endswith("or None"), message


def test_output_dir_is_refused_with_the_hook_to_use() -> None:
    with pytest.raises(FinetuneError, match=r"^cli: output_dir is chosen by pytest-finetune.*adjust_training_args"):
        convert_value("output_dir", "/tmp/run", where="cli", from_text=True)


@pytest.mark.parametrize("from_text", [True, False], ids=["text", "python"])
@pytest.mark.parametrize("key", ["learning_rat", "epochs", "output_dir_x"])
def test_unknown_keyword_is_named_with_its_source(key: str, from_text: bool) -> None:
    where = "marker finetune of test_model"
    with pytest.raises(FinetuneError, match=rf"^{re.escape(where)}: unknown keyword {re.escape(repr(key))}"):
        convert_value(key, "1", where=where, from_text=from_text)


def test_every_field_and_legacy_spelling_is_accepted() -> None:
    assert compat.accepted_names() >= {*FIELDS, "evaluation_strategy", "group_by_length", "no_cuda", "warmup_ratio"}


@pytest.mark.parametrize("text, expected", [("true", True), ("off", False)])
def test_legacy_bool_spelling_converts_from_text(text: str, expected: bool) -> None:
    assert convert_value("group_by_length", text, where=WHERE, from_text=True) is expected


def test_build_recipe_without_layers_is_the_default_recipe() -> None:
    recipe = build_recipe([])
    assert recipe == Recipe()
    assert dict(recipe.training_args) == SEED_TRAINING_ARGS | FAST_TRAINING_ARGS | HOUSEKEEPING_TRAINING_ARGS
    assert dict(recipe.training_args) == dict(DEFAULT_TRAINING_ARGS)


def test_the_fast_defaults_only_change_how_batches_are_drawn() -> None:
    """Length-grouped batches are the one fast default in the recipe; a layer turns them off."""
    assert not set(FAST_TRAINING_ARGS) & set(SEED_TRAINING_ARGS)  # no hyperparameter of the seed changes
    seed_order = build_recipe([("ini", {"group_by_length": False})])
    assert seed_order.training_args["train_sampling_strategy"] == "random"
    assert seed_order.fingerprint != build_recipe([]).fingerprint


def test_later_layers_win() -> None:
    recipe = build_recipe(
        [
            ("ini", {"learning_rate": 1e-4, "model": "ini-model", "max_steps": 8, "seed": 1}),
            ("env", {"learning_rate": 3e-5, "data": "./env-data"}),
            ("cli", {"model": "cli-model", "seed": 2}),
            ("marker", {"learning_rate": 2e-5}),
        ]
    )
    assert (recipe.model, recipe.data, recipe.seed) == ("cli-model", "./env-data", 2)
    assert recipe.training_args["learning_rate"] == 2e-5
    assert recipe.training_args["max_steps"] == 8  # untouched by later layers
    assert recipe.training_args["per_device_train_batch_size"] == SEED_TRAINING_ARGS["per_device_train_batch_size"]


def test_a_later_legacy_spelling_overrides_the_new_one() -> None:
    recipe = build_recipe([("ini", {"eval_strategy": "no"}), ("cli", {"evaluation_strategy": "steps"})])
    assert recipe.training_args["eval_strategy"] == "steps"
    assert "evaluation_strategy" not in recipe.training_args


@pytest.mark.parametrize("from_text", [True, False], ids=["text", "python"])
@pytest.mark.parametrize("task", ["imdb", "MRPC", ""])
def test_unknown_task_lists_the_known_tasks(task: str, from_text: bool) -> None:
    known = ", ".join(sorted(TASKS))
    message = rf"^cli: unknown task {re.escape(repr(task))}; known tasks: {known}; or declare a task of your own"
    with pytest.raises(FinetuneError, match=message):
        build_recipe([("cli", {"task": convert_value("task", task, where="cli", from_text=from_text)})])


@pytest.mark.parametrize("from_text", [True, False], ids=["text", "python"])
def test_seed_goes_to_the_recipe(from_text: bool) -> None:
    value = convert_value("seed", "7" if from_text else 7, where=WHERE, from_text=from_text)
    recipe = build_recipe([("cli", {"seed": value})])
    assert recipe.seed == 7
    assert "seed" not in recipe.training_args


@pytest.mark.parametrize(
    "given, modern",
    [
        ({"group_by_length": True}, {"train_sampling_strategy": "group_by_length"}),
        ({"group_by_length": False}, {"train_sampling_strategy": "random"}),
        ({"train_sampling_strategy": "group_by_length"}, {"train_sampling_strategy": "group_by_length"}),
        ({"evaluation_strategy": "steps"}, {"eval_strategy": "steps"}),
        ({"no_cuda": True}, {"use_cpu": True}),
        ({"warmup_ratio": 0.1}, {"warmup_steps": 0.1}),
        ({"warmup_steps": 0.1}, {"warmup_steps": 0.1}),
    ],
)
def test_a_recipe_keeps_5x_spelling_and_training_arguments_get_the_installed_one(
    tmp_path: Path, given: dict[str, Any], modern: dict[str, Any]
) -> None:
    """Either version's spelling gives the same recipe (so the same baseline) under 4.x and 5.x."""
    assert compat.modern_training_args(given) == modern
    recipe = build_recipe([("marker", given)])
    assert {key: recipe.training_args[key] for key in modern} == modern
    installed = compat.installed_training_args(dict(recipe.training_args))
    assert set(installed) <= FIELDS
    arguments = TrainingArguments(output_dir=str(tmp_path), **installed)  # the installed version takes them
    for key, value in compat.installed_training_args(modern).items():
        assert getattr(arguments, key) == value


@pytest.mark.parametrize(
    "key, value, steps",
    [("warmup_ratio", 0.25, 10), ("warmup_steps", 0.25, 10), ("warmup_steps", 3, 3), ("warmup_steps", 0, 0)],
)
def test_warmup_means_the_same_under_4x_and_5x(tmp_path: Path, key: str, value: float, steps: int) -> None:
    """5.x reads a warmup_steps below 1 as 4.x's warmup_ratio: either spelling gives the same warmup (of 40 steps)."""
    recipe = build_recipe([("marker", {key: convert_value(key, value, where="marker")})])
    assert recipe.training_args["warmup_steps"] == value
    arguments = TrainingArguments(output_dir=str(tmp_path), **compat.installed_training_args({"warmup_steps": value}))
    assert arguments.get_warmup_steps(40) == steps


def test_training_arg_type_of_legacy_and_current_names() -> None:
    assert compat.training_arg_type("max_steps") is int
    assert compat.training_arg_type("group_by_length") is bool
    assert compat.training_arg_type("warmup_steps") is float  # 5.x's type, under 4.x too
    assert set(strategy_values("eval_strategy")) >= {"no", "steps", "epoch"}


def test_fingerprint_is_stable_for_equal_recipes() -> None:
    layers = [("ini", {"max_steps": 4, "learning_rate": 1e-4}), ("cli", {"seed": 3, "model": "m"})]
    reordered = [("ini", {"learning_rate": 1e-4, "max_steps": 4}), ("cli", {"model": "m", "seed": 3})]
    first, second = build_recipe(layers), build_recipe(reordered)
    assert first == second
    assert hash(first) == hash(second)
    assert first.fingerprint == second.fingerprint
    assert re.fullmatch(r"[0-9a-f]{16}", first.fingerprint)
    assert Recipe().fingerprint == build_recipe([]).fingerprint


@pytest.mark.parametrize(
    "change",
    [
        {"learning_rate": 3e-5},
        {"max_steps": 4},
        {"eval_strategy": "no"},
        {"per_device_train_batch_size": 16},
        {"seed": 1},
        {"model": "other"},
        {"data": "./data"},
        {"trust_remote_code": True},
    ],
)
def test_fingerprint_changes_with_any_setting(change: dict[str, Any]) -> None:
    changed = build_recipe([("ini", {"max_steps": 2}), ("cli", change)])
    assert changed.fingerprint != build_recipe([("ini", {"max_steps": 2})]).fingerprint


def test_converted_int_for_a_float_field_keeps_the_fingerprint() -> None:
    epochs = convert_value("num_train_epochs", int(SEED_TRAINING_ARGS["num_train_epochs"]), where="marker")
    assert build_recipe([("marker", {"num_train_epochs": epochs})]).fingerprint == build_recipe([]).fingerprint


@pytest.mark.parametrize("field, value", [("seed", 1), ("model", "other"), ("training_args", {}), ("task", "sst2")])
def test_recipe_is_frozen(field: str, value: Any) -> None:
    recipe = build_recipe([])
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(recipe, field, value)


def test_training_args_are_read_only() -> None:
    recipe = build_recipe([])
    with pytest.raises(TypeError):
        recipe.training_args["learning_rate"] = 1.0  # type: ignore[index]
    assert recipe.training_args["learning_rate"] == SEED_TRAINING_ARGS["learning_rate"]


@pytest.mark.parametrize("data, source", [(None, TASKS["mrpc"].hub_dataset), ("./local/mrpc", "./local/mrpc")])
def test_data_source(data: str | None, source: str) -> None:
    recipe = build_recipe([("cli", {"data": data})])
    assert recipe.data_source == source
    assert f"data={source}" in recipe.describe()


@pytest.mark.parametrize(
    "source, is_path",
    [
        ("./data", True),
        ("../data", True),
        ("/abs/data", True),
        ("~/data", True),
        ("a/b/c", True),
        ("C:\\data", True),
        ("nyu-mll/glue", False),
        ("glue", False),
    ],
)
def test_looks_like_path(source: str, is_path: bool) -> None:
    assert looks_like_path(source) is is_path


@pytest.mark.parametrize(
    "returned, type_name",
    [("[('max_steps', 2)]", "list"), ("'max_steps=2'", "str"), ("2", "int")],
    ids=["pairs", "text", "number"],
)
def test_an_adjust_recipe_hook_returning_no_dict_fails_naming_the_hook(
    finetune_project: pytest.Pytester, returned: str, type_name: str
) -> None:
    finetune_project.makeconftest(f"def pytest_finetune_adjust_recipe(recipe, item):\n    return {returned}\n")
    finetune_project.makepyfile("def test_x(finetune_recipe):\n    pass\n")
    result = finetune_project.runpytest()
    shown = returned.replace("[", "[[]")  # fnmatch: "[" opens a character class
    assert_fails_clearly(
        result,
        "*ERROR at setup of test_x*",
        f"*test_x: pytest_finetune_adjust_recipe hook returned {type_name} {shown}; return a dict of keyword "
        "overrides, e.g. {'max_steps': 50}, or None to leave the recipe",
    )


@pytest.mark.parametrize(
    "text", ["{bad", "[1]", '"x"', "[" * 100_000, " {'single': 1}"], ids=["bad", "list", "str", "deep", "quotes"]
)
def test_text_like_json_for_a_dict_field_must_be_a_json_object(text: str) -> None:
    """``dict | str`` fields (lr_scheduler_kwargs): text that opens like JSON is JSON for the dict."""
    expected = 'expected a JSON object such as {"num_cycles": 2}'
    if text.lstrip().startswith(("{", "[")):
        with pytest.raises(FinetuneError, match=rf"^{re.escape(WHERE)}: lr_scheduler_kwargs=.* is not valid: "):
            convert_value("lr_scheduler_kwargs", text, where=WHERE, from_text=True)
        with pytest.raises(FinetuneError, match=re.escape(expected)):
            convert_value("lr_scheduler_kwargs", text, where=WHERE, from_text=True)
    else:  # other text is the field's str arm, as transformers takes it
        assert convert_value("lr_scheduler_kwargs", text, where=WHERE, from_text=True) == text


def test_text_json_for_a_dict_field_becomes_the_dict() -> None:
    assert convert_value("lr_scheduler_kwargs", '{"num_cycles": 2}', where=WHERE, from_text=True) == {"num_cycles": 2}
    assert convert_value("lr_scheduler_kwargs", "null", where=WHERE, from_text=True) is None


@pytest.mark.parametrize(
    "key, text, expected",
    [
        ("max_steps", "50.0", "expected int (a whole number such as 50)"),
        ("max_steps", "ten", "expected int (a whole number such as 50)"),
        ("learning_rate", "fast", "expected float (a number such as 2e-5)"),
    ],
)
def test_text_that_is_not_a_number_says_what_was_expected(key: str, text: str, expected: str) -> None:
    """Not Python's ``invalid literal for int() with base 10``: the marker's words, with an example."""
    with pytest.raises(FinetuneError, match=rf"^{re.escape(f'{WHERE}: {key}={text} is not valid: {expected}')}$"):
        convert_value(key, text, where=WHERE, from_text=True)


#: transformers 5's train_sampling_strategy values, which a recipe may name under 4.x too.
SAMPLING_STRATEGIES = "'random', 'sequential', 'group_by_length', 'batch_rebalance'"


@pytest.mark.parametrize("from_text", [True, False], ids=["text", "python"])
@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("train_sampling_strategy", "bogus", f"expected one of {SAMPLING_STRATEGIES}"),
        ("train_sampling_strategy", "Random", f"expected one of {SAMPLING_STRATEGIES}"),
        ("log_level", "loud", "expected one of 'detail', 'debug', "),
    ],
)
def test_a_text_argument_transformers_lists_the_values_of_takes_one_of_them(
    key: str, value: str, expected: str, from_text: bool
) -> None:
    """transformers 5 types train_sampling_strategy as any str and draws random batches for a value it
    does not know: the values its field lists are the only ones a recipe takes, under 4.x too."""
    message = rf"^{re.escape(WHERE)}: {key}=.*{value}.* is not valid: {re.escape(expected)}"
    with pytest.raises(FinetuneError, match=message):
        convert_value(key, value, where=WHERE, from_text=from_text)


@pytest.mark.parametrize("value", ["random", "sequential", "group_by_length", "batch_rebalance"])
def test_every_sampling_strategy_of_transformers_5_is_taken(value: str) -> None:
    """Under 4.x, the ones it cannot run are refused when its training arguments are built (naming 5)."""
    assert convert_value("train_sampling_strategy", value, where=WHERE, from_text=True) == value


def test_a_misspelt_sampling_strategy_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x():\n    pass\n")
    assert_usage_error(
        pytester.runpytest("--finetune", "--finetune-set", "train_sampling_strategy=bogus"),
        f"command line: train_sampling_strategy=bogus is not valid: expected one of {SAMPLING_STRATEGIES}",
    )
