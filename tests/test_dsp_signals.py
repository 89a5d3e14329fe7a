"""Test signals shared by the dsp tests (deterministic); holds no tests itself."""

from __future__ import annotations

import numpy as np


def sine(sr: int, seconds: float, freq: float = 441.3, amp: float = 0.5, channels: int = 2) -> np.ndarray:
    t = np.arange(round(sr * seconds)) / sr
    return np.tile(amp * np.sin(2 * np.pi * freq * t), (channels, 1)).astype(np.float32)


def noise(sr: int, seconds: float, amp: float = 0.1, seed: int = 0, channels: int = 2) -> np.ndarray:
    return (amp * np.random.default_rng(seed).standard_normal((channels, round(sr * seconds)))).astype(np.float32)


def music(sr: int, seconds: float, bpm: float = 120.0, seed: int = 1, intro: bool = True) -> np.ndarray:
    """Music-like stereo: kick on beats, hats on eighths, a chord pad and a bass line; optional quiet intro."""
    rng = np.random.default_rng(seed)
    n = round(sr * seconds)
    t = np.arange(n) / sr
    beat = (t * bpm / 60) % 1
    eighth = (t * bpm / 30) % 1
    attack = np.minimum(1.0, beat * 60 / bpm / 0.003)  # 3 ms attack: hits without clicks, like real drums
    kick = 0.7 * attack * np.exp(-beat * 25) * np.sin(2 * np.pi * 55 * t)
    hats = 0.15 * np.exp(-eighth * 80) * rng.standard_normal(n)
    pad = sum(0.08 * np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6))
    bass = 0.2 * np.sin(2 * np.pi * 110 * t * (1 + 0.5 * (np.floor(t * bpm / 120) % 2)))
    left = kick + hats + pad + bass
    right = kick + 0.8 * hats + pad * 0.9 + bass
    env = np.minimum(1.0, 0.1 + t / 2.0) if intro else 1.0  # a 2 s fade-in so gating matters
    return (np.stack([left, right]) * env).astype(np.float32)
