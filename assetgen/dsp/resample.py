"""Sample-rate conversion (soxr) and channel policy."""

from __future__ import annotations

import numpy as np
import soxr


def as_2d(audio: np.ndarray) -> np.ndarray:
    """``(samples,)`` or ``(channels, samples)`` -> float32 ``(channels, samples)``."""
    arr = np.asarray(audio, dtype=np.float32)
    if arr.ndim == 1:
        return arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"audio must be (channels, samples), got shape {arr.shape}")
    return arr


def resample(audio: np.ndarray, sr_in: int, sr_out: int, quality: str = "HQ") -> np.ndarray:
    """Resample ``(channels, samples)`` from ``sr_in`` to ``sr_out`` Hz with soxr; float32 out."""
    x = as_2d(audio)
    if sr_in == sr_out:
        return x
    if sr_in <= 0 or sr_out <= 0:
        raise ValueError(f"sample rates must be positive, got {sr_in} -> {sr_out}")
    # channel by channel: soxr works faster on contiguous mono runs than on interleaved frames, and the
    # result is already channels-first
    return np.stack([soxr.resample(np.ascontiguousarray(c), sr_in, sr_out, quality=quality) for c in x])


def resample_cyclic(audio: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample a loop so it still loops: the filter sees the wrapped signal at both edges.

    Output length is ``round(samples * sr_out / sr_in)``.
    """
    x = as_2d(audio)
    if sr_in == sr_out:
        return x
    n = x.shape[1]
    pad = min(n, max(1024, sr_in // 20))  # 50 ms of context covers soxr's HQ filter support
    padded = np.concatenate([x[:, n - pad :], x, x[:, :pad]], axis=1)
    y = resample(padded, sr_in, sr_out)
    start = round(pad * sr_out / sr_in)
    return y[:, start : start + round(n * sr_out / sr_in)]


def to_channels(audio: np.ndarray, channels: int) -> np.ndarray:
    """Channel policy: mono stays mono or is duplicated; more channels to mono is their mean."""
    x = as_2d(audio)
    have = x.shape[0]
    if have == channels:
        return x
    if channels == 1:
        return x.mean(axis=0, keepdims=True, dtype=np.float32)
    if have == 1:
        return np.repeat(x, channels, axis=0)
    raise ValueError(f"cannot map {have} channels to {channels} (only mono <-> N)")
