"""What the render path calls: one clip -> delivered audio + measurements; layers -> a scene mix.

``process_clip``: resample -> channels -> (loop: cut the loop, then fx run cyclically so tails wrap; else
fx, then trim/pad to the duration with a short fade-out) -> DC-blocking high-pass -> loudness + true-peak
limiter -> measure. A mono
clip delivered as stereo without effects is duplicated at the very end instead (same result, half the work).
The loop is cut before the effects (unlike the issue's order) because effects with tails can only be
made seamless on a finished loop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from ..spec import PostParams, ProcessedAudio, seconds_bars
from . import fx as fxmod
from .loop import bars_length, fixed_loop, make_loop, seam_note, seam_score, track_beats
from .loudness import LOUDNESS_MODES, Measurement, highpass, normalize
from .mix import mix_layers
from .resample import as_2d, resample, resample_cyclic, to_channels

MIX_SNAP_S = 0.005  # a tracked bar length this close to a multiple of the loop layers' lengths is that multiple
TRIM_FADE_S = 0.01  # fade-out when a one-shot is cut to its duration


def check_post(post: PostParams) -> None:
    """Raise ValueError with a readable message for delivery settings the DSP cannot honour."""
    if post.sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {post.sample_rate}")
    if post.channels not in (1, 2):
        raise ValueError(f"channels must be 1 or 2, got {post.channels}")
    if post.crossfade_s < 0:
        raise ValueError(f"crossfade_s must be >= 0, got {post.crossfade_s}")
    if not 0 <= post.highpass_hz < post.sample_rate / 2:
        raise ValueError(f"highpass_hz must be 0 (off) or below half the sample rate, got {post.highpass_hz}")
    if post.max_limit_db < 0:
        raise ValueError(f"max_limit_db must be >= 0, got {post.max_limit_db}")
    if post.loudness_mode not in LOUDNESS_MODES:
        raise ValueError(f"loudness_mode must be one of {', '.join(LOUDNESS_MODES)}, got {post.loudness_mode!r}")


@dataclass(frozen=True)
class LoopTarget:
    """What a loop row asks for, in samples at the delivery rate."""

    length: int  # loop length (samples)
    tolerance: int = 0  # how far the length may deviate to match phase (samples; ``loop_tolerance_s``)
    beats: np.ndarray | None = None  # detected beats of the source (samples): the loop starts on one
    tempo_bpm: float | None = None
    tempo_source: str | None = None  # "given", or how the tempo was estimated
    notes: tuple[str, ...] = ()


def loop_target(post: PostParams, duration_s: float, audio: np.ndarray, sr: int, align: bool = True) -> LoopTarget:
    """Loop length for ``post``: whole 4/4 bars on the clip's beat grid, else exactly ``duration_s`` seconds.

    With ``bars`` and no ``bpm`` the beat period is fitted over the tracked beats of ``audio`` (``sr`` Hz),
    with ``bpm`` it is the given one; either way the loop starts on a detected beat (see
    :func:`loop.track_beats`; a clip without a steady beat falls back to the global tempo estimate, said in
    ``tempo_source``; ``align=False`` skips the beat tracking when ``bpm`` is given). Missing ``bars`` (with
    ``bpm``) is the whole number of bars closest to ``duration_s``. Second-based loops are exactly
    ``duration_s`` unless ``post.loop_tolerance_s`` (s) lets the length move to match phase.
    """
    if post.bpm and not align:
        bars = post.bars or max(1, round(seconds_bars(duration_s, post.bpm)))
        return LoopTarget(bars_length(bars, post.bpm, sr), tempo_bpm=post.bpm, tempo_source="given")
    if post.bpm or post.bars:
        grid = track_beats(audio, sr, post.bpm)
        bars = post.bars or max(1, round(seconds_bars(duration_s, grid.bpm)))
        length = bars_length(bars, grid.bpm, sr) if post.bpm else round(bars * 4 * grid.period)
        notes = (f"tempo {grid.bpm:.2f} BPM ({grid.source})",)
        return LoopTarget(length, 0, grid.beats if grid.tracked else None, grid.bpm,
                          "given" if post.bpm else grid.source, notes)
    if duration_s <= 0:
        raise ValueError(f"loop duration must be positive, got {duration_s} s")
    if post.loop_tolerance_s < 0:
        raise ValueError(f"loop_tolerance_s must be >= 0, got {post.loop_tolerance_s}")
    n = round(duration_s * sr)
    return LoopTarget(n, min(round(post.loop_tolerance_s * sr), n // 2))


def fit_length(audio: np.ndarray, n: int, sr: int, fade_s: float = TRIM_FADE_S) -> np.ndarray:
    """Trim to ``n`` samples with a ``fade_s`` fade-out (when cut) or pad with silence."""
    x = as_2d(audio)
    if x.shape[1] >= n:
        y = x[:, :n].copy()
        f = min(n, round(fade_s * sr))
        if x.shape[1] > n and f:
            y[:, n - f :] *= np.cos(0.5 * np.pi * (np.arange(f) + 1) / f).astype(np.float32)
        return y
    return np.pad(x, ((0, 0), (0, n - x.shape[1])))


def _stats(meas: Measurement) -> dict:
    """The measurement fields of :class:`ProcessedAudio` besides loudness, true peak and status."""
    return {"lra_lu": meas.lra_lu, "max_momentary_lufs": meas.max_momentary_lufs,
            "max_short_term_lufs": meas.max_short_term_lufs, "sample_peak_dbfs": meas.sample_peak_dbfs,
            "dc_offset": meas.dc_offset, "loudness_shortfall_lu": meas.shortfall_lu}


def process_clip(audio: np.ndarray, sr_in: int, post: PostParams, duration_s: float,
                 fixed_start: bool = False) -> ProcessedAudio:
    """Deliver one generated clip (``(channels, samples)`` at ``sr_in`` Hz) for ``post`` at ``duration_s`` s.

    ``fixed_start``: a loop starts at the clip's first sample (``loop.fixed_loop``: no seam search, no beat
    rotation), so the stems of one recording, read from one position, are delivered aligned."""
    check_post(post)
    sr = post.sample_rate
    chain = fxmod.parse_fx_chain(post.fx)
    x = resample(audio, sr_in, sr)
    # a mono clip (every non-stereo MusicGen/AudioGen) delivered as stereo stays mono until the end: dual
    # mono has the same loop, seam and true peak, and its loudness is the mono energy counted per channel
    # (copies); effects may widen it, so with effects the channels are made first
    copies = post.channels if x.shape[0] == 1 and post.channels > 1 and not chain else 1
    if copies == 1:
        x = to_channels(x, post.channels)
    notes: list[str] = []
    loop_f = 0
    if post.loop:
        target = loop_target(post, duration_s, x, sr, align=not fixed_start)
        notes += target.notes
        if fixed_start:
            lp = fixed_loop(x, sr, target.length, round(post.crossfade_s * sr))
        else:
            # scored once, on the delivered audio below (effects and the limiter change the seam)
            lp = make_loop(x, sr, target.length, round(post.crossfade_s * sr), target.tolerance, target.beats,
                           score=False)
        notes += lp.notes
        loop_f = lp.crossfade
        y = highpass(fxmod.apply_fx_cyclic(lp.audio, sr, chain), sr, post.highpass_hz, cyclic=True)
    else:  # high-pass before the cut, so the fade-out stays the end
        y = fit_length(highpass(fxmod.apply_fx(x, sr, chain), sr, post.highpass_hz), round(duration_s * sr), sr)
    y, meas, more = normalize(y, sr, post.loudness_lufs, post.true_peak_db, cyclic=post.loop, copies=copies,
                              max_limit_db=post.max_limit_db, mode=post.loudness_mode)
    y = to_channels(y, post.channels)
    notes += more
    n = y.shape[1]
    score = None
    if post.loop and fixed_start:  # the score is gain-invariant: re-measured when fx or the limiter changed it
        score = lp.seam_score if not (chain or more) else seam_score(y, loop_f, at=lp.splice)
    elif post.loop:
        score = seam_score(y, loop_f, at=lp.splice)
        notes += seam_note(score)
    return ProcessedAudio(
        audio=y, sample_rate=sr, lufs=meas.lufs, true_peak_dbtp=meas.true_peak_dbtp,
        loop_start=0 if post.loop else None, loop_end=n if post.loop else None,
        seam_score=score, status=meas.status, notes=tuple(notes), **_stats(meas),
        tempo_bpm=target.tempo_bpm if post.loop else None, tempo_source=target.tempo_source if post.loop else None,
    )


def _mix_loop_target(layers: Sequence[tuple[np.ndarray, int, PostParams]], post: PostParams,
                     duration_s: float) -> LoopTarget:
    """Loop target of a loop scene: bars on the first layer's beat grid (a loop layer is tracked over three
    plays, as the scene repeats it), snapped to a common multiple of the loop layers' lengths when within
    ``MIX_SNAP_S`` of one (then the mix loops with no crossfade)."""
    sr = post.sample_rate
    audio, rate, placement = layers[0] if layers else (np.zeros((1, sr), np.float32), sr, PostParams())
    first = resample_cyclic(audio, rate, sr) if placement.loop else resample(audio, rate, sr)
    if placement.loop and not post.bpm and post.bars:
        first = np.tile(first, (1, 3))
    target = loop_target(post, duration_s, first, sr, align=False)
    lengths = [round(as_2d(a).shape[1] * sr / r) for a, r, p in layers if p.loop]
    if post.bars and not post.bpm and lengths:
        lcm = math.lcm(*lengths)
        n = max(1, round(target.length / lcm)) * lcm
        if abs(n - target.length) <= round(MIX_SNAP_S * sr):
            target = replace(target, length=n)
    return target


def process_mix(layers: Sequence[tuple[np.ndarray, int, PostParams]], post: PostParams,
                duration_s: float) -> ProcessedAudio:
    """Mix delivered layers ``(audio, sample_rate, layer placement)`` into one scene asset for ``post``.

    See :func:`mix.mix_layers` for placement; then scene loudness normalisation and the true-peak limiter
    (cyclic for loop scenes, so the mix still loops). No high-pass: the layers are delivered assets that
    already went through it, and silence before a layer's start stays digital silence.
    """
    check_post(post)
    sr = post.sample_rate
    target = LoopTarget(0)
    if post.loop:  # a bar loop without a BPM takes its beat grid from the first layer
        target = _mix_loop_target(layers, post, duration_s)
    mixed, loop_f, notes = mix_layers(layers, sr, post.channels, duration_s, loop=post.loop,
                                      length=target.length or None, crossfade=round(post.crossfade_s * sr),
                                      tolerance=target.tolerance)
    y, meas, more = normalize(mixed, sr, post.loudness_lufs, post.true_peak_db, cyclic=post.loop,
                              max_limit_db=post.max_limit_db, mode=post.loudness_mode)
    n = y.shape[1]
    return ProcessedAudio(
        audio=y, sample_rate=sr, lufs=meas.lufs, true_peak_dbtp=meas.true_peak_dbtp,
        loop_start=0 if post.loop else None, loop_end=n if post.loop else None,
        seam_score=seam_score(y, loop_f) if post.loop else None, status=meas.status,
        notes=target.notes + tuple(notes) + more, tempo_bpm=target.tempo_bpm, tempo_source=target.tempo_source,
        **_stats(meas),
    )
