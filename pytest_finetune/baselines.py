"""Baselines: what is stored for a fine-tuning test, and the syrupy extension that stores it.

One JSON file per test, under the baseline folder (``baselines/`` at the rootdir, or ini
``finetune_baseline_dir``), at a path that mirrors the test module and the test name:
``baselines/tests/test_quality/test_mrpc[bert].json``. A record holds the recipe, the
metrics, the per-epoch history, the environment and the date; keys sorted, floats
rounded to 6 places. Files are replaced atomically, so a crash leaves the old file or
the new one, never half of one.

syrupy does the bookkeeping (``--snapshot-update``, unused baselines); this module
decides what "matches" means: within tolerance, on the same validation examples.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import datetime
import functools
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

from .errors import FinetuneError
from .provenance import data_identity, display_source, source_identity
from .stats import examples_digest
from .storage import StorageError, inside, read_bounded, read_error, write_atomically, write_error
from .tolerances import DEFAULT_TOLERANCES, FRACTIONS, OWN_METRICS, Tolerances
from .verdicts import DEFAULT_ALPHA, Verdict, compare, recipe_changes

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from syrupy.data import SnapshotCollection
    from syrupy.location import PyTestLocation
    from syrupy.types import PropertyFilter, PropertyMatcher, SerializableData, SerializedData, SnapshotIndex

    from .recipe import Recipe
    from .training import FinetuneResult

#: Bumped when the layout of a record changes incompatibly.
FORMAT = 1
#: Keys that differ from run to run without the run being different; ``--snapshot-update``
#: does not rewrite a baseline for them alone.
VOLATILE_KEYS = ("date", "train_runtime")
_DECIMALS = 6


class BaselineError(FinetuneError):
    """A baseline file that cannot be used; the message names the file and what is wrong."""


#: Passed to a ``finetune_snapshot`` comparison to say "this test still owns its baseline"
#: when it failed before it could compare: the baseline counts as used and is left as it is.
KEEP = object()
_KEEP_TEXT = "<baseline kept: the test failed before comparing>"


def result_record(result: FinetuneResult, rootdir: Path) -> dict[str, Any]:
    """What a baseline stores for a fine-tune (without the date): also, where known, the
    metrics' bootstrap ``intervals``, the validation ``examples`` the run got wrong (by
    ``idx``, for the paired test; a regression's: the absolute error of each, in ``idx`` order), the
    ``validation_id`` naming those examples by content and the ``calibration`` over seeds. The recipe's data is
    the data the trainer held (see :attr:`~pytest_finetune.training.FinetuneResult.trained_data`)."""
    recipe = recipe_record(result.recipe, rootdir)
    if result.trained_data is not None:
        recipe["data"], recipe["data_id"] = result.trained_data
    record: dict[str, Any] = {
        "format": FORMAT,
        "recipe": recipe,
        "metrics": _rounded(result.metrics),
        "history": [_history_row(row) for row in result.history],
        "environment": result.environment,
        "train_runtime": round(result.train_runtime, 1),
    }
    if result.intervals:
        record["intervals"] = {
            name: [round(bound, _DECIMALS) for bound in pair] for name, pair in result.intervals.items()
        }
    wrong, errors = result.wrong_examples, result.absolute_errors
    if result.example_ids is not None and (wrong is not None or errors is not None):
        ids = [int(idx) for idx in result.example_ids]
        record["examples"] = {"count": len(ids), "digest": examples_digest(ids)}
        if wrong is not None:
            record["examples"]["wrong"] = wrong
        if errors is not None:
            record["examples"]["abs_errors"] = [round(error, _DECIMALS) for error in errors]
    if result.validation_id is not None:
        record["validation_id"] = result.validation_id
    if result.calibration:
        record["calibration"] = {
            "seeds": result.calibration["seeds"],
            "metrics": {name: _rounded(spread) for name, spread in result.calibration["metrics"].items()},
        }
    return record


def recipe_record(recipe: Recipe, rootdir: Path) -> dict[str, Any]:
    """The recipe as a baseline shows it: model and data by display name and by identity."""
    return {
        "task": recipe.task,
        "model": display_source(recipe.model, rootdir),
        "model_id": source_identity(recipe.model),
        "data": display_source(recipe.data_source, rootdir),
        "data_id": data_identity(recipe.data_source),
        "seed": recipe.seed,
        "training_args": dict(sorted(recipe.defining_training_args.items())),
        **recipe.custom_task_fields,
    }


def metrics_record(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """What a baseline stores for a plain dict of metrics (``trainer.evaluate()``'s, say)."""
    from .metrics import final_metrics  # numpy: imported once a fine-tune compares

    values = final_metrics({name: _number(value, f"metric {name!r}") for name, value in metrics.items()})
    _check_storable(values)
    return {"format": FORMAT, "metrics": _rounded(values)}


def parse_baseline(
    text: str, location: str, gated: tuple[str, ...], example_ids: Sequence[int] | None = None
) -> dict[str, Any]:
    """A stored record, checked: a JSON object without a key twice in one object, whose ``metrics`` are finite
    numbers (:data:`FRACTIONS` in [0, 1]), including every gated metric; whose ``history`` holds finite numbers or
    nulls; whose ``examples`` got wrong are distinct and no more than its ``count``, and among ``example_ids`` (the
    run's validation examples, where known) when the baseline's digest names those; whose calibration's seeds are
    distinct and its spreads possible (:func:`_check_calibration`). Anything else is a :class:`BaselineError`."""
    fix = "fix it, or delete it and record it again with --snapshot-update"

    def one_value_per_key(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        """An object of the file, refused when it has a key twice (JSON keeps the last; a reader may see another)."""
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise BaselineError(
                    f"baseline {location} has the key {key!r} twice in one object (a reader may read one value of "
                    f"it, the gate another); {fix}"
                )
            seen.add(key)
        return dict(pairs)

    try:
        record = json.loads(text, object_pairs_hook=one_value_per_key)
    except (ValueError, RecursionError) as error:  # ValueError: JSONDecodeError, or an integer of 4300+ digits
        raise BaselineError(f"baseline {location} is not valid JSON ({str(error)[:200]}); {fix}") from None
    if not isinstance(record, dict) or not isinstance(record.get("metrics"), dict):
        raise BaselineError(f'baseline {location} has no "metrics" object; {fix}')
    if not is_count(record.get("format", FORMAT)):
        raise BaselineError(
            f'baseline {location}: "format" is {json.dumps(record["format"])[:40]}, not an integer; {fix}'
        )
    if record.get("format", FORMAT) != FORMAT:
        raise BaselineError(
            f'baseline {location} is in format {json.dumps(record["format"])[:40]}, and this pytest-finetune reads '
            f"format {FORMAT}: use the pytest-finetune that recorded it, or record it again with --snapshot-update"
        )
    for name, value in record["metrics"].items():
        problem = metric_problem(name, value)
        if problem:
            raise BaselineError(f"baseline {location}: metric {name!r} is {problem}; {fix}")
    missing = [name for name in gated if name not in record["metrics"]]
    if missing:
        raise BaselineError(f"baseline {location} lacks the gated metric(s) {', '.join(missing)}; {fix}")
    if not isinstance(record.get("recipe", {}), dict):
        raise BaselineError(f'baseline {location}: "recipe" is not an object; {fix}')
    if not isinstance(record.get("recipe", {}).get("training_args", {}), dict):
        raise BaselineError(f'baseline {location}: "recipe"."training_args" is not an object; {fix}')
    if not isinstance(record.get("environment", {}), dict | None):
        raise BaselineError(f'baseline {location}: "environment" is not an object; {fix}')
    if not isinstance(record.get("intervals", {}), dict):
        raise BaselineError(f'baseline {location}: "intervals" is not an object; {fix}')
    if not isinstance(record.get("validation_id", ""), str):
        raise BaselineError(f'baseline {location}: "validation_id" is not a string; {fix}')
    history = record.get("history", [])
    if not isinstance(history, list) or not all(isinstance(row, dict) for row in history):
        raise BaselineError(f'baseline {location}: "history" is not a list of objects (one per epoch); {fix}')
    for number, row in enumerate(history, start=1):
        for name, value in row.items():
            if value is not None and not is_finite_number(value):
                raise BaselineError(
                    f'baseline {location}: "history" row {number}: {name!r} is {_shown(value)}, not a finite number '
                    f"or null; {fix}"
                )
    _check_examples(record.get("examples"), location, fix, example_ids)
    _check_calibration(record, location, fix)
    return record


def _check_examples(examples: Any, location: str, fix: str, example_ids: Sequence[int] | None) -> None:
    """``examples`` is ``{"count", "digest", "wrong"}``, ``wrong`` distinct ids, at most ``count``, and
    among ``example_ids`` when ``digest`` names them."""
    if examples is None:
        return
    if (
        not isinstance(examples, dict)
        or not isinstance(examples.get("digest"), str)
        or not is_count(examples.get("count"))
        or not isinstance(examples.get("wrong", []), list)
        or not all(is_count(idx) for idx in examples.get("wrong", []))
        or ("wrong" in examples) == ("abs_errors" in examples)
    ):
        raise BaselineError(
            f'baseline {location}: "examples" is not {{"count": int, "digest": str, "wrong": [idx, ...]}} (or, for a '
            f'regression, "abs_errors": [number, ...] in place of "wrong"); {fix}'
        )
    if "abs_errors" in examples:
        _check_errors(examples["abs_errors"], examples["count"], location, fix)
    wrong, count = examples.get("wrong", []), examples["count"]
    if len(set(wrong)) != len(wrong) or len(wrong) > count:
        raise BaselineError(
            f'baseline {location}: "examples"."wrong" lists {len(wrong)} ids, {len(set(wrong))} of them distinct, '
            f'of {count} examples ("count"): it lists each example the run got wrong once; {fix}'
        )
    if example_ids is None or examples["digest"] != examples_digest(example_ids):
        return
    unknown = sorted(set(wrong) - {int(idx) for idx in example_ids})
    if unknown:
        shown = ", ".join(map(str, unknown[:5])) + (", ..." if len(unknown) > 5 else "")
        raise BaselineError(
            f'baseline {location}: "examples"."wrong" lists ids that are not among the validation examples its '
            f'"digest" names ({shown}); {fix}'
        )
    if count != len(example_ids):
        raise BaselineError(
            f'baseline {location}: "examples"."count" is {count}, and its "digest" names {len(example_ids)} '
            f"validation examples; {fix}"
        )


def _check_errors(errors: Any, count: int, location: str, fix: str) -> None:
    """A regression's ``abs_errors``: one finite number of 0 or more per example (``count``)."""
    if not isinstance(errors, list) or len(errors) != count:
        raise BaselineError(
            f'baseline {location}: "examples"."abs_errors" is not a list of {count} absolute errors, one per example '
            f'("count"); {fix}'
        )
    bad = next((error for error in errors if not is_finite_number(error) or error < 0), None)
    if bad is not None:
        raise BaselineError(
            f'baseline {location}: "examples"."abs_errors" holds {_shown(bad)}, not an absolute error (a finite number '
            f"of 0 or more); {fix}"
        )


def _check_calibration(record: dict[str, Any], location: str, fix: str) -> None:
    """A calibration is the recipe's seed and others, and per metric mean/std/min/max, all finite, whose mean, min
    and max the metric may have (:func:`metric_problem`), mean between min and max, and std no more than values
    between them have over that many seeds."""
    calibration = record.get("calibration")
    if calibration is None:
        return
    fix = "record it again: pytest --finetune --snapshot-update --finetune-calibrate N"
    seeds = calibration.get("seeds") if isinstance(calibration, dict) else None
    spreads = calibration.get("metrics") if isinstance(calibration, dict) else None
    if (
        not isinstance(seeds, list)
        or len(seeds) < 2
        or not all(isinstance(seed, int) and not isinstance(seed, bool) for seed in seeds)
        or len(set(seeds)) != len(seeds)
        or not isinstance(spreads, dict)
        or not all(
            isinstance(spread, dict)
            and all(is_finite_number(spread.get(key)) for key in ("mean", "std", "min", "max"))
            and spread["std"] >= 0
            for spread in spreads.values()
        )
    ):
        raise BaselineError(
            f'baseline {location}: "calibration" is not {{"seeds": [2 or more distinct ints], "metrics": '
            f'{{metric: {{"mean", "std", "min", "max"}}}}}}; {fix}'
        )
    seed = record.get("recipe", {}).get("seed")
    if seed is not None and seed not in seeds:
        raise BaselineError(
            f"baseline {location}: its calibration used seeds {', '.join(map(str, seeds))}, not the recipe's "
            f"seed {seed}; {fix}"
        )
    for name, spread in spreads.items():
        for key in ("mean", "min", "max"):
            problem = metric_problem(name, spread[key])
            if problem:
                raise BaselineError(f"baseline {location}: the calibration's {key} of {name!r} is {problem}; {fix}")
        if not spread["min"] <= spread["mean"] <= spread["max"]:
            raise BaselineError(
                f"baseline {location}: the calibration's mean of {name!r}, {spread['mean']:g}, is not between its "
                f"min {spread['min']:g} and max {spread['max']:g}; {fix}"
            )
        # n values in [min, max] have a sample std of at most (max - min) / 2 * sqrt(n / (n - 1)); each is rounded
        largest = (spread["max"] - spread["min"]) / 2 * math.sqrt(len(seeds) / (len(seeds) - 1))
        if spread["std"] > largest + 2 * 10**-_DECIMALS:
            raise BaselineError(
                f"baseline {location}: the calibration's std of {name!r}, {spread['std']:g}, is more than "
                f"{len(seeds)} values from {spread['min']:g} to {spread['max']:g} can have ({largest:.6f}); {fix}"
            )


def metric_problem(name: str, value: Any) -> str | None:
    """Why ``value`` cannot be a value of the metric ``name`` (as in "metric 'f1' is ..."): it is not a finite
    number, or lies outside [0, 1] for one of :data:`FRACTIONS`; ``None`` when it can."""
    if not is_finite_number(value):
        return f"{_shown(value)}, not a finite number"
    if name in FRACTIONS and not 0 <= value <= 1:
        return f"{value:g}, outside [0, 1]"
    return None


def _shown(value: Any) -> str:
    """``value`` as a message shows it, cut after 40 characters."""
    return repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:40]}..."


def is_finite_number(value: Any) -> bool:
    """Whether ``value`` is a finite JSON number (not a boolean, not an integer beyond a float's range)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def is_count(value: Any) -> bool:
    """Whether ``value`` is a whole number of 0 or more (not a boolean)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def with_stored_calibration(record: dict[str, Any], stored_text: str | None) -> dict[str, Any]:
    """``record`` (a run that did not calibrate) with the stored baseline's calibration when it
    still applies: a readable baseline of the same recipe, on the same validation examples.

    So an unchanged run leaves a calibrated baseline as it is, and a changed one keeps it.
    """
    if "calibration" in record or stored_text is None:
        return record
    try:
        stored = parse_baseline(stored_text, "(stored)", ())
    except BaselineError:
        return record
    same_examples = (record.get("examples") or {}).get("digest") == (stored.get("examples") or {}).get("digest")
    same_recipe = "recipe" in stored and not recipe_changes(record["recipe"], stored["recipe"])
    if "calibration" not in stored or not same_examples or not same_recipe:
        return record
    return {**record, "calibration": stored["calibration"]}


def check_gated_metrics(metrics: Mapping[str, Any], tolerances: Tolerances) -> None:
    """A :class:`FinetuneError` when the run has no value for a metric a tolerance gates: one of
    :data:`~pytest_finetune.tolerances.DEFAULT_TOLERANCES`, always gated, that ``compute_metrics`` did not
    return; or one a setting names that the run never produces (a typo, a metric of another flow)."""
    from .metrics import COMPUTE_METRICS, METRICS_HOOK  # numpy: imported once a fine-tune compares

    produced = f"(its metrics: {', '.join(sorted(metrics))})"
    missing = [name for name in tolerances.metrics if name not in metrics]
    always = ", ".join(name for name in missing if name in DEFAULT_TOLERANCES)
    named = ", ".join(name for name in missing if name not in DEFAULT_TOLERANCES)
    problems = []
    if always:
        problems.append(
            f"the run produced no metric {always} {produced}, and {' and '.join(DEFAULT_TOLERANCES)} are always "
            f"gated: the {COMPUTE_METRICS} must return them, from a validation split that has rows"
        )
    if named:
        problems.append(
            f"the run produced no metric {named} {produced}, yet a tolerance gates it: drop the tolerance of {named} "
            "or fix the metric's name where it is set (ini finetune_tolerance, --finetune-tolerance or the test's "
            f"finetune marker); a metric of a {METRICS_HOOK} is there once the hook returns it"
        )
    if problems:
        raise FinetuneError("; ".join(problems))


def check_recipe_recorded(current: Mapping[str, Any], baseline: Mapping[str, Any], location: str) -> None:
    """A :class:`BaselineError` for a baseline without a recipe (recorded from a dict of metrics, such as
    ``trainer.evaluate()``'s) compared with a fine-tune's result, whose recipe it could not check."""
    if "recipe" in current and "recipe" not in baseline:
        raise BaselineError(
            f"baseline {location} records no recipe (it was recorded from a dict of metrics), so this fine-tune's "
            "recipe cannot be checked against it: record it again with --snapshot-update"
        )


def same_record(current: Mapping[str, Any], stored: Mapping[str, Any]) -> bool:
    """Equal but for :data:`VOLATILE_KEYS`: ``--snapshot-update`` leaves such a baseline alone."""

    def stable(record: Mapping[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in record.items() if key not in VOLATILE_KEYS}

    return stable(current) == stable(stored)


@dataclasses.dataclass(frozen=True)
class BaselineSettings:
    """What a :class:`BaselineExtension` needs to know of the session."""

    tolerances: Tolerances = Tolerances()
    #: The paired test's significance level.
    alpha: float = DEFAULT_ALPHA
    #: ``finetune_strict_recipe``: a changed recipe fails even where quality held.
    strict_recipe: bool = False
    #: Whether baselines are written (syrupy's ``--snapshot-update``).
    update: bool = False
    #: The baseline folder.
    root: Path = Path("baselines")
    #: pytest's rootdir: test modules' paths are mirrored relative to it.
    rootdir: Path = Path(".")
    #: Where pytest was started: messages show paths relative to it.
    invocation_dir: Path = Path(".")


def baseline_folder(module: Path, root: Path, rootdir: Path) -> Path:
    """Where the baselines of a test module live: ``root``, then the module's path relative to
    the rootdir (``..`` spelled ``_up_`` so that nothing lands outside ``root``), then its name."""
    return mirrored_folder(module.parent, root, rootdir) / module.stem


def mirrored_folder(folder: Path, root: Path, rootdir: Path) -> Path:
    """``folder``'s place under ``root``: its path relative to the rootdir, ``..`` spelled ``_up_``."""
    relative = Path(os.path.relpath(folder, rootdir))
    return root.joinpath(*("_up_" if part == ".." else part for part in relative.parts if part != "."))


#: The baseline folders of test modules and folders whose collection was skipped or failed: their
#: tests did not run, so their baselines are kept, neither reported unused nor deleted.
KEPT_FOLDERS = pytest.StashKey[list[Path]]()
#: The baselines of tests that did not run: marked tests that failed before their ``finetune_snapshot``
#: was set up (an autouse or ``usefixtures`` fixture failed), and tests deselected after collection
#: (``-k``, ``--sw``, a conftest's ``pytest_collection_modifyitems``): kept like those under :data:`KEPT_FOLDERS`.
KEPT_BASELINES = pytest.StashKey[set[Path]]()
#: Set when the session did not run to its end (Ctrl-C, ``pytest.exit()``, ``-x``, a crashed pytest-xdist
#: worker): no baseline is unused then, for none can be told from one whose test did not run.
ALL_KEPT = pytest.StashKey[bool]()


def owning_module(baseline: Path, root: Path, rootdir: Path) -> Path | None:
    """The test module ``baseline`` belongs to, the inverse of :func:`baseline_folder`:
    ``<root>/tests/test_q/test_a.json`` is ``<rootdir>/tests/test_q.py``'s; None outside ``root``."""
    try:
        parts = baseline.relative_to(root).parts
    except ValueError:
        return None
    if len(parts) < 2:
        return None
    folder = rootdir.joinpath(*(os.pardir if part == "_up_" else part for part in parts[:-2]))
    return folder / f"{parts[-2]}.py"


def is_kept(baseline: Path, config: pytest.Config, settings: BaselineSettings) -> bool:
    """Whether ``baseline`` belongs to a test that did not run this session and still exists: any baseline
    under :data:`ALL_KEPT`; one under :data:`KEPT_FOLDERS` or in :data:`KEPT_BASELINES`; one of a test module
    the session's arguments select in part (:func:`node_selected_modules`); or one of a test module on disk
    that pytest did not collect (``--ignore``, ``--ignore-glob``, ``collect_ignore``, a selection of other
    paths)."""
    if config.stash.get(ALL_KEPT, False) or baseline in config.stash.get(KEPT_BASELINES, set()):
        return True
    if any(baseline.is_relative_to(folder) for folder in config.stash.get(KEPT_FOLDERS, [])):
        return True
    module = owning_module(baseline, settings.root, settings.rootdir)
    if module is None:
        return False
    if Path(os.path.normpath(module)) in node_selected_modules(config):
        return True
    collected = _collected_modules(config)
    return collected is not None and module.is_file() and module_key(module) not in collected


def node_selected_modules(config: pytest.Config) -> set[Path]:
    """The test modules the session's arguments select in part, by node id (``tests/test_q.py::test_a``,
    ``::TestK``, ``::test_p[1]``): pytest never collects their other tests. A module also given whole (its
    path, or a folder above it) is not one of them."""
    here = config.invocation_params.dir
    narrowed: set[Path] = set()
    whole: set[Path] = set()
    for arg in config.args:
        path, node_id, _ = str(arg).partition("::")
        (narrowed if node_id else whole).add(Path(os.path.normpath(here / path)))
    return {module for module in narrowed if not any(module.is_relative_to(path) for path in whole)}


def module_key(module: Path) -> str:
    """A test module's path as syrupy records the modules pytest collected."""
    from syrupy.location import PyTestLocation

    return PyTestLocation.module_path_key(module)


def _collected_modules(config: pytest.Config) -> set[str] | None:
    """The test modules this session collected, as syrupy 7 records them (None if it does not)."""
    modules = getattr(getattr(config, "_syrupy", None), "_collected_modules", None)
    return modules if isinstance(modules, set) else None


#: A file's identity: device, inode, size, modification and change times (``lstat``'s). Another process that
#: writes the file (atomically, as this plugin does, or in place) changes one of them.
FileIdentity = tuple[int, int, int, int, int]


def file_identity(path: Path) -> FileIdentity | None:
    """``path``'s :data:`FileIdentity` (of a symbolic link itself, not of what it points to); ``None`` when
    there is none."""
    try:
        status = os.lstat(path)
    except OSError:
        return None
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)


@dataclasses.dataclass(frozen=True)
class SeenBaselines:
    """The baseline files there were when the session started, by absolute path, each with its identity: the
    only ones the session may count unused and remove, and only while unchanged. A baseline another process
    records or rewrites meanwhile (a new test's, a test of its version of a module) is not this session's."""

    root: Path
    files: Mapping[Path, FileIdentity]

    @classmethod
    def scan(cls, root: Path) -> SeenBaselines:
        """The ``.json`` files under ``root`` (hidden ones, and those in hidden folders, are no baselines), also
        in linked folders, as syrupy finds them (each folder once)."""
        files: dict[Path, FileIdentity] = {}
        walked: set[str] = set()
        for folder, subfolders, names in os.walk(root, followlinks=True):
            walked.add(os.path.realpath(folder))
            subfolders[:] = [
                name
                for name in subfolders
                if not name.startswith(".") and os.path.realpath(os.path.join(folder, name)) not in walked
            ]
            for name in names:
                identity = file_identity(Path(folder, name))
                if name.endswith(".json") and not name.startswith(".") and identity is not None:
                    files[_absolute(Path(folder, name))] = identity
        return cls(_absolute(root), files)

    def seen(self, path: Path) -> bool:
        """Whether ``path`` was there when the session started."""
        return _absolute(path) in self.files

    def unchanged(self, path: Path) -> bool:
        """Whether ``path`` is still the file there was when the session started."""
        return self.seen(path) and file_identity(path) == self.files[_absolute(path)]


#: The baselines there were when the session started (see :class:`SeenBaselines`).
SEEN_BASELINES = pytest.StashKey[SeenBaselines]()
#: Baselines that syrupy would have counted unused, kept because another process wrote them during the
#: session: by path, ``new`` (there was none when it started) or ``changed`` (rewritten since).
FOREIGN_BASELINES = pytest.StashKey[dict[Path, str]]()
#: The session whose syrupy removes unused baselines now: on pytest-xdist's controller, syrupy removes them
#: through extensions it makes itself, which know no session (see :func:`removing_unused`).
_REMOVING = contextvars.ContextVar[pytest.Config]("pytest_finetune_removing_unused")


@contextlib.contextmanager
def removing_unused(config: pytest.Config) -> Iterator[None]:
    """Around syrupy's end of the session, where it removes unused baselines: they are ``config``'s."""
    token = _REMOVING.set(config)
    try:
        yield
    finally:
        _REMOVING.reset(token)


def foreign_baselines_line(config: pytest.Config) -> str | None:
    """The summary's line on the baselines kept because another process wrote them during the session (not
    those this session recorded itself, through a symbolic link too), or ``None``."""
    used = getattr(getattr(getattr(config, "_syrupy", None), "report", None), "used", ())
    written = {os.path.realpath(collection.location) for collection in used}
    kept = {
        path: how
        for path, how in config.stash.get(FOREIGN_BASELINES, {}).items()
        if os.path.realpath(path) not in written and os.path.lexists(path)
    }
    if not kept:
        return None
    here = config.invocation_params.dir
    shown = ", ".join(f"{shown_path(path, here)} ({how})" for path, how in sorted(kept.items()))
    return (
        f"pytest-finetune: {len(kept)} baseline{'s' if len(kept) > 1 else ''} written by another process during this "
        f"session kept, not counted unused: {shown}"
    )


def forget_undeleted(config: pytest.Config) -> None:
    """After the removal of unused baselines stopped at a file it could not remove, make syrupy's
    report count as deleted only the baselines that are gone: the others are still there, so it
    reports them neither deleted nor unused (the plugin names the file it could not remove)."""
    _forget_unused(config, lambda location: Path(location).exists())


def _forget_unused(config: pytest.Config, kept: Callable[[str], bool]) -> None:
    """Drop the baselines at the locations ``kept`` tells from syrupy's report of those unused (and deleted);
    syrupy may be removing the others meanwhile: it goes on through the collections it had."""
    from syrupy.data import SnapshotCollections

    report = getattr(getattr(config, "_syrupy", None), "report", None)
    if report is None:
        return
    unused = SnapshotCollections()
    for collection in report.unused:
        if not kept(collection.location):
            unused.add(collection)
    report.__dict__["unused"] = unused  # both are functools.cached_property values
    report.__dict__.pop("num_unused", None)


class BaselineExtension(SingleFileSnapshotExtension):
    """syrupy extension: one JSON baseline per test, compared within tolerance.

    Use :meth:`configured` for a class bound to one comparison policy and baseline
    folder (syrupy instantiates extension classes itself). After a comparison,
    :attr:`verdict` holds the verdict, :attr:`problem` a baseline that could not be read and
    :attr:`refused` a value that cannot be compared.
    """

    file_extension = "json"
    _write_mode = WriteMode.TEXT

    settings = BaselineSettings()

    def __init__(self) -> None:
        self.verdict: Verdict | None = None
        self.problem: BaselineError | None = None
        self.refused: TypeError | None = None
        self._last_read = "(no file read)"  # the baseline being compared, for messages
        self._stored: str | None = None  # its text, read before each serialization
        self._example_ids: list[int] | None = None  # the serialized run's validation examples, where known

    @classmethod
    @functools.cache
    def configured(cls, settings: BaselineSettings) -> type[BaselineExtension]:
        """A subclass bound to ``settings`` (syrupy instantiates extension classes itself).

        One class per distinct settings: syrupy groups discovery and writes by class. The
        subclass keeps this class's module and name so that pytest-xdist's controller, which
        re-imports extensions by name to remove unused baselines, finds one (else syrupy removes
        them itself, unchecked; the metaclass, ``abc``'s, would name its own module).
        """
        configured = type(cls.__name__, (cls,), {"settings": settings, "__module__": cls.__module__})
        configured.__qualname__ = cls.__qualname__
        return configured

    @classmethod
    def dirname(cls, *, test_location: PyTestLocation) -> str:
        return str(baseline_folder(Path(test_location.filepath), cls.settings.root, cls.settings.rootdir))

    @classmethod
    def _sanitize_filename(cls, filename: str) -> str:
        """A test's baseline file name: syrupy's, but each character syrupy would strip (path
        separators, ``: * ? " < > |``, control characters) percent-encoded rather than dropped,
        so that ``test[a:b]`` and ``test[ab]`` get two files (``test[a%3Ab]``, ``test[ab]``)."""
        kept = super()._sanitize_filename
        return "".join(char if kept(char) else _escaped(char) for char in filename)

    @classmethod
    def matches_test_location(cls, *, test_location: PyTestLocation, snapshot_location: str) -> bool:
        """Whether ``snapshot_location`` is ``test_location``'s baseline, an escaped name included
        (syrupy compares the raw id, so a skipped ``test[org/model]`` would not keep its file)."""
        own = Path(cls.get_location(test_location=test_location, index=0))
        return Path(snapshot_location) == own or super().matches_test_location(
            test_location=test_location, snapshot_location=snapshot_location
        )

    def owns_snapshot_collection(self, *, filepath: str, test_location: PyTestLocation) -> bool:
        """A baseline file found while syrupy looks for unused ones, except those :func:`is_kept` and those
        another process recorded after the session started (see :class:`SeenBaselines`): syrupy never counts
        them unused, so never deletes them."""
        config = test_location.item.config
        path = Path(filepath)
        if is_kept(path, config, self.settings) or not super().owns_snapshot_collection(
            filepath=filepath, test_location=test_location
        ):
            return False
        if not config.stash[SEEN_BASELINES].seen(path):
            config.stash.setdefault(FOREIGN_BASELINES, {})[path] = "new"
            return False
        return True

    def delete_snapshots(self, *, snapshot_location: str, snapshot_names: set[str]) -> None:
        """Remove an unused baseline if it is still the file the session saw when it started: one that another
        process rewrote since is kept, and syrupy's report neither counts it unused nor deleted. A baseline
        reached through a symbolic link that leads out of the baseline folder is not removed (see
        :func:`~pytest_finetune.storage.inside`). If the removal fails, syrupy's report is corrected (see
        :func:`forget_undeleted`) before the error goes on to the plugin, which reports it."""
        config = _REMOVING.get()
        seen = config.stash[SEEN_BASELINES]
        path = Path(snapshot_location)
        if not seen.unchanged(path):
            config.stash.setdefault(FOREIGN_BASELINES, {})[path] = "changed" if seen.seen(path) else "new"
            _forget_unused(config, lambda location: location == snapshot_location)
            return
        try:
            inside(path, seen.root, "delete", follow=False)
            path.unlink()
        except OSError:
            forget_undeleted(config)
            raise

    def serialize(
        self,
        data: SerializableData,
        *,
        exclude: PropertyFilter | None = None,
        include: PropertyFilter | None = None,
        matcher: PropertyMatcher | None = None,
    ) -> SerializedData:
        """A :class:`FinetuneResult` or a dict of metrics as baseline JSON, dated today."""
        from .training import FinetuneResult

        self.refused, self._example_ids = None, None
        if data is KEEP:
            return _KEEP_TEXT
        if isinstance(data, FinetuneResult):
            _check_storable(data.metrics)
            self._example_ids = None if data.example_ids is None else [int(idx) for idx in data.example_ids]
            record = with_stored_calibration(result_record(data, self.settings.rootdir), self._stored)
        elif isinstance(data, Mapping):
            record = metrics_record(data)
        else:  # a mistake in the test's body: its message alone, not syrupy's traceback
            self.refused = TypeError(
                f"finetune_snapshot compares a FinetuneResult or a dict of metrics, not {type(data).__name__}"
            )
            pytest.fail(str(self.refused), pytrace=False)
        check_gated_metrics(record["metrics"], self.settings.tolerances)
        record["date"] = datetime.date.today().isoformat()
        return to_json(record)

    def matches(self, *, serialized_data: SerializedData, snapshot_data: SerializedData) -> bool:
        """Within tolerance, on the same validation examples (a changed recipe too, unless ``strict_recipe``);
        with ``--snapshot-update``, equal but for :data:`VOLATILE_KEYS` (so that any real change, a new recipe
        included, is rewritten)."""
        if serialized_data == _KEEP_TEXT:
            return True
        current = json.loads(str(serialized_data))
        try:
            baseline = parse_baseline(
                str(snapshot_data), self._last_read, self.settings.tolerances.metrics, self._example_ids
            )
            check_recipe_recorded(current, baseline, self._last_read)
            self.verdict = compare(
                current, baseline, self.settings.tolerances, self.settings.alpha, self.settings.strict_recipe
            )
        except BaselineError as error:
            self.problem = error
            return False
        except FinetuneError as error:  # a baseline this comparison cannot use (tolerance auto, uncalibrated)
            self.problem = BaselineError(f"baseline {self._last_read}: {error}")
            return False
        if self.settings.update:
            return same_record(current, baseline)
        return not self.verdict.outcome.failed

    def diff_lines(self, serialized_data: SerializedData, snapshot_data: SerializedData) -> Iterator[str]:
        """The verdict table (shown by ``assert value == finetune_snapshot``)."""
        from .report import verdict_lines

        if self.problem is not None:
            yield str(self.problem)
        elif self.verdict is not None:
            yield from verdict_lines(self.verdict)
        else:
            yield "no baseline yet: record it with pytest --finetune --snapshot-update"

    def read_snapshot_data_from_location(
        self, *, snapshot_location: str, snapshot_name: str, session_id: str
    ) -> SerializableData | None:
        self._last_read = shown_path(snapshot_location, self.settings.invocation_dir)
        self.verdict, self.problem = None, None  # each comparison starts here: forget the last one
        try:
            self._stored = read_bounded(Path(snapshot_location)).decode("utf-8", errors="replace")
        except FileNotFoundError:
            self._stored = None
        except OSError as error:  # a folder where the file should be, a file where a folder should be, a device
            self._stored = None
            self.problem = BaselineError(str(read_error(Path(snapshot_location), error)))
        return self._stored

    @classmethod
    def write_snapshot(
        cls,
        *,
        snapshot_location: str,
        snapshots: list[tuple[SerializedData, PyTestLocation, SnapshotIndex]],
        name_order: dict[str, int] | None = None,
    ) -> None:
        """syrupy's, whose making of the baseline's folder (a file may stand in its way) fails like
        :func:`~pytest_finetune.storage.write_atomically`: a message naming the file and the fix."""
        try:
            super().write_snapshot(snapshot_location=snapshot_location, snapshots=snapshots, name_order=name_order)
        except StorageError:
            raise
        except OSError as error:
            raise write_error(Path(snapshot_location), error, existed=False) from None

    @classmethod
    def write_snapshot_collection(
        cls, *, snapshot_collection: SnapshotCollection, name_order: dict[str, int] | None = None
    ) -> None:
        """Write through a temporary file in the same folder, fsync'd, then ``os.replace``; never out of the
        baseline folder (see :func:`~pytest_finetune.storage.write_atomically`)."""
        data = next(iter(snapshot_collection)).data
        write_atomically(Path(snapshot_collection.location), str(data), cls.settings.root)


def _escaped(char: str) -> str:
    """``char`` percent-encoded, byte by byte of its UTF-8 form: ``:`` is ``%3A``."""
    return "".join(f"%{byte:02X}" for byte in char.encode("utf-8", errors="surrogatepass"))


def to_json(record: Mapping[str, Any]) -> str:
    """Baseline JSON: keys sorted, two-space indent, a final newline."""
    return json.dumps(record, sort_keys=True, indent=2, allow_nan=False) + "\n"


def _absolute(path: Path) -> Path:
    """``path`` absolute and normalised (``..`` resolved by name, links not)."""
    return Path(os.path.abspath(path))


def shown_path(location: str | Path, invocation_dir: Path) -> str:
    """A path as messages show it: relative to where pytest was started, as a user types it."""
    return Path(os.path.relpath(location, invocation_dir)).as_posix()


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise TypeError(f"finetune_snapshot: {what} is {value!r}, not a number")
    return float(value)


def _check_storable(metrics: Mapping[str, float]) -> None:
    """A :class:`BaselineError` for a run's metric that no baseline may hold (nothing is compared or
    stored): one that is not finite, of the plugin's own (training diverged) or another (a hook or
    ``compute_metrics`` returned it), or one of :data:`FRACTIONS` outside [0, 1]."""
    from .metrics import COMPUTE_METRICS, METRICS_HOOK  # numpy: imported once a fine-tune compares

    broken = ", ".join(f"{name}={value}" for name, value in metrics.items() if not math.isfinite(value))
    if broken and any(not math.isfinite(metrics.get(name, 0.0)) for name in OWN_METRICS):
        raise BaselineError(
            f"the run's metrics are not finite ({broken}): training diverged; nothing was compared or stored"
        )
    if broken:
        raise BaselineError(
            f"the run's metrics are not finite ({broken}): a {METRICS_HOOK} or {COMPUTE_METRICS} returned that, "
            "and a baseline holds finite numbers only; return one, such as 0.0 for a ratio of 0/0; "
            "nothing was compared or stored"
        )
    for name in FRACTIONS:
        if not 0 <= metrics.get(name, 0.0) <= 1:
            raise BaselineError(
                f"the run's {name} is {metrics[name]:g}, outside [0, 1] where {' and '.join(FRACTIONS)} lie: give it "
                f"as a fraction (0.83, not 83) where it is computed ({COMPUTE_METRICS}), or another name; "
                "nothing was compared or stored"
            )


def _history_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """One evaluation of the history as stored: rounded, with null for a score a hook or ``compute_metrics``
    gave no finite value then (a ratio of 0/0 before the model predicts a class; the final metrics must be
    finite)."""
    from .metrics import HISTORY_LOSS_KEYS  # numpy: imported once a fine-tune compares

    return {
        name: None if name not in HISTORY_LOSS_KEYS and isinstance(value, float) and not math.isfinite(value) else value
        for name, value in _rounded(row).items()
    }


def _rounded(values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: round(value, _DECIMALS) if isinstance(value, float) else value for name, value in values.items()}
