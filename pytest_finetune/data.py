"""Load a recipe's data from any source into one shape.

Every source becomes a ``datasets.DatasetDict`` with splits ``train`` and
``validation`` and the task's columns (:attr:`~pytest_finetune.tasks.Task.columns`: its text
columns as the Hub names them, MRPC's ``sentence1`` and ``sentence2``, then ``label`` and ``idx``),
loaded through ``datasets`` so that its fingerprinting and caching apply. Labels are class ids
(a label name becomes its id through the task's label names) or, for a regression, float scores.

Sources, by what ``data`` points at:

- a GLUE TSV folder: ``train.tsv`` and the task's dev file (``dev.tsv``; MNLI's ``dev_matched.tsv``;
  ``test.tsv`` is ignored) in GLUE's layout of the task (:class:`~pytest_finetune.tasks.GlueLayout`:
  MRPC's header ``Quality``, ``#1 ID``, ``#2 ID``, ``#1 String``, ``#2 String``; CoLA's four columns
  without a header; ...), read with quoting off (sentences hold unbalanced quotes);
- a folder of ``train`` and ``validation`` (or ``dev``) files in one of the formats
  ``csv``, ``json``, ``jsonl`` or ``parquet``, holding the task's text columns and ``label``
  (and ``idx``, distinct integer ids, added when missing);
- anything else: a Hugging Face Hub dataset id (the task's own, ``nyu-mll/glue``, is
  loaded with its config, the task's name, and its validation split).

A split loaded from local files gets a ``datasets`` fingerprint made from the content digest of the
files read (not their paths or modification times, which ``datasets`` hashes, nor other files of the
folder), so that a fresh checkout of the same data tokenizes to the same fingerprints and the result cache serves it.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import dataclasses
import hashlib
import itertools
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import datasets
import pyarrow  # type: ignore[import-untyped]  # no stubs; pyproject.toml covers only datasets
import pyarrow.parquet  # type: ignore[import-untyped]

from .errors import FinetuneError
from .provenance import content_digest, package_digest, source_identity
from .recipe import Recipe, local_path, offline_help
from .tasks import TASKS, GlueLayout, Task, check_task_metrics, glue_layouts_like

_GLUE_TSV_OPTIONS = {"delimiter": "\t", "quoting": csv.QUOTE_NONE, "encoding": "utf-8-sig"}
#: The files of a GLUE TSV folder the loader reads: train.tsv and each task's dev file.
_GLUE_FILES = (
    "train.tsv",
    *sorted(
        {
            file
            for task in TASKS.values()
            if task.glue_layout is not None
            for file in (task.glue_layout.validation_file, task.glue_layout.reported_file)
            if file is not None
        }
    ),
)
#: Python's csv module refuses a field over 128 KiB by default (a guard against a quote left open); with quoting
#: off a field ends at its line's end, so a long one is long text (a document), read up to this (a C long's limit).
_CSV_FIELD_LIMIT = 2**31 - 1
_INTEGER = re.compile(r"-?[0-9]+")
_INT64 = range(-(2**63), 2**63)
# pandas reads "NA", "null" or "None" as a missing value; a sentence is text as written.
_CSV_TEXT_AS_WRITTEN = {"keep_default_na": False, "na_filter": False}
# File suffix -> the ``datasets`` builder that reads it.
FILE_BUILDERS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
_SPLIT_NAMES = {"train": ("train",), "validation": ("validation", "dev")}
#: What mends a split without rows besides adding some (:func:`check_rows`), and what removing an ``idx`` column
#: gives (:func:`check_ids`): for data a loader reads, which numbers the rows of a source without ``idx``; for data
#: a fixture gives, taken as it is (examples without ids: no paired test against the baseline).
LOADED_DATA_FIX = ", or point data at a folder whose train and validation splits hold some"
NUMBERED_ROWS = "to have the rows numbered 0, 1, 2, ..."
FIXTURE_DATA_FIX = ""
UNNAMED_ROWS = "(then the examples have no ids, and the paired test against the baseline is not made)"


#: The error for data that is a file, not a folder (a GLUE TSV folder for a task of the user's is refused earlier).
_NOT_A_FOLDER = "data {source!r} is a file; point data at the folder holding the train and validation files"


def load_raw_dataset(source: str, task: Task, hub_note: Callable[[], str] | None = None) -> datasets.DatasetDict:
    """Load ``source`` (a local folder or a Hub id) as train/validation sentence pairs; ``hub_note()`` ends the
    message of a Hub id the Hub does not give (where a folder of that name was looked for, say)."""
    path = local_path(source, "data folder")
    if path is None:
        raw = _load_hub(source, task, hub_note)
        where, content = f"Hub dataset {source!r}", None
    elif path.is_dir():
        raw = _load_glue_tsv(path, task) if _is_glue_tsv(path, task) else _load_files(path, task)
        where, content = str(path), content_digest(str(path), read_files(path))
    else:
        raise FinetuneError(_NOT_A_FOLDER.format(source=source))
    return _normalise(raw, where, task, content)


def with_class_names(recipe: Recipe) -> Recipe:
    """``recipe``, where it declares a classification of the user's without class names, with those its data holds
    (:func:`class_names_in`): recorded in the recipe, so that a class that appears later changes what a baseline is
    compared with, never which class an id means."""
    if not recipe.is_custom or recipe.labels is not None:
        return recipe
    task = recipe.task_spec
    names = class_names_in(recipe.data_source, task)
    check_task_metrics(task.name, task.metrics, names)  # now that the classes are known (F1: two classes)
    return dataclasses.replace(recipe, labels=names)


def class_names_in(source: str, task: Task) -> tuple[str, ...]:
    """The class names of ``task`` (a classification of the user's) that the data at ``source`` holds, train and
    validation splits together: text labels sorted, or, where the labels are integers (class ids from 0), ``0`` to
    the largest id. Labels of another kind (scores), or of one class only, are a :class:`FinetuneError`."""
    path = local_path(source, "data folder")
    if path is None:
        raw = _load_hub(source, task, None)
    elif path.is_dir() and not _is_glue_tsv(path, task):
        raw = _load_files(path, task)
    else:
        raise FinetuneError(_NOT_A_FOLDER.format(source=source))
    names: set[str] = set()
    for split in _SPLIT_NAMES:
        dataset = split_of(raw, source, split)
        feature = dataset.features.get("label")
        if isinstance(feature, datasets.ClassLabel):
            return tuple(feature.names)
        kind = _value_type(feature) if feature is not None else "missing"
        if kind.startswith(("int", "uint")):
            names.update(map(str, range(max(dataset.unique("label"), default=-1) + 1)))
        elif kind in ("string", "large_string"):
            names.update(dataset.unique("label"))
        else:
            raise FinetuneError(
                f"{source}, {split} split: labels are {kind}, neither class names nor class ids; for scores declare "
                "a regression (finetune_labels = regression, marker labels='regression')"
            )
    found = tuple(sorted(names, key=lambda name: (not name.isdecimal(), int(name) if name.isdecimal() else 0, name)))
    if len(found) < 2:
        raise FinetuneError(
            f"{source}: the labels hold {len(found)} class ({', '.join(found)}); a classification needs two or more: "
            "add examples of the others, or declare the class names (finetune_labels = neg, pos)"
        )
    return found


def _is_glue_tsv(folder: Path, task: Task | None = None) -> bool:
    """Whether the loader reads ``folder`` as a GLUE TSV folder (for ``task``, where given: a task of the user's,
    which has no GLUE layout, is refused one)."""
    glue = any((folder / name).exists() for name in _GLUE_FILES)
    if glue and task is not None and task.glue_layout is None:
        raise FinetuneError(
            f"data folder {str(folder)!r} holds GLUE TSV files (train.tsv, dev.tsv), and the task {task.name!r} is "
            "your own, which has no GLUE layout; give it train and validation csv, json, jsonl or parquet files, "
            "or name the GLUE task whose layout they are in (finetune_task = rte, say)"
        )
    return glue


def _split_candidates(folder: Path, stems: tuple[str, ...]) -> list[Path]:
    """The files of ``folder`` that a split named by one of ``stems`` can be read from (one is needed)."""
    return [
        folder / f"{stem}{suffix}"
        for stem in stems
        for suffix in FILE_BUILDERS
        if (folder / f"{stem}{suffix}").exists()
    ]


def read_files(folder: Path) -> list[Path]:
    """The files the loader reads from the local data folder ``folder`` (those there): what its
    content digest covers, not the files beside them (``test.tsv``, notes)."""
    if _is_glue_tsv(folder):
        files = [folder / name for name in _GLUE_FILES]
    else:
        files = [file for stems in _SPLIT_NAMES.values() for file in _split_candidates(folder, stems)]
    return [file for file in files if file.is_file()]


def data_identity(source: str) -> str:
    """:func:`~pytest_finetune.provenance.source_identity` of a data source: a local folder by the
    files its loader reads (not a ``test.tsv`` or notes beside them)."""
    folder = Path(source)
    return source_identity(source, read_files(folder) if folder.is_dir() else None)


def _load_glue_tsv(folder: Path, task: Task) -> datasets.DatasetDict:
    """The train and dev files of a GLUE TSV folder in ``task``'s layout, as the task's columns."""
    layout = task.glue_layout
    assert layout is not None, "a task without a GLUE layout is refused a GLUE folder (_is_glue_tsv)"
    files = {"train": folder / "train.tsv", "validation": folder / layout.validation_file}
    if task.reported_split and layout.reported_file and (folder / layout.reported_file).exists():
        files[task.reported_split] = folder / layout.reported_file  # shown where the folder has it
    splits = {}
    for split, file in files.items():
        if not file.exists():
            raise FinetuneError(
                f"GLUE TSV folder {str(folder)!r} has no {file.name} (the {split} split); "
                f"a GLUE folder of the task {task.name!r} needs train.tsv and {layout.validation_file}"
            )
        header, count = _check_tsv_rows(file, task)
        if not count:
            raise _empty_split(folder, split, file)
        options = {"features": datasets.Features(dict.fromkeys(header, datasets.Value("string")))}
        if not layout.has_header:
            options["column_names"] = list(header)
        dataset = _read(file, "csv", {**_GLUE_TSV_OPTIONS, **_CSV_TEXT_AS_WRITTEN, **options})
        labels = [_tsv_label(value, task) for value in dataset[layout.label]]
        dataset = dataset.remove_columns(layout.label)
        renames = {old: new for old, new in zip(layout.text, task.text_columns, strict=True) if old != new}
        splits[split] = dataset.rename_columns(renames).add_column("label", labels)
    return datasets.DatasetDict(splits)


def _tsv_label(value: str, task: Task) -> int | float:
    """A label of a GLUE TSV file (checked by :func:`_check_tsv_rows`): its class id, or its score."""
    if task.label_names is None:
        return float(value)
    if task.glue_layout is not None and task.glue_layout.string_labels:
        return task.label_names.index(value.strip())
    return int(value.strip())


def _check_tsv_rows(file: Path, task: Task) -> tuple[tuple[str, ...], int]:
    """Fail on a file that is not UTF-8, or a header or a row that is not ``task``'s GLUE layout (naming the
    tasks whose layout it looks like), or a label the task cannot read; return its column names and row count."""
    layout = task.glue_layout
    assert layout is not None, "a task without a GLUE layout is refused a GLUE folder (_is_glue_tsv)"
    with file.open(encoding="utf-8-sig", newline="") as handle, _csv_fields_unlimited():
        rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        try:
            first = tuple(next(rows, ()))
            if layout.has_header and first not in layout.headers:
                expected = " or ".join(str(list(header)) for header in layout.headers)
                raise FinetuneError(
                    f"{file}: header is {list(first)}, expected the GLUE {task.name.upper()} header "
                    f"{expected}{_other_layout(first, task)}"
                )
            header = first if layout.has_header else layout.headers[0]
            if not layout.has_header and first and task.name not in glue_layouts_like(first):
                raise FinetuneError(
                    f"{file}, line 1: {list(first)} is not a row of GLUE {task.name.upper()}'s layout, "
                    f"{len(header)} tab-separated fields {list(header)} without a header{_other_layout(first, task)}"
                )
            body = rows if layout.has_header else itertools.chain([first] if first else [], rows)
            count = 0
            label_at = header.index(layout.label)
            for line_number, row in enumerate(body, start=2 if layout.has_header else 1):
                count += 1
                if len(row) != len(header):
                    raise FinetuneError(
                        f"{file}, line {line_number}: {len(row)} tab-separated fields, expected "
                        f"{len(header)}; fix or remove that row"
                    )
                _check_tsv_label(row[label_at], task, f"{file}, line {line_number}")
        except UnicodeDecodeError as error:
            raise _read_error(file, error) from None
    return header, count


def _other_layout(first_row: tuple[str, ...], task: Task) -> str:
    """What a message adds about a GLUE TSV file whose first row is another task's layout: which tasks."""
    like = [name for name in glue_layouts_like(first_row) if name != task.name]
    if not like:
        return ""
    return (
        f"; the file looks like GLUE's {' or '.join(like)} layout: set the recipe's task to "
        f"{' or '.join(like)} (--finetune-task, ini finetune_task or marker task=...) or point data at "
        f"{task.name!r} data"
    )


def _check_tsv_label(value: str, task: Task, where: str) -> None:
    """Fail on a label of a GLUE TSV file (``where``: file and line) that ``task`` cannot read: not a number
    for a regression, not one of the label names where the layout writes names, else not an integer."""
    layout: GlueLayout | None = task.glue_layout
    if task.label_names is None:
        if not _is_finite_number(value):
            raise FinetuneError(
                f"{where}: score {value!r} is not a finite number; the task {task.name!r} is a regression, "
                "write each score as a number such as 3.8"
            )
    elif layout is not None and layout.string_labels:
        if value.strip() not in task.label_names:
            raise FinetuneError(
                f"{where}: label {value!r} is not one of the task {task.name!r}'s labels "
                f"({', '.join(task.label_names)}); fix or remove that row"
            )
    elif not _INTEGER.fullmatch(value.strip()):
        raise FinetuneError(f"{where}: label {value!r} is not an integer ({_class_ids(task)})")
    elif int(value.strip()) not in _INT64:
        raise FinetuneError(f"{where}: label {value!r} is out of range; write {_class_ids(task)}")


def _is_finite_number(text: str) -> bool:
    """Whether ``text`` reads as a finite float."""
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _class_ids(task: Task, conjunction: str = "or") -> str:
    """The class ids of ``task`` as a message writes them: ``0 or 1`` (``conjunction``), ``0 to 2``."""
    return f"0 {conjunction} 1" if task.num_labels == 2 else f"0 to {task.num_labels - 1}"


@contextlib.contextmanager
def _csv_fields_unlimited() -> Iterator[None]:
    """Python's csv module reading fields of any size (up to :data:`_CSV_FIELD_LIMIT`), then its limit as it was
    (the limit is the process's, not a reader's)."""
    limit = csv.field_size_limit(_CSV_FIELD_LIMIT)
    try:
        yield
    finally:
        csv.field_size_limit(limit)


def _empty_split(where: str | Path, split: str, file: Path | None = None, fix: str = LOADED_DATA_FIX) -> FinetuneError:
    """The error for a split without rows (``file``: the file that holds it, when there is one; ``fix``: what
    the message adds to "add sentence pairs to it")."""
    held = f" ({file.name} holds no rows, a header at most)" if file is not None else ""
    return FinetuneError(f"{where}, {split} split has no rows{held}; add sentence pairs to it{fix}")


def _holds_rows(file: Path) -> bool:
    """Whether a data file holds a row: beyond a csv header; for json, anything but an empty array; for
    parquet, by its metadata (a file that is not parquet is assumed to, and reported when it is read)."""
    if file.suffix == ".parquet":
        try:
            return bool(pyarrow.parquet.ParquetFile(file).metadata.num_rows)
        except (OSError, pyarrow.ArrowException):
            return True
    with file.open(encoding="utf-8-sig", errors="replace") as handle:
        if file.suffix == ".json":  # an empty array, whitespace inside it or not (``[ ]``, ``[\n]``)
            return "".join(handle.read(4096).split()) not in ("", "[]")
        lines = (line for line in handle if line.strip())
        needed = 2 if file.suffix == ".csv" else 1  # a csv header is no row
        return sum(1 for _ in itertools.islice(lines, needed)) == needed


def _load_files(folder: Path, task: Task) -> datasets.DatasetDict:
    data_files: dict[str, Path] = {}
    for split, stems in _SPLIT_NAMES.items():
        found = _split_candidates(folder, stems)
        if not found:
            raise FinetuneError(
                f"data folder {str(folder)!r} has no {split} file; expected train.tsv and dev.tsv (GLUE) "
                f"or {' or '.join(stems)} with one of the suffixes {', '.join(FILE_BUILDERS)}"
            )
        if len(found) > 1:
            raise FinetuneError(
                f"data folder {str(folder)!r} has several {split} files ({', '.join(f.name for f in found)}); keep one"
            )
        data_files[split] = found[0]
    # One split at a time, so that a column missing from one file is reported for its
    # split rather than as a schema clash between the two files.
    for split, file in data_files.items():
        if not _holds_rows(file):
            raise _empty_split(folder, split, file)
    return datasets.DatasetDict({split: _load_file(file, task) for split, file in data_files.items()})


def _load_file(file: Path, task: Task) -> datasets.Dataset:
    """One csv, json, jsonl or parquet file as a dataset whose texts are strings, with no value missing."""
    builder = FILE_BUILDERS[file.suffix]
    text = task.text_columns
    options = {**_CSV_TEXT_AS_WRITTEN, "converters": dict.fromkeys(text, str)} if builder == "csv" else {}
    dataset = _with_label_column(_read(file, builder, options), str(file), task)
    _check_values(dataset, file, task)
    check_ids(dataset, str(file))
    for column in text:  # json and parquet keep their own types: a number becomes its text
        if column in dataset.column_names and dataset.features[column] != datasets.Value("string"):
            try:
                dataset = dataset.cast_column(column, datasets.Value("string"))
            except Exception as error:  # pyarrow raises several types for values without a text form
                raise FinetuneError(
                    f"{file}: could not read {column} as text ({_root_cause(error)}); write each sentence as a string"
                ) from None
    return dataset


def _with_label_column(dataset: datasets.Dataset, where: str, task: Task) -> datasets.Dataset:
    """``dataset`` with ``task``'s label column (a task of the user's may name another than ``label``) named
    ``label``; a :class:`FinetuneError` naming ``where`` when it has no such column."""
    column = task.label_column
    if column == "label":
        return dataset
    if column not in dataset.column_names:
        raise FinetuneError(
            f"{where}: no label column {column!r} (it has {', '.join(dataset.column_names)}); set the task's "
            "label_column (finetune_label_column, marker label_column=...) to the column holding the labels"
        )
    if "label" in dataset.column_names:
        dataset = dataset.remove_columns("label")  # the task's labels are in ``column``
    return dataset.rename_column(column, "label")


def _read(file: Path, builder: str, options: dict[str, Any]) -> datasets.Dataset:
    """``file`` loaded by the ``datasets`` builder ``builder`` with ``options``."""
    try:
        return datasets.load_dataset(builder, data_files={"data": str(file)}, split="data", **options)
    except Exception as error:  # the builders raise several types for unreadable files
        raise _read_error(file, error) from None


def _read_error(file: Path, error: BaseException) -> FinetuneError:
    """The error for a data file that could not be read: the text is not UTF-8, else the root cause of ``error``."""
    if file.suffix != ".parquet":
        data = file.read_bytes()
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as not_utf8:
            if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                return FinetuneError(f"{file} is UTF-16 text, not UTF-8; save it as UTF-8")
            line = data.count(b"\n", 0, not_utf8.start) + 1
            return FinetuneError(
                f"{file}, line {line}: byte {data[not_utf8.start]:#04x} is not UTF-8 (the file is latin-1 or "
                "cp1252, perhaps); save the file as UTF-8"
            )
    return FinetuneError(f"could not read {str(file)!r} ({_root_cause(error)})")


def _root_cause(error: BaseException) -> str:
    """The first exception of ``error``'s chain (``datasets`` wraps the parser's error in its own), as
    ``Type: message``."""
    seen = {id(error)}
    while (cause := error.__cause__ or error.__context__) is not None and id(cause) not in seen:
        seen.add(id(cause))
        error = cause
    return f"{type(error).__name__}: {str(error).strip()}"


def _check_values(dataset: datasets.Dataset, file: Path, task: Task) -> None:
    """Fail on text that is not UTF-8, a missing (null) text or label, or a text that is a list or an object."""
    for column in (*task.text_columns, "label"):
        if column not in dataset.column_names:
            continue  # reported for the split, see _normalise
        values = dataset.data.column(column)
        try:
            values.validate(full=True)  # the json reader keeps bytes that are not UTF-8 as text
        except pyarrow.ArrowInvalid as error:
            raise _read_error(file, error) from None
        if values.null_count:
            row = dataset[column].index(None) + 1
            raise FinetuneError(
                f"{file}, row {row}: {column} is missing (null); give every row "
                f"{' and '.join((', '.join(task.text_columns), 'label'))}"
            )
        if column in task.text_columns and not isinstance(dataset.features[column], datasets.Value):
            row, value = next((n, v) for n, v in enumerate(dataset[column], start=1) if not isinstance(v, str))
            raise FinetuneError(
                f"{file}, row {row}: {column} is {_preview(value)}, not text; write each sentence as a string, "
                "one sentence pair a row (a .json file: an array of row objects, not an object of columns)"
            )


def check_ids(dataset: datasets.Dataset, where: str, without_ids: str = NUMBERED_ROWS) -> None:
    """Fail on an ``idx`` column (where there is one) that is not distinct integers: a baseline
    names the examples a run got wrong by their ``idx``. ``without_ids``: what removing the column gives."""
    if "idx" not in dataset.column_names:
        return
    fix = f"give each example an integer id of its own, or remove the idx column {without_ids}"
    # Python values (not tensors of a torch format) of the rows the dataset shows (``dataset.data`` also holds
    # those a selection left out)
    ids = list(dataset.with_format(None)["idx"])
    if None in ids:
        raise FinetuneError(f"{where}, row {ids.index(None) + 1}: idx is missing (null); {fix}")
    if not _value_type(dataset.features["idx"]).startswith(("int", "uint")):
        row, value = next(((n, v) for n, v in enumerate(ids, start=1) if type(v) is not int), (1, ids[0]))
        raise FinetuneError(
            f"{where}, row {row}: idx is {_preview(value)} ({type(value).__name__}), not an integer; {fix}"
        )
    first_rows: dict[int, int] = {}
    for row, value in enumerate(ids, start=1):
        if value in first_rows:
            raise FinetuneError(f"{where}, rows {first_rows[value]} and {row}: both have idx {value}; {fix}")
        first_rows[value] = row


def _preview(value: object) -> str:
    """``value`` as a message shows it, cut to 40 characters."""
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def _load_hub(dataset_id: str, task: Task, note: Callable[[], str] | None) -> datasets.DatasetDict:
    config = task.hub_config if dataset_id == task.hub_dataset else None
    try:
        raw = datasets.load_dataset(dataset_id, config)
    except Exception as error:  # datasets raises many types for "not reachable"/"not found"
        raise FinetuneError(
            f"could not load dataset {dataset_id!r} from the Hugging Face Hub "
            f"({type(error).__name__}: {error}); {offline_help('--finetune-data')}: a GLUE TSV folder "
            f"(train.tsv, dev.tsv) or train/validation csv, json, jsonl or parquet files{note() if note else ''}"
        ) from None
    if task.validation_split in raw:  # MNLI's is validation_matched
        raw["validation"] = raw[task.validation_split]
    for split in (*_SPLIT_NAMES, *_reported_splits(raw, task)):
        if split in raw:
            raw[split] = _with_label_column(raw[split], f"Hub dataset {dataset_id!r}, {split} split", task)
            check_ids(raw[split], f"Hub dataset {dataset_id!r}, {split} split")
    return raw


def _reported_splits(raw: Mapping[str, Any], task: Task) -> tuple[str, ...]:
    """``task``'s :attr:`~pytest_finetune.tasks.Task.reported_split` where ``raw`` has it (MNLI's mismatched one)."""
    return (task.reported_split,) if task.reported_split is not None and task.reported_split in raw else ()


def _normalise(raw: datasets.DatasetDict, where: str, task: Task, content: str | None) -> datasets.DatasetDict:
    """Keep train and validation (and the task's reported split, where there is one), turn label names into class ids,
    check them (:func:`check_split`), add ``idx`` when missing (a loader checks the ``idx`` a source has); a
    regression's scores become float32 (as its loss takes).

    ``content``: the content digest of local data, from which each split's fingerprint is made;
    ``None`` (the Hub) keeps the fingerprints ``datasets`` gives.
    """
    splits = {}
    for split in (*_SPLIT_NAMES, *_reported_splits(raw, task)):
        dataset = _label_values(split_of(raw, where, split), where, split, task)
        check_split(dataset, where, split, task)
        if task.is_regression:
            dataset = dataset.cast_column("label", datasets.Value("float32"))
        if "idx" not in dataset.column_names:
            dataset = dataset.add_column("idx", list(range(len(dataset))))
        fingerprint = _content_fingerprint(content, split, task) if content is not None else None
        splits[split] = dataset.select_columns(list(task.columns), new_fingerprint=fingerprint)
    return datasets.DatasetDict(splits)


def _label_values(dataset: datasets.Dataset, where: str, split: str, task: Task) -> datasets.Dataset:
    """``dataset`` with labels written as text (a csv's) read: a label name (``entailment``) as the task's class
    id, a regression's score as a float; a name that is not the task's, or a score that is not a number, is a
    :class:`FinetuneError` naming it and its row."""
    feature = dataset.features.get("label")
    if not isinstance(feature, datasets.Value) or feature.dtype not in ("string", "large_string"):
        return dataset
    texts = list(dataset["label"])
    if task.label_names is None:
        for position, text in enumerate(texts):
            if not _is_finite_number(text):
                raise FinetuneError(
                    f"{where}, {split} split, {_row_name(dataset, position)}: score {text!r} is not a finite number; "
                    f"the task {task.name!r} is a regression: write each label as a number such as 3.8"
                )
        return dataset.remove_columns("label").add_column("label", [float(text) for text in texts])
    for position, name in enumerate(texts):
        if name not in task.label_names:
            raise FinetuneError(
                f"{where}, {split} split, {_row_name(dataset, position)}: label {name!r} is not one of the task "
                f"{task.name!r}'s labels ({', '.join(task.label_names)}); write a label name or its class id"
            )
    return dataset.remove_columns("label").add_column("label", [task.label_names.index(name) for name in texts])


def _row_name(dataset: datasets.Dataset, position: int) -> str:
    """How a message names the row at ``position``: by its ``idx`` where the dataset has one, else by number."""
    if "idx" in dataset.column_names:
        return f"idx {dataset.with_format(None)[position]['idx']}"
    return f"row {position + 1}"


def check_fixture_data(raw: Mapping[str, datasets.Dataset], where: str, task: Task) -> None:
    """Fail on the sentence pairs a fixture gives (an ``mrpc_dataset`` of a ``conftest.py``, named by
    ``where``) that the loaders would refuse in data files: a split missing or without rows, a column
    missing, labels outside the task's, an ``idx`` that is not distinct integers."""
    for split in _SPLIT_NAMES:
        dataset = split_of(raw, where, split)
        check_split(dataset, where, split, task, empty_fix=FIXTURE_DATA_FIX)
        check_ids(dataset, f"{where}, {split} split", without_ids=UNNAMED_ROWS)


def split_of(raw: Mapping[str, Any], where: str, split: str) -> Any:
    """``raw[split]``; a :class:`FinetuneError` naming ``where`` and the splits it has when there is none."""
    if split not in raw:
        raise FinetuneError(f"{where} has no {split!r} split (it has {', '.join(map(str, raw)) or 'none'})")
    return raw[split]


def check_split(
    dataset: datasets.Dataset, where: str, split: str, task: Task, empty_fix: str = LOADED_DATA_FIX
) -> None:
    """Fail on a split of sentence pairs (``split`` of ``where``) without rows (``empty_fix``: see
    :func:`check_rows`), without a column the task needs, or with labels that are not the task's."""
    check_rows(dataset, where, split, empty_fix)
    required = (*task.text_columns, "label")
    missing = [column for column in required if column not in dataset.column_names]
    if missing:
        raise FinetuneError(
            f"{where}, {split} split: missing column(s) {', '.join(missing)} (it has "
            f"{', '.join(dataset.column_names)}); the task {task.name!r} needs {', '.join(required)}"
        )
    for column in task.text_columns:
        if dataset.features[column] == datasets.Value("string") and not any(
            text.strip() for text in dataset.with_format(None)[column]
        ):
            raise FinetuneError(
                f"{where}, {split} split: the text column {column!r} is empty in every row; point the task's "
                "text_columns at the columns holding the texts, or fill this one"
            )
    check_labels(dataset, where, split, task)


def check_rows(dataset: datasets.Dataset, where: str, split: str, fix: str = LOADED_DATA_FIX) -> None:
    """Fail on a split without rows (``fix``: what the message adds to "add sentence pairs to it")."""
    if dataset.num_rows == 0:
        raise _empty_split(where, split, fix=fix)


def check_labels(dataset: datasets.Dataset, where: str, split: str, task: Task, column: str = "label") -> None:
    """Fail on labels (the column ``column``) that are not integers, or not among the task's (a message
    names the first row holding one); for a regression, on scores that are not numbers, or NaN."""
    label_type = _value_type(dataset.features[column])
    if task.is_regression:
        if not label_type.startswith(("int", "uint", "float")):
            raise FinetuneError(
                f"{where}, {split} split: scores are {label_type}, not numbers; the task {task.name!r} is a "
                "regression: write each label as a number such as 3.8"
            )
        scores = dataset.with_format(None)[column]
        position = next((n for n, score in enumerate(scores) if not math.isfinite(score)), None)
        if position is not None:
            raise FinetuneError(
                f"{where}, {split} split, {_row_name(dataset, position)}: score {scores[position]} is not a finite "
                "number; give every row a score"
            )
        return
    if not label_type.startswith(("int", "uint")):
        raise FinetuneError(
            f"{where}, {split} split: labels are {label_type}, not integers; write them as {_class_ids(task, 'and')}"
        )
    unexpected = set(dataset.unique(column)) - set(range(task.num_labels))
    if unexpected:
        allowed = ", ".join(map(str, range(task.num_labels)))
        labels = dataset.with_format(None)[column]
        position = next(n for n, label in enumerate(labels) if label in unexpected)
        raise FinetuneError(
            f"{where}, {split} split: labels {sorted(unexpected, key=str)} are outside {{{allowed}}}; "
            f"the task {task.name!r} has {task.num_labels} labels (first at {_row_name(dataset, position)}: "
            f"{labels[position]})"
        )


def _value_type(feature: object) -> str:
    """What a feature (``label``, ``idx``) holds, as a message names it: ``int64`` for a ClassLabel (class ids),
    a Value's dtype, else the feature's type (``Json``: values of several types, such as 1 and "yes")."""
    if isinstance(feature, datasets.ClassLabel):
        return "int64"
    return feature.dtype if isinstance(feature, datasets.Value) else f"{type(feature).__name__} values"


def _content_fingerprint(content: str, split: str, task: Task) -> str:
    """The ``datasets`` fingerprint of a split of local data: its content digest, the split, what
    the loader keeps (task, columns) and the loader's code (this plugin's source, the ``datasets``
    version), and not the files' paths or modification times."""
    loading = [content, split, task.name, task.columns, package_digest(), datasets.__version__]
    return hashlib.sha256(json.dumps(loading).encode()).hexdigest()
