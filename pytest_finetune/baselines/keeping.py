"""Which baselines a session keeps: those of tests that did not run, and those another process wrote; the
only ones it may count unused and remove."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ..pytest_compat import collected_modules, set_unused, syrupy_report
from .paths import absolute, owning_module, shown_path
from .record import BaselineSettings

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


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
    collected = collected_modules(config)
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
                    files[absolute(Path(folder, name))] = identity
        return cls(absolute(root), files)

    def seen(self, path: Path) -> bool:
        """Whether ``path`` was there when the session started."""
        return absolute(path) in self.files

    def unchanged(self, path: Path) -> bool:
        """Whether ``path`` is still the file there was when the session started."""
        return self.seen(path) and file_identity(path) == self.files[absolute(path)]


#: The baselines there were when the session started (see :class:`SeenBaselines`).
SEEN_BASELINES = pytest.StashKey[SeenBaselines]()


#: Baselines that syrupy would have counted unused, kept because another process wrote them during the
#: session: by path, ``new`` (there was none when it started) or ``changed`` (rewritten since).
FOREIGN_BASELINES = pytest.StashKey[dict[Path, str]]()


#: The session whose syrupy removes unused baselines now: on pytest-xdist's controller, syrupy removes them
#: through extensions it makes itself, which know no session (see :func:`removing_unused`).
REMOVING = contextvars.ContextVar[pytest.Config]("pytest_finetune_removing_unused")


@contextlib.contextmanager
def removing_unused(config: pytest.Config) -> Iterator[None]:
    """Around syrupy's end of the session, where it removes unused baselines: they are ``config``'s."""
    token = REMOVING.set(config)
    try:
        yield
    finally:
        REMOVING.reset(token)


def foreign_baselines_line(config: pytest.Config) -> str | None:
    """The summary's line on the baselines kept because another process wrote them during the session (not
    those this session recorded itself, through a symbolic link too), or ``None``."""
    used = getattr(syrupy_report(config), "used", ())
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
        f"pytest run kept, not counted unused: {shown}"
    )


def forget_undeleted(config: pytest.Config) -> None:
    """After the removal of unused baselines stopped at a file it could not remove, make syrupy's
    report count as deleted only the baselines that are gone: the others are still there, so it
    reports them neither deleted nor unused (the plugin names the file it could not remove)."""
    forget_unused(config, lambda location: Path(location).exists())


def forget_unused(config: pytest.Config, kept: Callable[[str], bool]) -> None:
    """Drop the baselines at the locations ``kept`` tells from syrupy's report of those unused (and deleted);
    syrupy may be removing the others meanwhile: it goes on through the collections it had."""
    from syrupy.data import SnapshotCollections

    report = syrupy_report(config)
    if report is None:
        return
    unused = SnapshotCollections()
    for collection in report.unused:
        if not kept(collection.location):
            unused.add(collection)
    set_unused(report, unused)
