"""Planning at catalogue scale: validate + expand + plan + diff at 10k, 100k and 1M assets, each in its own process.

Each size N has two manifest shapes: ``sweep`` (N/10 CSV rows whose ``mood`` template sweep makes 10 assets
each, every 50th row also sweeping temperature) and ``flat`` (N CSV rows, one asset each). The index is a real
``index.sqlite`` (the store's schema) of N assets: the current keys, 5 % changed, 5 % replaced by orphans, and
5 % with an older version under the latest; it is bulk-inserted by a setup process before the timed one.
The timed process runs what ``assetgen plan`` runs (less the model resolution and the file checks):
``load_manifests`` (validate, expand), then ``render.with_max_attempts`` + ``render.read_index_state`` +
``make_plan`` + ``make_batches`` (plan+diff),
and prints each phase's wall time and the process's peak RSS (``ru_maxrss``), so the growth with N is visible.

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/bench_plan.py [sizes...]`` (default 10000 100000 1000000).
"""

from __future__ import annotations

import csv
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MOODS = "calm|tense|epic|sad|warm|cold|dark|bright|odd|lush"
FINGERPRINTS = {"music": "f" * 64, "sfx": "e" * 64}
SHAPES = ("sweep", "flat")
HEADER = ["scene", "asset", "model", "prompt", "duration_s", "mood", "temperature", "loudness", "tags"]


def write_manifest(path: Path, n_assets: int, shape: str) -> None:
    """``sweep``: N/10 rows, each sweeping ``mood`` over 10 values; ``flat``: N rows with one mood each."""
    moods = MOODS.split("|")
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for i in range(n_assets // 10 if shape == "sweep" else n_assets):
            model = "music" if i % 2 else "sfx"
            sweep = shape == "sweep"
            w.writerow([f"scene{i % 97}", f"asset{i}", model, f"{{mood}} cue number {i}", 2 + i % 3,
                        MOODS if sweep else moods[i % 10], "0.7|1.0" if sweep and i % 50 == 0 else "1.0",
                        "ebu-r128", "bench"])  # fmt: skip


def write_index(root: Path, manifest: Path, n_assets: int) -> None:
    """A real index of N latest versions, inserted in one transaction (the store adds them one by one)."""
    from assetgen.manifest import load_manifests
    from assetgen.plan import make_plan
    from assetgen.render import DEFAULT_MAX_ATTEMPTS, with_max_attempts
    from assetgen.store.schema import DB_NAME, migrate

    specs = with_max_attempts(load_manifests([manifest], max_assets=2 * n_assets), DEFAULT_MAX_ATTEMPTS)
    items = make_plan(specs, {}, FINGERPRINTS).items
    rows = []
    for n, item in enumerate(items):
        key, (scene, asset) = item.key, item.spec.ident.split("/", 1)
        if n % 20 == 1:
            key = "0" * 64  # changed
        if n % 20 == 2:
            scene, asset = "gone", f"a{n}"  # orphaned
        version = 2 if n % 20 == 3 else 1
        if version == 2:  # an older version below the latest
            rows.append((scene, asset, 1, f"{scene}/{asset}_v1.wav", "1" * 64, "2" * 64))
        rows.append((scene, asset, version, f"{scene}/{asset}_v{version}.wav", key, "2" * 64))
    root.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(root / DB_NAME, isolation_level=None)
    con.execute("BEGIN IMMEDIATE")
    migrate(con, root / DB_NAME)
    con.executemany("INSERT INTO assets (scene, asset, version, path, content_key, sha256, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, '2026-01-01T00:00:00.000Z')", rows)
    con.execute("COMMIT")
    con.close()


def measure(manifest: Path, root: Path, n_assets: int) -> dict:
    """One timed pass in this (fresh) process: phases' wall times (s) and the peak RSS (MB)."""
    from assetgen.manifest import load_manifests
    from assetgen.plan import make_batches, make_plan
    from assetgen.render import DEFAULT_MAX_ATTEMPTS, read_index_state, with_max_attempts

    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    timings: dict[str, float] = {}
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    try:
        specs = load_manifests([manifest], max_assets=2 * n_assets, timings=timings)
    except TypeError:  # a load_manifests without phase timings: validate and expand as one figure
        specs = load_manifests([manifest], max_assets=2 * n_assets)
    t1 = time.perf_counter()
    specs = with_max_attempts(specs, DEFAULT_MAX_ATTEMPTS)  # as render.prepare does before keying
    keys, damaged = read_index_state(root)
    plan = make_plan(specs, keys, FINGERPRINTS, damaged)
    batches = make_batches(plan.pending, 8)
    t2 = time.perf_counter()
    return {"validate": timings.get("validate"), "expand": timings.get("expand"), "load": t1 - t0,
            "plan": t2 - t1, "total": t2 - t0, "cpu": time.process_time() - cpu0, "rss_start_mb": rss_start,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "assets": len(specs),
            "counts": plan.counts(), "batches": len(batches)}


def _child(args: list[str]) -> None:
    what, n, shape, folder = args[0], int(args[1]), args[2], Path(args[3])
    manifest, root = folder / f"{shape}{n}.csv", folder / f"root-{shape}{n}"
    if what == "setup":
        write_manifest(manifest, n, shape)
        write_index(root, manifest, n)
    else:
        print(json.dumps(measure(manifest, root, n)))


def _run(what: str, n: int, shape: str, folder: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, __file__, "--child", what, str(n), shape, str(folder)], env=env,
                          check=True, capture_output=True, text=True)
    return done.stdout


def main(sizes: list[int]) -> None:
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1/5/15 min)")
    print("wall seconds per phase; cpu: the process's CPU seconds for all phases (the machine may be shared)")
    print(f"{'shape':>5} {'assets':>9} {'validate':>9} {'expand':>8} {'plan+diff':>10} {'total':>8} {'cpu':>7}"
          f" {'peak RSS':>9} {'us/asset':>9}  counts")
    with tempfile.TemporaryDirectory() as d:
        for shape in SHAPES:
            for n in sizes:
                _run("setup", n, shape, Path(d))
                r = json.loads(_run("measure", n, shape, Path(d)))
                fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
                validate, expand = (fmt(r["validate"]), fmt(r["expand"])) if r["validate"] is not None else \
                    (f"{r['load']:.2f}*", "*")  # fmt: skip
                print(f"{shape:>5} {r['assets']:>9} {validate:>9} {expand:>8} {r['plan']:>10.2f} {r['total']:>8.2f}"
                      f" {r['cpu']:>7.2f} {r['rss_mb']:>7.0f}MB {r['total'] / r['assets'] * 1e6:>9.1f}"
                      f"  {r['counts']}")  # fmt: skip
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1/5/15 min)")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _child(sys.argv[2:])
    else:
        main([int(a) for a in sys.argv[1:]] or [10_000, 100_000, 1_000_000])
