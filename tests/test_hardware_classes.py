"""Baselines per hardware class (``finetune_baseline_classes = hardware``): each class compares with and records its
own entry of a test's baseline file, keeps the others, and a baseline recorded with one entry per test goes on
working. The hardware is faked: the inner ``conftest.py`` replaces the machine part of the class."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest
from helpers import QUALITY_BASELINE as BASELINE
from helpers import QUALITY_TEST

from pytest_finetune.baselines.classes import CLASS_KEY, hardware_class, write_entry
from pytest_finetune.baselines.record import CLASSES, to_json

#: The inner sessions' hardware: the machine part of the class is ``$FAKE_MACHINE``.
FAKE_MACHINE = """
import os

import pytest

from pytest_finetune.baselines import classes


@pytest.fixture(autouse=True)
def _fake_machine(monkeypatch):
    monkeypatch.setattr(classes, "machine", lambda device: os.environ["FAKE_MACHINE"])
"""
ON = "finetune_baseline_classes = hardware\n"


@pytest.fixture
def project(finetune_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A project with one marked test, on the fake machine ``intel-avx512`` (no baseline recorded yet)."""
    finetune_project.makepyfile(test_quality=QUALITY_TEST)
    finetune_project.makeconftest(FAKE_MACHINE)
    monkeypatch.setenv("FAKE_MACHINE", "intel-avx512")
    return finetune_project


def switch_on(project: pytest.Pytester) -> None:
    """The one ini line that turns baselines per hardware class on."""
    ini = project.path / "tox.ini"  # pytester.makeini writes tox.ini
    ini.write_text(ini.read_text().rstrip("\n") + "\n" + ON)


def stored(project: pytest.Pytester) -> dict:
    return json.loads((project.path / BASELINE).read_text())


def rewrite(project: pytest.Pytester, data: dict) -> None:
    (project.path / BASELINE).write_text(to_json(data))


def test_off_by_default_a_file_of_classes_is_refused_and_kept(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Off (the default), a baseline is one record per test; a file of entries per class is not read as one, and
    ``--snapshot-update`` does not replace it with one record (which would drop every class's entry)."""
    project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)
    assert "metrics" in stored(project) and CLASSES not in stored(project)
    switch_on(project)
    project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)
    monkeypatch.setenv("FAKE_MACHINE", "amd-avx2")
    project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)
    text = (project.path / BASELINE).read_text()

    off = ("-o", "finetune_baseline_classes=none")
    result = project.runpytest("--finetune", *off)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*holds baselines per hardware class*finetune_baseline_classes = hardware*"])
    result = project.runpytest("--finetune", "--snapshot-update", *off)
    result.stdout.fnmatch_lines(["*refusing to write baselines/test_quality/test_quality.json: it holds *"])
    assert result.ret != 0
    assert (project.path / BASELINE).read_text() == text


def test_switching_on_compares_a_baseline_recorded_before_without_recording_it_again(
    project: pytest.Pytester,
) -> None:
    """The ini line alone: the baseline recorded with one entry per test is the entry of its own hardware class."""
    project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)
    text = (project.path / BASELINE).read_text()
    switch_on(project)

    result = project.runpytest("--finetune")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["baselines per hardware class: the entries of cpu-intel-avx512-fp32 (1 test)"])
    assert (project.path / BASELINE).read_text() == text

    legacy = stored(project)
    legacy["metrics"]["accuracy"] += 0.2  # the run is now 0.2 below it: compared, so it regressed
    rewrite(project, legacy)
    result = project.runpytest("--finetune")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*regressed against the baseline baselines/test_quality/test_quality.json (cpu-intel-avx512-fp32)*"]
    )


def test_each_class_records_and_compares_its_own_entry(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A class without an entry fails, naming the classes recorded and the command; recording it adds its entry
    and keeps the other's byte for byte; each class is then compared with its own."""
    switch_on(project)
    project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)
    first = stored(project)
    assert set(first) == {"format", CLASSES} and list(first[CLASSES]) == ["cpu-intel-avx512-fp32"]
    intel = to_json(first[CLASSES]["cpu-intel-avx512-fp32"])

    monkeypatch.setenv("FAKE_MACHINE", "amd-avx2")
    result = project.runpytest("--finetune")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*no baseline for this hardware (cpu-amd-avx2-fp32) in baselines/test_quality/test_quality.json: it holds "
            "cpu-intel-avx512-fp32; record it with: pytest --finetune --snapshot-update test_quality.py::test_quality"
        ]
    )
    reports = ("--finetune-report", "report.json", "--junitxml", "junit.xml")
    result = project.runpytest("--finetune", "--snapshot-update", *reports)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*baseline recorded: baselines/test_quality/test_quality.json (cpu-amd-avx2-fp32)"])
    assert json.loads((project.path / "report.json").read_text())["tests"][0]["hardware_class"] == "cpu-amd-avx2-fp32"
    assert (
        '<property name="finetune.hardware_class" value="cpu-amd-avx2-fp32"' in (project.path / "junit.xml").read_text()
    )
    both = stored(project)
    assert list(both[CLASSES]) == ["cpu-amd-avx2-fp32", "cpu-intel-avx512-fp32"]
    assert to_json(both[CLASSES]["cpu-intel-avx512-fp32"]) == intel
    assert both[CLASSES]["cpu-amd-avx2-fp32"]["environment"][CLASS_KEY] == "cpu-amd-avx2-fp32"

    both[CLASSES]["cpu-intel-avx512-fp32"]["metrics"]["accuracy"] += 0.2
    rewrite(project, both)
    project.runpytest("--finetune").assert_outcomes(passed=1)  # amd: its own entry
    monkeypatch.setenv("FAKE_MACHINE", "intel-avx512")
    project.runpytest("--finetune", "--finetune-report-md", "report.md").assert_outcomes(failed=1)
    markdown = (project.path / "report.md").read_text()
    assert "baselines per hardware class: the entries of cpu-intel-avx512-fp32 (1 test)" in markdown


def test_a_baseline_recorded_before_on_other_hardware_is_kept_beside(project: pytest.Pytester) -> None:
    """A baseline recorded with one entry per test on other hardware (another CPU capability) is no entry of this
    class: the run fails naming it, and recording adds this class's entry beside it, leaving it as it was. Recorded
    again on its own hardware, it becomes that class's entry."""
    project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)
    legacy = stored(project)
    legacy["environment"]["cpu_capability"] = "AVX512_OTHER"
    rewrite(project, legacy)
    switch_on(project)

    result = project.runpytest("--finetune")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*no baseline for this hardware (cpu-intel-avx512-fp32) in *: it holds one recorded before per-class "
            "baselines (device cpu, dtype float32, cpu_capability AVX512_OTHER); record it with: *"
        ]
    )
    project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)
    both = stored(project)
    assert {key: value for key, value in both.items() if key != CLASSES} == legacy
    assert list(both[CLASSES]) == ["cpu-intel-avx512-fp32"]

    legacy_here = stored(project)
    del legacy_here[CLASSES]
    own = both[CLASSES]["cpu-intel-avx512-fp32"]
    legacy_here["environment"]["cpu_capability"] = own["environment"]["cpu_capability"]
    legacy_here["metrics"]["accuracy"] += 0.2  # a change: --snapshot-update rewrites it as the class's entry
    rewrite(project, legacy_here)
    project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)
    assert set(stored(project)) == {"format", CLASSES}


@pytest.mark.parametrize(
    ("entries", "said"),
    [
        (
            {"cpu-amd-avx2-fp32": "RECORD"},
            'the hardware-class entry "cpu-amd-avx2-fp32" is not a baseline recorded '
            'on that class (its environment records "cpu-intel-avx512-fp32")',
        ),
        ({"Not A Class": "RECORD"}, 'the hardware-class entry "Not A Class" is not a baseline*'),
        (
            {"cpu-amd-avx2-fp32": [1, 2]},
            'the hardware-class entry "cpu-amd-avx2-fp32" is not a baseline*(its ' "environment records null)",
        ),
        ([], '"hardware_classes" is not an object of entries by hardware class*'),
    ],
)
def test_an_unknown_or_garbled_class_entry_is_refused_and_kept(
    project: pytest.Pytester, entries: object, said: str
) -> None:
    """An entry filed under a class it was not recorded on, a malformed class key, an entry that is no record, or
    entries that are no object: the test fails naming it, and ``--snapshot-update`` writes nothing over it."""
    switch_on(project)
    project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)
    record = stored(project)[CLASSES]["cpu-intel-avx512-fp32"]
    if isinstance(entries, dict):
        entries = {key: record if value == "RECORD" else value for key, value in entries.items()}
    rewrite(project, {"format": 1, CLASSES: entries})
    text = (project.path / BASELINE).read_text()

    result = project.runpytest("--finetune")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*baseline baselines/test_quality/test_quality.json: {said}*"])
    result = project.runpytest("--finetune", "--snapshot-update")
    result.stdout.fnmatch_lines([f"*{said}*nothing was written to it"])
    assert result.ret != 0
    assert (project.path / BASELINE).read_text() == text


def test_a_dict_of_metrics_is_refused_per_class(project: pytest.Pytester) -> None:
    """A dict of metrics records no hardware: with baselines per class, comparing one says what to do instead."""
    switch_on(project)
    project.makepyfile(test_quality="""
        import pytest

        @pytest.mark.finetune
        def test_quality(finetune_snapshot):
            assert {"accuracy": 0.5, "f1": 0.5} == finetune_snapshot
        """)
    result = project.runpytest("--finetune", "--snapshot-update")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*a dict of metrics records no hardware: compare the finetune_result fixture*"])
    assert not (project.path / BASELINE).exists()


def test_the_class_names_device_machine_dtype_and_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    """``DEVICE-MACHINE-DTYPE``: a CPU's vendor and best instruction set, a GPU's name; ``-xN`` for N processes;
    a ``WORLD_SIZE`` that is no count is refused."""
    import torch

    from pytest_finetune.baselines import classes
    from pytest_finetune.errors import FinetuneError

    monkeypatch.setattr(classes, "cpu_vendor", lambda: "AuthenticAMD")
    monkeypatch.setattr(classes, "cpu_flags", lambda: frozenset({"sse4_2", "avx2", "avx512f", "avx512_bf16"}))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: "NVIDIA H100 80GB HBM3")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert hardware_class({"device": "cpu", "dtype": "float32"}) == "cpu-amd-avx512_bf16-fp32"
    assert hardware_class({"device": "cuda", "dtype": "bfloat16"}) == "cuda-nvidia_h100_80gb_hbm3-bf16"
    monkeypatch.setattr(classes, "cpu_vendor", lambda: "GenuineIntel")
    monkeypatch.setattr(classes, "cpu_flags", lambda: frozenset({"sse4_2"}))
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert hardware_class({"device": "cpu", "dtype": "bfloat16"}) == "cpu-intel-other-bf16-x2"
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(FinetuneError, match="WORLD_SIZE='two' is not a number of processes"):
        hardware_class({"device": "cuda", "dtype": "bfloat16"})


def _record_class(path: Path, name: str, rounds: int) -> None:
    """Record the entry of class ``cpu-NAME-fp32`` in ``path``, ``rounds`` times."""
    for round_ in range(rounds):
        record = {"format": 1, "metrics": {"accuracy": round_ / rounds}, "environment": {CLASS_KEY: f"cpu-{name}-fp32"}}
        write_entry(path, to_json(record), path.parent, path.name)


def test_processes_of_several_classes_recording_one_file_keep_each_others_entries(tmp_path: Path) -> None:
    """Writers of different classes read, merge and replace the file under one lock: none loses another's entry."""
    path = tmp_path / "test_a.json"
    names = [f"m{number}" for number in range(6)]
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_record_class, args=(path, name, 30)) for name in names]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    entries = json.loads(path.read_text())[CLASSES]
    assert sorted(entries) == [f"cpu-{name}-fp32" for name in names]
    assert all(entry["metrics"]["accuracy"] == 29 / 30 for entry in entries.values())
    assert [file.name for file in tmp_path.iterdir()] == ["test_a.json"]  # no temporary file, no lock file
