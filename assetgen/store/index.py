"""The asset index ``ROOT/index.sqlite``: one facade over the index's concerns, each in its own module.

- ``store.schema``: tables, migrations, the schema-version check, the index's errors;
- ``store.db``: connections (WAL, one short-lived connection per call, single writer);
- ``store.versions``: asset versions (the contract's columns), latest / approved queries, review status;
- ``store.runs``: the render log (runs and failures);
- ``store.verified``: reconcile's cache of verified file hashes;
- ``store.tabular``: CSV / Parquet export of the rows;
- ``store.decisions``: the journal of review decisions, which outlives the index file;
- ``store.lifecycle``: orphaned and retired assets.

``Index`` is all of them on one root, so callers keep one object per root.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from assetgen.gcpause import gc_paused
from assetgen.store import decisions
from assetgen.store.db import BUSY_TIMEOUT_MS, Database, ident, utc_now
from assetgen.store.lifecycle import Lifecycle
from assetgen.store.runs import RunLog
from assetgen.store.schema import (COLUMNS, DB_NAME, FILE_STATES, REQUIRED, SCHEMA_VERSION, STATUSES,
                                   IndexConflictError, IndexLookupError, IndexSchemaError)
from assetgen.store.tabular import export_rows
from assetgen.store.verified import VerifiedFiles
from assetgen.store.versions import Versions

__all__ = ["BUSY_TIMEOUT_MS", "COLUMNS", "DB_NAME", "FILE_STATES", "REQUIRED", "SCHEMA_VERSION", "STATUSES",
           "Database", "Index", "IndexConflictError", "IndexLookupError", "IndexSchemaError", "ident", "utc_now"]


class Index(Versions, RunLog, VerifiedFiles, Lifecycle):
    """``ROOT/index.sqlite``: versions, the render log, the verification cache and the assets' lifecycle. Reads
    never create it."""

    def set_status(self, scene: str, asset: str, version: int | None, status: str) -> dict:
        """Set the review status of one version (None = latest), journaled first (``store.decisions``)."""
        return super().set_status(scene, asset, version, status,
                                  before_update=lambda row, new: decisions.append(self.root, row, new, utc_now()))

    def restore_decisions(self, rows: Iterable[dict]) -> list[dict]:
        """Give ``rows`` (versions just rebuilt from their files) their last journaled decision; returns the
        rows whose status changed. A decision counts only for the content key and sha256 it was made on."""
        rows = list(rows)
        found = decisions.latest_decisions(self.root, rows)
        restored = []
        for row in rows:
            status = found.get(decisions.match_key(row))
            if status in STATUSES and status != row["status"]:
                restored.append(super().set_status(row["scene"], row["asset"], row["version"], status))
        return restored

    def latest_states(self, files: bool = False) -> list[tuple]:
        """(``scene/asset``, content_key, ok, version) of each asset's highest version, or with ``files``
        (``scene/asset``, content_key, ok, path, sha256, version), as plain tuples in no particular order;
        ``ok`` is 1 when its ``file_state`` is ``ok``, else 0.

        One sequential scan of the table, each asset's highest version kept as the rows stream by: a scan
        reads the table's pages in order, where a grouped query would jump between the ``(scene, asset,
        version)`` index and the rows. No dict of every column is built per row (what planning against an
        index of a whole catalogue needs; :meth:`rows` gives every column).
        """
        extra = "path, sha256, " if files else ""
        latest: dict[str, tuple] = {}
        get = latest.get
        with self._read() as con, gc_paused():
            if con is None:
                return []
            con.row_factory = None  # plain tuples: this short-lived connection serves this query only
            for row in con.execute(f"SELECT scene || '/' || asset, content_key, file_state = 'ok', {extra}version "
                                   "FROM assets"):
                seen = get(row[0])
                if seen is None or row[-1] > seen[-1]:
                    latest[row[0]] = row
        return list(latest.values())

    def export(self, path: str | os.PathLike, fmt: str = "csv") -> Path:
        """Write every version (one row each, ``COLUMNS`` order) to ``path`` as ``csv`` or ``parquet``."""
        return export_rows(self.rows(), path, fmt)
