"""Files the plugin writes (baselines, reports): replaced atomically, so that a reader, or a
crash, sees the old file or the new one, never part of one; each inside the folder it belongs in
(a symbolic link that leads out of it is refused, never followed). Files it reads (baselines, cache
entries) are read only when they are regular files of at most :data:`MAX_READ_BYTES`."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import tempfile
from pathlib import Path
from typing import BinaryIO

from .errors import FinetuneError

_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)
#: A folder where a file should be, or a file where a folder should be.
_BLOCKED = (errno.EEXIST, errno.EISDIR, errno.ENOTDIR)
#: The most bytes of its target's name a temporary file repeats: with the leading dot, the separator,
#: ``mkstemp``'s 8 random characters and ``.tmp``, its name stays within NAME_MAX (255 bytes on
#: common file systems), also beside a target whose name takes all 255.
_NAME_BYTES = 200
#: The most bytes the plugin reads of a baseline or a cache entry's ``result.json``: far above what a
#: fine-tune writes (a baseline listing the wrong answers of a million validation examples takes about
#: 15 MiB), far below what would exhaust memory.
MAX_READ_BYTES = 64 * 2**20


class StorageError(FinetuneError, OSError):
    """A file the plugin writes could not be written; the message names it, says what became
    of the old file and how to fix it. An ``OSError`` too, for callers that catch those."""


class UnfitFile(OSError):
    """A file the plugin does not read: not a regular file (a device, a pipe), or larger than it reads."""


def write_atomically(path: Path, text: str, folder: Path | None = None) -> None:
    """Replace ``path`` with ``text`` so that readers see the old file or the new one, never part.

    The new file keeps the old one's permissions (a new file gets ``0o666`` less the umask, as
    ``open`` gives), and a symbolic link at ``path`` stays one: its target is replaced, if it lies
    inside ``folder``, the folder ``path`` belongs in (by default its own); a link that leads out of
    ``folder`` is a :class:`StorageError` naming the link, and nothing is written (see :func:`inside`).
    An ``OSError`` (a full disk, a read-only folder) becomes a :class:`StorageError` that names
    ``path``; the old file is left as it was and no temporary file is left behind.
    """
    existed = path.is_file()
    target = inside(path, path.parent if folder is None else folder, "write")
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


def inside(path: Path, folder: Path, action: str, *, follow: bool = True) -> Path:
    """The file that writing (``follow``) or removing (not ``follow``: a link itself is removed) ``path``
    changes, all symbolic links resolved; a :class:`StorageError` naming the link when it lies outside
    ``folder`` (resolved too: a linked baseline folder is that folder), so nothing outside is changed."""
    home = Path(os.path.realpath(folder))
    changed = Path(os.path.realpath(path)) if follow else Path(os.path.realpath(path.parent)) / path.name
    if changed.is_relative_to(home):
        return changed
    steps = [step for step in (*reversed(path.parents), path) if step.is_relative_to(folder) and step != folder]
    link = next(
        (
            step
            for step in steps
            if (follow or step != path) and step.is_symlink() and not Path(os.path.realpath(step)).is_relative_to(home)
        ),
        path,
    )
    unchanged = "nothing was written" if action == "write" else "it is unchanged"
    raise StorageError(
        f"refusing to {action} {path}: the symbolic link {link} leads to {os.path.realpath(link)}, outside {folder}, "
        f"the folder pytest-finetune changes files in; {unchanged}; remove the link (a file or folder of its own then "
        "takes its place) or point it inside that folder, and run again"
    )


def open_regular(path: Path) -> BinaryIO:
    """The regular file at ``path`` (a symbolic link is followed), open for reading in binary. An
    :class:`UnfitFile` for anything else (a device such as ``/dev/zero``, a pipe, a socket: opened without
    blocking, so that a pipe cannot stall the session); an ``IsADirectoryError`` for a folder;
    ``FileNotFoundError`` when there is none."""
    handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    mode = os.fstat(handle).st_mode
    if not stat.S_ISREG(mode):
        os.close(handle)
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        raise UnfitFile(f"{_named(path)} is {_kind(mode)}, not a regular file")
    return os.fdopen(handle, "rb")


def read_bounded(path: Path, limit: int = MAX_READ_BYTES) -> bytes:
    """The bytes of the regular file at ``path`` (see :func:`open_regular`); an :class:`UnfitFile` when it
    holds more than ``limit`` bytes."""
    with open_regular(path) as file:
        size = os.fstat(file.fileno()).st_size
        data = b"" if size > limit else file.read(limit + 1)  # + 1: a file that grew beyond it since its fstat
    if size > limit or len(data) > limit:
        raise UnfitFile(f"{_named(path)} holds more than {limit:,} bytes, the most pytest-finetune reads of it")
    return data


def _named(path: Path) -> str:
    """``path``'s name, and where it leads when it is reached through a symbolic link."""
    resolved = os.path.realpath(path)
    return path.name if resolved == os.path.abspath(path) else f"{path.name} (it leads to {resolved})"


def _kind(mode: int) -> str:
    """What a file that is neither a regular file nor a folder is, by its ``st_mode``."""
    kinds = (
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a pipe"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for is_kind, name in kinds if is_kind(mode)), "a special file")


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
    if isinstance(error, UnfitFile):
        return str(error)
    return f"{type(error).__name__}: {error.strerror or error or 'no reason given'}"


def _fix(error: OSError, path: Path | None) -> str:
    """How to fix ``error`` about the file ``path``."""
    where = f" {path.parent}" if path is not None else " the folder"
    if isinstance(error, UnfitFile):
        return f"replace{f' {path}' if path is not None else ' it'} with a regular file and run again"
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
