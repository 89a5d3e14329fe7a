"""Time to first take: the lab with a warm model vs `assetgen render` of the same one-row manifest.

Side by side in one run, on tiny placeholder checkpoints written to a temp dir:

  (a) lab: a real ``assetgen lab`` server (uvicorn on 127.0.0.1, model warmed at start) answering
      ``POST /api/takes`` for the row's settings; wall time measured at the HTTP client, per take;
  (b) render: ``assetgen render ROW.csv`` in a fresh process into a fresh output root (imports, Prefect start,
      model load, generation, post-processing, store), wall time per run.

Reports the median of each, their ratio, and the lab's overhead: a take's wall time minus the generation and
post-processing time the server measured for it (target: at most ``TARGET_OVERHEAD_S``). Checks that the render
delivered the lab take's samples (same data-chunk sha256).

Run: ``.venv/bin/python benchmarks/bench_lab.py [--takes N] [--renders N] [--duration S]``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

TARGET_OVERHEAD_S = 0.3
ROW = {"model": "music", "prompt": "warm felt piano over soft strings", "temperature": 1.0, "seed": 4242}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.loads(response.read())


def render_once(manifest: Path, out: Path, models: Path) -> tuple[float, str]:
    """Wall time (s) of ``assetgen render`` in a new process, and the delivered file's data sha256."""
    from assetgen.store.index import Index
    from assetgen.store.wav import read_provenance

    code = "from assetgen.cli import main; main()"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, "render", str(manifest), "--out", str(out), "--model-dir",
                    str(models), "--no-progress"], check=True, capture_output=True, env=dict(os.environ))
    wall = time.perf_counter() - t0
    [row] = Index(out).rows()
    return wall, read_provenance(out / row["path"])["audio_sha256"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--takes", type=int, default=5, help="lab takes timed (after one untimed take)")
    parser.add_argument("--renders", type=int, default=2, help="renders timed")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds of audio per take")
    args = parser.parse_args()

    import uvicorn

    from assetgen.lab.engine import Lab
    from assetgen.lab.rows import clip_row, csv_text, header_for
    from assetgen.lab.server import create_app
    from assetgen.models.tiny import make_tiny

    body = {**ROW, "duration_s": args.duration}
    with tempfile.TemporaryDirectory(prefix="bench-lab-") as tmp:
        tmp = Path(tmp)
        make_tiny(tmp / "models")
        manifest = tmp / "row.csv"
        row = clip_row(body, "bench", "take")
        manifest.write_text(",".join(header_for([row])) + "\n" + csv_text(header_for([row]), [row]))

        t0 = time.perf_counter()
        lab = Lab(tmp / "lab", model_dir=tmp / "models", device="cpu", manifest_root=tmp)
        lab.warm(["music"])
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(lab, port=port), host="127.0.0.1", port=port,
                                               log_level="error"))
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.02)
        print(f"lab start (imports done, model warmed, DSP process up): {time.perf_counter() - t0:.1f} s")
        url = f"http://127.0.0.1:{port}/api/takes"
        first = post(url, body)  # untimed: the DSP process imports its stack on its first job
        walls, overheads, gens, posts = [], [], [], []
        for _ in range(args.takes):
            t0 = time.perf_counter()
            take = post(url, body)
            wall = time.perf_counter() - t0
            gen, pp = take["timings"]["generate"], take["timings"]["postprocess"]
            walls.append(wall)
            gens.append(gen)
            posts.append(pp)
            overheads.append(wall - gen - pp)
        server.should_exit = True
        lab.close()

        renders, shas = [], []
        for i in range(args.renders):
            wall, sha = render_once(manifest, tmp / f"render{i}", tmp / "models")
            renders.append(wall)
            shas.append(sha)

    lab_wall, render_wall = statistics.median(walls), statistics.median(renders)
    overhead = statistics.median(overheads)
    print(f"\none-row manifest: music, {args.duration:g} s, tiny placeholder model, CPU")
    print(f"{'path':<52}{'median s':>10}{'runs':>6}")
    print(f"{'(a) lab POST /api/takes, warm model':<52}{lab_wall:>10.3f}{len(walls):>6}")
    print(f"{'    of which generation':<52}{statistics.median(gens):>10.3f}")
    print(f"{'    of which post-processing':<52}{statistics.median(posts):>10.3f}")
    print(f"{'(b) assetgen render (new process)':<52}{render_wall:>10.3f}{len(renders):>6}")
    print(f"\nrender / lab: {render_wall / lab_wall:.1f}x")
    ok = overhead <= TARGET_OVERHEAD_S
    print(f"lab overhead beyond generation + post-processing: median {overhead:.3f} s, max {max(overheads):.3f} s "
          f"(target <= {TARGET_OVERHEAD_S} s)  {'OK' if ok else 'MISSED'}")
    same = all(s == first["audio_sha256"] for s in shas)
    print(f"render delivered the lab take's samples: {'yes' if same else 'NO'}")
    return 0 if ok and same else 1


if __name__ == "__main__":
    sys.exit(main())
