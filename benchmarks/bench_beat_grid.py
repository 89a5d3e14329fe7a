"""Bar loops without a BPM: loop length / start error against the true beat grid, global tempo vs beat grid.

Synthetic songs (tests/test_dsp_beats.song: jittered kick, off-beat hats, melody, pad, noise) at non-round
tempi; 2-bar loops. "global": librosa's global tempo -> bars length, start where the seam search puts it
(the previous method); "grid": the delivered loop of ``process_clip`` with ``bars`` and no ``bpm``.

Run: .venv/bin/python benchmarks/bench_beat_grid.py
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the synthetic songs live in the tests package

from assetgen.dsp.chain import process_clip
from assetgen.dsp.loop import bars_length, estimate_bpm, make_loop
from assetgen.spec import PostParams
from tests.test_dsp_beats import SR, _delivered_start, grid_error_ms, song


def main() -> None:
    print("errors against the true grid (ms): length = distance from a whole number of true beats, "
          "start = delivered sample 0 from the nearest true beat")
    print(" tempo | global: bpm  length  start | grid: bpm  length  start | chain time | tempo_source")
    for bpm in (84.1, 97.3, 111.6, 123.7, 141.9, 158.3):
        seconds = 2 * 4 * 60 / bpm + 1.0
        x, beats = song(SR, seconds, bpm, seed=int(bpm))
        g_bpm = estimate_bpm(x, SR)
        old = make_loop(x, SR, bars_length(2, g_bpm, SR), SR // 4)
        old_len, old_start = grid_error_ms(old.length, old.source_start, beats, bpm)
        post = PostParams(loop=True, bars=2, crossfade_s=0.25)
        process_clip(x, SR, post, seconds - 0.25)  # warm-up (librosa import, numba)
        t0 = time.perf_counter()
        out = process_clip(x, SR, post, seconds - 0.25)
        dt = time.perf_counter() - t0
        new_len, new_start = grid_error_ms(out.audio.shape[1], _delivered_start(x, out.audio), beats, bpm)
        print(f"{bpm:6.1f} | {g_bpm:10.2f} {old_len:7.1f} {old_start:6.1f} | {out.tempo_bpm:9.2f} {new_len:7.1f} "
              f"{new_start:6.1f} | {dt * 1000:7.0f} ms | {out.tempo_source}")


if __name__ == "__main__":
    main()
