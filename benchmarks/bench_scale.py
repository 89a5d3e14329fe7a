"""Scale benchmark: renders of many one-second assets on the tiny models, local and on a 2-worker Dask LocalCluster.

For each runner and size, a fresh output root is rendered by `assetgen render` (``runtime.run_render``, as the
CLI runs it) in its own subprocess, so the peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``: the flow
process only, not the Prefect server, DSP process or Dask workers) is that run's. Printed per run: wall time,
assets per second, the flow's peak RSS, and the ratio of each size's peak RSS to the smallest size's (target: at
most 1.5 at 5 000 vs 500). Then, in one more subprocess over the largest local root: the no-change re-run against
an empty flow run timed in the same process (target: at most 5 s more), after one re-run that hashed the files.

``--trace N`` runs tracemalloc in each render's flow process and prints the N allocation sites holding the most
memory at the run's end (slow: for finding what grows with the number of assets, not for timing).

Usage: .venv/bin/python benchmarks/bench_scale.py [--sizes 500,2000,5000] [--runners local,dask]
       [--model-dir models/tiny] [--batch-size 8] [--workers 2] [--trace 0]
Quick try: .venv/bin/python benchmarks/bench_scale.py --sizes 50,200
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
sys.path.insert(0, str(REPO))


def write_manifest(path: Path, n: int) -> Path:
    """``n`` one-second sfx rows, each its own prompt (so its own asset and seed)."""
    rows = ["scene,asset,model,prompt,duration_s,loudness,channels"]
    rows += [f"scale,clip{i:05d},sfx,texture number {i} with soft noise,1,ebu-r128,1" for i in range(n)]
    path.write_text("\n".join(rows) + "\n")
    return path


def peak_rss_mib() -> float:
    """This process's peak resident set size in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_render(args: argparse.Namespace) -> dict:
    """One render into a fresh root (this process is the flow process)."""
    from assetgen.runtime import run_render

    if args.trace:
        import tracemalloc

        tracemalloc.start(8)
    manifest = write_manifest(Path(args.out).parent / f"{Path(args.out).name}.csv", args.size)
    t0 = time.perf_counter()
    state = run_render([manifest], args.out, model_dir=args.model_dir, batch_size=args.batch_size,
                       runner=args.runner, workers=args.workers, fail_on="never")
    seconds = time.perf_counter() - t0
    summary = state.result(raise_on_failure=False)
    landed = sum(1 for _ in Path(args.out).rglob("clip*_v001.wav"))
    out = {"runner": args.runner, "size": args.size, "seconds": seconds, "landed": landed,
           "failed": len(summary["failed"]) if isinstance(summary, dict) else None, "peak_rss_mib": peak_rss_mib()}
    if args.trace:
        import tracemalloc

        snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        out["traced_mib"] = tracemalloc.get_traced_memory()[0] / 2**20
        out["top"] = [f"{s.size / 2**20:7.2f} MiB {s.count:8d} blocks  {s.traceback.format()[-1].strip()}"
                      for s in snap.statistics("traceback")[:args.trace]]
    return out


def child_noop(args: argparse.Namespace) -> dict:
    """The no-change re-run over an already rendered root, against an empty flow run in the same process."""
    import statistics

    from prefect import flow

    from assetgen.runtime import ephemeral_run_settings, prefect_env, run_render
    from assetgen.store.store import RACY_NS

    manifest = Path(args.out).parent / f"{Path(args.out).name}.csv"
    prefect_env(args.out)

    @flow(name="bench-empty")
    def empty_flow():
        return None

    def timed(fn) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    def noop() -> float:
        return timed(lambda: run_render([manifest], args.out, model_dir=args.model_dir, batch_size=args.batch_size,
                                        fail_on="never"))

    t_first = noop()  # reads every file's hash once, as the first night after they were written does
    time.sleep(RACY_NS / 1e9)
    with ephemeral_run_settings():
        empty_flow()
        t_empty = statistics.median(timed(empty_flow) for _ in range(3))
    t_noop = statistics.median(noop() for _ in range(3))
    return {"size": args.size, "empty_s": t_empty, "noop_s": t_noop, "first_noop_s": t_first}


def spawn(mode: str, args: argparse.Namespace, runner: str, size: int, out: Path, env: dict) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--runner", runner, "--size", str(size), "--out", str(out),
           "--model-dir", str(args.model_dir), "--batch-size", str(args.batch_size), "--workers", str(args.workers),
           "--trace", str(args.trace)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{mode} {runner} {size} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="500,2000,5000", help="comma-separated asset counts")
    ap.add_argument("--runners", default="local,dask")
    ap.add_argument("--model-dir", default=str(REPO / "models" / "tiny"))
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--trace", type=int, default=0, help="print the N largest allocation sites of each render")
    ap.add_argument("--no-noop", action="store_true", help="skip the no-change re-run")
    ap.add_argument("--child", choices=("render", "noop"), help=argparse.SUPPRESS)
    ap.add_argument("--runner", default="local", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child_render(args) if args.child == "render" else child_noop(args)), flush=True)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    runners = args.runners.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    env = {**os.environ, "ASSETGEN_PREFECT_HOME": str(tmp / "prefect"), "PYTHONPATH": str(REPO)}
    print(f"{os.cpu_count()} cores; tiny models at {args.model_dir}; batch size {args.batch_size}; "
          f"{args.workers} Dask workers; roots under {tmp}")
    results = []
    for runner in runners:
        for size in sizes:
            r = spawn("render", args, runner, size, tmp / f"{runner}-{size}", env)
            results.append(r)
            base = next(x for x in results if x["runner"] == runner)
            print(f"  {runner:5s} {size:6d} assets: {r['seconds']:8.1f} s  {size / r['seconds']:6.2f} assets/s  "
                  f"peak RSS {r['peak_rss_mib']:7.1f} MiB  ({r['peak_rss_mib'] / base['peak_rss_mib']:.2f}x "
                  f"{base['size']}'s)  landed {r['landed']}, failed {r['failed']}", flush=True)
            for line in r.get("top", []):
                print("      " + line)
    print("\n| runner | assets | seconds | assets/s | flow peak RSS (MiB) | vs smallest |")
    print("|---|---|---|---|---|---|")
    for r in results:
        base = next(x for x in results if x["runner"] == r["runner"])
        print(f"| {r['runner']} | {r['size']} | {r['seconds']:.1f} | {r['size'] / r['seconds']:.2f} | "
              f"{r['peak_rss_mib']:.0f} | {r['peak_rss_mib'] / base['peak_rss_mib']:.2f}x |")
    if not args.no_noop and "local" in runners:
        n = max(sizes)
        r = spawn("noop", args, "local", n, tmp / f"local-{n}", env)
        print(f"\nno-change re-run over {n} assets: {r['noop_s']:.2f} s vs empty flow {r['empty_s']:.2f} s -> "
              f"+{r['noop_s'] - r['empty_s']:.2f} s (target <= 5 s); the first re-run (hashes every file): "
              f"{r['first_noop_s']:.2f} s")


if __name__ == "__main__":
    main()
