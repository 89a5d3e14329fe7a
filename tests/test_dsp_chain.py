import numpy as np
import pyebur128
import pytest

from assetgen.dsp.chain import process_clip, process_mix
from assetgen.dsp.fx import FxError
from assetgen.dsp.loudness import true_peak
from assetgen.dsp.resample import resample, to_channels
from assetgen.dsp.transitions import crossfade_concat, equal_power
from assetgen.spec import LOUDNESS_PROFILES, PostParams

from tests.test_dsp_signals import music, noise, sine


def lufs(x, sr):
    st = pyebur128.R128State(x.shape[0], sr, pyebur128.MeasurementMode.MODE_I)
    st.add_frames(np.ascontiguousarray(x.T, dtype=np.float64).ravel(), x.shape[1])
    return pyebur128.get_loudness_global(st)


def ambience(sr, seconds, seed=3):
    """Pad + noise bed: no attacks, so a wrap step is a seam defect, never a drum hit."""
    return (sine(sr, seconds, freq=220.0, amp=0.2) + noise(sr, seconds, amp=0.05, seed=seed)).astype(np.float32)


def wrap_step_ok(y, q=99.0):
    m = y.mean(axis=0)
    return abs(m[0] - m[-1]) <= np.percentile(np.abs(np.diff(m)), q)


def test_resample_and_channel_policy():
    x = sine(32000, 1.0, freq=1000.0, channels=1)
    y = resample(x, 32000, 48000)
    assert y.shape == (1, 48000)
    spec = np.abs(np.fft.rfft(y[0]))
    assert np.argmax(spec) == 1000  # 1 Hz bins: the tone stays at 1 kHz
    st = to_channels(y, 2)
    np.testing.assert_array_equal(st[0], st[1])
    lr = np.stack([y[0], -y[0]])
    np.testing.assert_allclose(to_channels(lr, 1), 0.0, atol=1e-7)
    with pytest.raises(ValueError):
        to_channels(np.zeros((3, 10)), 2)


def test_one_shot_clip():
    post = PostParams(loudness_lufs=LOUDNESS_PROFILES["aswg-mobile"], channels=1)
    out = process_clip(music(32000, 3.3), 32000, post, 3.0)
    assert out.audio.shape == (1, 144000) and out.sample_rate == 48000
    assert out.loop_start is None and out.status == "ok"
    assert lufs(out.audio, 48000) == pytest.approx(-18.0, abs=0.1) == pytest.approx(out.lufs, abs=0.1)
    assert 20 * np.log10(true_peak(out.audio)) <= -1.0 + 1e-6
    assert abs(out.audio[0, -1]) < 1e-3  # cut with a fade-out


def test_music_loop_clip_exact_length_and_seamless():
    post = PostParams(loop=True, bpm=120.0, bars=2, fx="reverb(room_size=0.8, wet_level=0.4)")
    out = process_clip(ambience(32000, 4.5), 32000, post, 4.0)
    assert out.audio.shape[1] == round(2 * 4 * 60 / 120 * 48000) == out.loop_end
    assert out.loop_start == 0 and out.seam_score is not None and out.seam_score < 1.0
    assert wrap_step_ok(out.audio)
    assert out.lufs == pytest.approx(-23.0, abs=0.1)


def test_silent_clip_has_status():
    out = process_clip(np.zeros((1, 32000), np.float32), 32000, PostParams(), 1.0)
    assert (out.status, out.lufs, out.true_peak_dbtp) == ("silent", None, None)


def test_bad_fx_is_a_clear_error():
    with pytest.raises(FxError, match="did you mean"):
        process_clip(noise(48000, 1.0), 48000, PostParams(fx="revrb(room_size=0.3)"), 1.0)


def test_loop_mix_tiles_layers_seamlessly():
    sr = 48000
    a = process_clip(ambience(sr, 4.5), sr, PostParams(loop=True, bpm=120.0, bars=2), 4.0)
    b = process_clip(noise(32000, 2.5, seed=5), 32000, PostParams(loop=True, bpm=120.0, bars=1), 2.0)
    hit = sine(sr, 0.5, freq=660.0)
    layers = [(a.audio, sr, PostParams(loop=True, gain_db=-3.0)),
              (b.audio, sr, PostParams(loop=True, start_s=0.25)),
              (hit, sr, PostParams(start_s=7.8, fade_in_s=0.01, fade_out_s=0.1))]  # wraps past the end
    out = process_mix(layers, PostParams(loop=True, loudness_lufs=-20.0), 8.0)
    assert out.audio.shape == (2, 8 * sr) and out.loop_end == 8 * sr
    assert out.lufs == pytest.approx(-20.0, abs=0.1)
    # q=99.9: the wrap here falls on the steepest slope of the 660 Hz hit, a natural step of the layer
    assert wrap_step_ok(out.audio, q=99.9) and out.seam_score < 1.0
    # the one-shot that ran past the end is heard at the start (cyclic placement)
    assert np.abs(out.audio[:, : sr // 4]).max() > 0


def test_linear_mix_places_and_fades():
    sr = 48000
    tone = sine(sr, 2.0, freq=440.0)
    out = process_mix([(tone, sr, PostParams(start_s=1.0, fade_in_s=0.5))], PostParams(), 4.0)
    y = out.audio
    assert y.shape == (2, 4 * sr)
    assert np.abs(y[:, : sr]).max() == 0  # nothing before the start offset
    ramp = np.abs(y[0, sr : sr + sr // 2]).reshape(-1, 2400).max(axis=1)
    assert np.all(np.diff(ramp) > 0)  # fading in
    assert np.abs(y[:, 3 * sr :]).max() == 0  # the layer ended at 3 s


def test_equal_power_keeps_power():
    fi, fo = equal_power(1000)
    np.testing.assert_allclose(fi**2 + fo**2, 1.0, atol=1e-6)
    fi, fo = equal_power(1000, correlation=1.0)
    np.testing.assert_allclose(fi + fo, 1.0, atol=1e-6)


def test_crossfade_concat_is_vectorised_seed_equivalent_length():
    sr = 48000
    a, b = noise(sr, 1.0, seed=1), noise(sr, 1.5, seed=2)
    y = crossfade_concat([a, b], sr, 0.25)
    assert y.shape == (2, sr + 3 * sr // 2 - sr // 4)
    np.testing.assert_array_equal(y[:, : 3 * sr // 4], a[:, : 3 * sr // 4])
    np.testing.assert_array_equal(y[:, sr:], b[:, sr // 4 :])
    mid = y[:, 3 * sr // 4 : sr]
    # uncorrelated noise: power through the crossfade stays that of the inputs (equal power)
    assert np.mean(mid**2) == pytest.approx(np.mean(a**2), rel=0.1)


@pytest.mark.parametrize("loop", [False, True])
@pytest.mark.parametrize("target", [-23.0, -9.0])  # -9 needs the limiter
def test_mono_source_to_stereo_equals_duplicating_first(loop, target):
    # without effects a mono clip is processed mono and duplicated last; the result must be what the
    # stereo path gives for the same clip duplicated first
    src = music(32000, 4.5)[:1]
    post = PostParams(loop=loop, bpm=120.0 if loop else None, bars=2 if loop else None, channels=2,
                      loudness_lufs=target)
    fast = process_clip(src, 32000, post, 4.0)
    ref = process_clip(np.concatenate([src, src]), 32000, post, 4.0)
    assert any("limited" in n for n in ref.notes) == (target == -9.0)
    assert fast.audio.shape == ref.audio.shape == (2, 192000)
    np.testing.assert_array_equal(fast.audio[0], fast.audio[1])
    # with the limiter both reach the target through an iterative gain search (within 0.005 LU)
    np.testing.assert_allclose(fast.audio, ref.audio, atol=2e-5 if target == -23.0 else 1e-3)
    assert fast.lufs == pytest.approx(ref.lufs, abs=0.01)
    assert fast.lufs == pytest.approx(lufs(fast.audio, 48000), abs=0.1)
    assert fast.true_peak_dbtp == pytest.approx(ref.true_peak_dbtp, abs=0.01)
    assert (fast.loop_start, fast.loop_end) == (ref.loop_start, ref.loop_end)
    assert (fast.seam_score is None) == (not loop)
    if loop:
        assert fast.seam_score == pytest.approx(ref.seam_score, abs=0.05)


def test_delivery_statistics_are_filled():
    out = process_clip(music(32000, 4.5), 32000, PostParams(loudness_lufs=-16.0), 4.0)
    assert out.status == "ok" and out.lufs == pytest.approx(-16.0, abs=0.01)
    assert out.lra_lu is not None and out.lra_lu >= 0
    assert out.max_momentary_lufs >= out.lufs and out.max_short_term_lufs >= out.lufs - 0.5
    assert out.sample_peak_dbfs <= out.true_peak_dbtp <= -1.0 + 1e-6
    assert abs(out.dc_offset) < 1e-3 and out.loudness_shortfall_lu is None


def test_momentary_target_and_unreachable_status_through_the_chain():
    post = PostParams(loudness_lufs=-10.0, loudness_mode="momentary", channels=1)
    out = process_clip(noise(48000, 1.0, amp=0.1), 48000, post, 1.0)
    assert out.status == "ok" and out.max_momentary_lufs == pytest.approx(-10.0, abs=0.01)
    spiky = noise(48000, 3.0, amp=0.003)
    spiky[:, ::24000] = 0.9  # impulses 50 dB above the noise
    out = process_clip(spiky, 48000, PostParams(loudness_lufs=-10.0, max_limit_db=6.0), 3.0)
    assert out.status == "loudness-unreachable" and out.loudness_shortfall_lu > 0.1
    assert out.lufs == pytest.approx(-10.0 - out.loudness_shortfall_lu, abs=0.01)


@pytest.mark.parametrize("bad", [dict(highpass_hz=-1.0), dict(highpass_hz=30000.0), dict(max_limit_db=-3.0),
                                 dict(loudness_mode="peak")])
def test_bad_loudness_settings_are_clear_errors(bad):
    field = next(iter(bad))
    with pytest.raises(ValueError, match=field):
        process_clip(noise(48000, 1.0), 48000, PostParams(**bad), 1.0)
