"""The syrupy extension that stores a baseline per test and compares a run with it within tolerance."""

from __future__ import annotations

import datetime
import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

from ..distributed import is_main_process, world_size
from ..errors import FinetuneError
from ..report import verdict_lines
from ..result import FinetuneResult
from ..storage import StorageError, inside, read_bounded, read_error, write_atomically, write_error
from ..verdicts import WARNABLE, Verdict, compare
from .classes import CLASS_KEY, class_entry, hardware_class, holds_classes, write_entry
from .keeping import FOREIGN_BASELINES, REMOVING, SEEN_BASELINES, forget_undeleted, forget_unused, is_kept
from .paths import baseline_folder, shown_path
from .record import (
    BaselineError,
    BaselineSettings,
    check_gated_metrics,
    check_recipe_recorded,
    check_recordable,
    check_storable,
    metrics_record,
    parse_baseline,
    result_record,
    same_record,
    to_json,
    with_stored_calibration,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from syrupy.data import SnapshotCollection
    from syrupy.location import PyTestLocation
    from syrupy.types import PropertyFilter, PropertyMatcher, SerializableData, SerializedData, SnapshotIndex


#: Passed to a ``finetune_snapshot`` comparison to say "this test still owns its baseline"
#: when it failed before it could compare: the baseline counts as used and is left as it is.
KEEP = object()


_KEEP_TEXT = "<baseline kept: the test failed before comparing>"


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
        self.refused: TypeError | FinetuneError | None = None
        #: The hardware class whose entry was compared (``finetune_baseline_classes = hardware``), else ``None``.
        self.hardware_class: str | None = None
        self._last_read = "(no file read)"  # the baseline being compared, for messages
        self._stored: str | None = None  # its text, read before each serialization
        self._compared: str | None = None  # the baseline compared: the stored text, or its entry for this hardware
        self._example_ids: list[int] | None = None  # the serialized run's validation examples, where known
        self._collapsed: str | None = None  # how the serialized run's model collapsed to one class, where it did

    @property
    def write_immediately(self) -> bool:  # type: ignore[override]  # read when syrupy queues a write
        """Whether syrupy writes a baseline as soon as it is compared, rather than at the end of the session: not in
        a data-parallel run, whose rank 0 writes once every process compared with the baseline as it was."""
        return world_size() == 1

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
        if not is_main_process():
            return  # rank 0 of a data-parallel run removes it; this process counts it removed alike
        config = REMOVING.get()
        seen = config.stash[SEEN_BASELINES]
        path = Path(snapshot_location)
        if not seen.unchanged(path):
            config.stash.setdefault(FOREIGN_BASELINES, {})[path] = "changed" if seen.seen(path) else "new"
            forget_unused(config, lambda location: location == snapshot_location)
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
        self.refused, self._example_ids, self._collapsed, self.hardware_class = None, None, None, None
        self._compared = self._stored
        if data is KEEP:
            return _KEEP_TEXT
        if isinstance(data, FinetuneResult):
            check_storable(data.metrics)
            self._example_ids = None if data.example_ids is None else [int(idx) for idx in data.example_ids]
            self._collapsed = self._collapse(data)
            record = result_record(data, self.settings.rootdir)
            if self.settings.hardware_classes:
                self._classed(record)
            record = with_stored_calibration(record, self._compared)
        elif isinstance(data, Mapping) and self.settings.hardware_classes:
            self.refused = FinetuneError(
                "finetune_baseline_classes = hardware keeps a baseline per hardware class of a fine-tune's result, "
                "and a dict of metrics records no hardware: compare the finetune_result fixture "
                "(assert finetune_result == finetune_snapshot), or keep one baseline per test"
            )
            pytest.fail(str(self.refused), pytrace=False)
        elif isinstance(data, Mapping):
            record = metrics_record(data)
        else:  # a mistake in the test's body: its message alone, not syrupy's traceback
            self.refused = TypeError(
                f"finetune_snapshot compares a FinetuneResult or a dict of metrics, not {type(data).__name__}"
            )
            pytest.fail(str(self.refused), pytrace=False)
        check_gated_metrics(record["metrics"], self.settings.tolerances)
        if self.settings.update:
            check_recordable(record["metrics"], self.settings.tolerances, self._collapsed)
        record["date"] = datetime.date.today().isoformat()
        return to_json(record)

    def _classed(self, record: dict[str, Any]) -> None:
        """Name ``record``'s hardware class in its environment, and take the stored file's entry for that class as
        the baseline compared (none: :attr:`problem` says which classes the file holds)."""
        self.hardware_class = hardware_class(record["environment"])
        record["environment"] = {**record["environment"], CLASS_KEY: self.hardware_class}
        if self._stored is None or self.problem is not None:
            return
        try:
            self._compared = class_entry(self._stored, record["environment"], self._last_read)
        except BaselineError as error:
            self._compared, self.problem = None, error

    def _collapse(self, result: FinetuneResult) -> str | None:
        """How ``result``'s model collapsed to one class (see :func:`~pytest_finetune.metrics.collapse`), or ``None``
        (also with the guard off)."""
        from ..metrics import collapse  # numpy: imported once a fine-tune compares

        guard, task, predictions = self.settings.collapse_guard, result.recipe.task_spec, result.predictions
        return None if guard is None else collapse(task, predictions.predictions, predictions.label_ids, guard)

    def matches(self, *, serialized_data: SerializedData, snapshot_data: SerializedData) -> bool:
        """Within tolerance, on the same validation examples (a changed recipe too, unless ``strict_recipe``);
        with ``--snapshot-update``, equal but for :data:`VOLATILE_KEYS` (so that any real change, a new recipe
        included, is rewritten)."""
        if serialized_data == _KEEP_TEXT:
            return True
        if self.problem is not None:  # no entry for this hardware class, or the file's entries cannot be read
            return False
        current = json.loads(str(serialized_data))
        compared = self._compared if self.hardware_class is not None else snapshot_data
        try:
            baseline = parse_baseline(
                str(compared), self._last_read, self.settings.tolerances.compared, self._example_ids
            )
            check_recipe_recorded(current, baseline, self._last_read)
            self.verdict = compare(
                current,
                baseline,
                self.settings.tolerances,
                self.settings.alpha,
                self.settings.strict_recipe,
                self._collapsed,
            )
        except BaselineError as error:
            self.problem = error
            return False
        except FinetuneError as error:  # a baseline this comparison cannot use (tolerance auto, uncalibrated)
            self.problem = BaselineError(f"baseline {self._last_read}: {error}")
            return False
        if self.settings.update:
            return same_record(current, baseline)
        return not self.verdict.outcome.failed or (self.settings.warn_only and self.verdict.outcome in WARNABLE)

    def diff_lines(self, serialized_data: SerializedData, snapshot_data: SerializedData) -> Iterator[str]:
        """The verdict table (shown by ``assert value == finetune_snapshot``)."""
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
        :func:`~pytest_finetune.storage.write_atomically`: a message naming the file and the fix. Only rank 0 of a
        data-parallel run writes; the other processes count the baseline written alike."""
        if not is_main_process():
            return
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
        baseline folder (see :func:`~pytest_finetune.storage.write_atomically`). With baselines per hardware class,
        only the run's class's entry is added or replaced (see :func:`~.classes.write_entry`); without, a file of
        entries per class is not replaced by one record."""
        data = next(iter(snapshot_collection)).data
        path = Path(snapshot_collection.location)
        location = shown_path(path, cls.settings.invocation_dir)
        if cls.settings.hardware_classes:
            write_entry(path, str(data), cls.settings.root, location)
            return
        if holds_classes(path):
            raise StorageError(
                f"refusing to write {location}: it holds baselines per hardware class, and this run keeps one per "
                "test (it would drop the others); nothing was written; set finetune_baseline_classes = hardware in "
                "the ini file (or --finetune-baseline-classes hardware)"
            )
        write_atomically(path, str(data), cls.settings.root)


def _escaped(char: str) -> str:
    """``char`` percent-encoded, byte by byte of its UTF-8 form: ``:`` is ``%3A``."""
    return "".join(f"%{byte:02X}" for byte in char.encode("utf-8", errors="surrogatepass"))
