"""Seamless loops: loop-length targets, loop-point search, crossfade into the continuation, seam score.

Construction (vectorised numpy). For a loop of ``d`` samples starting at source sample ``s`` with a
crossfade of ``F`` samples, the delivered loop is ``y = x[s : s+d]`` whose first ``F`` samples are
crossfaded with the material that *follows* the loop end::

    y[n] = a(n) * x[s+n] + b(n) * x[s+d+n]      0 <= n < F   (a: 0 -> 1, b: 1 -> 0)

Played back to back, ``y[d-1] = x[s+d-1]`` is followed by ``y[0] ~ x[s+d]`` -- consecutive source samples --
so the seam has no step by construction and zero-crossing alignment is not needed; what is left to
choose is where the two crossfaded segments ``A = x[s:s+F]`` and ``B = x[s+d:s+d+F]`` are most alike.
The search maximises their normalised correlation over start ``s`` (and, when the row allows a length
tolerance, over ``d`` within it, which phase-aligns periodic material), then re-ranks the best few by the
distance of their magnitude spectra. The crossfade curve is equal-power, compensated for the measured
correlation (see :func:`transitions.equal_power`).

Exact lengths (no tolerance): the search also tries lags ``d' = d + delta`` within a few milliseconds; when
one matches better, both crossfaded segments are read through the same slowly varying time shift
``g(n) = -delta * (1 + cos(pi n / F)) / 2``, so they stay ``d'`` apart (phase-aligned) while the loop is
exactly ``d`` samples and both ends of the crossfade join the source continuously, rate and all. The shift
changes the playback rate by at most ``pi/2 * |delta| / F`` (``|delta| / F`` <= ``MAX_WARP``), inside the
crossfade only.

Beat grids (:func:`track_beats`): librosa's onset envelope and dynamic-programming beat tracker give beat
frames (10 ms); each is refined to the strongest power rise (5 ms after vs 20 ms before) within +-50 ms
(0.125 ms resolution; the half-way points too, in case the tracker followed the off-beat), and a robust
least-squares line ``beat index -> time`` gives the period and phase (through the tracked frames
themselves when the attacks are too soft to refine). A loop of whole beats is then rotated so that its
first sample is a detected beat (rotating a seamless loop keeps it seamless).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft
from scipy.ndimage import map_coordinates
from scipy.signal import correlate

from ..spec import bars_seconds
from .resample import as_2d
from .transitions import crossfade_concat, equal_power

SEAM_THRESHOLD = 1.0  # seam scores above this are flagged (the seam is twice the clip's own variation)
_FRAME, _HOP = 2048, 512
# exact-length loops: lag search +- this (aligns tones above ~170 Hz, keeps those above ~85 Hz out of anti-phase)
PHASE_WINDOW_S = 0.003
MAX_WARP = 0.01  # ... and at most this fraction of the crossfade (the time shift's rate change)
# beat tracking: onset envelope at 8 kHz (kicks and snares, not hats), 80-sample hop (10 ms frames)
_BEAT_SR, _BEAT_HOP, _BEAT_FFT = 8_000, 80, 256
ONSET_BEFORE_S, ONSET_AFTER_S = 0.02, 0.005  # power windows before / after a candidate onset
BEAT_SEARCH_S = 0.05  # each tracked beat is refined within +- this (at most a quarter beat)
BEAT_INLIER_S = 0.006  # a refined beat within this of the fitted grid counts as on the grid
COARSE_INLIER_S = 0.012  # ... a tracked frame (10 ms) within this, when attacks are too soft to refine
GIVEN_BPM_SPAN_S = 16.0  # with a given BPM only the phase is fitted: on this much of the clip
MIN_SALIENCE = 1.75  # mean onset strength on the tracked beats / overall mean, below: no pulse (noise ~1.3)
MIN_BEATS = 8  # fewer beats on the grid than this (or than half the tracked ones): no beat grid


@dataclass(frozen=True)
class Loop:
    """A delivered loop: ``audio`` is exactly the loop (loop_start=0, loop_end=len); source offsets in samples."""

    audio: np.ndarray
    source_start: int  # s: where the loop starts in the source (samples)
    length: int  # d: loop length (samples)
    crossfade: int  # F (samples)
    correlation: float  # normalised correlation of the crossfaded segments (1 = identical)
    seam_score: float
    notes: tuple[str, ...] = ()
    rotation: int = 0  # delivered sample 0 is source sample ``source_start + rotation`` (a beat, when aligned)

    @property
    def flagged(self) -> bool:
        return self.seam_score > SEAM_THRESHOLD

    @property
    def splice(self) -> int:
        """Where the crossfade starts in ``audio`` (samples): ``seam_score(audio, crossfade, at=splice)``."""
        return (self.length - self.rotation) % self.length


@dataclass(frozen=True)
class BeatGrid:
    """Beat grid of a clip: period and detected beats in samples at the clip's rate."""

    period: float  # samples per beat: fitted, or given by the row's BPM
    beats: np.ndarray  # detected beats on the grid (samples, float, ascending); empty when none were found
    bpm: float  # 60 * sr / period
    residual_ms: float | None  # RMS distance of ``beats`` from the fitted line (ms); None without a fit
    source: str  # how the tempo was found, for the log / index ("beat-tracked: 37 beats, ...")

    @property
    def tracked(self) -> bool:
        return self.beats.size > 0


def estimate_bpm(audio: np.ndarray, sr: int) -> float:
    """Tempo (beats per minute) of ``audio`` with librosa's onset-autocorrelation estimator."""
    import librosa

    mono = as_2d(audio).mean(axis=0)
    tempo = librosa.feature.tempo(y=mono, sr=sr)
    return float(np.atleast_1d(tempo)[0])


def _onsets(c: np.ndarray, sr: int, centres: np.ndarray, search: int) -> tuple[np.ndarray, np.ndarray]:
    """For each ``centres`` sample of a mono signal with energy cumsum ``c`` (``c[i]`` = sum of the first ``i``
    squared samples), the sample within +-``search`` where the mean power of the next ``ONSET_AFTER_S`` most
    exceeds that of the previous ``ONSET_BEFORE_S`` (the attack of a hit; windows of several periods of a
    kick's fundamental, so its cycles do not read as onsets), and that ratio."""
    kb, ka = max(1, round(ONSET_BEFORE_S * sr)), max(1, round(ONSET_AFTER_S * sr))
    size = c.size - 1
    floor = 1e-6 * c[-1] / max(size, 1) + 1e-20  # 60 dB under the clip's mean power
    cand = np.clip(np.round(centres)[:, None].astype(np.int64) + np.arange(-search, search + 1), kb, size - ka)
    ratio = ((c[cand + ka] - c[cand]) / ka + floor) / ((c[cand] - c[cand - kb]) / kb + floor)
    best = np.argmax(ratio, axis=1)
    rows = np.arange(cand.shape[0])
    return cand[rows, best], ratio[rows, best]


def _fit_grid(t: np.ndarray, period: float | None, tol: float) -> tuple[float, float, np.ndarray]:
    """Robust line ``beat index -> time`` through beat times ``t`` (samples, ascending).

    Indices count periods from the first beat (skipped beats keep their place). Theil-Sen (median of
    pairwise slopes) first, so stray beats cannot pull the line, then least squares over the beats within
    ``tol`` samples of it. With ``period`` given only the phase is fitted. Returns (period, phase, inliers).
    """
    from scipy.stats import theilslopes

    p0 = period or float(np.median(np.diff(t)))
    idx = np.round((t - t[0]) / p0)
    if period:
        p, phase = period, float(np.median(t - idx * period))
    else:
        p, phase = theilslopes(t, idx)[:2]
    keep = np.abs(t - (phase + idx * p)) <= tol
    if keep.sum() >= 2:
        if period:
            phase = float(np.mean(t[keep] - idx[keep] * period))
        else:
            p, phase = np.polyfit(idx[keep], t[keep], 1)
        keep = np.abs(t - (phase + idx * p)) <= tol
    return float(p), float(phase), keep


def track_beats(audio: np.ndarray, sr: int, bpm: float | None = None) -> BeatGrid:
    """Beat grid of ``audio`` (``(channels, samples)`` at ``sr`` Hz): beat-tracked, period fitted over the clip.

    With ``bpm`` the period is the given one and only the detected beats of the first ``GIVEN_BPM_SPAN_S``
    are returned (to start the loop on one). No pulse or too few beats on a steady grid (noise, ambience):
    the beats are empty and, without ``bpm``, the period is librosa's global tempo estimate (from the same
    onset envelope); ``source`` says which.
    """
    import librosa
    import soxr

    x = as_2d(audio)
    mono = _mono(x[:, : round(GIVEN_BPM_SPAN_S * sr)] if bpm else x)
    y = soxr.resample(np.ascontiguousarray(mono), sr, _BEAT_SR, quality="LQ") if sr != _BEAT_SR else mono
    env = librosa.onset.onset_strength(y=y, sr=_BEAT_SR, hop_length=_BEAT_HOP, n_fft=_BEAT_FFT, n_mels=40)
    tempo, frames = librosa.beat.beat_track(onset_envelope=env, sr=_BEAT_SR, hop_length=_BEAT_HOP, bpm=bpm)
    tempo = float(np.atleast_1d(tempo)[0])
    scale = sr / _BEAT_SR
    given = 60.0 * sr / bpm if bpm else None
    # pulse salience: onset strength on the tracked beats over its mean (noise and pads ~1.3)
    salience = float(env[frames].mean() / (env.mean() + 1e-12)) if frames.size else 0.0
    why = f"{frames.size} beats tracked, pulse salience {salience:.2f}"
    if frames.size >= MIN_BEATS and salience >= MIN_SALIENCE:
        # the tracker may follow the off-beat (hats): refine both the tracked frames and the points half-way
        # between them, and keep the set with the stronger attacks
        c = np.asarray(frames, np.float64) * _BEAT_HOP
        half = float(np.median(np.diff(c))) / 2
        search = round(min(BEAT_SEARCH_S * _BEAT_SR, half / 2))
        energy = np.concatenate([[0.0], np.cumsum(np.square(y, dtype=np.float64))])
        on, strength = _onsets(energy, _BEAT_SR, c, search)
        off, off_strength = _onsets(energy, _BEAT_SR, c + half, search)
        if np.median(off_strength) > np.median(strength):
            on = off
        # soft attacks (strings, pads) have no sharp onset to refine: then the tracked frames themselves
        for t, tol, kind in ((on, BEAT_INLIER_S, "beats"), (c, COARSE_INLIER_S, "beats at frame precision")):
            t = np.unique(t * scale)
            if t.size < MIN_BEATS:
                continue
            period, phase, keep = _fit_grid(t, given, tol * sr)
            n = int(keep.sum())
            if n >= max(MIN_BEATS, 0.5 * frames.size) and period > 0:
                idx = np.round((t[keep] - t[0]) / period)
                res = float(np.sqrt(np.mean(np.square(t[keep] - phase - idx * period)))) / sr * 1000.0
                how = f"{n} {kind}, fit residual {res:.1f} ms"
                src = f"given; start on a tracked beat ({how})" if bpm else f"beat-tracked: {how}"
                return BeatGrid(period, t[keep], 60.0 * sr / period, res, src)
        why = f"{frames.size} beats tracked, too few on a steady grid"
    elif frames.size >= MIN_BEATS:
        why += f" < {MIN_SALIENCE}"
    if bpm:
        return BeatGrid(given, np.empty(0), bpm, None, f"given; no steady beat to start on ({why})")
    if tempo <= 0:  # no onsets at all (silence): the tempo estimator's prior-weighted answer
        tempo = librosa.feature.tempo(onset_envelope=env, sr=_BEAT_SR, hop_length=_BEAT_HOP)
        tempo = float(np.atleast_1d(tempo)[0])
    if tempo <= 0:
        raise ValueError("no tempo could be estimated from the clip; give the row a bpm")
    return BeatGrid(60.0 * sr / tempo, np.empty(0), tempo, None, f"global tempo estimate ({why})")


def bars_length(bars: int, bpm: float, sr: int, beats_per_bar: int = 4) -> int:
    """Loop length in samples of ``bars`` whole bars at ``bpm``: ``round(bars*beats_per_bar*60/bpm*sr)``."""
    if bars <= 0 or bpm <= 0:
        raise ValueError(f"bars and bpm must be positive, got bars={bars}, bpm={bpm}")
    return round(bars_seconds(bars, bpm, beats_per_bar) * sr)


def _mono(x: np.ndarray, idx: np.ndarray | slice = slice(None)) -> np.ndarray:
    """Channel mean (float32) of ``(channels, samples)`` at ``idx`` (a slice or an index array of any shape):
    what the loop search and the seam score look at."""
    if x.shape[0] == 2:
        return x[0][idx] * np.float32(0.5) + x[1][idx] * np.float32(0.5)
    return x[0][idx] if x.shape[0] == 1 else x[:, idx].mean(axis=0, dtype=np.float32)


def _step_p99(x: np.ndarray, max_n: int = 50_000) -> float:
    """99th percentile of the channel mean's sample steps ``|diff|`` on an evenly strided subset of at most
    ~``max_n`` steps (statistics, not exactness; only those samples are read)."""
    x = as_2d(x)
    i = np.arange(0, x.shape[1] - 1, max(1, (x.shape[1] - 1) // max_n))
    return float(np.percentile(np.abs(_mono(x, i + 1).astype(np.float64) - _mono(x, i)), 99))


def _window_sums(v: np.ndarray, width: int) -> np.ndarray:
    c = np.concatenate([[0.0], np.cumsum(v, dtype=np.float64)])
    return c[width:] - c[:-width]


def _candidates_fixed(m: np.ndarray, d: int, f: int, slack: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Correlation of x[s:s+f] with x[s+d:s+d+f] for every s in [0, slack]."""
    n = slack + f
    a, b = m[:n], m[d : d + n]
    num = _window_sums(a * b, f)
    den = np.sqrt(_window_sums(a * a, f) * _window_sums(b * b, f)) + 1e-20
    rho = num / den
    return np.arange(slack + 1), np.full(slack + 1, d), rho


def _candidates_window(m: np.ndarray, d_min: int, d_max: int, f: int, slack: int, n_starts: int = 6):
    """Correlation over a few starts s and every length d in [d_min, d_max] (FFT cross-correlation)."""
    starts = np.unique(np.linspace(0, slack, min(n_starts, slack + 1)).round().astype(int))
    ss, dd, rr = [], [], []
    for s in starts:
        a = m[s : s + f]
        region = m[s + d_min : s + d_max + f]
        num = correlate(region, a, mode="valid", method="fft")
        den = np.sqrt(float(a @ a) * _window_sums(region * region, f)) + 1e-20
        ss.append(np.full(num.size, s))
        dd.append(np.arange(d_min, d_min + num.size))
        rr.append(num / den)
    return np.concatenate(ss), np.concatenate(dd), np.concatenate(rr)


def _seam_penalty(m: np.ndarray, ends: np.ndarray, sr: int) -> np.ndarray:
    """Penalty for putting the wrap at source sample ``ends``: a large sample step or an onset there.

    The wrap plays the consecutive source samples ``end-1, end``; if they are a transient attack the loop
    restarts on a hit, which reads as a click. Step relative to the clip's 99th-percentile step, onset as
    the |log2| energy ratio of the 5 ms after vs before (this is the zero-crossing / quiet-point alignment).
    """
    p99 = _step_p99(m) + 1e-12
    step = np.abs(m[ends].astype(np.float64) - m[ends - 1]) / p99
    w = max(1, round(0.005 * sr))
    a, b = max(0, int(ends.min()) - w), min(m.size, int(ends.max()) + w)  # only the region around the ends
    c = np.concatenate([[0.0], np.cumsum(np.square(m[a:b], dtype=np.float64))])
    lo, mid, hi = np.clip(ends - w, a, b) - a, ends - a, np.clip(ends + w, a, b) - a
    before, after = c[mid] - c[lo] + 1e-12, c[hi] - c[mid] + 1e-12
    onset = np.abs(np.log2(after / before))
    return 0.5 * np.maximum(0.0, step - 0.5) + 0.1 * np.minimum(onset, 5.0)


def _spectral_distances(m: np.ndarray, starts: np.ndarray, lags: np.ndarray, f: int) -> np.ndarray:
    """For each pair ``A = m[s:s+f]``, ``B = m[s+lag:s+lag+f]``: mean absolute difference of their log
    magnitude spectra (Hann window, in units of 20 dB; bins 60 dB under the pair's peak count as that floor).
    All pairs in one batched float32 FFT."""
    view = np.lib.stride_tricks.sliding_window_view(m, f)
    frames = np.concatenate([view[starts], view[starts + lags]]) * np.hanning(f).astype(np.float32)
    mag = np.abs(scipy.fft.rfft(frames, n=scipy.fft.next_fast_len(f, real=True), axis=-1))
    pa, pb = mag[: starts.size], mag[starts.size :]
    floor = 1e-3 * np.maximum(np.maximum(pa.max(axis=1), pb.max(axis=1)), 1e-12)[:, None]
    return np.mean(np.abs(np.log10(np.maximum(pa, floor)) - np.log10(np.maximum(pb, floor))), axis=1)


def _warped(x: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """``x`` (channels, samples) read at fractional sample positions ``pos`` (quintic spline interpolation)."""
    lo, hi = max(0, int(np.floor(pos.min())) - 8), min(x.shape[1], int(np.ceil(pos.max())) + 9)
    seg = x[:, lo:hi].astype(np.float64)
    return np.stack([map_coordinates(c, [pos - lo], order=5, mode="nearest") for c in seg]).astype(np.float32)


def _rotation(beats: np.ndarray | None, s: int, d: int, f: int) -> int:
    """Offset into the loop (samples) of the first detected beat after the crossfade (else within the loop)."""
    if beats is None or not beats.size:
        return 0
    b = np.round(np.asarray(beats)).astype(np.int64)
    inside = b[(b >= s) & (b < s + d)]
    if not inside.size:  # beats past the loop, folded back by whole loop lengths (the grid repeats)
        inside = s + (b - s) % d
    after = inside[inside >= s + f]
    return int((after[0] if after.size else inside.min()) - s) % d


def make_loop(audio: np.ndarray, sr: int, length: int, crossfade: int, tolerance: int = 0,
              beats: np.ndarray | None = None, score: bool = True) -> Loop:
    """Cut a seamless loop of ``length`` (+- ``tolerance``) samples from ``audio`` with a ``crossfade``-sample seam.

    ``tolerance=0`` keeps the length exact (phase is matched with a time-warped crossfade instead, see the
    module docstring). ``beats`` (source samples): the delivered loop is rotated to start on the first of
    them after the crossfade. The source should hold ``length + tolerance + crossfade`` samples; shorter
    sources shrink the crossfade, and sources shorter than the loop are first extended by repeating them
    (noted). ``score=False`` leaves ``seam_score`` NaN (and no seam note) for a caller that scores the
    audio it finally delivers (see :func:`seam_note`).
    """
    x = as_2d(audio)
    if length <= 0:
        raise ValueError(f"loop length must be positive, got {length} samples")
    notes: list[str] = []
    f_min = max(1, min(crossfade, length // 8, round(0.005 * sr)))
    d_min = max(1, length - tolerance)
    # the length window gives way to the crossfade: generated audio is usually length + crossfade long
    d_max = max(length, min(length + tolerance, x.shape[1] - crossfade))
    if x.shape[1] < d_max + f_min:
        reps = -(-(d_max + crossfade) // max(x.shape[1], 1)) + 1
        x = crossfade_concat([x] * reps, sr, min(crossfade, x.shape[1] // 4) / sr)
        notes.append(f"source shorter than the loop: repeated {reps}x")
        beats = None  # the repeats break the source's beat grid
    # exact lengths keep room for the lag window: w samples before the start and after the continuation
    w = min(round(PHASE_WINDOW_S * sr), round(MAX_WARP * crossfade)) if tolerance == 0 else 0
    f = max(f_min, min(crossfade, length // 2, x.shape[1] - d_max - 2 * w))
    slack = x.shape[1] - d_max - f
    m = _mono(x)
    if tolerance == 0:
        ss, dd, rr = _candidates_fixed(m, length, f, slack)  # ss = 0 .. slack
        pen = _seam_penalty(m, ss + length, sr)  # the wrap is at s + length whatever the lag
        # lags near the exact length at the best exact start, read through the time-warped crossfade: the
        # source must hold w samples before the start and after the continuation
        w = min(w, round(MAX_WARP * f), slack // 2)
        if w > 0:
            s0 = int(np.clip(np.argmax(rr - pen), w, slack - w))
            ws, wd, wr = _candidates_window(m[s0:], length - w, length + w, f, 0, n_starts=1)
            ok = wd != length
            ss, dd = np.concatenate([ss, ws[ok] + s0]), np.concatenate([dd, wd[ok]])
            rr, pen = np.concatenate([rr, wr[ok]]), np.concatenate([pen, np.full(int(ok.sum()), pen[s0])])
        scale = max(w, 1)
    else:
        ss, dd, rr = _candidates_window(m, d_min, d_max, f, slack)
        pen, scale = _seam_penalty(m, ss + dd, sr), max(tolerance, 1)
    if f < crossfade - 2 * round(PHASE_WINDOW_S * sr):  # the lag window's room is not worth a note
        notes.append(f"crossfade shortened to {f} samples (not enough source material)")
    # prefer lengths close to the target (a 0.02 correlation penalty at the window edge), then re-rank the
    # best few by spectral distance
    rank = rr - 0.02 * np.abs(dd - length) / scale - pen
    top = np.argsort(-rank, kind="stable")[:8]
    cost = (1.0 - rank[top]) + 0.5 * _spectral_distances(m, ss[top], dd[top], f)
    best = top[int(np.argmin(cost))]
    s, lag, rho = int(ss[best]), int(dd[best]), float(rr[best])
    d = length if tolerance == 0 else lag
    r = _rotation(beats, s, d, f)
    # delivered sample k is source sample s + (r + k) % d; the crossfade (source s .. s+f) lands at d - r
    y = np.concatenate([x[:, s + r : s + d], x[:, s : s + r]], axis=1) if r else x[:, s : s + d].copy()
    fade_in, fade_out = equal_power(f, rho)
    n = np.arange(f, dtype=np.float64)
    if lag == d:
        a, b = x[:, s : s + f], x[:, s + d : s + d + f]
    else:  # both segments read through the same shift g(n) = -delta * (1 + cos(pi n / f)) / 2, delta = lag - d
        g = (d - lag) * 0.5 * (1.0 + np.cos(np.pi * (n + 0.5) / f))
        a = _warped(x, s + n + g)
        b = _warped(x, s + lag + n + g)
        notes.append(f"phase matched by a {lag - d:+d}-sample time shift inside the crossfade")
    blend = a * fade_in + b * fade_out
    at = (d - r) % d
    if at + f <= d:
        y[:, at : at + f] = blend
    else:
        y[:, (at + np.arange(f)) % d] = blend
    value = seam_score(y, f, at=at) if score else float("nan")
    notes += seam_note(value)
    return Loop(y, s, d, f, rho, value, tuple(notes), rotation=r)


def seam_note(score: float) -> list[str]:
    """The note for a seam score above ``SEAM_THRESHOLD`` (none otherwise)."""
    return [f"seam score {score:.2f} above {SEAM_THRESHOLD}"] if score > SEAM_THRESHOLD else []


def fixed_loop(audio: np.ndarray, sr: int, length: int, crossfade: int) -> Loop:
    """A loop of ``length`` samples cut at the very start of ``audio``, no search and no rotation: the material
    after the loop (up to ``crossfade`` samples) is crossfaded into its head, so the wrap continues the source.
    Stems of one recording cut this way from the same source position stay aligned sample for sample."""
    x = as_2d(audio)
    if x.shape[1] < length or length <= 0:
        raise ValueError(f"a fixed loop of {length} samples needs that much audio, got {x.shape[1]}")
    f = max(0, min(crossfade, x.shape[1] - length, length // 2))
    y = x[:, :length].copy()
    rho = 0.0
    notes: tuple[str, ...] = ()
    if f:
        head, tail = _mono(x, slice(0, f)), _mono(x, slice(length, length + f))
        norm = float(np.sqrt(np.dot(head, head) * np.dot(tail, tail)))
        rho = float(np.dot(head, tail) / norm) if norm > 0 else 0.0
        fade_in, fade_out = equal_power(f, rho)
        y[:, :f] = x[:, :f] * fade_in + x[:, length:length + f] * fade_out
    if f < crossfade:
        notes = (f"crossfade shortened to {f} samples (not enough source material)",)
    return Loop(y, 0, length, f, rho, seam_score(y, f), notes)


def _flux(frames_a: np.ndarray, frames_b: np.ndarray) -> np.ndarray:
    """Normalised spectral flux between paired frames: ||A|-|B|| / (|A| + |B|), 0..1."""
    w = np.hanning(frames_a.shape[-1]).astype(np.float32)
    ma, mb = np.abs(scipy.fft.rfft(frames_a * w)), np.abs(scipy.fft.rfft(frames_b * w))  # float32 FFTs
    num = np.linalg.norm(ma - mb, axis=-1)
    den = np.linalg.norm(ma, axis=-1) + np.linalg.norm(mb, axis=-1) + 1e-12
    return num / den


def _mono_frames(x: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """Channel-mean frames ``x[:, s : s + width]`` for each ``s`` in ``starts`` -> ``(len(starts), width)``."""
    view = np.lib.stride_tricks.sliding_window_view
    return _mono(np.stack([view(c, width)[starts] for c in x]).reshape(x.shape[0], -1)).reshape(-1, width)


def seam_score(loop: np.ndarray, crossfade: int = 0, frame: int = _FRAME, hop: int = _HOP, at: int = 0) -> float:
    """How much worse the loop's seam (at sample ``at``, followed by the crossfade) is than the loop's own
    variation; 0 = seamless.

    ``score = max(0, step / p99(steps) - 1) + max(0, mean(flux_seam) / p95(flux_body) - 1)`` where, on the
    channel mean, ``step = |y[0] - y[-1]|`` is the sample step across the wrap, ``p99(steps)`` the 99th
    percentile of ``|diff(y)|``, ``flux_seam`` the normalised spectral flux (``|||A|-|B|||/(|A|+|B|)``,
    Hann frames of ``frame`` samples ``hop`` apart) of the frames of ``y`` played twice that overlap the
    wrap or the ``crossfade`` region after it, and ``p95(flux_body)`` the 95th percentile of the same flux
    over up to 256 frame pairs spread over the loop. 1.0 means the seam is twice the clip's usual change.
    ``at`` > 0 scores a rotated loop (:attr:`Loop.splice`) as if the seam were at its wrap.
    """
    x = as_2d(loop)
    n = x.shape[1]
    if n < 2 * frame + hop:
        return 0.0
    at %= n
    step_term = max(0.0, abs(float(_mono(x, at)) - float(_mono(x, at - 1))) / (_step_p99(x) + 1e-12) - 1.0)
    # only the samples that are looked at are read: frames of the loop played twice that overlap the seam
    # or the crossfade after it, and the body frames
    lo, hi = n - frame - hop, min(n + crossfade + hop, 2 * n - frame - hop)
    if at:
        wrap = x[:, (at + np.arange(lo, hi + hop + frame)) % n]
    else:
        wrap = np.concatenate([x[:, lo:], x[:, : hi + hop + frame - n]], axis=1)
    seam = _mono_frames(wrap, np.arange(0, hi - lo, hop), frame + hop)
    body_starts = np.linspace(0, n - frame - hop, min(256, (n - frame - hop) // hop + 1)).astype(int)
    body = _mono_frames(x, body_starts, frame + hop)
    seam_flux = _flux(seam[:, :frame], seam[:, hop:])
    p95 = np.percentile(_flux(body[:, :frame], body[:, hop:]), 95) + 1e-6
    return float(step_term + max(0.0, seam_flux.mean() / p95 - 1.0))


def tile_loop(loop: np.ndarray, n: int, offset: int = 0) -> np.ndarray:
    """``n`` samples of ``loop`` repeated seamlessly, starting ``offset`` samples into it."""
    x = as_2d(loop)
    idx = (np.arange(n) + offset) % x.shape[1]
    return x[:, idx]
