"""The result cache across sessions: hits return the same result, changed inputs miss, bad entries heal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import make_rows, save_tiny_checkpoint, write_glue_tsv

# Counts trainings (the result hook runs for a fine-tune, not for a cache hit) and dumps the result.
CONFTEST = """
import json

def pytest_finetune_result(result):
    with open("trainings.txt", "a") as handle:
        handle.write("trained\\n")
"""
TEST = """
import json, pytest

@pytest.mark.finetune
def test_quality(finetune_result):
    with open("result.json", "w") as handle:
        json.dump({"metrics": finetune_result.metrics, "history": finetune_result.history,
                   "logits": finetune_result.predictions.predictions.tolist(),
                   "labels": finetune_result.predictions.label_ids.tolist(),
                   "from_cache": finetune_result.from_cache}, handle)
"""


@pytest.fixture
def project(finetune_project: pytest.Pytester) -> pytest.Pytester:
    finetune_project.makeconftest(CONFTEST)
    finetune_project.makepyfile(test_quality=TEST)
    return finetune_project


def run(project: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, int, dict]:
    """Run with --finetune --snapshot-update; return the result, the trainings so far and the test's result."""
    result = project.runpytest("--finetune", "--snapshot-update", *args)
    result.assert_outcomes(passed=1)
    trainings = project.path / "trainings.txt"
    count = len(trainings.read_text().splitlines()) if trainings.exists() else 0
    return result, count, json.loads((project.path / "result.json").read_text())


def entries(project: pytest.Pytester, folder: str = ".pytest_cache/d/finetune") -> list[Path]:
    root = project.path / folder
    return sorted(path for path in root.iterdir() if not path.name.startswith(".")) if root.exists() else []


def test_an_unchanged_rerun_is_served_from_the_cache(project: pytest.Pytester) -> None:
    first, trained, before = run(project)
    assert trained == 1 and before["from_cache"] is False
    first.stdout.fnmatch_lines(["test_quality.py::test_quality*recorded*s"])
    second, trained, after = run(project)
    assert trained == 1  # no second fine-tune
    assert after["from_cache"] is True
    assert {key: after[key] for key in ("metrics", "history", "logits", "labels")} == {
        key: before[key] for key in ("metrics", "history", "logits", "labels")
    }
    second.stdout.fnmatch_lines(["test_quality.py::test_quality*passed*cached"])


def test_switching_the_hub_off_still_hits(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """transformers records HF_HUB_OFFLINE in a loaded tokenizer's settings (``local_files_only``);
    the tokenization's fingerprint, and so the cache key, must not change with it. In
    subprocesses: the Hub's offline switch is read at import."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    project.runpytest_subprocess("--finetune", "--snapshot-update").assert_outcomes(passed=1)
    monkeypatch.delenv("HF_HUB_OFFLINE")  # local checkpoint and data: nothing asks the Hub
    second = project.runpytest_subprocess("--finetune")
    second.assert_outcomes(passed=1)
    second.stdout.fnmatch_lines(["test_quality.py::test_quality*passed*cached"])
    assert (project.path / "trainings.txt").read_text().splitlines() == ["trained"]


def test_entries_are_json_and_npy_without_pickle(project: pytest.Pytester) -> None:
    run(project)
    (entry,) = entries(project)
    assert sorted(p.name for p in entry.iterdir()) == ["label_ids.npy", "predictions.npy", "result.json"]
    assert np.load(entry / "predictions.npy", allow_pickle=False).shape == (24, 2)
    stored = json.loads((entry / "result.json").read_text())
    assert set(stored["metrics"]) == {"accuracy", "eval_loss", "f1"}
    assert stored["inputs"]["recipe"]["training_args"]["max_steps"] == 4


def test_a_changed_training_argument_misses(project: pytest.Pytester) -> None:
    run(project)
    assert run(project, "--finetune-set", "learning_rate=1e-3")[1] == 2
    assert len(entries(project)) == 2


def test_a_changed_tokenize_function_misses(project: pytest.Pytester) -> None:
    run(project)
    project.makeconftest(CONFTEST + """
import pytest

@pytest.fixture
def tokenized_mrpc(mrpc_dataset, tokenizer):
    def tokenize(batch):
        return tokenizer(batch["sentence1"], batch["sentence2"], truncation=True, max_length=8)

    return mrpc_dataset.map(tokenize, batched=True)
""")
    assert run(project)[1] == 2


def test_a_changed_checkpoint_file_misses(project: pytest.Pytester) -> None:
    ini = (project.path / "tox.ini").read_text()
    checkpoint = next(line.split("=", 1)[1].strip() for line in ini.splitlines() if line.startswith("finetune_model"))
    copy = save_tiny_checkpoint(project.path / "ckpt", seed=0)
    project.path.joinpath("tox.ini").write_text(ini.replace(checkpoint, str(copy)))
    run(project)
    save_tiny_checkpoint(copy, seed=1)  # same path, other weights
    assert run(project)[1] == 2


def test_a_changed_data_row_misses(project: pytest.Pytester) -> None:
    ini = (project.path / "tox.ini").read_text()
    data = Path(next(line.split("=", 1)[1].strip() for line in ini.splitlines() if line.startswith("finetune_data")))
    run(project)
    rows = make_rows(48, seed=1)
    rows[0] = (1 - rows[0][0], rows[0][1], rows[0][2])  # one label flipped
    write_glue_tsv(data / "train.tsv", rows)
    assert run(project)[1] == 2


def test_no_cache_and_cache_clear_fine_tune_again(project: pytest.Pytester) -> None:
    run(project)
    assert run(project, "--finetune-no-cache")[1] == 2
    assert run(project, "--cache-clear")[1] == 3
    assert run(project)[1] == 3  # --cache-clear stored the new result


def test_a_corrupt_entry_is_a_miss_with_a_warning_and_is_rewritten(project: pytest.Pytester) -> None:
    run(project)
    (entry,) = entries(project)
    (entry / "result.json").write_text('{"metrics": {"accur')
    result, trained, _ = run(project)
    assert trained == 2
    result.stdout.fnmatch_lines(["*pytest-finetune: cache entry * is unreadable (JSONDecodeError*); fine-tuning again"])
    assert json.loads((entry / "result.json").read_text())["metrics"]
    assert run(project)[1] == 2


def test_a_truncated_array_is_a_miss(project: pytest.Pytester) -> None:
    run(project)
    (entry,) = entries(project)
    (entry / "predictions.npy").write_bytes((entry / "predictions.npy").read_bytes()[:40])
    result, trained, _ = run(project)
    assert trained == 2
    result.stdout.fnmatch_lines(["*cache entry * is unreadable*"])


def test_an_unwritable_cache_folder_warns_and_the_test_passes(project: pytest.Pytester) -> None:
    (project.path / "blocked").write_text("a file where the cache folder would go")
    ini = (project.path / "tox.ini").read_text().replace("[pytest]", "[pytest]\nfinetune_cache_dir = blocked/cache")
    (project.path / "tox.ini").write_text(ini)
    result, trained, _ = run(project)
    result.stdout.fnmatch_lines(
        ["*pytest-finetune: cannot write the result cache in *blocked/cache*; results are not cached"]
    )
    assert run(project)[1] == trained + 1


def test_the_cache_folder_can_move(project: pytest.Pytester) -> None:
    ini = (project.path / "tox.ini").read_text().replace("[pytest]", "[pytest]\nfinetune_cache_dir = ci-cache")
    (project.path / "tox.ini").write_text(ini)
    run(project)
    assert len(entries(project, "ci-cache")) == 1
    assert run(project)[1] == 1
    assert run(project, "--cache-clear")[1] == 2
