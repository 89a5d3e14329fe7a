"""AssetStore: versioned layout, commit -> file + row agree, name safety, reconcile of every leftover kind."""

from __future__ import annotations

import dataclasses

import hashlib
import json
import os

import numpy as np
import pytest
import soundfile as sf

from assetgen.spec import AssetSpec, GenParams, PostParams, ProcessedAudio
from assetgen.store import AssetStore, StoreError, UnsafeNameError
from assetgen.store import wav
from assetgen.store.index import COLUMNS


def spec(asset="birds", scene="forest", loop=False, bit_depth=24, prompt="dawn chorus", **kw) -> AssetSpec:
    return AssetSpec(scene=scene, asset=asset, model="sfx", prompt=prompt, seed=3, gen=GenParams(duration_s=1.0),
                     post=PostParams(loop=loop, bit_depth=bit_depth), category="amb", tags=("a", "b"), **kw)


def processed(seed=0, frames=4800, sr=48000, loop=None) -> ProcessedAudio:
    audio = np.random.default_rng(seed).uniform(-0.5, 0.5, (2, frames)).astype(np.float32)
    return ProcessedAudio(audio=audio, sample_rate=sr, lufs=-23.1, true_peak_dbtp=-1.2,
                          loop_start=loop[0] if loop else None, loop_end=loop[1] if loop else None,
                          seam_score=0.9 if loop else None)


def commit(store, s, key, p=None, run_id="run1"):
    return store.commit(s, key, p or processed(), model_label="sfx (placeholder)", placeholder=True,
                        run_id=run_id, params={"gen": {"duration_s": 1.0}})


def snapshot(root):
    """Every file under root (relative path -> sha256), excluding the index's own files and the lock."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if not rel.startswith("index.sqlite") and rel != ".assetgen.lock":
                out[rel] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return out


def test_commit_writes_versioned_file_whose_row_matches(tmp_path):
    store = AssetStore(tmp_path)
    row = commit(store, spec(loop=True), "k1", processed(loop=(0, 4800)))
    path = tmp_path / "forest" / "birds" / "birds_v001.wav"
    assert row["path"] == "forest/birds/birds_v001.wav" and row["version"] == 1
    assert row["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (row["sample_rate"], row["channels"], row["bit_depth"], row["duration_s"]) == (48000, 2, 24, 0.1)
    assert (row["loop_start"], row["loop_end"]) == wav.read_loop(path) == (0, 4800)
    assert row["model"] == "sfx (placeholder)" and row["placeholder"] == 1 and row["audio_status"] == "ok"
    assert json.loads(row["tags"]) == ["a", "b"] and row["loudness_target"] == -23.0
    prov = wav.read_provenance(path)
    assert prov["content_key"] == "k1" and prov["seed"] == 3 and json.loads(prov["params"]) == json.loads(row["params"])
    assert store.index.rows() == [row]
    assert sorted(snapshot(tmp_path)) == ["forest/birds/birds_v001.wav"]  # no temp files left


def test_new_version_only_when_key_changes_and_files_are_never_touched(tmp_path):
    store = AssetStore(tmp_path)
    first = commit(store, spec(), "k1")
    before = snapshot(tmp_path)
    again = commit(store, spec(), "k1", processed(seed=9))
    assert again == first and snapshot(tmp_path) == before
    second = commit(store, spec(), "k2", processed(seed=1))
    assert second["version"] == 2 and second["path"].endswith("birds_v002.wav")
    after = snapshot(tmp_path)
    assert after["forest/birds/birds_v001.wav"] == before["forest/birds/birds_v001.wav"]
    assert store.index.latest_keys() == {"forest/birds": "k2"}


def test_going_back_to_an_older_key_publishes_a_new_latest_version(tmp_path):
    store = AssetStore(tmp_path)
    commit(store, spec(), "k1")
    commit(store, spec(), "k2", processed(seed=1))
    before = snapshot(tmp_path)
    back = commit(store, spec(), "k1")  # the manifest returned to the first take's settings
    assert back["version"] == 3 and back["content_key"] == "k1"
    assert store.index.latest_keys() == {"forest/birds": "k1"}
    assert all(snapshot(tmp_path)[rel] == sha for rel, sha in before.items())
    assert commit(store, spec(), "k1") == back  # now up to date: nothing new
    assert [r["version"] for r in store.index.history("forest", "birds")] == [1, 2, 3]


@pytest.mark.parametrize("bit_depth,subtype", [(16, "PCM_16"), (32, "FLOAT")])
def test_per_row_format_overrides(tmp_path, bit_depth, subtype):
    row = commit(AssetStore(tmp_path), spec(bit_depth=bit_depth), "k", processed(sr=44100))
    info = sf.info(tmp_path / row["path"])
    assert (info.samplerate, info.subtype, row["bit_depth"], row["sample_rate"]) == (44100, subtype, bit_depth, 44100)


@pytest.mark.parametrize("scene,asset", [("..", "x"), ("forest", "../../etc"), ("a/b", "x"), (".hidden", "x"),
                                         ("forest", ""), ("report", "x"), ("forest", "a\\b")])
def test_unsafe_names_are_refused_before_writing(tmp_path, scene, asset):
    store = AssetStore(tmp_path / "root")
    with pytest.raises(UnsafeNameError):
        commit(store, spec(scene=scene, asset=asset), "k")
    assert not (tmp_path / "root").exists() or snapshot(tmp_path / "root") == {}


def test_symlinked_scene_pointing_outside_root_is_refused(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "root" / "forest").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UnsafeNameError, match="outside"):
        commit(AssetStore(tmp_path / "root"), spec(), "k")
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_record_failure_keeps_the_store_usable(tmp_path):
    store = AssetStore(tmp_path)
    store.record_failure(spec(asset="wind"), "kw", "generate", "RuntimeError: boom", "run1")
    commit(store, spec(), "k1")
    assert [(f["asset"], f["stage"]) for f in store.index.failures("run1")] == [("wind", "generate")]
    assert [r["asset"] for r in store.index.rows()] == ["birds"]


def test_reconcile_removes_temps_and_adopts_finished_orphans(tmp_path):
    store = AssetStore(tmp_path)
    commit(store, spec(), "k1")
    # a crash between rename and index commit: file v002 exists, no row
    row2 = commit(store, spec(), "k2", processed(seed=2))
    expected = {k: v for k, v in row2.items() if k != "id"}
    import sqlite3
    con = sqlite3.connect(tmp_path / "index.sqlite")
    con.execute("DELETE FROM assets WHERE version = 2")
    con.commit()
    con.close()
    folder = tmp_path / "forest" / "birds"
    (folder / ".birds_v003.wav.tmp-12345").write_bytes(b"RIFF partial")
    report = store.reconcile()
    assert report.removed_temp == ["forest/birds/.birds_v003.wav.tmp-12345"]
    assert report.adopted == ["forest/birds/birds_v002.wav"] and not report.quarantined
    adopted = store.index.get("forest", "birds", 2)
    assert {k: v for k, v in adopted.items() if k != "id"} == expected
    assert sorted(snapshot(tmp_path)) == ["forest/birds/birds_v001.wav", "forest/birds/birds_v002.wav"]
    assert not store.reconcile()  # idempotent: second pass finds nothing


def test_reconcile_quarantines_files_it_cannot_trust(tmp_path):
    store = AssetStore(tmp_path)
    commit(store, spec(), "k1")
    folder = tmp_path / "forest" / "birds"
    # a foreign file at the next version's name, and a truncated one of ours beyond it
    sf.write(folder / "birds_v002.wav", np.zeros((10, 2)), 48000)
    good = wav.wav_bytes(processed().audio, 48000, 24, provenance={"content_key": "k9"})
    (folder / "birds_v003.wav").write_bytes(good[: len(good) // 2])
    report = store.reconcile()
    assert report.adopted == [] and len(report.quarantined) == 2
    assert sorted(snapshot(tmp_path)) == [".quarantine/forest/birds/birds_v002.wav",
                                          ".quarantine/forest/birds/birds_v003.wav",
                                          "forest/birds/birds_v001.wav"]
    assert [r["version"] for r in store.index.rows()] == [1]


def test_missing_latest_file_is_rerendered_at_its_own_version(tmp_path):
    store = AssetStore(tmp_path)
    commit(store, spec(), "k1")
    commit(store, spec(), "k2", processed(seed=2))
    (tmp_path / "forest" / "birds" / "birds_v002.wav").unlink()
    report = store.reconcile()
    assert report.missing == ["forest/birds/birds_v002.wav"]
    assert store.index.latest_keys() == {}  # the plan will render forest/birds again
    row = commit(store, spec(), "k2", processed(seed=2))
    assert row["version"] == 2 and row["file_state"] == "ok"
    assert row["sha256"] == hashlib.sha256((tmp_path / row["path"]).read_bytes()).hexdigest()
    assert store.index.latest_keys() == {"forest/birds": "k2"} and not store.reconcile()
    assert [r["version"] for r in store.index.rows()] == [1, 2]


def test_modified_file_is_quarantined_not_overwritten(tmp_path):
    store = AssetStore(tmp_path)
    row = commit(store, spec(), "k1")
    path = tmp_path / row["path"]
    edited = path.read_bytes() + b"JUNK"
    path.write_bytes(edited)
    report = store.reconcile()
    assert report.modified == [row["path"]] and len(report.quarantined) == 1
    assert (tmp_path / ".quarantine" / row["path"]).read_bytes() == edited  # the user's edit is kept
    restored = commit(store, spec(), "k1")
    assert restored["version"] == 1 and (tmp_path / row["path"]).exists()
    assert not store.reconcile()


def test_file_returning_with_its_hash_is_recovered(tmp_path):
    store = AssetStore(tmp_path)
    row = commit(store, spec(), "k1")
    path = tmp_path / row["path"]
    path.rename(tmp_path / "aside.wav")
    assert store.reconcile().missing == [row["path"]]
    (tmp_path / "aside.wav").rename(path)
    assert store.reconcile().recovered == [row["path"]]
    assert store.index.latest_keys() == {"forest/birds": "k1"}


def test_commit_refuses_to_overwrite_an_unreconciled_file(tmp_path):
    store = AssetStore(tmp_path)
    folder = tmp_path / "forest" / "birds"
    folder.mkdir(parents=True)
    (folder / "birds_v001.wav").write_bytes(b"user file")
    with pytest.raises(StoreError, match="reconcile"):
        commit(store, spec(), "k1")
    assert (folder / "birds_v001.wav").read_bytes() == b"user file"


def test_index_columns_cover_the_contract(tmp_path):
    row = commit(AssetStore(tmp_path), spec(), "k1")
    assert set(row) == set(COLUMNS)
    assert row["created_at"].endswith("Z") and row["status"] == "rendered" and row["run_id"] == "run1"


def test_commit_of_audio_encoded_by_post_processing_writes_the_same_file(tmp_path, monkeypatch):
    import assetgen.store.store as store_mod

    monkeypatch.setattr(store_mod, "utc_now", lambda: "2025-01-02T03:04:05Z")
    p = processed(loop=(0, 4800))
    encoded = ProcessedAudio(**{**vars(p), "audio": wav.encode(p.audio, 24)})
    rows = [commit(AssetStore(tmp_path / name), spec(loop=True), "k1", q) for name, q in (("a", p), ("b", encoded))]
    assert (tmp_path / "a" / rows[0]["path"]).read_bytes() == (tmp_path / "b" / rows[1]["path"]).read_bytes()
    assert {k: v for k, v in rows[0].items() if k != "id"} == {k: v for k, v in rows[1].items() if k != "id"}
    with pytest.raises(StoreError, match="encoded at 24 bit"):
        commit(AssetStore(tmp_path / "c"), spec(bit_depth=16), "k1", encoded)


def hashed_files(monkeypatch) -> list:
    """Record the files reconcile hashes (every hash of a local root's file is ``store.root.sha256_file``)."""
    from assetgen.store import root as root_mod

    seen: list = []
    original = root_mod.sha256_file

    def spy(path):
        seen.append(path.name)
        return original(path)

    monkeypatch.setattr(root_mod, "sha256_file", spy)
    return seen


def test_reconcile_hashes_a_file_again_only_when_it_changed(tmp_path, monkeypatch):
    import shutil
    import time

    from assetgen.store import verified

    monkeypatch.setattr(verified, "RACY_NS", 0)  # no clock-tick margin: see the next test for it
    store = AssetStore(tmp_path)
    rows = [commit(store, spec(asset=a), "k1") for a in ("birds", "wind", "rain")]
    seen = hashed_files(monkeypatch)
    assert not store.reconcile() and sorted(seen) == ["birds_v001.wav", "rain_v001.wav", "wind_v001.wav"]
    seen.clear()
    assert not store.reconcile() and seen == []  # nothing changed: no file read
    time.sleep(0.05)  # past the file system's timestamp tick
    # same size, mtime put back: the write still changed ctime
    birds = tmp_path / rows[0]["path"]
    st = birds.stat()
    data = bytearray(birds.read_bytes())
    data[-1] ^= 1
    birds.write_bytes(bytes(data))
    os.utime(birds, ns=(st.st_atime_ns, st.st_mtime_ns))
    # an identical copy put in place (new inode): hashed, found intact
    wind = tmp_path / rows[1]["path"]
    shutil.copyfile(wind, tmp_path / "copy.wav")
    os.replace(tmp_path / "copy.wav", wind)
    report = store.reconcile()
    assert sorted(seen) == ["birds_v001.wav", "wind_v001.wav"]
    assert report.modified == [rows[0]["path"]] and not report.missing
    seen.clear()
    quiet = store.reconcile()  # the quarantined file stays reported missing until rendered again
    assert quiet.missing == [rows[0]["path"]] and not quiet.modified and seen == []
    # verify_hashes=False only checks existence
    assert store.reconcile(verify_hashes=False).missing == [rows[0]["path"]] and seen == []


def test_reconcile_trusts_no_verification_taken_right_after_a_change(tmp_path, monkeypatch):
    store = AssetStore(tmp_path)
    commit(store, spec(), "k1")
    seen = hashed_files(monkeypatch)
    store.reconcile()
    store.reconcile()  # verified within RACY_NS of the file's write: a same-tick edit would look unchanged
    assert seen == ["birds_v001.wav", "birds_v001.wav"]
    st = (tmp_path / "forest/birds/birds_v001.wav").stat()
    assert store.index.verified_files()["forest/birds/birds_v001.wav"][1:5] == \
        (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def test_index_of_schema_v1_gains_the_verification_cache(tmp_path):
    import sqlite3

    store = AssetStore(tmp_path)
    row = commit(store, spec(), "k1")
    _as_old_index(tmp_path / "index.sqlite", 1)  # back to what assetgen wrote before schema v2
    assert store.index.get("forest", "birds")["sha256"] == row["sha256"]
    assert not store.reconcile()
    assert list(store.index.verified_files()) == [row["path"]]


def _as_old_index(path, version):
    """Rewrite the index at ``path`` as schema ``version`` wrote it (the rows' columns of that schema)."""
    import sqlite3

    from assetgen.store import schema

    old = path.with_suffix(".old")
    path.rename(old)
    con = sqlite3.connect(path)
    for step in range(1, version + 1):
        con.executescript(schema._MIGRATIONS[step])
    con.execute(f"PRAGMA user_version={version}")
    cols = [r[1] for r in con.execute("PRAGMA table_info(assets)")]
    con.execute("ATTACH DATABASE ? AS old", (str(old),))
    con.execute(f"INSERT INTO assets ({', '.join(cols)}) SELECT {', '.join(cols)} FROM old.assets")
    con.commit()
    con.close()
    old.unlink()


def test_index_of_schema_v2_gains_measurements_qc_and_attempts(tmp_path):
    import sqlite3

    from assetgen.store import schema

    store = AssetStore(tmp_path)
    row = commit(store, spec(), "k1")
    _as_old_index(tmp_path / "index.sqlite", 2)
    con = sqlite3.connect(tmp_path / "index.sqlite")
    assert "lra_lu" not in [r[1] for r in con.execute("PRAGMA table_info(assets)")]
    con.close()
    old = store.index.get("forest", "birds")  # opening migrates
    assert old["sha256"] == row["sha256"] and old["lra_lu"] is None and old["qc"] is None
    con = sqlite3.connect(tmp_path / "index.sqlite")
    assert con.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
    assert con.execute("SELECT COUNT(*) FROM attempts").fetchone()[0] == 0
    con.close()
    measured = dataclasses.replace(processed(), lra_lu=4.25, max_momentary_lufs=-18.5, max_short_term_lufs=-20.0,
                                   sample_peak_dbfs=-3.0, dc_offset=1e-5, tempo_bpm=120.0, tempo_source="given")
    new = commit(store, spec(meta=(("meta_owner", "jo"),)), "k2", measured)
    wanted = {"version": 2, "lra_lu": 4.25, "max_momentary_lufs": -18.5, "max_short_term_lufs": -20.0,
              "sample_peak_dbfs": -3.0, "dc_offset": 1e-5, "tempo_bpm": 120.0, "tempo_source": "given",
              "meta": '{"meta_owner": "jo"}', "loudness_shortfall_lu": None}
    assert {k: new[k] for k in wanted} == wanted
    (tmp_path / "index.sqlite").unlink()  # the file's provenance carries them: adoption restores them
    adopted = AssetStore(tmp_path)
    adopted.reconcile()
    assert {k: adopted.index.get("forest", "birds")[k] for k in wanted} == wanted
