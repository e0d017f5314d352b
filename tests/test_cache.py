"""The result cache across sessions: hits return the same result, changed inputs miss, bad entries heal."""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import assert_usage_error, make_rows, save_tiny_checkpoint, write_glue_tsv

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
    return (
        sorted(path for path in root.iterdir() if path.is_dir() and not path.name.startswith("."))
        if root.exists()
        else []
    )


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


def test_new_weights_pushed_to_a_hub_model_miss(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Hub model keeps its name when new weights are pushed; the digest of its weights in the key
    does not. Offline, on a Hub cache laid out as ``huggingface_hub`` lays it out (in subprocesses:
    the cache folder is read at import)."""
    hub = project.path / "hub"
    repo = hub / "models--org--tiny"

    def push(commit: str, seed: int) -> None:
        save_tiny_checkpoint(repo / "snapshots" / commit, seed=seed)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(commit)

    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    push("a" * 40, seed=0)
    args = ("--finetune", "--snapshot-update", "--finetune-model=org/tiny")
    project.runpytest_subprocess(*args).assert_outcomes(passed=1)
    project.runpytest_subprocess(*args).stdout.fnmatch_lines(["test_quality.py::test_quality*cached"])
    push("b" * 40, seed=1)
    project.runpytest_subprocess(*args).assert_outcomes(passed=1)
    assert (project.path / "trainings.txt").read_text().splitlines() == ["trained", "trained"]


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


@pytest.mark.parametrize(
    "field, value",
    [("metrics", {"accuracy": "0.3", "f1": 0.5, "eval_loss": 0.7}), ("metrics", []), ("history", None)],
    ids=["accuracy-a-string", "metrics-a-list", "history-null"],
)
def test_an_entry_of_wrong_types_is_a_miss_with_a_warning_and_is_rewritten(
    project: pytest.Pytester, field: str, value: object
) -> None:
    """Valid JSON, but not what a result holds (an entry edited by hand)."""
    run(project)
    (entry,) = entries(project)
    stored = json.loads((entry / "result.json").read_text())
    (entry / "result.json").write_text(json.dumps({**stored, field: value}))
    result, trained, after = run(project)
    assert trained == 2 and after["from_cache"] is False
    result.stdout.fnmatch_lines([f"*pytest-finetune: cache entry * is unreadable (ValueError: {field} is *"])
    assert run(project)[1:] == (2, {**after, "from_cache": True})  # rewritten


def data_folder(project: pytest.Pytester) -> Path:
    """The project's data folder, as its ini names it."""
    (line,) = [line for line in (project.path / "tox.ini").read_text().splitlines() if "finetune_data" in line]
    return Path(line.split("=", 1)[1].strip())


def test_files_the_loader_does_not_read_are_not_part_of_the_data(project: pytest.Pytester) -> None:
    """``test.tsv`` and notes beside GLUE's train.tsv and dev.tsv: editing them neither misses the
    cache nor changes the recipe the baseline holds."""
    data = data_folder(project)
    (data / "NOTES.txt").write_text("where the data came from\n")
    write_glue_tsv(data / "test.tsv", make_rows(8, seed=3))
    run(project)
    (data / "NOTES.txt").write_text("where the data came from, and when\n")
    write_glue_tsv(data / "test.tsv", make_rows(8, seed=4))
    result = project.runpytest("--finetune")  # compared with the baseline recorded above: the same recipe
    result.assert_outcomes(passed=1)
    assert json.loads((project.path / "result.json").read_text())["from_cache"] is True


def test_the_same_checkpoint_at_another_path_hits(project: pytest.Pytester) -> None:
    """A copy of the checkpoint (another clone, CI's virtualenv), with what ``Trainer`` saves beside a
    checkpoint's model (which ``from_pretrained`` never reads)."""
    ini = (project.path / "tox.ini").read_text()
    (line,) = [line for line in ini.splitlines() if "finetune_model" in line]
    checkpoint = Path(line.split("=", 1)[1].strip())
    run(project)
    copy = project.path / "elsewhere" / "tiny-bert"
    shutil.copytree(checkpoint, copy)
    (copy / "trainer_state.json").write_text('{"global_step": 3}')
    (copy / "training_args.bin").write_bytes(b"\0" * 16)
    (project.path / "tox.ini").write_text(ini.replace(str(checkpoint), str(copy)))
    _, trained, after = run(project)
    assert trained == 1 and after["from_cache"] is True
    assert len(entries(project)) == 1


def paths_kept(tokenizer: Any) -> set[str]:
    """The paths of existing files and folders a tokenizer keeps of where it was loaded from: its folder, and
    (transformers 5) its vocabulary file; transformers 4 keeps the vocabulary file's path out of ``init_kwargs``."""
    kept = (tokenizer.name_or_path, *tokenizer.init_kwargs.values())
    return {os.fspath(value) for value in kept if isinstance(value, (str, os.PathLike)) and os.path.exists(value)}


def test_a_checkpoint_with_its_vocabulary_file_and_the_data_at_other_paths_hit(project: pytest.Pytester) -> None:
    """A checkpoint whose tokenizer keeps its ``vocab.txt`` by path (as BERT's and MiniLM's do), and the data,
    copied elsewhere (a fresh clone with its ``.pytest_cache``): the tokenized data and the tokenizer are known
    by content, so the result is served, not trained again."""
    from helpers import SPECIAL_TOKENS, WORDS
    from transformers import AutoTokenizer

    ini = (project.path / "tox.ini").read_text()
    paths = {line.split("=", 1)[0].strip(): line.split("=", 1)[1].strip() for line in ini.splitlines() if "=" in line}
    copies = {"finetune_model": "tiny-bert", "finetune_data": "mrpc"}
    first = project.path / "first"
    for key, name in copies.items():
        shutil.copytree(paths[key], first / name)
    (first / "tiny-bert" / "vocab.txt").write_text("\n".join(SPECIAL_TOKENS + WORDS) + "\n")
    kept = paths_kept(AutoTokenizer.from_pretrained(first / "tiny-bert"))
    assert kept and all(path.startswith(str(first)) for path in kept)
    for folder in (first, project.path / "second"):
        if not folder.exists():
            shutil.copytree(first, folder)
        pointed = ini
        for key, name in copies.items():
            pointed = pointed.replace(paths[key], str(folder / name))
        (project.path / "tox.ini").write_text(pointed)
        _, trained, result = run(project)
    assert trained == 1 and result["from_cache"] is True
    assert len(entries(project)) == 1


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


# --cache-clear removes the cache's own entries, and only them ----------------------------------


def shared_cache(project: pytest.Pytester) -> Path:
    """Point ``finetune_cache_dir`` at ``shared/``, a folder other tools write to as well."""
    ini = (project.path / "tox.ini").read_text().replace("[pytest]", "[pytest]\nfinetune_cache_dir = shared")
    (project.path / "tox.ini").write_text(ini)
    shared = project.path / "shared"
    (shared / "notes").mkdir(parents=True)
    (shared / "other_tool_data.txt").write_text("not the cache's")
    (shared / "notes" / "keep.txt").write_text("not the cache's either")
    (shared / ("0" * 64 + ".txt")).write_text("a file, not an entry")
    return shared


def keyed(shared: Path) -> list[Path]:
    """The entries in ``shared``: folders named by a sha256 key."""
    return [path for path in shared.iterdir() if path.is_dir() and len(path.name) == 64]


def others(shared: Path) -> list[str]:
    return sorted(path.relative_to(shared).as_posix() for path in shared.rglob("*") if path.is_file())


OTHERS = sorted([f"{'0' * 64}.txt", "notes/keep.txt", "other_tool_data.txt"])


def test_cache_clear_removes_only_entries_and_staging_folders(project: pytest.Pytester) -> None:
    shared = shared_cache(project)
    run(project)
    (entry,) = keyed(shared)
    staging = shared / f".{entry.name[:12]}-abc_123x"  # left by a store that was killed
    staging.mkdir()
    (staging / "result.json").write_text("{}")
    assert run(project, "--cache-clear")[1] == 2  # trained again: the entry was removed
    assert not staging.exists()
    assert others(shared) == sorted(OTHERS + [f"{entry.name}/{name}" for name in ENTRY_FILES] + [f"{entry.name}.lock"])
    assert run(project)[1] == 2  # the new entry serves


ENTRY_FILES = ("label_ids.npy", "predictions.npy", "result.json")


@pytest.mark.parametrize("args", [[], ["--finetune-no-cache"]], ids=["without-finetune", "finetune-no-cache"])
def test_cache_clear_clears_without_fine_tuning_or_caching(project: pytest.Pytester, args: list[str]) -> None:
    """``pytest --cache-clear`` (or with ``--finetune-no-cache``) clears the configured folder
    too: the next ``--finetune`` run must not be served an old entry."""
    shared = shared_cache(project)
    run(project)
    if args:
        run(project, "--cache-clear", *args)
    else:
        project.runpytest("--cache-clear").assert_outcomes(skipped=1)
    assert keyed(shared) == []
    assert others(shared) == OTHERS
    assert run(project)[1] == (3 if args else 2)


def test_cache_clear_does_not_clear_in_xdist_workers(project: pytest.Pytester) -> None:
    """A pytest-xdist worker (``config.workerinput``) leaves the folder alone: the controller
    cleared it before the workers started, and another worker may have stored meanwhile."""
    shared_cache(project)
    run(project)
    project.makeconftest(CONFTEST + """
import pytest

@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    config.workerinput = {"workerid": "gw0"}
""")
    result, trained, after = run(project, "--cache-clear")
    assert trained == 1 and after["from_cache"] is True


def test_cache_clear_clears_the_default_folder(project: pytest.Pytester) -> None:
    run(project)
    assert run(project, "--cache-clear")[1] == 2
    assert run(project)[1] == 2


def test_an_entry_cache_clear_cannot_remove_means_no_cache(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry that stays would be served despite ``--cache-clear``: the session runs without the cache."""
    import shutil
    from types import SimpleNamespace

    from pytest_finetune import cache

    shared_cache(project)
    run(project)

    def rmtree(path: object, ignore_errors: bool = False) -> None:
        if not ignore_errors:
            raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(cache, "shutil", SimpleNamespace(rmtree=rmtree))
    result, trained, after = run(project, "--cache-clear")
    monkeypatch.setattr(cache, "shutil", shutil)
    assert trained == 2 and after["from_cache"] is False
    result.stdout.fnmatch_lines(
        [
            "*pytest-finetune: --cache-clear cannot remove the result cache's entries in *shared "
            "(*Permission denied*); results are not cached"
        ]
    )
    assert len(keyed(project.path / "shared")) == 1  # the old entry, not a new one


def test_clear_removes_entries_and_keeps_other_files(tmp_path: Path) -> None:
    from pytest_finetune.cache import ResultCache

    keys = ["ab" * 32, "cd" * 32]
    for key in keys:
        (tmp_path / key).mkdir()
        (tmp_path / key / "result.json").write_text("{}")
    (tmp_path / f".{keys[0][:12]}-k2j_4mzq").mkdir()
    kept = ["AB" * 32, "ab" * 31, ".hidden", f".{keys[0][:12]}", "data.txt"]
    for name in kept[:-1]:
        (tmp_path / name).mkdir()
    (tmp_path / "data.txt").write_text("x")
    (tmp_path / ".hidden" / "data.txt").write_text("x")
    (tmp_path / ("ef" * 32)).symlink_to(tmp_path / ".hidden")  # a link named like an entry: removed, not followed
    ResultCache(tmp_path).clear()
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(kept)
    assert (tmp_path / ".hidden" / "data.txt").exists()
    ResultCache(tmp_path / "absent").clear()  # nothing to clear
    ResultCache(tmp_path / "data.txt" / "below").clear()


# A cache folder that cannot be made: no caching, with a warning, never a failed session -----------


def test_an_unusable_pytest_cache_folder_warns_and_the_test_passes(project: pytest.Pytester) -> None:
    (project.path / "blocked").write_text("a file where pytest's cache folder would go")
    result, trained, _ = run(project, "-o", "cache_dir=blocked/cache")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        ["*pytest-finetune: cannot make the result cache folder in pytest's cache (*); results are not cached"]
    )
    result.stdout.no_fnmatch_line("*INTERNALERROR*")
    assert run(project, "-o", "cache_dir=blocked/cache", "--cache-clear")[1] == trained + 1


def test_cache_clear_of_an_unwritable_cache_folder_is_no_error(project: pytest.Pytester) -> None:
    (project.path / "blocked").write_text("a file where the cache folder would go")
    ini = (project.path / "tox.ini").read_text().replace("[pytest]", "[pytest]\nfinetune_cache_dir = blocked/cache")
    (project.path / "tox.ini").write_text(ini)
    result, trained, _ = run(project, "--cache-clear")
    assert trained == 1
    result.stdout.fnmatch_lines(["*cannot write the result cache in *blocked/cache*; results are not cached"])


# A path whose ~ cannot be expanded: a usage error naming where it was set -------------------------

NO_USER = "~no_such_user_of_pytest_finetune"


@pytest.mark.parametrize(
    ("ini", "args", "given"),
    [
        (f"finetune_cache_dir = {NO_USER}/cache", [], f"ini finetune_cache_dir = {NO_USER}/cache"),
        (f"finetune_baseline_dir = {NO_USER}/bl", [], f"ini finetune_baseline_dir = {NO_USER}/bl"),
        (f"finetune_model = {NO_USER}/tiny-bert", [], f"ini finetune_model = {NO_USER}/tiny-bert"),
        ("", [f"--finetune-model={NO_USER}/tiny-bert"], f"--finetune-model={NO_USER}/tiny-bert"),
        ("", [f"--finetune-data={NO_USER}/mrpc"], f"--finetune-data={NO_USER}/mrpc"),
    ],
    ids=["ini-cache-dir", "ini-baseline-dir", "ini-model", "option-model", "option-data"],
)
def test_a_home_folder_that_cannot_be_expanded_is_a_usage_error(
    project: pytest.Pytester, ini: str, args: list[str], given: str
) -> None:
    """``~user`` of no such user: pathlib raises ``RuntimeError``, which must not become an INTERNALERROR."""
    text = (project.path / "tox.ini").read_text()
    if ini:
        key = ini.split(" = ")[0]
        lines = [line for line in text.splitlines() if not line.startswith(key)]
        text = "\n".join(lines).replace("[pytest]", f"[pytest]\n{ini}")
    (project.path / "tox.ini").write_text(text)
    result = project.runpytest("--finetune", *args)
    assert_usage_error(result, f"{given}: cannot expand '{NO_USER}' (no such user, or HOME unset); write the full path")


def test_a_home_folder_without_home_is_a_usage_error(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """``~/`` where ``HOME`` is unset and the user has no passwd entry (a container run with an arbitrary uid)."""
    import pwd

    def no_entry(uid: int) -> None:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    result = project.runpytest("--finetune", "--finetune-data=~/mrpc")
    assert_usage_error(
        result, "--finetune-data=~/mrpc: cannot expand '~' (no such user, or HOME unset); write the full path"
    )


# Results the cache cannot hold: the test passes, with a warning, and nothing is stored --------------

HIDDEN_STATES = """
import pytest

@pytest.fixture
def model(finetune_recipe):
    from pytest_finetune.models import load_model

    model = load_model(finetune_recipe)
    model.config.output_hidden_states = True  # predictions: (logits, hidden states)
    return model
"""


def test_predictions_with_hidden_states_are_not_cached(finetune_project: pytest.Pytester) -> None:
    from helpers import QUALITY_TEST

    finetune_project.makeconftest(CONFTEST + HIDDEN_STATES)
    finetune_project.makepyfile(test_quality=QUALITY_TEST)
    for trainings in (1, 2):
        result = finetune_project.runpytest("--finetune", "--snapshot-update")
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines(["*pytest-finetune: predictions are a tuple of * arrays, not one array*"])
        result.stdout.fnmatch_lines(["*hidden states*; this result is not cached"])
        assert len((finetune_project.path / "trainings.txt").read_text().splitlines()) == trainings
        cache = finetune_project.path / ".pytest_cache/d/finetune"
        assert not cache.exists() or all(path.name.endswith(".lock") for path in cache.iterdir())  # no entry


def fake_result(predictions: object, label_ids: object = None, accuracy: float = 0.5) -> object:
    from types import SimpleNamespace

    outputs = SimpleNamespace(
        metrics={}, predictions=predictions, label_ids=np.array([0, 1, 1]) if label_ids is None else label_ids
    )
    from pytest_finetune.tasks import TASKS

    return SimpleNamespace(
        metrics={"accuracy": accuracy},
        history=[],
        train_runtime=1.0,
        environment={},
        predictions=outputs,
        recipe=SimpleNamespace(task_spec=TASKS["mrpc"]),
    )


LOGITS = np.ones((3, 2))


@pytest.mark.parametrize(
    ("predictions", "label_ids", "accuracy", "message"),
    [
        ((LOGITS, np.ones((3, 4, 8))), None, 0.5, "predictions are a tuple of 2 arrays, not one array*"),
        (np.array([{}, {}, {}], dtype=object), None, 0.5, "predictions are an array of object, not of numbers"),
        (LOGITS, [0, 1, 1], 0.5, "label_ids are a list of 3 arrays*"),
        (LOGITS, np.array([0.0, 1.0, 1.0]), 0.5, "label_ids are an array of float64 *, not one integer per example"),
        (LOGITS, np.array([0, 1, 2]), 0.5, "label_ids range from 0 to 2, the predictions' classes 0 to 1"),
        (np.ones(3), None, 0.5, "predictions are an array of shape (3,), not one row of class scores*"),
        (np.ones((2, 2)), None, 0.5, "predictions are an array of shape (2, 2), not one row of class scores*3 labels"),
        (LOGITS, None, float("nan"), "metric 'accuracy' is nan, not a finite number"),
        (LOGITS, None, 83, "metric 'accuracy' is 83, outside [[]0, 1]"),
    ],
    ids=[
        "tuple",
        "object-array",
        "list-labels",
        "float-labels",
        "label-out-of-range",
        "one-dimensional-predictions",
        "fewer-predictions",
        "nan-metric",
        "percent-accuracy",
    ],
)
def test_a_result_that_is_not_arrays_of_numbers_is_not_stored(
    tmp_path: Path, predictions: object, label_ids: object, accuracy: float, message: str
) -> None:
    """Nor one that no cache entry may hold: reading it would refuse it (see test_cache_entries.py)."""
    from pytest_finetune.cache import ResultCache

    result = fake_result(predictions, label_ids, accuracy)
    with pytest.warns(pytest.PytestWarning) as caught:
        ResultCache(tmp_path).store("ab" * 32, result, {})  # type: ignore[arg-type]
    (warning,) = caught
    assert fnmatch.fnmatch(str(warning.message), f"pytest-finetune: {message}; this result is not cached")
    assert list(tmp_path.iterdir()) == []


def test_a_result_that_cannot_be_serialised_leaves_no_entry(tmp_path: Path) -> None:
    from pytest_finetune.cache import ResultCache

    circular: dict = {}
    circular["self"] = circular
    with pytest.warns(
        pytest.PytestWarning, match=r"cannot write this result to the cache in .* \(ValueError: Circular"
    ):
        ResultCache(tmp_path).store("ab" * 32, fake_result(np.ones((3, 2))), circular)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []  # neither an entry nor a staging folder


# A checkpoint's own code is part of its content --------------------------------------------------


def test_a_checkpoints_python_code_is_part_of_its_content_digest(tmp_path: Path) -> None:
    from pytest_finetune.provenance import content_digest

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "modeling_custom.py").write_text("HIDDEN = 32\n")
    before = content_digest(str(tmp_path))
    (tmp_path / "modeling_custom.py").write_text("HIDDEN = 64  # changed\n")
    assert content_digest(str(tmp_path)) != before


# Tokenized data and tokenizers are known by content ----------------------------------------------


def test_a_tokenizer_is_known_by_what_it_does_not_where_it_was_loaded_from(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """The same checkpoint with its ``vocab.txt`` at two paths, before and after a call (which sets the truncation
    of its ``tokenizers`` backend), is one tokenizer; another padding side is another."""
    from helpers import SPECIAL_TOKENS, WORDS
    from transformers import AutoTokenizer

    from pytest_finetune.provenance import tokenizer_identity

    first, second = shutil.copytree(tiny_checkpoint, tmp_path / "first"), tmp_path / "second"
    (first / "vocab.txt").write_text("\n".join(SPECIAL_TOKENS + WORDS) + "\n")
    shutil.copytree(first, second)
    here, there = (AutoTokenizer.from_pretrained(folder) for folder in (first, second))
    assert paths_kept(here).isdisjoint(paths_kept(there))
    there("the cat sat", "a dog ran", truncation=True, max_length=5)
    assert tokenizer_identity(here) == tokenizer_identity(there)
    there.padding_side = "left"
    assert tokenizer_identity(here) != tokenizer_identity(there)


def test_a_dataset_is_known_by_its_rows_in_order_not_by_how_it_was_made() -> None:
    import datasets

    from pytest_finetune.provenance import dataset_digest

    rows = {"input_ids": [[101, 7, 102], [101, 8, 9, 102], [101, 102]], "label": [1, 0, 1]}
    made = datasets.Dataset.from_dict(rows)
    selected = datasets.concatenate_datasets([made.select([0]), datasets.Dataset.from_dict(rows).select([1, 2])])
    assert made._fingerprint != selected._fingerprint
    assert dataset_digest(made) == dataset_digest(selected)
    assert dataset_digest(made) != dataset_digest(made.select([1, 0, 2]))
    assert dataset_digest(made) != dataset_digest(made.map(lambda row: {"label": 1 - row["label"]}))
