"""run_finetune: the final metrics come from the last evaluation when there was one, in the validation order;
the training arguments: the fused AdamW where the installed versions default to the unfused one."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import assert_fails_clearly

from pytest_finetune.compat import UNFUSED_ADAMW, fused_adamw_training_args, installed_training_args
from pytest_finetune.recipe import build_recipe
from pytest_finetune.training import build_training_arguments, trained_recipe, training_arguments_kwargs

# Counts Trainer.predict calls, and checks the result against a fresh predict of the trained trainer.
CONFTEST = """
import pytest
from transformers import Trainer

CALLS = []
_predict = Trainer.predict

def counting_predict(self, *args, **kwargs):
    CALLS.append(1)
    return _predict(self, *args, **kwargs)

@pytest.fixture(autouse=True)
def count_predictions(monkeypatch):
    monkeypatch.setattr(Trainer, "predict", counting_predict)
"""
TEST = """
import json
import numpy as np
import pytest
import conftest

@pytest.mark.finetune(KEYWORDS)
def test_x(trainer, finetune_result):
    predictions_during_training = len(conftest.CALLS)
    again = trainer.predict(trainer.eval_dataset, metric_key_prefix="eval")
    with open("out.json", "w") as handle:
        json.dump({
            "predict_calls": predictions_during_training,
            "same_logits": bool(np.array_equal(again.predictions, finetune_result.predictions.predictions)),
            "same_labels": bool(np.array_equal(again.label_ids, finetune_result.predictions.label_ids)),
            "labels": finetune_result.predictions.label_ids.tolist(),
            "validation_labels": list(trainer.eval_dataset["label"]),
            "metrics": finetune_result.metrics,
            "again": {key.removeprefix("eval_").replace("loss", "eval_loss"): value
                      for key, value in again.metrics.items() if key in ("eval_loss", "eval_accuracy", "eval_f1")},
        }, handle)
"""


def run(project: pytest.Pytester, keywords: str) -> dict:
    project.makeconftest(CONFTEST)
    project.makepyfile(test_x=TEST.replace("KEYWORDS", keywords))
    project.runpytest("--finetune", "--snapshot-update", "--finetune-no-cache").assert_outcomes(passed=1)
    return json.loads((project.path / "out.json").read_text())


def test_the_last_evaluation_gives_the_final_metrics_without_another_pass(finetune_project: pytest.Pytester) -> None:
    out = run(finetune_project, "max_steps=-1, num_train_epochs=1")  # evaluated at the end of its one epoch
    assert out["predict_calls"] == 0
    assert out["same_logits"] and out["same_labels"]  # what an extra predict would have given, to the bit
    assert {key: out["metrics"][key] for key in out["again"]} == out["again"]


def test_without_an_evaluation_at_the_last_step_it_predicts_once(finetune_project: pytest.Pytester) -> None:
    out = run(finetune_project, 'eval_strategy="no"')
    assert out["predict_calls"] == 1
    assert out["same_logits"] and {key: out["metrics"][key] for key in out["again"]} == out["again"]


def test_predictions_follow_the_validation_order_with_length_grouped_batches(
    finetune_project: pytest.Pytester,
) -> None:
    """transformers groups evaluation batches by length too, shuffled; the plugin keeps the split's order."""
    out = run(finetune_project, 'train_sampling_strategy="group_by_length"')
    assert out["labels"] == out["validation_labels"]
    assert out["same_logits"]  # the result is what an in-order predict gives, row by row


def test_a_5x_only_sampling_strategy_is_refused_for_4x() -> None:
    from pytest_finetune import compat
    from pytest_finetune.errors import FinetuneError

    assert compat._group_by_length_4x("group_by_length") is True
    assert compat._group_by_length_4x("random") is False
    with pytest.raises(FinetuneError, match="train_sampling_strategy='sequential' needs transformers 5"):
        compat._group_by_length_4x("sequential")


@pytest.mark.parametrize(
    "keywords",
    [
        {},
        {"max_steps": 4, "per_device_eval_batch_size": 16},
        {"warmup_steps": 0.1, "lr_scheduler_type": "cosine", "eval_strategy": "steps", "eval_steps": 2},
        {"group_by_length": False, "evaluation_strategy": "no", "warmup_steps": 3, "use_cpu": False},
    ],
    ids=["seed", "budget", "schedule", "4x-spelling"],
)
def test_the_plugin_s_own_training_arguments_leave_the_recipe_as_it_is(tmp_path: Path, keywords: dict) -> None:
    """The recipe read back from the trainer's arguments (either major's spelling) is the recipe itself."""
    recipe = build_recipe([("test", keywords)])
    arguments = build_training_arguments(training_arguments_kwargs(recipe, tmp_path, "auto"))
    assert trained_recipe(recipe, SimpleNamespace(args=arguments), "auto") is recipe  # type: ignore[arg-type]


def test_training_arguments_of_an_override_are_the_recipe_s_in_5x_spelling(tmp_path: Path) -> None:
    """What a training_args override holds for the recipe's keys replaces the recipe's; other keys stay."""
    recipe = build_recipe([("test", {"max_steps": 4})])
    own = installed_training_args({"learning_rate": 1e-4, "train_sampling_strategy": "random", "max_steps": 4})
    arguments = build_training_arguments({**own, "output_dir": str(tmp_path), "use_cpu": True})
    trained = trained_recipe(recipe, SimpleNamespace(args=arguments), "auto")  # type: ignore[arg-type]
    assert dict(trained.training_args) == {
        **recipe.training_args,
        "learning_rate": 1e-4,
        "train_sampling_strategy": "random",
        "eval_strategy": "no",  # TrainingArguments' default: the override sets none
        # where the plugin picks the fused AdamW over the installed default (transformers < 4.54), the override,
        # which names no optimizer, trains with that default, and the recipe says so
        **({"optim": UNFUSED_ADAMW} if fused_adamw_training_args({}, "cpu") else {}),
    }
    assert (trained.model, trained.seed) == (recipe.model, recipe.seed)


def default_optimizer(monkeypatch: pytest.MonkeyPatch, name: str = "adamw_torch") -> None:
    """Make the installed TrainingArguments default to optimizer ``name``: by default the
    unfused AdamW, as transformers before 4.54 (or with torch before 2.8) does."""
    import dataclasses

    from transformers import TrainingArguments

    (optim,) = (field for field in dataclasses.fields(TrainingArguments) if field.name == "optim")
    monkeypatch.setattr(optim, "default", name)


def test_the_fused_adamw_replaces_an_unfused_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_finetune.compat import fused_adamw_training_args

    default_optimizer(monkeypatch, "adamw_torch_fused")  # transformers 4.54 and newer with torch 2.8 and newer
    assert fused_adamw_training_args({}, "cpu") == {}
    default_optimizer(monkeypatch)
    assert fused_adamw_training_args({}, "cpu") == {"optim": "adamw_torch_fused"}
    assert fused_adamw_training_args({}, "cuda") == {"optim": "adamw_torch_fused"}
    assert fused_adamw_training_args({"optim": "adamw_torch"}, "cpu") == {}  # the recipe named its optimizer
    assert fused_adamw_training_args({}, "mps") == {}


OPTIMIZER_CONFTEST = """
import json

def pytest_finetune_adjust_training_args(recipe, training_args):
    with open("given.json", "w") as handle:
        json.dump({"optim": training_args.get("optim")}, handle)
"""
OPTIMIZER_TEST = """
import json

def test_x(trainer, finetune_result):
    optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # accelerate wraps it
    with open("built.json", "w") as handle:
        json.dump({"fused": bool(optimizer.defaults.get("fused"))}, handle)
"""


@pytest.mark.parametrize(
    ("options", "given", "fused"),
    [((), "adamw_torch_fused", True), (("--finetune-set", "optim=adamw_torch"), "adamw_torch", False)],
)
def test_a_fine_tune_on_an_unfused_default_trains_with_the_fused_adamw(
    finetune_project: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    options: tuple[str, ...],
    given: str,
    fused: bool,
) -> None:
    """Where the installed versions default to the unfused AdamW, the plugin asks for the fused
    one (the hook sees it, Trainer builds it); a recipe that names its optimizer keeps it."""
    default_optimizer(monkeypatch)
    finetune_project.makeconftest(OPTIMIZER_CONFTEST)
    finetune_project.makepyfile(test_x=OPTIMIZER_TEST)
    finetune_project.runpytest("--finetune", "--finetune-no-cache", *options).assert_outcomes(passed=1)
    assert json.loads((finetune_project.path / "given.json").read_text()) == {"optim": given}
    assert json.loads((finetune_project.path / "built.json").read_text()) == {"fused": fused}


BAD_METRICS_CONFTEST = """
import numpy as np
import pytest

@pytest.fixture
def compute_metrics():
    def scores(eval_prediction):
        return RETURNED
    return scores
"""


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        ("{'accuracy': 0.5, 'f1': 0.5, 'note': 'good'}", "metric 'note' is 'good', not a number; return a dict"),
        ("{'accuracy': 0.5, 'f1': np.zeros(3)}", "metric 'f1' is *, not a number; return a dict"),
        ("0.5", "returned 0.5 (float), not a dict of metrics; return a dict of metric names to numbers*"),
    ],
    ids=["string", "array", "float"],
)
def test_a_compute_metrics_override_returning_no_numbers_fails_clearly(
    finetune_project: pytest.Pytester, returned: str, message: str
) -> None:
    finetune_project.makeconftest(BAD_METRICS_CONFTEST.replace("RETURNED", returned))
    finetune_project.makepyfile("def test_x(finetune_result):\n    pass\n")
    result = finetune_project.runpytest("--finetune", "--finetune-no-cache")
    assert_fails_clearly(result, f"*compute_metrics (the fixture, or the trainer's)*{message}*")


@pytest.mark.parametrize("num_labels", [3, 1])
def test_a_model_with_a_head_of_another_size_fails_before_training(
    finetune_project: pytest.Pytester, num_labels: int
) -> None:
    finetune_project.makeconftest(f"""
import pytest
from transformers import AutoModelForSequenceClassification

@pytest.fixture
def model(finetune_recipe):
    return AutoModelForSequenceClassification.from_pretrained(
        finetune_recipe.model, num_labels={num_labels}, ignore_mismatched_sizes=True
    )
""")
    finetune_project.makepyfile("def test_x(trainer, finetune_result):\n    pass\n")
    result = finetune_project.runpytest("--finetune", "--finetune-no-cache")
    assert_fails_clearly(
        result,
        f"*the model's classification head has num_labels={num_labels}, but the task 'mrpc' has 2 labels; "
        "load the model with num_labels=2*",
    )
