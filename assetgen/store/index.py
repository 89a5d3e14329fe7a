"""The asset index: ``ROOT/index.sqlite``, one row per asset version (stdlib sqlite3, WAL).

Single writer (the render flow, under ``AssetStore.lock``); any number of readers (plan, report, export)
at the same time without taking the lock. Every call opens a short-lived connection: WAL lets readers see
the last committed state while a render writes, ``busy_timeout`` covers the brief writer-writer overlaps
(e.g. ``approve`` while a render commits); a render also holds one idle connection (:meth:`Index.keep_open`).

Besides ``assets`` (the contract's columns), ``failures`` and ``runs``: ``verified_files``, reconcile's cache
of file hashes it checked, keyed by path with the ``os.stat`` fingerprint they were checked at.

Rows are plain dicts of column -> value exactly as stored: ``params`` and ``tags`` are JSON text,
``placeholder`` is 0/1, times are ISO-8601 UTC strings. "latest" (highest version) and "latest approved"
are queries, never copies.

``file_state`` is ``ok`` or ``missing``: reconcile marks a row ``missing`` when its file is gone or no
longer matches its sha256 (the mismatching file is moved to quarantine, never overwritten). A missing
*latest* version is left out of :meth:`Index.latest_keys`, so the plan renders it again; the store then
restores the file at the row's own path (same version, same content key), keeping versions contiguous.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

DB_NAME = "index.sqlite"
SCHEMA_VERSION = 2  # PRAGMA user_version; bump and add a step to _MIGRATIONS when the schema changes
BUSY_TIMEOUT_MS = 30_000
STATUSES = ("rendered", "approved", "rejected")
FILE_STATES = ("ok", "missing")

# Column order of the ``assets`` table (and of exports).
COLUMNS = (
    "id", "scene", "asset", "version", "path", "content_key", "sha256", "status", "file_state",
    "model", "placeholder", "prompt", "seed", "params", "sample_rate", "channels", "bit_depth", "duration_s",
    "lufs", "true_peak_dbtp", "loudness_target", "true_peak_target", "loop_start", "loop_end", "seam_score",
    "audio_status", "category", "tags", "layer", "run_id", "created_at",
)
REQUIRED = ("scene", "asset", "path", "content_key", "sha256")

_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS assets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scene TEXT NOT NULL,
    asset TEXT NOT NULL,
    version INTEGER NOT NULL CHECK (version >= 1),
    path TEXT NOT NULL UNIQUE,
    content_key TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'rendered' CHECK (status IN ('rendered', 'approved', 'rejected')),
    file_state TEXT NOT NULL DEFAULT 'ok' CHECK (file_state IN ('ok', 'missing')),
    model TEXT,
    placeholder INTEGER NOT NULL DEFAULT 0 CHECK (placeholder IN (0, 1)),
    prompt TEXT,
    seed INTEGER,
    params TEXT,
    sample_rate INTEGER,
    channels INTEGER,
    bit_depth INTEGER,
    duration_s REAL,
    lufs REAL,
    true_peak_dbtp REAL,
    loudness_target REAL,
    true_peak_target REAL,
    loop_start INTEGER,
    loop_end INTEGER,
    seam_score REAL,
    audio_status TEXT,
    category TEXT,
    tags TEXT,
    layer TEXT,
    run_id TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (scene, asset, version)
);
-- not unique: a manifest that goes back to an older take's settings gets a new version with that key
CREATE INDEX IF NOT EXISTS assets_key ON assets (scene, asset, content_key);
CREATE TABLE IF NOT EXISTS failures (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT,
    scene TEXT NOT NULL,
    asset TEXT NOT NULL,
    content_key TEXT,
    stage TEXT NOT NULL,
    error TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS failures_run ON failures (run_id);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    counts TEXT
);
"""
# v2: what reconcile last verified per file, so an unchanged file is not hashed again (see ``verified_files``)
_SCHEMA_V2 = """
CREATE TABLE IF NOT EXISTS verified_files (
    path TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    verified_ns INTEGER NOT NULL
);
"""
_MIGRATIONS = {1: _SCHEMA_V1, 2: _SCHEMA_V2}  # user_version n-1 -> n


class IndexLookupError(ValueError):
    """Unknown asset, version or status (a user mistake: the CLI prints the message, no traceback)."""


class IndexConflictError(ValueError):
    """A row that would break the index's invariants (duplicate content key, non-contiguous version)."""


class IndexSchemaError(RuntimeError):
    """The index file was written by a newer assetgen (or is not an assetgen index)."""


def utc_now() -> str:
    """Current time as ISO-8601 UTC with milliseconds, e.g. ``2025-01-31T12:00:00.000Z``."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ident(scene: str, asset: str) -> str:
    return f"{scene}/{asset}"


class Index:
    """``ROOT/index.sqlite``. Reads never create the file (a missing index reads as empty)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.path = self.root / DB_NAME

    def __repr__(self) -> str:
        return f"Index({str(self.root)!r})"

    # -- connections -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection | None]:
        """A short-lived reader connection, or None when no index exists yet."""
        if not self.path.exists():
            yield None
            return
        con = self._open()
        try:
            version = con.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise IndexSchemaError(f"{self.path}: index schema v{version} is newer than this assetgen "
                                       f"(v{SCHEMA_VERSION}); upgrade assetgen")
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
        con = self._open()
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("BEGIN IMMEDIATE")
            self._migrate(con)
            yield con
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
        finally:
            con.close()

    @contextlib.contextmanager
    def keep_open(self) -> Iterator[None]:
        """Hold one idle connection for a run of many short transactions (creates the index if missing).

        When the last connection to a WAL database closes, SQLite checkpoints the WAL into the database and
        deletes it, so with one connection per operation every commit paid for a checkpoint (16 commits of a
        render: 0.17 -> 0.13 s). The held connection has no transaction open: it blocks neither writers nor
        checkpoints, and closing it at the end checkpoints once.
        """
        with self._write():
            pass
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

    def _migrate(self, con: sqlite3.Connection) -> None:
        version = con.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise IndexSchemaError(f"{self.path}: index schema v{version} is newer than this assetgen "
                                   f"(v{SCHEMA_VERSION}); upgrade assetgen")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[target].split(";"):
                if statement.strip():
                    con.execute(statement)
            con.execute(f"PRAGMA user_version={target}")

    def _select(self, sql: str, args: tuple = ()) -> list[dict]:
        with self._read() as con:
            if con is None:
                return []
            return [dict(r) for r in con.execute(sql, args).fetchall()]

    # -- reads -------------------------------------------------------------------------------------
    def rows(self, latest_only: bool = False, scene: str | None = None) -> list[dict]:
        """All versions (or only each asset's highest version), ordered by scene, asset, version."""
        where, args = [], []
        if latest_only:
            where.append("a.version = (SELECT MAX(b.version) FROM assets b "
                         "WHERE b.scene = a.scene AND b.asset = a.asset)")
        if scene is not None:
            where.append("a.scene = ?")
            args.append(scene)
        sql = "SELECT * FROM assets a" + (" WHERE " + " AND ".join(where) if where else "")
        return self._select(sql + " ORDER BY a.scene, a.asset, a.version", tuple(args))

    def latest_keys(self) -> dict[str, str]:
        """``"scene/asset"`` -> content key of its highest version (left out while that file is missing)."""
        return {ident(r["scene"], r["asset"]): r["content_key"]
                for r in self.rows(latest_only=True) if r["file_state"] == "ok"}

    def history(self, scene: str, asset: str) -> list[dict]:
        """Every version of one asset, ascending."""
        return self._select("SELECT * FROM assets WHERE scene = ? AND asset = ? ORDER BY version", (scene, asset))

    def get(self, scene: str, asset: str, version: int | None = None) -> dict | None:
        """One version (None = latest), or None when it does not exist."""
        if version is None:
            found = self._select("SELECT * FROM assets WHERE scene = ? AND asset = ? ORDER BY version DESC LIMIT 1",
                                 (scene, asset))
        else:
            found = self._select("SELECT * FROM assets WHERE scene = ? AND asset = ? AND version = ?",
                                 (scene, asset, int(version)))
        return found[0] if found else None

    def get_by_key(self, scene: str, asset: str, content_key: str) -> dict | None:
        """The version of an asset with this content key, if any."""
        found = self._select("SELECT * FROM assets WHERE scene = ? AND asset = ? AND content_key = ? "
                             "ORDER BY version DESC",
                             (scene, asset, content_key))
        return found[0] if found else None

    def latest_approved(self, scene: str, asset: str) -> dict | None:
        """The highest approved version of an asset, or None."""
        found = self._select("SELECT * FROM assets WHERE scene = ? AND asset = ? AND status = 'approved' "
                             "ORDER BY version DESC LIMIT 1", (scene, asset))
        return found[0] if found else None

    def next_version(self, scene: str, asset: str) -> int:
        """The version number the next new content of this asset gets (1-based, contiguous)."""
        found = self._select("SELECT COALESCE(MAX(version), 0) AS v FROM assets WHERE scene = ? AND asset = ?",
                             (scene, asset))
        return int(found[0]["v"]) + 1 if found else 1

    def failures(self, run_id: str | None = None) -> list[dict]:
        """Recorded failures (of one run, or all), oldest first."""
        if run_id is None:
            return self._select("SELECT * FROM failures ORDER BY id")
        return self._select("SELECT * FROM failures WHERE run_id = ? ORDER BY id", (run_id,))

    def runs(self) -> list[dict]:
        """Render runs, oldest first (``counts`` is JSON text)."""
        return self._select("SELECT * FROM runs ORDER BY started_at, run_id")

    # -- writes ------------------------------------------------------------------------------------
    def add_version(self, row: Mapping[str, Any]) -> dict:
        """Insert one new version; ``version`` is assigned as max+1 in the same transaction.

        A given ``version`` must equal max+1 (the store names the file before indexing it); the latest
        version's content key again raises :class:`IndexConflictError` (an older version's key is fine: the
        manifest went back to earlier settings). Returns the stored row.
        """
        missing = [c for c in REQUIRED if not row.get(c)]
        if missing:
            raise IndexConflictError(f"index row lacks {', '.join(missing)}")
        unknown = sorted(set(row) - set(COLUMNS))
        if unknown:
            raise IndexConflictError(f"unknown index column(s): {', '.join(unknown)}")
        values = _encode(dict(row))
        values.pop("id", None)
        values.setdefault("created_at", utc_now())
        values.setdefault("status", "rendered")
        if values["status"] not in STATUSES:
            raise IndexLookupError(f"status {values['status']!r}: expected one of {', '.join(STATUSES)}")
        scene, asset = values["scene"], values["asset"]
        with self._write() as con:
            top = con.execute("SELECT COALESCE(MAX(version), 0) FROM assets WHERE scene = ? AND asset = ?",
                              (scene, asset)).fetchone()[0]
            if values.get("version") is None:
                values["version"] = top + 1
            elif int(values["version"]) != top + 1:
                raise IndexConflictError(f"{ident(scene, asset)}: version {values['version']} is not the next "
                                         f"version ({top + 1}); versions must stay contiguous")
            dup = con.execute("SELECT version FROM assets WHERE scene = ? AND asset = ? AND content_key = ? "
                              "AND version = ?", (scene, asset, values["content_key"], top)).fetchone()
            if dup is not None:
                raise IndexConflictError(f"{ident(scene, asset)}: content key {values['content_key'][:12]}... "
                                         f"is already the latest version ({dup[0]})")
            if values.get("run_id"):
                con.execute("INSERT OR IGNORE INTO runs (run_id, started_at) VALUES (?, ?)",
                            (values["run_id"], values["created_at"]))
            cols = list(values)
            cur = con.execute(f"INSERT INTO assets ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                              [values[c] for c in cols])
            return dict(con.execute("SELECT * FROM assets WHERE id = ?", (cur.lastrowid,)).fetchone())

    def set_status(self, scene: str, asset: str, version: int | None, status: str) -> dict:
        """Set the review status of one version (None = latest); returns the updated row."""
        if status not in STATUSES:
            raise IndexLookupError(f"status {status!r}: expected one of {', '.join(STATUSES)}")
        if not self.path.exists():
            raise IndexLookupError(f"{ident(scene, asset)}: no index at {self.path}")
        with self._write() as con:
            row = self._find(con, scene, asset, version)
            con.execute("UPDATE assets SET status = ? WHERE id = ?", (status, row["id"]))
            return dict(con.execute("SELECT * FROM assets WHERE id = ?", (row["id"],)).fetchone())

    def verified_files(self) -> dict[str, tuple]:
        """path -> (sha256, size, mtime_ns, ctime_ns, inode, verified_ns) of files whose hash reconcile checked.

        A cache only: a file whose ``os.stat`` still gives that size, mtime, ctime and inode has not been
        written since (a write or ``touch`` changes ctime, which users cannot set), so its hash need not be
        read again. A missing or stale entry only means the file is hashed.
        """
        return {r["path"]: (r["sha256"], r["size"], r["mtime_ns"], r["ctime_ns"], r["inode"], r["verified_ns"])
                for r in self._select("SELECT * FROM verified_files")}

    def record_verified(self, entries: Sequence[tuple]) -> None:
        """Store ``(path, sha256, size, mtime_ns, ctime_ns, inode, verified_ns)`` rows in one transaction."""
        if not entries:
            return
        with self._write() as con:
            con.executemany("INSERT OR REPLACE INTO verified_files VALUES (?, ?, ?, ?, ?, ?, ?)", entries)

    def set_file_state(self, scene: str, asset: str, version: int, file_state: str,
                       sha256: str | None = None) -> dict:
        """Mark a version's file ``ok`` (optionally with its new sha256, after a restore) or ``missing``."""
        if file_state not in FILE_STATES:
            raise IndexLookupError(f"file state {file_state!r}: expected one of {', '.join(FILE_STATES)}")
        with self._write() as con:
            row = self._find(con, scene, asset, version)
            con.execute("UPDATE assets SET file_state = ?, sha256 = COALESCE(?, sha256) WHERE id = ?",
                        (file_state, sha256, row["id"]))
            return dict(con.execute("SELECT * FROM assets WHERE id = ?", (row["id"],)).fetchone())

    @staticmethod
    def _find(con: sqlite3.Connection, scene: str, asset: str, version: int | None) -> sqlite3.Row:
        if version is None:
            row = con.execute("SELECT * FROM assets WHERE scene = ? AND asset = ? ORDER BY version DESC LIMIT 1",
                              (scene, asset)).fetchone()
            if row is None:
                raise IndexLookupError(f"{ident(scene, asset)}: no such asset in the index")
            return row
        row = con.execute("SELECT * FROM assets WHERE scene = ? AND asset = ? AND version = ?",
                          (scene, asset, int(version))).fetchone()
        if row is None:
            known = [r[0] for r in con.execute("SELECT version FROM assets WHERE scene = ? AND asset = ? "
                                               "ORDER BY version", (scene, asset))]
            if not known:
                raise IndexLookupError(f"{ident(scene, asset)}: no such asset in the index")
            raise IndexLookupError(f"{ident(scene, asset)}@v{version}: no such version "
                                   f"(have v{known[0]}..v{known[-1]})")
        return row

    def record_failure(self, run_id: str | None, scene: str, asset: str, content_key: str | None,
                       stage: str, error: str) -> dict:
        """Store one failed asset of a run (the run keeps going)."""
        now = utc_now()
        with self._write() as con:
            if run_id:
                con.execute("INSERT OR IGNORE INTO runs (run_id, started_at) VALUES (?, ?)", (run_id, now))
            cur = con.execute("INSERT INTO failures (run_id, scene, asset, content_key, stage, error, created_at) "
                              "VALUES (?, ?, ?, ?, ?, ?, ?)", (run_id, scene, asset, content_key, stage,
                                                               str(error), now))
            return dict(con.execute("SELECT * FROM failures WHERE id = ?", (cur.lastrowid,)).fetchone())

    def start_run(self, run_id: str | None = None) -> str:
        """Register a run (started now); returns its id (a new random one when not given)."""
        run_id = run_id or os.urandom(6).hex()
        with self._write() as con:
            con.execute("INSERT OR IGNORE INTO runs (run_id, started_at) VALUES (?, ?)", (run_id, utc_now()))
        return run_id

    def finish_run(self, run_id: str, counts: Mapping[str, Any] | None = None) -> None:
        """Mark a run finished with its counts (registers it first when ``start_run`` was never called)."""
        now = utc_now()
        with self._write() as con:
            con.execute("INSERT INTO runs (run_id, started_at, finished_at, counts) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (run_id) DO UPDATE SET finished_at = excluded.finished_at, "
                        "counts = excluded.counts",
                        (run_id, now, now, json.dumps(dict(counts or {}), sort_keys=True)))

    # -- export ------------------------------------------------------------------------------------
    def export(self, path: str | os.PathLike, fmt: str = "csv") -> Path:
        """Write every version (one row each, ``COLUMNS`` order) to ``path`` as ``csv`` or ``parquet``."""
        import pandas as pd

        if fmt not in ("csv", "parquet"):
            raise ValueError(f"export format {fmt!r}: expected csv or parquet")
        path = Path(path)
        frame = pd.DataFrame(self.rows(), columns=list(COLUMNS))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            if fmt == "csv":
                frame.to_csv(tmp, index=False)
            else:
                frame.to_parquet(tmp, index=False, engine="pyarrow")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path


def _encode(row: dict) -> dict:
    """Python values -> stored values (JSON text for params/tags, 0/1 for placeholder)."""
    if "params" in row and not isinstance(row["params"], (str, type(None))):
        row["params"] = json.dumps(row["params"], sort_keys=True, default=str)
    if "tags" in row and not isinstance(row["tags"], (str, type(None))):
        row["tags"] = json.dumps(list(row["tags"]))
    if "placeholder" in row:
        row["placeholder"] = int(bool(row["placeholder"]))
    return row
