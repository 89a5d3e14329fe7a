"""Loudness (ITU-R BS.1770-4, EBU Tech 3341/3342), true peak, DC-blocking high-pass, and normalisation
with a look-ahead true-peak limiter.

- K-weighting: BS.1770-4's published coefficients at 48 kHz; at other rates the same two analog
  prototypes (high shelf, RLB high-pass) re-designed with the bilinear transform from libebur128's
  parameters (f0, G, Q), which reproduce the 48 kHz coefficients. Run in float64 by
  :func:`kernels.k_power`, which returns the sums of squares the statistics need without storing the
  filtered signal.
- Statistics from 100 ms sub-block energies (cumulative sums, no per-block Python loop): integrated
  (400 ms blocks, 75 % overlap, -70 LUFS absolute and -10 LU relative gates), max momentary (400 ms) and
  max short-term (3 s) loudness, loudness range (EBU Tech 3342: 3 s windows every 100 ms, -70 LUFS
  absolute and -20 LU relative gates, 95th minus 10th percentile).
- True peak: 4x polyphase interpolation with a Kaiser-windowed sinc (64 taps, beta 7), flat within
  0.002 dB up to 16 kHz at 48 kHz (the BS.1770-4 Annex 2 example filter ripples by +-0.1 dB and reads
  sines at fs/6 low), computed only on chunks that can hold the maximum (a chunk's interpolated peak is
  at most its sample peak times ``max_p sum|h_p|``), or on every chunk by :func:`kernels.interpolated_peaks`
  when most can; the result equals oversampling everything.
- Limiter (:func:`limit`): written here because the look-ahead limiters at hand (pedalboard's
  ``BrickwallLimiter``) saturate at their own output level whatever gain they are fed, so a make-up loop
  around them cannot converge, and none offers cyclic processing for loops. Its gain computer works on
  the 4x-oversampled peak envelope in chunks of ``_TP_CHUNK`` samples (:func:`kernels.gain_reduction`):
  required reduction -> linear release (``RELEASE_DB_PER_S``) -> look-ahead hold -> two box smoothers
  (``ATTACK_S``), so the gain is always at or below what every peak needs and moves smoothly.
- The DC-blocking high-pass runs as direct-form-I biquads in float64 (:func:`kernels.biquads`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy.signal import butter

from . import kernels
from .resample import as_2d

BLOCK_S = 0.4  # gating block / momentary window (s)
STEP_S = 0.1  # 75 % overlap; short-term and LRA windows also move in 100 ms steps
SHORT_S = 3.0  # short-term window (s)
ABS_GATE_LUFS = -70.0
REL_GATE_LU = -10.0
LRA_REL_GATE_LU = -20.0
LRA_PERCENTILES = (10.0, 95.0)
LOUDNESS_MODES = ("integrated", "short-term", "momentary")
TARGET_TOLERANCE_LU = 0.1  # a clip within this of its target is "ok"
ATTACK_S = 0.005  # limiter look-ahead: the gain ramps down over this time before a peak
RELEASE_DB_PER_S = 100.0  # limiter release: gain recovers at this rate after a peak (12 dB in 120 ms)
HIGHPASS_ORDER = 2  # Butterworth order of the DC-blocking high-pass (12 dB/octave)

# BS.1770-4 K-weighting at 48 kHz: pre-filter (high shelf) then RLB high-pass, as b0 b1 b2 a0 a1 a2
_K48 = np.array([[1.53512485958697, -2.69169618940638, 1.19839281085285, 1.0, -1.69065929318241, 0.73248077421585],
                 [1.0, -2.0, 1.0, 1.0, -1.99004745483398, 0.99007225036621]])

_TP_FACTOR = 4  # oversampling of the true-peak meter
_TAPS = 16  # interpolation taps per phase


def _tp_phases(factor: int, taps: int, beta: float = 7.0) -> np.ndarray:
    """Polyphase interpolator, phases x taps: a Kaiser-windowed sinc cut at the input Nyquist, odd-symmetric
    about tap ``taps // 2`` of phase 0 (which is a unit impulse, so the original samples are outputs)."""
    n = factor * taps
    m = np.arange(n) - n // 2
    w = np.concatenate([[0.0], np.kaiser(n - 1, beta)])
    h = np.sinc(m / factor) * w
    return (h.reshape(taps, factor).T * (factor / h.sum())).astype(np.float32)


_TP_PHASES = _tp_phases(_TP_FACTOR, _TAPS)
_TP_PHASES[0] = np.eye(1, _TAPS, _TAPS // 2, dtype=np.float32)[0]  # exact zeros, not 1e-17
_TP_GAIN = float(np.abs(_TP_PHASES).sum(axis=1).max())  # worst-case interpolation gain
_TP_CHUNK = 16  # outputs per evaluated chunk (> taps - 1)
_TP_SCAN = 256  # samples per block of the sample-peak scan
# the phases of _TP_CHUNK consecutive outputs as one matrix: a chunk's _TP_CHUNK + _TAPS - 1 samples @ it
# gives all _TP_FACTOR * _TP_CHUNK interpolated values in one GEMM (no sliding-window copy)
_TP_BAND = np.zeros((_TP_CHUNK + _TAPS - 1, _TP_CHUNK, _TP_FACTOR), np.float32)
for _j in range(_TP_CHUNK):
    _TP_BAND[_j : _j + _TAPS, _j, :] = _TP_PHASES.T
_TP_BAND = _TP_BAND.reshape(_TP_CHUNK + _TAPS - 1, _TP_FACTOR * _TP_CHUNK)
_TP_BAND_T = np.ascontiguousarray(_TP_BAND.T)  # outputs x samples: results come out chunk-per-column
_TP_TAPS_123 = np.ascontiguousarray(_TP_PHASES[1:])  # what kernels.interpolated_peaks computes besides the samples
assert (_TP_FACTOR, _TAPS, _TP_CHUNK, kernels.CHUNK) == (4, 16, 16, 16), "the kernels are written for this layout"


def _abs_max_columns(v: np.ndarray) -> np.ndarray:
    """max |v| of each column (numpy reduces along the long axis 0 much faster than over many short rows)."""
    return np.maximum(v.max(axis=0), -v.min(axis=0))


@dataclass(frozen=True)
class Measurement:
    """Loudness of one clip: ``lufs`` (integrated) None unless status is "ok" or "loudness-unreachable";
    peaks None for digital silence; the statistics None where the clip is too short for their window."""

    lufs: float | None
    true_peak_dbtp: float | None
    status: str  # "ok", "silent" (nothing above the -70 LUFS gate), "too-short" (< one 400 ms block),
    # or "loudness-unreachable" (normalize: the target needs more than max_limit_db of limiting)
    lra_lu: float | None = None
    max_momentary_lufs: float | None = None
    max_short_term_lufs: float | None = None
    sample_peak_dbfs: float | None = None
    dc_offset: float | None = None  # mean sample value of the channel with the largest |mean| (full scale 1)
    shortfall_lu: float | None = None  # normalize: target minus reached loudness when out of reach


def k_weighting_sos(sr: int) -> np.ndarray:
    """K-weighting (pre-filter high shelf, then RLB high-pass) as float64 second-order sections at ``sr`` Hz.

    48 kHz: BS.1770-4's coefficients. Other rates: the bilinear-transform design libebur128 uses, from
    the analog parameters that reproduce the 48 kHz coefficients.
    """
    return _K48.copy() if sr == 48000 else _k_design(sr)


def _k_design(sr: float) -> np.ndarray:
    """libebur128's K-weighting design: both biquads from their analog parameters, bilinear transform."""
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = np.tan(np.pi * f0 / sr)
    vh = 10.0 ** (gain_db / 20.0)
    vb = vh**0.4996667741545416
    a0 = 1.0 + k / q + k * k
    pre = [(vh + vb * k / q + k * k) / a0, 2.0 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0,
           1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0]
    f0, q = 38.13547087602444, 0.5003270373238773
    k = np.tan(np.pi * f0 / sr)
    a0 = 1.0 + k / q + k * k
    rlb = [1.0, -2.0, 1.0, 1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0]
    return np.array([pre, rlb])


@functools.cache
def _k_sos(sr: int) -> np.ndarray:
    sos = k_weighting_sos(sr)
    assert tuple(sos[1, :3]) == (1.0, -2.0, 1.0), "kernels.k_power takes the RLB numerator as 1, -2, 1"
    return sos


def _rows(x: np.ndarray) -> list[np.ndarray]:
    """The channels of ``(channels, samples)`` as contiguous rows (what the kernels take)."""
    return [np.ascontiguousarray(c) for c in x]


def _k_power(x: np.ndarray, sr: int, width: int) -> np.ndarray:
    """K-weighted power of ``x`` ``(channels, samples)`` summed over channels and over runs of ``width``
    samples (the last run partial); float64."""
    sos = _k_sos(sr)
    rows = _rows(x)
    total = kernels.k_power(rows[0], sos, width)
    for c in rows[1:]:
        total += kernels.k_power(c, sos, width)
    return total


def _regroup(sums: np.ndarray, k: int) -> np.ndarray:
    """Sums of runs of ``k`` consecutive entries (the last run partial)."""
    return sums if k == 1 else np.add.reduceat(sums, np.arange(0, sums.size, k))


def _unit(sr: int) -> int:
    """Samples per energy sum: 100 ms when the 400 ms and 3 s windows are whole numbers of 100 ms steps at
    ``sr`` Hz, else 1."""
    step = round(STEP_S * sr)
    return step if round(BLOCK_S * sr) == 4 * step and round(SHORT_S * sr) == 30 * step else 1


@dataclass(frozen=True)
class Energies:
    """K-weighted power of a clip summed over channels and over runs of ``unit`` samples (100 ms when
    the 400 ms and 3 s windows are whole numbers of 100 ms steps at this rate, else 1 sample)."""

    sums: np.ndarray
    unit: int
    n: int
    sr: int
    copies: int = 1

    @classmethod
    def of(cls, audio: np.ndarray, sr: int, copies: int = 1) -> "Energies":
        """``copies``: ``audio`` stands for that many identical copies of its channels (a mono clip that will
        be delivered as dual-mono stereo), so each energy is ``copies`` times the measured one."""
        x = as_2d(audio)
        unit = _unit(sr)
        return cls(_k_power(x, sr, unit), unit, x.shape[1], sr, copies)

    def scaled(self, sums: np.ndarray) -> "Energies":
        return Energies(sums, self.unit, self.n, self.sr, self.copies)

    def windows(self, seconds: float, pad: bool = False) -> np.ndarray:
        """Mean-square energy of each ``seconds`` window, every 100 ms. ``pad``: as a meter started in silence
        reads it (windows end at every step from the first; the last, partial step counts), else only windows
        inside the clip."""
        length, step = round(seconds * self.sr), round(STEP_S * self.sr)
        size, hop = (length // self.unit, step // self.unit)
        s = self.sums if pad else self.sums[: self.n // self.unit]
        if pad:
            s = np.concatenate([np.zeros(size - hop), s])
        if s.size < size:
            return np.zeros(0)
        cs = np.zeros(s.size + 1)
        np.cumsum(s, out=cs[1:])
        starts = np.arange(0, s.size - size + 1, hop)
        return np.maximum(cs[starts + size] - cs[starts], 0.0) * (self.copies / length)


def block_energies(audio: np.ndarray, sr: int, copies: int = 1) -> np.ndarray:
    """Mean-square K-weighted energy of each 400 ms block (75 % overlap), summed over channels.

    All channels weigh 1.0 (BS.1770's weight for mono, L and R; assetgen delivers mono or stereo).
    """
    return Energies.of(audio, sr, copies).windows(BLOCK_S)


def _lufs(energy: np.ndarray | float) -> np.ndarray | float:
    with np.errstate(divide="ignore"):
        return -0.691 + 10.0 * np.log10(energy)


def _gated(e: np.ndarray) -> tuple[float | None, str]:
    if e.size == 0:
        return None, "too-short"
    e = e[_lufs(e) > ABS_GATE_LUFS]
    if e.size == 0:
        return None, "silent"
    rel = _lufs(e.mean()) + REL_GATE_LU
    return float(_lufs(e[_lufs(e) > rel].mean())), "ok"


def integrated_loudness(audio: np.ndarray, sr: int, copies: int = 1) -> tuple[float | None, str]:
    """Gated integrated loudness (LUFS) per BS.1770-4 -> (lufs or None, status); ``copies`` as in
    :meth:`Energies.of`."""
    return _gated(block_energies(audio, sr, copies))


def _max_lufs(e: np.ndarray) -> float | None:
    return float(_lufs(e.max())) if e.size and e.max() > 0 else None


def loudness_range(e3: np.ndarray) -> float | None:
    """Loudness range (LU, EBU Tech 3342) from the energies of the 3 s windows inside the clip."""
    e = e3[_lufs(e3) > ABS_GATE_LUFS]
    if e.size == 0:
        return None
    v = _lufs(e[_lufs(e) > _lufs(e.mean()) + LRA_REL_GATE_LU])
    lo, hi = np.percentile(v, LRA_PERCENTILES)
    return float(hi - lo)


def loudness_stats(en: Energies) -> dict[str, float | str | None]:
    """Integrated loudness and status, loudness range, max momentary and max short-term loudness."""
    lufs, status = _gated(en.windows(BLOCK_S))
    return {"lufs": lufs, "status": status, "lra_lu": loudness_range(en.windows(SHORT_S)),
            "max_momentary_lufs": _max_lufs(en.windows(BLOCK_S, pad=True)),
            "max_short_term_lufs": _max_lufs(en.windows(SHORT_S, pad=True))}


def _mode_value(en: Energies, mode: str) -> float | None:
    """What ``mode`` targets: integrated loudness, or the max short-term / momentary loudness (LUFS)."""
    if mode == "integrated":
        return _gated(en.windows(BLOCK_S))[0]
    e = en.windows(SHORT_S if mode == "short-term" else BLOCK_S, pad=True)
    value = _max_lufs(e)
    return value if value is not None and value > ABS_GATE_LUFS else None


def _interpolated_peak(x: np.ndarray, chunks: np.ndarray, nq: int, cyclic: bool) -> np.ndarray:
    """Max |4x interpolated value| of each chunk (``channel * nq + q``, ``nq`` chunks per channel): outputs
    whose ``_TAPS``-tap window ends in ``[q*C, q*C + C)``."""
    n = x.shape[1]
    h, width = _TAPS, _TP_CHUNK
    ch, q = np.divmod(chunks, nq)
    idx = (q * width - h + 1)[:, None] + np.arange(width + h - 1)  # samples under the chunk's windows
    if cyclic:
        vals = x[ch[:, None], idx % n]
    else:
        inside = (idx >= 0) & (idx < n)
        vals = np.where(inside, x[ch[:, None], np.clip(idx, 0, n - 1)], np.float32(0))
    return _abs_max_columns(_TP_BAND_T @ vals.T)


def _chunk_count(n: int, cyclic: bool) -> int:
    """Chunks per channel: window end positions (``n + taps - 1``, or ``n`` wrapped) / ``_TP_CHUNK``."""
    return -(-(n + (0 if cyclic else _TAPS - 1)) // _TP_CHUNK)


def chunk_peaks(x: np.ndarray, cyclic: bool) -> np.ndarray:
    """Max |4x interpolated value| of every chunk, ``(channels, chunks)``: chunk ``q`` holds the outputs whose
    window ends in ``[q*C, q*C + C)``, centred near sample ``q*C`` (C = ``_TP_CHUNK``). Chunks whose windows
    lie inside the clip read it in place; only the few at its edges get a padded copy."""
    c, n = x.shape
    w, lead = _TP_CHUNK, _TAPS - 1
    nq = _chunk_count(n, cyclic)
    lo, hi = 1, max(1, min(nq, (n - w - lead) // w + 1))  # chunks lo..hi-1 read samples 0 .. n-1 only
    out = np.empty((c, nq), np.float32)
    for ch, v in enumerate(_rows(x)):
        for a, b in ((0, lo), (lo, hi), (hi, nq)):
            if b > a:
                span = _span(v, a * w - lead, (b - a) * w + lead, cyclic)
                out[ch, a:b] = kernels.interpolated_peaks(span, _TP_TAPS_123, b - a)
    return out


def _span(v: np.ndarray, start: int, length: int, cyclic: bool) -> np.ndarray:
    """Samples ``start .. start+length-1`` of channel ``v``: a view inside the clip, else a copy with the loop
    wrapped (``cyclic``) or zeros outside."""
    n = v.size
    if 0 <= start and start + length <= n:
        return v[start : start + length]
    idx = np.arange(start, start + length)
    if cyclic:
        return v[idx % n]
    return np.where((idx >= 0) & (idx < n), v[np.clip(idx, 0, n - 1)], np.float32(0))


def true_peak(audio: np.ndarray, cyclic: bool = False) -> float:
    """True peak (linear, >= sample peak): max |x| of the 4x oversampled signal; see :func:`_true_peak`."""
    return _true_peak(as_2d(audio), cyclic)[0]


def _true_peak(x: np.ndarray, cyclic: bool = False) -> tuple[float, np.ndarray | None]:
    """True peak (linear, >= sample peak): max |x| of the 4x oversampled signal (BS.1770-4 Annex 2 method).

    ``cyclic`` treats the clip as a loop (the interpolator wraps around the seam). The result equals
    oversampling everything, but only outputs that can beat the sample peak are computed: an interpolated
    value is at most ``_TP_GAIN`` (the largest phase's sum of |taps|, ~1.97) times the largest sample under
    its ``_TAPS``-tap window, so only windows holding a sample above ``peak / _TP_GAIN`` are evaluated, in
    chunks of ``_TP_CHUNK`` outputs. Dense audio (most 256-sample blocks above that level) evaluates every
    chunk instead, which then costs less than finding the ones that can matter.
    """
    c, n = x.shape
    if n == 0:
        return 0.0, None
    # sample peak of each 256-sample block (one pass); only blocks above peak / _TP_GAIN are looked into
    nb, tail = divmod(n, _TP_SCAN)
    body = x[:, : nb * _TP_SCAN].reshape(c, nb, _TP_SCAN)
    peaks = np.concatenate([np.maximum(body.max(axis=2), -body.min(axis=2)),
                            np.abs(x[:, nb * _TP_SCAN :]).max(axis=1, keepdims=True) if tail else np.zeros((c, 0))],
                           axis=1, dtype=np.float32)
    best = float(peaks.max())
    if best == 0.0:
        return 0.0, None
    h, width = _TAPS, _TP_CHUNK
    nq = _chunk_count(n, cyclic)
    thr = np.float32(best / _TP_GAIN)
    hot_blocks = np.flatnonzero(peaks > thr)
    if hot_blocks.size * 2 > peaks.size:  # dense (noise-like ambiences): every chunk costs less than finding some
        every = chunk_peaks(x, cyclic)
        return max(best, float(every.max())), every
    ch_b, b = np.divmod(hot_blocks, peaks.shape[1])
    idx = b[:, None] * _TP_SCAN + np.arange(_TP_SCAN)
    hot = (np.abs(x[ch_b[:, None], np.minimum(idx, n - 1)]) > thr) & (idx < n)
    ch, i = np.broadcast_to(ch_b[:, None], idx.shape)[hot], idx[hot]
    # windows ending at i .. i+h-1 hold sample i: at most two chunks (h - 1 < width), wrapped when cyclic
    last = (i + h - 1) % n if cyclic else i + h - 1
    ends = [i, last] + ([np.minimum(i + h - 1, n - 1)] if cyclic else [])
    flags = np.zeros(c * nq, bool)
    for e in ends:
        flags[ch * nq + e // width] = True
    chunks = np.flatnonzero(flags)
    for k in range(0, chunks.size, 4096):
        best = max(best, float(_interpolated_peak(x, chunks[k : k + 4096], nq, cyclic).max()))
    return best, None


def to_db(value: float) -> float | None:
    """Linear amplitude -> dB, None for 0."""
    return None if value <= 0 else float(20.0 * np.log10(value))


def dc_offset(audio: np.ndarray) -> float:
    """Mean sample value (full scale 1) of the channel whose mean is largest in magnitude."""
    x = as_2d(audio)
    if x.shape[1] == 0:
        return 0.0
    means = _peaks_and_means(x)[1]
    return float(means[np.argmax(np.abs(means))])


def measure(audio: np.ndarray, sr: int, cyclic: bool = False, copies: int = 1,
            energies: Energies | None = None, peak: float | None = None,
            sample: tuple[np.ndarray, np.ndarray] | None = None) -> Measurement:
    """Every statistic of ``audio`` at ``sr`` Hz: integrated loudness, status, loudness range, max momentary
    and short-term loudness (LUFS/LU), true and sample peak (dBTP/dBFS) and DC offset. ``cyclic``: the clip
    is a loop (the true-peak interpolator wraps around the seam); ``copies`` as in :meth:`Energies.of`.
    ``energies``, ``peak`` (true peak) and ``sample`` (:func:`_peaks_and_means`) when already known."""
    x = as_2d(audio)
    stats = loudness_stats(energies if energies is not None else Energies.of(x, sr, copies))
    peaks, means = _peaks_and_means(x) if sample is None else sample
    sample_peak = float(peaks.max()) if x.size else 0.0
    # ``peak``: its true peak when already known (e.g. scaled from the input's), never below the samples
    tp = true_peak(x, cyclic) if peak is None else max(float(peak), sample_peak)
    dc = float(means[np.argmax(np.abs(means))]) if x.shape[1] else 0.0
    return Measurement(true_peak_dbtp=to_db(tp), sample_peak_dbfs=to_db(sample_peak), dc_offset=dc, **stats)


def _peaks_and_means(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample peak (max |x|) and mean (float64) of each channel, in one pass."""
    both = np.array([kernels.peak_and_sum(c) for c in _rows(x)], np.float64).reshape(-1, 2)
    return both[:, 0], both[:, 1] / max(x.shape[1], 1)


@functools.cache
def _highpass_sos(sr: int, hz: float) -> np.ndarray:
    return butter(HIGHPASS_ORDER, hz, "highpass", fs=sr, output="sos")


def highpass(audio: np.ndarray, sr: int, hz: float, cyclic: bool = False) -> np.ndarray:
    """DC-blocking, subsonic high-pass: the mean removed, then a causal Butterworth (``HIGHPASS_ORDER``,
    -3 dB at ``hz`` Hz); ``hz`` <= 0 returns ``audio`` unchanged.

    Causal (minimum phase) rather than zero-phase: one pass instead of two, no pre-ringing ahead of a
    one-shot's attack, and the response every console and DAW high-pass has; its phase shift sits below
    ~2 ``hz``. One-shots start from the filter's steady state for their first sample, so a DC offset
    gives no step. Loops (``cyclic``) start from the state the loop's own end leaves (the filter runs over
    the wrapped tail first, long enough for its response to decay by > 100 dB), so the seam stays seamless.
    """
    x = as_2d(audio)
    if hz <= 0:
        return x
    if hz >= sr / 2:
        raise ValueError(f"highpass_hz must be below half the sample rate ({sr / 2:g} Hz), got {hz:g}")
    c, n = x.shape
    if n == 0:
        return x
    sos = _highpass_sos(sr, float(hz))
    mean = _peaks_and_means(x)[1]  # removed first: a large DC would cost the filter precision
    out = np.empty_like(x)
    rows = _rows(x)
    if cyclic:
        # decay of the slowest pole to -100 dB (11.5 nepers), in samples; the tail's final state starts the loop
        warm = int(np.ceil(11.5 / (2 * np.pi * hz * np.sin(np.pi / (2 * HIGHPASS_ORDER))) * sr))
        reps = -(-warm // n)
        tail = (x if reps == 1 else np.tile(x, (1, reps)))[:, -warm:]
    for ch, row in enumerate(rows):
        if cyclic:
            state = np.zeros((sos.shape[0], 4))
            kernels.biquads(np.ascontiguousarray(tail[ch]), sos, state, mean[ch], np.empty(warm, np.float32))
        else:  # the steady state for the first sample
            state = _steady_state(sos, float(row[0]) - mean[ch])
        kernels.biquads(row, sos, state, mean[ch], out[ch])
    return out


def _steady_state(sos: np.ndarray, u: float) -> np.ndarray:
    """Direct-form-I states ``(sections, 4)`` of ``sos`` after a constant input ``u`` forever."""
    state = np.empty((sos.shape[0], 4))
    for s, (b0, b1, b2, _, a1, a2) in enumerate(sos):
        v = u * (b0 + b1 + b2) / (1.0 + a1 + a2)
        state[s] = u, u, v, v
        u = v
    return state


def _gain_reduction_db(env_db: np.ndarray, sr: int, cyclic: bool, attack_s: float = ATTACK_S,
                       release_db_per_s: float = RELEASE_DB_PER_S) -> np.ndarray:
    """Smoothed gain reduction (dB >= 0) per chunk from the required one (``env_db``: peak above the
    ceiling per chunk, <= 0 where none is needed). Never below the requirement: the release only adds, the
    centred hold spans the smoothers' support, and two centred boxes average values >= the requirement."""
    rate = release_db_per_s * _TP_CHUNK / sr  # dB per chunk
    box = 2 * max(1, round(attack_s * sr / (2 * _TP_CHUNK))) + 1  # odd, so the filters are centred
    # cyclic: the cycle before is the only one that can hold a longer-lasting release
    return kernels.gain_reduction(np.asarray(env_db, np.float64), rate, box, cyclic)


def _chunk_abs(x: np.ndarray) -> np.ndarray:
    """max |x| over channels per chunk of ``_TP_CHUNK`` samples (the last chunk partial)."""
    return functools.reduce(np.maximum, [kernels.abs_max_runs(c, _TP_CHUNK) for c in _rows(x)])


@dataclass
class _Limiter:
    """What limiting one clip needs, computed once: its 4x peak envelope (dB per chunk, channels linked)
    and its K-weighted power per chunk (to estimate the loudness of any limited version without
    re-filtering: K-weighting commutes with the slowly moving gain to well within the final check)."""

    x: np.ndarray
    sr: int
    cyclic: bool
    env_db: np.ndarray
    chunk_abs: np.ndarray  # max |x| over channels per chunk of _TP_CHUNK samples
    power: np.ndarray  # K-weighted power per chunk of _TP_CHUNK samples, channels summed
    energies: Energies
    _reductions: dict = dataclasses.field(default_factory=dict)  # (gain_db, threshold_db) -> reduction

    @classmethod
    def of(cls, x: np.ndarray, sr: int, cyclic: bool, energies: Energies, copies: int,
           power: np.ndarray | None = None, chunks: np.ndarray | None = None,
           chunk_abs: np.ndarray | None = None) -> "_Limiter":
        """``power``: ``_k_power(x, sr, _TP_CHUNK)``, ``chunks``: ``chunk_peaks(x, cyclic)`` and ``chunk_abs``:
        :func:`_chunk_abs` when already known."""
        if chunks is None:
            chunks = chunk_peaks(x, cyclic)
        with np.errstate(divide="ignore"):
            env = 20.0 * np.log10(chunks.max(axis=0).astype(np.float64))
        if power is None:
            power = _k_power(x, sr, _TP_CHUNK)
        if chunk_abs is None:
            chunk_abs = _chunk_abs(x)
        return cls(x, sr, cyclic, env, chunk_abs.astype(np.float64), power * copies, energies)

    def reduction(self, gain_db: float, threshold_db: float) -> np.ndarray:
        """Gain reduction (dB) per chunk at input gain ``gain_db``; the solver, :meth:`apply` and the notes ask
        for the same settings more than once."""
        key = (gain_db, threshold_db)
        if key not in self._reductions:
            if len(self._reductions) > 2:  # only recent settings come back
                del self._reductions[next(iter(self._reductions))]
            self._reductions[key] = _gain_reduction_db(self.env_db + gain_db - threshold_db, self.sr, self.cyclic)
        return self._reductions[key]

    def estimate(self, gain_db: float, threshold_db: float, mode: str) -> float | None:
        """Estimated ``mode`` loudness (LUFS) of the clip at ``gain_db`` through the limiter."""
        red = self.reduction(gain_db, threshold_db)
        m = self.power.size
        en = self.energies
        # the chunks of each energy run; sample chunk q's gain runs linearly from chunk q's to chunk q+1's
        edges = np.minimum(np.round(np.arange(en.sums.size + 1) * en.unit / _TP_CHUNK).astype(np.int64), m)
        edges[-1] = m
        return _mode_value(en.scaled(kernels.limited_power(red, gain_db, self.power, edges, self.cyclic)), mode)

    def apply(self, gain_db: float, threshold_db: float) -> "_Limited":
        """The limited clip (its gain per chunk linearly interpolated between chunks) and what the meters
        read of it."""
        red = self.reduction(gain_db, threshold_db)
        g = (10.0 ** ((gain_db - red) / 20.0)).astype(np.float32)
        nxt = np.roll(g, -1) if self.cyclic else np.append(g[1:], g[-1])
        y = np.empty_like(self.x)
        en = self.energies
        sums, peaks, totals = [], [], []
        for v, out in zip(_rows(self.x), y):
            peak, total = kernels.apply_gain(v, g, nxt, out)
            sums.append(kernels.k_power(out, _k_sos(self.sr), en.unit))
            peaks.append(peak)
            totals.append(total)
        return _Limited(y, g, en.scaled(np.sum(sums, axis=0)), np.array(peaks, np.float64),
                        np.array(totals) / max(y.shape[1], 1))

    def output_true_peak(self, out: "_Limited") -> float:
        """True peak of ``out`` = ``x`` times the chunk gain of :meth:`apply` (as :func:`true_peak` reads it),
        evaluating only chunks that can hold it. A chunk's outputs are at most ``Gc * P + 1.97 * D * M``
        (``P``: the chunk's peak in ``x``; ``Gc`` +- ``D``: the range of the gain and ``M`` the largest |x|
        under the chunk's windows), so chunks whose bound is below the output's sample peak (a lower bound of
        its true peak) are skipped."""
        y, gain = out.audio, out.gain
        nq = self.env_db.size
        nxt = np.roll(gain, -1) if self.cyclic else np.append(gain[1:], gain[-1])
        lo, hi = np.minimum(gain, nxt), np.maximum(gain, nxt)  # range over sample chunk q (interpolated)
        # chunk q's windows span samples [q*w - taps + 1, q*w + w - 1]: sample chunks q - 1 and q
        prev = (lambda a: np.roll(a, 1)) if self.cyclic else (lambda a: np.concatenate([a[:1], a[:-1]]))
        glo, ghi = np.minimum(lo, prev(lo)), np.maximum(hi, prev(hi))
        xm = self.chunk_abs[:nq] if self.chunk_abs.size >= nq else np.append(self.chunk_abs, 0.0)
        mx = np.maximum(xm, prev(xm))
        with np.errstate(over="ignore"):
            p = 10.0 ** (self.env_db / 20.0)
        bound = 0.5 * (ghi + glo) * p + _TP_GAIN * 0.5 * (ghi - glo) * mx
        best = float(out.peaks.max())
        chunks = np.flatnonzero(bound >= best * (1 - 1e-6))
        for ch in range(y.shape[0]):
            for k in range(0, chunks.size, 4096):
                idx = chunks[k : k + 4096] + ch * nq
                best = max(best, float(_interpolated_peak(y, idx, nq, self.cyclic).max()))
        return best


def limit(audio: np.ndarray, sr: int, ceiling_dbtp: float, cyclic: bool = False) -> np.ndarray:
    """Look-ahead true-peak limiting of ``audio`` to ``ceiling_dbtp`` (see :func:`_gain_reduction_db`);
    ``cyclic`` for loops (look-ahead, hold and release wrap around the seam)."""
    x = as_2d(audio)
    lim = _Limiter.of(x, sr, cyclic, Energies.of(x, sr), 1)
    return lim.apply(0.0, ceiling_dbtp).audio


@dataclass(frozen=True)
class _Limited:
    """A limited clip and what the meters read of it, measured in the pass that made it."""

    audio: np.ndarray
    gain: np.ndarray  # per chunk, as :meth:`_Limiter.apply` interpolates it
    energies: Energies
    peaks: np.ndarray  # sample peak per channel
    means: np.ndarray  # mean per channel


def _solve(f, lo: float, hi: float, f_lo: float, f_hi: float, target: float, tol: float = 0.004) -> float:
    """``g`` in [lo, hi] with ``f(g)`` = target for non-decreasing ``f`` (Illinois regula falsi)."""
    side = 0
    g = hi
    for _ in range(30):
        g = hi if f_hi == f_lo else lo + (target - f_lo) * (hi - lo) / (f_hi - f_lo)
        v = f(g)
        if v is None:
            v = -np.inf
        if abs(v - target) < tol or hi - lo < 1e-4:
            break
        if v < target:
            lo, f_lo = g, v
            if side == -1:
                f_hi = target + (f_hi - target) / 2
            side = -1
        else:
            hi, f_hi = g, v
            if side == 1:
                f_lo = target + (f_lo - target) / 2
            side = 1
    return g


def normalize(audio: np.ndarray, sr: int, target_lufs: float, ceiling_dbtp: float = -1.0,
              cyclic: bool = False, copies: int = 1, max_limit_db: float = 12.0,
              mode: str = "integrated") -> tuple[np.ndarray, Measurement, tuple[str, ...]]:
    """Gain to ``target_lufs`` with a true-peak ceiling (dBTP), limiting peaks by at most ``max_limit_db``.

    ``mode``: what the target is -- integrated loudness, or the maximum short-term / momentary loudness.
    Returns (audio, :func:`measure` of the returned audio, notes). Status "ok" means within
    ``TARGET_TOLERANCE_LU`` of the target under the ceiling; a target that needs more limiting than
    ``max_limit_db`` is delivered at the loudest level that does not, with status "loudness-unreachable"
    and the shortfall (LU). Silent and too-short clips keep their level (only brought under the ceiling).
    ``copies`` as in :meth:`Energies.of` (the returned audio keeps its channels; the measurement is of the
    copies).
    """
    if mode not in LOUDNESS_MODES:
        raise ValueError(f"loudness_mode must be one of {', '.join(LOUDNESS_MODES)}, got {mode!r}")
    x = as_2d(audio)
    # K-weighted power once, in runs that both the 100 ms energies and the limiter's chunks are made of
    unit = _unit(sr)
    fine = math.gcd(unit, _TP_CHUNK)
    power = _k_power(x, sr, fine)
    en = Energies(_regroup(power, unit // fine), unit, x.shape[1], sr, copies)
    value = _mode_value(en, mode)
    ceiling = 10.0 ** (ceiling_dbtp / 20.0)
    level = value is not None and (mode != "integrated" or _gated(en.windows(BLOCK_S))[1] == "ok")
    gain_db = target_lufs - value if level else 0.0
    chunk_abs = _chunk_abs(x)
    sample_peak = float(chunk_abs.max()) if chunk_abs.size else 0.0
    if level and sample_peak * 10.0 ** (gain_db / 20.0) > ceiling:
        # the samples alone will exceed the ceiling: the limiter needs every chunk's 4x peak, which also
        # gives the true peak (no pruned pass first)
        chunks = chunk_peaks(x, cyclic)
        tp = max(sample_peak, float(chunks.max()))
    else:
        tp, chunks = _true_peak(x, cyclic)
    if not level:
        g = min(1.0, ceiling / tp) if tp > 0 else 1.0
        y = x * np.float32(g)
        return y, measure(y, sr, cyclic, copies), ()
    tp_db = 20.0 * np.log10(tp)
    if tp_db + gain_db <= ceiling_dbtp:  # plain gain: loudness scales exactly
        g = np.float32(10.0 ** (gain_db / 20.0))
        y = x * g
        return y, measure(y, sr, cyclic, copies, en.scaled(en.sums * 10.0 ** (gain_db / 10.0)), tp * g), ()
    lim = _Limiter.of(x, sr, cyclic, en, copies, _regroup(power, _TP_CHUNK // fine), chunks, chunk_abs)
    del chunks
    threshold = ceiling_dbtp - 0.05  # the chunk-level gain computer can overshoot by a few hundredths of a dB
    max_gain = threshold + max_limit_db - tp_db  # input gain at which the deepest reduction is max_limit_db
    notes: list[str] = []
    for _ in range(4):  # the ceiling as the meter reads the limited audio; tightened if it overshoots
        est = lambda g: lim.estimate(g, threshold, mode)  # noqa: E731
        aim = target_lufs
        for _ in range(3):  # correct the estimate's small bias with exact measurements
            top = est(max_gain)
            g = max_gain if top is None or top <= aim else _solve(est, gain_db, max_gain, est(gain_db), top, aim)
            out = lim.apply(g, threshold)
            y, en_y, sample = out.audio, out.energies, (out.peaks, out.means)
            reached = _mode_value(en_y, mode)
            if reached is None or abs(reached - target_lufs) < 0.008 or g >= max_gain:
                break
            aim += target_lufs - reached
        tp_y = lim.output_true_peak(out)
        if tp_y <= ceiling:
            break
        threshold -= 20.0 * np.log10(tp_y / ceiling) + 0.01
        max_gain = threshold + max_limit_db - tp_db
    if tp_y > ceiling:  # last resort is a gain change, still no clipping
        y = y * np.float32(ceiling / tp_y)
        tp_y = true_peak(y, cyclic)
        en_y = Energies.of(y, sr, copies)
        reached = _mode_value(en_y, mode)
        sample = None
    meas = measure(y, sr, cyclic, copies, en_y, tp_y, sample)
    notes.append(f"limited: up to {float(lim.reduction(g, threshold).max()):.1f} dB of gain reduction")
    if reached is not None and target_lufs - reached > TARGET_TOLERANCE_LU:
        shortfall = float(target_lufs - reached)
        notes.append(f"loudness-unreachable: {reached:.2f} LUFS ({mode}) is {shortfall:.2f} LU short of "
                     f"{target_lufs:g}; more than {max_limit_db:g} dB of limiting would be needed")
        meas = dataclasses.replace(meas, status="loudness-unreachable", shortfall_lu=shortfall)
    return y, meas, tuple(notes)
