"""Baselines: what is stored for a fine-tuning test (:mod:`.record`), where (:mod:`.paths`), which a session
keeps (:mod:`.keeping`), and the syrupy extension that stores them (:mod:`.extension`).

One JSON file per test (with ``finetune_baseline_classes = hardware``, one entry per hardware class in it: see
:mod:`.classes`), under the baseline folder (``baselines/`` at the rootdir, or ini
``finetune_baseline_dir``), at a path that mirrors the test module and the test name:
``baselines/tests/test_quality/test_mrpc[bert].json``. A record holds the recipe, the
metrics, the per-epoch history, the environment and the date; keys sorted, floats
rounded to 6 places. Files are replaced atomically, so a crash leaves the old file or
the new one, never half of one.

syrupy does the bookkeeping (``--snapshot-update``, unused baselines); this package
decides what "matches" means: within tolerance, on the same validation examples.
"""

from __future__ import annotations

from .classes import NoClassBaseline
from .extension import KEEP, BaselineExtension
from .keeping import (
    ALL_KEPT,
    FOREIGN_BASELINES,
    KEPT_BASELINES,
    KEPT_FOLDERS,
    SEEN_BASELINES,
    FileIdentity,
    SeenBaselines,
    file_identity,
    foreign_baselines_line,
    forget_undeleted,
    is_kept,
    module_key,
    node_selected_modules,
    removing_unused,
)
from .paths import baseline_folder, mirrored_folder, owning_module, shown_path
from .record import (
    FORMAT,
    VOLATILE_KEYS,
    BaselineError,
    BaselineSettings,
    check_gated_metrics,
    check_recipe_recorded,
    metrics_record,
    parse_baseline,
    recipe_record,
    result_record,
    same_record,
    to_json,
    with_stored_calibration,
)

__all__ = [
    "ALL_KEPT",
    "BaselineError",
    "BaselineExtension",
    "BaselineSettings",
    "FOREIGN_BASELINES",
    "FORMAT",
    "FileIdentity",
    "KEEP",
    "KEPT_BASELINES",
    "KEPT_FOLDERS",
    "NoClassBaseline",
    "SEEN_BASELINES",
    "SeenBaselines",
    "VOLATILE_KEYS",
    "baseline_folder",
    "check_gated_metrics",
    "check_recipe_recorded",
    "file_identity",
    "foreign_baselines_line",
    "forget_undeleted",
    "is_kept",
    "metrics_record",
    "mirrored_folder",
    "module_key",
    "node_selected_modules",
    "owning_module",
    "parse_baseline",
    "recipe_record",
    "removing_unused",
    "result_record",
    "same_record",
    "shown_path",
    "to_json",
    "with_stored_calibration",
]
