"""Runtime tuning while training on a CPU: the settings apply during training only, and change no number."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from helpers import assert_usage_error

from pytest_finetune import runtime
from pytest_finetune.runtime import (
    KERNEL_CACHE_CAPACITY,
    KERNEL_CACHE_VARIABLES,
    SHARING_VARIABLES,
    THREAD_VARIABLES,
    WAIT_VARIABLES,
    heap_frozen,
    tuned_runtime,
)

ALL_CACHE_VARIABLES = [name for names in KERNEL_CACHE_VARIABLES for name in names]
SET_BY_THE_PLUGIN = [names[0] for names in KERNEL_CACHE_VARIABLES]

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
def no_cache_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ALL_CACHE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)


def cache_settings() -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in ALL_CACHE_VARIABLES}


def bounded_by_the_plugin() -> dict[str, str | None]:
    """:func:`cache_settings` while the plugin bounds every kernel cache."""
    return {name: str(KERNEL_CACHE_CAPACITY) if name in SET_BY_THE_PLUGIN else None for name in ALL_CACHE_VARIABLES}


@pytest.mark.usefixtures("no_cache_settings")
def test_while_training_on_a_cpu_the_kernel_caches_keep_few_kernels_then_the_variables_go() -> None:
    with tuned_runtime("cpu"):
        assert cache_settings() == bounded_by_the_plugin()
    assert cache_settings() == dict.fromkeys(ALL_CACHE_VARIABLES)


@pytest.mark.usefixtures("no_cache_settings")
@pytest.mark.parametrize("variable", ALL_CACHE_VARIABLES)
def test_a_users_own_cache_setting_is_left_alone(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, "512")
    (users_cache,) = [names for names in KERNEL_CACHE_VARIABLES if variable in names]
    with tuned_runtime("cpu"):
        expected = bounded_by_the_plugin()
        expected.update({name: "512" if name == variable else None for name in users_cache})
        assert cache_settings() == expected  # the other cache is still bounded
    assert cache_settings() == {name: "512" if name == variable else None for name in ALL_CACHE_VARIABLES}


@pytest.mark.usefixtures("no_cache_settings")
@pytest.mark.parametrize(("device", "enabled"), [("cpu", False), ("cuda", True)])
def test_switched_off_or_on_a_gpu_the_kernel_caches_keep_their_defaults(device: str, enabled: bool) -> None:
    with tuned_runtime(device, enabled):
        assert cache_settings() == dict.fromkeys(ALL_CACHE_VARIABLES)


# Computes bf16 products (and their gradients) of more shapes than the kernel caches keep, twice
# over, in a fresh process: the caches read their capacity once, at their first kernel.
KERNELS_PROBE = """
import hashlib, sys, torch
from pytest_finetune.runtime import tuned_runtime

torch.manual_seed(0)
layer = torch.nn.Linear(64, 96)
digest = hashlib.sha256()
with tuned_runtime("cpu", enabled=sys.argv[1] == "tuned"):
    for length in list(range(16, 48)) * 2:
        inputs = torch.randn(length, 64, requires_grad=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outputs = layer(inputs)
        outputs.float().square().sum().backward()
        for tensor in (outputs, inputs.grad, layer.weight.grad):
            digest.update(tensor.detach().float().numpy().tobytes())
        layer.zero_grad()
print(digest.hexdigest())
"""


@pytest.mark.usefixtures("no_cache_settings")
def test_bounded_kernel_caches_compute_the_same_numbers() -> None:
    digests = {
        setting: subprocess.run(
            [sys.executable, "-c", KERNELS_PROBE, setting], capture_output=True, text=True, timeout=120, check=True
        ).stdout
        for setting in ("tuned", "defaults")
    }
    assert digests["tuned"] == digests["defaults"]
    assert len(digests["tuned"].strip()) == 64


# Records, from inside training (metrics are computed at each evaluation), whether the tuning was on.
# oneDNN's primitive cache and ideep's computation cache, by the names those libraries read.
CONFTEST = """
import json, os

def pytest_finetune_metrics(recipe, logits, label_ids):
    names = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")
    with open("during.json", "w") as handle:
        json.dump({name: os.environ.get(name) for name in names}, handle)
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


@pytest.mark.usefixtures("no_cache_settings")
def test_a_session_with_and_without_tuning_computes_the_same_numbers(finetune_project: pytest.Pytester) -> None:
    import numpy as np

    finetune_project.makeconftest(CONFTEST)
    finetune_project.makepyfile(test_x=TEST)
    runs = {}
    for setting, options in (("default", ()), ("off", ("-o", "finetune_runtime_tuning=false"))):
        result = finetune_project.runpytest("--finetune", "--finetune-no-cache", *options)
        result.assert_outcomes(passed=1)
        path = finetune_project.path
        during = json.loads((path / "during.json").read_text())
        runs[setting] = (during, np.load(path / "logits.npy"), json.loads((path / "metrics.json").read_text()))
    assert runs["default"][0] == {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "8", "LRU_CACHE_CAPACITY": "8"}  # by default
    assert runs["off"][0] == {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": None, "LRU_CACHE_CAPACITY": None}
    assert np.array_equal(runs["default"][1], runs["off"][1])
    assert runs["default"][2] == runs["off"][2]


def test_a_setting_that_is_not_a_boolean_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nfinetune_runtime_tuning = sometimes\n")
    assert_usage_error(pytester.runpytest("--finetune"), "ini finetune_runtime_tuning = sometimes: use true or false")


def test_the_heap_before_a_fine_tune_is_frozen_while_it_runs_and_handed_back() -> None:
    assert gc.get_freeze_count() == 0
    with heap_frozen():
        assert gc.get_freeze_count() > 0  # accelerate's gc.collect() at the start of training skips them
    assert gc.get_freeze_count() == 0


def test_objects_the_process_froze_itself_stay_frozen() -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with heap_frozen():
            pass
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()


def test_a_fine_tune_runs_with_the_heap_frozen(finetune_project: pytest.Pytester, monkeypatch) -> None:
    """Through the plugin (in this process): ``Trainer.train`` starts with the heap frozen, and nothing stays
    frozen after."""
    import transformers

    seen: list[int] = []
    train = transformers.Trainer.train

    def recording(self, *args, **kwargs):
        seen.append(gc.get_freeze_count())
        return train(self, *args, **kwargs)

    monkeypatch.setattr(transformers.Trainer, "train", recording)
    finetune_project.makepyfile("""
        import gc
        import pytest

        @pytest.mark.finetune
        def test_x(finetune_result):
            assert gc.get_freeze_count() == 0
        """)
    finetune_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)
    assert seen and seen[0] > 0, seen


# Threads that fit the CPUs the process may use ------------------------------------------------------


@pytest.fixture
def no_thread_settings(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No thread count set by the user and no other process sharing the machine, whatever the outer run has."""
    for name in (*THREAD_VARIABLES, *SHARING_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    "cpus, sharing, threads",
    [
        (8, {}, 8),
        (8, {"PYTEST_XDIST_WORKER_COUNT": "2"}, 4),
        (8, {"LOCAL_WORLD_SIZE": "3"}, 2),
        (2, {"PYTEST_XDIST_WORKER_COUNT": "4"}, 1),
    ],
)
def test_the_threads_are_the_processs_share_of_its_cpus(
    no_thread_settings: pytest.MonkeyPatch, cpus: int, sharing: dict[str, str], threads: int
) -> None:
    no_thread_settings.setattr(runtime, "usable_cpus", lambda: cpus)
    for name, value in sharing.items():
        no_thread_settings.setenv(name, value)
    assert runtime.fitting_threads() == threads


@pytest.mark.parametrize("variable", THREAD_VARIABLES)
def test_a_thread_count_the_user_set_wins(no_thread_settings: pytest.MonkeyPatch, variable: str) -> None:
    no_thread_settings.setenv(variable, "3")
    assert runtime.fitting_threads() is None


def test_a_process_bound_to_one_cpu_trains_on_one_thread() -> None:
    """A process bound to one CPU (as by ``taskset -c 0``) trains on one thread, whatever the machine has."""
    environment = {
        key: value for key, value in os.environ.items() if key not in (*THREAD_VARIABLES, *SHARING_VARIABLES)
    }
    probe = (
        "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
        "from pytest_finetune.runtime import fitting_threads; print(fitting_threads())"
    )
    bound = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=environment, timeout=120)
    assert bound.returncode == 0, bound.stderr
    assert bound.stdout.strip() == "1"


@pytest.fixture
def two_torch_threads() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("two_torch_threads")
def test_while_training_torch_uses_the_fitting_threads_then_its_own_again(
    no_thread_settings: pytest.MonkeyPatch,
) -> None:
    import torch

    no_thread_settings.setattr(runtime, "usable_cpus", lambda: 2)
    no_thread_settings.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    with tuned_runtime("cpu"):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with tuned_runtime("cpu", enabled=False):
        assert torch.get_num_threads() == 2


@pytest.mark.usefixtures("two_torch_threads")
def test_threads_are_only_ever_lowered(no_thread_settings: pytest.MonkeyPatch) -> None:
    import torch

    no_thread_settings.setattr(runtime, "usable_cpus", lambda: 16)
    with tuned_runtime("cpu"):
        assert torch.get_num_threads() == 2


# OpenMP's idle threads wait passively in a --finetune process ----------------------------------------

POLICY_SEEN = """
import os, sys

def test_policy():
    print("policy:", os.environ.get("OMP_WAIT_POLICY"), "torch imported:", "torch" in sys.modules)
"""


@pytest.mark.parametrize(
    "args, environment, ini, seen",
    [
        (["--finetune"], {}, "", "PASSIVE"),
        ([], {}, "", "None"),
        (["--finetune"], {"OMP_WAIT_POLICY": "ACTIVE"}, "", "ACTIVE"),
        (["--finetune"], {"GOMP_SPINCOUNT": "10000"}, "", "None"),
        (["--finetune"], {}, "finetune_runtime_tuning = false", "None"),
    ],
    ids=["finetune", "plain-run", "users-policy", "users-spincount", "tuning-off"],
)
def test_a_finetune_process_has_openmp_threads_wait_passively_before_torch_loads(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    environment: dict[str, str],
    ini: str,
    seen: str,
) -> None:
    for name in WAIT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile(test_policy=POLICY_SEEN)
    result = pytester.runpytest_subprocess("-s", *args)
    result.stdout.fnmatch_lines([f"*policy: {seen} torch imported: False"])


@pytest.mark.parametrize(
    "environment, header",
    [
        ({}, "*torch threads while training on a CPU: at most * (* CPUs usable); idle threads wait: passive"),
        (
            {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "active"},
            "*torch threads while training on a CPU: as OMP_NUM_THREADS=1 sets; idle threads wait: active",
        ),
        ({"PYTEST_XDIST_WORKER_COUNT": "64"}, "*: at most 1 (* CPUs usable, shared by 64 processes); *"),
    ],
    ids=["chosen", "users", "shared"],
)
def test_the_session_header_says_the_threads_and_why(
    pytester: pytest.Pytester, no_thread_settings: pytest.MonkeyPatch, environment: dict[str, str], header: str
) -> None:
    for name in WAIT_VARIABLES:
        no_thread_settings.delenv(name, raising=False)
    for name, value in environment.items():
        no_thread_settings.setenv(name, value)
    pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    pytester.runpytest_subprocess("--finetune").stdout.fnmatch_lines([header])
    assert "torch threads" not in pytester.runpytest_subprocess().stdout.str()
