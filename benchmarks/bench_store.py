"""Store, index and export costs, side by side in one run (absolute times are noisy here; read the ratios).

1. index commits: N versions committed one connection per commit vs inside ``Index.keep_open()`` (one
   connection and WAL for the run);
2. reconcile of N unchanged delivered files: first pass (hashes every file) vs the next pass (size, mtime,
   ctime and inode checked against the verification cache);
3. the store's commit of one file: WAV encoding per minute of 48 kHz stereo 24-bit, and the whole atomic
   write (temp file, fsync, rename, directory fsync);
4. export of N approved 30 s takes: first export vs a re-export that hashes every exported file;
5. the manifest row cap: a 1 000 000-row CSV refused, time and the process's peak memory (VmHWM).

Run: .venv/bin/python benchmarks/bench_store.py [--files 100]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assetgen.report.export import export_assets  # noqa: E402
from assetgen.spec import AssetSpec, GenParams, PostParams, ProcessedAudio  # noqa: E402
from assetgen.store import AssetStore  # noqa: E402
from assetgen.store import wav  # noqa: E402
from assetgen.store.index import Index  # noqa: E402
from tests.test_manifest_text import _big_csv, load_in_child  # noqa: E402


def spec(i: int) -> AssetSpec:
    return AssetSpec(scene="bench", asset=f"a{i:04d}", model="sfx", prompt="rain", seed=i,
                     gen=GenParams(duration_s=30.0), post=PostParams())


def clip(seconds: float, seed: int) -> ProcessedAudio:
    audio = np.random.default_rng(seed).uniform(-0.3, 0.3, (2, int(seconds * 48000))).astype(np.float32)
    return ProcessedAudio(audio=audio, sample_rate=48000, lufs=-23.0, true_peak_dbtp=-9.0)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def index_commits(tmp: Path, n: int) -> None:
    def rows(index: Index, prefix: str):
        for i in range(n):
            index.add_version({"scene": prefix, "asset": f"a{i}", "path": f"{prefix}/a{i}/a{i}_v001.wav",
                               "content_key": f"k{i}", "sha256": "0" * 64})
    per_commit = timed(lambda: rows(Index(tmp / "per-commit"), "s"))
    kept = Index(tmp / "kept")

    def inside():
        with kept.keep_open():
            rows(kept, "s")
    kept_open = timed(inside)
    print(f"index: {n} commits, a connection per commit {per_commit:.3f} s vs keep_open {kept_open:.3f} s "
          f"-> {per_commit / kept_open:.2f}x")


def store_and_reconcile(root: Path, n: int, seconds: float) -> None:
    store = AssetStore(root)
    payload = clip(seconds, 0)
    encode = float(np.median([timed(lambda: wav.wav_bytes(payload.audio, 48000, 24, provenance={"k": "v"}))
                              for _ in range(5)]))
    t_commit = []
    with store.index.keep_open():
        for i in range(n):
            t_commit.append(timed(lambda i=i: store.commit(spec(i), f"key{i}", payload, model_label="bench",
                                                           placeholder=False, run_id="bench", params={})))
    write = float(np.median(t_commit))
    print(f"commit of a {seconds:g} s 48 kHz stereo 24-bit file: WAV encoding {encode * 1000 * 60 / seconds:.0f} ms "
          f"per minute of audio; whole commit (encode, temp file, fsync, rename, index row) median "
          f"{write * 1000:.0f} ms")
    first = timed(lambda: AssetStore(root).reconcile())
    second = timed(lambda: AssetStore(root).reconcile())
    print(f"reconcile of {n} unchanged files: first pass (hash each) {first:.2f} s vs cached pass {second:.3f} s "
          f"-> {first / second:.0f}x")
    for i in range(n):
        store.index.set_status("bench", f"a{i:04d}", None, "approved")


def export(root: Path, to: Path, n: int) -> None:
    results = []
    first = timed(lambda: results.append(export_assets(root, to)))
    again = timed(lambda: results.append(export_assets(root, to)))
    print(f"export of {n} approved takes: first {first:.2f} s ({results[0]}) vs re-export, which hashes every "
          f"exported file, {again:.2f} s ({results[1]})")


def row_cap(tmp: Path) -> None:
    path = _big_csv(tmp / "big.csv", 1_000_000)
    text, seconds, peak_mb = load_in_child(path)
    print(f"1 000 000-row CSV ({path.stat().st_size / 2**20:.0f} MB) refused in {seconds:.2f} s, "
          f"peak memory {peak_mb:.0f} MB: {' '.join(text.split())[:160]}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        index_commits(tmp, 16)
        store_and_reconcile(tmp / "root", args.files, args.seconds)
        export(tmp / "root", tmp / "engine", args.files)
        row_cap(tmp)


if __name__ == "__main__":
    main()
