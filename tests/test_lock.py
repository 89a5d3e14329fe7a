"""Writer lock on the output root with real processes; readers work while a render writes."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from assetgen.store import AssetStore, Index, RootLocked

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

# Holds the lock, commits assets one by one (printing each), then waits for a line on stdin.
HOLDER = """
import sys
from pathlib import Path
sys.path.insert(0, str(Path(sys.argv[2]) / "tests"))
from store_crash_driver import plan
from assetgen.store import AssetStore
store = AssetStore(sys.argv[1])
with store.lock(wait=False):
    print("locked", flush=True)
    for spec, key, processed in plan(int(sys.argv[3])):
        store.commit(spec, key, processed, model_label="synthetic", placeholder=True, run_id="r", params={})
    print("committed", flush=True)
    sys.stdin.readline()
print("released", flush=True)
"""
WAITER = """
import sys
from assetgen.store import AssetStore
with AssetStore(sys.argv[1]).lock(wait=True, on_wait=lambda: print("waiting", flush=True)):
    print("acquired", flush=True)
"""


def _start(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _consistent(root: Path, rows: list[dict]) -> None:
    for r in rows:  # a committed row always has its complete file
        assert hashlib.sha256((root / r["path"]).read_bytes()).hexdigest() == r["sha256"], r["path"]


def test_second_writer_waits_or_fails_fast_while_readers_read(tmp_path):
    holder = _start(HOLDER, str(tmp_path), str(REPO), "6")
    try:
        assert holder.stdout.readline().strip() == "locked", holder.stderr.read()
        with pytest.raises(RootLocked, match="in use by another assetgen process"):
            with AssetStore(tmp_path).lock(wait=False):
                pass
        seen, deadline = set(), time.monotonic() + 120
        while 9 not in seen and holder.poll() is None and time.monotonic() < deadline:
            rows = Index(tmp_path).rows()  # read while the holder commits
            _consistent(tmp_path, rows)
            seen.add(len(rows))
            time.sleep(0.02)
        assert holder.stdout.readline().strip() == "committed"
        rows = Index(tmp_path).rows()
        assert len(rows) == 9 and len(seen) >= 2  # readers saw intermediate states, never a torn one
        waiter = _start(WAITER, str(tmp_path))
        assert waiter.stdout.readline().strip() == "waiting", waiter.stderr.read()
        time.sleep(0.5)
        assert waiter.poll() is None  # still blocked behind the holder
        holder.stdin.write("go\n")
        holder.stdin.flush()
        out, err = waiter.communicate(timeout=60)
        assert waiter.returncode == 0 and out.split() == ["acquired"], err  # on_wait was called once
        assert holder.wait(timeout=60) == 0
    finally:
        for proc in (holder, locals().get("waiter")):
            if proc is not None and proc.poll() is None:
                proc.kill()


def test_lock_of_a_killed_render_is_released(tmp_path):
    holder = _start(HOLDER, str(tmp_path), str(REPO), "1")
    try:
        assert holder.stdout.readline().strip() == "locked", holder.stderr.read()
        assert holder.stdout.readline().strip() == "committed"
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
    with AssetStore(tmp_path).lock(wait=False) as lock_path:
        assert lock_path == tmp_path / ".assetgen.lock"
    assert [r["version"] for r in Index(tmp_path).rows()] == [1, 2]  # asset0 v1, v2 committed before the kill


def test_uncontended_lock_never_calls_on_wait(tmp_path):
    calls = []
    with AssetStore(tmp_path / "new").lock(on_wait=lambda: calls.append(1)):
        assert (tmp_path / "new" / ".assetgen.lock").exists()
    assert calls == []
