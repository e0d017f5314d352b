"""Runtime tuning while training on a CPU: the settings apply during training only, and change no number."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import assert_usage_error

from pytest_finetune.runtime import ONEDNN_CACHE_CAPACITY, ONEDNN_CACHE_VARIABLE, ONEDNN_CACHE_VARIABLES, tuned_runtime

# Observes, in a fresh process (a long one reuses free heap chunks of earlier trainings for large
# buffers), whether glibc maps a large buffer: it does unless told to keep freed memory for reuse.
PROBE = """
import ctypes, json
from pytest_finetune.runtime import glibc, tuned_runtime

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = glibc()
if libc is None or not hasattr(libc, "mallinfo2"):
    raise SystemExit(3)
libc.mallinfo2.restype = MallInfo2

def mapped():
    before = libc.mallinfo2().hblks
    buffer = bytearray(64 << 20)  # above glibc's largest mmap threshold (32 MB)
    return libc.mallinfo2().hblks - before

seen = {"before": mapped()}
with tuned_runtime("cpu"):
    seen["training"] = mapped()
seen["after"] = mapped()
with tuned_runtime("cpu", enabled=False):
    seen["switched off"] = mapped()
with tuned_runtime("cuda"):
    seen["gpu"] = mapped()
try:
    with tuned_runtime("cpu"):
        seen["failing"] = mapped()
        raise RuntimeError("diverged")
except RuntimeError:
    seen["after failure"] = mapped()
print(json.dumps(seen))
"""


@pytest.fixture(scope="module")
def mapped_buffers() -> dict[str, int]:
    """For each moment of :data:`PROBE`, how many memory maps one 64 MB buffer took (1: mapped, 0: heap)."""
    probe = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    if probe.returncode == 3:
        pytest.skip("glibc with mallinfo2 (2.33+) is needed to observe malloc's memory maps")
    assert probe.returncode == 0, probe.stderr
    return json.loads(probe.stdout)


def test_while_training_on_a_cpu_freed_memory_is_kept_for_reuse(mapped_buffers: dict[str, int]) -> None:
    assert mapped_buffers["before"] == 1
    assert mapped_buffers["training"] == 0  # from the heap, which keeps it for the next step
    assert mapped_buffers["failing"] == 0


@pytest.mark.parametrize("moment", ["after", "after failure"])
def test_after_training_the_defaults_return(mapped_buffers: dict[str, int], moment: str) -> None:
    assert mapped_buffers[moment] == 1


@pytest.mark.parametrize("moment", ["switched off", "gpu"])
def test_switched_off_or_on_a_gpu_malloc_keeps_its_defaults(mapped_buffers: dict[str, int], moment: str) -> None:
    assert mapped_buffers[moment] == 1


@pytest.fixture
def no_onednn_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ONEDNN_CACHE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)


@pytest.mark.usefixtures("no_onednn_setting")
def test_while_training_on_a_cpu_onednn_keeps_few_kernels_then_the_variable_goes() -> None:
    with tuned_runtime("cpu"):
        assert os.environ[ONEDNN_CACHE_VARIABLE] == str(ONEDNN_CACHE_CAPACITY)
    assert ONEDNN_CACHE_VARIABLE not in os.environ


@pytest.mark.usefixtures("no_onednn_setting")
@pytest.mark.parametrize("variable", ONEDNN_CACHE_VARIABLES)
def test_a_users_own_onednn_setting_is_left_alone(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, "512")
    with tuned_runtime("cpu"):
        assert {name: os.environ.get(name) for name in ONEDNN_CACHE_VARIABLES} == {
            name: "512" if name == variable else None for name in ONEDNN_CACHE_VARIABLES
        }
    assert os.environ[variable] == "512"


@pytest.mark.usefixtures("no_onednn_setting")
@pytest.mark.parametrize(("device", "enabled"), [("cpu", False), ("cuda", True)])
def test_switched_off_or_on_a_gpu_onednn_keeps_its_defaults(device: str, enabled: bool) -> None:
    with tuned_runtime(device, enabled):
        assert ONEDNN_CACHE_VARIABLE not in os.environ


# Records, from inside training (metrics are computed at each evaluation), whether the tuning was on.
CONFTEST = """
import json, os

def pytest_finetune_metrics(recipe, logits, label_ids):
    with open("during.json", "w") as handle:
        json.dump({"onednn": os.environ.get("ONEDNN_PRIMITIVE_CACHE_CAPACITY")}, handle)
    return {}
"""
TEST = """
import json
import numpy as np

def test_x(finetune_result):
    np.save("logits.npy", finetune_result.predictions.predictions)
    with open("metrics.json", "w") as handle:
        json.dump(finetune_result.metrics, handle)
"""


@pytest.mark.usefixtures("no_onednn_setting")
def test_a_session_with_and_without_tuning_computes_the_same_numbers(finetune_project: pytest.Pytester) -> None:
    import numpy as np

    finetune_project.makeconftest(CONFTEST)
    finetune_project.makepyfile(test_x=TEST)
    runs = {}
    for setting, options in (("default", ()), ("off", ("-o", "finetune_runtime_tuning=false"))):
        result = finetune_project.runpytest("--finetune", "--finetune-no-cache", *options)
        result.assert_outcomes(passed=1)
        path = finetune_project.path
        during = json.loads((path / "during.json").read_text())["onednn"]
        runs[setting] = (during, np.load(path / "logits.npy"), json.loads((path / "metrics.json").read_text()))
    assert runs["default"][0] == str(ONEDNN_CACHE_CAPACITY)  # on by default, in a real session
    assert runs["off"][0] is None
    assert np.array_equal(runs["default"][1], runs["off"][1])
    assert runs["default"][2] == runs["off"][2]


def test_a_setting_that_is_not_a_boolean_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nfinetune_runtime_tuning = sometimes\n")
    assert_usage_error(pytester.runpytest("--finetune"), "ini finetune_runtime_tuning = sometimes: use true or false")
