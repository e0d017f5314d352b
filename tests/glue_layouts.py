"""Small data of every GLUE task, written in GLUE's own TSV layout of that task (or as Hub-named csv)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

from pytest_finetune.tasks import TASKS

#: One example: its label as the Hub gives it (class id, or score) and its texts, in the task's column order.
Example = tuple[int | float, tuple[str, ...]]

_FILLER = "the a he she it was is and or not".split()
#: A word per class (and per score band), so that a tiny model can learn the label from the text.
_CLASS_WORDS = "cat dog house car company".split()


def task_examples(name: str, count: int, seed: int = 0) -> list[Example]:
    """``count`` examples of task ``name`` with a learnable rule: the class (or the score, 0 to 4) is told
    by a word of the first text; classes take turns."""
    task = TASKS[name]
    rng = random.Random(seed)
    examples: list[Example] = []
    for index in range(count):
        band = index % (task.num_labels if task.label_names is not None else 5)
        texts = tuple(
            " ".join(([_CLASS_WORDS[band]] if column == 0 else []) + rng.sample(_FILLER, 4))
            for column in range(len(task.text_columns))
        )
        label: int | float = band if task.label_names is not None else round(band + rng.uniform(0, 0.9), 2)
        examples.append((label, texts))
    return examples


def glue_lines(name: str, examples: Sequence[Example], header: tuple[str, ...]) -> list[str]:
    """``examples`` as lines of task ``name``'s GLUE TSV file whose columns are ``header``."""
    task = TASKS[name]
    layout = task.glue_layout
    assert layout is not None
    lines = ["\t".join(header)] if layout.has_header else []
    for number, (label, texts) in enumerate(examples):
        fields = {column: str(number) for column in header}
        fields.update(zip(layout.text, texts, strict=True))
        if task.label_names is not None and layout.string_labels:
            fields[layout.label] = task.label_names[int(label)]
        else:
            fields[layout.label] = f"{label:.3f}" if task.label_names is None else str(label)
        lines.append("\t".join(fields[column] for column in header))
    return lines


def write_glue_folder(folder: Path, name: str, train: Sequence[Example], dev: Sequence[Example]) -> Path:
    """A GLUE TSV folder of task ``name``: train.tsv and its dev file, in GLUE's layout of the task (MNLI: its
    mismatched dev file too, holding ``dev``'s examples in reverse order)."""
    layout = TASKS[name].glue_layout
    assert layout is not None
    folder.mkdir(parents=True, exist_ok=True)
    files = [("train.tsv", layout.headers[0], train), (layout.validation_file, layout.headers[-1], dev)]
    if layout.reported_file is not None:
        files.append((layout.reported_file, layout.headers[-1], dev[::-1]))
    for file, header, examples in files:
        (folder / file).write_text("\n".join(glue_lines(name, examples, header)) + "\n", encoding="utf-8")
    return folder
