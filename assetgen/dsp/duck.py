"""Side-chain ducking: while a key layer (narration) sounds, the other layers of a mix are turned down.

A mix is rendered offline, so the ducker looks ahead: the reduction is complete when the key starts (the
attack ramp lies before it), holds while the key sounds (pauses shorter than ``HOLD_S``, between words and
phrases, included) and recovers over the release after the key ends. Ramps are linear in dB. The gain is a
function of each sample's distance to the nearest active key sample before and after it, computed with
cumulative maxima over the whole signal (no per-sample loop).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .resample import as_2d

KEY_WINDOW_S = 0.05  # RMS window of the key's level detector (s)
KEY_THRESHOLD_DB = -40.0  # the key is active where its windowed level is within this of its loudest window
KEY_FLOOR_DBFS = -80.0  # never active below this level (dither, limiter residue, reverb tails)
HOLD_S = 0.3  # gaps in the key shorter than this (s) stay fully ducked: no pumping between words


def key_activity(key: np.ndarray, sr: int, *, cyclic: bool = False, window_s: float = KEY_WINDOW_S,
                 threshold_db: float = KEY_THRESHOLD_DB) -> np.ndarray:
    """Boolean (samples,): where ``key`` (``(channels, samples)`` at ``sr`` Hz) is sounding.

    Mean square over channels in a centred ``window_s`` window (wrapping when ``cyclic``), compared with
    ``threshold_db`` below its maximum and with ``KEY_FLOOR_DBFS``.
    """
    from scipy.ndimage import uniform_filter1d

    x = as_2d(key)
    power = np.einsum("cn,cn->n", x, x, dtype=np.float64) / x.shape[0]
    ms = uniform_filter1d(power, max(1, round(window_s * sr)), mode="wrap" if cyclic else "constant")
    floor = 10.0 ** (KEY_FLOOR_DBFS / 10.0)
    peak = float(ms.max(initial=0.0))
    if peak <= floor:
        return np.zeros(power.shape[0], bool)
    return ms > max(peak * 10.0 ** (threshold_db / 10.0), floor)


def _distances(active: np.ndarray, cyclic: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: samples since the last active sample and until the next (0 on active samples; inf when
    there is none; a cyclic signal wraps around)."""
    n = active.shape[0]
    idx = np.arange(n, dtype=np.float64)
    on = np.flatnonzero(active)
    last = np.maximum.accumulate(np.where(active, idx, -np.inf))
    nxt = np.minimum.accumulate(np.where(active, idx, np.inf)[::-1])[::-1]
    if cyclic and on.size:
        last = np.where(np.isneginf(last), on[-1] - n, last)
        nxt = np.where(np.isposinf(nxt), on[0] + n, nxt)
    return idx - last, nxt - idx


def _ramp(distance: np.ndarray, length: float) -> np.ndarray:
    """1 at distance 0 falling linearly to 0 at ``length`` samples (a step when ``length`` is 0)."""
    if length <= 0:
        return (distance == 0).astype(np.float64)
    return np.clip(1.0 - distance / length, 0.0, 1.0)


def duck_gain(active: np.ndarray, sr: int, depth_db: float, attack_s: float, release_s: float, *,
              cyclic: bool = False, hold_s: float = HOLD_S) -> np.ndarray:
    """Linear gain (float32, samples) for the layers under a key active at ``active``: ``-depth_db`` dB
    where the key sounds or pauses for less than ``hold_s`` s, ramping (linear in dB) from 0 dB over
    ``attack_s`` s before each onset and back to 0 dB over ``release_s`` s after each end."""
    if depth_db <= 0 or not active.any():
        return np.ones(active.shape[0], np.float32)
    d_prev, d_next = _distances(active, cyclic)
    held = active | (d_prev + d_next <= hold_s * sr)
    d_prev, d_next = _distances(held, cyclic)
    amount = np.maximum(_ramp(d_next, attack_s * sr), _ramp(d_prev, release_s * sr))
    return (10.0 ** (-depth_db * amount / 20.0)).astype(np.float32)


def duck_layers(placed: Sequence[np.ndarray], ducks: Sequence[tuple[float, float, float]], sr: int, *,
                cyclic: bool = False) -> np.ndarray:
    """Sum of ``placed`` layers (each ``(channels, samples)``, already at their place in the mix), each one
    turned down by the deepest ducking of the *other* layers. ``ducks[i]`` is layer i's
    ``(duck_db, attack_s, release_s)``; a layer with ``duck_db`` 0 ducks nothing."""
    gains = [duck_gain(key_activity(x, sr, cyclic=cyclic), sr, depth, attack, release, cyclic=cyclic)
             if depth > 0 else None for x, (depth, attack, release) in zip(placed, ducks)]
    mix = np.zeros_like(placed[0])
    for i, x in enumerate(placed):
        others = [g for j, g in enumerate(gains) if j != i and g is not None]
        mix += x * np.minimum.reduce(others) if others else x
    return mix
