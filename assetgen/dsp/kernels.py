"""Compiled inner loops of the delivery chain (numba): recursive filters, the true-peak interpolator, PCM packing.

Written by hand because the library versions are bound by what they cannot share: ``scipy.signal.sosfilt``
keeps its filter state in memory and copies its input, so it waits on a store-load round trip every sample
and section; the true-peak interpolator as a BLAS product multiplies the zeros of a banded matrix and the
identity phase; and loudness needs only sums of squares of the K-weighted signal, which no library returns
without writing the filtered signal first. Each kernel takes one channel (contiguous float32) so its
state stays in registers; callers loop over channels. Results are compiled once and cached on disk.
"""

from __future__ import annotations

import sys

import numba
import numpy as np

_jit = numba.njit(cache=True, nogil=True)
# fused multiply-add in the recursive filters: shorter dependency chains, and no less exact
_jitc = numba.njit(cache=True, nogil=True, fastmath={"contract"})
_LITTLE = sys.byteorder == "little"
CHUNK = 16  # samples per chunk of the limiter's gain (loudness._TP_CHUNK)


@_jitc
def biquads(x, sos, state, offset, out):
    """Cascade of direct-form-I biquads over ``x - offset`` (float32 in and out, float64 arithmetic).

    ``sos``: ``(sections, 6)`` as scipy orders them (b0 b1 b2 a0 a1 a2, a0 = 1); ``state``: ``(sections, 4)``
    = previous input x[-1], x[-2] and output y[-1], y[-2] of each section, updated in place to the state
    after the last sample. ``out`` may be ``x``. One pass per section, each keeping its state in registers.
    """
    n = x.shape[0]
    src = x
    off = offset
    for s in range(sos.shape[0]):
        b0, b1, b2, a1, a2 = sos[s, 0], sos[s, 1], sos[s, 2], sos[s, 4], sos[s, 5]
        x1, x2, y1, y2 = state[s, 0], state[s, 1], state[s, 2], state[s, 3]
        for i in range(n):
            v = np.float64(src[i]) - off
            y = b0 * v + b1 * x1 + b2 * x2 - a2 * y2 - a1 * y1
            x2, x1, y2, y1 = x1, v, y1, y
            out[i] = y
        state[s, 0], state[s, 1], state[s, 2], state[s, 3] = x1, x2, y1, y2
        src = out
        off = 0.0


@_jitc
def k_power(x, sos, width):
    """Sum of squares of ``x`` through two cascaded biquads (the K-weighting) from rest, over runs of ``width``
    samples (the last run partial); float64. The filtered signal itself is never stored. The second
    section's numerator is taken as the RLB high-pass's 1, -2, 1 (exact products, two multiplies fewer)."""
    n = x.shape[0]
    b00, b01, b02, a01, a02 = sos[0, 0], sos[0, 1], sos[0, 2], sos[0, 4], sos[0, 5]
    a11, a12 = sos[1, 4], sos[1, 5]
    x1 = x2 = u1 = u2 = z1 = z2 = 0.0
    sums = np.empty(-(-n // width))
    for k in range(sums.size):
        acc = 0.0
        for i in range(k * width, min(n, (k + 1) * width)):
            v = np.float64(x[i])
            u = b00 * v + b01 * x1 + b02 * x2 - a02 * u2 - a01 * u1
            z = (u - 2.0 * u1 + u2) - a12 * z2 - a11 * z1
            x2, x1, u2, u1, z2, z1 = x1, v, u1, u, z1, z
            acc += z * z
        sums[k] = acc
    return sums


@_jit
def interpolated_peaks(xp, h, nq):
    """Max |value| per chunk of 16 outputs of a 4x polyphase interpolator with 16-tap phases.

    ``xp``: one channel padded so that chunk ``q``'s windows are ``xp[16q + j : 16q + j + 16]``, j < 16;
    ``h``: ``(3, 16)`` taps of phases 1-3 (phase 0 is the window's centre sample ``xp[16q + j + 8]``).
    Runs of chunks are interpolated into buffers phase by phase, tap by tap, so the loops vectorise.
    """
    out = np.empty(nq, np.float32)
    block = 64  # chunks per buffer
    a1 = np.empty(16 * block, np.float32)
    a2 = np.empty(16 * block, np.float32)
    a3 = np.empty(16 * block, np.float32)
    for q0 in range(0, nq, block):
        q1 = min(nq, q0 + block)
        m = (q1 - q0) * 16
        base = q0 * 16
        a1[:m] = 0.0
        a2[:m] = 0.0
        a3[:m] = 0.0
        for t in range(16):
            h1, h2, h3 = h[0, t], h[1, t], h[2, t]
            xs = xp[base + t : base + t + m]
            for j in range(m):
                v = xs[j]
                a1[j] += h1 * v
                a2[j] += h2 * v
                a3[j] += h3 * v
        xs = xp[base + 8 : base + 8 + m]
        for j in range(m):
            a1[j] = max(max(abs(a1[j]), abs(a2[j])), max(abs(a3[j]), abs(xs[j])))
        for q in range(q0, q1):
            o = (q - q0) * 16
            mx = a1[o]
            for j in range(1, 16):
                mx = max(mx, a1[o + j])
            out[q] = mx
    return out


@_jit
def pcm(x, width):
    """``(channels, samples)`` float32 -> interleaved little-endian PCM of ``width`` (2 or 3) bytes per sample,
    as libsndfile quantises: scale by 2**31 in float32, round half to even, clip to the int32 range, keep
    the top ``width`` bytes; and whether every sample was finite. 24-bit packs four samples into three
    32-bit words (on little-endian hosts)."""
    c, n = x.shape
    total = n * c
    q = np.empty(total, np.int32)
    scale = np.float32(2.0**31)
    hi = np.float32(2.0**31 - 128)  # the largest float32 below 2**31
    lo = np.float32(-(2.0**31))
    bad = False
    for ch in range(c):
        for i in range(n):
            f = x[ch, i]
            bad |= f - f != 0  # NaN for NaN and inf, without a branch
            q[i * c + ch] = np.int32(min(max(np.rint(f * scale), lo), hi))
    out = np.empty(total * width, np.uint8)
    if width == 3 and _LITTLE:
        w = out[: (total // 4) * 12].view(np.uint32)
        for g in range(total // 4):
            s0 = np.uint32(q[4 * g]) >> 8
            s1 = np.uint32(q[4 * g + 1]) >> 8
            s2 = np.uint32(q[4 * g + 2]) >> 8
            s3 = np.uint32(q[4 * g + 3]) >> 8
            w[3 * g] = s0 | (s1 << 24)
            w[3 * g + 1] = (s1 >> 8) | (s2 << 16)
            w[3 * g + 2] = (s2 >> 16) | (s3 << 8)
        start = (total // 4) * 4
    else:
        start = 0
    for k in range(start, total):
        for b in range(width):
            out[k * width + b] = (q[k] >> (8 * (4 - width + b))) & 0xFF
    return out, not bad


@_jit
def abs_max_runs(v, width):
    """max |v| over runs of ``width`` samples (the last run partial); float32."""
    n = v.shape[0]
    out = np.empty(-(-n // width), np.float32)
    for k in range(out.size):
        m = np.float32(0.0)
        for i in range(k * width, min(n, (k + 1) * width)):
            m = max(m, abs(v[i]))
        out[k] = m
    return out


@_jit
def peak_and_sum(v):
    """(max |v|, sum of v in float64) of one channel; four interleaved partial results, so the additions do
    not wait on each other."""
    n = v.shape[0]
    m0 = m1 = m2 = m3 = np.float32(0.0)
    s0 = s1 = s2 = s3 = 0.0
    for i in range(0, n - 3, 4):
        a, b, c, d = v[i], v[i + 1], v[i + 2], v[i + 3]
        m0, m1, m2, m3 = max(m0, abs(a)), max(m1, abs(b)), max(m2, abs(c)), max(m3, abs(d))
        s0, s1, s2, s3 = s0 + a, s1 + b, s2 + c, s3 + d
    for i in range(n - n % 4, n):
        m0 = max(m0, abs(v[i]))
        s0 += v[i]
    return max(max(m0, m1), max(m2, m3)), (s0 + s1) + (s2 + s3)


@_jit
def _extended(v, pad, cyclic):
    """``v`` with ``pad`` values on each side: the array wrapped (``cyclic``) or its edge values repeated."""
    m = v.size
    ext = np.empty(m + 2 * pad)
    ext[pad : pad + m] = v
    for i in range(pad):  # the edges only
        ext[i] = v[(i - pad) % m] if cyclic else v[0]
        ext[pad + m + i] = v[i % m] if cyclic else v[m - 1]
    return ext


@_jit
def gain_reduction(env_db, rate, box, cyclic):
    """Smoothed gain reduction (dB >= 0) per chunk from the required one ``env_db`` (<= 0 where none is
    needed): release at ``rate`` dB per chunk (the cycle before counts when ``cyclic``), then a centred
    maximum over ``2 box - 1`` chunks, then two centred means over ``box`` (odd) chunks; edges wrap when
    ``cyclic``, else repeat (scipy.ndimage's "wrap" and "nearest")."""
    m = env_db.size
    rel = np.empty(m)
    r = 0.0
    for _ in range(2 if cyclic else 1):
        for i in range(m):
            r = max(max(env_db[i], 0.0), r - rate)
            rel[i] = r
    width = 2 * box - 1
    run = _extended(rel, box - 1, cyclic)  # run[i]: max of ext[i : i + span], span doubling up to width
    span = 1
    while 2 * span <= width:
        for i in range(run.size - span):
            run[i] = max(run[i], run[i + span])
        span *= 2
    held = np.empty(m)
    for i in range(m):  # two overlapping runs of ``span`` cover the window of ``width``
        held[i] = max(run[i], run[i + width - span])
    half = box // 2
    for _ in range(2):
        ext = _extended(held, half, cyclic)
        s = 0.0
        for i in range(box):
            s += ext[i]
        held[0] = s / box
        for i in range(1, m):
            s += ext[i + box - 1] - ext[i - 1]
            held[i] = s / box
    return held


@_jit
def limited_power(red, gain_db, power, edges, cyclic):
    """K-weighted power per run ``edges[u] .. edges[u+1]`` of chunks at input gain ``gain_db`` less the
    reduction ``red`` (dB per chunk): chunk ``k``'s gain runs linearly from ``a_k`` to ``a_(k+1)``, whose
    mean square is ``(a^2 + ab + b^2) / 3``."""
    m, nq = power.size, red.size
    ln = np.log(10.0) / 20.0
    out = np.empty(edges.size - 1)
    a = np.exp((gain_db - red[0]) * ln)
    for u in range(edges.size - 1):
        acc = 0.0
        for k in range(edges[u], edges[u + 1]):
            j = k + 1
            if j >= nq:
                j = 0 if cyclic else nq - 1
            b = np.exp((gain_db - red[j]) * ln)
            acc += power[k] * (a * a + a * b + b * b) / 3.0
            a = b
        out[u] = acc
    return out


@_jit
def apply_gain(v, gain, nxt, out):
    """``out = v * g`` where ``g`` runs linearly from ``gain[k]`` to ``nxt[k]`` over chunk ``k`` of ``CHUNK``
    samples (float32: ``gain[k] + (nxt[k] - gain[k]) * (j / CHUNK)`` at sample ``j``) -> (peak |out|, sum of
    out in float64), kept per position in the chunk so that every step is one vector operation."""
    n = v.shape[0]
    frac = np.arange(CHUNK).astype(np.float32) / np.float32(CHUNK)
    peak = np.zeros(CHUNK, np.float32)
    total = np.zeros(CHUNK)
    for k in range(-(-n // CHUNK)):
        a = gain[k]
        d = nxt[k] - a
        i0 = k * CHUNK
        if i0 + CHUNK <= n:
            for j in range(CHUNK):  # a constant trip count
                y = v[i0 + j] * (a + d * frac[j])
                out[i0 + j] = y
                peak[j] = max(peak[j], abs(y))
                total[j] += y
        else:
            for j in range(n - i0):
                y = v[i0 + j] * (a + d * frac[j])
                out[i0 + j] = y
                peak[j] = max(peak[j], abs(y))
                total[j] += y
    return peak.max(), total.sum()
