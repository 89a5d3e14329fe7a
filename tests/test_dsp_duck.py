"""Side-chain ducking: the gain curve's depth and ramps, hold across short gaps, loops, and the mix."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from assetgen.dsp.duck import HOLD_S, KEY_WINDOW_S, duck_gain, duck_layers, key_activity
from assetgen.dsp.mix import mix_layers
from assetgen.spec import PostParams

SR = 8000


def burst(spans, seconds=6.0, sr=SR) -> np.ndarray:
    """Stereo 440 Hz tone in the given (start, end) second spans, silence elsewhere."""
    t = np.arange(round(seconds * sr)) / sr
    on = np.zeros_like(t, bool)
    for a, b in spans:
        on |= (t >= a) & (t < b)
    x = (0.3 * np.sin(2 * np.pi * 440 * t) * on).astype(np.float32)
    return np.stack([x, x])


def db(g) -> np.ndarray:
    return 20 * np.log10(g)


def at(seconds: float) -> int:
    return round(seconds * SR)


def test_depth_attack_and_release_as_asked():
    key = burst([(2.0, 3.0)])
    gain = db(duck_gain(key_activity(key, SR), SR, 12.0, attack_s=0.4, release_s=1.0))
    edge = KEY_WINDOW_S  # the level window widens the key by at most half a window each side
    assert np.allclose(gain[at(2.0):at(3.0)], -12.0, atol=1e-4)  # full depth while the key sounds
    assert np.allclose(gain[: at(2.0 - 0.4 - edge)], 0.0, atol=1e-4)  # untouched before the attack ramp
    assert np.allclose(gain[at(3.0 + 1.0 + edge):], 0.0, atol=1e-4)  # recovered after the release
    assert gain[at(1.8)] == pytest.approx(-6.0, abs=12 * edge / 0.4)  # half-way down the attack (look-ahead)
    assert gain[at(3.5)] == pytest.approx(-6.0, abs=12 * edge / 1.0)  # half-way up the release
    assert np.all(np.diff(gain[at(1.0):at(2.0)]) <= 1e-6) and np.all(np.diff(gain[at(3.0):at(5.0)]) >= -1e-6)


def test_short_gaps_hold_long_gaps_release():
    short = burst([(1.0, 2.0), (2.0 + HOLD_S / 2, 3.0)])
    gain = db(duck_gain(key_activity(short, SR), SR, 10.0, 0.1, 0.5))
    assert np.allclose(gain[at(1.0):at(3.0)], -10.0, atol=1e-4)  # a pause between words stays ducked
    long = burst([(1.0, 2.0), (3.5, 4.0)])
    gain = db(duck_gain(key_activity(long, SR), SR, 10.0, 0.1, 0.5))
    assert gain[at(2.9)] == pytest.approx(0.0, abs=1e-4)  # recovered in a long pause


def test_no_key_or_no_depth_is_unity():
    silent = np.zeros((2, SR), np.float32)
    assert not key_activity(silent, SR).any()
    assert np.array_equal(duck_gain(key_activity(silent, SR), SR, 10.0, 0.1, 0.5), np.ones(SR, np.float32))
    key = burst([(0.2, 0.5)], seconds=1.0)
    assert np.array_equal(duck_gain(key_activity(key, SR), SR, 0.0, 0.1, 0.5), np.ones(SR, np.float32))


def test_cyclic_ducking_wraps_around_the_loop():
    key = burst([(0.0, 0.5)], seconds=4.0)  # a loop whose key starts at its first sample
    linear = db(duck_gain(key_activity(key, SR), SR, 8.0, 0.5, 0.5))
    looped = db(duck_gain(key_activity(key, SR, cyclic=True), SR, 8.0, 0.5, 0.5, cyclic=True))
    assert linear[-1] == pytest.approx(0.0)  # a one-shot does not see the next pass coming
    assert looped[-1] == pytest.approx(-8.0, abs=8 * KEY_WINDOW_S / 0.5)  # the loop's end ducks for its start
    assert looped[at(2.0)] == pytest.approx(0.0)


def test_duck_layers_turns_down_the_others_never_the_key():
    key = burst([(1.0, 2.0)], seconds=3.0)
    bed = np.full((2, 3 * SR), 0.1, np.float32)
    mix = duck_layers([key, bed], [(6.0, 0.0, 0.0), (0.0, 0.1, 0.5)], SR)
    assert np.allclose(mix[:, at(1.0) + 10 : at(2.0) - 10] - key[:, at(1.0) + 10 : at(2.0) - 10],
                       0.1 * 10 ** (-6 / 20), atol=1e-6)  # the bed under the key, 6 dB down
    assert np.allclose(mix[:, : at(0.9)], 0.1)  # no attack asked: untouched until the key
    # two keys at once: the deeper reduction wins (not their sum), and each key ducks the other
    mix2 = duck_layers([key, key * 0.5, bed], [(6.0, 0, 0), (9.0, 0, 0), (0.0, 0.1, 0.5)], SR)
    mid = at(1.5)
    under = mix2[:, mid] - key[:, mid] * 10 ** (-9 / 20) - 0.5 * key[:, mid] * 10 ** (-6 / 20)
    assert np.allclose(under, 0.1 * 10 ** (-9 / 20), atol=1e-6)


def test_mix_layers_with_a_ducking_layer():
    sr = 16000
    key, bed = burst([(1.0, 2.0)], 3.0, sr), np.full((2, 3 * sr), 0.05, np.float32)
    plain = PostParams(sample_rate=sr)
    undisturbed, _, _ = mix_layers([(key, sr, plain), (bed, sr, plain)], sr, 2, 3.0)
    ducked, _, _ = mix_layers([(key, sr, dataclasses.replace(plain, duck_db=10.0, duck_attack_s=0.2)),
                               (bed, sr, plain)], sr, 2, 3.0)
    assert np.array_equal(undisturbed[:, : round(0.7 * sr)], ducked[:, : round(0.7 * sr)])
    inside = slice(round(1.1 * sr), round(1.9 * sr))
    assert np.allclose(ducked[:, inside] - key[:, inside], 0.05 * 10 ** -0.5, atol=1e-6)
    # a loop scene ducks cyclically too: the key placed over the loop's end ducks its start
    wrapped = burst([(0.0, 1.0)], 1.5, sr)  # tone for 1 s, placed at 2.5 s: it wraps to the loop's start
    loop_key = dataclasses.replace(plain, duck_db=10.0, duck_attack_s=0.0, duck_release_s=0.0, start_s=2.5)
    looped, _, _ = mix_layers([(wrapped, sr, loop_key), (bed, sr, plain)], sr, 2, 3.0, loop=True)
    i = round(0.2 * sr)
    assert looped[0, i] - wrapped[0, i + round(0.5 * sr)] == pytest.approx(0.05 * 10 ** -0.5, abs=1e-6)
    assert looped[0, round(1.5 * sr)] == pytest.approx(0.05, abs=1e-7)  # far from the key: untouched
