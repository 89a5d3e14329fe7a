"""Asset versions: the ``assets`` table, one row per version (the index's contract columns).

Rows are plain dicts of column -> value exactly as stored: ``params`` and ``tags`` are JSON text,
``placeholder`` is 0/1, times are ISO-8601 UTC strings. "latest" (highest version) and "latest approved"
are queries, never copies. Versions of an asset are contiguous from 1.

``file_state`` is ``ok`` or ``missing``: reconcile marks a row ``missing`` when its file is gone or no
longer matches its sha256 (the mismatching file is moved to quarantine, never overwritten). A missing
*latest* version is left out of :meth:`Versions.latest_keys`, so the plan renders it again; the store then
restores the file at the row's own path (same version, same content key), keeping versions contiguous.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

from assetgen.store.db import Database, ident, utc_now
from assetgen.store.schema import (COLUMNS, FILE_STATES, REQUIRED, STATUSES, IndexConflictError,
                                   IndexLookupError)


class Versions(Database):
    """Reads and writes of the ``assets`` table."""

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

    def set_status(self, scene: str, asset: str, version: int | None, status: str, *,
                   before_update: Callable[[dict, str], None] | None = None) -> dict:
        """Set the review status of one version (None = latest); returns the updated row.

        ``before_update(row, status)`` runs inside the write transaction once the row is found and before it
        changes (the decision journal); if it raises, nothing changes.
        """
        if status not in STATUSES:
            raise IndexLookupError(f"status {status!r}: expected one of {', '.join(STATUSES)}")
        if not self.path.exists():
            raise IndexLookupError(f"{ident(scene, asset)}: no index at {self.path}")
        with self._write() as con:
            row = self._find(con, scene, asset, version)
            if before_update is not None:
                before_update(dict(row), status)
            con.execute("UPDATE assets SET status = ? WHERE id = ?", (status, row["id"]))
            return dict(con.execute("SELECT * FROM assets WHERE id = ?", (row["id"],)).fetchone())

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


def _encode(row: dict) -> dict:
    """Python values -> stored values (JSON text for params/tags, 0/1 for placeholder)."""
    if "params" in row and not isinstance(row["params"], (str, type(None))):
        row["params"] = json.dumps(row["params"], sort_keys=True, default=str)
    if "tags" in row and not isinstance(row["tags"], (str, type(None))):
        row["tags"] = json.dumps(list(row["tags"]))
    if "placeholder" in row:
        row["placeholder"] = int(bool(row["placeholder"]))
    if "meta" in row and not isinstance(row["meta"], (str, type(None))):
        row["meta"] = json.dumps(dict(row["meta"]), sort_keys=True) if row["meta"] else None
    if "qc_reasons" in row and not isinstance(row["qc_reasons"], (str, type(None))):
        row["qc_reasons"] = json.dumps(list(row["qc_reasons"]))
    return row


def qc_reasons(value: Any) -> list[str]:
    """A stored ``qc_reasons`` (JSON text of a list, a list, or an index row holding it) as a list of text;
    text that is not JSON is one reason."""
    if isinstance(value, Mapping):
        value = value.get("qc_reasons")
    if value is None or value == "":
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return [value]
    items = value if isinstance(value, list) else [value]
    return [v if isinstance(v, str) else json.dumps(v, sort_keys=True) for v in items]
