"""Review decisions survive the loss of the index: journaled first, restored onto adopted versions."""

from __future__ import annotations

import json

import pytest

from assetgen.store import AssetStore, decisions
from assetgen.store.index import Index
from tests.test_store import commit, processed, spec


def lose_index(root):
    for name in ("index.sqlite", "index.sqlite-wal", "index.sqlite-shm"):
        (root / name).unlink(missing_ok=True)


def test_decisions_come_back_after_the_index_is_rebuilt_from_the_files(tmp_path):
    store = AssetStore(tmp_path)
    commit(store, spec(asset="birds"), "b1")
    birds2 = commit(store, spec(asset="birds"), "b2", processed(seed=2))
    wind = commit(store, spec(asset="wind"), "w1", processed(seed=3))
    rain = commit(store, spec(asset="rain"), "r1", processed(seed=4))
    store.index.set_status("forest", "birds", 1, "approved")
    store.index.set_status("forest", "birds", 1, "rejected")  # the last decision wins
    store.index.set_status("forest", "birds", None, "approved")
    store.index.set_status("forest", "wind", None, "rejected")
    before = {(r["asset"], r["version"]): r["status"] for r in store.index.rows()}
    assert before == {("birds", 1): "rejected", ("birds", 2): "approved", ("wind", 1): "rejected",
                      ("rain", 1): "rendered"}

    lose_index(tmp_path)
    report = AssetStore(tmp_path).reconcile()
    assert len(report.adopted) == 4 and not report.quarantined
    after = {(r["asset"], r["version"]): r["status"] for r in Index(tmp_path).rows()}
    assert after == before
    assert sorted(report.decisions_restored) == sorted([f"{birds2['path']}: approved", f"{wind['path']}: rejected",
                                                        "forest/birds/birds_v001.wav: rejected"])
    assert Index(tmp_path).get("forest", "rain")["sha256"] == rain["sha256"]


def test_journal_lines_name_the_exact_content_decided_on(tmp_path):
    store = AssetStore(tmp_path)
    row = commit(store, spec(), "k1")
    store.index.set_status("forest", "birds", None, "approved")
    lines = decisions.journal_path(tmp_path).read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert {k: record[k] for k in ("scene", "asset", "version", "content_key", "sha256", "status")} == \
        {"scene": "forest", "asset": "birds", "version": 1, "content_key": "k1", "sha256": row["sha256"],
         "status": "approved"}
    assert record["time"].endswith("Z")


def test_a_decision_is_journaled_before_the_index_changes(tmp_path, monkeypatch):
    store = AssetStore(tmp_path)
    commit(store, spec(), "k1")

    def full_disk(*_args, **_kw):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(decisions, "append", full_disk)
    with pytest.raises(OSError, match="No space"):
        store.index.set_status("forest", "birds", None, "approved")
    assert store.index.get("forest", "birds")["status"] == "rendered"  # no decision the journal lacks


def test_a_decision_on_other_bytes_is_not_restored(tmp_path):
    store = AssetStore(tmp_path)
    row = commit(store, spec(), "k1")
    store.index.set_status("forest", "birds", None, "approved")
    path = decisions.journal_path(tmp_path)
    record = json.loads(path.read_text())
    path.write_text(json.dumps(record | {"sha256": "0" * 64}) + "\n" + '{"scene": "forest", "asse')  # torn tail
    lose_index(tmp_path)
    report = AssetStore(tmp_path).reconcile()
    assert report.adopted == [row["path"]] and report.decisions_restored == []
    assert Index(tmp_path).get("forest", "birds")["status"] == "rendered"
    # the next decision starts on its own line despite the torn one
    Index(tmp_path).set_status("forest", "birds", None, "rejected")
    assert [r["status"] for r in decisions.read(tmp_path)] == ["approved", "rejected"]
