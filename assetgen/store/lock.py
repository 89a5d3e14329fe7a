"""One writer per output root: an OS file lock on ``ROOT/.assetgen.lock`` (filelock; released by the OS
when the holder dies, so a crashed render never leaves the root locked). Readers never take it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from filelock import FileLock, Timeout

LOCK_NAME = ".assetgen.lock"


class RootLocked(RuntimeError):
    """Another process (a render, approve/reject) holds the output root's lock."""


@contextlib.contextmanager
def root_lock(root: str | os.PathLike, *, wait: bool = True,
              on_wait: Callable[[], None] | None = None) -> Iterator[Path]:
    """Hold ``ROOT/.assetgen.lock`` for the block; creates ROOT if needed.

    ``wait=False`` raises :class:`RootLocked` at once when it is held; ``wait=True`` calls ``on_wait()`` once
    (so the CLI can say why it pauses) and then blocks until the holder finishes.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_NAME
    lock = FileLock(path, thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if not wait:
            raise RootLocked(f"{root} is in use by another assetgen process (lock {path}); "
                             "wait for it to finish or render into another --out") from None
        if on_wait is not None:
            on_wait()
        lock.acquire(timeout=-1)
    try:
        yield path
    finally:
        lock.release()
