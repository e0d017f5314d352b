"""What the user reads: the verdict table of a failing test, the end-of-session table,
the per-epoch history, and the same as JSON, Markdown (a CI job summary) and JUnit properties.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

from .stats import PairedTest
from .verdicts import MetricRow, Outcome, RecipeChange, Verdict

#: The outcome of a marked test that failed (training crashed, its body failed) before it compared.
NOT_COMPARED = "failed before comparing"
#: The outcome of a test that failed after a comparison that did not fail it: its body, its teardown,
#: or an ``xfail(strict=True)`` test that passed.
FAILED_AFTER_COMPARING = "failed after comparing"
#: The outcome of a test pytest counts xfailed (``@pytest.mark.xfail``), whatever its comparison came to.
XFAILED = "xfailed"
#: The outcomes that fail a test: failing verdicts, a baseline that is missing or unreadable, and
#: a test that failed before, while or after comparing.
FAILING_OUTCOMES = frozenset(
    {
        "no baseline",
        "invalid baseline",
        "error",
        NOT_COMPARED,
        FAILED_AFTER_COMPARING,
        *(o.value for o in Outcome if o.failed),
    }
)
#: The JUnit property with the entry's outcome.
OUTCOME_PROPERTY = "finetune.outcome"


@dataclasses.dataclass(frozen=True)
class ReportEntry:
    """One fine-tuning test's comparison with its baseline, as the reports show it.

    ``outcome`` is a verdict (``passed``, ``improved``, ``regressed``, ``changed``,
    ``missing metric``, ``recipe changed``, ``not comparable``) or what happened to the baseline
    (``recorded``, ``updated``, ``no baseline``, ``invalid baseline``, ``error``), or
    pytest's outcome of the test where it overrides those: ``failed before comparing``,
    ``failed after comparing``, ``xfailed`` (then ``compared`` is what the comparison came to).
    ``record`` is this run's record (see :mod:`pytest_finetune.baselines`).
    """

    nodeid: str
    outcome: str
    baseline: str
    #: The metrics with a tolerance, in name order.
    gated: tuple[str, ...] = ()
    verdict: Verdict | None = None
    record: dict[str, Any] | None = None
    message: str | None = None
    #: Whether the result came from the result cache rather than a fine-tune in this session.
    cached: bool = False
    #: The test whose fine-tune (or cache hit) of this session this test's result shares.
    shared_from: str | None = None
    #: What the comparison came to, when pytest's outcome of the test overrode it (see ``outcome``).
    compared: str | None = None
    #: The command that records the test's baseline (``--snapshot-update`` for it alone), where it compared.
    record_command: str | None = None
    #: Whether warn-only mode (``--finetune-warn-only``) turned this failing outcome into a warning.
    warn_only: bool = False
    #: The hardware class whose entry of the baseline file was compared (``finetune_baseline_classes = hardware``).
    hardware_class: str | None = None

    @property
    def baseline_shown(self) -> str:
        """The baseline as messages name it: its file, and the hardware class's entry where one was compared."""
        return self.baseline if self.hardware_class is None else f"{self.baseline} ({self.hardware_class})"

    @property
    def failed(self) -> bool:
        return self.outcome in FAILING_OUTCOMES and not self.warn_only

    @property
    def recorded_over_regression(self) -> bool:
        """Whether ``--snapshot-update`` rewrote the baseline with a run that regressed against it."""
        return self.outcome == "updated" and self.verdict is not None and self.verdict.outcome is Outcome.REGRESSED

    @property
    def rows(self) -> tuple[MetricRow, ...]:
        """The verdict's rows, or this run's metrics alone when there was nothing to compare."""
        if self.verdict is not None and self.verdict.rows:
            return self.verdict.rows
        record = self.record or {}
        intervals = record.get("intervals", {})
        return tuple(
            MetricRow(name, None, value, None, "", interval=tuple(intervals[name]) if name in intervals else None)
            for name, value in sorted(record.get("metrics", {}).items())
        )


def entry_to_json(entry: ReportEntry) -> str:
    """``entry`` as JSON text, for a pytest-xdist worker to hand it to the controller
    (see :func:`entry_from_json`)."""
    return json.dumps(dataclasses.asdict(entry), default=str)


def entry_from_json(text: str) -> ReportEntry:
    """The :class:`ReportEntry` that :func:`entry_to_json` wrote."""
    fields = json.loads(text)
    verdict = fields.pop("verdict")
    return ReportEntry(
        **{**fields, "gated": tuple(fields["gated"])},
        verdict=None if verdict is None else _verdict_from_dict(verdict),
    )


def _verdict_from_dict(fields: dict[str, Any]) -> Verdict:
    rows = tuple(
        MetricRow(
            **{
                **row,
                "interval": None if row["interval"] is None else tuple(row["interval"]),
                "rules": tuple(row["rules"]),
            }
        )
        for row in fields["rows"]
    )
    paired = fields["paired"]
    return Verdict(
        outcome=Outcome(fields["outcome"]),
        rows=rows,
        recipe_changes=tuple(RecipeChange(**change) for change in fields["recipe_changes"]),
        notes=tuple(fields["notes"]),
        paired=None if paired is None else PairedTest(**paired),
        not_comparable=fields["not_comparable"],
        collapsed=fields["collapsed"],
    )


# ---------------------------------------------------------------- one test


def verdict_lines(verdict: Verdict) -> list[str]:
    """The table of one comparison: metric, baseline, current, delta, allowed, verdict; where the recipe
    changed or the run could not be compared, the verdict's headline and the recipe's changes first."""
    lines: list[str] = []
    if verdict.recipe_changes or verdict.not_comparable:
        lines.append(verdict.headline)
    if verdict.collapsed:
        lines.append(f"collapsed: {verdict.collapsed}")
    if verdict.recipe_changes:
        rows = [(change.key, _text(change.baseline), _text(change.current)) for change in verdict.recipe_changes]
        lines += _aligned(("key", "baseline", "current"), rows, right=())
    if verdict.rows:
        lines += _aligned(("metric", "baseline", "current", "delta", "allowed", "verdict"), metric_cells(verdict.rows))
    if verdict.paired is not None:
        lines.append(verdict.paired.describe())
    lines += [f"note: {note}" for note in verdict.notes]
    return lines


def failure_message(entry: ReportEntry, record_command: str) -> str:
    """The message of a test the gate fails: what happened, the table, and what to do
    (``record_command`` records the test's baseline)."""
    if entry.message:
        return entry.message
    assert entry.verdict is not None
    head = f"{entry.nodeid}: {entry.outcome} against the baseline {entry.baseline_shown}"
    advice = {
        "recipe changed": "quality held, and strict recipe mode (finetune_strict_recipe) asks that each recipe change "
        f"be recorded: if the new recipe is intended, record its baseline: {record_command}",
        "not comparable": "the numbers of the two runs measure different things and are not compared; "
        f"if the change is intended, record the baseline anew: {record_command}",
        "missing metric": "the run no longer produces a gated metric; produce it or drop its tolerance",
        "collapsed": "the model predicts almost only one class: fix the recipe; if that is intended (a tiny smoke "
        "test), turn the guard off for this test: @pytest.mark.finetune(collapse_guard=False)",
    }.get(entry.outcome, f"if this change is intended, raise or lower the baseline: {record_command}")
    return "\n".join([head, "", *verdict_lines(entry.verdict), "", advice])


def pass_note(entry: ReportEntry) -> str | None:
    """The one line a passing test gets in the summary when there is something to say."""
    changed = entry.verdict is not None and entry.verdict.recipe_changes
    if entry.outcome in ("passed", "improved") and changed:
        assert entry.verdict is not None
        command = entry.record_command or "pytest --finetune --snapshot-update"
        return f"{entry.verdict.headline}: record the new recipe with: {command}"
    if entry.outcome == "improved":
        return "improved: run with --snapshot-update to raise the baseline"
    if entry.outcome == "recorded":
        return f"baseline recorded: {entry.baseline_shown}"
    if entry.recorded_over_regression:
        assert entry.verdict is not None
        return f"baseline recorded over a regression ({entry.verdict.headline}): {entry.baseline_shown}"
    if entry.outcome == "updated":
        return f"baseline updated: {entry.baseline_shown}"
    return None


def history_lines(record: dict[str, Any]) -> list[str]:
    """The seed's per-epoch table: epoch, training loss, validation loss and the scores."""
    history = record.get("history") or []
    if not history:
        return []
    scores = epoch_scores(history)
    headers = ("epoch", "training loss", "validation loss", *scores)
    rows = [
        (
            f"{row['epoch']:.2f}",
            "no log" if row["training_loss"] is None else f"{row['training_loss']:.4f}",
            f"{row['validation_loss']:.4f}",
            *(_number(row.get(key)) for key in scores),  # a hook metric may come at some evaluations only
        )
        for row in history
    ]
    return _aligned(headers, rows, right=range(len(headers)))


def epoch_scores(history: Sequence[dict[str, Any]]) -> list[str]:
    """The scores of a seed's per-epoch history (accuracy, f1, hook metrics): its keys beside epoch, step and losses."""
    fixed = ("epoch", "step", "training_loss", "validation_loss")
    return list(dict.fromkeys(key for row in history for key in row if key not in fixed))


# ---------------------------------------------------------------- the session


def summary_lines(entries: Sequence[ReportEntry], *, verbose: bool) -> list[str]:
    """The end-of-session table: test, model, gated metrics against the baseline, verdict, train time; then a line
    for each pass note and each verdict note (another device, say)."""
    metrics = gated_metrics(entries)
    rows = [summary_row(entry, metrics) for entry in entries]
    lines = _aligned(("test", "model", *metrics, "verdict", "train"), rows, right=range(2, 3 + len(metrics)))
    lines += [classes] if (classes := hardware_classes_line(entries)) else []
    for entry in entries:
        note = pass_note(entry)
        if note:
            lines.append(f"{entry.nodeid}: {note}")
        lines += [f"{entry.nodeid}: note: {note}" for note in _notes(entry)]
    over = [entry.nodeid for entry in entries if entry.recorded_over_regression]
    if over:
        lines.append(f"recorded over a regression (review the baselines' diff): {', '.join(over)}")
    if verbose:
        for entry in entries:
            table = history_lines(entry.record or {})
            if table:
                lines += ["", f"{entry.nodeid}: per-epoch history", *table]
    return lines


def summary_row(entry: ReportEntry, metrics: Sequence[str]) -> tuple[str, ...]:
    """``entry``'s cells of the end-of-session table: test, model, each of ``metrics`` against the baseline,
    verdict, train time."""
    return (
        entry.nodeid,
        str((entry.record or {}).get("recipe", {}).get("model", "-")),
        *(_against_baseline(entry, name) for name in metrics),
        verdict_cell(entry),
        _train_time(entry),
    )


def report_json(entries: Sequence[ReportEntry]) -> str:
    """The session's entries as JSON (``--finetune-report``)."""
    tests = [
        {
            "test": entry.nodeid,
            "outcome": entry.outcome,
            "failed": entry.failed,
            "warn_only": entry.warn_only,
            "cached": entry.cached,
            "shared_from": entry.shared_from,
            "compared": entry.compared,
            "baseline": entry.baseline,
            "hardware_class": entry.hardware_class,
            "message": entry.message,
            "metrics": {
                row.metric: {
                    "baseline": row.baseline,
                    "current": row.current,
                    "delta": row.delta,
                    "allowed": row.allowed,
                    "verdict": row.verdict,
                    "interval": row.interval,
                    "rules": list(row.rules),
                }
                for row in entry.rows
            },
            "paired_test": _paired_json(entry),
            "recipe_changes": (
                [dataclasses.asdict(change) for change in entry.verdict.recipe_changes] if entry.verdict else []
            ),
            "headline": entry.verdict.headline if entry.verdict else None,
            "not_comparable": entry.verdict.not_comparable if entry.verdict else None,
            "recorded_over_regression": entry.recorded_over_regression,
            "notes": list(entry.verdict.notes) if entry.verdict else [],
            "record": entry.record,
        }
        for entry in entries
    ]
    summary: dict[str, int] = {}
    for entry in entries:
        summary[entry.outcome] = summary.get(entry.outcome, 0) + 1
    over = [entry.nodeid for entry in entries if entry.recorded_over_regression]
    report = finite_json({"summary": summary, "recorded_over_regression": over, "tests": tests})
    return json.dumps(report, indent=2, sort_keys=True, default=str, allow_nan=False) + "\n"


def finite_json(value: Any) -> Any:
    """``value`` (JSON-like: dicts, lists, tuples, numbers, ...) with each non-finite float
    (a diverged run's ``nan`` loss, say) as ``None``: JSON has no NaN, and strict parsers refuse it."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(item) for item in value]
    return value


def _paired_json(entry: ReportEntry) -> dict[str, Any] | None:
    paired = entry.verdict.paired if entry.verdict else None
    if paired is None:
        return None
    return {**dataclasses.asdict(paired), "significantly_worse": paired.significantly_worse}


def report_markdown(entries: Sequence[ReportEntry]) -> str:
    """The session's entries as Markdown for a CI job summary (``--finetune-report-md``)."""
    metrics = gated_metrics(entries)
    failed = sum(entry.failed for entry in entries)
    warned = sum(entry.warn_only for entry in entries)
    lines = [
        "## Fine-tuning baselines",
        "",
        f"{len(entries)} test(s), {failed} failed" + (f", {warned} would fail (warn-only)." if warned else "."),
        *([classes] if (classes := hardware_classes_line(entries)) else []),
        "",
        _markdown_row(("test", "model", *metrics, "verdict", "train")),
        _markdown_row(("---", "---", *("---:" for _ in metrics), "---", "---:")),
    ]
    for entry in entries:
        model = str((entry.record or {}).get("recipe", {}).get("model", "-"))
        verdict = (
            f"**{verdict_cell(entry)}**"
            if entry.failed or entry.warn_only or entry.recorded_over_regression
            else verdict_cell(entry)
        )
        cells = (f"`{entry.nodeid}`", model, *(_against_baseline(entry, name) for name in metrics))
        lines.append(_markdown_row((*cells, verdict, _train_time(entry))))
    # the notes that no section's verdict table shows
    notes = [f"- `{e.nodeid}`: note: {note}" for e in entries if e.message or not _sectioned(e) for note in _notes(e)]
    lines += ["", *notes] if notes else []
    for entry in entries:
        if _sectioned(entry):
            outcome = "recorded over a regression" if entry.recorded_over_regression else entry.outcome
            lines += ["", f"### `{entry.nodeid}`: {outcome}", ""]
            if entry.message:
                lines += ["```", entry.message, "```"]
            elif entry.verdict:
                lines += ["```", *verdict_lines(entry.verdict), "```"]
    return "\n".join(lines) + "\n"


def hardware_classes_line(entries: Sequence[ReportEntry]) -> str | None:
    """``baselines per hardware class: compared with the entries of cpu-amd-avx2-fp32 (2 tests)``, or ``None`` where
    no test compared one."""
    counts: dict[str, int] = {}
    for entry in entries:
        if entry.hardware_class is not None:
            counts[entry.hardware_class] = counts.get(entry.hardware_class, 0) + 1
    if not counts:
        return None
    said = ", ".join(f"{name} ({count} test{'s' if count > 1 else ''})" for name, count in sorted(counts.items()))
    return f"baselines per hardware class: the entries of {said}"


def _sectioned(entry: ReportEntry) -> bool:
    """Whether the Markdown report gives ``entry`` a section of its own: its message, else its verdict table."""
    changed = entry.verdict is not None and bool(entry.verdict.recipe_changes)
    return entry.failed or entry.warn_only or entry.outcome == "improved" or changed


def _notes(entry: ReportEntry) -> tuple[str, ...]:
    """The notes of ``entry``'s verdict (none without one)."""
    return entry.verdict.notes if entry.verdict else ()


def junit_properties(entry: ReportEntry) -> list[tuple[str, Any]]:
    """``(name, value)`` pairs for ``item.user_properties``: they become JUnit XML ``<property>`` tags."""
    properties: list[tuple[str, Any]] = [(OUTCOME_PROPERTY, entry.outcome)]
    if entry.verdict is not None and (entry.verdict.recipe_changes or entry.verdict.not_comparable):
        properties.append(("finetune.verdict", entry.verdict.headline))
    if entry.recorded_over_regression:
        properties.append(("finetune.recorded_over_regression", True))
    if entry.hardware_class is not None:
        properties.append(("finetune.hardware_class", entry.hardware_class))
    for row in entry.rows:
        properties.append((f"finetune.{row.metric}", row.current))
        if row.baseline is not None:
            properties.append((f"finetune.{row.metric}.baseline", row.baseline))
    return properties


# ---------------------------------------------------------------- formatting


def metric_cells(rows: Iterable[MetricRow]) -> list[tuple[str, ...]]:
    """The cells of a verdict table's metric rows: metric, baseline, current, delta, allowed, verdict."""
    return [
        (
            row.metric,
            _number(row.baseline),
            _with_interval(row),
            "-" if row.delta is None else f"{row.delta:+.4f}",
            "-" if row.allowed is None else f"{row.allowed:.4f}",
            row.verdict_said,
        )
        for row in rows
    ]


def gated_metrics(entries: Sequence[ReportEntry]) -> list[str]:
    """The metrics with a tolerance in any of ``entries``, in the order they first come."""
    names: list[str] = []
    for entry in entries:
        names += [name for name in entry.gated if name not in names]
    return names


def verdict_cell(entry: ReportEntry) -> str:
    """The outcome, with the recipe keys that changed (``passed (recipe: learning_rate, data)``) and a
    baseline recorded over a regression said."""
    cell = "updated over a regression" if entry.recorded_over_regression else entry.outcome
    cell += " (warn-only)" if entry.warn_only else ""
    if entry.verdict is None or not entry.verdict.recipe_changes:
        return cell
    keys = ", ".join(change.key.removeprefix("training_args.") for change in entry.verdict.recipe_changes)
    return f"{cell} (recipe: {keys})"


def _against_baseline(entry: ReportEntry, metric: str) -> str:
    row = next((row for row in entry.rows if row.metric == metric), None)
    if row is None or row.current is None:
        return "-"
    if row.delta is None:
        return _with_interval(row)
    return f"{_with_interval(row)} ({row.delta:+.4f})"


def _with_interval(row: MetricRow) -> str:
    """The current value, with its bootstrap interval where known: ``0.8186 [0.780, 0.855]``."""
    if row.current is None:
        return "-"
    if row.interval is None:
        return f"{row.current:.4f}"
    return f"{row.current:.4f} [{row.interval[0]:.3f}, {row.interval[1]:.3f}]"


def _train_time(entry: ReportEntry) -> str:
    """The seconds the test's fine-tune took; ``shared`` when its result is another test's of this
    session (that test shows the time), ``cached`` when the result cache served it."""
    if entry.shared_from is not None:
        return "shared"
    if entry.cached:
        return "cached"
    runtime = (entry.record or {}).get("train_runtime")
    return "-" if runtime is None else f"{runtime:.0f} s"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _text(value: Any) -> str:
    return "(absent)" if value is None else str(value)


def _aligned(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Iterable[int] = range(1, 5)) -> list[str]:
    """``headers`` and ``rows`` as text columns, the ``right`` ones right-aligned."""
    right = set(right)
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]

    def line(cells: Sequence[str]) -> str:
        padded = [
            str(cell).rjust(width) if index in right else str(cell).ljust(width)
            for index, (cell, width) in enumerate(zip(cells, widths, strict=False))
        ]
        return "  ".join(padded).rstrip()

    return [line(headers), *(line(row) for row in rows)]


def _markdown_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"
