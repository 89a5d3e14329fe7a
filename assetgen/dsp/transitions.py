"""Crossfade curves and equal-power crossfade concatenation (the seed's scene transitions, vectorised)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .resample import as_2d


def equal_power(n: int, correlation: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Fade-in and fade-out gains (float32, length ``n`` samples) of an equal-power crossfade.

    ``sin``/``cos`` quarter waves keep the power of uncorrelated signals constant (a^2 + b^2 = 1). For
    material correlated by ``correlation`` (clipped to [0, 1]) both are divided by
    ``sqrt(1 + 2*rho*a*b)`` so that ``a^2 + b^2 + 2*rho*a*b = 1`` -- the power stays constant too
    (rho = 1 gives gains summing to 1, no +3 dB bump on identical material).
    """
    t = (np.arange(n, dtype=np.float64) + 0.5) / max(n, 1)
    fade_in, fade_out = np.sin(0.5 * np.pi * t), np.cos(0.5 * np.pi * t)
    rho = float(np.clip(correlation, 0.0, 1.0))
    if rho > 0:
        norm = 1.0 / np.sqrt(1.0 + 2.0 * rho * fade_in * fade_out)
        fade_in, fade_out = fade_in * norm, fade_out * norm
    return fade_in.astype(np.float32), fade_out.astype(np.float32)


def crossfade_concat(clips: Sequence[np.ndarray], sr: int, crossfade_s: float) -> np.ndarray:
    """Concatenate ``(channels, samples)`` clips, overlapping neighbours by ``crossfade_s`` seconds.

    Each overlap is an equal-power crossfade (shortened to fit the shorter neighbour). Output length is
    ``sum(lengths) - sum(overlaps)`` samples. All clips must share ``sr`` and channel count.
    """
    parts = [as_2d(c) for c in clips]
    if not parts:
        raise ValueError("crossfade_concat needs at least one clip")
    if len({p.shape[0] for p in parts}) != 1:
        raise ValueError("clips must have the same number of channels")
    want = max(0, round(crossfade_s * sr))
    out = parts[0]
    for nxt in parts[1:]:
        f = min(want, out.shape[1], nxt.shape[1])
        fade_in, fade_out = equal_power(f)
        mid = out[:, out.shape[1] - f :] * fade_out + nxt[:, :f] * fade_in
        out = np.concatenate([out[:, : out.shape[1] - f], mid, nxt[:, f:]], axis=1)
    return out.astype(np.float32, copy=False)
