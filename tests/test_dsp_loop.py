import numpy as np
import pytest
from scipy.signal import stft

from assetgen.dsp import loop as loop_module
from assetgen.dsp.loop import SEAM_THRESHOLD, bars_length, estimate_bpm, make_loop, seam_score, tile_loop

from tests.test_dsp_signals import music, noise, sine

SR = 48000
XF = SR // 2  # 0.5 s crossfade; generated audio = target + crossfade


def flux(mono: np.ndarray) -> np.ndarray:
    """Half-wave rectified spectral flux per frame (scipy STFT, 2048/512), independent of the module's."""
    _, _, z = stft(mono, nperseg=2048, noverlap=2048 - 512, boundary=None, padded=False)
    mag = np.abs(z)
    return np.maximum(mag[:, 1:] - mag[:, :-1], 0).sum(axis=0)


def assert_seamless(source: np.ndarray, loop: np.ndarray, crossfade: int, source_start: int | None = None):
    src, y = source.mean(axis=0), loop.mean(axis=0)
    n = y.size
    twice = np.concatenate([y, y])
    assert abs(twice[n] - twice[n - 1]) <= np.percentile(np.abs(np.diff(src)), 99)
    f, level = flux(twice), frame_level(src)
    p95 = max(np.percentile(flux(src), 95), 1e-3 * level)  # floor: 60 dB below the frame's spectrum
    first, last = (n - 2048) // 512, (n + crossfade) // 512 + 1  # frames touching the wrap or the crossfade
    wrap = f[first : n // 512 + 1].max()  # frames holding the wrap itself
    if source_start is None:
        assert wrap <= p95  # no spike at all
    else:  # a bar loop wraps on the downbeat: no spike beyond the source's own onset at that point
        k = source_start + n
        here = flux(src[k - 2560 : k + 2560]).max()
        assert flux(twice[n - 2560 : n + 2560]).max() <= max(p95, 1.1 * here)
    assert f[first:last].mean() <= p95  # the crossfade: no sustained change (a level dip would show here)


def frame_level(mono: np.ndarray) -> float:
    _, _, z = stft(mono, nperseg=2048, noverlap=2048 - 512, boundary=None, padded=False)
    return float(np.median(np.abs(z).sum(axis=0)))


SOURCES = {
    "sine": lambda: sine(SR, 4.5, freq=441.3),  # period 108.77 samples: does not divide the length
    "noise": lambda: noise(SR, 4.5, seed=7),
    "rhythm": lambda: music(SR, 4.5, bpm=123.0, intro=False),
}


@pytest.mark.parametrize("name", SOURCES)
def test_second_based_loops_are_seamless(name):
    x = SOURCES[name]()
    lp = make_loop(x, SR, 4 * SR, XF, tolerance=SR // 20)
    assert abs(lp.length - 4 * SR) <= SR // 20 and lp.audio.shape == (2, lp.length)
    assert_seamless(x, lp.audio, lp.crossfade)
    assert lp.seam_score <= SEAM_THRESHOLD and not lp.flagged


@pytest.mark.parametrize("bpm, bars", [(120.0, 2), (97.0, 1), (123.0, 2)])
def test_music_loops_are_exact_bars_and_seamless(bpm, bars):
    n = bars_length(bars, bpm, SR)
    assert n == round(bars * 4 * 60 / bpm * SR)
    x = music(SR, n / SR + 0.5, bpm=bpm, intro=False)
    lp = make_loop(x, SR, n, XF)
    assert lp.audio.shape[1] == n
    assert_seamless(x, lp.audio, lp.crossfade, source_start=lp.source_start)


def test_exact_length_tone_loops_phase_match_in_the_crossfade(monkeypatch):
    # 4 s cut a 441.3 Hz sine's period mid-way: the exact-length loop phase-matches with a small time shift
    # inside the crossfade (no glide elsewhere), as seamless as the free-length one
    x = sine(SR, 4.5, freq=441.3)
    with monkeypatch.context() as m:  # without the lag window the fixed length cannot loop: the score says so
        m.setattr(loop_module, "PHASE_WINDOW_S", 0.0)
        assert make_loop(x, SR, 4 * SR, XF).flagged
    fixed = make_loop(x, SR, 4 * SR, XF)
    free = make_loop(x, SR, 4 * SR, XF, tolerance=SR // 20)
    assert fixed.length == 4 * SR and fixed.audio.shape == (2, 4 * SR)
    assert not fixed.flagged and fixed.seam_score <= free.seam_score + 0.05
    assert any("time shift" in n for n in fixed.notes)
    y = fixed.audio.mean(axis=0)
    assert abs(y[0] - y[-1]) <= np.percentile(np.abs(np.diff(x.mean(axis=0))), 99)
    # the crossfade has no level dip: the phase-matched segments add up to the tone's own RMS
    head = y[: fixed.crossfade]
    assert np.sqrt(np.mean(head**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)
    env = np.abs(head).reshape(-1, 96).max(axis=1)  # per-period peaks through the crossfade
    assert env.min() >= 0.49
    # the pitch never moves by more than the documented bound: zero-crossing periods over the loop played twice
    y = np.tile(fixed.audio[0], 2)
    up = np.flatnonzero((y[:-1] < 0) & (y[1:] >= 0))
    frac = up + y[up] / (y[up] - y[up + 1])  # linear interpolation of each crossing
    periods = np.diff(frac)
    assert np.max(np.abs(periods / (SR / 441.3) - 1)) <= np.pi / 2 * 0.01


def test_seam_score_flags_a_bad_cut():
    x = sine(SR, 4.5, freq=441.3)
    bad = x[:, : 4 * SR]  # a raw cut: 1765.2 periods, the wrap jumps in phase
    good = make_loop(x, SR, 4 * SR, XF, tolerance=SR // 20)
    assert seam_score(bad) > SEAM_THRESHOLD
    assert seam_score(good.audio, good.crossfade) == pytest.approx(good.seam_score)
    assert good.seam_score < 0.1 * seam_score(bad)


def test_short_source_is_repeated_with_a_note():
    x = noise(SR, 1.0, seed=2)
    lp = make_loop(x, SR, 2 * SR, XF)
    assert lp.audio.shape[1] == 2 * SR
    assert any("repeated" in n for n in lp.notes)


def test_tile_loop_wraps():
    x = np.arange(10, dtype=np.float32)[None]
    np.testing.assert_array_equal(tile_loop(x, 25, offset=3)[0], (np.arange(25) + 3) % 10)


@pytest.mark.slow
def test_bpm_estimate():
    assert estimate_bpm(music(SR, 10.0, bpm=123.0), SR) == pytest.approx(123.0, rel=0.03)
