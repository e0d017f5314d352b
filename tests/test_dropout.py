"""Dropout masks from numpy's generator: the same probability, repeatable by seed, only while
training on a CPU where torch would draw them one by one, recorded and part of the cache key."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_usage_error

from pytest_finetune.dropout import choose_dropout_masks, dropout_masks_from, numpy_bernoulli_
from pytest_finetune.precision import cpu_vendor


def masks(seed: int, count: int = 1000, p: float = 0.9) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.empty(count).bernoulli_(p)


def test_each_element_is_kept_with_probability_p() -> None:
    count = 400_000
    with dropout_masks_from("numpy"):
        for p in (0.9, 0.5, 0.1):
            drawn = masks(0, count, p)
            assert set(drawn.unique().tolist()) == {0.0, 1.0}
            assert abs(drawn.mean().item() - p) < 5 * (p * (1 - p) / count) ** 0.5


def test_while_active_the_masks_are_numpys_then_torchs_again() -> None:
    torchs = masks(0)
    with dropout_masks_from("numpy"):
        numpys = masks(0)
        assert torch.equal(masks(0), numpys)  # a seed gives the same masks again
        assert not torch.equal(masks(1), numpys)
    assert not torch.equal(numpys, torchs)
    assert torch.equal(masks(0), torchs)


def test_torchs_masks_are_left_alone() -> None:
    with dropout_masks_from("torch"):
        inside = masks(0)
    assert torch.equal(inside, masks(0))


def test_torchs_kernel_comes_back_after_a_failure() -> None:
    torchs = masks(0)
    with pytest.raises(RuntimeError, match="diverged"), dropout_masks_from("numpy"):
        raise RuntimeError("diverged")
    assert torch.equal(masks(0), torchs)


def test_dropout_and_attention_dropout_draw_from_numpy() -> None:
    ones = torch.ones(10_000)
    with dropout_masks_from("numpy"):
        torch.manual_seed(3)
        dropped = torch.nn.functional.dropout(ones, p=0.1, training=True)
        torch.manual_seed(3)
        expected = numpy_bernoulli_(torch.empty(10_000), 0.9) / 0.9
        assert torch.equal(dropped, expected)

        query = torch.randn(2, 2, 16, 8)

        def attention(seed: int) -> torch.Tensor:
            torch.manual_seed(seed)
            return torch.nn.functional.scaled_dot_product_attention(query, query, query, dropout_p=0.5)

        numpys = attention(5)
        assert torch.equal(attention(5), numpys)
    assert not torch.equal(attention(5), numpys)  # the attention's own dropout drew from numpy too


def test_a_given_generator_decides_the_masks_and_the_default_one_is_untouched() -> None:
    with dropout_masks_from("numpy"):
        state = torch.get_rng_state()
        first = torch.empty(1000).bernoulli_(0.5, generator=torch.Generator().manual_seed(7))
        again = torch.empty(1000).bernoulli_(0.5, generator=torch.Generator().manual_seed(7))
        assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first, again)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int64, torch.bool])
def test_any_dtype_gets_zeros_and_ones(dtype: torch.dtype) -> None:
    with dropout_masks_from("numpy"):
        drawn = torch.empty(10_000, dtype=dtype).bernoulli_(0.5)
    assert drawn.dtype == dtype
    assert set(drawn.to(torch.int64).unique().tolist()) == {0, 1}


def test_a_strided_view_is_filled_where_it_looks_and_nowhere_else() -> None:
    base = torch.full((100, 50), 7.0)
    with dropout_masks_from("numpy"):
        base[:, ::2].bernoulli_(0.5)
    assert set(base[:, ::2].unique().tolist()) == {0.0, 1.0}
    assert torch.all(base[:, 1::2] == 7.0)


@pytest.mark.parametrize(("p", "value"), [(0.0, 0.0), (1.0, 1.0)])
def test_certain_outcomes_are_certain(p: float, value: float) -> None:
    with dropout_masks_from("numpy"):
        assert torch.all(torch.empty(1000).bernoulli_(p) == value)
        assert torch.empty(0).bernoulli_(p).numel() == 0


def test_a_probability_outside_0_1_is_refused_as_torch_does() -> None:
    with dropout_masks_from("numpy"), pytest.raises(RuntimeError, match=r"p to be in \[0, 1\], but got p=1.5"):
        torch.empty(3).bernoulli_(1.5)


@pytest.mark.parametrize(
    ("setting", "device", "vendor", "mkl", "chosen"),
    [
        ("auto", "cpu", "AuthenticAMD", True, "numpy"),  # torch draws one by one on AMD
        ("auto", "cpu", "GenuineIntel", True, "torch"),  # MKL draws in parallel
        ("auto", "cpu", "GenuineIntel", False, "numpy"),  # a torch built without MKL
        ("auto", "cpu", "", True, "numpy"),  # no /proc/cpuinfo (macOS, ARM)
        ("auto", "cuda", "AuthenticAMD", True, "torch"),  # a GPU draws its own
        ("numpy", "cpu", "GenuineIntel", True, "numpy"),
        ("numpy", "cuda", "GenuineIntel", True, "torch"),
        ("torch", "cpu", "AuthenticAMD", True, "torch"),
    ],
)
def test_who_draws_the_masks(setting: str, device: str, vendor: str, mkl: bool, chosen: str) -> None:
    assert choose_dropout_masks(setting, device, vendor, mkl) == chosen


def test_the_vendor_is_read_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2\n")
    assert cpu_vendor(cpuinfo) == "AuthenticAMD"
    assert cpu_vendor(tmp_path / "absent") == ""


# Dumps what the test needs: the logits, the environment, and whether the result was cached.
TEST = """
import json
import numpy as np

def test_x(finetune_result):
    np.save("logits.npy", finetune_result.predictions.predictions)
    with open("run.json", "w") as handle:
        json.dump({"environment": finetune_result.environment, "cached": finetune_result.from_cache}, handle)
"""


def test_a_session_records_its_masks_and_each_source_is_its_own_cache_entry(
    finetune_project: pytest.Pytester,
) -> None:
    finetune_project.makepyfile(test_x=TEST)
    path = finetune_project.path

    def run(masks: str) -> tuple[np.ndarray, dict]:
        finetune_project.runpytest("--finetune", "-o", f"finetune_dropout_masks={masks}").assert_outcomes(passed=1)
        return np.load(path / "logits.npy"), json.loads((path / "run.json").read_text())

    numpy_logits, numpy_run = run("numpy")
    torch_logits, torch_run = run("torch")
    assert (numpy_run["environment"]["dropout_masks"], numpy_run["cached"]) == ("numpy", False)
    assert (torch_run["environment"]["dropout_masks"], torch_run["cached"]) == ("torch", False)  # not numpy's
    assert not np.array_equal(numpy_logits, torch_logits)  # the tiny model's dropout drew other masks
    again_logits, again_run = run("numpy")
    assert again_run["cached"] is True and np.array_equal(again_logits, numpy_logits)
    retrained = finetune_project.runpytest("--finetune", "--finetune-no-cache", "-o", "finetune_dropout_masks=numpy")
    retrained.assert_outcomes(passed=1)
    assert np.array_equal(np.load(path / "logits.npy"), numpy_logits)  # trained again: the same masks


def test_auto_records_the_choice_for_this_machine(finetune_project: pytest.Pytester) -> None:
    finetune_project.makepyfile(test_x=TEST)
    finetune_project.runpytest("--finetune").assert_outcomes(passed=1)
    recorded = json.loads((finetune_project.path / "run.json").read_text())["environment"]["dropout_masks"]
    assert recorded == choose_dropout_masks("auto", "cpu", cpu_vendor(), torch.backends.mkl.is_available())


def test_a_setting_of_another_name_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nfinetune_dropout_masks = philox\n")
    assert_usage_error(
        pytester.runpytest("--finetune"), "ini finetune_dropout_masks: 'philox' is not one of auto, torch, numpy"
    )
