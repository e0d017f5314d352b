"""The tasks a recipe may name: the nine GLUE tasks, each with what the plugin needs to load and score it.

A :class:`Task` says which text columns a model reads (one or two), its label names (or that it is a
regression), its Hugging Face Hub dataset and validation split, GLUE's official metrics for it and which
of them gate a run by default, and the layout of GLUE's own TSV files for it (:class:`GlueLayout`).
Everything per task lives here, so the loaders (:mod:`pytest_finetune.data`) and the scores
(:mod:`pytest_finetune.metrics`) read a task's fields instead of branching on its name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

#: The metrics a task may name, as ``evaluate``'s ``glue`` metric names them.
ACCURACY = "accuracy"
F1 = "f1"
MATTHEWS = "matthews_correlation"
PEARSON = "pearson"
SPEARMAN = "spearmanr"
#: Metrics of predicted class ids (F1: of class 1, so for two classes only).
CLASSIFICATION_METRICS = (ACCURACY, F1, MATTHEWS)
#: Metrics of predicted scores.
REGRESSION_METRICS = (PEARSON, SPEARMAN)
#: The default allowed drop of a gated metric (see :mod:`pytest_finetune.tolerances`).
DEFAULT_TOLERANCE = 0.01


@dataclasses.dataclass(frozen=True)
class GlueLayout:
    """How GLUE's own TSV files of a task are laid out.

    ``headers``: the header lines a file may have (MNLI's train and dev files differ), or, with
    ``has_header`` false, the names given to the columns of a file without one (CoLA); ``text``:
    the columns holding the task's text columns, in order; ``label``: the column holding the label,
    written as a label name where ``string_labels``, else as a class id (or, for a regression, a score);
    ``validation_file``: the file of the validation split.
    """

    headers: tuple[tuple[str, ...], ...]
    text: tuple[str, ...]
    label: str
    string_labels: bool = False
    has_header: bool = True
    validation_file: str = "dev.tsv"


@dataclasses.dataclass(frozen=True)
class Task:
    """A sequence-classification (or regression) task the plugin knows how to load and score.

    ``label_names``: the class names, by class id; ``None`` for a regression (one output, a score).
    ``metrics``: what every run computes; ``gated``: those a run is gated on by default (higher is better).
    """

    name: str
    text_columns: tuple[str, ...]
    label_names: tuple[str, ...] | None
    metrics: tuple[str, ...]
    gated: tuple[str, ...]
    glue_layout: GlueLayout
    hub_dataset: str = "nyu-mll/glue"
    validation_split: str = "validation"

    @property
    def hub_config(self) -> str:
        """The config of :attr:`hub_dataset` that holds the task (GLUE's: the task's name)."""
        return self.name

    @property
    def is_regression(self) -> bool:
        """Whether the model predicts a score rather than a class."""
        return self.label_names is None

    @property
    def num_labels(self) -> int:
        """Outputs of the model's head: one per class, or one score."""
        return 1 if self.label_names is None else len(self.label_names)

    @property
    def default_tolerances(self) -> Mapping[str, float]:
        """The allowed drop of each gated metric when no tolerance is set."""
        return dict.fromkeys(self.gated, DEFAULT_TOLERANCE)

    @property
    def head_config(self) -> dict[str, Any]:
        """The model config's fields for the task's head: ``num_labels`` with ``id2label``/``label2id``, or,
        for a regression, one output and ``problem_type="regression"`` (a mean squared error loss)."""
        if self.label_names is None:
            return {"num_labels": 1, "problem_type": "regression"}
        return {
            "num_labels": self.num_labels,
            "id2label": dict(enumerate(self.label_names)),
            "label2id": {name: index for index, name in enumerate(self.label_names)},
        }

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns of the task's loaded splits."""
        return (*self.text_columns, "label", "idx")


def _pair_layout(first: str, second: str, string_labels: bool) -> GlueLayout:
    """The layout ``index FIRST SECOND label`` of RTE, QNLI and WNLI."""
    return GlueLayout((("index", first, second, "label"),), (first, second), "label", string_labels)


_MNLI_FIELDS = (
    "index promptID pairID genre sentence1_binary_parse sentence2_binary_parse sentence1_parse sentence2_parse "
    "sentence1 sentence2 label1"
).split()
_STSB_FIELDS = tuple("index genre filename year old_index source1 source2 sentence1 sentence2 score".split())

#: The tasks a recipe may name, by GLUE config name. The seed recipe is GLUE MRPC.
TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task(
            "cola",
            ("sentence",),
            ("unacceptable", "acceptable"),
            (MATTHEWS,),
            (MATTHEWS,),
            GlueLayout((("source", "label", "original_label", "sentence"),), ("sentence",), "label", has_header=False),
        ),
        Task(
            "sst2",
            ("sentence",),
            ("negative", "positive"),
            (ACCURACY,),
            (ACCURACY,),
            GlueLayout((("sentence", "label"),), ("sentence",), "label"),
        ),
        Task(
            "mrpc",
            ("sentence1", "sentence2"),
            ("not_equivalent", "equivalent"),
            (ACCURACY, F1),
            (ACCURACY, F1),
            GlueLayout(
                (("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"),), ("#1 String", "#2 String"), "Quality"
            ),
        ),
        Task(
            "qqp",
            ("question1", "question2"),
            ("not_duplicate", "duplicate"),
            (ACCURACY, F1),
            (ACCURACY, F1),
            GlueLayout(
                (("id", "qid1", "qid2", "question1", "question2", "is_duplicate"),),
                ("question1", "question2"),
                "is_duplicate",
            ),
        ),
        Task(
            "stsb",
            ("sentence1", "sentence2"),
            None,
            (PEARSON, SPEARMAN),
            (PEARSON, SPEARMAN),
            GlueLayout((_STSB_FIELDS,), ("sentence1", "sentence2"), "score"),
        ),
        Task(
            "mnli",
            ("premise", "hypothesis"),
            ("entailment", "neutral", "contradiction"),
            (ACCURACY,),
            (ACCURACY,),
            GlueLayout(
                (  # train.tsv has one annotator's label, the dev files five
                    (*_MNLI_FIELDS, "gold_label"),
                    (*_MNLI_FIELDS, "label2", "label3", "label4", "label5", "gold_label"),
                ),
                ("sentence1", "sentence2"),
                "gold_label",
                string_labels=True,
                validation_file="dev_matched.tsv",
            ),
            validation_split="validation_matched",
        ),
        Task(
            "qnli",
            ("question", "sentence"),
            ("entailment", "not_entailment"),
            (ACCURACY,),
            (ACCURACY,),
            _pair_layout("question", "sentence", string_labels=True),
        ),
        Task(
            "rte",
            ("sentence1", "sentence2"),
            ("entailment", "not_entailment"),
            (ACCURACY,),
            (ACCURACY,),
            _pair_layout("sentence1", "sentence2", string_labels=True),
        ),
        Task(
            "wnli",
            ("sentence1", "sentence2"),
            ("not_entailment", "entailment"),
            (ACCURACY,),
            (ACCURACY,),
            _pair_layout("sentence1", "sentence2", string_labels=False),
        ),
    )
}

#: Every metric name a task computes.
TASK_METRICS = (*CLASSIFICATION_METRICS, *REGRESSION_METRICS)


def glue_layouts_like(first_row: tuple[str, ...]) -> list[str]:
    """The tasks whose GLUE TSV files could start with ``first_row``: as their header (RTE and WNLI share
    theirs), or, for a layout without a header (CoLA), as a row of its width with an integer label."""
    like = []
    for name, task in TASKS.items():
        layout = task.glue_layout
        if layout.has_header and first_row in layout.headers:
            like.append(name)
        elif not layout.has_header and len(first_row) == len(layout.headers[0]):
            label = first_row[layout.headers[0].index(layout.label)].strip()
            if label.lstrip("-").isdigit():
                like.append(name)
    return like
