"""Delivery DSP: resample, channels, fx, seamless loops, loudness + true-peak ceiling, mixes, transitions.

Import-light on purpose (manifest validation imports this package): heavy libraries (soxr, scipy,
pedalboard, librosa) are imported by the submodules that need them, and pedalboard only inside functions.
Submodules: ``resample``, ``loudness``, ``loop``, ``fx``, ``mix``, ``transitions``, ``chain``, and ``kernels``
(numba-compiled inner loops, imported by ``loudness`` and by ``store.wav`` when it encodes).
"""

from __future__ import annotations

# Bump whenever delivered audio changes for the same inputs (part of every content key).
# 2: float32 K-weighting (loudness within 0.001 LU) and the loop search's step statistic on a coarser
#    subset can pick a different loop start in near-ties, so delivered loops may differ from version 1.
# 3: DC-blocking high-pass before loudness, BS.1770-4 K-weighting coefficients, a converging look-ahead
#    true-peak limiter (targets reached or refused) and a flatter true-peak interpolator.
# 4: the high-pass and K-weighting run in float64 (compiled kernels) instead of float32 sosfilt, so delivered
#    samples differ in their last bits and limiter settings by their rounding.
POSTPROCESS_VERSION = 4

__all__ = ["POSTPROCESS_VERSION"]
