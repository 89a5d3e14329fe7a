import re
import shutil
import subprocess

import numpy as np
import pyebur128
import pyloudnorm
import pytest
import soundfile as sf
from scipy.signal import upfirdn

from assetgen.dsp import loudness as L

from tests.test_dsp_signals import music, noise, sine

SR = 48000
SIGNALS = {
    "sine": lambda: sine(SR, 5.0, freq=997.0, amp=0.3),
    "noise": lambda: noise(SR, 5.0, amp=0.05),
    "music": lambda: music(SR, 8.0),
}


def ebur128(x: np.ndarray, sr: int) -> tuple[float, float]:
    """pyebur128 (libebur128): integrated LUFS and true peak (dBTP)."""
    st = pyebur128.R128State(x.shape[0], sr, pyebur128.MeasurementMode.MODE_I | pyebur128.MeasurementMode.MODE_TRUE_PEAK)
    st.add_frames(np.ascontiguousarray(x.T, dtype=np.float64).ravel(), x.shape[1])
    tp = max(pyebur128.get_true_peak(st, c) for c in range(x.shape[0]))
    return pyebur128.get_loudness_global(st), 20 * np.log10(tp)


def brute_true_peak(x: np.ndarray) -> float:
    """Oversample everything with the Annex 2 filter (scipy upfirdn) and take the max."""
    h = L._TP_PHASES.T.reshape(-1).astype(np.float64)  # interleave phases -> 48-tap 4x interpolator
    return max(float(np.abs(upfirdn(h, x.astype(np.float64), up=4, axis=1)).max()), float(np.abs(x).max()))


@pytest.mark.parametrize("name", SIGNALS)
def test_loudness_matches_independent_meters(name):
    x = SIGNALS[name]()
    ours, status = L.integrated_loudness(x, SR)
    assert status == "ok"
    assert ours == pytest.approx(ebur128(x, SR)[0], abs=0.002)
    # pyloudnorm's own K-weighting design sits ~0.04 dB under BS.1770-4's coefficients
    assert ours == pytest.approx(pyloudnorm.Meter(SR).integrated_loudness(x.T.astype(np.float64)), abs=0.06)


@pytest.mark.skipif(not shutil.which("ffmpeg"), reason="ffmpeg not installed")
@pytest.mark.parametrize("name", SIGNALS)
def test_loudness_matches_ffmpeg(name, tmp_path):
    x = SIGNALS[name]()
    path = tmp_path / "x.wav"
    sf.write(path, x.T, SR, subtype="FLOAT")
    out = subprocess.run(["ffmpeg", "-nostats", "-hide_banner", "-i", str(path), "-af", "ebur128=peak=true",
                          "-f", "null", "-"], capture_output=True, text=True, check=True).stderr
    summary = out[out.rindex("Summary:"):]
    ff_i = float(re.search(r"I:\s+(-?[\d.]+) LUFS", summary).group(1))
    ff_tp = float(re.search(r"Peak:\s+(-?[\d.]+) dBFS", summary).group(1))
    ours = L.measure(x, SR)
    assert ours.lufs == pytest.approx(ff_i, abs=0.1 + 0.05)  # ffmpeg prints one decimal
    assert ours.true_peak_dbtp == pytest.approx(ff_tp, abs=0.3)  # different interpolators


@pytest.mark.parametrize("name", SIGNALS)
def test_true_peak_equals_full_oversampling(name):
    x = SIGNALS[name]()
    assert L.true_peak(x) == pytest.approx(brute_true_peak(x), rel=1e-5)


def test_true_peak_sees_intersample_peaks():
    # fs/4 sine at 45 degrees: samples at 0.707 of the amplitude, true peak ~ the amplitude
    x = sine(SR, 1.0, freq=SR / 4, amp=1.0)
    x = (np.sin(2 * np.pi * 0.25 * np.arange(SR) + np.pi / 4)[None] * 0.9).astype(np.float32)
    assert np.abs(x).max() == pytest.approx(0.9 * np.sqrt(0.5), rel=1e-3)
    assert L.to_db(L.true_peak(x)) == pytest.approx(20 * np.log10(0.9), abs=0.3)
    assert L.to_db(L.true_peak(x)) == pytest.approx(ebur128(x, SR)[1], abs=0.3)


@pytest.mark.parametrize("name", SIGNALS)
@pytest.mark.parametrize("target", [-23.0, -16.0])
def test_normalize_hits_target_under_ceiling(name, target):
    x = SIGNALS[name]()
    y, m, _ = L.normalize(x, SR, target, -1.0)
    lufs, tp = ebur128(y, SR)
    assert lufs == pytest.approx(target, abs=0.01)
    assert m.lufs == pytest.approx(lufs, abs=0.002)
    assert brute_true_peak(y) <= 10 ** (-1.0 / 20) + 1e-6
    assert tp <= -1.0 + 0.2  # libebur128's own interpolator agrees within its tolerance


def test_loud_target_is_limited_not_clipped():
    x = music(SR, 8.0)
    y, m, notes = L.normalize(x, SR, -8.0, -1.0)
    assert any("limited" in n for n in notes)
    assert brute_true_peak(y) <= 10 ** (-1.0 / 20) + 1e-6
    # no flat tops: hard clipping leaves runs of equal samples at the ceiling (checked on a clipped copy)
    def flat_tops(a):
        near_max = np.abs(a[:, 1:]) > 0.95 * np.abs(a).max()
        return int(np.sum(near_max & (np.abs(np.diff(a, axis=1)) < 1e-7)))

    gain = 10 ** ((-8.0 - L.integrated_loudness(x, SR)[0]) / 20)
    assert flat_tops(np.clip(x * gain, -0.89, 0.89)) > 100
    assert flat_tops(y) == 0
    assert ebur128(y, SR)[0] == pytest.approx(-8.0, abs=0.01)  # the limiter no longer costs loudness


def test_24bit_roundtrip_keeps_measurements(tmp_path):
    y, m, _ = L.normalize(music(SR, 8.0), SR, -18.0, -1.0)
    path = tmp_path / "m.wav"
    sf.write(path, y.T, SR, subtype="PCM_24")
    back, sr = sf.read(path, dtype="float32", always_2d=True)
    back = back.T
    assert sr == SR and sf.info(path).subtype == "PCM_24"
    assert np.abs(back - y).max() < 2.0**-22
    assert ebur128(back, SR)[0] == pytest.approx(-18.0, abs=0.01)
    assert brute_true_peak(back) <= 10 ** (-1.0 / 20) + 1e-5


def test_silence_and_too_short_have_a_status():
    y, m, _ = L.normalize(np.zeros((2, SR), np.float32), SR, -23.0)
    assert (m.status, m.lufs, m.true_peak_dbtp) == ("silent", None, None)
    assert np.all(y == 0)
    short = noise(SR, 0.3)
    y, m, _ = L.normalize(short, SR, -23.0)
    assert (m.status, m.lufs) == ("too-short", None)
    np.testing.assert_array_equal(y, short)  # level kept, it was under the ceiling
    quiet = noise(SR, 2.0, amp=1e-5)  # below the -70 LUFS absolute gate
    assert L.integrated_loudness(quiet, SR) == (None, "silent")


def test_cyclic_true_peak_sees_the_wrap():
    x = np.zeros((1, 4096), np.float32)
    x[0, 0], x[0, -1] = 0.8, 0.8  # a peak that straddles the seam only when looped
    assert L.true_peak(x, cyclic=True) > L.true_peak(x) + 0.01


def brute_cyclic_true_peak(x: np.ndarray) -> float:
    """Full oversampling of the clip played five times; one period of outputs from the third copy on is
    one period of the endless loop's (its windows reach back less than two copies for n >= taps / 2)."""
    n = x.shape[1]
    h = L._TP_PHASES.T.reshape(-1).astype(np.float64)
    y = upfirdn(h, np.tile(x, 5).astype(np.float64), up=4, axis=1)[:, 8 * n : 12 * n]
    return max(float(np.abs(y).max()), float(np.abs(x).max()))


@pytest.mark.parametrize("n", [12, 13, 16, 17, 31, 100, 4099])
@pytest.mark.parametrize("kind", ["noise", "spikes", "edge", "square"])
def test_pruned_true_peak_equals_full_oversampling(n, kind):
    rng = np.random.default_rng(n)
    if kind == "noise":
        x = rng.standard_normal((2, n)).astype(np.float32) * 0.3
    elif kind == "square":  # dense: nearly every sample is near the peak
        x = np.sign(np.sin(np.arange(n) * 0.9 + rng.uniform(0, 6, (2, 1)))).astype(np.float32) * 0.5
    else:
        x = rng.standard_normal((2, n)).astype(np.float32) * 0.01
        spots = [0, n - 1] if kind == "edge" else rng.integers(0, n, 3)
        for s in spots:  # alternating-sign pairs make large inter-sample peaks
            x[1, s], x[1, (s + 1) % n] = 0.6, -0.6
    assert L.true_peak(x) == pytest.approx(brute_true_peak(x), rel=1e-5)
    assert L.true_peak(x, cyclic=True) == pytest.approx(brute_cyclic_true_peak(x), rel=1e-5)


@pytest.mark.parametrize("cyclic", [False, True])
def test_true_peak_finds_windows_whose_samples_are_all_below_the_sample_peak(cyclic):
    # the worst-case pattern (signs of the taps) makes a window's interpolated value ~1.9x its samples:
    # 0.3-amplitude samples give ~0.55 beside a 0.5 sample peak elsewhere. The pattern sits on the window
    # ending at n-2 (all but its first and last two taps) so its peak window ends in the last, partial
    # chunk (and, when cyclic, wraps).
    n, end, taps = 4099, 4097, L._TAPS
    phase = int(np.argmax(np.abs(L._TP_PHASES).sum(axis=1)))
    x = np.zeros((2, n), np.float32)
    x[0, 2000] = 0.5
    t = np.arange(2, taps - 2)
    x[1, end - (taps - 1) + t] = 0.3 * np.sign(L._TP_PHASES[phase, t])
    brute = brute_cyclic_true_peak(x) if cyclic else brute_true_peak(x)
    assert brute > 0.55
    assert L.true_peak(x, cyclic=cyclic) == pytest.approx(brute, rel=1e-5)
