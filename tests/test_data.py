"""Unit tests of ``pytest_finetune.data.load_raw_dataset``: every source, one shape, clear errors."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import datasets
import huggingface_hub
import pandas as pd
import pytest
from helpers import QUALITY_TEST, Row, make_rows, write_glue_tsv

from pytest_finetune.data import load_raw_dataset
from pytest_finetune.errors import FinetuneError
from pytest_finetune.recipe import TASKS

MRPC = TASKS["mrpc"]
UTF8_BOM = b"\xef\xbb\xbf"


def records(rows: Sequence[Row], with_idx: bool = False) -> list[dict[str, object]]:
    """``rows`` as dicts with the loader's column names, ``idx`` counting from 100 when asked."""
    return [
        {"sentence1": sentence1, "sentence2": sentence2, "label": label} | ({"idx": 100 + index} if with_idx else {})
        for index, (label, sentence1, sentence2) in enumerate(rows)
    ]


def write_table(path: Path, table: list[dict[str, object]]) -> Path:
    """Write ``table`` in the format named by the suffix of ``path`` (json text as written, not \\u escapes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        pd.DataFrame(table).to_csv(path, index=False)
    elif path.suffix == ".json":  # one JSON array of objects
        path.write_text(json.dumps(table, ensure_ascii=False), encoding="utf-8")
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in table), encoding="utf-8")
    else:
        pd.DataFrame(table).to_parquet(path)
    return path


def write_folder(folder: Path, suffix: str, train: Sequence[Row], validation: Sequence[Row]) -> Path:
    """Write ``train`` and ``validation`` as train and dev files of ``suffix`` (``.tsv``: a GLUE TSV folder);
    return the train file."""
    if suffix == ".tsv":
        write_glue_tsv(folder / "dev.tsv", validation)
        return write_glue_tsv(folder / "train.tsv", train)
    write_table(folder / f"dev{suffix}", records(validation))
    return write_table(folder / f"train{suffix}", records(train))


def assert_pairs(dataset: datasets.Dataset, rows: Sequence[Row]) -> None:
    """``dataset`` holds exactly ``rows``, in order, with nothing merged or split."""
    assert dataset.num_rows == len(rows)
    assert list(zip(dataset["label"], dataset["sentence1"], dataset["sentence2"], strict=True)) == list(rows)


def assert_shape(raw: datasets.DatasetDict) -> None:
    """The loader's contract: a DatasetDict of train and validation with the four columns."""
    assert isinstance(raw, datasets.DatasetDict)
    assert list(raw) == ["train", "validation"]
    for dataset in raw.values():
        assert dataset.column_names == list(MRPC.columns)


@pytest.mark.parametrize("bom", [True, False], ids=["bom", "no-bom"])
def test_glue_tsv_folder(tmp_path: Path, bom: bool) -> None:
    train = make_rows(30, seed=3)
    dev = make_rows(12, seed=4)
    # A sentence opening an unbalanced quote, closed only rows later: with quoting on,
    # a csv parser swallows the rows in between into one field.
    train[2] = (1, '"The cat sat on the mat', train[2][2])
    train[9] = (0, train[9][1], 'he said" today')
    dev[0] = (0, dev[0][1], '"shares rose')
    folder = tmp_path / "glue"
    for name, rows in (("train.tsv", train), ("dev.tsv", dev)):
        file = write_glue_tsv(folder / name, rows)
        if bom:
            file.write_bytes(UTF8_BOM + file.read_bytes())
    write_glue_tsv(folder / "test.tsv", [("x", "y")], header=["index", "other"])  # ignored

    raw = load_raw_dataset(str(folder), MRPC)

    assert_shape(raw)
    assert_pairs(raw["train"], train)
    assert_pairs(raw["validation"], dev)
    assert raw["train"]["idx"] == list(range(len(train)))


def test_glue_folder_fixture_loads(glue_folder: Callable[..., Path]) -> None:
    rows = make_rows(7, seed=9)
    raw = load_raw_dataset(str(glue_folder(train_rows=rows)), MRPC)
    assert_shape(raw)
    assert_pairs(raw["train"], rows)
    assert raw["validation"].num_rows == 24


@pytest.mark.parametrize("suffix", [".csv", ".json", ".jsonl", ".parquet"])
@pytest.mark.parametrize("validation_stem", ["validation", "dev"])
@pytest.mark.parametrize("with_idx", [False, True], ids=["idx-added", "idx-kept"])
def test_file_folder(tmp_path: Path, suffix: str, validation_stem: str, with_idx: bool) -> None:
    train = make_rows(20, seed=5)
    validation = make_rows(9, seed=6)
    write_table(tmp_path / f"train{suffix}", records(train, with_idx))
    write_table(tmp_path / f"{validation_stem}{suffix}", records(validation, with_idx))

    raw = load_raw_dataset(str(tmp_path), MRPC)

    assert_shape(raw)
    assert_pairs(raw["train"], train)
    assert_pairs(raw["validation"], validation)
    first_idx = 100 if with_idx else 0
    assert raw["validation"]["idx"] == list(range(first_idx, first_idx + len(validation)))


@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".jsonl"])
@pytest.mark.parametrize(
    "rows",
    [
        pytest.param([(1, "NA", "null"), (0, "N/A", "nan"), (1, "None", "NULL")], id="missing-value-words"),
        pytest.param([(1, "1", "2"), (0, "3.5", "007")], id="number-like"),
    ],
)
def test_sentences_stay_text(tmp_path: Path, suffix: str, rows: list[Row]) -> None:
    """A sentence is text even when pandas would read it as a missing value or a number."""
    write_folder(tmp_path, suffix, rows, rows)
    assert_pairs(load_raw_dataset(str(tmp_path), MRPC)["train"], rows)


@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".jsonl"])
def test_a_sentence_over_python_csvs_field_limit_is_read(tmp_path: Path, suffix: str) -> None:
    """A 200 KB sentence (a long document) is read whole, past the 128 KiB field limit of Python's csv module,
    which is as it was afterwards (the limit is the whole process's)."""
    limit = csv.field_size_limit()
    train = make_rows(6)
    train[3] = (1, "word " * 40_000, train[3][2])
    write_folder(tmp_path, suffix, train, make_rows(4))
    assert_pairs(load_raw_dataset(str(tmp_path), MRPC)["train"], train)
    assert csv.field_size_limit() == limit


def test_extra_columns_are_dropped(tmp_path: Path) -> None:
    rows = make_rows(5)
    for stem in ("train", "validation"):
        write_table(tmp_path / f"{stem}.jsonl", [record | {"source": "web"} for record in records(rows)])
    assert_shape(load_raw_dataset(str(tmp_path), MRPC))


def count_words(batch: dict[str, list[str]]) -> dict[str, list[int]]:
    """A stand-in for tokenization: ``datasets`` fingerprints a map from its input's fingerprint and this function."""
    return {"words": [len(sentence.split()) for sentence in batch["sentence1"]]}


def fingerprints(folder: Path) -> dict[str, str]:
    """The fingerprints of the splits loaded from ``folder``, as loaded and after a ``map``."""
    raw = load_raw_dataset(str(folder), MRPC)
    mapped = raw.map(count_words, batched=True)
    return {
        f"{stage} {split}": data[split]._fingerprint
        for stage, data in (("raw", raw), ("map", mapped))
        for split in data
    }


def touch(folder: Path) -> None:
    """Move the modification time of every file in ``folder`` an hour on, as a fresh checkout does."""
    for file in folder.iterdir():
        later = file.stat().st_mtime_ns + 3600 * 10**9
        os.utime(file, ns=(later, later))


@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".jsonl", ".parquet"])
def test_local_fingerprints_follow_the_content_not_the_file_times(tmp_path: Path, suffix: str) -> None:
    """``datasets`` hashes the files' modification times; the loader replaces that with the content."""
    train = make_rows(10, seed=7)
    write_folder(tmp_path, suffix, train, make_rows(5, seed=8))
    loaded = fingerprints(tmp_path)
    touch(tmp_path)
    assert fingerprints(tmp_path) == loaded
    train[3] = (1 - train[3][0], train[3][1], train[3][2])
    write_folder(tmp_path, suffix, train, make_rows(5, seed=8))
    changed = fingerprints(tmp_path)
    assert all(changed[f"{stage} train"] != loaded[f"{stage} train"] for stage in ("raw", "map"))


def test_touched_data_is_served_from_the_result_cache(
    finetune_project: pytest.Pytester, glue_folder: Callable[..., Path]
) -> None:
    """A CI job's cached result folder is served after a fresh checkout, which gives the data new modification times."""
    finetune_project.makepyfile(test_quality=QUALITY_TEST)
    finetune_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)
    touch(glue_folder())  # the project's data folder, written again: the same bytes, later modification times
    result = finetune_project.runpytest("--finetune")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["test_quality.py::test_quality*passed*cached"])


def test_real_mrpc_folder(real_mrpc_dir: Path) -> None:
    raw = load_raw_dataset(str(real_mrpc_dir), MRPC)
    assert_shape(raw)
    assert (raw["train"].num_rows, raw["validation"].num_rows) == (3668, 408)
    assert (sum(raw["train"]["label"]), sum(raw["validation"]["label"])) == (2474, 279)


# Bad inputs: each builder writes its case under tmp_path and returns (data source, expected message regex).
BadCase = Callable[[Path], tuple[str, str]]


def _glue_without(name: str) -> BadCase:
    def build(tmp_path: Path) -> tuple[str, str]:
        other = "dev.tsv" if name == "train.tsv" else "train.tsv"
        write_glue_tsv(tmp_path / other, make_rows(4))
        return str(tmp_path), f"{re.escape(repr(str(tmp_path)))} has no {re.escape(name)}"

    return build


def _tsv_bad_row(name: str, position: int, row: tuple[object, ...]) -> BadCase:
    def build(tmp_path: Path) -> tuple[str, str]:
        rows: list[Sequence[object]] = list(make_rows(6))
        rows[position] = row
        for file_name in ("train.tsv", "dev.tsv"):
            write_glue_tsv(tmp_path / file_name, rows if file_name == name else make_rows(4))
        file = re.escape(str(tmp_path / name))
        return str(tmp_path), rf"{file}, line {position + 2}: {len(row)} tab-separated fields, expected 5"

    return build


def _tsv_wrong_header(tmp_path: Path) -> tuple[str, str]:
    write_glue_tsv(tmp_path / "train.tsv", make_rows(4), header=["label", "#1 ID", "#2 ID", "#1 String", "#2 String"])
    write_glue_tsv(tmp_path / "dev.tsv", make_rows(4))
    return str(tmp_path), rf"{re.escape(str(tmp_path / 'train.tsv'))}: header is \['label'"


def _tsv_label(label: int, split: str) -> BadCase:
    def build(tmp_path: Path) -> tuple[str, str]:
        rows = make_rows(6)
        rows[1] = (label, rows[1][1], rows[1][2])
        write_glue_tsv(tmp_path / "train.tsv", rows if split == "train" else make_rows(4))
        write_glue_tsv(tmp_path / "dev.tsv", rows if split == "validation" else make_rows(4))
        return str(tmp_path), rf"{re.escape(str(tmp_path))}, {split} split: labels \[{label}\] are outside \{{0, 1\}}"

    return build


def _tsv_bad_label(label: str, problem: str) -> BadCase:
    def build(tmp_path: Path) -> tuple[str, str]:
        rows: list[Sequence[object]] = list(make_rows(4))
        rows[2] = (label, rows[2][1], rows[2][2])
        write_glue_tsv(tmp_path / "train.tsv", rows)
        write_glue_tsv(tmp_path / "dev.tsv", make_rows(4))
        return str(tmp_path), rf"{re.escape(str(tmp_path / 'train.tsv'))}, line 4: label '{label}' {problem}"

    return build


def _encoded(suffix: str, encoding: str, problem: str) -> BadCase:
    """A train file whose fifth row says café, saved in ``encoding``."""

    def build(tmp_path: Path) -> tuple[str, str]:
        rows = make_rows(6)
        rows[4] = (rows[4][0], "café au lait", rows[4][2])
        file = write_folder(tmp_path, suffix, rows, make_rows(4))
        file.write_bytes(file.read_text(encoding="utf-8").encode(encoding))
        return str(tmp_path), re.escape(str(file)) + problem

    return build


MISSING = object()  # a key a row leaves out


def _bad_value(suffix: str, column: str, value: object, problem: str) -> BadCase:
    """A train file whose 7th row has ``value`` in ``column`` (``MISSING``: no such key)."""

    def build(tmp_path: Path) -> tuple[str, str]:
        table = records(make_rows(8))
        table[6] = {key: v for key, v in (table[6] | {column: value}).items() if v is not MISSING}
        file = write_table(tmp_path / f"train{suffix}", table)
        write_table(tmp_path / f"dev{suffix}", records(make_rows(4)))
        return str(tmp_path), rf"{re.escape(str(file))}, row 7: {column} {problem}"

    return build


def _json_columns(tmp_path: Path) -> tuple[str, str]:
    """A .json file holding one object of column lists instead of an array of rows."""
    table = records(make_rows(4))
    file = tmp_path / "train.json"
    file.write_text(json.dumps({column: [record[column] for record in table] for column in table[0]}))
    write_table(tmp_path / "dev.json", table)
    return str(tmp_path), rf"{re.escape(str(file))}, row 1: sentence1 is \[.*, not text; .*not an object of columns"


def _jsonl_text_among_labels(tmp_path: Path) -> tuple[str, str]:
    write_table(
        tmp_path / "train.jsonl", records(make_rows(6)) + [{"sentence1": "a", "sentence2": "b", "label": "yes"}]
    )
    write_table(tmp_path / "dev.jsonl", records(make_rows(4)))
    return str(tmp_path), rf"{re.escape(str(tmp_path))}, train split: labels are \w+ values, not integers; write them"


def _written(name: str, text: str, cause: str) -> BadCase:
    """A train file written as ``text`` that the reader refuses, for ``cause`` (a regex of the root cause)."""

    def build(tmp_path: Path) -> tuple[str, str]:
        file = tmp_path / name
        file.write_text(text)
        write_table(tmp_path / f"dev{file.suffix}", records(make_rows(4)))
        return str(tmp_path), rf"could not read {re.escape(repr(str(file)))} \({cause}"

    return build


def _csv(lines: Sequence[str]) -> str:
    """A csv file of good rows, ``lines`` among them."""
    good = [f"{s1},{s2},{label}" for label, s1, s2 in make_rows(12)]
    return "\n".join(["sentence1,sentence2,label", *good[:6], *lines, *good[6:]]) + "\n"


def _parquet_bytes_sentence(tmp_path: Path) -> tuple[str, str]:
    """A parquet sentence column of bytes that are not UTF-8 text."""
    table = [record | {"sentence1": b"\xff\xfe"} for record in records(make_rows(4))]
    file = write_table(tmp_path / "train.parquet", table)
    write_table(tmp_path / "dev.parquet", records(make_rows(4)))
    return str(tmp_path), rf"{re.escape(str(file))}: could not read sentence1 as text \(.+\); write each sentence"


def _jsonl_float_labels(tmp_path: Path) -> tuple[str, str]:
    write_table(tmp_path / "train.jsonl", [record | {"label": 1.0} for record in records(make_rows(4))])
    write_table(tmp_path / "dev.jsonl", records(make_rows(4)))
    return (
        str(tmp_path),
        rf"{re.escape(str(tmp_path))}, train split: labels are float64, not integers; write them as 0 and 1",
    )


def _jsonl_label(tmp_path: Path) -> tuple[str, str]:
    write_table(tmp_path / "train.jsonl", records(make_rows(6)))
    write_table(tmp_path / "dev.jsonl", records([(2, "a b", "c d"), (0, "e", "f")]))
    return str(tmp_path), rf"{re.escape(str(tmp_path))}, validation split: labels \[2\] are outside"


def _csv_without(column: str, split_stems: tuple[str, ...]) -> BadCase:
    def build(tmp_path: Path) -> tuple[str, str]:
        for stem in ("train", "dev"):
            table = records(make_rows(5))
            if stem in split_stems:
                table = [{key: value for key, value in record.items() if key != column} for record in table]
            write_table(tmp_path / f"{stem}.csv", table)
        return str(tmp_path), rf"{re.escape(str(tmp_path))}, train split: missing column\(s\) {column} "

    return build


def _relative_missing(tmp_path: Path) -> tuple[str, str]:
    return "./nope", r"data folder '\./nope' does not exist"


def _absolute_missing(tmp_path: Path) -> tuple[str, str]:
    missing = tmp_path / "does" / "not" / "exist"
    return str(missing), f"data folder {re.escape(repr(str(missing)))} does not exist"


def _a_file(tmp_path: Path) -> tuple[str, str]:
    file = write_table(tmp_path / "train.csv", records(make_rows(3)))
    return str(file), f"data {re.escape(repr(str(file)))} is a file"


def _folder_with(names: tuple[str, ...], problem: str) -> BadCase:
    def build(tmp_path: Path) -> tuple[str, str]:
        for name in names:
            write_table(tmp_path / name, records(make_rows(3)))
        return str(tmp_path), f"data folder {re.escape(repr(str(tmp_path)))} {problem}"

    return build


def _unreadable(tmp_path: Path) -> tuple[str, str]:
    write_table(tmp_path / "validation.parquet", records(make_rows(3)))
    (tmp_path / "train.parquet").write_bytes(b"not a parquet file")
    return str(tmp_path), f"could not read {re.escape(repr(str(tmp_path / 'train.parquet')))}"


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(_glue_without("dev.tsv"), id="glue-no-dev"),
        pytest.param(_glue_without("train.tsv"), id="glue-no-train"),
        pytest.param(_tsv_bad_row("train.tsv", 3, (1, 1003, 2003, "only one sentence")), id="tsv-4-fields"),
        pytest.param(_tsv_bad_row("dev.tsv", 0, (0, 1, 2, "a", "b", "c")), id="tsv-6-fields"),
        pytest.param(_tsv_wrong_header, id="tsv-header"),
        pytest.param(_tsv_label(2, "train"), id="tsv-label-2"),
        pytest.param(_tsv_label(-1, "validation"), id="tsv-label-minus-1"),
        pytest.param(_jsonl_label, id="jsonl-label-2"),
        *(
            pytest.param(_csv_without(column, ("train", "dev")), id=f"csv-no-{column}")
            for column in ("sentence1", "sentence2", "label")
        ),
        pytest.param(_csv_without("label", ("train",)), id="csv-no-label-in-train-only"),
        pytest.param(_tsv_bad_label("yes", "is not an integer"), id="tsv-text-label"),
        pytest.param(_tsv_bad_label("²", "is not an integer"), id="tsv-superscript-label"),
        pytest.param(_tsv_bad_label("9" * 23, "is out of range; write 0 or 1"), id="tsv-huge-label"),
        pytest.param(
            _encoded(".tsv", "latin-1", ", line 6: byte 0xe9 is not UTF-8 .*; save the file as UTF-8"), id="tsv-latin-1"
        ),
        pytest.param(_encoded(".tsv", "utf-16", " is UTF-16 text, not UTF-8; save it as UTF-8"), id="tsv-utf-16"),
        pytest.param(
            _encoded(".csv", "cp1252", ", line 6: byte 0xe9 is not UTF-8 .*; save the file as UTF-8"), id="csv-cp1252"
        ),
        pytest.param(_encoded(".jsonl", "latin-1", ", line 5: byte 0xe9 is not UTF-8"), id="jsonl-latin-1"),
        pytest.param(
            _written("train.csv", _csv(['"he said,b,1']), "ParserError: .*EOF inside string"), id="csv-open-quote"
        ),
        pytest.param(
            _written("train.csv", _csv(["a,b,1,extra"]), "ParserError: .*Expected 3 fields in line 8, saw 4"),
            id="csv-ragged-row",
        ),
        pytest.param(
            _written("train.json", '[{"sentence1": "a", "sente', "(?!DatasetGenerationError)"), id="json-truncated"
        ),
        pytest.param(
            _bad_value(".jsonl", "sentence2", None, r"is missing \(null\); give every row"), id="jsonl-null-sentence"
        ),
        pytest.param(
            _bad_value(".jsonl", "sentence2", MISSING, r"is missing \(null\)"), id="jsonl-row-without-sentence"
        ),
        pytest.param(_bad_value(".jsonl", "label", None, r"is missing \(null\)"), id="jsonl-null-label"),
        pytest.param(_bad_value(".parquet", "sentence1", None, r"is missing \(null\)"), id="parquet-null-sentence"),
        pytest.param(_bad_value(".parquet", "label", None, r"is missing \(null\)"), id="parquet-null-label"),
        pytest.param(
            _bad_value(
                ".jsonl", "sentence1", ["a", "b"], r"is \['a', 'b'\], not text; write each sentence as a string"
            ),
            id="jsonl-list-sentence",
        ),
        pytest.param(
            _bad_value(".jsonl", "sentence2", {"text": "a"}, r"is \{'text': 'a'\}, not text"),
            id="jsonl-object-sentence",
        ),
        pytest.param(_json_columns, id="json-object-of-columns"),
        pytest.param(_jsonl_text_among_labels, id="jsonl-text-among-labels"),
        pytest.param(_parquet_bytes_sentence, id="parquet-bytes-sentence"),
        pytest.param(_jsonl_float_labels, id="jsonl-float-labels"),
        pytest.param(_relative_missing, id="relative-missing"),
        pytest.param(_absolute_missing, id="absolute-missing"),
        pytest.param(_a_file, id="a-file"),
        pytest.param(_folder_with((), "has no train file"), id="empty-folder"),
        pytest.param(_folder_with(("validation.csv",), "has no train file"), id="no-train-file"),
        pytest.param(_folder_with(("train.json",), "has no validation file"), id="no-validation-file"),
        pytest.param(_folder_with(("train.csv", "train.jsonl", "dev.csv"), "has several train files"), id="two-trains"),
        pytest.param(_unreadable, id="unreadable-parquet"),
    ],
)
def test_bad_local_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, build: BadCase) -> None:
    monkeypatch.chdir(tmp_path)
    source, message = build(tmp_path)
    with pytest.raises(FinetuneError, match=message):
        load_raw_dataset(source, MRPC)


@pytest.mark.parametrize("dataset_id", ["nyu-mll/glue", "someone/no-such-dataset"])
def test_unreachable_hub_points_at_local_data(monkeypatch: pytest.MonkeyPatch, dataset_id: str) -> None:
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(FinetuneError, match=rf"(?s){re.escape(repr(dataset_id))}.*--finetune-data"):
        load_raw_dataset(dataset_id, MRPC)


def _with_ids(suffix: str, ids: list[object]) -> Callable[[Path], Path]:
    """Writes a folder whose train file of ``suffix`` has the idx column ``ids``; returns that file."""

    def build(tmp_path: Path) -> Path:
        table = [record | {"idx": idx} for record, idx in zip(records(make_rows(len(ids))), ids, strict=True)]
        write_table(tmp_path / f"dev{suffix}", records(make_rows(4), with_idx=True))
        return write_table(tmp_path / f"train{suffix}", table)

    return build


@pytest.mark.parametrize(
    "suffix, ids, problem",
    [
        (".csv", ["id0", "id1", "id2"], r"row 1: idx is 'id0' \(str\), not an integer"),
        (".jsonl", [0, "b", 2], r"row 2: idx is 'b' \(str\), not an integer"),
        (".jsonl", [0, 1.5, 2], r"row 1: idx is 0\.0 \(float\), not an integer"),
        (".jsonl", [0, None, 2], r"row 2: idx is missing \(null\)"),
        (".parquet", [7, 8, 7], r"rows 1 and 3: both have idx 7"),
    ],
    ids=["csv-text-ids", "jsonl-mixed-ids", "jsonl-float-ids", "jsonl-null-id", "parquet-repeated-id"],
)
def test_ids_that_are_not_distinct_integers_fail_at_load_naming_the_file(
    tmp_path: Path, suffix: str, ids: list[object], problem: str
) -> None:
    """A baseline names the examples a run got wrong by their idx: ids that cannot name them are refused
    when the data is loaded, not by a ValueError after the fine-tune."""
    file = _with_ids(suffix, ids)(tmp_path)
    with pytest.raises(FinetuneError, match=rf"^{re.escape(str(file))}, {problem}; .*remove the idx column"):
        load_raw_dataset(str(tmp_path), MRPC)


def test_an_empty_parquet_split_has_no_rows(tmp_path: Path) -> None:
    write_table(tmp_path / "train.parquet", records(make_rows(4)))
    pd.DataFrame(
        {column: pd.Series([], dtype=int if column == "label" else str) for column in MRPC.columns[:3]}
    ).to_parquet(tmp_path / "validation.parquet")
    with pytest.raises(FinetuneError, match=r", validation split has no rows \(validation\.parquet holds no rows"):
        load_raw_dataset(str(tmp_path), MRPC)


@pytest.mark.parametrize("text", ["[]", "[ ]", "[\n]\n", " [\n\t\n] "], ids=["bare", "space", "newline", "padded"])
def test_a_json_split_of_an_empty_array_has_no_rows_whatever_its_whitespace(tmp_path: Path, text: str) -> None:
    write_table(tmp_path / "train.json", records(make_rows(4)))
    (tmp_path / "validation.json").write_text(text, encoding="utf-8")
    with pytest.raises(FinetuneError, match=r", validation split has no rows \(validation\.json holds no rows"):
        load_raw_dataset(str(tmp_path), MRPC)


def test_a_mistyped_data_folder_is_named_beside_the_hub_failure(
    pytester: pytest.Pytester, glue_folder: Callable[..., Path]
) -> None:
    """``--finetune-data=mrcp`` beside ``./mrpc`` is a Hub id (no such folder), and the message says so too."""
    shutil.copytree(glue_folder(), pytester.path / "mrpc")
    pytester.makepyfile("def test_x(mrpc_dataset):\n    pass\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("HF_DATASETS_OFFLINE", "1")
        result = pytester.runpytest_subprocess("--finetune-data=mrcp")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "could not load dataset 'mrcp' from the Hugging Face Hub (*); to work offline, *; nor is there a folder "
            f"'mrcp' in {pytester.path}, where a relative path is looked for (there is 'mrpc': a typo?)"
        ]
    )
