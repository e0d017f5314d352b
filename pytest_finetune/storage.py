"""Files the plugin writes (baselines, reports): replaced atomically, so that a reader, or a
crash, sees the old file or the new one, never part of one."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import tempfile
from pathlib import Path

from .errors import FinetuneError

_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)
#: A folder where a file should be, or a file where a folder should be.
_BLOCKED = (errno.EEXIST, errno.EISDIR, errno.ENOTDIR)
#: The most bytes of its target's name a temporary file repeats: with the leading dot, the separator,
#: ``mkstemp``'s 8 random characters and ``.tmp``, its name stays within NAME_MAX (255 bytes on
#: common file systems), also beside a target whose name takes all 255.
_NAME_BYTES = 200


class StorageError(FinetuneError, OSError):
    """A file the plugin writes could not be written; the message names it, says what became
    of the old file and how to fix it. An ``OSError`` too, for callers that catch those."""


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that readers see the old file or the new one, never part.

    The new file keeps the old one's permissions (a new file gets ``0o666`` less the umask, as
    ``open`` gives), and a symbolic link at ``path`` stays one: its target is replaced.
    An ``OSError`` (a full disk, a read-only folder) becomes a :class:`StorageError` that names
    ``path``; the old file is left as it was and no temporary file is left behind.
    """
    existed = path.is_file()
    target = Path(os.path.realpath(path))
    temporary: str | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        mode = stat.S_IMODE(target.stat().st_mode) if existed else _new_file_mode()
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=_temporary_prefix(target.name), suffix=".tmp")
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            os.fchmod(file.fileno(), mode)
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException as error:
        if temporary is not None:
            with contextlib.suppress(OSError):  # the error to report is the first one
                Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError) and not isinstance(error, StorageError):
            raise write_error(path, error, existed) from None
        raise


def _temporary_prefix(name: str) -> str:
    """The start of the name of a temporary file for ``name``: hidden, then ``name``, cut to at most
    :data:`_NAME_BYTES` bytes (at a character's end), then a dot."""
    encoding = sys.getfilesystemencoding()
    return "." + os.fsencode(name)[:_NAME_BYTES].decode(encoding, errors="ignore") + "."


def _new_file_mode() -> int:
    """The permissions ``open`` gives a new file: ``0o666`` less the process's umask."""
    umask = os.umask(0o022)  # reading the umask means setting it: put it back at once
    os.umask(umask)
    return 0o666 & ~umask


def write_error(path: Path, error: OSError, existed: bool) -> StorageError:
    """The error for ``path`` that could not be written because of ``error``."""
    kept = "the old file is unchanged" if existed else "nothing was written"
    return StorageError(f"could not write {path} ({_reason(error)}); {kept}; {_fix(error, path)}")


def read_error(path: Path, error: OSError) -> StorageError:
    """The error for ``path`` that could not be read because of ``error`` (it exists, or something
    stands in its way): nothing was compared or written."""
    return StorageError(
        f"could not read {path} ({_reason(error)}); nothing was compared or written; {_fix(error, path)}"
    )


def unwritten_message(error: OSError) -> str:
    """What to tell of a file that could not be written or removed at the end of a session."""
    if isinstance(error, StorageError):
        return str(error)
    if error.filename:
        path = Path(os.fsdecode(error.filename))
        return f"pytest-finetune: could not change {path} ({_reason(error)}); it is unchanged; {_fix(error, path)}"
    return f"pytest-finetune: a file could not be written ({_reason(error)}); {_fix(error, None)}"


def _reason(error: OSError) -> str:
    return f"{type(error).__name__}: {error.strerror or error or 'no reason given'}"


def _fix(error: OSError, path: Path | None) -> str:
    """How to fix ``error`` about the file ``path``."""
    where = f" {path.parent}" if path is not None else " the folder"
    if error.errno in _FULL:
        return f"free space on the disk that holds{where} and run again"
    if error.errno in _DENIED:
        return f"make{where} writable and run again"
    blocker = _in_the_way(path) if path is not None and error.errno in _BLOCKED else None
    if blocker is not None:
        kind = "a folder where a file" if blocker == path else "a file where a folder"
        return f"move {blocker} away ({kind} should be) and run again"
    return "fix that and run again"


def _in_the_way(path: Path) -> Path | None:
    """What stands where ``path`` should go: a folder at ``path``, or a file at one of its folders."""
    if path.is_dir():
        return path
    return next((folder for folder in path.parents if folder.exists() and not folder.is_dir()), None)
