"""``FinetuneResult``: what one fine-tune produced, as the cache, the baselines and the tests read it."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from transformers.trainer_utils import PredictionOutput

    from .recipe import Recipe


@dataclasses.dataclass(frozen=True)
class FinetuneResult:
    """What one fine-tune produced.

    - ``metrics``: the final evaluation on the validation split: ``accuracy``, ``f1``,
      ``eval_loss`` and any metric added by the ``pytest_finetune_metrics`` hook;
    - ``history``: one row per evaluation (per epoch in the seed recipe) with
      ``epoch``, ``training_loss``, ``validation_loss``, ``accuracy``, ``f1``, ...;
      ``training_loss`` is ``None`` where none was logged since the last row;
    - ``predictions``: a ``PredictionOutput`` on the validation split, in the split's row
      order (``.predictions`` holds the logits, ``.label_ids`` the labels): the last
      evaluation's, or ``Trainer.predict``'s where the last step was not evaluated;
    - ``train_runtime``: seconds spent in ``Trainer.train``;
    - ``environment``: library versions, device, dtype and the source of dropout masks (see
      :func:`provenance.environment`);
    - ``from_cache``: whether it was read from the result cache rather than trained in this session;
    - ``example_ids``: the validation split's ``idx`` column, in its row order (``None`` without one);
    - ``intervals``: 95 % bootstrap intervals of ``accuracy`` and ``f1`` over the validation examples;
    - ``calibration``: with ``--finetune-calibrate``, the seeds and each metric's spread over them;
    - ``shared_from``: the node id of the test whose fine-tune (or cache hit) this test's result shares
      within the session; ``None`` for that test itself;
    - ``validation_id``: the content identity of the validation examples as the trainer scores them (their ids,
      texts and labels: see :func:`provenance.examples_identity`); ``None`` where its split is no ``Dataset``;
    - ``trained_data``: where a fixture of the test suite gave the trainer its data, that data as a baseline
      shows and identifies it (``(shown, identity)``), in place of the recipe's data; ``None`` otherwise.
    """

    recipe: Recipe
    metrics: dict[str, float]
    history: list[dict[str, Any]]
    predictions: PredictionOutput
    train_runtime: float
    environment: dict[str, Any]
    from_cache: bool = False
    example_ids: np.ndarray | None = None
    intervals: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    calibration: dict[str, Any] | None = None
    shared_from: str | None = None
    validation_id: str | None = None
    trained_data: tuple[str, str] | None = None

    @property
    def wrong_examples(self) -> list[int] | None:
        """The ``idx`` of each validation example this run classified wrongly (``None`` without ids, and
        for a regression, whose predictions are scores)."""
        import numpy as np  # imported once a fine-tune's result is read

        from .metrics import predicted_classes  # numpy

        labels = np.asarray(self.predictions.label_ids)
        if self.example_ids is None or len(self.example_ids) != len(labels) or self.recipe.task_spec.is_regression:
            return None
        wrong = predicted_classes(self.predictions.predictions) != labels
        return sorted(int(idx) for idx in self.example_ids[wrong])

    @property
    def absolute_errors(self) -> list[float] | None:
        """For a regression, ``|predicted score - label|`` of each validation example in the order of their ``idx``
        (``None`` without ids, and for a classification)."""
        import numpy as np  # imported once a fine-tune's result is read

        from .metrics import class_logits  # numpy

        labels = np.asarray(self.predictions.label_ids, dtype=np.float64).reshape(-1)
        if self.example_ids is None or len(self.example_ids) != len(labels) or not self.recipe.task_spec.is_regression:
            return None
        scores = class_logits(self.predictions.predictions).astype(np.float64).reshape(-1)
        return [float(error) for error in np.abs(scores - labels)[np.argsort(self.example_ids, kind="stable")]]
