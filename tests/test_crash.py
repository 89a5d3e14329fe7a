"""Crash safety: SIGKILL the committing process at named points (and at random moments), resume, compare.

Each scenario runs ``tests/store_crash_driver.py`` in a subprocess that dies mid-way, then runs it again
(reconcile + the remaining commits) and checks the root: no temporary or partial WAV, every row's file
present with its sha256, versions contiguous without duplicates, and the same assets/versions/audio as a
clean run.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from assetgen.store import wav
from assetgen.store.index import Index

DRIVER = Path(__file__).with_name("store_crash_driver.py")
REPO = DRIVER.parents[1]
N_ASSETS = "6"  # 9 commits: 6 first versions, then v2 of assets 0, 2, 4

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _run(root: Path, crash_at: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ASSETGEN_CRASH_AT"}
    if crash_at:
        env["ASSETGEN_CRASH_AT"] = crash_at
    return subprocess.run([sys.executable, str(DRIVER), str(root), N_ASSETS], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=120)


def _state(root: Path) -> set[tuple]:
    """(scene, asset, version, content_key, audio hash, loop) of every version, after checking invariants."""
    leftovers = [str(p.relative_to(root)) for p in root.rglob("*") if ".tmp-" in p.name]
    assert leftovers == [], f"temporary files left: {leftovers}"
    assert not (root / ".quarantine").exists(), "a crash-interrupted commit should be adopted or redone"
    rows = Index(root).rows()
    indexed = {r["path"] for r in rows}
    on_disk = {p.relative_to(root).as_posix() for p in root.glob("*/*/*.wav")}
    assert on_disk == indexed, f"files without rows: {on_disk - indexed}; rows without files: {indexed - on_disk}"
    versions: dict[tuple, list[int]] = {}
    keys: set[tuple] = set()
    state = set()
    for r in rows:
        path = root / r["path"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == r["sha256"], r["path"]
        assert wav.audio_intact(path) and r["file_state"] == "ok"
        versions.setdefault((r["scene"], r["asset"]), []).append(r["version"])
        assert (r["scene"], r["asset"], r["content_key"]) not in keys
        keys.add((r["scene"], r["asset"], r["content_key"]))
        state.add((r["scene"], r["asset"], r["version"], r["content_key"],
                   wav.read_provenance(path)["audio_sha256"], wav.read_loop(path)))
    for ident, found in versions.items():
        assert found == list(range(1, len(found) + 1)), f"{ident}: versions {found}"
    return state


@pytest.fixture(scope="module")
def clean_state(tmp_path_factory) -> set[tuple]:
    root = tmp_path_factory.mktemp("clean")
    done = _run(root)
    assert done.returncode == 0 and "done" in done.stdout, done.stderr
    state = _state(root)
    assert len(state) == 9
    return state


# Each chain crashes several runs in a row (later crashes hit the recovery of earlier ones), then resumes
# cleanly. Together they cover every crash point of the commit path at early and late commits.
CHAINS = {
    "temp-rename-fsync": ["wav-half-written:1", "after-rename:1", "after-fsync:2"],
    "late-commits": ["wav-half-written:5", "after-index:3", "after-rename:2"],
}
EXPECT = {"wav-half-written": "removed temp", "after-fsync": "removed temp", "after-rename": "1 adopted"}


@pytest.mark.parametrize("chain", sorted(CHAINS))
def test_crash_points_then_resume_equals_clean_run(tmp_path, clean_state, chain):
    previous = None
    for crash_at in CHAINS[chain] + [None]:
        run = _run(tmp_path, crash_at)
        if previous in EXPECT:  # what the crash left behind is repaired by the next run's reconcile
            assert EXPECT[previous] in run.stdout.splitlines()[0], (previous, run.stdout)
        if crash_at is None:
            assert run.returncode == 0 and "done" in run.stdout, run.stderr
        else:
            assert run.returncode == -signal.SIGKILL, f"driver did not die at {crash_at}: {run.stdout}"
            assert "done" not in run.stdout
        previous = crash_at and crash_at.partition(":")[0]
    assert _state(tmp_path) == clean_state


@pytest.mark.parametrize("seed", [1, 2])
def test_external_sigkill_at_random_moment_then_resume(tmp_path, clean_state, seed):
    rng = random.Random(seed)
    env = {k: v for k, v in os.environ.items() if k != "ASSETGEN_CRASH_AT"}
    for _ in range(2):  # two kills in a row before the clean resume
        proc = subprocess.Popen([sys.executable, str(DRIVER), str(tmp_path), N_ASSETS], env=env, cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        proc.stdout.readline()  # "reconcile: ..." -> the commit loop has started
        time.sleep(rng.uniform(0.0, 1.2))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    resumed = _run(tmp_path)
    assert resumed.returncode == 0 and "done" in resumed.stdout, resumed.stderr
    assert _state(tmp_path) == clean_state
