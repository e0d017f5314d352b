"""On CPU a fixed recipe and seed repeats exactly: two pytest sessions that fine-tune it anew
(``--finetune-no-cache``) give the same metrics, history and logits to the last bit, whatever
state the global random generators were left in; another seed gives other logits.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

# The test body saves the full-precision result: metrics and history as JSON (floats written
# with repr, so exactly), logits and labels as .npy.
TEST = """
import json
import numpy as np
import pytest

@pytest.mark.finetune
def test_quality(finetune_result):
    assert finetune_result.environment["device"] == "cpu" and not finetune_result.from_cache
    history = [{k: v for k, v in row.items() if "runtime" not in k and "per_second" not in k}
               for row in finetune_result.history]
    with open("result.json", "w") as handle:
        json.dump({"metrics": finetune_result.metrics, "history": history}, handle)
    np.save("logits.npy", finetune_result.predictions.predictions, allow_pickle=False)
    np.save("labels.npy", finetune_result.predictions.label_ids, allow_pickle=False)
"""


def run(project: pytest.Pytester, *args: str) -> tuple[dict, np.ndarray, np.ndarray, dict]:
    """One session that fine-tunes anew; the test's result, logits, labels and the JSON report."""
    result = project.runpytest(
        "--finetune", "--finetune-no-cache", "--snapshot-update", "--finetune-report=report.json", *args
    )
    result.assert_outcomes(passed=1)
    path = project.path
    (test,) = json.loads((path / "report.json").read_text())["tests"]
    return (
        json.loads((path / "result.json").read_text()),
        np.load(path / "logits.npy", allow_pickle=False),
        np.load(path / "labels.npy", allow_pickle=False),
        test["record"],
    )


def unstable(record: dict) -> dict:
    """A report record without what differs between identical runs (the date, the time taken)."""
    return {key: value for key, value in record.items() if key not in ("date", "train_runtime")}


def test_the_same_recipe_and_seed_give_identical_metrics_and_logits(finetune_project: pytest.Pytester) -> None:
    finetune_project.makepyfile(test_quality=TEST)
    ini = finetune_project.path / "tox.ini"
    ini.write_text(ini.read_text().replace("max_steps = 4", "max_steps = 12"))  # two epochs, two evaluations
    first, logits, labels, record = run(finetune_project)
    assert logits.shape == (24, 2) and logits.dtype == np.float32
    assert len(first["history"]) == 2
    baseline = finetune_project.path / "baselines" / "test_quality" / "test_quality.json"
    recorded = baseline.read_bytes()

    # scramble every global generator: the plugin must seed whatever training draws from
    random.seed(1234)
    np.random.seed(1234)
    torch.manual_seed(1234)
    torch.rand(17)
    second, logits_again, labels_again, record_again = run(finetune_project)
    assert second == first  # metrics and history, every float to the last bit
    assert logits_again.tobytes() == logits.tobytes()
    assert np.array_equal(labels_again, labels)
    assert unstable(record_again) == unstable(record)
    assert baseline.read_bytes() == recorded  # --snapshot-update found nothing to rewrite

    # the comparison can tell runs apart: another seed, other logits
    third, other_logits, _, _ = run(finetune_project, "--finetune-set=seed=7")
    assert other_logits.tobytes() != logits.tobytes()
    assert third["history"] != first["history"]


def test_full_determinism_gives_the_same_logits_on_cpu(
    finetune_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``full_determinism=true`` (transformers' deterministic algorithms) is accepted and gives
    the very logits of the default on CPU: the default is already deterministic there."""
    # it sets process-wide state (in-process sessions share this process): restore it afterwards
    for name in ("CUDA_LAUNCH_BLOCKING", "CUBLAS_WORKSPACE_CONFIG", "FLASH_ATTENTION_DETERMINISTIC"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", torch.backends.cudnn.deterministic)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)
    finetune_project.makepyfile(test_quality=TEST)
    _, logits, _, record = run(finetune_project)
    Path(finetune_project.path / "baselines").rename(finetune_project.path / "baselines-default")
    enabled = torch.are_deterministic_algorithms_enabled()
    try:
        _, logits_full, _, record_full = run(finetune_project, "--finetune-set=full_determinism=true")
        assert torch.are_deterministic_algorithms_enabled()  # the setting reached the training
    finally:
        torch.use_deterministic_algorithms(enabled)
    assert record_full["recipe"]["training_args"].get("full_determinism") is True
    assert logits_full.tobytes() == logits.tobytes()
    assert record_full["metrics"] == record["metrics"]
