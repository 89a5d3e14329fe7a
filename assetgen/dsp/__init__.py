"""Delivery DSP: resample, channels, fx, seamless loops, loudness + true-peak ceiling, mixes, transitions.

Import-light on purpose (manifest validation imports this package): heavy libraries (soxr, pyloudnorm,
pedalboard, librosa) are imported by the submodules that need them, and pedalboard only inside functions.
Submodules: ``resample``, ``loudness``, ``loop``, ``fx``, ``mix``, ``transitions``, ``chain``.
"""

from __future__ import annotations

# Bump whenever delivered audio changes for the same inputs (part of every content key).
POSTPROCESS_VERSION = 1

__all__ = ["POSTPROCESS_VERSION"]
