"""finetune_precision: auto picks bf16 only where the hardware computes it natively."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import assert_fails_clearly

from pytest_finetune.errors import FinetuneError
from pytest_finetune.precision import (
    Hardware,
    choose_precision,
    cpu_flags,
    cpu_hardware,
    detect_hardware,
    precision_training_args,
)
from pytest_finetune.recipe import Recipe
from pytest_finetune.training import device_training_args, training_arguments_kwargs

# CPUs as /proc/cpuinfo and torch describe them: this project's two kinds, and one with AMX.
AVX2_CPU = cpu_hardware(frozenset({"fpu", "sse4_2", "avx", "avx2", "fma"}), "AVX2")
BF16_CPU = cpu_hardware(frozenset({"avx2", "avx512f", "avx512_bf16"}), "AVX512")
AMX_CPU = cpu_hardware(frozenset({"avx2", "avx512f", "amx_tile", "amx_bf16"}), "AVX512")
AMPERE_GPU = Hardware("cuda", native_bf16=True, native_fp16=True, name="NVIDIA A100")
TURING_GPU = Hardware("cuda", native_bf16=False, native_fp16=True, name="Tesla T4")


@pytest.mark.parametrize(
    "hardware, expected",
    [(AVX2_CPU, "fp32"), (BF16_CPU, "bf16"), (AMX_CPU, "bf16"), (AMPERE_GPU, "bf16"), (TURING_GPU, "fp32")],
    ids=["avx2-cpu", "avx512-bf16-cpu", "amx-cpu", "bf16-gpu", "gpu-without-bf16"],
)
def test_auto_never_picks_an_emulated_type(hardware: Hardware, expected: str) -> None:
    assert choose_precision("auto", hardware) == expected


def test_explicit_precisions_the_hardware_runs_are_kept() -> None:
    assert choose_precision("fp32", BF16_CPU) == "fp32"
    assert choose_precision("bf16", BF16_CPU) == "bf16"
    assert choose_precision("fp16", TURING_GPU) == "fp16"


def test_bf16_where_emulated_is_an_error_naming_the_cost_and_the_fix() -> None:
    with pytest.raises(
        FinetuneError, match=r"bf16: this CPU \(AVX2\) has no native bf16 \(emulated, about 16x"
    ) as error:
        choose_precision("bf16", AVX2_CPU)
    assert "use finetune_precision=auto or fp32" in str(error.value)
    assert "bf16=True" in str(error.value)  # the way to force it anyway


@pytest.mark.parametrize("hardware", [AVX2_CPU, BF16_CPU], ids=["avx2-cpu", "avx512-bf16-cpu"])
def test_fp16_on_a_cpu_is_an_error(hardware: Hardware) -> None:
    with pytest.raises(FinetuneError, match=r"finetune_precision=fp16 needs a CUDA GPU; this run computes on this CPU"):
        choose_precision("fp16", hardware)


def test_the_choice_becomes_training_arguments() -> None:
    assert precision_training_args("auto", {}, AVX2_CPU) == {}
    assert precision_training_args("auto", {}, BF16_CPU) == {"bf16": True}
    assert precision_training_args("auto", {}, AMPERE_GPU) == {"bf16": True}
    assert precision_training_args("fp16", {}, TURING_GPU) == {"fp16": True}


@pytest.mark.parametrize("given", [{"bf16": False}, {"fp16": False}])
def test_a_recipe_that_sets_its_precision_decides_it(given: dict[str, bool]) -> None:
    assert precision_training_args("auto", given, BF16_CPU) == {}
    assert precision_training_args("bf16", given, AVX2_CPU) == {}  # no error: the recipe asked


def no_accelerator(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make torch see no accelerator (as on this project's machines and in CI)."""
    import torch

    monkeypatch.setattr(torch.accelerator, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_bf16_forced_by_the_recipe_runs_on_a_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The documented way to force bf16 on any CPU: the training argument, which needs use_cpu there."""
    from transformers import TrainingArguments

    no_accelerator(monkeypatch)
    recipe = Recipe(training_args={"bf16": True})
    kwargs = training_arguments_kwargs(recipe, tmp_path, "fp32")
    assert (kwargs["bf16"], kwargs["use_cpu"]) == (True, True)
    assert TrainingArguments(**kwargs).bf16


def test_a_run_computes_on_the_cpu_only_where_torch_sees_no_accelerator(monkeypatch: pytest.MonkeyPatch) -> None:
    """use_cpu=True on a CPU-only machine (so no memory is pinned for a GPU there is not), and
    nothing added where a GPU would train, so a GPU run is never moved to the CPU."""
    import torch

    no_accelerator(monkeypatch)
    assert device_training_args() == {"use_cpu": True}
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: True)
    assert device_training_args() == {}
    # torch older than 2.6 has no torch.accelerator: CUDA and MPS are asked instead
    monkeypatch.delattr(torch, "accelerator")
    assert device_training_args() == {"use_cpu": True}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device_training_args() == {}


def test_a_gpu_that_emulates_bf16_gets_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    asked = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(
        torch.cuda,
        "is_bf16_supported",
        lambda including_emulation=True: asked.append(including_emulation) or including_emulation,
    )
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "Tesla T4")
    hardware = detect_hardware()
    assert (hardware.device, hardware.native_bf16, asked) == ("cuda", False, [False])
    assert choose_precision("auto", hardware) == "fp32"
    assert detect_hardware(use_cpu=True).device == "cpu"


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\n")
    assert cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512_bf16"}
    assert cpu_flags(tmp_path / "absent") == frozenset()  # not Linux: no flags, so auto means fp32


# A project whose CPU is made to look like one kind or the other (CPU_FLAGS), as the plugin
# sees it, on a machine without a GPU (or with its GPU hidden).
MOCKED_CPU = """
import pytest
import torch
from pytest_finetune import precision

@pytest.fixture(autouse=True)
def cpu_kind(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({CPU_FLAGS}))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: False)
"""
SHOW_ARGS = """
import json

def test_args(training_args):
    with open("args.json", "w") as handle:
        json.dump({"bf16": training_args.bf16, "fp16": training_args.fp16, "use_cpu": training_args.use_cpu}, handle)
"""


def mock_cpu(project: pytest.Pytester, *flags: str) -> None:
    project.makeconftest(MOCKED_CPU.replace("CPU_FLAGS", ", ".join(repr(flag) for flag in flags)))


@pytest.mark.parametrize(
    "flags, options, expected",
    [
        (("avx2",), (), {"bf16": False, "fp16": False, "use_cpu": True}),
        (("avx2", "avx512_bf16"), (), {"bf16": True, "fp16": False, "use_cpu": True}),
        (("avx2", "avx512_bf16"), ("--finetune-precision=fp32",), {"bf16": False, "fp16": False, "use_cpu": True}),
    ],
    ids=["auto-on-avx2", "auto-on-native-bf16", "fp32-asked-on-native-bf16"],
)
def test_training_args_follow_the_precision_setting(
    finetune_project: pytest.Pytester, flags: tuple[str, ...], options: tuple[str, ...], expected: dict[str, bool]
) -> None:
    mock_cpu(finetune_project, *flags)
    finetune_project.makepyfile(test_args=SHOW_ARGS)
    finetune_project.runpytest("--finetune", *options).assert_outcomes(passed=1)
    assert json.loads((finetune_project.path / "args.json").read_text()) == expected


def test_bf16_asked_on_a_cpu_without_it_fails_clearly(finetune_project: pytest.Pytester) -> None:
    mock_cpu(finetune_project, "avx2")
    finetune_project.makepyfile(test_args=SHOW_ARGS)
    result = finetune_project.runpytest("--finetune", "--finetune-precision=bf16")
    assert_fails_clearly(
        result, "*finetune_precision=bf16: this CPU (*) has no native bf16 (emulated*use finetune_precision=auto*"
    )
    assert not (finetune_project.path / "args.json").exists()


def test_an_unknown_precision_is_a_usage_error(finetune_project: pytest.Pytester) -> None:
    finetune_project.makepyfile("def test_x():\n    pass\n")
    result = finetune_project.runpytest("--finetune-precision=fast")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--finetune-precision: invalid choice: 'fast'*"])


def test_an_unknown_precision_in_the_ini_file_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nfinetune_precision = half\n")
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini finetune_precision: 'half' is not one of auto, fp32, bf16, fp16*"])


def test_a_bf16_run_records_its_dtype_in_the_baseline(finetune_project: pytest.Pytester) -> None:
    """On a CPU taken for one with native bf16 (emulated here, so only 4 tiny steps), the
    run computes in bf16 and its baseline says so."""
    mock_cpu(finetune_project, "avx512_bf16")
    finetune_project.makepyfile(test_quality="import pytest\n\n@pytest.mark.finetune\ndef test_q():\n    pass\n")
    finetune_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)
    (baseline,) = (finetune_project.path / "baselines").rglob("*.json")
    assert json.loads(baseline.read_text())["environment"]["dtype"] == "bfloat16"


def test_an_fp32_run_on_a_cpu_ends_without_a_pin_memory_warning(finetune_project: pytest.Pytester) -> None:
    """Without use_cpu, transformers asks the DataLoader to pin memory, and torch warns that
    there is no accelerator, in every fp32 run on a CPU (bf16 runs had use_cpu already)."""
    mock_cpu(finetune_project, "avx2")
    finetune_project.makepyfile(test_quality="def test_q(finetune_result):\n    assert finetune_result.metrics\n")
    result = finetune_project.runpytest("--finetune", "-W", "default")
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*UserWarning*no accelerator is found*")


@pytest.mark.parametrize("hardware", [AVX2_CPU, BF16_CPU], ids=["avx2-cpu", "avx512-bf16-cpu"])
def test_fp16_set_by_the_recipe_on_a_cpu_is_an_error(hardware: Hardware) -> None:
    """On a CPU accelerate ignores fp16=True and computes in fp32: refused, as finetune_precision=fp16 is."""
    with pytest.raises(FinetuneError, match=r"^the training argument fp16=True needs a GPU; this run computes on this"):
        precision_training_args("auto", {"fp16": True}, hardware)
    assert precision_training_args("auto", {"fp16": True}, TURING_GPU) == {}
    assert precision_training_args("auto", {"bf16": True}, AVX2_CPU) == {}  # forced bf16 computes in bf16


def test_fp16_set_by_the_recipe_on_a_cpu_fails_the_test_at_setup(finetune_project: pytest.Pytester) -> None:
    mock_cpu(finetune_project, "avx2")
    finetune_project.makepyfile(test_args=SHOW_ARGS)
    result = finetune_project.runpytest("--finetune", "--finetune-set", "fp16=true")
    assert_fails_clearly(
        result,
        "*the training argument fp16=True needs a GPU; this run computes on this CPU (*), where * computes in fp32*",
    )
    assert not (finetune_project.path / "args.json").exists()


@pytest.mark.parametrize(
    "precision, dtype", [({}, "float32"), ({"bf16": True}, "bfloat16"), ({"fp16": True}, "float32")]
)
def test_the_recorded_dtype_is_the_one_computed_in(
    tmp_path: Path, tiny_checkpoint: Path, precision: dict[str, bool], dtype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trainer built with fp16=True on a CPU (a training_args fixture of a test suite, say)
    computes in fp32, and its result says so."""
    from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments

    from pytest_finetune.precision import MIXED_PRECISION_VARIABLE
    from pytest_finetune.training import run_environment

    monkeypatch.delenv(MIXED_PRECISION_VARIABLE, raising=False)  # what transformers 4.x left from another test
    model = AutoModelForSequenceClassification.from_pretrained(tiny_checkpoint, num_labels=2)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], **precision)
    assert run_environment(Trainer(model=model, args=args), "torch")["dtype"] == dtype


def test_an_fp32_run_after_a_bf16_run_in_one_process_computes_in_fp32(
    tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """transformers 4.x's ``TrainingArguments`` leaves its precision in accelerate's variable and
    the next one takes it as its default: the plugin's arguments start from the process's value."""
    from transformers import AutoModelForSequenceClassification, Trainer

    from pytest_finetune.precision import MIXED_PRECISION_VARIABLE
    from pytest_finetune.training import build_training_arguments, run_environment

    monkeypatch.setenv(MIXED_PRECISION_VARIABLE, "bf16")  # as a bf16 run before it leaves it under 4.x
    model = AutoModelForSequenceClassification.from_pretrained(tiny_checkpoint, num_labels=2)
    args = build_training_arguments({"output_dir": str(tmp_path), "use_cpu": True, "report_to": []})
    assert run_environment(Trainer(model=model, args=args), "torch")["dtype"] == "float32"


def test_a_pinned_fp32_run_after_a_test_that_left_bf16_computes_in_fp32(
    pytester: pytest.Pytester, tiny_checkpoint: Path, glue_folder: Callable[..., Path]
) -> None:
    """The plugin's arguments start from accelerate's variable as the process started with it,
    even where an earlier test changed it before the plugin built any (no recipe keyword imports
    transformers at start-up here, as in ``examples/mrpc``)."""
    pytester.makeini(f"""
        [pytest]
        finetune_model = {tiny_checkpoint}
        finetune_data = {glue_folder()}
        finetune_precision = fp32
        """)
    pytester.makepyfile(test_quality="""
        import json
        import os

        import pytest

        def test_a_own_arguments():
            # as transformers 4.x's TrainingArguments(bf16=True) leaves it
            os.environ["ACCELERATE_MIXED_PRECISION"] = "bf16"

        @pytest.mark.finetune
        def test_b(finetune_result):
            with open("dtype.json", "w") as handle:
                json.dump(finetune_result.environment["dtype"], handle)
        """)
    pytester.runpytest_subprocess("--finetune", "--snapshot-update").assert_outcomes(passed=2)
    assert json.loads((pytester.path / "dtype.json").read_text()) == "float32"
