"""``pytest_finetune.argschema``: the training arguments' fields described in pytest's cache, so
that a run checking a marker's training arguments without ``--finetune`` need not import
transformers, and checks them exactly as transformers' own types would."""

from __future__ import annotations

import json
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_finetune import argschema
from pytest_finetune.argschema import FieldTable, describe, rebuild
from pytest_finetune.errors import FinetuneError
from pytest_finetune.recipe import convert_value

#: Values a user may write for any field, as text (ini, command line) and as Python (marker).
TEXT_PROBES = ("1", "-3", "2e-5", "true", "no", "epoch", "steps", "none", "null", "None", '{"a": 1}', "[1, 2]", "x,y")
PYTHON_PROBES: tuple[Any, ...] = (1, 2.5, True, "epoch", "linear", None, {"a": 1}, [1], ("x",), object)


@pytest.fixture
def installed_table() -> Iterator[FieldTable]:
    """The fields as transformers gives them, put back into ``argschema`` after the test."""
    kept = argschema._table
    table = argschema._from_transformers(None)
    yield table
    argschema._table = kept


def outcome(key: str, value: Any, from_text: bool) -> tuple[str, Any]:
    try:
        return "value", convert_value(key, value, where="w", from_text=from_text)
    except FinetuneError as error:
        return "error", str(error)


def test_every_field_described_and_rebuilt_checks_values_as_transformers_types_do(
    installed_table: FieldTable,
) -> None:
    rebuilt = FieldTable(
        types={name: rebuild(json.loads(json.dumps(describe(hint)))) for name, hint in installed_table.types.items()},
        choices=installed_table.choices,
    )
    probes = [(text, True) for text in TEXT_PROBES] + [(value, False) for value in PYTHON_PROBES]
    differences = []
    for name in installed_table.types:
        for value, from_text in probes:
            argschema._table = installed_table
            expected = outcome(name, value, from_text)
            argschema._table = rebuilt
            got = outcome(name, value, from_text)
            if got != expected:
                differences.append((name, value, expected, got))
    assert differences == []
    assert {describe(hint) == describe(rebuild(describe(hint))) for hint in installed_table.types.values()} == {True}


def test_a_member_of_transformers_enum_is_taken_by_its_rebuilt_twin(installed_table: FieldTable) -> None:
    from transformers.trainer_utils import IntervalStrategy

    twin = rebuild(describe(installed_table.types["eval_strategy"]))
    argschema._table = FieldTable(types={**installed_table.types, "eval_strategy": twin}, choices={})
    assert convert_value("eval_strategy", IntervalStrategy.EPOCH, where="w") == "epoch"
    assert type(convert_value("eval_strategy", IntervalStrategy.EPOCH, where="w")) is str


@pytest.mark.parametrize(
    "described",
    ["complex", {"union": []}, {"enum": "E"}, {"class": 3}, {"literal": []}, {"union": ["str"], "x": 1}, 7, None],
)
def test_rebuild_refuses_what_describe_never_writes(described: Any) -> None:
    with pytest.raises(ValueError, match="not a described type"):
        rebuild(described)


def test_described_types_keep_their_names_for_messages(installed_table: FieldTable) -> None:
    hint = installed_table.types["eval_strategy"]
    rebuilt = rebuild(describe(hint))
    assert [arm.__name__ for arm in typing.get_args(rebuilt)] == [arm.__name__ for arm in typing.get_args(hint)]


CONFTEST = """
    import sys
    from pathlib import Path

    def pytest_collection_finish(session):
        Path("imported.txt").write_text(str("transformers" in sys.modules))
"""
TEST = """
    import pytest

    @pytest.mark.finetune(learning_rate=1e-4, eval_strategy="epoch")
    def test_quality(finetune_result):
        pass
"""


def entry_path(pytester: pytest.Pytester) -> Path:
    [entry] = (pytester.path / ".pytest_cache" / "v" / argschema.CACHE_KEY).iterdir()
    return entry


def run_plain(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, bool]:
    """A run without ``--finetune`` in a fresh interpreter, and whether collection imported transformers."""
    result = pytester.runpytest_subprocess(*args)
    return result, (pytester.path / "imported.txt").read_text() == "True"


def test_a_second_run_without_finetune_checks_marker_arguments_without_importing_transformers(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(TEST)
    result, imported = run_plain(pytester)
    result.assert_outcomes(skipped=1)
    assert imported
    described = json.loads(entry_path(pytester).read_text())["fields"]["eval_strategy"]["type"]
    assert [arm.get("enum", arm) if isinstance(arm, dict) else arm for arm in described["union"]] == [
        "IntervalStrategy",
        "str",
    ]
    result, imported = run_plain(pytester)
    result.assert_outcomes(skipped=1)
    assert not imported

    pytester.makepyfile(TEST.replace('eval_strategy="epoch"', 'eval_strategy="sometimes"'))
    result, imported = run_plain(pytester)
    assert not imported
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*eval_strategy='sometimes' is not valid: expected one of 'no', 'steps', 'epoch'*"])


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda entry: {**entry, "stamp": [*entry["stamp"][:-1], 0]}, id="another-installation"),
        pytest.param(lambda entry: {**entry, "fields": {"learning_rate": {"type": "complex"}}}, id="unknown-type"),
        pytest.param(lambda entry: {**entry, "fields": {"learning_rate": "float"}}, id="wrong-shape"),
        pytest.param(lambda entry: [entry], id="not-an-object"),
    ],
)
def test_an_entry_from_another_installation_or_spoilt_is_described_anew(pytester: pytest.Pytester, spoil: Any) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(TEST)
    run_plain(pytester)
    path = entry_path(pytester)
    written = json.loads(path.read_text())
    path.write_text(json.dumps(spoil(written)))
    result, imported = run_plain(pytester)
    result.assert_outcomes(skipped=1)
    assert imported
    assert json.loads(path.read_text()) == written


def test_a_truncated_entry_is_described_anew(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(TEST)
    run_plain(pytester)
    path = entry_path(pytester)
    written = path.read_text()
    path.write_text(written[: len(written) // 2])
    result, imported = run_plain(pytester)
    result.assert_outcomes(skipped=1)
    assert imported
    assert path.read_text() == written


def test_without_pytest_cache_each_run_imports_transformers_and_checks_alike(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(TEST.replace("learning_rate=1e-4", "learning_rat=1e-4"))
    for _ in range(2):
        result, imported = run_plain(pytester, "-p", "no:cacheprovider")
        assert imported
        assert result.ret == pytest.ExitCode.INTERRUPTED
        result.stdout.fnmatch_lines(["*@pytest.mark.finetune: unknown keyword 'learning_rat'; use a recipe field*"])
    assert not (pytester.path / ".pytest_cache").exists()
