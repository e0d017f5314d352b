"""The public fixtures: the seed recipe, one ingredient each.

Each fixture builds one thing from the fixtures before it, so a downstream
``conftest.py`` can replace any one of them (say ``tokenized_mrpc``, to test a new
preprocessing step) and everything after it picks up the replacement.

torch, transformers and datasets are imported inside the fixtures that use them, so
that a pytest run that fine-tunes nothing does not pay for importing them.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import pytest

from .baselines import BaselineExtension
from .finetuning import baseline_settings, hook_metrics, hub_note, result_for, training_arguments_for
from .key import fixture_named, overriding_fixture
from .options import SKIP_REASON
from .recipe import Recipe
from .session import SESSION_KEY

if TYPE_CHECKING:
    import datasets
    from syrupy.assertion import SnapshotAssertion
    from transformers import DataCollatorWithPadding, PreTrainedModel, Trainer, TrainingArguments
    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

    from .metrics import MetricsFunction
    from .result import FinetuneResult


@pytest.fixture
def finetune_recipe(request: pytest.FixtureRequest) -> Recipe:
    """The resolved fine-tuning recipe of this test (a frozen ``Recipe``).

    Built from the seed recipe (bert-base-uncased, GLUE MRPC, lr 5e-5, batch 8,
    3 epochs, seed 42), then the ini file, environment, command line, the test's
    ``finetune`` marker and the ``pytest_finetune_adjust_recipe`` hook.
    """
    return request.config.stash[SESSION_KEY].recipe_for(request.node)


@pytest.fixture
def finetune_dataset(request: pytest.FixtureRequest, finetune_recipe: Recipe) -> datasets.DatasetDict:
    """The raw data: a ``DatasetDict`` with ``train`` and ``validation`` splits of the task's
    columns (MRPC: ``sentence1``, ``sentence2``, ``label`` and ``idx``), from the recipe's Hub
    dataset, GLUE TSV folder or csv/json/jsonl/parquet files.
    """
    from .data import load_raw_dataset

    source = finetune_recipe.data_source
    return load_raw_dataset(source, finetune_recipe.task_spec, functools.partial(hub_note, request.config, source))


@pytest.fixture
def mrpc_dataset(finetune_dataset: datasets.DatasetDict) -> datasets.DatasetDict:
    """``finetune_dataset`` under the seed recipe's name. ``tokenized_dataset`` reads the data through
    this name, so that a ``conftest.py`` may override either name and the run uses its data."""
    return finetune_dataset


@pytest.fixture
def tokenizer(request: pytest.FixtureRequest, finetune_recipe: Recipe) -> PreTrainedTokenizerBase:
    """The recipe model's tokenizer (``AutoTokenizer.from_pretrained``)."""
    from .models import load_tokenizer

    return load_tokenizer(finetune_recipe, functools.partial(hub_note, request.config, finetune_recipe.model))


@pytest.fixture
def tokenized_dataset(
    request: pytest.FixtureRequest,
    finetune_recipe: Recipe,
    mrpc_dataset: datasets.DatasetDict,
    tokenizer: PreTrainedTokenizerBase,
) -> datasets.DatasetDict:
    """The data (``finetune_dataset``, or ``mrpc_dataset``: the same fixture) with each example tokenized as
    ``tokenizer(sentence1, sentence2, truncation=True)`` (the task's text columns: one for a single-text
    task such as SST-2; ``Dataset.map``, batched, cached by ``datasets``); no padding here, the
    ``data_collator`` pads each batch. Data a ``conftest.py`` gives is checked as data files are
    (splits, rows, columns, labels, ids) first.
    """
    from .data import check_fixture_data

    overridden = overriding_fixture(request, "mrpc_dataset", "finetune_dataset")
    if overridden is not None:  # the plugin's own was checked as it loaded
        check_fixture_data(mrpc_dataset, fixture_named(request, overridden), finetune_recipe.task_spec)

    def tokenize(batch: dict[str, list[Any]]) -> Any:
        return tokenizer(*(batch[column] for column in finetune_recipe.task_spec.text_columns), truncation=True)

    return mrpc_dataset.map(tokenize, batched=True)


@pytest.fixture
def tokenized_mrpc(tokenized_dataset: datasets.DatasetDict) -> datasets.DatasetDict:
    """``tokenized_dataset`` under the seed recipe's name. The ``trainer`` reads the tokenized data through
    this name, so that a ``conftest.py`` may override either name and the run trains on its data."""
    return tokenized_dataset


@pytest.fixture
def data_collator(tokenizer: PreTrainedTokenizerBase) -> DataCollatorWithPadding:
    """Dynamic padding: ``DataCollatorWithPadding(tokenizer)`` pads each batch to its longest pair."""
    from transformers import DataCollatorWithPadding

    return DataCollatorWithPadding(tokenizer=tokenizer)


@pytest.fixture
def model(request: pytest.FixtureRequest, finetune_recipe: Recipe) -> PreTrainedModel:
    """A fresh ``AutoModelForSequenceClassification`` of the recipe's checkpoint for
    each test, with a new classification head for the task (MRPC: ``num_labels=2``; a regression: one output)
    seeded by the recipe's seed.
    """
    from .models import load_model

    return load_model(finetune_recipe, functools.partial(hub_note, request.config, finetune_recipe.model))


@pytest.fixture
def compute_metrics(request: pytest.FixtureRequest, finetune_recipe: Recipe) -> MetricsFunction:
    """``compute_metrics`` for ``Trainer``: the task's GLUE metrics as GLUE scores them (offline; MRPC:
    accuracy and F1), plus what ``pytest_finetune_metrics`` hooks add.
    """
    from .metrics import make_compute_metrics

    return make_compute_metrics(hook_metrics(request, finetune_recipe), finetune_recipe.task_spec)


@pytest.fixture
def training_args(
    request: pytest.FixtureRequest, finetune_recipe: Recipe, tmp_path_factory: pytest.TempPathFactory
) -> TrainingArguments:
    """``TrainingArguments`` of the recipe (seed settings: eval each epoch, lr 5e-5,
    batch 8, 3 epochs; no checkpoints saved, no trackers), writing under a new folder of
    pytest's base temporary directory (``trainer0``, ``trainer1``, ...);
    ``pytest_finetune_adjust_training_args`` hooks may change them.
    """
    # Not ``tmp_path``: after a Ctrl-C during training (a test's setup) its teardown raises
    # KeyError (pytest's bug), which turns a clean interruption into a traceback.
    return training_arguments_for(request, finetune_recipe, tmp_path_factory.mktemp("trainer"))


@pytest.fixture
def trainer(
    request: pytest.FixtureRequest,
    model: PreTrainedModel,
    training_args: TrainingArguments,
    tokenized_mrpc: datasets.DatasetDict,
    data_collator: DataCollatorWithPadding,
    tokenizer: PreTrainedTokenizerBase,
    compute_metrics: MetricsFunction,
) -> Trainer:
    """A ``transformers.Trainer`` configured with the fixtures above, not yet trained. Requesting
    ``finetune_result`` trains it only when this test's result is fine-tuned: when the result is
    served from the result cache (``finetune_result.from_cache``) or shared with an earlier test
    of the session, this trainer stays untrained (``trainer.state.global_step == 0``) and
    ``trainer.evaluate()`` scores the untrained model.
    """
    from transformers import Trainer

    from .data import split_of

    where = fixture_named(
        request, overriding_fixture(request, "tokenized_mrpc", "tokenized_dataset") or "tokenized_mrpc"
    )
    return Trainer(
        model=model,
        args=training_args,
        train_dataset=split_of(tokenized_mrpc, where, "train"),
        eval_dataset=split_of(tokenized_mrpc, where, "validation"),
        data_collator=data_collator,
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
    )


@pytest.fixture
def finetune_result(request: pytest.FixtureRequest, finetune_recipe: Recipe) -> FinetuneResult:
    """The recipe fine-tuned and evaluated, a ``FinetuneResult``; needs ``--finetune`` (without it the test is skipped).

    Its attributes:

    - ``.metrics`` (``accuracy``, ``f1``, ``eval_loss``, what ``pytest_finetune_metrics`` adds);
    - ``.history`` (one row per evaluation), ``.predictions`` (validation logits and labels),
      ``.train_runtime``;
    - ``.recipe`` (the resolved recipe, its training arguments as the trainer holds them, whatever set them: a
      ``pytest_finetune_adjust_training_args`` hook, a ``training_args`` or ``trainer`` fixture of a
      ``conftest.py``; see :func:`~pytest_finetune.training.trained_recipe`), ``.environment`` (library
      versions, device, dtype, dropout masks), ``.intervals`` (95 % bootstrap intervals of accuracy and F1);
    - ``.from_cache``: served from the result cache rather than fine-tuned in this session;
    - ``.shared_from``: the node id of the earlier test of this session whose fine-tune (or cache
      hit) this result shares, ``None`` for that test itself.

    Trains once per session for each recipe and set of fixtures (with their parameters, and the test's
    own fixtures that request a training fixture, which may change the trainer) and hooks whose trainer
    holds the same inputs (the result cache's: tokenized data, weights, training arguments, callbacks,
    ...): tests that share them share one fine-tune, each getting its own copy of the result. A trainer
    whose datasets have no ``datasets`` fingerprint (lists of features) is fine-tuned for each test, and
    its result is not cached.
    Across sessions, a result stored in the result cache for the same inputs is served instead
    (``.from_cache`` is true). The test's ``trainer`` is trained only when this test's result was
    fine-tuned: not when it was served from the cache or shared with an earlier test (then
    ``trainer.evaluate()`` scores an untrained model; use ``.metrics``).
    """
    if not request.config.stash[SESSION_KEY].enabled:
        pytest.skip(SKIP_REASON)
    return result_for(request, finetune_recipe)


@pytest.fixture
def finetune_snapshot(request: pytest.FixtureRequest, snapshot: SnapshotAssertion) -> SnapshotAssertion:
    """This test's baseline, compared within tolerance: ``assert result == finetune_snapshot``
    with a ``FinetuneResult`` or a dict of metrics (``trainer.evaluate()``'s, say).

    Stored as JSON under ``baselines/`` (ini ``finetune_baseline_dir``), one file per test;
    ``--snapshot-update`` records and refreshes it. A ``finetune``-marked test is compared
    this way automatically after its body.
    """
    return snapshot.use_extension(BaselineExtension.configured(baseline_settings(request)))
