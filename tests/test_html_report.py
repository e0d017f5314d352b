"""The HTML report (--finetune-html) as users run it: the page in a real browser (Debian's headless Chromium
driven by Playwright: rows, verdicts, one SVG path per curve, the history's trends, no console error, no request
beyond the file), and without one: escaping, unwritable paths, a session with nothing to fine-tune."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import QUALITY_TEST, make_rows, open_offline

from pytest_finetune.html_report import report_html
from pytest_finetune.report import ReportEntry
from pytest_finetune.verdicts import MetricRow, Outcome, Verdict

#: Two tests that share one fine-tune; the second's id holds markup, which the page must show as written.
TWO_TESTS = """
import pytest

@pytest.mark.finetune
def test_steady():
    pass

@pytest.mark.parametrize("case", ["<i>x&y</i>"])
@pytest.mark.finetune
def test_regressing(case):
    pass
"""
REGRESSING = "test_two.py::test_regressing[<i>x&y</i>]"


@pytest.fixture
def two_epochs(pytester: pytest.Pytester, tiny_checkpoint: Path, glue_folder: Callable[..., Path]) -> pytest.Pytester:
    """A project whose recipe trains the tiny checkpoint for two short epochs: two points on each per-epoch curve."""
    pytester.makeini(f"""
        [pytest]
        finetune_model = {tiny_checkpoint}
        finetune_data = {glue_folder(train_rows=make_rows(16, seed=1))}
        finetune_training_args =
            num_train_epochs = 2
            per_device_eval_batch_size = 16
        """)
    return pytester


def points(path: str) -> int:
    """The points an SVG path's ``d`` draws: one per M or L command."""
    return len(re.findall(r"[ML]", path))


def test_the_page_shows_verdicts_curves_and_trends(two_epochs: pytest.Pytester, chromium: Any) -> None:
    two_epochs.makepyfile(test_two=TWO_TESTS)
    history = ("--finetune-history=history.jsonl",)
    first = two_epochs.runpytest("--finetune", "--snapshot-update", *history, "--finetune-html=first.html")
    first.assert_outcomes(passed=2)
    (baseline,) = (two_epochs.path / "baselines/test_two").glob("test_regressing*.json")
    record = json.loads(baseline.read_text())
    record["metrics"]["accuracy"] += 0.2  # the next run of test_regressing is a regression
    baseline.write_text(json.dumps(record))
    result = two_epochs.runpytest("--finetune", *history, "--finetune-report=r.json", "--finetune-html=out/r.html")
    result.assert_outcomes(passed=1, failed=1)
    tests = {test["test"]: test for test in json.loads((two_epochs.path / "r.json").read_text())["tests"]}

    page, problems = open_offline(chromium, two_epochs.path / "out/r.html")
    assert page.title() == "Fine-tuning baselines"
    assert page.locator("p.counts").inner_text() == "2 test(s), 1 failed"
    rows = page.locator("table").first.locator("tbody tr")
    verdicts = {
        rows.nth(i).locator("td").first.inner_text(): rows.nth(i).locator(".verdict").inner_text() for i in range(2)
    }
    assert verdicts == {
        "test_two.py::test_steady": "passed",
        REGRESSING: "regressed",  # the test's id shown as written, not as markup
    }
    assert page.locator("i").count() == 0
    assert page.locator("table").first.locator("thead th").all_inner_texts() == [
        "TEST",
        "MODEL",
        "ACCURACY",
        "F1",
        "VERDICT",
        "TRAIN",
    ]
    for test, entry in tests.items():
        section = page.locator("section.test", has=page.locator("h2 code", has_text=test))
        assert section.count() == 1
        epochs = entry["record"]["history"]
        assert len(epochs) == 2
        expected = {
            "Loss per epoch": {"training loss": "training_loss", "validation loss": "validation_loss"},
            "Scores per epoch": {name: name for name in ("accuracy", "f1")},
            "accuracy across 2 runs": {"accuracy": None},
            "f1 across 2 runs": {"f1": None},
        }
        figures = section.locator("figure.chart")
        assert figures.locator("figcaption").all_inner_texts() == list(expected)
        for caption, curves in expected.items():
            figure = figures.filter(has=page.locator("figcaption", has_text=caption))
            paths = figure.locator("path")  # one path per curve, nothing else drawn as one
            assert [paths.nth(i).get_attribute("data-name") for i in range(paths.count())] == list(curves)
            for i, key in enumerate(curves.values()):
                drawn = sum(row[key] is not None for row in epochs) if key else 2  # a trend: one point per run
                assert points(paths.nth(i).get_attribute("d") or "") == drawn
            trend = "runs" in caption
            assert figure.locator("line.baseline").count() == figure.locator("rect.band").count() == int(trend)
    regressing = page.locator("section.test", has=page.locator("h2 code", has_text=REGRESSING))
    assert regressing.get_attribute("class") == "test bad"
    metric_rows = regressing.locator("table tbody tr").all_inner_texts()
    assert any(row.startswith("accuracy") and row.endswith("regressed") for row in metric_rows)
    assert problems == []

    page, problems = open_offline(chromium, two_epochs.path / "first.html")
    assert page.locator("figure.chart figcaption").all_inner_texts() == ["Loss per epoch", "Scores per epoch"] * 2
    assert page.locator(".verdict").all_inner_texts() == ["recorded"] * 4  # the table's and the sections'
    assert problems == []


def test_every_text_from_a_test_or_file_is_escaped() -> None:
    row = MetricRow("<b>metric</b>", 0.5, 0.4, 0.01, "regressed", interval=(0.3, 0.5))
    entry = ReportEntry(
        nodeid="t.py::test[<script>alert(1)</script>]",
        outcome="regressed",
        baseline="baselines/x.json",
        gated=("<b>metric</b>",),
        verdict=Verdict(Outcome.REGRESSED, rows=(row,), notes=("a note & <u>more</u>",)),
        record={
            "recipe": {"model": "<img src=x onerror=alert(1)>"},
            "history": [{"epoch": 1.0, "step": 3, "training_loss": None, "validation_loss": 0.7, "<svg>": 0.5}],
        },
    )
    runs = [
        {"test": entry.nodeid, "time": "<t>", "commit": "<c>", "metrics": {"<b>metric</b>": value}}
        for value in (0.5, float("nan"), 0.4)
    ]
    page = report_html([entry], runs)
    assert not re.search(r"<(script|img|b|u|t|c)\b", page)
    assert "t.py::test[&lt;script&gt;alert(1)&lt;/script&gt;]" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and "a note &amp; &lt;u&gt;more&lt;/u&gt;" in page
    assert 'data-name="&lt;svg&gt;"' in page and "run 3, &lt;t&gt;, commit &lt;c&gt;" in page
    # an epoch without a training loss draws no training curve; the NaN run is left out of the trend
    curves = re.findall(r'<path class="curve c\d" data-name="([^"]*)" d="([^"]*)"', page)
    assert [(name, points(d)) for name, d in curves] == [
        ("validation loss", 1),
        ("&lt;svg&gt;", 1),
        ("&lt;b&gt;metric&lt;/b&gt;", 2),
    ]


@pytest.fixture
def project(finetune_project: pytest.Pytester) -> pytest.Pytester:
    """A project with one marked test whose baseline is recorded."""
    finetune_project.makepyfile(test_quality=QUALITY_TEST)
    finetune_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)
    return finetune_project


def test_an_unwritable_html_path_warns_and_changes_no_verdict(
    project: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "finetune.html"
    elsewhere.write_text("theirs")
    (project.path / "reports").write_text("a file where the folder should be")
    (project.path / "finetune.html").symlink_to(elsewhere)
    for path, said in (
        ("reports/finetune.html", "could not write */reports/finetune.html (*Error: *); nothing was written"),
        ("finetune.html", "refusing to write */finetune.html: the symbolic link * leads to *"),
    ):
        result = project.runpytest("--finetune", f"--finetune-html={path}")
        result.assert_outcomes(passed=1)
        assert result.ret == pytest.ExitCode.OK
        result.stdout.fnmatch_lines(
            [f"pytest-finetune: warning: HTML report: {said}*; the tests' verdicts are unchanged"]
        )
    assert elsewhere.read_text() == "theirs"


def test_under_xdist_the_controller_writes_the_page(project: pytest.Pytester) -> None:
    result = project.runpytest("--finetune", "-n", "2", "--finetune-html=r.html", "--finetune-history=h.jsonl")
    result.assert_outcomes(passed=1)
    page = (project.path / "r.html").read_text()
    assert page.count('<tr data-outcome="passed">') == 1 and '<section class="test ok" id="test-0">' in page


def test_a_session_without_fine_tuning_writes_the_page_where_the_ini_says(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeini("[pytest]\nfinetune_html = reports/finetune.html\n")
    pytester.makepyfile("def test_plain():\n    pass\n")
    monkeypatch.chdir(pytester.mkdir("sub"))  # the ini key is relative to the ini file, not to where pytest runs
    pytester.runpytest(str(pytester.path)).assert_outcomes(passed=1)
    page = (pytester.path / "reports/finetune.html").read_text()
    assert "<p>No fine-tuning test ran in this session.</p>" in page and "0 test(s), 0 failed" in page
