"""Atomic file writes: the one way assetgen puts a file in place (WAVs, review media, pages, exports).

A reader sees either the old file (or none) or the complete new one, never a partial file: the content goes
to a dot-prefixed temp name beside the destination (same folder, so the final step is a rename on one file
system; dot-prefixed, so engine imports and the store's folder scans skip it), is fsynced, and is then
renamed (``overwrite=True``) or hard-linked (``overwrite=False``: refuses to replace an existing file) to the
destination; the folder is fsynced so the new entry survives a power cut.

Temp names are ``.<name>.tmp-<pid>`` (``-<n>`` appended while that name is taken, e.g. by another thread of
the same process); ``TEMP_RE`` matches them, so ``AssetStore.reconcile`` can remove what a crash left behind.
"""

from __future__ import annotations

import errno
import itertools
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from assetgen.store.crash import crashpoint

TEMP_RE = re.compile(r"^\..+\.tmp-\d+(-\d+)?$")
FILE_MODE = 0o644  # before the umask: readable by everyone, like any file a tool writes
_NO_HARD_LINKS = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK)


class DestinationExists(FileExistsError):
    """``overwrite=False`` and a file already sits at the destination."""


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a folder, so entries created, renamed or removed in it survive a power cut."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _create_temp(dest: Path) -> tuple[Path, int]:
    """Create and open (O_EXCL) a free temp name beside ``dest``."""
    for n in itertools.count():
        tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}" + (f"-{n}" if n else ""))
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        except FileExistsError:
            continue
    raise AssertionError("unreachable")


def atomic_write(dest: str | os.PathLike, content: bytes | memoryview | Callable[[Path], Any], *,
                 overwrite: bool = True, durable: bool = True, crash_points: bool = False) -> Path:
    """Put ``content`` at ``dest`` atomically; returns ``dest``.

    ``content`` is the bytes, or a callable that writes the file at the path it is given (e.g.
    ``lambda tmp: frame.to_csv(tmp)``); whatever it raises propagates and leaves nothing behind.
    ``overwrite=False`` raises :class:`DestinationExists` instead of replacing an existing ``dest``.
    ``durable=False`` skips both fsyncs (caches that are cheap to rebuild: still never partial to a reader
    while the machine runs). ``crash_points`` fires the store's commit-path crash points
    (``wav-half-written``, ``after-fsync``, ``after-rename``; see ``store.crash``). Missing parent folders are
    created.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp, fd = _create_temp(dest)
    try:
        try:
            if callable(content):
                os.close(fd)
                fd = -1
                content(tmp)
                if durable:
                    fd = os.open(tmp, os.O_RDONLY)
            else:
                half, view = len(content) // 2, memoryview(content)  # slices of a view, not copies
                _write_all(fd, view[:half])
                if crash_points:
                    crashpoint("wav-half-written")
                _write_all(fd, view[half:])
            if durable and fd >= 0:
                os.fsync(fd)
        finally:
            if fd >= 0:
                os.close(fd)
        if crash_points:
            crashpoint("after-fsync")
        _publish(tmp, dest, overwrite)
    finally:
        tmp.unlink(missing_ok=True)
    if durable:
        fsync_dir(dest.parent)
    if crash_points:
        crashpoint("after-rename")
    return dest


def _publish(tmp: Path, dest: Path, overwrite: bool) -> None:
    """Move the finished temp file to ``dest`` (rename; or hard link, which never replaces a file)."""
    if overwrite:
        os.replace(tmp, dest)
        return
    try:
        os.link(tmp, dest)
    except FileExistsError:
        raise DestinationExists(f"{dest} already exists; refusing to overwrite it") from None
    except OSError as exc:  # file systems without hard links
        if exc.errno not in _NO_HARD_LINKS:
            raise
        if dest.exists():
            raise DestinationExists(f"{dest} already exists; refusing to overwrite it") from None
        os.rename(tmp, dest)
