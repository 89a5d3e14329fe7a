"""Scene mixing: per-layer rate/channels, gain, start offset, fades, loop layers tiled to the scene length,
side-chain ducking of the other layers under a layer with ``duck_db`` (:mod:`duck`).

Loop scenes are mixed *cyclically*: every layer is placed modulo the mix length, so a layer that runs
past the end wraps to the start. When every loop layer's length divides the mix length, the mix loops
exactly with no crossfade at all; otherwise a longer linear mix is rendered and the loop machinery
(:func:`loop.make_loop`) cuts a seamless loop from it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..spec import PostParams
from .duck import duck_layers
from .loop import make_loop, tile_loop
from .resample import as_2d, resample, resample_cyclic, to_channels



def fades(x: np.ndarray, sr: int, fade_in_s: float, fade_out_s: float) -> np.ndarray:
    """Equal-power (quarter-sine) fade-in and fade-out of ``fade_in_s`` / ``fade_out_s`` seconds."""
    y = as_2d(x).copy()
    n = y.shape[1]
    fi, fo = min(n, round(fade_in_s * sr)), min(n, round(fade_out_s * sr))
    if fi:
        y[:, :fi] *= np.sin(0.5 * np.pi * (np.arange(fi) + 0.5) / fi).astype(np.float32)
    if fo:
        y[:, n - fo :] *= np.cos(0.5 * np.pi * (np.arange(fo) + 0.5) / fo).astype(np.float32)
    return y


def prepare_layer(audio: np.ndarray, sr_in: int, p: PostParams, sr: int, channels: int) -> np.ndarray:
    """Layer at the mix rate (cyclic resampling for loops) and channel count, with its gain (dB) applied."""
    x = resample_cyclic(audio, sr_in, sr) if p.loop else resample(audio, sr_in, sr)
    return to_channels(x, channels) * np.float32(10.0 ** (p.gain_db / 20.0))


def common_loop_length(lengths: Sequence[int], target: int, tolerance: int = 0) -> int | None:
    """A multiple of all loop lengths (samples) within ``tolerance`` samples of ``target``, else None."""
    if not lengths:
        return None
    lcm = math.lcm(*lengths)
    n = max(1, round(target / lcm)) * lcm
    return n if abs(n - target) <= tolerance else None


def _place(mix: np.ndarray, x: np.ndarray, start: int, cyclic: bool) -> None:
    n = mix.shape[1]
    if cyclic:
        x = x[:, :n]
        idx = (start + np.arange(x.shape[1])) % n  # unique: x is at most one cycle
        mix[:, idx] += x
    elif start < n:
        seg = x[:, : n - start]
        mix[:, start : start + seg.shape[1]] += seg


def mix_layers(layers: Sequence[tuple[np.ndarray, int, PostParams]], sr: int, channels: int, duration_s: float,
               loop: bool = False, length: int | None = None, crossfade: int = 0, tolerance: int = 0
               ) -> tuple[np.ndarray, int, tuple[str, ...]]:
    """Sum layers into a ``(channels, samples)`` mix at ``sr`` Hz -> (mix, loop crossfade used, notes).

    Non-loop scenes are ``round(duration_s*sr)`` samples (or ``length``); loop layers are tiled from their
    ``start_s`` to the end, other layers placed at ``start_s`` and cut at the end; fades apply to each
    layer's span in the mix; a layer with ``duck_db`` turns the others down while it sounds (cyclically in a
    loop scene). Loop scenes: see the module docstring; loop layers' fades are not applied
    there (a fade cannot loop). A loop scene is ``length`` (else ``round(duration_s*sr)``) samples, or a
    common multiple of the loop layers within ``tolerance`` samples of it.
    """
    if not layers:
        raise ValueError("a mix needs at least one layer")
    notes: list[str] = []
    prepared = [(prepare_layer(a, r, p, sr, channels), p) for a, r, p in layers]
    target = length or round(duration_s * sr)
    if target <= 0:
        raise ValueError(f"mix duration must be positive, got {duration_s} s")
    # with ducking, each layer is placed on its own so that the keys' gains can be applied to the others
    ducking = any(p.duck_db > 0 for _, p in prepared)
    ducks = [(p.duck_db, p.duck_attack_s, p.duck_release_s) for _, p in prepared]

    def buffers(n: int) -> list[np.ndarray]:
        if ducking:
            return [np.zeros((channels, n), np.float32) for _ in prepared]
        return [np.zeros((channels, n), np.float32)] * len(prepared)  # one buffer: every layer sums into it

    if not loop:
        bufs = buffers(target)
        for buf, (x, p) in zip(bufs, prepared):
            start = round(p.start_s * sr)
            span = max(0, target - start)
            x = tile_loop(x, span) if p.loop else x[:, :span]
            _place(buf, fades(x, sr, p.fade_in_s, p.fade_out_s), start, cyclic=False)
        return (duck_layers(bufs, ducks, sr) if ducking else bufs[0]), 0, ()
    loop_lengths = [x.shape[1] for x, p in prepared if p.loop]
    if not loop_lengths:  # only one-shots: cyclic placement alone makes the loop
        exact: int | None = target
    else:
        exact = common_loop_length(loop_lengths, target, tolerance)
    n = exact or target + crossfade  # without a common length: render extra material for the loop cut
    bufs = buffers(n)
    for buf, (x, p) in zip(bufs, prepared):
        start = round(p.start_s * sr)
        if p.loop:
            if p.fade_in_s or p.fade_out_s:
                notes.append("fades of loop layers are ignored in a loop scene")
            _place(buf, tile_loop(x, n), start, cyclic=True)
        else:
            if x.shape[1] > n:
                notes.append("a one-shot layer is longer than the loop scene: cut")
            _place(buf, fades(x[:, :n], sr, p.fade_in_s, p.fade_out_s), start, cyclic=True)
    mix = duck_layers(bufs, ducks, sr, cyclic=True) if ducking else bufs[0]
    if exact:
        return mix, 0, tuple(notes)
    lp = make_loop(mix, sr, target, crossfade, tolerance)
    notes.append("loop layers have no common length near the duration: mix loop cut with a crossfade")
    return lp.audio, lp.crossfade, tuple(notes) + lp.notes
