"""Takes written where they are post-processed (``AssetStore.stage``) and published by the index's writer."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest

from assetgen import render
from assetgen.store import AssetStore, StoreError, wav
from assetgen.store.store import STAGING, StagedTake, encode_for_delivery
from tests.test_render_logic import gen_result, item, recording, sibling
from tests.test_store import processed, spec


def stage(store, s, key, version, p=None, run_id="run1", attempt=1):
    return store.stage(s, key, encode_for_delivery(p or processed(), s.post.bit_depth), version=version,
                       model_label="sfx (placeholder)", placeholder=True, run_id=run_id,
                       params={"gen": {"duration_s": 1.0}}, attempt=attempt)


def final_wavs(root) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.wav") if STAGING not in p.parts)


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_staged_take_is_invisible_until_published_and_then_the_same_file_as_a_commit(tmp_path, monkeypatch):
    import assetgen.store.store as store_mod

    monkeypatch.setattr(store_mod, "utc_now", lambda: "2025-01-02T03:04:05Z")
    store = AssetStore(tmp_path / "staged")
    take = stage(store, spec(), "k1", 1)
    staged = tmp_path / "staged" / take.staged
    assert take.staged.startswith(f"{STAGING}/run1/forest/birds/") and sha(staged) == take.row["sha256"]
    assert final_wavs(tmp_path / "staged") == [] and store.index.rows() == []
    assert not store.reconcile()  # staging is not an asset folder: nothing adopted or quarantined
    row = store.publish(take)
    assert not staged.exists() and final_wavs(tmp_path / "staged") == ["forest/birds/birds_v001.wav"]
    assert row["sha256"] == take.row["sha256"] == sha(tmp_path / "staged" / row["path"])
    committed = AssetStore(tmp_path / "committed").commit_encoded(
        spec(), "k1", encode_for_delivery(processed(), 24), model_label="sfx (placeholder)", placeholder=True,
        run_id="run1", params={"gen": {"duration_s": 1.0}})
    assert (tmp_path / "committed" / committed["path"]).read_bytes() == (tmp_path / "staged" / row["path"]).read_bytes()
    assert {k: v for k, v in row.items() if k != "id"} == {k: v for k, v in committed.items() if k != "id"}


def test_a_final_verdict_other_than_the_staged_one_rewrites_the_header_around_the_same_samples(tmp_path):
    store = AssetStore(tmp_path)
    take = stage(store, spec(), "k1", 1, dataclasses.replace(processed(), qc="pass"))
    data = wav.read_chunks(tmp_path / take.staged)[b"data"]
    final = dataclasses.replace(take.info, qc="fail", qc_reasons=("near_duplicate: near-duplicate of forest/a",))
    row = store.publish(take, final)
    path = tmp_path / row["path"]
    assert row["qc"] == "fail" and row["audio_status"] == "qc-failed" and row["sha256"] == sha(path)
    assert row["sha256"] != take.row["sha256"] and wav.read_chunks(path)[b"data"] == data
    assert wav.read_provenance(path)["qc"] == "fail" and json.loads(row["qc_reasons"]) == list(final.qc_reasons)
    assert not (tmp_path / take.staged).exists() and wav.audio_intact(path)


def test_publish_refuses_a_stale_version_and_never_replaces_a_file(tmp_path):
    store = AssetStore(tmp_path)
    late = stage(store, spec(), "k2", 1, processed(seed=2))
    store.commit_encoded(spec(), "k1", encode_for_delivery(processed(), 24), model_label="m", placeholder=False,
                         run_id="other", params={})
    with pytest.raises(StoreError, match="staged as version 1, but the next version of forest/birds is 2"):
        store.publish(late)
    assert not (tmp_path / late.staged).exists() and [r["content_key"] for r in store.index.rows()] == ["k1"]
    squatted = stage(store, spec(), "k3", 2, processed(seed=3))
    (tmp_path / "forest/birds/birds_v002.wav").write_bytes(b"user file")
    with pytest.raises(StoreError, match="reconcile"):
        store.publish(squatted)
    assert (tmp_path / "forest/birds/birds_v002.wav").read_bytes() == b"user file"


def test_a_staged_repair_restores_the_missing_latest_file_at_its_own_version(tmp_path):
    store = AssetStore(tmp_path)
    store.commit_encoded(spec(), "k1", encode_for_delivery(processed(), 24), model_label="m", placeholder=False,
                         run_id="r0", params={})
    (tmp_path / "forest/birds/birds_v001.wav").unlink()
    assert store.reconcile().missing == ["forest/birds/birds_v001.wav"]
    it = dataclasses.replace(item("birds", scene="forest", key="k1"), state="repair")
    staging = render.staging_for(store, "r1", [it])
    assert staging.targets["forest/birds"]["version"] == 1
    take = stage(store, spec(), "k1", staging.targets["forest/birds"], processed(seed=5), run_id="r1")
    row = store.publish(take)
    assert (row["version"], row["file_state"]) == (1, "ok") and row["sha256"] == sha(tmp_path / row["path"])
    assert not store.reconcile() and [r["version"] for r in store.index.rows()] == [1]


def test_clear_staging_removes_one_run_or_all_leftovers(tmp_path):
    store = AssetStore(tmp_path)
    a, b = stage(store, spec(), "k1", 1, run_id="r1"), stage(store, spec(asset="owl"), "k1", 1, run_id="r2")
    assert store.clear_staging("r1") == [a.staged] and (tmp_path / b.staged).exists()
    assert store.clear_staging() == [b.staged] and not (tmp_path / STAGING).exists()


def contains_samples(obj, seen=None) -> bool:
    """Whether ``obj`` holds audio anywhere: a non-empty numpy array or encoded samples."""
    seen = seen if seen is not None else set()
    if id(obj) in seen:
        return False
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return obj.size > 0
    if isinstance(obj, wav.Samples):
        return True
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return any(contains_samples(getattr(obj, f.name), seen) for f in dataclasses.fields(obj))
    if isinstance(obj, dict):
        return any(contains_samples(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(contains_samples(v, seen) for v in obj)
    return False


def test_near_duplicate_rerolls_work_on_staged_takes_and_rejected_takes_are_discarded(tmp_path):
    """What a worker returns holds no samples; the chooser re-rolls the copy, the flow publishes the delivered
    takes (rows matching the files) and discards the rejected one, leaving nothing staged."""
    store = AssetStore(tmp_path)
    a, b = sibling("a"), sibling("b")
    bell = recording("bell")
    chooser = render.TakeChooser([a, b])
    staging = render.staging_for(store, "r1", [a, b])
    back, results = render.render_batch(gen_result([a, b], [bell, 0.5 * bell]), staging)
    assert not contains_samples((back, results)) and contains_samples(gen_result([a], [bell]))
    assert all(isinstance(r, StagedTake) for _, r in results)
    for it, result in results:
        chooser.add(it, result)
    [again] = chooser.rerolls()
    assert again.spec.asset == "b"
    [(_, fresh)] = render.render_batch(gen_result([again], [recording("complete")]), staging)[1]
    chooser.add(again, fresh)
    settled = chooser.settled()
    assert [s.item.spec.asset for s in settled] == ["a", "b"] and len(settled[1].rejected) == 1
    with store.lock():
        outcomes = [render.record_settled(store, s, "r1") for s in settled]
    assert all(o.ok for o in outcomes)
    rows = store.index.rows()
    assert [(r["asset"], r["version"], r["qc"]) for r in rows] == [("a", 1, "pass"), ("b", 1, "pass")]
    assert all(r["sha256"] == sha(tmp_path / r["path"]) for r in rows)
    assert json.loads(rows[1]["params"])["attempt"] == 2
    assert not any(p.is_file() for p in (tmp_path / STAGING).rglob("*"))
