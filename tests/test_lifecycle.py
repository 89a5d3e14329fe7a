"""Orphaned and retired assets in the index (schema v4): migration, presence per render, retire, attempts read."""

from __future__ import annotations

import json
import sqlite3

import pytest

from assetgen.store import AssetStore, IndexLookupError
from assetgen.store import lifecycle, schema
from tests.test_store import _as_old_index, commit, spec


def _store(tmp_path, *idents):
    store = AssetStore(tmp_path)
    for i, name in enumerate(idents):
        scene, asset = name.split("/")
        commit(store, spec(asset=asset, scene=scene), f"k{i}")
    return store


def _tables(path) -> set[str]:
    con = sqlite3.connect(path)
    try:
        return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        con.close()


def test_index_of_schema_v3_gains_orphans_and_retired_and_keeps_its_rows(tmp_path):
    store = _store(tmp_path, "forest/birds", "town/bell")
    before = store.index.rows()
    _as_old_index(tmp_path / "index.sqlite", 3)
    assert not {"orphans", "retired"} & _tables(tmp_path / "index.sqlite")
    assert store.index.retired() == {} and store.index.orphans() == {}  # reading migrates
    assert {"orphans", "retired"} <= _tables(tmp_path / "index.sqlite")
    con = sqlite3.connect(tmp_path / "index.sqlite")
    assert con.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION == 4
    con.close()
    assert store.index.rows() == before
    assert store.index.retire(["town/bell"], user="jo", reason="cut") == ["town/bell"]
    assert store.index.retired()["town/bell"]["user"] == "jo"


def test_presence_orphans_since_the_first_render_that_did_not_name_them(tmp_path):
    store = _store(tmp_path, "forest/birds", "forest/wind", "town/bell")
    got = store.index.record_presence(["forest/birds", "forest/wind", "town/bell"], "run1")
    assert got == {"orphaned": [], "unorphaned": [], "unretired": []} and store.index.orphans() == {}
    assert store.index.record_presence(["forest/birds"], "run2")["orphaned"] == ["forest/wind", "town/bell"]
    assert store.index.record_presence(["forest/birds", "new/one"], "run3")["orphaned"] == []
    orphans = store.index.orphans()
    assert {i: r["since_run"] for i, r in orphans.items()} == {"forest/wind": "run2", "town/bell": "run2"}
    store.index.retire(["town/bell", "forest/wind"])
    got = store.index.record_presence(["forest/birds", "town/bell"], "run4")
    assert got == {"orphaned": [], "unorphaned": ["town/bell"], "unretired": ["town/bell"]}
    assert list(store.index.orphans()) == ["forest/wind"] and list(store.index.retired()) == ["forest/wind"]
    # gone again: a new absence starts at this run
    assert store.index.record_presence(["forest/birds"], "run5")["orphaned"] == ["town/bell"]
    assert store.index.orphans()["town/bell"]["since_run"] == "run5"


def test_retire_refuses_unknown_assets_without_changing_anything(tmp_path):
    store = _store(tmp_path, "forest/birds", "town/bell")
    with pytest.raises(IndexLookupError, match="town/nope: no such asset"):
        store.index.retire(["forest/birds", "town/nope"])
    assert store.index.retired() == {}
    assert store.index.retire(["forest/birds"], orphaned=True) == ["forest/birds"]
    assert store.index.retire(["forest/birds", "town/bell"]) == ["town/bell"]  # already retired: kept as it was
    assert store.index.orphans()["forest/birds"]["since_run"] is None
    assert "town/bell" not in store.index.orphans()


def test_report_attempts_are_this_runs_and_the_latest_versions(tmp_path):
    store = _store(tmp_path, "forest/birds")
    commit(store, spec(asset="birds", scene="forest"), "k-new", run_id="run2")
    con = sqlite3.connect(tmp_path / "index.sqlite")
    rows = [("run1", "forest", "birds", "k0", 1, 3, 1, 1),  # an older version's key: not shown
            ("run2", "forest", "birds", "k-new", 1, 3, 0, 0), ("run2", "forest", "birds", "k-new", 2, 4, 1, 1),
            ("run3", "town", "bell", "kb", 1, 7, 0, 1)]  # failed in run3: no version has its key
    con.executemany("INSERT INTO attempts (run_id, scene, asset, content_key, attempt, seed, passed, gates, chosen, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'now')",
                    [(*r[:7], json.dumps([]), r[7]) for r in rows])
    con.commit()
    con.close()
    got = [(a["run_id"], a["content_key"], a["attempt"]) for a in store.index.report_attempts("run3")]
    assert got == [("run2", "k-new", 1), ("run2", "k-new", 2), ("run3", "kb", 1)]
    assert [a["attempt"] for a in store.index.report_attempts("run9")] == [1, 2]


def test_retirements_survive_a_rebuilt_index(tmp_path):
    store = _store(tmp_path, "forest/birds", "forest/wind", "town/bell")
    store.index.retire(["town/bell", "forest/wind"], user="jo", reason="cut")
    store.index.record_presence(["forest/birds", "forest/wind"], "run2")  # forest/wind named again: un-retired
    with open(tmp_path / ".assetgen" / "retirements.jsonl", "ab") as fh:
        fh.write(b'{"scene": "forest", "asset": "bir')  # a line torn by a crash
    (tmp_path / "index.sqlite").unlink()
    rebuilt = AssetStore(tmp_path)
    report = rebuilt.reconcile()
    assert len(report.adopted) == 3 and "town/bell: retired" in report.decisions_restored
    retired = rebuilt.index.retired()
    assert list(retired) == ["town/bell"] and (retired["town/bell"]["user"], retired["town/bell"]["reason"]) == \
        ("jo", "cut")
    rebuilt.index.retire(["forest/birds"])  # appends after the torn line, on a line of its own
    assert sorted(lifecycle.read_retirements(tmp_path)) == ["forest/birds", "forest/wind", "town/bell"]
