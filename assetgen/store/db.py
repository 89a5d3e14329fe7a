"""Connections to ``ROOT/index.sqlite`` (stdlib sqlite3, WAL): the base every index concern builds on.

Single writer (the render flow, under ``AssetStore.lock``); any number of readers (plan, report, export)
at the same time without taking the lock. Every call opens a short-lived connection: WAL lets readers see
the last committed state while a render writes, ``busy_timeout`` covers the brief writer-writer overlaps
(e.g. ``approve`` while a render commits); a render also holds one idle connection (:meth:`Database.keep_open`).
Reads never create the file (a missing index reads as empty). SQLite errors that mean the disk cannot be
written (read-only, full, no permission) are raised as ``store.disk.DiskProblem`` naming the index file.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from assetgen.store import disk
from assetgen.store.schema import DB_NAME, SCHEMA_VERSION, check_version, migrate, user_version

BUSY_TIMEOUT_MS = 30_000


def utc_now() -> str:
    """Current time as ISO-8601 UTC with milliseconds, e.g. ``2025-01-31T12:00:00.000Z``."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ident(scene: str, asset: str) -> str:
    return f"{scene}/{asset}"


class Database:
    """``ROOT/index.sqlite``: short-lived reader connections and one-transaction writers."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.path = self.root / DB_NAME

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"

    @contextlib.contextmanager
    def _disk_errors(self) -> Iterator[None]:
        """SQLite errors meaning the disk cannot be written, raised as ``disk.DiskProblem`` naming the index."""
        try:
            yield
        except sqlite3.Error as exc:
            problem = disk.from_sqlite(exc, self.path)
            if problem is None:
                raise
            raise problem from exc

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection | None]:
        """A short-lived reader connection, or None when no index exists yet."""
        if not self.path.exists():
            yield None
            return
        with self._disk_errors():
            con = self._open()
            try:
                version = check_version(self.path, user_version(con))
                if version == 0:  # created but never written by a render: reads as empty
                    yield None
                    return
                if version < SCHEMA_VERSION:  # written by an older assetgen: bring it up to date first
                    con.close()
                    with self._write():
                        pass
                    con = self._open()
                yield con
            finally:
                con.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction (committed on success, rolled back on error)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self._disk_errors():
            con = self._open()
            try:
                con.execute("PRAGMA journal_mode=WAL")
                con.execute("BEGIN IMMEDIATE")
                migrate(con, self.path)
                yield con
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    with contextlib.suppress(sqlite3.Error):  # a full disk may fail the rollback too
                        con.execute("ROLLBACK")
                raise
            finally:
                con.close()

    @contextlib.contextmanager
    def keep_open(self) -> Iterator[None]:
        """Hold one idle connection for a run of many short transactions (creates the index if missing).

        When the last connection to a WAL database closes, SQLite checkpoints the WAL into the database and
        deletes it, so with one connection per operation every commit would pay for a checkpoint. The held
        connection has no transaction open: it blocks neither writers nor checkpoints, and closing it at the
        end checkpoints once.
        """
        with self._write():
            pass
        with self._disk_errors():
            con = self._open()
        try:
            yield
        finally:
            con.close()

    def _open(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        con.row_factory = sqlite3.Row
        con.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        con.execute("PRAGMA synchronous=FULL")  # a committed row survives power loss, like its fsynced file
        return con

    def _select(self, sql: str, args: tuple = ()) -> list[dict]:
        with self._read() as con:
            if con is None:
                return []
            return [dict(r) for r in con.execute(sql, args).fetchall()]
