"""Meters against EBU Tech 3341 (loudness, true peak) and Tech 3342 (loudness range), synthesised from the
specs' definitions, and against outside referees (pyebur128 = libebur128; ffmpeg's ``ebur128`` filter).

Assumptions (EBU Tech 3341 v4 / Tech 3342 as we know them; the official files are not in the repo):
- 3341 cases 1-5: stereo 1 kHz sines, levels are the sine's peak in dBFS: 1) -23 for 20 s, 2) -33 for 20 s,
  3) -36/-23/-36 for 10/60/10 s, 4) -72/-36/-23/-36/-72 for 10/10/60/10/10 s, 5) -26/-20/-26 for
  20/20.1/20 s. Expected integrated loudness -23.0 (case 2: -33.0); cases 1-2 also momentary and
  short-term. A correct meter reads a -23 dBFS 1 kHz stereo sine at -22.993 (the K-weighting's gain at
  1 kHz is 0.691 - 0.007 dB), so we assert +-0.02 LU of the spec (case 5: 0.025) and +-0.001 LU of libebur128.
- 3341 cases 15-19: 1 s stereo sines at 48 kHz, -6 dBFS amplitude: fs/4 at phase 0 and 45 degrees, fs/6
  at 60, fs/8 at 67.5; case 19 is fs/4 at 45 degrees with +3 dBFS amplitude (samples at 0 dBFS). 50 ms
  fades at both ends (an abrupt start or end would overshoot when interpolated, raising every reading).
  Cases 20-23 (0 dBTP transients): a band-limited pulse (Kaiser-windowed sinc, 15 kHz) scaled to a
  continuous peak of 0 dBFS with the peak 0, 1/8, 1/4 and 3/8 of a sample after a sample instant.
  "Actual peak" is the maximum of a 32x oversampled copy (scipy ``resample_poly``).
- 3342 cases 1-4: stereo 1 kHz sines, 20 s each: -20/-30 (LRA 10), -20/-15 (5), -40/-20 (20),
  -50/-35/-20/-35/-50 (15); +-1 LU.
"""

import re
import shutil
import subprocess

import numpy as np
import pyebur128
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from assetgen.dsp import loudness as L

TECH3341_LOUDNESS = {  # case: ([(dBFS, seconds), ...], expected integrated LUFS)
    1: ([(-23, 20)], -23.0),
    2: ([(-33, 20)], -33.0),
    3: ([(-36, 10), (-23, 60), (-36, 10)], -23.0),
    4: ([(-72, 10), (-36, 10), (-23, 60), (-36, 10), (-72, 10)], -23.0),
    5: ([(-26, 20), (-20, 20.1), (-26, 20)], -23.0),
}
TECH3342_LRA = {1: ([-20, -30], 10.0), 2: ([-20, -15], 5.0), 3: ([-40, -20], 20.0),
                4: ([-50, -35, -20, -35, -50], 15.0)}
TP_CASES = {  # case: (frequency / fs, phase in degrees, amplitude dBFS)
    15: (1 / 4, 0.0, -6.0), 16: (1 / 4, 45.0, -6.0), 17: (1 / 6, 60.0, -6.0), 18: (1 / 8, 67.5, -6.0),
    19: (1 / 4, 45.0, 3.0),
}
PULSE_CASES = {20: 0.0, 21: 1 / 8, 22: 1 / 4, 23: 3 / 8}  # fractional position of the pulse's peak


def sines(sr: int, parts: list[tuple[float, float]], freq: float = 1000.0) -> np.ndarray:
    """Stereo 1 kHz sine, one continuous phase, amplitude stepping through ``(dBFS, seconds)`` parts."""
    amp = np.concatenate([np.full(round(s * sr), 10 ** (db / 20)) for db, s in parts])
    x = amp * np.sin(2 * np.pi * freq * np.arange(amp.size) / sr)
    return np.stack([x, x]).astype(np.float32)


def tp_case(case: int, sr: int = 48000) -> np.ndarray:
    if case in TP_CASES:
        f, phase, db = TP_CASES[case]
        x = 10 ** (db / 20) * np.sin(2 * np.pi * f * np.arange(sr) + np.radians(phase))
        fade = np.sin(0.5 * np.pi * np.arange(sr // 20) / (sr // 20)) ** 2  # no edge overshoot
        x[: fade.size] *= fade
        x[-fade.size :] *= fade[::-1]
        return np.stack([x, x]).astype(np.float32)
    t = np.arange(-64, 65) - PULSE_CASES[case]
    pulse = np.sinc(2 * 15000 / sr * t) * np.kaiser(t.size, 8.0)
    x = np.zeros(sr)
    x[sr // 2 - 64 : sr // 2 + 65] = pulse
    return np.stack([x, 0.5 * x]).astype(np.float32)


def actual_peak_db(x: np.ndarray) -> float:
    """Peak of the band-limited signal through x, from 32x oversampling (long Kaiser filter)."""
    up = resample_poly(x.astype(np.float64), 32, 1, axis=1, window=("kaiser", 10.0))
    return 20 * np.log10(max(np.abs(up).max(), np.abs(x).max()))


def pulse_scaled(case: int) -> np.ndarray:
    x = tp_case(case).astype(np.float64)
    return (x / 10 ** (actual_peak_db(x) / 20)).astype(np.float32)  # continuous peak at 0 dBFS


def libebur128(x: np.ndarray, sr: int) -> dict:
    modes = (pyebur128.MeasurementMode.MODE_I | pyebur128.MeasurementMode.MODE_LRA
             | pyebur128.MeasurementMode.MODE_TRUE_PEAK | pyebur128.MeasurementMode.MODE_M
             | pyebur128.MeasurementMode.MODE_S)
    st = pyebur128.R128State(x.shape[0], sr, modes)
    st.add_frames(np.ascontiguousarray(x.T, dtype=np.float64).ravel(), x.shape[1])
    return {"I": pyebur128.get_loudness_global(st), "LRA": pyebur128.get_loudness_range(st),
            "TP": 20 * np.log10(max(pyebur128.get_true_peak(st, c) for c in range(x.shape[0])))}


def ffmpeg_ebur128(x: np.ndarray, sr: int, path) -> dict:
    sf.write(path, x.T, sr, subtype="FLOAT")
    out = subprocess.run(["ffmpeg", "-nostats", "-hide_banner", "-i", str(path), "-af", "ebur128=peak=true",
                          "-f", "null", "-"], capture_output=True, text=True, check=True).stderr
    s = out[out.rindex("Summary:"):]
    num = r"(-?[\d.]+|-inf)"
    return {"I": float(re.search(rf"I:\s+{num} LUFS", s).group(1)),
            "LRA": float(re.search(rf"LRA:\s+{num} LU", s).group(1)),
            "TP": float(re.search(rf"Peak:\s+{num} dBFS", s).group(1))}


needs_ffmpeg = pytest.mark.skipif(not shutil.which("ffmpeg"), reason="ffmpeg not on PATH (apt package ffmpeg)")


@pytest.mark.parametrize("sr", [44100, 48000])
@pytest.mark.parametrize("case", TECH3341_LOUDNESS)
def test_tech3341_loudness_cases(case, sr):
    parts, expected = TECH3341_LOUDNESS[case]
    x = sines(sr, parts)
    m = L.measure(x, sr)
    assert m.status == "ok"
    # case 5's level steps fall inside gating blocks: libebur128 reads it 0.021-0.024 LU high as well
    assert m.lufs == pytest.approx(expected, abs=0.025 if case == 5 else 0.02)
    assert m.lufs == pytest.approx(libebur128(x, sr)["I"], abs=0.001)
    if case in (1, 2):  # steady: momentary and short-term read the same
        assert m.max_momentary_lufs == pytest.approx(expected, abs=0.02)
        assert m.max_short_term_lufs == pytest.approx(expected, abs=0.02)
        assert m.lra_lu == pytest.approx(0.0, abs=0.01)


def test_k_weighting_design_reproduces_bs1770_at_48k():
    np.testing.assert_allclose(L._k_design(48000), L._K48, atol=1e-7)


@pytest.mark.parametrize("sr", [32000, 44100, 96000])
def test_k_weighting_at_other_rates_matches_libebur128(sr):
    x = np.random.default_rng(sr).standard_normal((2, 5 * sr)).astype(np.float32) * 0.1
    assert L.integrated_loudness(x, sr)[0] == pytest.approx(libebur128(x, sr)["I"], abs=0.002)


@pytest.mark.parametrize("case", [*TP_CASES, *PULSE_CASES])
def test_tech3341_true_peak_cases(case):
    x = pulse_scaled(case) if case in PULSE_CASES else tp_case(case)
    expected = TP_CASES[case][2] if case in TP_CASES else 0.0
    actual = actual_peak_db(x)
    ours = L.to_db(L.true_peak(x))
    assert ours == pytest.approx(actual, abs=0.1)
    assert expected - 0.4 <= ours <= expected + 0.2


@pytest.mark.parametrize("case", TECH3342_LRA)
def test_tech3342_loudness_range_cases(case):
    levels, expected = TECH3342_LRA[case]
    x = sines(48000, [(db, 20) for db in levels])
    lra = L.measure(x, 48000).lra_lu
    assert lra == pytest.approx(expected, abs=1.0)
    assert lra == pytest.approx(libebur128(x, 48000)["LRA"], abs=0.2)


def test_short_clip_statistics():
    x = sines(48000, [(-20, 1.0)])  # shorter than a short-term window
    m = L.measure(x, 48000)
    assert m.lra_lu is None  # no 3 s window inside the clip
    assert m.max_momentary_lufs == pytest.approx(-20.0, abs=0.02)
    # a meter started in silence: the 3 s window holds 1 s of the tone
    assert m.max_short_term_lufs == pytest.approx(-20.0 + 10 * np.log10(1 / 3), abs=0.05)
    assert m.sample_peak_dbfs == pytest.approx(-20.0, abs=0.01)


@needs_ffmpeg
@pytest.mark.parametrize("case", [1, 3, 5])
def test_loudness_cases_match_ffmpeg(case, tmp_path):
    parts, _ = TECH3341_LOUDNESS[case]
    x = sines(48000, parts)
    ff = ffmpeg_ebur128(x, 48000, tmp_path / "x.wav")
    assert L.integrated_loudness(x, 48000)[0] == pytest.approx(ff["I"], abs=0.05 + 0.01)  # ffmpeg prints 0.1


@needs_ffmpeg
@pytest.mark.parametrize("case", [*TP_CASES, *PULSE_CASES])
def test_true_peak_cases_match_ffmpeg(case, tmp_path):
    x = pulse_scaled(case) if case in PULSE_CASES else tp_case(case)
    ff = ffmpeg_ebur128(x, 48000, tmp_path / "x.wav")
    assert L.to_db(L.true_peak(x)) == pytest.approx(ff["TP"], abs=0.2)


@needs_ffmpeg
def test_lra_matches_ffmpeg(tmp_path):
    x = sines(48000, [(db, 20) for db in TECH3342_LRA[4][0]])
    assert L.measure(x, 48000).lra_lu == pytest.approx(ffmpeg_ebur128(x, 48000, tmp_path / "x.wav")["LRA"],
                                                       abs=0.2)
