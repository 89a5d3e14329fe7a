"""Bar loops without a BPM: loop length / start error against the true beat grid, global tempo vs beat grid.

Synthetic songs (tests/test_dsp_beats.song: jittered kick, off-beat hats, melody, pad, noise) at non-round
tempi; 2-bar loops. "global": librosa's global tempo -> bars length (the previous method); "grid": the
fitted beat grid of :func:`assetgen.dsp.loop.track_beats` (length) and the delivered loop's first sample.

Run: PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_beat_grid.py
"""

import time

from assetgen.dsp.chain import loop_target
from assetgen.dsp.loop import bars_length, estimate_bpm
from assetgen.spec import PostParams
from tests.test_dsp_beats import SR, grid_error_ms, song


def main() -> None:
    print("tempo   global: bpm   length err   grid: bpm   length err  start err  tracking time  source")
    for bpm in (84.1, 97.3, 111.6, 123.7, 141.9, 158.3):
        seconds = 2 * 4 * 60 / bpm + 1.0
        x, beats = song(SR, seconds, bpm, seed=int(bpm))
        g_bpm = estimate_bpm(x, SR)
        old_err = grid_error_ms(bars_length(2, g_bpm, SR), 0.0, beats, bpm)[0]
        t0 = time.perf_counter()
        target = loop_target(PostParams(loop=True, bars=2), seconds, x, SR)
        dt = time.perf_counter() - t0
        start = float(target.beats[0]) if target.beats is not None else 0.0
        new_len, new_start = grid_error_ms(target.length, start, beats, bpm)
        print(f"{bpm:6.1f}  {g_bpm:11.2f} {old_err:9.1f} ms {target.tempo_bpm:10.2f} {new_len:9.1f} ms "
              f"{new_start:7.1f} ms {dt * 1000:10.0f} ms  {target.tempo_source}")


if __name__ == "__main__":
    main()
