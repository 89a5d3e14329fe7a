"""Normalisation reaches its target through the look-ahead true-peak limiter, or says it cannot; DC removal."""

import numpy as np
import pyebur128
import pytest

from assetgen.dsp import loudness as L
from assetgen.dsp.chain import process_clip
from assetgen.spec import PostParams

from tests.test_dsp_loudness import brute_true_peak
from tests.test_dsp_signals import music, noise

SR = 48000
CEILING = -1.0


def ebur128_i(x: np.ndarray) -> float:
    st = pyebur128.R128State(x.shape[0], SR, pyebur128.MeasurementMode.MODE_I)
    st.add_frames(np.ascontiguousarray(x.T, dtype=np.float64).ravel(), x.shape[1])
    return pyebur128.get_loudness_global(st)


def whale(overshoot_db: float, seconds: float = 12.0, seed: int = 0) -> np.ndarray:
    """Sparse tonal calls (gliding 300 Hz tone, three 1 s swells) with a few clicks, crest set so that plain
    gain to -14 LUFS would put the true peak ``overshoot_db`` above a -1 dBTP ceiling."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(SR * seconds)) / SR
    env = sum(np.exp(-(((t - s) / 0.5) ** 2)) for s in (2.0, 6.0, 10.0))
    tone = env * np.sin(2 * np.pi * (300 + 80 * np.sin(2 * np.pi * 0.3 * t)) * t)
    clicks = np.zeros_like(t)
    clicks[rng.integers(SR, t.size - SR, 6)] = 1.0
    for _ in range(2):  # the crest depends a little on the tone level: settle it
        x = np.stack([tone + clicks, 0.9 * (tone + clicks)]) + 1e-4 * rng.standard_normal((2, t.size))
        m = L.measure(x.astype(np.float32), SR)
        crest = m.true_peak_dbtp - m.lufs
        tone *= 10 ** ((crest - (overshoot_db + CEILING + 14.0)) / 20)  # crest = 14 + ceiling + overshoot
    return (x / np.abs(x).max()).astype(np.float32)


def spiky_noise(seconds: float = 8.0) -> np.ndarray:
    x = noise(SR, seconds, amp=0.05, seed=4)
    x[:, np.random.default_rng(5).integers(0, x.shape[1], 12)] = 0.9  # impulses in quiet noise
    return x


def check_delivered(y, m, target, ceiling=CEILING, cyclic=False):
    assert m.status == "ok"
    assert m.lufs == pytest.approx(target, abs=0.01)
    assert ebur128_i(y) == pytest.approx(target, abs=0.01)
    assert L.true_peak(y, cyclic) <= 10 ** (ceiling / 20) + 1e-7
    assert brute_true_peak(y) <= 10 ** (ceiling / 20) * 1.0001


@pytest.mark.parametrize("overshoot", [9.0, 17.0, 26.0])
def test_sparse_tonal_needing_heavy_limiting_reaches_target_within_budget(overshoot):
    x = whale(overshoot)
    y, m, notes = L.normalize(x, SR, -14.0, CEILING, max_limit_db=30.0)
    check_delivered(y, m, -14.0)
    assert any("limited" in n for n in notes)


@pytest.mark.parametrize("overshoot", [17.0, 26.0])
def test_target_out_of_reach_is_refused_not_ok(overshoot):
    x = whale(overshoot)
    y, m, notes = L.normalize(x, SR, -14.0, CEILING)  # default budget 12 dB
    assert m.status == "loudness-unreachable"
    assert m.shortfall_lu == pytest.approx(-14.0 - ebur128_i(y), abs=0.01) and m.shortfall_lu > 0.1
    assert L.true_peak(y) <= 10 ** (CEILING / 20) + 1e-7
    # the closest level the budget allows: 12 dB of limiting, not less
    assert float(L._Limiter.of(x, SR, False, L.Energies.of(x, SR), 1).reduction(
        -14.0 - L.integrated_loudness(x, SR)[0] - m.shortfall_lu, CEILING).max()) > 6.0
    assert any("loudness-unreachable" in n for n in notes)


def test_9db_overshoot_within_default_budget_is_ok():
    y, m, _ = L.normalize(whale(9.0), SR, -14.0, CEILING)
    check_delivered(y, m, -14.0)


def test_spiky_noise_reaches_target():
    y, m, notes = L.normalize(spiky_noise(), SR, -16.0, CEILING)
    check_delivered(y, m, -16.0)
    assert any("limited" in n for n in notes)


@pytest.mark.parametrize("cyclic", [False, True])
def test_dense_music_limited_hard(cyclic):
    y, m, _ = L.normalize(music(SR, 8.0), SR, -9.0, CEILING, cyclic=cyclic)
    check_delivered(y, m, -9.0, cyclic=cyclic)


@pytest.mark.parametrize("mode,field", [("momentary", "max_momentary_lufs"), ("short-term", "max_short_term_lufs")])
def test_max_momentary_and_short_term_targets(mode, field):
    y, m, _ = L.normalize(spiky_noise(4.0), SR, -12.0, CEILING, mode=mode)
    assert m.status == "ok"
    assert getattr(m, field) == pytest.approx(-12.0, abs=0.01)
    assert L.true_peak(y) <= 10 ** (CEILING / 20) + 1e-7


def test_limiter_gain_never_above_requirement_and_cyclic_seam_is_smooth():
    x = music(SR, 4.0, intro=False)
    env = np.zeros(1000)
    env[[10, 500, 995]] = [6.0, 12.0, 3.0]
    for cyclic in (False, True):
        red = L._gain_reduction_db(env, SR, cyclic)
        assert np.all(red >= env - 1e-9)
    red = L._gain_reduction_db(env, SR, True)
    # the peak at chunk 995 is ramped into from before the seam and chunk 0 continues chunk 999
    assert abs(red[0] - red[-1]) < 1.0 and red[0] > 0
    y = L.limit(x * np.float32(4.0), SR, CEILING, cyclic=True)
    assert L.true_peak(y, cyclic=True) <= 10 ** (CEILING / 20) * 1.02  # one pass, before the re-check


def ndimage_gain_reduction(env: np.ndarray, cyclic: bool, rate: float, box: int) -> np.ndarray:
    """The gain computer written with numpy and scipy.ndimage: release as a running maximum of the need plus
    a ramp, then maximum_filter1d over 2 box - 1 chunks and uniform_filter1d over box chunks twice."""
    from scipy.ndimage import maximum_filter1d, uniform_filter1d

    need, m = np.maximum(env, 0.0), env.size
    laps = 2 if cyclic else 1
    ramp = np.arange(laps * m) * rate
    rel = (np.maximum.accumulate(np.tile(need, laps) + ramp) - ramp)[(laps - 1) * m :]
    mode = "wrap" if cyclic else "nearest"
    held = maximum_filter1d(rel, 2 * box - 1, mode=mode)
    return uniform_filter1d(uniform_filter1d(held, box, mode=mode), box, mode=mode)


@pytest.mark.parametrize("m", [1, 5, 16, 40, 1000, 20000])
@pytest.mark.parametrize("cyclic", [False, True])
def test_gain_computer_equals_its_ndimage_definition(m, cyclic):
    env = np.random.default_rng(m).standard_normal(m) * 4.0 - 1.0  # shorter than the filters too
    rate = L.RELEASE_DB_PER_S * L._TP_CHUNK / SR
    box = 2 * max(1, round(L.ATTACK_S * SR / (2 * L._TP_CHUNK))) + 1
    np.testing.assert_allclose(L._gain_reduction_db(env, SR, cyclic), ndimage_gain_reduction(env, cyclic, rate, box),
                               rtol=0, atol=1e-9)


def test_dc_offset_input_is_removed_and_reaches_target():
    x = noise(SR, 4.0, amp=0.05, seed=2) - np.float32(0.5)  # like the placeholder model's output
    for loop in (False, True):
        post = PostParams(loop=loop, bpm=120.0 if loop else None, bars=2 if loop else None, loudness_lufs=-14.0)
        out = process_clip(x, SR, post, 4.0 if loop else 3.5)
        assert out.status == "ok" and out.lufs == pytest.approx(-14.0, abs=0.01)
        assert abs(out.dc_offset) < 10 ** (-60 / 20)
        assert np.abs(out.audio.mean(axis=1)).max() < 10 ** (-60 / 20)
        assert out.true_peak_dbtp <= CEILING + 1e-6
        assert out.sample_peak_dbfs <= out.true_peak_dbtp


def test_highpass_off_keeps_dc_and_cyclic_highpass_is_seamless():
    x = noise(SR, 2.0, amp=0.05, seed=3) - np.float32(0.2)
    np.testing.assert_array_equal(L.highpass(x, SR, 0.0), x)
    y = L.highpass(x, SR, 20.0, cyclic=True)
    # the loop's wrap is as continuous as the filtered noise elsewhere: the same filter run over two copies
    two = L.highpass(np.tile(x, 2), SR, 20.0, cyclic=True)
    np.testing.assert_allclose(two[:, x.shape[1]:], y, atol=2e-4)  # float32 filter state: ~-75 dBFS
    with pytest.raises(ValueError, match="highpass_hz"):
        L.highpass(x, SR, 30000.0)
