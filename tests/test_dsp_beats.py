"""Beat-grid loops on synthetic music with known beat times, and exact second-based loop lengths."""

import numpy as np
import pytest

from assetgen.dsp.chain import loop_target, process_clip, process_mix
from assetgen.dsp.loop import bars_length, estimate_bpm, make_loop, seam_score, track_beats
from assetgen.spec import PostParams

from tests.test_dsp_signals import noise, sine

SR = 48000


def song(sr: int, seconds: float, bpm: float, seed: int = 0, jitter_s: float = 0.002, lead_s: float = 0.21):
    """Kick on every beat (jittered by up to ``jitter_s``), hats on eighths, a pitched melody, a pad and
    noise; the first beat is ``lead_s`` in. Returns (stereo audio, true beat times in seconds)."""
    rng = np.random.default_rng(seed)
    n = round(sr * seconds)
    t = np.arange(n) / sr
    period = 60.0 / bpm
    beats = lead_s + period * np.arange(int((seconds - lead_s) / period) + 1)
    beats = beats + rng.uniform(-jitter_s, jitter_s, beats.size)
    y = np.zeros(n)
    k = np.arange(round(0.25 * sr)) / sr
    kick = np.minimum(1.0, k / 0.003) * np.exp(-k * 18) * np.sin(2 * np.pi * (50 + 90 * np.exp(-k * 40)) * k)
    hat = np.exp(-k * 90) * rng.standard_normal(k.size) * 0.15
    for b in beats:
        for start, sound in ((b, 0.8 * kick), (b + period / 2, hat)):
            i = round(start * sr)
            m = min(sound.size, n - i)
            if m > 0:
                y[i : i + m] += sound[:m]
    notes = rng.choice([261.6, 293.7, 329.6, 392.0, 440.0], size=beats.size)  # a note per beat, legato
    freq = notes[np.clip(np.searchsorted(beats, t) - 1, 0, beats.size - 1)]
    melody = 0.12 * np.sin(2 * np.pi * np.cumsum(freq) / sr)
    pad = sum(0.05 * np.sin(2 * np.pi * f * t) for f in (130.8, 164.8, 196.0))
    y = y + melody + pad + 0.02 * rng.standard_normal(n)
    return np.stack([y, 0.9 * y]).astype(np.float32), beats


def grid_error_ms(length: int, start: float, beats: np.ndarray, bpm: float, sr: int = SR) -> tuple[float, float]:
    """(distance of ``length`` from a whole number of true beat periods, distance of ``start`` from the
    nearest true beat), both in ms."""
    period = 60.0 / bpm * sr
    n_beats = round(length / period)
    return abs(length - n_beats * period) / sr * 1000, np.min(np.abs(beats * sr - start)) / sr * 1000


TEMPI = [97.3, 123.7, 84.1, 141.9]


@pytest.mark.parametrize("bpm", TEMPI)
def test_bar_loop_without_bpm_lands_on_the_beat_grid(bpm):
    bars = 2
    seconds = bars * 4 * 60 / bpm + 1.0
    x, beats = song(SR, seconds, bpm, seed=int(bpm))
    out = process_clip(x, SR, PostParams(loop=True, bars=bars, channels=2, crossfade_s=0.25), seconds - 0.25)
    n = out.loop_end - out.loop_start
    assert n == out.audio.shape[1]
    # the delivered loop is 8 true beats within 5 ms, and its first sample is a true beat within 5 ms
    grid = track_beats(x, SR)
    target = loop_target(PostParams(loop=True, bars=bars), seconds, x, SR)
    assert target.length == n
    length_err, _ = grid_error_ms(n, 0.0, beats, bpm)
    assert round(n / (60 / bpm * SR)) == bars * 4 and length_err <= 5.0
    start = _delivered_start(x, out.audio)
    assert grid_error_ms(n, start, beats, bpm)[1] <= 5.0
    assert out.tempo_bpm == pytest.approx(grid.bpm) and out.tempo_bpm == pytest.approx(bpm, rel=0.002)
    assert out.tempo_source.startswith("beat-tracked:") and "fit residual" in out.tempo_source
    assert out.seam_score < 1.0
    assert any(f"{out.tempo_bpm:.2f} BPM" in note for note in out.notes)
    # the old method (librosa's global tempo) on the same clip is coarser than the fitted period
    old = bars_length(bars, estimate_bpm(x, SR), SR)
    assert grid_error_ms(old, 0.0, beats, bpm)[0] > length_err


def _delivered_start(source: np.ndarray, loop: np.ndarray) -> float:
    """Source sample where the delivered loop starts, found by matching 50 ms of its body in the source
    (loudness normalisation only scales it)."""
    probe = loop[0, 10_000:12_400]
    src = source[0]
    corr = np.correlate(src[: src.size - 2400], probe, mode="valid")
    energy = np.convolve(src**2, np.ones(2400), mode="valid")[: corr.size]
    return float(np.argmax(corr / np.sqrt(energy + 1e-12)) - 10_000)


def test_given_bpm_starts_on_a_detected_beat():
    bpm = 97.3
    x, beats = song(SR, 6.0, bpm, seed=3, lead_s=0.37)
    out = process_clip(x, SR, PostParams(loop=True, bpm=bpm, bars=2, crossfade_s=0.25), 5.0)
    assert out.audio.shape[1] == bars_length(2, bpm, SR)
    assert (out.tempo_bpm, out.tempo_source) == (bpm, "given")
    assert grid_error_ms(out.audio.shape[1], _delivered_start(x, out.audio), beats, bpm)[1] <= 5.0
    assert any("start on a tracked beat" in note for note in out.notes)


@pytest.mark.parametrize("kind", ["noise", "ambience"])
def test_no_steady_beat_falls_back_to_the_global_estimate(kind):
    x = noise(SR, 6.0, seed=11)
    if kind == "ambience":  # a pad over a noise bed: no attacks at all
        x = x * np.float32(0.5) + sine(SR, 6.0, freq=220.0, amp=0.2)
    grid = track_beats(x, SR)
    assert not grid.tracked and grid.source.startswith("global tempo estimate") and "salience" in grid.source
    out = process_clip(x, SR, PostParams(loop=True, bars=1, crossfade_s=0.25), 5.0)
    assert out.tempo_source.startswith("global tempo estimate") and out.tempo_bpm == pytest.approx(grid.bpm)
    assert out.audio.shape[1] == round(4 * 60 / grid.bpm * SR)


def test_silent_bar_loop_is_delivered_with_its_status():
    out = process_clip(np.zeros((1, 5 * SR), np.float32), SR, PostParams(loop=True, bars=1), 4.0)
    assert out.status == "silent" and out.tempo_source.startswith("global tempo estimate")
    assert out.audio.shape[1] == round(4 * 60 / out.tempo_bpm * SR)


@pytest.mark.parametrize("sr", [48000, 44100, 32000])
@pytest.mark.parametrize("seconds", [1.0, 2.37, 4.0])
def test_second_based_loops_are_exact(sr, seconds):
    x = noise(sr, seconds + 0.5, seed=5) + np.float32(0.3) * np.sin(2 * np.pi * 311.1 * np.arange(
        round(sr * (seconds + 0.5))) / sr).astype(np.float32)
    post = PostParams(loop=True, sample_rate=sr, crossfade_s=0.5)
    out = process_clip(x, sr, post, seconds)
    assert out.loop_end - out.loop_start == round(seconds * sr) == out.audio.shape[1]
    assert out.seam_score < 1.0 and out.tempo_bpm is None


def test_second_based_loop_tolerance_is_honoured():
    sr, seconds, tol = 48000, 3.0, 0.02
    x = noise(sr, seconds + 0.5, seed=6) * np.float32(0.2) + np.sin(
        2 * np.pi * 441.3 * np.arange(round(sr * (seconds + 0.5))) / sr).astype(np.float32) * np.float32(0.4)
    out = process_clip(x, sr, PostParams(loop=True, loop_tolerance_s=tol, crossfade_s=0.5), seconds)
    n = out.loop_end - out.loop_start
    assert abs(n - round(seconds * sr)) <= round(tol * sr)
    assert out.seam_score < 1.0


def test_loop_scene_is_exact_and_carries_the_tempo():
    sr = 48000
    a = noise(sr, 3.7, seed=1)  # a 3.7 s loop layer: no multiple of it is 8 s
    out = process_mix([(a, sr, PostParams(loop=True))], PostParams(loop=True, crossfade_s=0.25), 8.0)
    assert out.loop_end - out.loop_start == 8 * sr == out.audio.shape[1]
    bar = process_mix([(a, sr, PostParams(loop=True))], PostParams(loop=True, bpm=100.0, bars=2), 4.8)
    assert bar.audio.shape[1] == bars_length(2, 100.0, sr)
    assert (bar.tempo_bpm, bar.tempo_source) == (100.0, "given")


def test_bar_loop_scene_without_bpm_takes_the_first_layers_grid():
    bpm = 111.6
    x, beats = song(SR, 2 * 4 * 60 / bpm + 0.5, bpm, seed=4)
    layer = process_clip(x, SR, PostParams(loop=True, bars=2, crossfade_s=0.25), 4.0)
    out = process_mix([(layer.audio, SR, PostParams(loop=True))], PostParams(loop=True, bars=2), 4.0)
    assert out.tempo_source.startswith("beat-tracked:") and out.tempo_bpm == pytest.approx(bpm, rel=0.002)
    # the scene is the layer's whole-beat length, exactly: it loops without a crossfade
    assert out.audio.shape[1] == layer.audio.shape[1] and out.seam_score < 1.0
    assert grid_error_ms(out.audio.shape[1], 0.0, beats, bpm)[0] <= 5.0


def test_beat_alignment_only_rotates_the_loop():
    bpm = 97.3
    x, beats = song(SR, 6.0, bpm, seed=9)
    n = bars_length(2, bpm, SR)
    plain = make_loop(x, SR, n, SR // 4)
    aligned = make_loop(x, SR, n, SR // 4, beats=beats * SR)
    # same cut, delivered from the first beat after the crossfade: a rotation of the same cyclic signal
    assert aligned.source_start == plain.source_start and aligned.rotation > 0
    assert np.min(np.abs(beats * SR - (aligned.source_start + aligned.rotation))) < 1
    np.testing.assert_array_equal(aligned.audio, np.roll(plain.audio, -aligned.rotation, axis=1))
    assert aligned.seam_score == pytest.approx(plain.seam_score, abs=0.05) and not aligned.flagged
    assert seam_score(aligned.audio, aligned.crossfade, at=aligned.splice) == aligned.seam_score
