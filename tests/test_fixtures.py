"""The public fixtures and hooks, as a downstream project uses them (tiny checkpoint and data)."""

from __future__ import annotations

import json

import pytest
from helpers import assert_fails_clearly

FIXTURES = (
    "finetune_recipe",
    "finetune_dataset",
    "mrpc_dataset",
    "tokenizer",
    "tokenized_dataset",
    "tokenized_mrpc",
    "data_collator",
    "model",
    "compute_metrics",
    "training_args",
    "trainer",
    "finetune_result",
    "finetune_snapshot",
)

# A conftest.py that counts trainings in trainings.jsonl through the result hook.
COUNTING_CONFTEST = """
import json

def pytest_finetune_result(result):
    with open("trainings.jsonl", "a") as handle:
        handle.write(json.dumps({"seed": result.recipe.seed, "n_eval": len(result.predictions.label_ids)}) + "\\n")
"""


def trainings(pytester: pytest.Pytester) -> list[dict]:
    path = pytester.path / "trainings.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_every_fixture_is_documented(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--fixtures")
    output = result.stdout.str()
    for name in FIXTURES:
        assert f"\n{name} -- " in output, f"{name} is not listed by --fixtures"
        section = output.split(f"\n{name} -- ")[1].split("\n\n")[0]
        assert "no docstring available" not in section, f"{name} has no docstring"
    for name, words in {
        "finetune_recipe": "resolved fine-tuning recipe",
        "tokenized_dataset": "truncation=True",
        "tokenized_mrpc": "tokenized_dataset",
        "data_collator": "DataCollatorWithPadding",
        "finetune_result": "fine-tuned and evaluated",
        "finetune_snapshot": "compared within tolerance",
    }.items():
        section = output.split(f"\n{name} -- ")[1].split("\n\n")[0]
        assert words in section, f"{name}'s docstring is not shown"


def test_ingredients(finetune_project: pytest.Pytester) -> None:
    finetune_project.makepyfile("""
        import torch

        def test_dataset(mrpc_dataset):
            assert sorted(mrpc_dataset) == ["train", "validation"]
            assert mrpc_dataset["train"].column_names == ["sentence1", "sentence2", "label", "idx"]
            assert (mrpc_dataset["train"].num_rows, mrpc_dataset["validation"].num_rows) == (48, 24)

        def test_tokenized(tokenized_mrpc, tokenizer):
            first = tokenized_mrpc["train"][0]
            expected = tokenizer(first["sentence1"], first["sentence2"], truncation=True)["input_ids"]
            assert first["input_ids"] == expected
            assert tokenizer.unk_token_id not in expected

        def test_collator_pads_to_the_longest(data_collator, tokenized_mrpc):
            rows = [{"input_ids": ids} for ids in (tokenized_mrpc["train"][i]["input_ids"][: 3 + i] for i in range(3))]
            batch = data_collator(rows)
            assert batch["input_ids"].shape == (3, 5)

        def test_model(model, tokenizer):
            assert type(model).__name__ == "BertForSequenceClassification"
            assert model.config.num_labels == 2
            assert model.config.vocab_size == len(tokenizer)

        def test_compute_metrics(compute_metrics):
            from transformers import EvalPrediction
            import numpy as np
            logits = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
            scores = compute_metrics(EvalPrediction(predictions=logits, label_ids=np.array([1, 0, 0])))
            assert scores == {"accuracy": 2 / 3, "f1": 2 / 3}

        def test_training_args(training_args, tmp_path):
            assert training_args.learning_rate == 5e-5
            assert training_args.per_device_train_batch_size == 8
            assert training_args.max_steps == 4
            assert training_args.seed == 42
            assert str(tmp_path.parent) in training_args.output_dir

        def test_trainer_is_configured_not_trained(trainer, model, tokenized_mrpc):
            assert trainer.model is model
            assert trainer.state.global_step == 0
            assert len(trainer.train_dataset) == 48 and len(trainer.eval_dataset) == 24
        """)
    finetune_project.runpytest().assert_outcomes(passed=7)


def test_model_is_fresh_per_test(finetune_project: pytest.Pytester) -> None:
    finetune_project.makepyfile("""
        import torch
        seen = []

        def test_first(model):
            seen.append(model)
            torch.nn.init.zeros_(model.classifier.weight)  # a test may change its model

        def test_second(model):
            assert model is not seen[0]
            assert model.classifier.weight.abs().sum() > 0
        """)
    finetune_project.runpytest().assert_outcomes(passed=2)


def test_same_seed_gives_the_same_head(finetune_project: pytest.Pytester) -> None:
    finetune_project.makepyfile("""
        import pytest, torch
        heads = {}

        @pytest.mark.parametrize("run", [1, 2])
        def test_seed_42(model, run):
            heads[run] = model.classifier.weight.detach().clone()

        @pytest.mark.finetune(seed=1)
        def test_seed_1(model):
            assert torch.equal(heads[1], heads[2])
            assert not torch.equal(heads[1], model.classifier.weight)
        """)
    finetune_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=3)


def test_finetune_result_trains_and_reports_the_seed_table(finetune_project: pytest.Pytester) -> None:
    finetune_project.makepyfile("""
        import pytest

        @pytest.mark.finetune(max_steps=-1, num_train_epochs=2)
        def test_result(finetune_result):
            assert {"accuracy", "f1", "eval_loss"} <= set(finetune_result.metrics)
            assert 0.0 <= finetune_result.metrics["accuracy"] <= 1.0
            assert [row["epoch"] for row in finetune_result.history] == [1.0, 2.0]
            assert [row["step"] for row in finetune_result.history] == [6, 12]  # 48 pairs, batch 8
            for row in finetune_result.history:
                assert {"epoch", "training_loss", "validation_loss", "accuracy", "f1"} <= set(row)
                assert row["training_loss"] > 0 and row["validation_loss"] > 0
            assert finetune_result.history[-1]["accuracy"] == finetune_result.metrics["accuracy"]
            assert finetune_result.predictions.predictions.shape == (24, 2)
            assert list(finetune_result.predictions.label_ids) == [0 if i % 3 == 0 else 1 for i in range(24)]
            assert finetune_result.train_runtime > 0
            assert finetune_result.recipe.training_args["num_train_epochs"] == 2.0
        """)
    finetune_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=1)


def test_tests_sharing_a_recipe_share_one_training(finetune_project: pytest.Pytester) -> None:
    finetune_project.makeconftest(COUNTING_CONFTEST)
    finetune_project.makepyfile("""
        import pytest

        @pytest.mark.finetune
        def test_one(finetune_result):
            pass

        @pytest.mark.finetune
        def test_two(finetune_result):
            pass

        @pytest.mark.finetune
        def test_three(finetune_result):
            pass

        @pytest.mark.finetune(seed=7)
        def test_other_seed(finetune_result):
            assert finetune_result.recipe.seed == 7
        """)
    finetune_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=4)
    assert sorted(run["seed"] for run in trainings(finetune_project)) == [7, 42]


def test_conftest_override_flows_into_the_trainer_and_its_own_training(finetune_project: pytest.Pytester) -> None:
    finetune_project.makeconftest(COUNTING_CONFTEST)
    finetune_project.makepyfile(test_top="""
        import pytest

        @pytest.mark.finetune
        def test_full(finetune_result):
            assert len(finetune_result.predictions.label_ids) == 24
        """)
    sub = finetune_project.mkpydir("sub")
    (sub / "conftest.py").write_text(
        "import pytest\n\n"
        "@pytest.fixture\n"
        "def tokenized_mrpc(tokenized_mrpc):\n"
        '    """Only the first 8 validation pairs."""\n'
        '    tokenized_mrpc["validation"] = tokenized_mrpc["validation"].select(range(8))\n'
        "    return tokenized_mrpc\n"
    )
    (sub / "test_sub.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.finetune\n"
        "def test_small(finetune_result, trainer):\n"
        "    assert len(trainer.eval_dataset) == 8\n"
        "    assert len(finetune_result.predictions.label_ids) == 8\n"
    )
    finetune_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=2)
    assert sorted(run["n_eval"] for run in trainings(finetune_project)) == [8, 24]


def test_hooks_adjust_recipe_training_args_and_metrics(finetune_project: pytest.Pytester) -> None:
    finetune_project.makeconftest(COUNTING_CONFTEST + """
import numpy as np

def pytest_finetune_adjust_recipe(recipe, item):
    if "reseeded" in item.name:
        return {"seed": recipe.seed + 1, "learning_rate": 1e-3}

def pytest_finetune_adjust_training_args(recipe, training_args):
    training_args["per_device_eval_batch_size"] = 5

def pytest_finetune_metrics(recipe, logits, label_ids):
    return {"positive_rate": float(np.mean(np.argmax(logits, axis=-1) == 1))}
""")
    finetune_project.makepyfile("""
        import pytest

        @pytest.mark.finetune(seed=10)
        def test_reseeded(finetune_recipe, training_args, finetune_result):
            assert finetune_recipe.seed == 11
            assert finetune_recipe.training_args["learning_rate"] == 1e-3
            assert training_args.per_device_eval_batch_size == 5
            # the result (and its baseline) holds the training arguments the trainer used: the hook's
            assert dict(finetune_result.recipe.training_args) == {
                **finetune_recipe.training_args, "per_device_eval_batch_size": 5
            }
            assert finetune_result.recipe.seed == finetune_recipe.seed
            assert 0.0 <= finetune_result.metrics["positive_rate"] <= 1.0
            assert "positive_rate" in finetune_result.history[-1]

        @pytest.mark.finetune(seed=10)
        def test_untouched(finetune_recipe):
            assert finetune_recipe.seed == 10
        """)
    finetune_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=2)
    # a marked test fine-tunes (for its baseline) even when its body asks for no result
    assert trainings(finetune_project) == [{"seed": 11, "n_eval": 24}, {"seed": 10, "n_eval": 24}]


def test_closest_conftest_hook_wins(finetune_project: pytest.Pytester) -> None:
    finetune_project.makeconftest("def pytest_finetune_adjust_recipe(recipe, item):\n    return {'seed': 1}\n")
    sub = finetune_project.mkpydir("sub")
    (sub / "conftest.py").write_text("def pytest_finetune_adjust_recipe(recipe, item):\n    return {'seed': 2}\n")
    (sub / "test_sub.py").write_text("def test_seed(finetune_recipe):\n    assert finetune_recipe.seed == 2\n")
    finetune_project.makepyfile("def test_seed(finetune_recipe):\n    assert finetune_recipe.seed == 1\n")
    finetune_project.runpytest().assert_outcomes(passed=2)


def test_bad_hook_overrides_fail_the_test_naming_the_hook(finetune_project: pytest.Pytester) -> None:
    finetune_project.makeconftest("def pytest_finetune_adjust_recipe(recipe, item):\n    return {'epochs': 1}\n")
    finetune_project.makepyfile("def test_x(finetune_recipe):\n    pass\n")
    result = finetune_project.runpytest()
    assert_fails_clearly(result, "*test_x: pytest_finetune_adjust_recipe hook: unknown keyword 'epochs'*")


def test_training_arguments_rejected_by_transformers_fail_clearly(finetune_project: pytest.Pytester) -> None:
    finetune_project.makepyfile("""
        import pytest

        @pytest.mark.finetune(load_best_model_at_end=True)  # needs matching save and eval strategies
        def test_x(training_args):
            pass
        """)
    result = finetune_project.runpytest("--finetune", "--snapshot-update")
    assert_fails_clearly(result, "*transformers.TrainingArguments rejected the recipe's training arguments*")


def test_training_arguments_a_hook_set_and_transformers_rejects_fail_naming_the_hook(
    finetune_project: pytest.Pytester,
) -> None:
    finetune_project.makeconftest("""
        def pytest_finetune_adjust_training_args(recipe, training_args):
            training_args["no_such_argument"] = 1
        """)
    finetune_project.makepyfile("def test_x(training_args):\n    pass\n")
    result = finetune_project.runpytest("--finetune", "--snapshot-update")
    assert_fails_clearly(
        result,
        "*transformers.TrainingArguments rejected no_such_argument, which a pytest_finetune_adjust_training_args "
        "hook set: *no_such_argument*; change that hook",
    )


def test_finetune_result_s_docs_say_it_needs_finetune_and_list_its_attributes(pytester: pytest.Pytester) -> None:
    """``pytest --fixtures`` shows a docstring's first paragraph: a whole sentence; ``-v`` the whole docstring."""
    shown = pytester.runpytest("--fixtures").stdout.str().split("\nfinetune_result -- ")[1].split("\n\n")[0]
    summary = " ".join(shown.split()[1:])
    assert summary.endswith("needs ``--finetune`` (without it the test is skipped)."), summary
    output = pytester.runpytest("--fixtures", "-v").stdout.str()
    section = " ".join(output.split("\nfinetune_result -- ")[1].split("\n\nfinetune_snapshot")[0].split()[1:])
    for attribute in (".environment", ".from_cache", ".recipe", ".intervals", ".shared_from"):
        assert f"``{attribute}``" in section, attribute


def test_trainer_without_validation_split_fails_clearly(finetune_project: pytest.Pytester) -> None:
    finetune_project.makeconftest("""
        import pytest
        from transformers import Trainer

        @pytest.fixture
        def trainer(model, training_args, tokenized_mrpc, data_collator):
            return Trainer(model=model, args=training_args, train_dataset=tokenized_mrpc["train"],
                           data_collator=data_collator)
        """)
    finetune_project.makepyfile("""
        import pytest

        @pytest.mark.finetune(eval_strategy="no")
        def test_x(finetune_result):
            pass
        """)  # without evaluation during training, Trainer itself accepts it
    result = finetune_project.runpytest("--finetune", "--snapshot-update")
    assert_fails_clearly(result, "*the trainer needs one eval_dataset, the validation split*")


def test_each_test_gets_its_own_copy_of_a_shared_result(finetune_project: pytest.Pytester) -> None:
    finetune_project.makepyfile("""
        import pytest

        @pytest.mark.finetune
        def test_edits(finetune_result):
            finetune_result.metrics["accuracy"] = 0.1234567  # a valid score no small split gives
            finetune_result.history.clear()

        @pytest.mark.finetune
        def test_sees_the_original(finetune_result):
            assert finetune_result.metrics["accuracy"] != 0.1234567
            assert len(finetune_result.history) == 1
        """)
    finetune_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=2)


def test_directory_hooks_get_their_own_training(finetune_project: pytest.Pytester) -> None:
    finetune_project.makeconftest(COUNTING_CONFTEST)
    finetune_project.makepyfile(test_top="""
        import pytest

        @pytest.mark.finetune
        def test_top(finetune_result):
            assert "positive_rate" not in finetune_result.metrics
        """)
    sub = finetune_project.mkpydir("sub")
    (sub / "conftest.py").write_text(
        "import numpy as np\n\n"
        "def pytest_finetune_metrics(recipe, logits, label_ids):\n"
        "    return {'positive_rate': np.mean(np.argmax(logits, axis=-1) == 1)}\n"
    )
    (sub / "test_sub.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.finetune\n"
        "def test_sub(finetune_result):\n"
        "    assert 0.0 <= finetune_result.metrics['positive_rate'] <= 1.0\n"
    )
    finetune_project.runpytest("--finetune", "--snapshot-update").assert_outcomes(passed=2)
    assert len(trainings(finetune_project)) == 2


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        ("{'accuracy': 1.0}", "*pytest_finetune_metrics hook: the metric name 'accuracy' is taken*"),
        ("{'note': 'good'}", "*pytest_finetune_metrics hook: metric 'note' is 'good', not a number*"),
    ],
)
def test_bad_hook_metrics_fail_the_test_naming_the_hook(
    finetune_project: pytest.Pytester, returned: str, message: str
) -> None:
    finetune_project.makeconftest(f"def pytest_finetune_metrics(recipe, logits, label_ids):\n    return {returned}\n")
    finetune_project.makepyfile("import pytest\n\n@pytest.mark.finetune\ndef test_x(finetune_result):\n    pass\n")
    result = finetune_project.runpytest("--finetune", "--snapshot-update")
    assert_fails_clearly(result, message)
