"""Where a result came from: content digests of local checkpoints and data, of a model's
weights, of a dataset's rows and of a tokenizer, and the environment.

A baseline names its model and data by content, so that the same checkpoint or data
folder at another path (a colleague's clone, a CI runner's virtualenv) is the same recipe,
and a changed file is not; the result cache knows the tokenized data and the tokenizer the
same way.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .tasks import TASKS

if TYPE_CHECKING:
    import datasets

#: Files that can change what a checkpoint or data folder holds (READMEs and licences cannot);
#: ``.py``: a checkpoint's own modeling code, run with ``trust_remote_code=True``.
_CONTENT_SUFFIXES = (".json", ".safetensors", ".bin", ".txt", ".model", ".tsv", ".csv", ".jsonl", ".parquet", ".py")
#: What ``Trainer`` saves into a checkpoint beside the model, and ``from_pretrained`` never reads.
_TRAINER_EXTRAS = ("trainer_state.json", "training_args.bin")
_CHUNK = 1 << 20


def content_digest(path: str, files: Sequence[Path] | None = None) -> str:
    """sha256 of a file, or of a folder's ``files`` (default: its top-level content files, less what
    ``Trainer`` saves beside a checkpoint's model), by names and bytes, in name order.

    Remembered per process while the files' sizes and modification times stay the same.
    """
    root = Path(path)
    if files is None:
        files = [root] if root.is_file() else [p for p in root.iterdir() if _is_content(p)]
    files = sorted(files, key=lambda file: file.name)
    signature = tuple((str(file), file.stat().st_size, file.stat().st_mtime_ns) for file in files)
    return _digest(signature)


def _is_content(file: Path) -> bool:
    """Whether ``file`` can change what a checkpoint or data folder holds."""
    return file.is_file() and file.suffix in _CONTENT_SUFFIXES and file.name not in _TRAINER_EXTRAS


@functools.lru_cache(maxsize=64)
def _digest(signature: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for name, _, _ in signature:
        file = Path(name)
        digest.update(file.name.encode() + b"\0")
        with open(file, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return "sha256:" + digest.hexdigest()


@functools.lru_cache(maxsize=1)
def package_digest() -> str:
    """sha256 of this package's source: another plugin version computes differently, so it misses."""
    digest = hashlib.sha256()
    package = Path(__file__).parent
    for source in sorted(package.rglob("*.py")):
        digest.update(source.relative_to(package).as_posix().encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()


def file_digest(file: str) -> str:
    """``sha256:`` and the hex digest of ``file``'s bytes; ``unreadable`` when it cannot be read."""
    try:
        return f"sha256:{hashlib.sha256(Path(file).read_bytes()).hexdigest()}"
    except OSError:
        return "unreadable"


def examples_digest(example_ids: Sequence[int]) -> str:
    """Names a validation set by its examples' ids, in any order."""
    return hashlib.sha256(json.dumps(sorted(int(i) for i in example_ids)).encode()).hexdigest()


def display_source(source: str, rootdir: Path) -> str:
    """A model or data source as a baseline shows it: a Hub id as written, a local path
    relative to the rootdir when inside it, else its last two parts (machine paths vary)."""
    path = Path(source)
    if not path.is_absolute():
        return source
    try:
        return path.relative_to(rootdir).as_posix() or "."
    except ValueError:
        return ".../" + "/".join(path.parts[-2:])


def source_identity(source: str, files: Sequence[Path] | None = None) -> str:
    """What makes two sources the same: the content digest of a local path (of ``files`` where
    given: see :func:`content_digest`), else the Hub id."""
    return content_digest(source, files) if os.path.isabs(source) and os.path.exists(source) else source


#: The text columns of every task (MRPC's ``sentence1`` and ``sentence2``, SST-2's ``sentence``, ...).
TEXT_COLUMNS = tuple(sorted({column for task in TASKS.values() for column in task.text_columns}))
#: The columns of an example as the data holds it, before tokenization: what :func:`examples_identity` names.
EXAMPLE_COLUMNS = ("idx", *TEXT_COLUMNS, "label", "labels")


def examples_identity(splits: Mapping[str, Any]) -> str | None:
    """sha256 of the examples of ``splits`` (``datasets.Dataset`` by split name): their ids, texts and labels
    (:data:`EXAMPLE_COLUMNS`), not token ids, so that another tokenizer or model leaves it the same; of all their
    columns where the texts are gone (a ``tokenized_mrpc`` that removed them). The ``train`` split's rows in their
    order (it decides the batches), another split's in any order (each example is scored alone). ``None`` for a
    split that is not a ``datasets.Dataset`` (lists of features)."""
    digest = hashlib.sha256()
    for name in sorted(splits):
        dataset = splits[name]
        names = getattr(dataset, "column_names", None)
        if names is None or not hasattr(dataset, "select_columns"):
            return None
        columns = [column for column in names if column in EXAMPLE_COLUMNS]
        if not set(TEXT_COLUMNS) & set(columns):
            columns = sorted(names)
        rows = [json.dumps(row, sort_keys=True, default=str) for row in dataset.select_columns(columns).to_list()]
        digest.update(f"{name}\0{len(rows)}\0".encode())
        for row in rows if name == "train" else sorted(rows):
            digest.update(row.encode() + b"\0")
    return "sha256:" + digest.hexdigest()


def weights_digest(model: Any) -> str:
    """sha256 of a model's parameters and buffers (names, dtypes, shapes and values): what a
    checkpoint's path or Hub id cannot tell (new weights pushed under the same name, a model a
    ``conftest.py`` loads or changes, one an earlier test trained)."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        values = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{values.dtype}:{tuple(tensor.shape)}\0".encode())
        digest.update(values.view(torch.uint8).numpy())
    return "sha256:" + digest.hexdigest()


#: Rows of a dataset hashed at a time (one Arrow table each).
_ROWS = 10_000
#: Content digests of datasets already hashed in this process, by their ``datasets`` fingerprint.
_DATASET_DIGESTS: dict[str, str] = {}


def dataset_digest(dataset: datasets.Dataset) -> str:
    """sha256 of a ``datasets.Dataset``'s column types and rows, in the order it shows them (a ``select``
    or ``shuffle`` applied): what it holds, not where its files were read from nor how it was made (the
    ``datasets`` fingerprint of a tokenization holds the tokenizer's vocabulary file by its path).
    Remembered per process by the fingerprint, which ``datasets`` gives each content once."""
    import pyarrow as pa  # type: ignore[import-untyped]  # no stubs; pyproject.toml covers only datasets

    fingerprint = dataset._fingerprint
    if fingerprint in _DATASET_DIGESTS:
        return _DATASET_DIGESTS[fingerprint]
    digest = hashlib.sha256(json.dumps(dataset.features.to_dict(), sort_keys=True).encode())
    for table in dataset.with_format("arrow").iter(batch_size=_ROWS):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema.remove_metadata()) as writer:
            writer.write_table(table.combine_chunks().replace_schema_metadata())  # one batch: chunking is no content
        digest.update(sink.getvalue())
    _DATASET_DIGESTS[fingerprint] = "sha256:" + digest.hexdigest()
    return _DATASET_DIGESTS[fingerprint]


#: A tokenizer's settings that say where and how it was loaded, never how it tokenizes.
_LOADING_SETTINGS = frozenset({"name_or_path", "is_local", "local_files_only", "cache_dir", "_commit_hash"})
#: The parts of a ``tokenizers.Tokenizer`` that decide how it tokenizes (not the truncation and padding of its
#: last call, which each call sets anew).
_BACKEND_PARTS = ("model", "normalizer", "pre_tokenizer", "post_processor", "decoder")


def tokenizer_identity(tokenizer: Any) -> str | None:
    """sha256 of what a tokenizer does, not where it was loaded from: its class; its ``tokenizers`` parts
    (vocabulary, normalizer, pre- and post-processing, added tokens) or, for a Python tokenizer, its
    vocabulary; its settings, a vocabulary or tokenizer file by its content digest; and the special tokens,
    sides and length limit that padding and truncation use. ``None`` for none."""
    if tokenizer is None:
        return None
    digest = hashlib.sha256(f"{type(tokenizer).__module__}.{type(tokenizer).__qualname__}\0".encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        for name in _BACKEND_PARTS:  # each part's own JSON, without parsing the vocabulary (a tenth of the time)
            part = getattr(backend, name, None)
            digest.update((part.__getstate__() if part is not None else b"none") + b"\0")
        vocabulary = sorted((index, repr(token)) for index, token in backend.get_added_tokens_decoder().items())
    else:
        vocabulary = sorted(tokenizer.get_vocab().items()) if hasattr(tokenizer, "get_vocab") else []
    settings = {
        key: content_digest(os.fspath(value)) if key.endswith("_file") else value
        for key, value in getattr(tokenizer, "init_kwargs", {}).items()
        if key not in _LOADING_SETTINGS and (_is_file(value) or not key.endswith("_file"))
    }
    attributes = {
        name: getattr(tokenizer, name, None)
        for name in ("special_tokens_map", "padding_side", "truncation_side", "model_max_length", "model_input_names")
    }
    described = {"vocabulary": vocabulary, "settings": settings, "attributes": attributes}
    digest.update(json.dumps(described, sort_keys=True, default=str).encode())
    return "sha256:" + digest.hexdigest()


def _is_file(value: Any) -> bool:
    """Whether ``value`` names a file that exists."""
    return isinstance(value, (str, os.PathLike)) and os.path.isfile(value)


def environment(device: str, dtype: str, dropout_masks: str) -> dict[str, Any]:
    """The library versions, device, dtype and source of dropout masks (``torch`` or ``numpy``,
    see :mod:`pytest_finetune.dropout`) a result was computed with."""
    import datasets
    import torch
    import transformers

    described = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "datasets": datasets.__version__,
        "device": device,
        "dtype": dtype,
        "dropout_masks": dropout_masks,
    }
    if device == "cpu":
        described["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    return described
