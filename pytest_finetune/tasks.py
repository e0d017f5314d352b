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

from .errors import FinetuneError

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
    ``validation_file``: the file of the validation split; ``reported_file``: that of the task's
    :attr:`Task.reported_split`, where it has one.
    """

    headers: tuple[tuple[str, ...], ...]
    text: tuple[str, ...]
    label: str
    string_labels: bool = False
    has_header: bool = True
    validation_file: str = "dev.tsv"
    reported_file: str | None = None


@dataclasses.dataclass(frozen=True)
class Task:
    """A sequence-classification (or regression) task the plugin knows how to load and score.

    ``label_names``: the class names, by class id; ``None`` for a regression (one output, a score); ``()`` for
    a task of the user's whose class names are read from its data (:func:`pytest_finetune.data.class_names_in`)
    and not read yet. ``metrics``: what every run computes; ``gated``: those a run is gated on by default (higher
    is better). ``glue_layout``: ``None`` for a task of the user's (:func:`custom_task`); ``label_column``: the
    column of its data files holding the labels (loaded as ``label``).
    """

    name: str
    text_columns: tuple[str, ...]
    label_names: tuple[str, ...] | None
    metrics: tuple[str, ...]
    gated: tuple[str, ...]
    glue_layout: GlueLayout | None
    hub_dataset: str = "nyu-mll/glue"
    validation_split: str = "validation"
    label_column: str = "label"
    #: A second validation split whose metrics are computed and shown, never gated (MNLI's
    #: ``validation_mismatched``), under the names of :meth:`reported_metric`; ``None`` for most tasks.
    reported_split: str | None = None

    def reported_metric(self, metric: str) -> str:
        """The name of ``metric`` on :attr:`reported_split`: ``accuracy_mismatched``."""
        return f"{metric}_{(self.reported_split or '').removeprefix('validation_')}"

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
                reported_file="dev_mismatched.tsv",
            ),
            validation_split="validation_matched",
            reported_split="validation_mismatched",
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

#: What ``labels`` holds for a task of the user's that predicts a score.
REGRESSION = "regression"
#: The recipe keywords that declare a task of the user's, and how a user sets them (ini key, marker keyword).
CUSTOM_TASK_KEYS = ("text_columns", "label_column", "labels", "metrics")
#: The metrics of a task of the user's that names none.
DEFAULT_CUSTOM_METRICS = {False: (ACCURACY,), True: (PEARSON, SPEARMAN)}


def custom_task(
    name: str,
    text_columns: tuple[str, ...],
    label_column: str | None = None,
    labels: tuple[str, ...] | str | None = None,
    metrics: tuple[str, ...] | None = None,
) -> Task:
    """A task of the user's: its ``text_columns`` (one or two), ``label_column`` (default ``label``), ``labels``
    (the class names by class id, :data:`REGRESSION`, or ``None``: a classification whose class names are read
    from the data) and ``metrics`` (built-in ones its shape can compute, each gated; default accuracy, or Pearson
    and Spearman for a regression). A declaration that cannot work is a :class:`FinetuneError` naming the fix."""
    label_column = "label" if label_column is None else label_column
    if name in TASKS:
        raise FinetuneError(
            f"task {name!r} is a GLUE task, which has its own columns and labels; name a task of your own "
            f"(finetune_task = sentiment, marker task='sentiment') to declare {', '.join(CUSTOM_TASK_KEYS)}"
        )
    if not text_columns or len(text_columns) > 2 or not all(column.strip() for column in text_columns):
        raise FinetuneError(
            f"task {name!r}: text_columns is {list(text_columns)}; give the one or two columns holding the texts "
            "(finetune_text_columns = sentence, or = question, answer; marker text_columns=['sentence'])"
        )
    if not label_column.strip() or label_column in text_columns:
        raise FinetuneError(
            f"task {name!r}: label_column is {label_column!r}; give the column holding the labels, other than the "
            "text columns (finetune_label_column = label, marker label_column='label')"
        )
    label_names: tuple[str, ...] | None
    if labels == REGRESSION:
        label_names = None
    elif labels is None:
        label_names = ()
    else:
        label_names = tuple(labels)
        if REGRESSION in label_names:
            raise FinetuneError(
                f"task {name!r}: labels gives class names and {REGRESSION!r} ({', '.join(label_names)}); give the "
                f"class names of a classification (finetune_labels = neg, pos) or {REGRESSION!r} alone"
            )
        check_class_names(name, label_names)
    regression = label_names is None
    metrics = DEFAULT_CUSTOM_METRICS[regression] if metrics is None else metrics
    check_task_metrics(name, metrics, label_names)
    return Task(name, text_columns, label_names, metrics, metrics, None, hub_dataset="", label_column=label_column)


def check_class_names(name: str, label_names: tuple[str, ...]) -> None:
    """Fail on class names of the task ``name`` that are fewer than two, repeated or empty."""
    if len(label_names) < 2 or len(set(label_names)) != len(label_names) or not all(map(str.strip, label_names)):
        raise FinetuneError(
            f"task {name!r}: labels {list(label_names)} are not two or more distinct class names; give them in class "
            f"id order (finetune_labels = neg, pos), {REGRESSION!r} for a score, or leave labels unset to read them "
            "from the data"
        )


def check_task_metrics(name: str, metrics: tuple[str, ...], label_names: tuple[str, ...] | None) -> None:
    """Fail on a metric that a task with ``label_names`` (``None``: a regression; ``()``: not read yet) cannot
    compute: another shape's, F1 (of class 1) without exactly two classes, or one the plugin does not know."""
    shape = REGRESSION_METRICS if label_names is None else CLASSIFICATION_METRICS
    if not metrics:
        raise FinetuneError(f"task {name!r}: metrics is empty; name one or more of {', '.join(shape)}")
    for metric in metrics:
        binary = metric != F1 or not label_names or len(label_names) == 2
        if metric in shape and binary:
            continue
        what = "a regression" if label_names is None else f"a classification of {len(label_names) or 'its'} classes"
        computed = [metric for metric in shape if metric != F1 or not label_names or len(label_names) == 2]
        raise FinetuneError(
            f"task {name!r}: the metric {metric!r} cannot be computed for {what}; name one of "
            f"{', '.join(computed)} (finetune_metrics, marker metrics=[...]), or compute your own with a "
            "pytest_finetune_metrics hook and gate it with a tolerance ({'my_metric': 0.01})"
        )


def glue_layouts_like(first_row: tuple[str, ...]) -> list[str]:
    """The tasks whose GLUE TSV files could start with ``first_row``: as their header (RTE and WNLI share
    theirs), or, for a layout without a header (CoLA), as a row of its width with an integer label."""
    like = []
    for name, task in TASKS.items():
        layout = task.glue_layout
        if layout is None:
            continue
        if layout.has_header and first_row in layout.headers:
            like.append(name)
        elif not layout.has_header and len(first_row) == len(layout.headers[0]):
            label = first_row[layout.headers[0].index(layout.label)].strip()
            if label.lstrip("-").isdigit():
                like.append(name)
    return like
