"""The HTML report (``--finetune-html``): one self-contained page, inline CSS and SVG, no script, nothing fetched.

It shows the verdict table, then per test its comparison, its seed's per-epoch losses and scores, and, from the
history file (``--finetune-history``), each gated metric's value across the recorded runs with the baseline and
the tolerance either side of it. Every text that comes from a test, a recipe or a file is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import Any, NamedTuple

from .report import ReportEntry, epoch_scores, gated_metrics, metric_cells, pass_note, summary_row, verdict_cell

#: The chart's size and the margins around its plot, in SVG units.
_WIDTH, _HEIGHT = 440, 230
_LEFT, _RIGHT, _TOP, _BOTTOM = 52, 14, 12, 40
#: The colours of the curves, taken in turn (CSS classes ``c0`` to ``c5``).
_PALETTE = ("#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2")

_CSS = """
:root { color-scheme: light; --ink: #1f2937; --muted: #6b7280; --line: #e5e7eb; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       margin: 0 auto; padding: 24px 32px; max-width: 1240px; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 0 0 8px; display: flex; gap: 10px; align-items: center; flex-wrap: wrap; }
h2 code { font-size: 15px; }
p.counts { color: var(--muted); margin: 0 0 16px; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 13px; }
th, td { padding: 5px 9px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { font-weight: 600; color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
code { font: 13px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.verdict { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600;
           background: #dcfce7; color: #166534; white-space: nowrap; }
.verdict.bad { background: #fee2e2; color: #991b1b; }
.verdict.warn { background: #fef3c7; color: #92400e; }
section.test { border: 1px solid var(--line); border-radius: 8px; padding: 16px 18px; margin: 18px 0; }
section.test.bad { border-left: 4px solid #dc2626; }
section.test.warn { border-left: 4px solid #d97706; }
p.headline, p.note { margin: 4px 0; }
p.note { color: var(--muted); }
div.scroll { overflow-x: auto; }
pre { background: #f9fafb; border: 1px solid var(--line); padding: 10px; overflow-x: auto; white-space: pre-wrap; }
.charts { display: flex; flex-wrap: wrap; gap: 12px 28px; }
figure.chart { margin: 6px 0; flex: 1 1 400px; max-width: 560px; }
figcaption { font-weight: 600; font-size: 13px; }
svg { display: block; overflow: visible; width: 100%; height: auto; }
svg text { font: 11px system-ui, sans-serif; fill: var(--muted); }
svg .axis { stroke: #9ca3af; }
svg .grid { stroke: #f0f1f3; }
svg path.curve { fill: none; stroke-width: 2; }
svg .baseline { stroke: #111827; stroke-dasharray: 5 4; }
svg .band { fill: #16a34a; fill-opacity: .12; }
ul.legend { list-style: none; display: flex; flex-wrap: wrap; gap: 4px 14px; padding: 0; margin: 2px 0 0 52px;
            font-size: 12px; color: var(--muted); }
.swatch { display: inline-block; width: 14px; height: 3px; vertical-align: middle; margin-right: 5px; }
.swatch.baseline { border-top: 2px dashed #111827; height: 0; }
.swatch.band { background: #16a34a; opacity: .3; height: 10px; }
""" + "".join(
    f"svg .c{index} {{ stroke: {colour}; fill: {colour}; }} .swatch.c{index} {{ background: {colour}; }}\n"
    for index, colour in enumerate(_PALETTE)
)


class Curve(NamedTuple):
    """One line of a chart: its name, its ``(x, y)`` points in the order of ``x``, and what each point's tooltip
    says before the value (by default the x axis's name and ``x``)."""

    name: str
    points: list[tuple[float, float]]
    labels: Sequence[str] = ()


class Band(NamedTuple):
    """A trend chart's baseline, and the tolerance either side of it (``None`` where there is none)."""

    baseline: float
    allowed: float | None


def report_html(entries: Sequence[ReportEntry], history: Sequence[dict[str, Any]] | None = None) -> str:
    """The session's ``entries`` as one HTML page; ``history`` (the history file's lines) adds the trend charts."""
    metrics = gated_metrics(entries)
    failed = sum(entry.failed for entry in entries)
    headers = ("test", "model", *metrics, "verdict", "train")
    rows = []
    for number, entry in enumerate(entries):
        test, model, *against, _, train = summary_row(entry, metrics)
        cells = [f'<td><a href="#test-{number}"><code>{escape(test)}</code></a></td>', _cell(model)]
        cells += [*(_cell(cell, True) for cell in against), f"<td>{_badge(entry)}</td>", _cell(train, True)]
        rows.append(f'<tr data-outcome="{escape(entry.outcome)}">{"".join(cells)}</tr>')
    body = (
        f'<div class="scroll">{_table(headers, rows, numeric=range(2, len(headers)))}</div>'
        if entries
        else "<p>No fine-tuning test ran in this session.</p>"
    )
    sections = "".join(_section(number, entry, history or ()) for number, entry in enumerate(entries))
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<link rel="icon" href="data:,">\n<title>Fine-tuning baselines</title>\n'
        f"<style>{_CSS}</style>\n</head>\n<body>\n<h1>Fine-tuning baselines</h1>\n"
        f'<p class="counts">{len(entries)} test(s), {failed} failed</p>\n{body}\n{sections}</body>\n</html>\n'
    )


def _section(number: int, entry: ReportEntry, history: Sequence[dict[str, Any]]) -> str:
    """One test: its verdict, what the comparison found, its per-epoch charts and its gated metrics' trends."""
    parts = [f"<h2><code>{escape(entry.nodeid)}</code> {_badge(entry)}</h2>"]
    if entry.message:
        parts.append(f"<pre>{escape(entry.message)}</pre>")
    verdict = entry.verdict
    if verdict is not None and (verdict.recipe_changes or verdict.not_comparable or verdict.collapsed):
        parts.append(f'<p class="headline">{escape(verdict.headline)}</p>')
    if verdict is not None and verdict.recipe_changes:
        changes = [
            f"<tr>{_cell(change.key)}{_cell(str(change.baseline))}{_cell(str(change.current))}</tr>"
            for change in verdict.recipe_changes
        ]
        parts.append(_table(("recipe key", "baseline", "current"), changes))
    if entry.rows:
        cells = metric_cells(entry.rows)
        rows = [f"<tr>{''.join(_cell(cell, 0 < i < 5) for i, cell in enumerate(row))}</tr>" for row in cells]
        parts.append(_table(("metric", "baseline", "current", "delta", "allowed", "verdict"), rows, range(1, 5)))
    if verdict is not None and verdict.paired is not None:
        parts.append(f'<p class="note">{escape(verdict.paired.describe())}</p>')
    notes = [pass_note(entry), *(verdict.notes if verdict else ())]
    parts += [f'<p class="note">{escape(note)}</p>' for note in notes if note]
    charts = _epoch_charts((entry.record or {}).get("history") or []) + _trend_charts(entry, history)
    if charts:
        parts.append(f'<div class="charts">{"".join(charts)}</div>')
    return f'<section class="test {_tone(entry)}" id="test-{number}">{"".join(parts)}</section>\n'


def _epoch_charts(history: Sequence[dict[str, Any]]) -> list[str]:
    """The losses and the scores of the seed's per-epoch history, each a chart against the epoch."""

    def curve(name: str, key: str) -> Curve:
        return Curve(name, [(row["epoch"], value) for row in history if (value := _finite(row.get(key))) is not None])

    losses = [curve("training loss", "training_loss"), curve("validation loss", "validation_loss")]
    scores = [curve(name, name) for name in epoch_scores(history)]
    charts = [_chart("Loss per epoch", losses, "epoch"), _chart("Scores per epoch", scores, "epoch")]
    return [chart for chart in charts if chart]


def _trend_charts(entry: ReportEntry, history: Sequence[dict[str, Any]]) -> list[str]:
    """Per gated metric, its value in each of the test's runs the history holds (two at least), against the
    baseline this session compared with and its tolerance."""
    runs = [line for line in history if line.get("test") == entry.nodeid and isinstance(line.get("metrics"), dict)]
    if len(runs) < 2:
        return []
    rows = {row.metric: row for row in entry.rows}
    charts = []
    for metric in entry.gated:
        values = [(n, _finite(run["metrics"].get(metric)), run) for n, run in enumerate(runs, start=1)]
        points = [(float(n), value) for n, value, _ in values if value is not None]
        labels = [
            f"run {n}, {run.get('time')}, commit {str(run.get('commit'))[:12]}" for n, v, run in values if v is not None
        ]
        row = rows.get(metric)
        baseline = None if row is None else _finite(row.baseline)
        band = None if row is None or baseline is None else Band(baseline, _finite(row.allowed))
        title = f"{metric} across {len(runs)} runs"
        charts.append(_chart(title, [Curve(metric, points, labels)], "run", band, whole_x=True))
    return [chart for chart in charts if chart]


def _chart(
    title: str,
    curves: Sequence[Curve],
    x_label: str,
    band: Band | None = None,
    *,
    whole_x: bool = False,
) -> str:
    """A line chart as an inline SVG figure: one ``<path>`` per curve with a marker per point, axes with ticks
    (whole numbers on the x axis where ``whole_x``), a legend; a :class:`Band` draws the baseline dashed and the
    tolerance as a shaded band. Empty without points."""
    curves = [curve for curve in curves if curve.points]
    if not curves:
        return ""
    xs = [x for curve in curves for x, _ in curve.points]
    ys = [y for curve in curves for _, y in curve.points]
    if band is not None:
        ys += [band.baseline] + (
            [] if band.allowed is None else [band.baseline - band.allowed, band.baseline + band.allowed]
        )
    x_lo, x_hi = _padded(min(xs), max(xs))
    y_lo, y_hi = _padded(min(ys), max(ys))
    plot_w, plot_h = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM

    def px(x: float) -> float:
        return _LEFT + (x - x_lo) / (x_hi - x_lo) * plot_w

    def py(y: float) -> float:
        return _TOP + (y_hi - y) / (y_hi - y_lo) * plot_h

    bottom = _TOP + plot_h
    parts = []
    for tick, label in _ticks(y_lo, y_hi):
        parts.append(
            f'<line class="grid" x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" y1="{py(tick):.1f}" y2="{py(tick):.1f}"/>'
        )
        parts.append(f'<text x="{_LEFT - 6}" y="{py(tick) + 4:.1f}" text-anchor="end">{label}</text>')
    for tick, label in _ticks(x_lo, x_hi, whole=whole_x):
        parts.append(f'<line class="axis" x1="{px(tick):.1f}" x2="{px(tick):.1f}" y1="{bottom}" y2="{bottom + 4}"/>')
        parts.append(f'<text x="{px(tick):.1f}" y="{bottom + 16}" text-anchor="middle">{label}</text>')
    parts.append(f'<line class="axis" x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" y1="{bottom}" y2="{bottom}"/>')
    parts.append(f'<line class="axis" x1="{_LEFT}" x2="{_LEFT}" y1="{_TOP}" y2="{bottom}"/>')
    parts.append(f'<text x="{_LEFT + plot_w / 2:.1f}" y="{_HEIGHT - 4}" text-anchor="middle">{escape(x_label)}</text>')
    legend = []
    if band is not None:
        if band.allowed is not None:
            top, low = py(band.baseline + band.allowed), py(band.baseline - band.allowed)
            parts.append(f'<rect class="band" x="{_LEFT}" y="{top:.1f}" width="{plot_w}" height="{low - top:.1f}"/>')
            legend.append(f'<li><span class="swatch band"></span>tolerance ±{band.allowed:.4g}</li>')
        y = py(band.baseline)
        parts.append(f'<line class="baseline" x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        legend.insert(0, f'<li><span class="swatch baseline"></span>baseline {band.baseline:.4f}</li>')
    for index, curve in enumerate(curves):
        colour = f"c{index % len(_PALETTE)}"
        path = " ".join(f"{'L' if i else 'M'}{px(x):.1f},{py(y):.1f}" for i, (x, y) in enumerate(curve.points))
        parts.append(f'<path class="curve {colour}" data-name="{escape(curve.name)}" d="{path}"/>')
        labels = curve.labels or [f"{x_label} {x:g}" for x, _ in curve.points]
        for (x, y), label in zip(curve.points, labels, strict=True):
            parts.append(
                f'<circle class="{colour}" cx="{px(x):.1f}" cy="{py(y):.1f}" r="3">'
                f"<title>{escape(label)}: {escape(curve.name)} {y:.4f}</title></circle>"
            )
        legend.insert(index, f'<li><span class="swatch {colour}"></span>{escape(curve.name)}</li>')
    return (
        f'<figure class="chart"><figcaption>{escape(title)}</figcaption>'
        f'<svg width="{_WIDTH}" height="{_HEIGHT}" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" '
        f'aria-label="{escape(title)}">{"".join(parts)}</svg><ul class="legend">{"".join(legend)}</ul></figure>'
    )


def _padded(low: float, high: float) -> tuple[float, float]:
    """The range of an axis showing ``low`` to ``high``, with a margin (one either side of a single value)."""
    margin = (high - low) * 0.08 if high > low else max(abs(low) * 0.05, 0.05)
    return low - margin, high + margin


def _ticks(low: float, high: float, *, whole: bool = False) -> list[tuple[float, str]]:
    """About five round values between ``low`` and ``high`` (whole numbers only where ``whole``), with their labels."""
    raw = (high - low) / 5
    power = 10 ** math.floor(math.log10(raw))
    step = next(power * factor for factor in (1, 2, 5, 10) if power * factor >= raw)
    step = max(step, 1.0) if whole else step
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    first = math.ceil(low / step - 1e-9)
    values = [index * step for index in range(first, math.floor(high / step + 1e-9) + 1)]
    return [(value, f"{value:.{decimals}f}") for value in values]


def _table(headers: Sequence[str], rows: Sequence[str], numeric: Sequence[int] | range = ()) -> str:
    """A table with ``headers`` (the ``numeric`` columns' right-aligned) above ``rows``, each a ``<tr>``."""
    heads = "".join(f'<th{" class=num" if i in numeric else ""}>{escape(h)}</th>' for i, h in enumerate(headers))
    return f"<table><thead><tr>{heads}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _cell(text: str, numeric: bool = False) -> str:
    """A table cell holding ``text``, escaped; right-aligned where ``numeric``."""
    return f'<td class="num">{escape(text)}</td>' if numeric else f"<td>{escape(text)}</td>"


def _tone(entry: ReportEntry) -> str:
    """``bad`` for a failing test, ``warn`` for one warn-only mode passed or recorded over a regression, else ``ok``."""
    if entry.failed:
        return "bad"
    return "warn" if entry.warn_only or entry.recorded_over_regression else "ok"


def _badge(entry: ReportEntry) -> str:
    """The test's verdict cell (as the terminal table says it), coloured by :func:`_tone`."""
    return f'<span class="verdict {_tone(entry)}">{escape(verdict_cell(entry))}</span>'


def _finite(value: Any) -> float | None:
    """``value`` as a float where it is a finite number, else ``None``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)
