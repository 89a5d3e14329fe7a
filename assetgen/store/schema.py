"""The index's tables and their migrations (``PRAGMA user_version`` = schema version).

``assets`` holds the contract's columns (one row per asset version), ``failures`` and ``runs`` the render
log, ``verified_files`` reconcile's cache of file hashes it checked (see ``store.verified``). An index file
written by any earlier assetgen is brought up to date by running the missing steps of ``_MIGRATIONS`` in
order; one written by a newer assetgen is refused (:func:`check_version`).
"""

from __future__ import annotations

import os
import sqlite3

DB_NAME = "index.sqlite"
SCHEMA_VERSION = 3  # PRAGMA user_version; bump and add a step to _MIGRATIONS when the schema changes
STATUSES = ("rendered", "approved", "rejected")
FILE_STATES = ("ok", "missing")

# Column order of the ``assets`` table (and of exports).
COLUMNS = (
    "id", "scene", "asset", "version", "path", "content_key", "sha256", "status", "file_state",
    "model", "placeholder", "prompt", "seed", "params", "sample_rate", "channels", "bit_depth", "duration_s",
    "lufs", "true_peak_dbtp", "loudness_target", "true_peak_target", "loop_start", "loop_end", "seam_score",
    "audio_status", "category", "tags", "layer", "run_id", "created_at",
    # v3: the delivery statistics, the loop grid's tempo, free metadata and the quality gates' verdict
    "lra_lu", "max_momentary_lufs", "max_short_term_lufs", "sample_peak_dbfs", "dc_offset",
    "loudness_shortfall_lu", "tempo_bpm", "tempo_source", "meta", "qc", "qc_reasons",
)
QC_STATES = ("pass", "fail", "waived")
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
# v3: measurement columns, ``meta`` (JSON object of the row's ``meta_*`` columns), the QC verdict (``qc`` one of
# QC_STATES or NULL for takes indexed before gates existed, ``qc_reasons`` JSON list of text), and ``attempts``:
# every generation attempt of a render with its seed and gate results (JSON), ``chosen`` = the delivered one
_SCHEMA_V3 = """
ALTER TABLE assets ADD COLUMN lra_lu REAL;
ALTER TABLE assets ADD COLUMN max_momentary_lufs REAL;
ALTER TABLE assets ADD COLUMN max_short_term_lufs REAL;
ALTER TABLE assets ADD COLUMN sample_peak_dbfs REAL;
ALTER TABLE assets ADD COLUMN dc_offset REAL;
ALTER TABLE assets ADD COLUMN loudness_shortfall_lu REAL;
ALTER TABLE assets ADD COLUMN tempo_bpm REAL;
ALTER TABLE assets ADD COLUMN tempo_source TEXT;
ALTER TABLE assets ADD COLUMN meta TEXT;
ALTER TABLE assets ADD COLUMN qc TEXT CHECK (qc IS NULL OR qc IN ('pass', 'fail', 'waived'));
ALTER TABLE assets ADD COLUMN qc_reasons TEXT;
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT,
    scene TEXT NOT NULL,
    asset TEXT NOT NULL,
    content_key TEXT NOT NULL,
    attempt INTEGER NOT NULL CHECK (attempt >= 1),
    seed INTEGER NOT NULL,
    passed INTEGER NOT NULL CHECK (passed IN (0, 1)),
    gates TEXT NOT NULL,
    chosen INTEGER NOT NULL DEFAULT 0 CHECK (chosen IN (0, 1)),
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_asset ON attempts (scene, asset, content_key);
"""
_MIGRATIONS = {1: _SCHEMA_V1, 2: _SCHEMA_V2, 3: _SCHEMA_V3}  # user_version n-1 -> n


class IndexLookupError(ValueError):
    """Unknown asset, version or status (a user mistake: the CLI prints the message, no traceback)."""


class IndexConflictError(ValueError):
    """A row that would break the index's invariants (duplicate content key, non-contiguous version)."""


class IndexSchemaError(RuntimeError):
    """The index file was written by a newer assetgen (or is not an assetgen index)."""


def check_version(path: str | os.PathLike, version: int) -> int:
    """``version`` (an index's ``user_version``) when this assetgen can read it; else :class:`IndexSchemaError`."""
    if version > SCHEMA_VERSION:
        raise IndexSchemaError(f"{path}: index schema v{version} is newer than this assetgen "
                               f"(v{SCHEMA_VERSION}); upgrade assetgen")
    return version


def user_version(con: sqlite3.Connection) -> int:
    return int(con.execute("PRAGMA user_version").fetchone()[0])


def migrate(con: sqlite3.Connection, path: str | os.PathLike) -> None:
    """Bring the index open on ``con`` (inside a write transaction) to ``SCHEMA_VERSION``."""
    version = check_version(path, user_version(con))
    for target in range(version + 1, SCHEMA_VERSION + 1):
        for statement in _MIGRATIONS[target].split(";"):
            if statement.strip():
                con.execute(statement)
        con.execute(f"PRAGMA user_version={target}")
