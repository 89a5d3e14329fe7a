"""Remote output roots (``store.root``) against a real S3-compatible store: SeaweedFS from the ``seaweed``
fixture, s3fs as the client. Commit, read back, reconcile of strays, the lock object, the index snapshot, and
SIGKILL during uploads then resume (no partial object under a final key; index rows match the objects)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from assetgen.store import AssetStore, RootLocked, StoreError, wav
from assetgen.store import root as root_mod
from assetgen.store.index import Index
from tests.test_store import commit, processed, spec

DRIVER = Path(__file__).with_name("store_crash_driver.py")
REPO = DRIVER.parents[1]
N_ASSETS = "6"  # 9 commits, as tests/test_crash.py

pytestmark = pytest.mark.timeout(300)


def fs_of(url: str):
    return root_mod.RemoteFiles(url)


def objects(url: str) -> dict[str, bytes]:
    """ROOT-relative key -> bytes of every object under the root."""
    files = fs_of(url)
    return {rel: files.read_bytes(rel) for rel in files.listing()}


def test_url_checks():
    assert root_mod.is_url("s3://b/p") and root_mod.is_url("gs://b") and not root_mod.is_url("/tmp/x")
    assert not root_mod.is_url("outputs") and not root_mod.is_url("file:///tmp/x")
    with pytest.raises(root_mod.RemoteRootError, match="credentials"):
        root_mod.check_url("s3://AKIA:secret@bucket/p")
    with pytest.raises(root_mod.RemoteRootError, match="bucket"):
        root_mod.check_url("s3://")
    with pytest.raises(root_mod.RemoteRootError, match="--index is for remote roots"):
        root_mod.writer_root("/tmp/somewhere", "/tmp/other/index.sqlite")


def test_commit_publishes_whole_objects_and_reads_back(s3_root):
    work = root_mod.writer_root(s3_root)
    assert not str(work).startswith("s3:") and (work / root_mod.MARKER).is_file()
    store = AssetStore(work)
    with store.lock():
        row = commit(store, spec(loop=True), "k1", processed(loop=(0, 4800)))
        second = commit(store, spec(), "k2", processed(seed=1))
        assert commit(store, spec(), "k2", processed(seed=1))["version"] == 2  # same key: nothing written
    found = objects(s3_root)
    assert {"forest/birds/birds_v001.wav", "forest/birds/birds_v002.wav", "index.sqlite"} <= set(found)
    assert not any(".tmp-" in k for k in found)
    data = found[row["path"]]
    assert hashlib.sha256(data).hexdigest() == row["sha256"]
    assert hashlib.sha256(found[second["path"]]).hexdigest() == second["sha256"]
    assert wav.audio_intact(data) and wav.read_loop(data) == (0, 4800)
    assert not any(k.startswith(str(work)) for k in found)  # nothing of the working folder's path leaks
    audio, sr, latest = store.read_latest("forest", "birds")
    assert sr == 48000 and latest["version"] == 2 and audio.shape == (2, 4800)
    # the upload's ETag vouches for the hash: a clean reconcile downloads nothing
    read = []
    original = root_mod.RemoteFiles.read_bytes
    root_mod.RemoteFiles.read_bytes = lambda self, rel: read.append(rel) or original(self, rel)
    try:
        with store.lock():
            assert not store.reconcile()
    finally:
        root_mod.RemoteFiles.read_bytes = original
    assert read == []


@pytest.mark.parametrize("conditional", [True, False], ids=["conditional-put", "temp-key-copy"])
def test_publish_never_replaces_an_object(s3_root, conditional):
    files = root_mod.RemoteFiles(s3_root, conditional=conditional)
    files.publish("a/b/b_v001.wav", b"first")
    with pytest.raises(FileExistsError):
        files.publish("a/b/b_v001.wav", b"second")
    assert files.read_bytes("a/b/b_v001.wav") == b"first"
    assert list(files.listing()) == ["a/b/b_v001.wav"]  # the temp key is gone


def test_commit_refuses_an_unindexed_object_at_its_path(s3_root):
    store = AssetStore(root_mod.writer_root(s3_root))
    fs_of(s3_root).put("forest/birds/birds_v001.wav", b"not ours")
    with store.lock(), pytest.raises(StoreError, match="not in the index"):
        commit(store, spec(), "k1")


def test_reconcile_removes_strays_adopts_finished_objects_and_quarantines_damage(s3_root, tmp_path, monkeypatch):
    store = AssetStore(root_mod.writer_root(s3_root))
    with store.lock():
        rows = [commit(store, spec(asset=a), "k1") for a in ("birds", "wind", "rain")]
    files = fs_of(s3_root)
    files.put("forest/birds/.birds_v002.wav.tmp-123-4", b"half")  # a temp key a crash left
    damaged = bytearray(files.read_bytes(rows[1]["path"]))
    damaged[-10] ^= 0xFF
    files.remove(rows[1]["path"])
    files.put(rows[1]["path"], bytes(damaged))  # bit-flipped object under a final key
    files.remove(rows[2]["path"])  # deleted
    # a finished object without its index row (the upload landed, the render died): adopted from provenance
    other = AssetStore(root_mod.writer_root(s3_root, tmp_path / "elsewhere" / "index.sqlite"))
    with other.lock():
        extra = commit(other, spec(asset="birds"), "k2", processed(seed=5))
    with store.lock():
        # this folder's snapshot is not the root's any more: the lock fetched the root's
        report = store.reconcile()
    assert report.removed_temp == ["forest/birds/.birds_v002.wav.tmp-123-4"]
    assert report.modified == [rows[1]["path"]] and report.missing == [rows[2]["path"]]
    assert report.quarantined == [f"{rows[1]['path']} -> .quarantine/{rows[1]['path']}: "
                                  "sha256 differs from its index row"]
    assert store.index.get("forest", "birds")["sha256"] == extra["sha256"]
    keys = set(fs_of(s3_root).listing())
    assert f".quarantine/{rows[1]['path']}" in keys and rows[1]["path"] not in keys
    assert not any(".tmp-" in k for k in keys)


def test_reconcile_adopts_an_object_uploaded_without_its_row(s3_root):
    store = AssetStore(root_mod.writer_root(s3_root))
    with store.lock():
        row = commit(store, spec(), "k1")
    data = fs_of(s3_root).read_bytes(row["path"])
    fs_of(s3_root).remove(row["path"])
    work = store.root
    for name in ("index.sqlite", "index.sqlite-wal", "index.sqlite-shm", ".assetgen/snapshot.json"):
        (work / name).unlink(missing_ok=True)
    fs_of(s3_root).remove("index.sqlite")
    fs_of(s3_root).publish(row["path"], data)
    fresh = AssetStore(work)
    with fresh.lock():
        report = fresh.reconcile()
    assert report.adopted == [row["path"]]
    assert fresh.index.get("forest", "birds")["sha256"] == row["sha256"]


def test_lock_object_refuses_a_second_writer_and_is_released(s3_root, tmp_path):
    store = AssetStore(root_mod.writer_root(s3_root))
    other = AssetStore(root_mod.writer_root(s3_root, tmp_path / "second" / "index.sqlite"))
    with store.lock():
        assert fs_of(s3_root).exists(root_mod.LOCK_KEY)
        with pytest.raises(RootLocked, match="in use by another assetgen process"):
            with other.lock(wait=False):
                pass
    assert not fs_of(s3_root).exists(root_mod.LOCK_KEY)
    with other.lock(wait=False):
        pass


def test_lock_of_a_dead_process_on_this_host_is_taken_over(s3_root):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    files = fs_of(s3_root)
    import socket

    files.put(root_mod.LOCK_KEY, json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout),
                                             "token": "x", "time": time.time()}).encode())
    store = AssetStore(root_mod.writer_root(s3_root))
    with store.lock(wait=False):
        holder = json.loads(files.read_bytes(root_mod.LOCK_KEY))
        assert holder["pid"] == os.getpid()


def test_snapshot_is_fetched_by_a_new_working_folder(s3_root, tmp_path):
    store = AssetStore(root_mod.writer_root(s3_root))
    with store.lock():
        rows = [commit(store, spec(asset=a), "k1") for a in ("birds", "wind")]
        rows[1] = store.index.set_status("forest", "wind", None, "approved")
    other = root_mod.writer_root(s3_root, tmp_path / "fresh" / "index.sqlite")
    assert other == tmp_path / "fresh"
    got = {(r["path"], r["sha256"], r["status"]) for r in Index(other).rows()}
    assert got == {(r["path"], r["sha256"], r["status"]) for r in rows} and rows[1]["status"] == "approved"
    assert (other / ".assetgen" / "decisions.jsonl").is_file()
    mirror = root_mod.reader_root(s3_root)
    assert {p.relative_to(mirror).as_posix() for p in mirror.glob("*/*/*.wav")} == {r["path"] for r in rows}
    for r in rows:
        assert hashlib.sha256((mirror / r["path"]).read_bytes()).hexdigest() == r["sha256"]


# -- SIGKILL during uploads, then resume ------------------------------------------------------------------------
def _run(url: str, crash_at: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ASSETGEN_CRASH_AT"}
    if crash_at:
        env["ASSETGEN_CRASH_AT"] = crash_at
    return subprocess.run([sys.executable, str(DRIVER), url, N_ASSETS], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=180)


def _state(url: str) -> set[tuple]:
    """(scene, asset, version, content key, audio hash) of every version after checking that the index and the
    bucket agree: no temp or partial object, every row's object holding its sha256, contiguous versions."""
    found = objects(url)
    assert not [k for k in found if ".tmp-" in k], "temp keys left"
    assert not [k for k in found if k.startswith(".quarantine/")], "a crash-interrupted upload must not be damaged"
    work = root_mod.writer_root(url)
    rows = Index(work).rows()
    wavs = {k for k in found if k.endswith(".wav")}
    assert wavs == {r["path"] for r in rows}
    state, versions = set(), {}
    for r in rows:
        data = found[r["path"]]
        assert hashlib.sha256(data).hexdigest() == r["sha256"] and wav.audio_intact(data)
        versions.setdefault((r["scene"], r["asset"]), []).append(r["version"])
        state.add((r["scene"], r["asset"], r["version"], r["content_key"], wav.read_provenance(data)["audio_sha256"]))
    for ident, got in versions.items():
        assert got == list(range(1, len(got) + 1)), ident
    # the uploaded snapshot is the working folder's index
    snap = root_mod.RemoteFiles(url)
    assert snap.exists("index.sqlite")
    return state


@pytest.mark.slow
def test_crash_points_and_sigkill_during_uploads_then_resume_equal_a_clean_run(s3_root, seaweed):
    clean_url = s3_root.rsplit("/", 1)[0] + "/clean"
    done = _run(clean_url)
    assert done.returncode == 0 and "done" in done.stdout, done.stderr
    clean = _state(clean_url)
    assert len(clean) == 9
    previous = None
    for crash_at in ["before-upload:2", "after-upload:2", "after-index:2", "after-upload:1", None]:
        run = _run(s3_root, crash_at)
        if previous == "after-upload":  # the object landed, its row did not: adopted
            assert "1 adopted" in run.stdout.splitlines()[0], run.stdout
        if crash_at is None:
            assert run.returncode == 0 and "done" in run.stdout, run.stderr
        else:
            assert run.returncode == -signal.SIGKILL, f"driver did not die at {crash_at}: {run.stdout} {run.stderr}"
        previous = crash_at and crash_at.partition(":")[0]
    assert _state(s3_root) == clean
    # SIGKILL from outside while objects are uploading, twice, then resume
    url = s3_root.rsplit("/", 1)[0] + "/killed"
    env = {k: v for k, v in os.environ.items() if k != "ASSETGEN_CRASH_AT"}
    for delay in (0.3, 0.9):
        proc = subprocess.Popen([sys.executable, str(DRIVER), url, N_ASSETS], env=env, cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        proc.stdout.readline()  # "reconcile: ..." -> uploads start now
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    resumed = _run(url)
    assert resumed.returncode == 0 and "done" in resumed.stdout, resumed.stderr
    assert _state(url) == clean
