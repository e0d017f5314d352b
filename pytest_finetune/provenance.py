"""Where a result came from: content digests of local checkpoints and data, of a model's
weights, and the environment.

A baseline names its model and data by content, so that the same checkpoint or data
folder at another path (a colleague's clone, a CI runner's virtualenv) is the same recipe,
and a changed file is not.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

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


def data_identity(source: str) -> str:
    """:func:`source_identity` of a data source: a local folder by the files its loader reads
    (not a ``test.tsv`` or notes beside them)."""
    from .data import read_files  # datasets: imported once a fine-tune records its data

    folder = Path(source)
    return source_identity(source, read_files(folder) if folder.is_dir() else None)


#: The columns of an example as the data holds it, before tokenization: what :func:`examples_identity` names.
EXAMPLE_COLUMNS = ("idx", "sentence1", "sentence2", "label", "labels")


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
        if not {"sentence1", "sentence2"} & set(columns):
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
