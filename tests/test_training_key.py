"""When two fine-tunes are the same: the in-session sharing key and the result cache key cover
every fixture that the training fixtures request (with its parameters, and only those) and the
whole module that defines each of them."""

from __future__ import annotations

import fnmatch
import json

import pytest

# Counts trainings: the result hook runs for a fine-tune, not for a shared or cached result.
COUNTING_CONFTEST = """
import fnmatch
import json
import pytest

def pytest_finetune_result(result):
    with open("trainings.jsonl", "a") as handle:
        handle.write(json.dumps(result.metrics["eval_loss"]) + "\\n")
"""
# A tokenization whose length comes from a fixture that is not one of the training fixtures.
MAX_LENGTH_TOKENIZATION = """
@pytest.fixture
def tokenized_mrpc(mrpc_dataset, tokenizer, max_length):
    def tokenize(batch):
        return tokenizer(batch["sentence1"], batch["sentence2"], truncation=True, max_length=max_length)

    return mrpc_dataset.map(tokenize, batched=True)
"""
# A trainer whose loss a module-level constant scales: an edit outside the fixture.
SCALED_TRAINER = """
from transformers import Trainer

LOSS_SCALE = 1.0


class ScaledTrainer(Trainer):
    def compute_loss(self, model, inputs, *args, **kwargs):
        computed = super().compute_loss(model, inputs, *args, **kwargs)
        if isinstance(computed, tuple):
            return (computed[0] * LOSS_SCALE, *computed[1:])
        return computed * LOSS_SCALE


@pytest.fixture
def trainer(model, training_args, tokenized_mrpc, data_collator, tokenizer, compute_metrics):
    return ScaledTrainer(model=model, args=training_args, train_dataset=tokenized_mrpc["train"],
                         eval_dataset=tokenized_mrpc["validation"], data_collator=data_collator,
                         processing_class=tokenizer, compute_metrics=compute_metrics)
"""
# Records what each test was given.
RECORDING_TEST = """
import json, pytest

def record(finetune_result, **seen):
    with open("seen.jsonl", "a") as handle:
        handle.write(json.dumps({"eval_loss": finetune_result.metrics["eval_loss"],
                                 "from_cache": finetune_result.from_cache, **seen}) + "\\n")
"""


# One marked test that records what it was given.
def length_tests(*tests: tuple[str, int]) -> str:
    """A test module of marked tests ``test_<name>``, each with a ``max_length`` marker, recording
    what it saw under the length's name (``long_again`` records as ``long``)."""
    return RECORDING_TEST + "".join(f"""
@pytest.mark.finetune
@pytest.mark.max_length({length})
def test_{name}(finetune_result):
    record(finetune_result, test="{name.removesuffix('_again')}")
""" for name, length in tests)


ONE_TEST = RECORDING_TEST + """
@pytest.mark.finetune
def test_quality(finetune_result):
    record(finetune_result)
"""


def read_lines(project: pytest.Pytester, name: str) -> list:
    path = project.path / name
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run(project: pytest.Pytester, passed: int = 1) -> pytest.RunResult:
    """Run with --finetune --snapshot-update, two training steps; ``passed`` tests must pass."""
    result = project.runpytest("--finetune", "--snapshot-update", "--finetune-set=max_steps=2")
    result.assert_outcomes(passed=passed)
    return result


def test_a_parameter_of_a_fixture_that_tokenized_mrpc_requests_gets_its_own_training(
    finetune_project: pytest.Pytester,
) -> None:
    finetune_project.makeconftest(COUNTING_CONFTEST + MAX_LENGTH_TOKENIZATION)
    finetune_project.makepyfile(RECORDING_TEST + """
@pytest.mark.parametrize("max_length", [4, 64])
def test_length(finetune_result, tokenized_mrpc, max_length):
    record(finetune_result, max_length=max_length)
""")
    run(finetune_project, passed=2)
    trained = read_lines(finetune_project, "trainings.jsonl")
    seen = read_lines(finetune_project, "seen.jsonl")
    assert len(trained) == 2 and trained[0] != trained[1]  # truncating to 4 tokens changes the loss
    assert sorted(row["eval_loss"] for row in seen) == sorted(trained)  # each test got its own result


def test_an_override_that_requests_its_own_name_brings_what_the_overridden_one_requests(
    finetune_project: pytest.Pytester,
) -> None:
    """``tokenized_mrpc(tokenized_mrpc)`` gets the conftest definition, which requests ``max_length``."""
    finetune_project.makeconftest(COUNTING_CONFTEST + MAX_LENGTH_TOKENIZATION)
    finetune_project.makepyfile(RECORDING_TEST + """
@pytest.fixture
def tokenized_mrpc(tokenized_mrpc):
    return tokenized_mrpc

@pytest.mark.parametrize("max_length", [4, 64])
def test_length(finetune_result, tokenized_mrpc, max_length):
    record(finetune_result, max_length=max_length)
""")
    run(finetune_project, passed=2)
    assert len(read_lines(finetune_project, "trainings.jsonl")) == 2


def test_a_fixture_defined_per_directory_gets_its_own_training(finetune_project: pytest.Pytester) -> None:
    finetune_project.makeconftest(COUNTING_CONFTEST + MAX_LENGTH_TOKENIZATION)
    for folder, length in (("a", 4), ("b", 64)):
        finetune_project.mkpydir(folder)
        (finetune_project.path / folder / "conftest.py").write_text(
            f"import pytest\n\n@pytest.fixture\ndef max_length():\n    return {length}\n"
        )
        (finetune_project.path / folder / f"test_{folder}.py").write_text(
            "import pytest\n\n@pytest.mark.finetune\ndef test_quality(finetune_result):\n    pass\n"
        )
    run(finetune_project, passed=2)
    assert len(read_lines(finetune_project, "trainings.jsonl")) == 2
    baselines = [json.loads(path.read_text()) for path in sorted((finetune_project.path / "baselines").rglob("*.json"))]
    assert len(baselines) == 2 and baselines[0]["metrics"] != baselines[1]["metrics"]  # b's is not a's


def test_a_parameter_that_reaches_no_training_fixture_is_served_from_the_cache(
    finetune_project: pytest.Pytester,
) -> None:
    """A function's ``repr`` holds its address, which changes every session."""
    finetune_project.makeconftest(COUNTING_CONFTEST)
    finetune_project.makepyfile(RECORDING_TEST + """
def positive(metrics):
    return metrics["accuracy"] >= 0.0

@pytest.mark.finetune
@pytest.mark.parametrize("check", [positive])
def test_quality(finetune_result, check):
    assert check(finetune_result.metrics)
    record(finetune_result, check=repr(check))
""")
    first = run(finetune_project)  # kept: its items keep the first function alive, so the second gets another address
    run(finetune_project)
    before, after = read_lines(finetune_project, "seen.jsonl")
    assert before["check"] != after["check"], "the premise: the parameter's repr changed"
    assert after["from_cache"] is True
    assert len(read_lines(finetune_project, "trainings.jsonl")) == 1
    del first


def test_a_conftest_edit_outside_the_fixture_misses(finetune_project: pytest.Pytester) -> None:
    """The ``trainer`` fixture is unchanged; the constant its ``Trainer`` subclass uses is not."""
    conftest = COUNTING_CONFTEST + SCALED_TRAINER
    finetune_project.makeconftest(conftest)
    finetune_project.makepyfile(ONE_TEST)
    run(finetune_project)
    finetune_project.makeconftest(conftest.replace("LOSS_SCALE = 1.0", "LOSS_SCALE = 1000.0"))
    run(finetune_project)
    before, after = read_lines(finetune_project, "seen.jsonl")
    assert after["from_cache"] is False
    assert after["eval_loss"] > 100 * before["eval_loss"]  # fine-tuned with the new constant


def test_an_edit_to_a_test_module_that_defines_no_training_fixture_still_hits(
    finetune_project: pytest.Pytester,
) -> None:
    finetune_project.makeconftest(COUNTING_CONFTEST)
    test_module = ONE_TEST
    finetune_project.makepyfile(test_quality=test_module)
    run(finetune_project)
    finetune_project.makepyfile(test_quality=test_module + "    assert finetune_result.metrics['accuracy'] >= 0.0\n")
    run(finetune_project)
    assert [row["from_cache"] for row in read_lines(finetune_project, "seen.jsonl")] == [False, True]
    assert len(read_lines(finetune_project, "trainings.jsonl")) == 1


def test_the_docs_say_when_the_trainer_is_trained(pytester: pytest.Pytester) -> None:
    output = pytester.runpytest("--fixtures", "-v").stdout.str()
    for name in ("trainer", "finetune_result"):
        section = " ".join(output.split(f"\n{name} -- ")[1].split("\n\n")[0].split())
        assert "from_cache" in section and "shared with an earlier test" in section, f"{name}'s docstring"


# What the fixtures hand the trainer, beyond their code and parameters -----------------------------


def test_other_weights_in_a_model_fixture_s_fixed_folder_miss(finetune_project: pytest.Pytester) -> None:
    """A ``model`` fixture that loads a folder of its own (not the recipe's model): new weights
    there are a new fine-tune, not the old result."""
    from helpers import save_tiny_checkpoint

    save_tiny_checkpoint(finetune_project.path / "own_model", seed=0)
    finetune_project.makeconftest(COUNTING_CONFTEST + """
from transformers import AutoModelForSequenceClassification, set_seed

@pytest.fixture
def model():
    set_seed(0)  # the new head's weights count too: unseeded, they differ every session
    return AutoModelForSequenceClassification.from_pretrained("own_model", num_labels=2)
""")
    finetune_project.makepyfile(ONE_TEST)
    run(finetune_project)
    run(finetune_project)
    save_tiny_checkpoint(finetune_project.path / "own_model", seed=1)
    run(finetune_project)
    assert [row["from_cache"] for row in read_lines(finetune_project, "seen.jsonl")] == [False, True, False]


def test_a_decorated_fixture_is_hashed_by_the_module_that_defines_it(finetune_project: pytest.Pytester) -> None:
    """``functools.wraps`` on a ``trainer`` fixture: its conftest's constant still counts."""
    (finetune_project.path / "project_helpers.py").write_text(
        "import functools\n\n"
        "def logged(function):\n"
        "    @functools.wraps(function)\n"
        "    def wrapper(*args, **kwargs):\n"
        "        return function(*args, **kwargs)\n\n"
        "    return wrapper\n"
    )
    decorated = SCALED_TRAINER.replace("@pytest.fixture\n", "@pytest.fixture\n@logged\n")
    conftest = "from project_helpers import logged\n" + COUNTING_CONFTEST + decorated
    finetune_project.makeconftest(conftest)
    finetune_project.makepyfile(ONE_TEST)
    run(finetune_project)
    finetune_project.makeconftest(conftest.replace("LOSS_SCALE = 1.0", "LOSS_SCALE = 1000.0"))
    run(finetune_project)
    assert [row["from_cache"] for row in read_lines(finetune_project, "seen.jsonl")] == [False, False]


def test_training_arguments_count_when_the_output_folder_is_the_project(finetune_project: pytest.Pytester) -> None:
    """``output_dir="."`` names no temporary folder: the other arguments must still be in the key
    (only the values naming the output folder are left out)."""
    finetune_project.makeconftest(COUNTING_CONFTEST + """
import os

def pytest_finetune_adjust_training_args(recipe, training_args):
    training_args["output_dir"] = "."
    training_args["learning_rate"] = float(os.environ["TEST_LR"])
""")
    finetune_project.makepyfile(ONE_TEST)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TEST_LR", "0.5")
        run(finetune_project)
        patch.setenv("TEST_LR", "0.01")
        run(finetune_project)
    assert [row["from_cache"] for row in read_lines(finetune_project, "seen.jsonl")] == [False, False]


def test_tests_share_a_fine_tune_only_when_their_data_is_the_same(finetune_project: pytest.Pytester) -> None:
    """One recipe, a ``tokenized_mrpc`` that reads another marker of the test: two fine-tunes."""
    finetune_project.makeconftest(COUNTING_CONFTEST + """
@pytest.fixture
def tokenized_mrpc(request, mrpc_dataset, tokenizer):
    max_length = request.node.get_closest_marker("max_length").args[0]

    def tokenize(batch):
        return tokenizer(batch["sentence1"], batch["sentence2"], truncation=True, max_length=max_length)

    return mrpc_dataset.map(tokenize, batched=True)
""")
    finetune_project.makepyfile(length_tests(("long", 64), ("short", 5), ("long_again", 64)))
    run(finetune_project, passed=3)
    assert len(read_lines(finetune_project, "trainings.jsonl")) == 2
    losses = {row["test"]: row["eval_loss"] for row in read_lines(finetune_project, "seen.jsonl")}
    assert losses["long"] != losses["short"]


def test_an_adjust_training_args_hook_that_returns_a_dict_fails_naming_it(finetune_project: pytest.Pytester) -> None:
    finetune_project.makeconftest("""
def pytest_finetune_adjust_training_args(recipe, training_args):
    return {"learning_rate": 1e-3}
""")
    finetune_project.makepyfile("""
import pytest

@pytest.mark.finetune
def test_quality(finetune_result):
    pass
""")
    result = finetune_project.runpytest("--finetune", "--snapshot-update")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*test_quality: a pytest_finetune_adjust_training_args hook returned dict {'learning_rate': 0.001}, which "
            "would be ignored; change its training_args dict in place*"
        ]
    )
    result.stdout.no_fnmatch_line("*Traceback*")


# What the test's own fixtures do to the trainer, and how its fixtures are registered ---------------


def test_a_fixture_that_changes_the_trainer_gets_its_own_training_and_cache_entry(
    finetune_project: pytest.Pytester,
) -> None:
    """A ``usefixtures`` fixture that adds a callback (stop after one step) to the trainer: a test without
    it neither shares that training in the session nor is served it from the cache in a later one."""
    finetune_project.makeconftest(COUNTING_CONFTEST)
    finetune_project.makepyfile(RECORDING_TEST + """
from transformers import TrainerCallback

class StopAfterOneStep(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        control.should_training_stop = True

@pytest.fixture
def early_stop(trainer):
    trainer.add_callback(StopAfterOneStep())

@pytest.mark.usefixtures("early_stop")
@pytest.mark.finetune
def test_stopped_early(finetune_result):
    record(finetune_result, test="stopped")

@pytest.mark.finetune
def test_full(finetune_result):
    record(finetune_result, test="full")
""")
    finetune_project.runpytest("--finetune", "--snapshot-update", "--finetune-set=max_steps=2", "-k", "stopped")
    run(finetune_project, passed=2)
    seen = read_lines(finetune_project, "seen.jsonl")
    assert [(row["test"], row["from_cache"]) for row in seen] == [
        ("stopped", False),
        ("stopped", True),
        ("full", False),
    ]
    assert len(read_lines(finetune_project, "trainings.jsonl")) == 2
    assert seen[2]["eval_loss"] != seen[1]["eval_loss"]


def test_a_conftest_that_registers_a_fixture_made_elsewhere_is_hashed(finetune_project: pytest.Pytester) -> None:
    """``compute_metrics = metrics_fixture(bonus=...)`` in the conftest, the factory in ``project_helpers.py``
    (not ``helpers``: the suite's own module of that name is already imported in this process): a changed
    argument in the conftest misses."""
    (finetune_project.path / "project_helpers.py").write_text(
        "import pytest\n"
        "from pytest_finetune.metrics import make_compute_metrics\n\n"
        "def metrics_fixture(bonus):\n"
        "    @pytest.fixture\n"
        "    def compute_metrics():\n"
        "        return make_compute_metrics(lambda logits, label_ids: {'bonus': bonus})\n\n"
        "    return compute_metrics\n"
    )
    conftest = (
        "from project_helpers import metrics_fixture\n"
        + COUNTING_CONFTEST
        + "\ncompute_metrics = metrics_fixture(0.25)\n"
    )
    finetune_project.makeconftest(conftest)
    finetune_project.makepyfile(RECORDING_TEST + """
@pytest.mark.finetune
def test_quality(finetune_result):
    record(finetune_result, bonus=finetune_result.metrics["bonus"])
""")
    run(finetune_project)
    finetune_project.makeconftest(conftest.replace("0.25", "0.75"))
    run(finetune_project)
    assert [(row["bonus"], row["from_cache"]) for row in read_lines(finetune_project, "seen.jsonl")] == [
        (0.25, False),
        (0.75, False),
    ]


def test_a_fixture_parametrized_with_a_function_is_served_from_the_cache(finetune_project: pytest.Pytester) -> None:
    """The parameter reaches ``tokenized_mrpc``; its ``repr`` holds an address that changes every session."""
    finetune_project.makeconftest(COUNTING_CONFTEST + """
def lower(text):
    return text.lower()

@pytest.fixture(params=[lower], ids=["lower"])
def normalize(request):
    return request.param

@pytest.fixture
def tokenized_mrpc(mrpc_dataset, tokenizer, normalize):
    def tokenize(batch):
        return tokenizer([normalize(s) for s in batch["sentence1"]], batch["sentence2"], truncation=True)

    return mrpc_dataset.map(tokenize, batched=True)
""")
    finetune_project.makepyfile(RECORDING_TEST + """
@pytest.mark.finetune
def test_quality(finetune_result, tokenized_mrpc):
    record(finetune_result)
""")
    first = run(finetune_project)  # kept: its items keep the first function alive, so the second gets another address
    run(finetune_project)
    assert [row["from_cache"] for row in read_lines(finetune_project, "seen.jsonl")] == [False, True]
    del first


# Datasets without a ``datasets`` fingerprint, and who shared whose fine-tune -----------------------

LIST_TOKENIZATION = """
import pytest

class Rows(list):
    "A torch-style dataset: a list of feature dicts, without a datasets fingerprint."

@pytest.fixture
def tokenized_mrpc(request, mrpc_dataset, tokenizer):
    max_length = request.node.get_closest_marker("max_length").args[0]

    def tokenize(batch):
        return tokenizer(batch["sentence1"], batch["sentence2"], truncation=True, max_length=max_length)

    tokenized = mrpc_dataset.map(tokenize, batched=True).remove_columns(["sentence1", "sentence2", "idx"])
    return {split: Rows(tokenized[split].to_list()) for split in tokenized}
"""


def test_datasets_without_fingerprints_are_not_shared_and_say_they_are_not_cached(
    finetune_project: pytest.Pytester,
) -> None:
    finetune_project.makeconftest(COUNTING_CONFTEST + LIST_TOKENIZATION)
    finetune_project.makepyfile(length_tests(("short", 5), ("long", 64)))
    result = run(finetune_project, passed=2)
    assert len(read_lines(finetune_project, "trainings.jsonl")) == 2
    losses = {row["test"]: row["eval_loss"] for row in read_lines(finetune_project, "seen.jsonl")}
    assert losses["short"] != losses["long"]
    warning = "*pytest-finetune: the datasets of *test_short's trainer have no `datasets` fingerprint*neither cached*"
    result.stdout.fnmatch_lines([warning])
    assert len(fnmatch.filter(result.stdout.lines, "*have no `datasets` fingerprint*")) == 1  # said once
    run(finetune_project, passed=2)
    assert len(read_lines(finetune_project, "trainings.jsonl")) == 4  # nor cached


def test_a_shared_result_names_the_test_it_shares_with(finetune_project: pytest.Pytester) -> None:
    finetune_project.makeconftest(COUNTING_CONFTEST)
    finetune_project.makepyfile(RECORDING_TEST + """
@pytest.mark.finetune
def test_first(finetune_result):
    record(finetune_result, shared_from=finetune_result.shared_from)

@pytest.mark.finetune
def test_second(finetune_result):
    record(finetune_result, shared_from=finetune_result.shared_from)
""")
    for from_cache in (False, True):  # fine-tuned, then served from the cache
        run(finetune_project, passed=2)
        seen = read_lines(finetune_project, "seen.jsonl")[-2:]
        assert [(row["shared_from"], row["from_cache"]) for row in seen] == [
            (None, from_cache),
            ("test_a_shared_result_names_the_test_it_shares_with.py::test_first", from_cache),
        ]
    assert len(read_lines(finetune_project, "trainings.jsonl")) == 1
