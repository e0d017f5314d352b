"""Hermetic building blocks: the fixtures of a tiny BERT checkpoint and small GLUE-format data, made here
(the plain helpers they use, and the tests import, are in helpers.py)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import datasets
import pytest
from helpers import (
    GUARD_OFF,
    REAL_MRPC_DIR,
    REQUIRE_BROWSER,
    Row,
    make_rows,
    save_tiny_checkpoint,
    write_glue_tsv,
)


@pytest.fixture(autouse=True, scope="session")
def _datasets_cache_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the ``datasets`` cache of this test run out of the user's home."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path_factory.mktemp("hf_datasets")))
        yield


@pytest.fixture(autouse=True)
def _inner_sessions_are_no_xdist_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ``pytest -n N`` this suite's tests run in xdist workers, whose ``PYTEST_XDIST_WORKER`` the
    in-process sessions of ``pytester`` would inherit: syrupy reads it and leaves its report to a
    controller that is not there. Unset, each inner session is a whole session, as a user's is."""
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)


@pytest.fixture
def pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """pytest's ``pytester`` (which clears ``PYTEST_ADDOPTS``), its sessions and subprocesses run with
    :data:`GUARD_OFF`."""
    monkeypatch.setenv("PYTEST_ADDOPTS", GUARD_OFF)
    return pytester


@pytest.fixture(scope="session")
def real_mrpc_dir() -> Path:
    """The real GLUE MRPC TSV folder; the test is skipped, saying where it looked, when it is absent."""
    if not (REAL_MRPC_DIR / "train.tsv").exists():
        pytest.skip(f"real GLUE MRPC TSV files are absent from {REAL_MRPC_DIR} (set PYTEST_FINETUNE_MRPC_DIR)")
    return REAL_MRPC_DIR


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT checkpoint folder, saved once per test session."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("checkpoints") / "tiny-bert")


@pytest.fixture
def glue_folder(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``glue_folder(train_rows=..., dev_rows=...)`` writes a GLUE TSV folder."""

    def make(
        name: str = "mrpc", train_rows: Sequence[Row] | None = None, dev_rows: Sequence[Row] | None = None
    ) -> Path:
        folder = tmp_path / name
        write_glue_tsv(folder / "train.tsv", make_rows(48, seed=1) if train_rows is None else train_rows)
        write_glue_tsv(folder / "dev.tsv", make_rows(24, seed=2) if dev_rows is None else dev_rows)
        return folder

    return make


@pytest.fixture
def finetune_project(
    pytester: pytest.Pytester, tiny_checkpoint: Path, glue_folder: Callable[..., Path]
) -> pytest.Pytester:
    """A downstream project whose ini points the recipe at the tiny checkpoint and data,
    with a training budget of a few steps.
    """
    data = glue_folder()
    pytester.makeini(f"""
        [pytest]
        finetune_model = {tiny_checkpoint}
        finetune_data = {data}
        finetune_training_args =
            max_steps = 4
            per_device_eval_batch_size = 16
        """)
    return pytester


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """Debian's headless Chromium (``chromium`` on the PATH) driven by Playwright, as a Playwright ``Browser``.
    Skipped, saying what is missing, when either is absent; failed instead where ``PYTEST_FINETUNE_REQUIRE_BROWSER=1``
    (CI)."""
    executable = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing: str | None = "Playwright is not installed (pip install playwright)"
    else:
        missing = None if executable else "Chromium is absent (apt-get install chromium)"
    if missing:
        if os.environ.get(REQUIRE_BROWSER) == "1":
            pytest.fail(f"{missing}, and {REQUIRE_BROWSER}=1 asks for the browser tests", pytrace=False)
        pytest.skip(f"{missing}: the browser tests need it")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable)
        yield browser
        browser.close()
