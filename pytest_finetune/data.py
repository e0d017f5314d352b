"""Load a recipe's data from any source into one shape.

Every source becomes a ``datasets.DatasetDict`` with splits ``train`` and
``validation`` and columns ``sentence1``, ``sentence2``, ``label`` and ``idx``,
loaded through ``datasets`` so that its fingerprinting and caching apply.

Sources, by what ``data`` points at:

- a GLUE TSV folder: ``train.tsv`` and ``dev.tsv`` (``test.tsv`` is ignored), with the
  GLUE MRPC header ``Quality``, ``#1 ID``, ``#2 ID``, ``#1 String``, ``#2 String``,
  read with quoting off (MRPC sentences hold unbalanced quotes);
- a folder of ``train`` and ``validation`` (or ``dev``) files in one of the formats
  ``csv``, ``json``, ``jsonl`` or ``parquet``, holding ``sentence1``, ``sentence2``
  and ``label`` (``idx`` is added when missing);
- anything else: a Hugging Face Hub dataset id (the task's own, ``nyu-mll/glue``, is
  loaded with its config, ``mrpc``).
"""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import datasets

from .errors import FinetuneError
from .recipe import Task, local_path, offline_help

TEXT_COLUMNS = ("sentence1", "sentence2")
REQUIRED_COLUMNS = (*TEXT_COLUMNS, "label")
COLUMNS = (*REQUIRED_COLUMNS, "idx")
GLUE_TSV_HEADER = ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String")
_GLUE_TSV_RENAMES = {"Quality": "label", "#1 String": "sentence1", "#2 String": "sentence2"}
_GLUE_TSV_FEATURES = datasets.Features(
    {name: datasets.Value("int64" if name == "Quality" else "string") for name in GLUE_TSV_HEADER}
)
# pandas reads "NA", "null" or "None" as a missing value; a sentence is text as written.
_CSV_TEXT_AS_WRITTEN = {"keep_default_na": False, "na_filter": False}
# File suffix -> the ``datasets`` builder that reads it.
FILE_BUILDERS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
_SPLIT_NAMES = {"train": ("train",), "validation": ("validation", "dev")}


def load_raw_dataset(source: str, task: Task) -> datasets.DatasetDict:
    """Load ``source`` (a local folder or a Hub id) as train/validation sentence pairs."""
    path = local_path(source, "data folder")
    if path is None:
        raw = _load_hub(source, task)
        where = f"Hub dataset {source!r}"
    elif path.is_dir():
        if (path / "train.tsv").exists() or (path / "dev.tsv").exists():
            raw = _load_glue_tsv(path)
        else:
            raw = _load_files(path)
        where = str(path)
    else:
        raise FinetuneError(
            f"data {source!r} is a file; point data at the folder holding the train and validation files"
        )
    return _normalise(raw, where, task)


def _load_glue_tsv(folder: Path) -> datasets.DatasetDict:
    files = {"train": folder / "train.tsv", "validation": folder / "dev.tsv"}
    for split, file in files.items():
        if not file.exists():
            raise FinetuneError(
                f"GLUE TSV folder {str(folder)!r} has no {file.name} (the {split} split); "
                "a GLUE folder needs train.tsv and dev.tsv"
            )
        if not _check_tsv_rows(file):
            raise _empty_split(folder, split, file)
    raw = datasets.load_dataset(
        "csv",
        data_files={split: str(file) for split, file in files.items()},
        delimiter="\t",
        quoting=csv.QUOTE_NONE,
        encoding="utf-8-sig",
        features=_GLUE_TSV_FEATURES,
        **_CSV_TEXT_AS_WRITTEN,
    )
    return raw.rename_columns(_GLUE_TSV_RENAMES).remove_columns(["#1 ID", "#2 ID"])


def _check_tsv_rows(file: Path) -> int:
    """Fail on a header or a row that is not GLUE MRPC's five tab-separated fields; return the number of rows."""
    with file.open(encoding="utf-8-sig", newline="") as handle:
        rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = tuple(next(rows, ()))
        if header != GLUE_TSV_HEADER:
            raise FinetuneError(
                f"{file}: header is {list(header)}, expected the GLUE MRPC header {list(GLUE_TSV_HEADER)}"
            )
        count = 0
        for line_number, row in enumerate(rows, start=2):
            count += 1
            if len(row) != len(GLUE_TSV_HEADER):
                raise FinetuneError(
                    f"{file}, line {line_number}: {len(row)} tab-separated fields, expected "
                    f"{len(GLUE_TSV_HEADER)}; fix or remove that row"
                )
            if not row[0].strip().lstrip("-").isdigit():
                raise FinetuneError(f"{file}, line {line_number}: label {row[0]!r} is not an integer (0 or 1)")
    return count


def _empty_split(where: str | Path, split: str, file: Path | None = None) -> FinetuneError:
    """The error for a split without rows (``file``: the file that holds it, when there is one)."""
    held = f" ({file.name} holds no rows, a header at most)" if file is not None else ""
    return FinetuneError(
        f"{where}, {split} split has no rows{held}; add sentence pairs to it, "
        "or point data at a folder whose train and validation splits hold some"
    )


def _holds_rows(file: Path) -> bool:
    """Whether a csv, json or jsonl file holds a row beyond a csv header (other formats: assumed so)."""
    if file.suffix not in (".csv", ".json", ".jsonl"):
        return True
    with file.open(encoding="utf-8-sig", errors="replace") as handle:
        if file.suffix == ".json":
            return handle.read(4096).strip() not in ("", "[]")
        lines = (line for line in handle if line.strip())
        needed = 2 if file.suffix == ".csv" else 1  # a csv header is no row
        return sum(1 for _ in itertools.islice(lines, needed)) == needed


def _load_files(folder: Path) -> datasets.DatasetDict:
    data_files: dict[str, Path] = {}
    for split, stems in _SPLIT_NAMES.items():
        found = [
            folder / f"{stem}{suffix}"
            for stem in stems
            for suffix in FILE_BUILDERS
            if (folder / f"{stem}{suffix}").exists()
        ]
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
    return datasets.DatasetDict({split: _load_file(file) for split, file in data_files.items()})


def _load_file(file: Path) -> datasets.Dataset:
    builder = FILE_BUILDERS[file.suffix]
    options = {**_CSV_TEXT_AS_WRITTEN, "converters": dict.fromkeys(TEXT_COLUMNS, str)} if builder == "csv" else {}
    try:
        dataset = datasets.load_dataset(builder, data_files={"data": str(file)}, split="data", **options)
    except Exception as error:  # the builders raise several types for unreadable files
        raise FinetuneError(f"could not read {str(file)!r} ({type(error).__name__}: {error})") from None
    for column in TEXT_COLUMNS:  # json and parquet keep their own types
        if column in dataset.column_names and dataset.features[column] != datasets.Value("string"):
            dataset = dataset.cast_column(column, datasets.Value("string"))
    return dataset


def _load_hub(dataset_id: str, task: Task) -> datasets.DatasetDict:
    config = task.hub_config if dataset_id == task.hub_dataset else None
    try:
        return datasets.load_dataset(dataset_id, config)
    except Exception as error:  # datasets raises many types for "not reachable"/"not found"
        raise FinetuneError(
            f"could not load dataset {dataset_id!r} from the Hugging Face Hub "
            f"({type(error).__name__}: {error}); {offline_help('--finetune-data')}: a GLUE TSV folder "
            "(train.tsv, dev.tsv) or train/validation csv, json, jsonl or parquet files"
        ) from None


def _normalise(raw: datasets.DatasetDict, where: str, task: Task) -> datasets.DatasetDict:
    """Keep train and validation, check the columns and labels, add ``idx`` when missing."""
    splits = {}
    for split in _SPLIT_NAMES:
        if split not in raw:
            raise FinetuneError(f"{where} has no {split!r} split (it has {', '.join(raw)})")
        dataset = raw[split]
        if dataset.num_rows == 0:
            raise _empty_split(where, split)
        missing = [column for column in REQUIRED_COLUMNS if column not in dataset.column_names]
        if missing:
            raise FinetuneError(
                f"{where}, {split} split: missing column(s) {', '.join(missing)} (it has "
                f"{', '.join(dataset.column_names)}); the task {task.name!r} needs {', '.join(REQUIRED_COLUMNS)}"
            )
        if "idx" not in dataset.column_names:
            dataset = dataset.add_column("idx", list(range(len(dataset))))
        dataset = dataset.select_columns(list(COLUMNS))
        label_type = getattr(dataset.features["label"], "dtype", "int64")  # ClassLabel has no dtype: ints
        if not label_type.startswith(("int", "uint")):
            raise FinetuneError(f"{where}, {split} split: labels are {label_type}, not integers; write them as 0 and 1")
        labels = set(dataset.unique("label"))
        unexpected = labels - set(range(task.num_labels))
        if unexpected:
            allowed = ", ".join(map(str, range(task.num_labels)))
            raise FinetuneError(
                f"{where}, {split} split: labels {sorted(unexpected, key=str)} are outside {{{allowed}}}; "
                f"the task {task.name!r} has {task.num_labels} labels"
            )
        splits[split] = dataset
    return datasets.DatasetDict(splits)
