"""The render log: ``runs`` (one row per render, with its counts) and ``failures`` (one per failed asset)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from assetgen.store.db import Database, utc_now


class RunLog(Database):
    """Reads and writes of the ``runs`` and ``failures`` tables."""

    def failures(self, run_id: str | None = None) -> list[dict]:
        """Recorded failures (of one run, or all), oldest first."""
        if run_id is None:
            return self._select("SELECT * FROM failures ORDER BY id")
        return self._select("SELECT * FROM failures WHERE run_id = ? ORDER BY id", (run_id,))

    def runs(self) -> list[dict]:
        """Render runs, oldest first (``counts`` is JSON text)."""
        return self._select("SELECT * FROM runs ORDER BY started_at, run_id")

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

    def record_attempts(self, run_id: str | None, scene: str, asset: str, content_key: str,
                        attempts: list[Mapping[str, Any]]) -> None:
        """Store every generation attempt of one asset in a run: ``attempt`` (1-based), ``seed``, ``passed``,
        ``gates`` (list of gate results, stored as JSON) and ``chosen`` (the delivered take)."""
        now = utc_now()
        with self._write() as con:
            con.executemany(
                "INSERT INTO attempts (run_id, scene, asset, content_key, attempt, seed, passed, gates, chosen, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, scene, asset, content_key, int(a["attempt"]), int(a["seed"]), int(bool(a["passed"])),
                  json.dumps(list(a["gates"]), sort_keys=True), int(bool(a["chosen"])), now) for a in attempts])

    def attempts(self, scene: str | None = None, asset: str | None = None, run_id: str | None = None) -> list[dict]:
        """Recorded attempts (``gates`` decoded), filtered by asset and/or run, in the order they were stored."""
        where, args = [], []
        for column, value in (("scene", scene), ("asset", asset), ("run_id", run_id)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = "SELECT * FROM attempts" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id"
        rows = self._select(sql, tuple(args))
        for row in rows:
            row["gates"] = json.loads(row["gates"])
        return rows
