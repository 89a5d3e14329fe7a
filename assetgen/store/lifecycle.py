"""The assets' lifecycle across renders: orphans (no longer named by the manifests) and retired assets.

- ``orphans``: one row per asset that the manifests of the latest render did not name, with the first render
  that did not name it (``since_run``; NULL when ``assetgen retire --orphans`` found it without a render).
  :meth:`Lifecycle.record_presence` (called once per render, under the writer lock) adds the newly unnamed
  assets and deletes the rows of assets named again, so ``since_run`` is the start of the current absence.
- ``retired``: assets taken out of delivery by ``assetgen retire`` (export leaves them out, the report shows
  them as retired); their files and versions stay. A render whose manifests name a retired asset again
  un-retires it: the manifests say what ships. Every retirement and un-retirement is also appended to
  ``ROOT/.assetgen/retirements.jsonl`` before the index changes (like the review decisions, see
  ``store.decisions``), so an index rebuilt from the files (``AssetStore.reconcile`` adopting them) gets its
  retirements back (:meth:`Lifecycle.restore_retirements`).

Also what the run report reads of the ``attempts`` table (:meth:`Lifecycle.report_attempts`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from assetgen.store.db import Database, ident, utc_now
from assetgen.store.decisions import JOURNAL_DIR, append_record
from assetgen.store.schema import IndexLookupError

RETIREMENTS_NAME = "retirements.jsonl"


def retirements_path(root: str | os.PathLike) -> Path:
    return Path(root) / JOURNAL_DIR / RETIREMENTS_NAME


def read_retirements(root: str | os.PathLike) -> dict[str, dict]:
    """``"scene/asset"`` -> its last journaled retirement record (``retired`` true or false, ``time``, ``user``,
    ``reason``); lines torn by a crash are skipped."""
    try:
        data = retirements_path(root).read_bytes()
    except FileNotFoundError:
        return {}
    last = {}
    for raw in data.splitlines():
        try:
            record = json.loads(raw)
            last[ident(record["scene"], record["asset"])] = record
        except (ValueError, TypeError, KeyError):
            continue
    return last


class Lifecycle(Database):
    """Reads and writes of the ``orphans`` and ``retired`` tables."""

    def orphans(self) -> dict[str, dict]:
        """``"scene/asset"`` -> its ``orphans`` row (``since_run``, ``since_at``)."""
        return {ident(r["scene"], r["asset"]): r for r in self._select("SELECT * FROM orphans ORDER BY scene, asset")}

    def retired(self) -> dict[str, dict]:
        """``"scene/asset"`` -> its ``retired`` row (``retired_at``, ``user``, ``reason``)."""
        return {ident(r["scene"], r["asset"]): r for r in self._select("SELECT * FROM retired ORDER BY scene, asset")}

    def indexed_assets(self) -> list[str]:
        """Every ``"scene/asset"`` that has at least one version, sorted."""
        return [ident(r["scene"], r["asset"])
                for r in self._select("SELECT DISTINCT scene, asset FROM assets ORDER BY scene, asset")]

    def record_presence(self, named: Iterable[str], run_id: str | None) -> dict[str, list[str]]:
        """After a render of manifests naming the idents ``named``: indexed assets not named become orphans
        since ``run_id`` (kept when already orphaned), named ones stop being orphans and are un-retired.

        Returns ``{"orphaned": newly orphaned, "unorphaned": named again, "unretired": named again while
        retired}`` (sorted idents).
        """
        named = set(named)
        now = utc_now()
        with self._write() as con:
            indexed = {ident(s, a): (s, a) for s, a in con.execute("SELECT DISTINCT scene, asset FROM assets")}
            known = {ident(s, a): (s, a) for s, a in con.execute("SELECT scene, asset FROM orphans")}
            retired = {ident(s, a): (s, a) for s, a in con.execute("SELECT scene, asset FROM retired")}
            new = sorted(set(indexed) - named - set(known))
            back = sorted(set(known) & named)
            unretired = sorted(set(retired) & named)
            con.executemany("INSERT INTO orphans (scene, asset, since_run, since_at) VALUES (?, ?, ?, ?)",
                            [(*indexed[i], run_id, now) for i in new])
            con.executemany("DELETE FROM orphans WHERE scene = ? AND asset = ?", [known[i] for i in back])
            for i in unretired:
                self._journal(*retired[i], False, now, None, f"named by the manifests of run {run_id}")
            con.executemany("DELETE FROM retired WHERE scene = ? AND asset = ?", [retired[i] for i in unretired])
        return {"orphaned": new, "unorphaned": back, "unretired": unretired}

    def retire(self, idents: Iterable[str], *, user: str | None = None, reason: str | None = None,
               orphaned: bool = False) -> list[str]:
        """Retire indexed assets (``"scene/asset"`` each); returns those newly retired (already retired ones
        are left as they were). Raises :class:`IndexLookupError` naming every ident without a version, and
        changes nothing then. ``orphaned``: the idents were found orphaned without a render (recorded as
        orphans since no run when they are not yet)."""
        wanted = sorted(set(idents))
        now = utc_now()
        with self._write() as con:
            indexed = {ident(s, a) for s, a in con.execute("SELECT DISTINCT scene, asset FROM assets")}
            unknown = [i for i in wanted if i not in indexed]
            if unknown:
                raise IndexLookupError(f"{', '.join(unknown)}: no such asset in the index")
            done = {ident(s, a) for s, a in con.execute("SELECT scene, asset FROM retired")}
            new = [i for i in wanted if i not in done]
            for i in new:
                self._journal(*i.split("/", 1), True, now, user, reason)
            con.executemany("INSERT INTO retired (scene, asset, retired_at, user, reason) VALUES (?, ?, ?, ?, ?)",
                            [(*i.split("/", 1), now, user, reason) for i in new])
            if orphaned:
                con.executemany("INSERT OR IGNORE INTO orphans (scene, asset, since_run, since_at) "
                                "VALUES (?, ?, NULL, ?)", [(*i.split("/", 1), now) for i in wanted])
        return new

    def restore_retirements(self, idents: Iterable[str]) -> list[str]:
        """Retire those of ``idents`` (assets just rebuilt from their files) whose last journaled record
        retired them; returns them."""
        journal = read_retirements(self.root)
        wanted = sorted(i for i in set(idents) if (journal.get(i) or {}).get("retired") is True)
        if not wanted:
            return []
        with self._write() as con:
            done = {ident(s, a) for s, a in con.execute("SELECT scene, asset FROM retired")}
            todo = [journal[i] for i in wanted if i not in done]
            con.executemany("INSERT INTO retired (scene, asset, retired_at, user, reason) VALUES (?, ?, ?, ?, ?)",
                            [(r["scene"], r["asset"], r.get("time") or utc_now(), r.get("user"), r.get("reason"))
                             for r in todo])
        return [ident(r["scene"], r["asset"]) for r in todo]

    def _journal(self, scene: str, asset: str, retired: bool, time: str, user: str | None,
                 reason: str | None) -> None:
        append_record(retirements_path(self.root), {"scene": scene, "asset": asset, "retired": retired,
                                                    "time": time, "user": user, "reason": reason})

    def report_attempts(self, run_id: str) -> list[dict]:
        """Generation attempts a run report shows: those of run ``run_id`` and those of every asset's latest
        version's content key (from whichever run made it), oldest first."""
        return self._select(
            "SELECT t.* FROM attempts t WHERE t.run_id = ? OR EXISTS (SELECT 1 FROM assets a "
            "WHERE a.scene = t.scene AND a.asset = t.asset AND a.content_key = t.content_key AND a.version = "
            "(SELECT MAX(b.version) FROM assets b WHERE b.scene = a.scene AND b.asset = a.asset)) "
            "ORDER BY t.id", (run_id,))
