"""Where baselines live: a test module's baseline folder, and paths as messages show them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:

    pass


def baseline_folder(module: Path, root: Path, rootdir: Path) -> Path:
    """Where the baselines of a test module live: ``root``, then the module's path relative to
    the rootdir (``..`` spelled ``_up_`` so that nothing lands outside ``root``), then its name."""
    return mirrored_folder(module.parent, root, rootdir) / module.stem


def mirrored_folder(folder: Path, root: Path, rootdir: Path) -> Path:
    """``folder``'s place under ``root``: its path relative to the rootdir, ``..`` spelled ``_up_``."""
    relative = Path(os.path.relpath(folder, rootdir))
    return root.joinpath(*("_up_" if part == ".." else part for part in relative.parts if part != "."))


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


def absolute(path: Path) -> Path:
    """``path`` absolute and normalised (``..`` resolved by name, links not)."""
    return Path(os.path.abspath(path))


def shown_path(location: str | Path, invocation_dir: Path) -> str:
    """A path as messages show it: relative to where pytest was started, as a user types it."""
    return Path(os.path.relpath(location, invocation_dir)).as_posix()
