"""Bad inputs (issue #5, hardening): each gives a message that names the thing and the fix, with
no Python traceback, and no stored baseline changes.

docs/errors.md lists each bad input's message, cause and fix; rows tested elsewhere: missing columns as unit tests
(tests/test_data.py), a checkpoint without weights (tests/test_plugin.py), malformed, incomplete
or NaN baselines, a diverged run under ``--snapshot-update`` and bad tolerances
(tests/test_baselines.py), most bad marker keywords (tests/test_plugin.py).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import transformers
from helpers import QUALITY_BASELINE as BASELINE
from helpers import QUALITY_TEST, assert_fails_clearly, make_rows, write_glue_tsv


def assert_no_traceback(result: pytest.RunResult) -> None:
    """Neither a traceback, an exception chain nor an internal error in the session's output."""
    for pattern in ("*Traceback*", "*During handling*", "*INTERNALERROR*"):
        result.stdout.no_fnmatch_line(pattern)
        result.stderr.no_fnmatch_line(pattern)


def files_under(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` with its bytes (hidden temporary files included)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def recorded(finetune_project: pytest.Pytester) -> pytest.Pytester:
    """A project with one marked test whose baseline is recorded."""
    finetune_project.makepyfile(test_quality=QUALITY_TEST)
    finetune_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)
    return finetune_project


# 1. Empty splits ---------------------------------------------------------------------------------


def _write_jsonl(path: Path, rows: list[tuple[int, str, str]]) -> None:
    path.write_text("".join(json.dumps({"sentence1": s1, "sentence2": s2, "label": y}) + "\n" for y, s1, s2 in rows))


@pytest.mark.parametrize(
    ("layout", "empty_split"),
    [("tsv", "train"), ("tsv", "validation"), ("csv", "train"), ("csv", "validation"), ("jsonl", "validation")],
)
def test_an_empty_split_fails_naming_the_split(
    finetune_project: pytest.Pytester, layout: str, empty_split: str
) -> None:
    folder = finetune_project.path / "data"
    folder.mkdir()
    for split, stem in (("train", "train"), ("validation", "dev")):
        rows = [] if split == empty_split else make_rows(6)
        if layout == "tsv":
            write_glue_tsv(folder / f"{stem}.tsv", rows)
        elif layout == "csv":
            lines = ["sentence1,sentence2,label"] + [f"{s1},{s2},{y}" for y, s1, s2 in rows]
            (folder / f"{stem}.csv").write_text("\n".join(lines) + "\n")
        else:
            _write_jsonl(folder / f"{stem}.jsonl", rows)
    finetune_project.makepyfile("def test_x(mrpc_dataset):\n    pass\n")
    result = finetune_project.runpytest(f"--finetune-data={folder}")
    assert_fails_clearly(result, f"*{folder}, {empty_split} split has no rows*")


# 2. Missing columns (unit tests of every column: tests/test_data.py::test_bad_local_data[csv-no-*]) --


def test_a_missing_column_fails_the_test_naming_it(finetune_project: pytest.Pytester) -> None:
    folder = finetune_project.path / "data"
    folder.mkdir()
    _write_jsonl(folder / "train.jsonl", make_rows(6))
    (folder / "dev.jsonl").write_text(json.dumps({"sentence1": "a cat", "label": 1}) + "\n")
    finetune_project.makepyfile("def test_x(mrpc_dataset):\n    pass\n")
    result = finetune_project.runpytest(f"--finetune-data={folder}")
    assert_fails_clearly(
        result,
        f"*{folder}, validation split: missing column(s) sentence2 (it has sentence1, label); "
        "the task 'mrpc' needs sentence1, sentence2, label",
    )


# 3. A checkpoint whose classification head has another number of labels ----------------------------


def save_head_checkpoint(tiny_checkpoint: Path, folder: Path, num_labels: int) -> Path:
    """``tiny_checkpoint`` with a trained-looking classification head of ``num_labels`` labels."""
    config = transformers.AutoConfig.from_pretrained(tiny_checkpoint, num_labels=num_labels)
    transformers.set_seed(0)
    transformers.BertForSequenceClassification(config).save_pretrained(folder)
    for file in tiny_checkpoint.iterdir():
        if file.name not in ("config.json", "model.safetensors"):
            shutil.copy(file, folder)
    return folder


def test_a_head_of_another_size_fails_naming_num_labels(
    finetune_project: pytest.Pytester, tiny_checkpoint: Path
) -> None:
    checkpoint = save_head_checkpoint(tiny_checkpoint, finetune_project.path / "mnli-head", num_labels=3)
    finetune_project.makepyfile("def test_x(model):\n    pass\n")
    result = finetune_project.runpytest(f"--finetune-model={checkpoint}")
    assert_fails_clearly(
        result,
        f"*checkpoint folder '{checkpoint}' has a classification head for num_labels=3 "
        "(classifier.bias: * in the checkpoint, 2 needed; classifier.weight: * in the checkpoint, 2x32 needed); "
        "the task 'mrpc' needs num_labels=2: *ignore_mismatched_sizes=True*",
    )


def test_a_head_of_the_right_size_loads(finetune_project: pytest.Pytester, tiny_checkpoint: Path) -> None:
    checkpoint = save_head_checkpoint(tiny_checkpoint, finetune_project.path / "two-labels", num_labels=2)
    finetune_project.makepyfile("def test_x(model):\n    assert model.config.num_labels == 2\n")
    finetune_project.runpytest(f"--finetune-model={checkpoint}").assert_outcomes(passed=1)


def test_weights_that_do_not_fit_their_config_are_not_reinitialised(
    finetune_project: pytest.Pytester, tiny_checkpoint: Path
) -> None:
    checkpoint = finetune_project.path / "edited-config"
    shutil.copytree(tiny_checkpoint, checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    (checkpoint / "config.json").write_text(json.dumps(config | {"intermediate_size": 40}))  # the weights have 37
    finetune_project.makepyfile("def test_x(model):\n    pass\n")
    result = finetune_project.runpytest(f"--finetune-model={checkpoint}")
    assert_fails_clearly(
        result,
        f"*checkpoint folder '{checkpoint}' holds weights whose shapes do not match its config.json "
        "(bert.encoder.layer.0.intermediate.dense.bias: * in the checkpoint, 40 needed; *); "
        "point model at a checkpoint folder that save_pretrained wrote",
    )


# 4. A checkpoint folder without weights (also tests/test_plugin.py::test_incomplete_checkpoint_folder_fails_the_test)


def test_a_checkpoint_without_weights_says_what_is_missing(
    finetune_project: pytest.Pytester, tiny_checkpoint: Path
) -> None:
    folder = finetune_project.path / "no-weights"
    shutil.copytree(tiny_checkpoint, folder, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    finetune_project.makepyfile("def test_x(tokenizer, model):\n    pass\n")
    result = finetune_project.runpytest(f"--finetune-model={folder}")
    assert_fails_clearly(result, f"*could not load the model of checkpoint folder '{folder}' (OSError: *")
    result.stdout.fnmatch_lines(["*point model at a folder that save_pretrained wrote*"])


# 5 and 6. A baseline folder that cannot be written; a full disk while writing a baseline ----------------

# A read-only folder, for root too (chmod does not stop root): creating the temporary file is refused.
READ_ONLY_CONFTEST = """
import errno, os, types
import pytest
from pytest_finetune import storage

@pytest.fixture(autouse=True)
def _read_only_baselines(monkeypatch):
    def mkstemp(*args, dir=None, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), dir)

    monkeypatch.setattr(storage, "tempfile", types.SimpleNamespace(mkstemp=mkstemp))
"""
# A full disk: the new file's bytes are written, then the disk refuses them (fsync).
FULL_DISK_CONFTEST = """
import errno, os
import pytest
from pytest_finetune import storage

@pytest.fixture(autouse=True)
def _full_disk(monkeypatch):
    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(storage.os, "fsync", fsync)
"""


def make_update_rewrite(project: pytest.Pytester) -> dict[str, bytes]:
    """Move the recorded baseline so that ``--snapshot-update`` rewrites it; the baseline files as they are."""
    record = json.loads((project.path / BASELINE).read_text())
    record["metrics"]["accuracy"] = round(record["metrics"]["accuracy"] - 0.3, 6)
    (project.path / BASELINE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return files_under(project.path / "baselines")


def chmod_protects(folder: Path) -> bool:
    """Whether a folder chmod'ed read-only refuses new files: not for root (uid 0 with CAP_DAC_OVERRIDE)."""
    probe = folder / "chmod-probe"
    probe.mkdir()
    probe.chmod(0o555)
    try:
        (probe / "file").touch()
    except PermissionError:
        return True
    finally:
        probe.chmod(0o755)
        shutil.rmtree(probe)
    return False


@pytest.mark.skipif(
    os.geteuid() == 0 and not chmod_protects(Path(tempfile.gettempdir())),
    reason="running as root: chmod cannot make a folder unwritable for root",
)
def test_an_unwritable_baseline_folder_fails_the_test_and_keeps_the_baseline(recorded: pytest.Pytester) -> None:
    before = make_update_rewrite(recorded)
    folder = recorded.path / BASELINE.parent
    folder.chmod(0o555)
    try:
        result = recorded.runpytest("--finetune", "--snapshot-update")
    finally:
        folder.chmod(0o755)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            f"*test_quality.py::test_quality: could not write {recorded.path / BASELINE} (PermissionError: "
            f"Permission denied); the old file is unchanged; make {folder} writable and run again"
        ]
    )
    assert_no_traceback(result)
    assert files_under(recorded.path / "baselines") == before


@pytest.mark.parametrize(
    ("conftest", "problem", "fix"),
    [
        (READ_ONLY_CONFTEST, "PermissionError: Permission denied", "make {folder} writable and run again"),
        (FULL_DISK_CONFTEST, "OSError: No space left on device", "free space on the disk that holds {folder}*"),
    ],
    ids=["read-only-folder", "full-disk"],
)
def test_a_failed_baseline_write_names_the_file_and_keeps_the_old_one(
    recorded: pytest.Pytester, conftest: str, problem: str, fix: str
) -> None:
    before = make_update_rewrite(recorded)
    folder = recorded.path / BASELINE.parent
    recorded.makeconftest(conftest)
    result = recorded.runpytest("--finetune", "--snapshot-update")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            f"*test_quality.py::test_quality: could not write {recorded.path / BASELINE} ({problem}); "
            f"the old file is unchanged; {fix.format(folder=folder)}"
        ]
    )
    result.stdout.no_fnmatch_line("*baseline updated*")
    assert_no_traceback(result)
    assert files_under(recorded.path / "baselines") == before  # same bytes, no temporary file left


def test_a_full_disk_while_recording_writes_nothing(finetune_project: pytest.Pytester) -> None:
    finetune_project.makepyfile(test_quality=QUALITY_TEST)
    finetune_project.makeconftest(FULL_DISK_CONFTEST)
    result = finetune_project.runpytest("--finetune", "--snapshot-update")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [f"*test_quality: could not write {finetune_project.path / BASELINE} (OSError: *); nothing was written; *"]
    )
    assert_no_traceback(result)
    assert files_under(finetune_project.path / "baselines") == {}


# syrupy removes unused baselines at the end of an update session; here the folder refuses it.
UNLINK_REFUSED_CONFTEST = """
import errno, os, pathlib
import pytest

@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_sessionfinish(session):
    real = pathlib.Path.unlink

    def unlink(self, missing_ok=False):
        if self.suffix == ".json" and "baselines" in self.parts:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real(self, missing_ok=missing_ok)

    pathlib.Path.unlink = unlink
    try:
        return (yield)
    finally:
        pathlib.Path.unlink = real
"""


def test_an_unused_baseline_that_cannot_be_removed_fails_the_session_clearly(recorded: pytest.Pytester) -> None:
    stale = recorded.path / BASELINE.parent / "test_removed.json"
    shutil.copy(recorded.path / BASELINE, stale)
    before = files_under(recorded.path / "baselines")
    recorded.makeconftest(UNLINK_REFUSED_CONFTEST)
    result = recorded.runpytest("--finetune", "--snapshot-update")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            f"ERROR: pytest-finetune: could not change {stale} (PermissionError: Permission denied); it is unchanged; "
            f"make {stale.parent} writable and run again",
            "*1 passed*",
        ]
    )
    assert_no_traceback(result)
    assert files_under(recorded.path / "baselines") == before


def test_a_report_that_cannot_be_written_fails_the_session_clearly(recorded: pytest.Pytester) -> None:
    (recorded.path / "reports").write_text("a file where the report folder should be")
    result = recorded.runpytest("--finetune", "--finetune-report=reports/finetune.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [f"ERROR: could not write {recorded.path / 'reports/finetune.json'} (FileExistsError: *); nothing was written*"]
    )
    assert_no_traceback(result)


# 7. max_steps and num_train_epochs from different layers: a positive max_steps wins, as in transformers


STEPS_TEST = """
import json
import pytest

@pytest.mark.finetune({marker})
def test_steps(trainer, finetune_result):
    with open("steps.json", "w") as handle:
        json.dump({{"global_step": trainer.state.global_step, "history": finetune_result.history,
                   "training_args": dict(finetune_result.recipe.training_args)}}, handle)
"""


@pytest.mark.parametrize(
    ("ini", "marker", "cli", "steps"),
    [
        # 48 training pairs in batches of 8: 6 steps an epoch
        pytest.param("max_steps = 4", "num_train_epochs=2", None, 4, id="ini-max_steps-beats-marker-epochs"),
        pytest.param("num_train_epochs = 2", "max_steps=3", None, 3, id="marker-max_steps-beats-ini-epochs"),
        pytest.param("max_steps = 4", "num_train_epochs=1", "max_steps=-1", 6, id="cli-max_steps=-1-lets-epochs-count"),
        pytest.param("max_steps = 4", "max_steps=-1", "num_train_epochs=2", 12, id="epochs-when-no-layer-sets-steps"),
    ],
)
def test_max_steps_beats_num_train_epochs_whichever_layer_sets_them(
    pytester: pytest.Pytester,
    tiny_checkpoint: Path,
    glue_folder: Callable[..., Path],
    ini: str,
    marker: str,
    cli: str | None,
    steps: int,
) -> None:
    pytester.makeini(f"""
        [pytest]
        finetune_model = {tiny_checkpoint}
        finetune_data = {glue_folder()}
        finetune_training_args =
            {ini}
            per_device_eval_batch_size = 16
        """)
    pytester.makepyfile(test_steps=STEPS_TEST.format(marker=marker))
    args = ["--finetune", "--snapshot-update", *(["--finetune-set", cli] if cli else [])]
    pytester.runpytest(*args).assert_outcomes(passed=1)
    run = json.loads((pytester.path / "steps.json").read_text())
    assert run["global_step"] == steps
    assert run["history"][-1]["step"] == steps
    baseline = json.loads((pytester.path / "baselines/test_steps/test_steps.json").read_text())
    assert baseline["recipe"]["training_args"]["max_steps"] == run["training_args"]["max_steps"]
    assert baseline["recipe"]["training_args"]["num_train_epochs"] == run["training_args"]["num_train_epochs"]


# 8. Marker keywords of the wrong type:
#    tests/test_plugin.py::test_bad_marker_is_a_collection_error_naming_test_and_keyword


# 9. A diverged run (NaN metrics); a NaN metric under --snapshot-update without a baseline:
#    tests/test_baselines.py::test_a_diverged_run_fails_and_stores_nothing


def test_a_run_that_really_diverges_fails_and_leaves_its_baseline(recorded: pytest.Pytester) -> None:
    # a baseline of the diverging recipe (as if recorded before the run went wrong)
    record = json.loads((recorded.path / BASELINE).read_text())
    record["recipe"]["training_args"]["learning_rate"] = 1e30
    (recorded.path / BASELINE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    recorded.makepyfile(
        test_quality=QUALITY_TEST.replace("@pytest.mark.finetune", "@pytest.mark.finetune(learning_rate=1e30)")
    )
    before = files_under(recorded.path / "baselines")
    for args in (["--finetune"], ["--finetune", "--snapshot-update"]):
        result = recorded.runpytest(*args)
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(
            [
                "*test_quality: the run's metrics are not finite (*=nan*): training diverged; "
                "nothing was compared or stored"
            ]
        )
        assert_no_traceback(result)
        assert files_under(recorded.path / "baselines") == before


# 10. Remote code runs only when the recipe opts in; safetensors is read before pytorch_model.bin --------


def save_remote_code_checkpoint(tiny_checkpoint: Path, folder: Path) -> Path:
    """``tiny_checkpoint`` whose config names custom classes in .py files beside it; importing them
    leaves a ``code-ran`` file in ``folder``."""
    shutil.copytree(tiny_checkpoint, folder)
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "remote-bert"
    config["auto_map"] = {
        "AutoConfig": "configuration_remote.RemoteConfig",
        "AutoModelForSequenceClassification": "modeling_remote.RemoteModel",
    }
    (folder / "config.json").write_text(json.dumps(config))
    ran = f"open({str(folder / 'code-ran')!r}, 'w').close()\n"
    (folder / "configuration_remote.py").write_text(
        ran
        + "from transformers import BertConfig\n\n\nclass RemoteConfig(BertConfig):\n    model_type = 'remote-bert'\n"
    )
    (folder / "modeling_remote.py").write_text(
        ran
        + "from transformers import BertForSequenceClassification\n"
        + "from .configuration_remote import RemoteConfig\n\n\n"
        + "class RemoteModel(BertForSequenceClassification):\n    config_class = RemoteConfig\n"
    )
    return folder


def test_remote_code_does_not_run_without_trust_remote_code(
    finetune_project: pytest.Pytester, tiny_checkpoint: Path
) -> None:
    checkpoint = save_remote_code_checkpoint(tiny_checkpoint, finetune_project.path / "remote")
    finetune_project.makepyfile("def test_x(tokenizer, model):\n    pass\n")  # the tokenizer needs no code
    result = finetune_project.runpytest(f"--finetune-model={checkpoint}")
    assert_fails_clearly(
        result,
        f"*could not load the model of checkpoint folder '{checkpoint}' (ValueError: *contains custom code*); "
        "the checkpoint's own code runs only if you trust it: set trust_remote_code=True (marker "
        "trust_remote_code=True, --finetune-set trust_remote_code=true or ini finetune_training_args)",
    )
    assert not (checkpoint / "code-ran").exists()


def test_safetensors_is_read_before_pytorch_model_bin(finetune_project: pytest.Pytester, tiny_checkpoint: Path) -> None:
    checkpoint = finetune_project.path / "both-formats"
    shutil.copytree(tiny_checkpoint, checkpoint)
    (checkpoint / "pytorch_model.bin").write_bytes(b"not a torch pickle: reading it fails")
    finetune_project.makepyfile(f"""
        import torch
        from safetensors.torch import load_file

        def test_x(model):
            stored = load_file({str(checkpoint / "model.safetensors")!r})
            loaded = model.bert.embeddings.word_embeddings.weight
            assert torch.equal(loaded, stored["embeddings.word_embeddings.weight"])
        """)
    finetune_project.runpytest(f"--finetune-model={checkpoint}").assert_outcomes(passed=1)

    (checkpoint / "model.safetensors").unlink()  # the .bin alone: read, and refused clearly
    result = finetune_project.runpytest(f"--finetune-model={checkpoint}")
    assert_fails_clearly(
        result,
        f"*could not load the model of checkpoint folder '{checkpoint}' (*); point model at a folder that "
        "save_pretrained wrote*",
    )


# 11. Rows of docs/errors.md that had no session test checking their message --------------------------


def _wrong_field_count(folder: Path) -> tuple[str, str]:
    rows: list[tuple[object, ...]] = list(make_rows(8))
    rows[5] = (1, 1005, 2005, "one", "two", "three")  # line 7: the header is line 1
    write_glue_tsv(folder / "train.tsv", rows)
    return "train.tsv", f"{folder / 'train.tsv'}, line 7: 6 tab-separated fields, expected 5; fix or remove that row"


def _label_outside(folder: Path) -> tuple[str, str]:
    rows = make_rows(8)
    rows[2] = (2, rows[2][1], rows[2][2])
    write_glue_tsv(folder / "train.tsv", rows)
    return (
        "train.tsv",
        f"{folder}, train split: labels [[]2] are outside {{0, 1}}; the task 'mrpc' has 2 labels (first at row 3: 2)",
    )


def _text_label(folder: Path) -> tuple[str, str]:
    rows: list[tuple[object, ...]] = list(make_rows(8))
    rows[2] = ("yes", rows[2][1], rows[2][2])
    write_glue_tsv(folder / "train.tsv", rows)
    return "train.tsv", f"{folder / 'train.tsv'}, line 4: label 'yes' is not an integer (0 or 1)"


def _float_labels(folder: Path) -> tuple[str, str]:
    (folder / "train.jsonl").write_text(
        "".join(json.dumps({"sentence1": s1, "sentence2": s2, "label": float(y)}) + "\n" for y, s1, s2 in make_rows(8))
    )
    _write_jsonl(folder / "dev.jsonl", make_rows(6))
    return "train.jsonl", f"{folder}, train split: labels are float64, not integers; write them as 0 and 1"


@pytest.mark.parametrize(
    "build",
    [_wrong_field_count, _label_outside, _text_label, _float_labels],
    ids=["tsv-wrong-field-count", "label-outside-0-1", "tsv-text-label", "float-labels"],
)
def test_bad_data_rows_fail_the_test_that_needs_them(
    finetune_project: pytest.Pytester, build: Callable[[Path], tuple[str, str]]
) -> None:
    folder = finetune_project.path / "data"
    folder.mkdir()
    train_file, message = build(folder)
    if train_file.endswith(".tsv"):
        write_glue_tsv(folder / "dev.tsv", make_rows(6))
    finetune_project.makepyfile("def test_x(mrpc_dataset):\n    pass\n")
    result = finetune_project.runpytest(f"--finetune-data={folder}")
    assert_fails_clearly(result, "*ERROR at setup of test_x*", f"*{message}")


def test_output_dir_on_the_command_line_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest("--finetune-set", "output_dir=/x")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: command line: output_dir is chosen by pytest-finetune (a temporary folder per test); "
            "to write elsewhere, set it in a pytest_finetune_adjust_training_args hook"
        ]
    )
    assert_no_traceback(result)


NEGATIVE_TOLERANCE = "tolerance must be a finite number >= 0 (an absolute change such as 0.01), got -0.1"
NOT_A_TOLERANCE = "'fast' is not a number or auto; write 0.02, auto or METRIC=0.02"
AS_A_FRACTION = (
    "so it would allow any change: give an absolute change of at most 1, as a fraction (0.015 for 1.5 points)"
)


@pytest.mark.parametrize(
    ("ini", "args", "message"),
    [
        (None, ["--finetune-tolerance", "-0.1"], f"--finetune-tolerance: {NEGATIVE_TOLERANCE}"),
        (None, ["--finetune-tolerance", "fast"], f"--finetune-tolerance: {NOT_A_TOLERANCE}"),
        ("finetune_tolerance = -0.1", [], f"ini finetune_tolerance: {NEGATIVE_TOLERANCE}"),
        ("finetune_tolerance = fast", [], f"ini finetune_tolerance: {NOT_A_TOLERANCE}"),
        (
            None,
            ["--finetune-tolerance", "1.5"],
            f"--finetune-tolerance: tolerance is 1.5, and accuracy and f1 lie in [[]0, 1[]], {AS_A_FRACTION}",
        ),
        (
            "finetune_tolerance = f1=2",
            [],
            f"ini finetune_tolerance: tolerance of 'f1' is 2, and f1 lies in [[]0, 1[]], {AS_A_FRACTION}",
        ),
    ],
    ids=["cli-negative", "cli-not-a-number", "ini-negative", "ini-not-a-number", "cli-beyond-1", "ini-f1-beyond-1"],
)
def test_a_bad_tolerance_setting_is_a_usage_error(
    pytester: pytest.Pytester, ini: str | None, args: list[str], message: str
) -> None:
    if ini:
        pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert_no_traceback(result)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("'tight'", "tolerance must be a number such as 0.01, or 'auto', got 'tight'"),
        ("{}", "tolerance {} names no metric; e.g. tolerance={'f1': 0.015}"),
        ("{'accuracy': 1.5}", "tolerance of 'accuracy' is 1.5, and accuracy lies in [[]0, 1[]], so it would allow *"),
    ],
    ids=["tight", "empty-dict", "accuracy-beyond-1"],
)
def test_a_bad_marker_tolerance_names_the_value(pytester: pytest.Pytester, value: str, message: str) -> None:
    pytester.makepyfile(test_x=f"""
        import pytest

        @pytest.mark.finetune(tolerance={value})
        def test_a():
            pass
        """)
    result = pytester.runpytest()  # checked even without --finetune
    assert_fails_clearly(
        result, "*ERROR collecting test_x.py*", f"*test_x.py::test_a: @pytest.mark.finetune: {message}"
    )


def test_a_broken_baseline_says_how_to_fix_it_and_an_update_replaces_it(recorded: pytest.Pytester) -> None:
    (recorded.path / BASELINE).write_text("{not json")
    result = recorded.runpytest("--finetune")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            f"*test_quality: baseline {BASELINE.as_posix()} is not valid JSON (*); "
            "fix it, or delete it and record it again with --snapshot-update"
        ]
    )
    assert_no_traceback(result)
    assert (recorded.path / BASELINE).read_text() == "{not json"
    recorded.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)
    assert set(json.loads((recorded.path / BASELINE).read_text())["metrics"]) == {"accuracy", "eval_loss", "f1"}
    recorded.runpytest("--finetune").assert_outcomes(passed=1)


# docs/errors.md: "deep nesting, a huge number, recipe, environment, examples or calibration of the wrong shape"
OTHER_BYTES = {
    "deep-nesting": ("[" * 100_000, " is not valid JSON (maximum recursion depth exceeded*)"),
    "5000-digits": (
        '{"metrics": {"accuracy": 1' + "0" * 5000 + ', "f1": 0.8}}',
        " is not valid JSON (Exceeds the limit (4300 digits) for integer string conversion*)",
    ),
    "recipe": ('{"metrics": {"accuracy": 0.7, "f1": 0.8}, "recipe": [1]}', ': "recipe" is not an object'),
    "environment": (
        '{"metrics": {"accuracy": 0.7, "f1": 0.8}, "environment": "cpu"}',
        ': "environment" is not an object',
    ),
    "examples": (
        '{"metrics": {"accuracy": 0.7, "f1": 0.8}, "examples": {"count": "x", "digest": 1, "wrong": 3}}',
        ': "examples" is not {"count": int, "digest": str, "wrong": [[]idx, ...[]]}',
    ),
    "calibration": (
        '{"metrics": {"accuracy": 0.7, "f1": 0.8}, "calibration": {"seeds": "x", "metrics": 1}}',
        ': "calibration" is not {"seeds": [[]2 or more distinct ints[]], "metrics": *}',
    ),
    "history": ('{"metrics": {"accuracy": 0.7, "f1": 0.8}, "history": [1]}', ': "history" is not a list of objects'),
    "format": (
        '{"metrics": {"accuracy": 0.7, "f1": 0.8}, "format": 2}',
        " is in format 2, and this pytest-finetune reads format 1: use the pytest-finetune that recorded it, or "
        "record it again with --snapshot-update",
    ),
    "format-true": ('{"metrics": {"accuracy": 0.7, "f1": 0.8}, "format": true}', ': "format" is true, not an integer'),
    # JSON keeps the last value of a key given twice: a reviewer reads 0.9, the gate would compare 0.1
    "key-twice": (
        '{"metrics": {"accuracy": 0.9, "f1": 0.8, "accuracy": 0.1}}',
        " has the key 'accuracy' twice in one object (a reader may read one value of it, the gate another); "
        "fix it, or delete it and record it again with --snapshot-update",
    ),
}


def test_a_baseline_of_other_bytes_fails_naming_the_file_and_what_is_wrong(recorded: pytest.Pytester) -> None:
    for name, (content, problem) in OTHER_BYTES.items():
        (recorded.path / BASELINE).write_text(content)
        result = recorded.runpytest("--finetune")
        assert result.parseoutcomes() == {"failed": 1}, name
        result.stdout.fnmatch_lines([f"*test_quality: baseline {BASELINE.as_posix()}{problem}*"])
        assert_no_traceback(result)
        assert (recorded.path / BASELINE).read_text() == content, name


def _calibrated_twice(record: dict) -> None:
    record["calibration"] = {**CALIBRATION, "seeds": [42, 42, 42]}


def _calibrated_out_of_range(record: dict) -> None:
    """The issue's calibration: with tolerance auto it would allow a drop of 3 x 5 = 15 in accuracy."""
    accuracy = {"mean": 7.0, "std": 5.0, "min": 2.0, "max": 12.0}
    record["calibration"] = {**CALIBRATION, "metrics": {**CALIBRATION["metrics"], "accuracy": accuracy}}


# Hand edits that are valid JSON of the right shape, and impossible: each is refused, never given a verdict.
IMPOSSIBLE = {
    "accuracy-below-0": (
        lambda record: record["metrics"].update(accuracy=-5.0),
        ": metric 'accuracy' is -5, outside [[]0, 1[]]; fix it, or delete it and record it again with --snapshot-*",
    ),
    "f1-above-1": (lambda record: record["metrics"].update(f1=7.0), ": metric 'f1' is 7, outside [[]0, 1[]]"),
    "wrong-ids-of-other-examples": (
        lambda record: record["examples"].update(wrong=list(range(100_000, 100_003))),
        ': "examples"."wrong" lists ids that are not among the validation examples its "digest" names '
        "(100000, 100001, 100002); fix it*",
    ),
    "count-of-other-examples": (
        lambda record: record["examples"].update(count=record["examples"]["count"] + 1),
        ': "examples"."count" is *, and its "digest" names * validation examples; fix it*',
    ),
    "wrong-listed-twice": (
        lambda record: record["examples"].update(wrong=record["examples"]["wrong"][:1] * 2),
        ': "examples"."wrong" lists 2 ids, 1 of them distinct, of * examples ("count"): it lists each example '
        "the run got wrong once; fix it*",
    ),
    "more-wrong-than-count": (
        lambda record: record["examples"].update(count=0),
        ': "examples"."wrong" lists * ids, * of them distinct, of 0 examples ("count")*',
    ),
    "calibration-seeds-repeated": (
        _calibrated_twice,
        ': "calibration" is not {"seeds": [[]2 or more distinct ints[]], "metrics": *}; record it again: '
        "pytest --finetune --snapshot-update --finetune-calibrate N",
    ),
    "calibration-out-of-range": (
        _calibrated_out_of_range,
        ": the calibration's mean of 'accuracy' is 7, outside [[]0, 1[]]; record it again: "
        "pytest --finetune --snapshot-update --finetune-calibrate N",
    ),
    "history-nan": (
        lambda record: record["history"][0].update(validation_loss=float("nan")),
        ": \"history\" row 1: 'validation_loss' is nan, not a finite number or null; fix it*",
    ),
}


def test_an_impossible_baseline_is_refused_naming_the_file_and_the_field(recorded: pytest.Pytester) -> None:
    original = json.loads((recorded.path / BASELINE).read_text())
    assert original["examples"]["wrong"], "the tiny run gets some examples wrong"
    for name, (edit, problem) in IMPOSSIBLE.items():
        record = json.loads(json.dumps(original))
        edit(record)
        content = json.dumps(record, indent=2, sort_keys=True) + "\n"
        (recorded.path / BASELINE).write_text(content)
        result = recorded.runpytest("--finetune")
        assert result.parseoutcomes() == {"failed": 1}, name
        result.stdout.fnmatch_lines([f"*test_quality: baseline {BASELINE.as_posix()}{problem}*"])
        assert_no_traceback(result)
        assert (recorded.path / BASELINE).read_text() == content, name


def test_finetune_snapshot_compared_with_a_list_fails_naming_what_it_takes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_own="""
        def test_list(finetune_snapshot):
            assert [0.5, 0.7] == finetune_snapshot
        """)
    result = pytester.runpytest("--snapshot-update")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*finetune_snapshot compares a FinetuneResult or a dict of metrics, not list*"])
    assert not (pytester.path / "baselines").exists()


def test_fp16_without_a_cuda_gpu_fails_at_setup(finetune_project: pytest.Pytester) -> None:
    finetune_project.makeconftest("""
        import pytest
        import torch
        from pytest_finetune import precision

        @pytest.fixture(autouse=True)
        def avx2_cpu_without_gpu(monkeypatch):
            monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2"}))
            monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        """)
    finetune_project.makepyfile("def test_x(training_args):\n    pass\n")
    result = finetune_project.runpytest("--finetune", "--finetune-precision=fp16")
    assert_fails_clearly(
        result,
        "*ERROR at setup of test_x*",
        "*finetune_precision=fp16 needs a CUDA GPU; this run computes on this CPU (*); "  # AVX2, AVX512, ...
        "use finetune_precision=auto, fp32 or (where native) bf16",
    )


def test_a_corrupt_model_safetensors_fails_naming_the_folder(
    finetune_project: pytest.Pytester, tiny_checkpoint: Path
) -> None:
    checkpoint = finetune_project.path / "corrupt-safetensors"
    shutil.copytree(tiny_checkpoint, checkpoint)
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    finetune_project.makepyfile("def test_x(model):\n    pass\n")
    result = finetune_project.runpytest(f"--finetune-model={checkpoint}")
    assert_fails_clearly(
        result,
        f"*could not load the model of checkpoint folder '{checkpoint}' (*); "
        "point model at a folder that save_pretrained wrote (*",
    )


CALIBRATION = {
    "seeds": [42, 43, 44],
    "metrics": {name: {"mean": 0.7, "std": 0.01, "min": 0.69, "max": 0.71} for name in ("accuracy", "f1")},
}


def test_a_calibration_made_on_other_validation_examples_is_refused(recorded: pytest.Pytester) -> None:
    record = json.loads((recorded.path / BASELINE).read_text())
    record["calibration"] = CALIBRATION
    record["validation_id"] = "sha256:" + "0" * 64  # as if measured on another validation split
    (recorded.path / BASELINE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    before = files_under(recorded.path / "baselines")
    result = recorded.runpytest("--finetune", "--finetune-tolerance=auto")
    result.assert_outcomes(failed=1)
    # the whole baseline, its calibration with it, is of other examples: refused before any tolerance is resolved
    result.stdout.fnmatch_lines(["*not comparable: the validation examples changed (by content: *"])
    result.stdout.no_fnmatch_line("*tolerance auto = *")
    assert_no_traceback(result)
    assert files_under(recorded.path / "baselines") == before


def test_an_unused_baseline_that_cannot_be_removed_is_not_reported_deleted(recorded: pytest.Pytester) -> None:
    stale = recorded.path / BASELINE.parent / "test_removed.json"
    shutil.copy(recorded.path / BASELINE, stale)
    recorded.makeconftest(UNLINK_REFUSED_CONFTEST)
    result = recorded.runpytest("--finetune", "--snapshot-update")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([f"ERROR: pytest-finetune: could not change {stale} (PermissionError: *"])
    result.stdout.no_fnmatch_line("*unused snapshot*deleted*")
    result.stdout.no_fnmatch_line("Deleted test_removed*")
    assert stale.exists()


def test_finetune_snapshot_compared_with_a_list_fails_with_the_message_alone(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_own="""
        def test_list(finetune_snapshot):
            assert [1] == finetune_snapshot
        """)
    result = pytester.runpytest("--snapshot-update")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*finetune_snapshot compares a FinetuneResult or a dict of metrics, not list*"])
    assert_no_traceback(result)
    result.stdout.no_fnmatch_line("*syrupy/assertion.py*")


def test_a_file_where_the_baseline_folder_should_be_names_it(finetune_project: pytest.Pytester) -> None:
    finetune_project.makepyfile(test_quality=QUALITY_TEST)
    blocker = finetune_project.path / BASELINE.parent
    blocker.parent.mkdir()
    blocker.write_text("in the way")
    result = finetune_project.runpytest("--finetune", "--snapshot-update")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            f"*test_quality: could not write {finetune_project.path / BASELINE} (FileExistsError: *); nothing was "
            f"written; move {blocker} away (a file where a folder should be) and run again",
            "test_quality.py::test_quality  *tiny* error *",  # the summary row keeps the model and metrics
        ]
    )
    assert_no_traceback(result)
    assert blocker.read_text() == "in the way"


def test_a_folder_where_the_baseline_should_be_names_it(finetune_project: pytest.Pytester) -> None:
    finetune_project.makepyfile(test_quality=QUALITY_TEST)
    blocker = finetune_project.path / BASELINE
    blocker.mkdir(parents=True)
    fix = f"move {blocker} away (a folder where a file should be) and run again"
    for update, what in (((), "read"), (("--snapshot-update",), "write")):
        result = finetune_project.runpytest("--finetune", *update)
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines([f"*test_quality: could not {what} {blocker} (IsADirectoryError: *); *; {fix}"])
        assert_no_traceback(result)
    assert blocker.is_dir()
