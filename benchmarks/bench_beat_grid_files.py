"""Bar loops without a BPM on music files: how far the beats after the loop's wrap land off the grid.

For each file (e.g. the public-domain recordings shipped in audiocraft's sdist, ``assets/bach.mp3`` and
``assets/bolero_ravel.mp3``), a 2-bar loop is cut by the previous method (librosa's global tempo, any
start) and by the beat grid (:func:`assetgen.dsp.loop.track_beats`). The loop is played twice; beats are
refined in the first play, a line is fitted through them and extrapolated into the second play: the
median distance of the second play's beats from that line is how far the wrap throws the music off its
own beat grid (0 = the loop is a whole number of beats).

Run: PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_beat_grid_files.py FILE...
"""

import sys

import numpy as np
import soundfile as sf

from assetgen.dsp.chain import loop_target
from assetgen.dsp.loop import bars_length, estimate_bpm, make_loop, track_beats
from assetgen.dsp.resample import resample
from assetgen.spec import PostParams

SR = 48000


def wrap_offset_ms(loop: np.ndarray, sr: int) -> tuple[float, int]:
    """Median distance (ms) of the second play's beats from the grid fitted over the first play."""
    twice = np.concatenate([loop, loop], axis=1)
    n = loop.shape[1]
    beats = track_beats(twice, sr).beats
    if beats.size < 8:
        return float("nan"), int(beats.size)
    first, second = beats[beats < n - 0.1 * sr], beats[beats >= n]
    p0 = float(np.median(np.diff(first)))
    idx = np.round((first - first[0]) / p0)
    p, phase = np.polyfit(idx, first, 1)
    k = np.round((second - phase) / p)
    return float(np.median(np.abs(second - phase - k * p)) / sr * 1000), int(beats.size)


def main(paths: list[str]) -> None:
    for path in paths:
        audio, sr = sf.read(path, dtype="float32", always_2d=True)
        x = resample(audio.T, sr, SR)
        bars, xf = 2, SR // 4
        old_bpm = estimate_bpm(x, SR)
        old = make_loop(x, SR, bars_length(bars, old_bpm, SR), xf)
        target = loop_target(PostParams(loop=True, bars=bars), x.shape[1] / SR, x, SR)
        new = make_loop(x, SR, target.length, xf, beats=target.beats)
        o, n = wrap_offset_ms(old.audio, SR), wrap_offset_ms(new.audio, SR)
        print(f"{path.split('/')[-1]}: global {old_bpm:.2f} BPM -> beats off by {o[0]:.1f} ms after the wrap; "
              f"beat grid {target.tempo_bpm:.2f} BPM ({target.tempo_source}) -> {n[0]:.1f} ms")


if __name__ == "__main__":
    main(sys.argv[1:])
