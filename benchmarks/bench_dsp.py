"""Delivery DSP benchmark: ratios measured side by side in one run, pinned to one thread.

1. whole chain delivering 60 s of 48 kHz stereo from music-like audio *generated at 32 kHz* (so soxr
   32k->48k is included): resample + channels + loop cut (exact 30 bars at 120 BPM) + seam score +
   DC-blocking high-pass + loudness + true peak + limiter + 24-bit WAV (assetgen's writer: samples, smpl loop, bext/iXML
   provenance, sha256) written to a temp dir -> x realtime per core, and what each stage costs on its
   own. From a 32 kHz stereo source (musicgen-stereo), a 32 kHz mono one (every other MusicGen model;
   delivered as dual-mono stereo), 48 kHz stereo (the chain without a rate change) and the 32 kHz stereo
   source delivered at -9 LUFS, where the true-peak limiter takes >= 6 dB off the peaks;
2. our BS.1770-4 loudness vs pyloudnorm's on the same 48 kHz audio: time ratio and difference in LU;
3. our vectorised equal-power crossfade vs the seed tutorial's per-sample Python loop: time ratio.

Run: .venv/bin/python benchmarks/bench_dsp.py
"""

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[var] = "1"

import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pyloudnorm  # noqa: E402

from assetgen.dsp.chain import process_clip  # noqa: E402
from assetgen.dsp.loop import make_loop  # noqa: E402
from assetgen.dsp.loudness import highpass, integrated_loudness, normalize  # noqa: E402
from assetgen.dsp.resample import resample  # noqa: E402
from assetgen.dsp.transitions import crossfade_concat  # noqa: E402
from assetgen.spec import PostParams  # noqa: E402
from assetgen.store.wav import wav_bytes  # noqa: E402


def music(sr: int, seconds: float, bpm: float = 120.0, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(round(sr * seconds)) / sr
    beat, eighth = (t * bpm / 60) % 1, (t * bpm / 30) % 1
    kick = 0.7 * np.minimum(1, beat * 60 / bpm / 0.003) * np.exp(-beat * 25) * np.sin(2 * np.pi * 55 * t)
    hats = 0.15 * np.exp(-eighth * 80) * rng.standard_normal(t.size)
    pad = sum(0.08 * np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6))
    return np.stack([kick + hats + pad, kick + 0.8 * hats + 0.9 * pad]).astype(np.float32)


def best_of(fn, repeat: int = 3) -> float:
    """Best CPU time (s) of ``repeat`` calls: this process's CPU time, so other work on the machine does not
    count (the BLAS/OpenMP pools are pinned to one thread above, so CPU time is time on one core)."""
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return min(times)


def seed_crossfade(a1: np.ndarray, a2: np.ndarray, fade_samples: int) -> np.ndarray:
    """The seed tutorial's crossfade (per-sample Python loop, linear weights), minus torch."""
    total = a1.shape[0] + a2.shape[0] - fade_samples
    result = np.zeros(total)
    result[: a1.shape[0] - fade_samples] = a1[: a1.shape[0] - fade_samples]
    for i in range(fade_samples):
        w1, w2 = 1.0 - (i / fade_samples), i / fade_samples
        idx = a1.shape[0] - fade_samples + i
        result[idx] = a1[a1.shape[0] - fade_samples + i] * w1 + a2[i] * w2
    result[a1.shape[0] :] = a2[fade_samples:]
    return result


def main() -> None:
    seconds = 60.0
    post = PostParams(loop=True, bpm=120.0, bars=30, crossfade_s=0.5)  # 30 bars at 120 BPM = 60 s
    src32 = music(32000, seconds + post.crossfade_s)
    with tempfile.TemporaryDirectory() as tmp:
        def write(out):
            (Path(tmp) / "loop.wav").write_bytes(wav_bytes(
                out.audio, out.sample_rate, 24, loop=(out.loop_start, out.loop_end), description="bench",
                provenance={"content_key": "bench"}, lufs=out.lufs, true_peak_dbtp=out.true_peak_dbtp))

        src48 = resample(src32, 32000, 48000)
        loud = PostParams(loop=True, bpm=120.0, bars=30, crossfade_s=0.5, loudness_lufs=-9.0)  # limiter >= 6 dB
        for label, src, sr_src, p in (("32 kHz stereo source", src32, 32000, post),
                                      ("32 kHz mono source", src32[:1], 32000, post),
                                      ("48 kHz stereo source (no rate change)", src48, 48000, post),
                                      ("32 kHz stereo source at -9 LUFS (limiter engaged)", src32, 32000, loud)):
            def chain(src=src, sr_src=sr_src, post=p):
                out = process_clip(src, sr_src, post, seconds)
                write(out)
                return out

            chain()  # warm-up (imports, filter design caches)
            t_chain = best_of(chain, repeat=7)
            out = chain()
            x48 = resample(src, sr_src, 48000)
            n = round(seconds * 48000)
            lp = make_loop(x48, 48000, n, round(post.crossfade_s * 48000))
            copies = 2 if src.shape[0] == 1 else 1
            stages = {
                "resample to 48k": best_of(lambda: resample(src, sr_src, 48000)),
                "loop search + crossfade + seam score": best_of(lambda: make_loop(x48, 48000, n, lp.crossfade)),
                "high-pass": best_of(lambda: highpass(lp.audio, 48000, p.highpass_hz, cyclic=True)),
                "loudness + true peak + limiter + gain": best_of(lambda: normalize(
                    lp.audio, 48000, p.loudness_lufs, p.true_peak_db, cyclic=True, copies=copies)),
                "24-bit stereo WAV write": best_of(lambda: write(out)),
            }
            print(f"chain, 60 s of 48 kHz stereo from a {label} (resample+loop+loudness+true peak+"
                  f"ceiling+24-bit WAV write): {t_chain * 1000:.0f} ms = {seconds / t_chain:.0f}x realtime "
                  f"per core (target >= 300x)")
            print(f"  stages on their own: {', '.join(f'{k} {v * 1000:.0f} ms' for k, v in stages.items())}")
            limited = [n for n in out.notes if n.startswith("limited")]
            print(f"  delivered {out.audio.shape}, {out.lufs:.2f} LUFS, {out.true_peak_dbtp:.2f} dBTP, "
                  f"seam score {out.seam_score:.3f}, {out.status}{'; ' + limited[0] if limited else ''}")

    x48 = resample(src32, 32000, 48000)[:, : int(seconds * 48000)]
    meter = pyloudnorm.Meter(48000)
    ours = integrated_loudness(x48, 48000)[0]
    theirs = meter.integrated_loudness(x48.T.astype(np.float64))
    t_ours = best_of(lambda: integrated_loudness(x48, 48000))
    t_theirs = best_of(lambda: meter.integrated_loudness(x48.T.astype(np.float64)))
    print(f"loudness 60 s stereo 48 kHz: ours {t_ours * 1000:.0f} ms vs pyloudnorm {t_theirs * 1000:.0f} ms "
          f"-> {t_theirs / t_ours:.1f}x faster; difference {abs(ours - theirs):.4f} LU")

    sr, fade = 32000, 3 * 32000  # the seed's 3 s transition at MusicGen's rate, mono like the seed
    a, b = music(sr, 10.0)[0], music(sr, 10.0, seed=2)[0]
    t_seed = best_of(lambda: seed_crossfade(a, b, fade), repeat=1)
    t_vec = best_of(lambda: crossfade_concat([a, b], sr, fade / sr))
    print(f"crossfade 3 s at 32 kHz: seed loop {t_seed * 1000:.0f} ms vs vectorised {t_vec * 1000:.2f} ms "
          f"-> {t_seed / t_vec:.0f}x")


if __name__ == "__main__":
    main()
