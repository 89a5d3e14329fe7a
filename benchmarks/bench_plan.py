"""Manifest load (validate + expand) + content keys + diff at 10k and 100k assets, side by side.

Each size: a CSV manifest of N/10 rows whose template sweeps expand to N assets, against an index of N
latest keys (90 % up to date, 5 % changed, 5 % orphaned) in a real SQLite table. Prints times and the
100k/10k ratio (10.0 = linear). Run: ``.venv/bin/python benchmarks/bench_plan.py``.
"""

from __future__ import annotations

import csv
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from assetgen.manifest import load_manifests
from assetgen.plan import make_batches, make_plan

MOODS = "calm|tense|epic|sad|warm|cold|dark|bright|odd|lush"


def write_manifest(path: Path, n_assets: int) -> None:
    """N/10 rows, each sweeping ``mood`` over 10 values."""
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["scene", "asset", "model", "prompt", "duration_s", "mood", "temperature", "loudness", "tags"])
        for i in range(n_assets // 10):
            model = "music" if i % 2 else "sfx"
            w.writerow([f"scene{i % 97}", f"asset{i}", model, f"{{mood}} cue number {i}", 2 + i % 3, MOODS,
                        "0.7|1.0" if i % 50 == 0 else "1.0", "ebu-r128", "bench"])  # fmt: skip


def write_index(db: Path, specs, fingerprints) -> None:
    """Index of the same size: keys of the current specs, 5 % changed, 5 % replaced by orphans."""
    plan = make_plan(specs, {}, fingerprints)
    con = sqlite3.connect(db)
    con.execute("create table assets (scene text, asset text, version int, content_key text)")
    rows = []
    for n, item in enumerate(plan.items):
        key, ident = item.key, item.spec.ident
        if n % 20 == 1:
            key = "0" * 64
        if n % 20 == 2:
            ident = f"gone/{n}"
        scene, asset = ident.split("/", 1)
        rows.append((scene, asset, 1, key))
    con.executemany("insert into assets values (?, ?, ?, ?)", rows)
    con.commit()
    con.close()


def latest_keys(db: Path) -> dict[str, str]:
    con = sqlite3.connect(db)
    out = {f"{s}/{a}": k for s, a, k in con.execute("select scene, asset, content_key from assets")}
    con.close()
    return out


def prepare(n_assets: int, tmp: Path) -> tuple[Path, Path, dict[str, str]]:
    manifest, db = tmp / f"m{n_assets}.csv", tmp / f"i{n_assets}.sqlite"
    write_manifest(manifest, n_assets)
    fingerprints = {"music": "f" * 64, "sfx": "e" * 64}
    write_index(db, load_manifests([manifest], max_assets=2 * n_assets), fingerprints)
    return manifest, db, fingerprints


def run(n_assets: int, manifest: Path, db: Path, fingerprints: dict[str, str]) -> dict:
    """One timed pass: load manifest, read the index's latest keys, plan, batch."""
    t0 = time.perf_counter()
    specs = load_manifests([manifest], max_assets=2 * n_assets)
    t1 = time.perf_counter()
    plan = make_plan(specs, latest_keys(db), fingerprints)
    batches = make_batches(plan.pending, 8)
    t2 = time.perf_counter()
    return {"load": t1 - t0, "plan": t2 - t1, "total": t2 - t0, "counts": plan.counts(), "batches": len(batches)}


def main(repeats: int = 3) -> None:
    """Sizes interleaved, best of ``repeats`` each: the machine is shared, so minima compare fairly."""
    sizes = (10_000, 100_000)
    with tempfile.TemporaryDirectory() as d:
        inputs = {n: prepare(n, Path(d)) for n in sizes}
        best: dict[int, dict] = {}
        for _ in range(repeats):
            for n in sizes:
                r = run(n, *inputs[n])
                if n not in best or r["total"] < best[n]["total"]:
                    best[n] = r
    for n in sizes:
        r = best[n]
        print(f"{n:>7} assets: load {r['load']:.2f} s + keys/diff/batches {r['plan']:.2f} s = {r['total']:.2f} s"
              f" ({r['total'] / n * 1e6:.0f} us/asset)  counts={r['counts']} batches={r['batches']}")  # fmt: skip
    ratio = best[100_000]["total"] / best[10_000]["total"]
    print(f"100k/10k time ratio: {ratio:.1f} (10.0 = linear); 100k within 5 s: {best[100_000]['total'] <= 5.0}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
