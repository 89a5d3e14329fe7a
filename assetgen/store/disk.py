"""Disk problems of an output root (read-only, full, no permission) as one-line errors instead of tracebacks.

The index's SQLite errors carry no path and no errno, so :class:`~assetgen.store.db.Database` turns the ones
that mean "this disk cannot be written" into :class:`DiskProblem` (an ``OSError`` naming ``index.sqlite``);
plain ``OSError`` from file writes already carry both. :func:`describe` says in one line what is wrong, or
returns None for any other exception; the CLI prints it and exits 2, the render flow stops at the first one
(every later write would fail the same way) with what landed before intact.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

REASONS = {
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EIO: "input/output error",
}
# SQLite primary result codes (the low byte of ``sqlite_errorcode``) that mean the disk, not the query, failed
_SQLITE = {8: errno.EROFS, 13: errno.ENOSPC, 3: errno.EACCES, 10: errno.EIO, 14: errno.EACCES}  # READONLY, FULL,
# PERM, IOERR, CANTOPEN (a database that cannot be opened, or whose WAL files cannot be created)
_SQLITE_TEXT = (("readonly database", errno.EROFS), ("disk is full", errno.ENOSPC),
                ("unable to open database file", errno.EACCES), ("disk i/o error", errno.EIO))


class DiskProblem(OSError):
    """The output root (its index or a file in it) cannot be written: read-only, full or not permitted."""


def sqlite_errno(exc: BaseException) -> int | None:
    """The errno a SQLite error stands for (``REASONS``), or None when it is no disk problem."""
    if not isinstance(exc, sqlite3.Error):
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int) and (code & 0xFF) in _SQLITE:
        return _SQLITE[code & 0xFF]
    text = str(exc).lower()
    return next((number for needle, number in _SQLITE_TEXT if needle in text), None)


def from_sqlite(exc: sqlite3.Error, path: Path) -> DiskProblem | None:
    """``exc`` raised on the database at ``path`` as a :class:`DiskProblem`, or None when it is no disk problem."""
    number = sqlite_errno(exc)
    if number is None:
        return None
    return DiskProblem(number, f"{REASONS[number]} ({exc})", str(path))


def describe(exc: BaseException) -> str | None:
    """One line for a disk problem (``exc`` or what caused it): the reason and the path, else None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in REASONS:
            reason = exc.strerror if isinstance(exc, DiskProblem) else REASONS[exc.errno]
            where = f"{exc.filename}: " if exc.filename else ""
            return f"cannot write {where}{reason}"
        number = sqlite_errno(exc)
        if number is not None:
            return f"cannot write the index: {REASONS[number]} ({exc})"
        exc = exc.__cause__ or exc.__context__
    return None


def check_writable(root: str | os.PathLike) -> None:
    """Raise ``OSError`` unless a file can be created in ``root`` (created if missing): a render's first
    check, before it starts Prefect or loads a model. Opens the root's lock file, which a render creates
    anyway."""
    from assetgen.store.lock import LOCK_NAME

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK_NAME, "a"):
        pass
