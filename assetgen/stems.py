"""Stem sets (vertical layering): the delivered stems of one set checked together, and their mixed preview.

A set passes when every stem has the same length in samples and the same loop points, and when the sum of the
stems is itself a seamless loop at the loop point (``dsp.loop.seam_score`` of the sum, wrap at sample 0, within
``dsp.loop.SEAM_THRESHOLD``): a game engine plays the stems in any combination, so the whole must loop too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

PREVIEW_PEAK = 10 ** (-1 / 20)  # the mixed preview's sample peak: -1 dBFS


@dataclass(frozen=True)
class Stem:
    """One delivered stem: float32 ``(channels, samples)`` at ``sample_rate`` Hz and its loop points (or None)."""

    audio: np.ndarray
    sample_rate: int
    loop: tuple[int, int] | None


@dataclass
class StemSetCheck:
    """What :func:`check_stem_set` measured: per stem its length (samples) and loop points, the seam score of
    the stems' sum (None when lengths differ: nothing to sum), and why the set fails (empty: it passes)."""

    lengths: dict[str, int]
    loops: dict[str, tuple[int, int] | None]
    sum_seam: float | None
    threshold: float
    reasons: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.reasons


def mix(stems: Mapping[str, Stem]) -> np.ndarray:
    """The stems summed (mono stems spread to the widest channel count), float64 ``(channels, samples)``."""
    channels = max(s.audio.shape[0] for s in stems.values())
    total = None
    for stem in stems.values():
        x = stem.audio.astype(np.float64)
        x = np.repeat(x, channels, axis=0) if x.shape[0] == 1 else x
        total = x if total is None else total + x
    return total


def check_stem_set(stems: Mapping[str, Stem]) -> StemSetCheck:
    """Check a delivered stem set (name -> :class:`Stem`); see the module docstring."""
    from assetgen.dsp.loop import SEAM_THRESHOLD, seam_score

    lengths = {name: int(s.audio.shape[1]) for name, s in stems.items()}
    loops = {name: s.loop for name, s in stems.items()}
    reasons = []
    if len(set(lengths.values())) > 1:
        reasons.append("lengths differ: " + ", ".join(f"{n} {v}" for n, v in lengths.items()))
    if len({s.sample_rate for s in stems.values()}) > 1:
        reasons.append("sample rates differ: " + ", ".join(f"{n} {s.sample_rate}" for n, s in stems.items()))
    if len(set(loops.values())) > 1:
        reasons.append("loop points differ: " + ", ".join(f"{n} {v}" for n, v in loops.items()))
    score = None
    if not reasons:
        looped = next(iter(loops.values()))
        if looped is not None:
            start, end = looped
            score = seam_score(mix(stems)[:, start:end])
            if score > SEAM_THRESHOLD:
                reasons.append(f"the sum of the stems does not loop: seam score {score:.2f} > {SEAM_THRESHOLD:g}")
    return StemSetCheck(lengths, loops, score, float(SEAM_THRESHOLD), reasons)


def preview(stems: Mapping[str, Stem]) -> np.ndarray:
    """The stems' sum scaled to a -1 dBFS sample peak (a listening preview, not a delivered asset), float32."""
    total = mix(stems)
    peak = float(np.max(np.abs(total))) if total.size else 0.0
    return (total * (PREVIEW_PEAK / peak) if peak > 0 else total).astype(np.float32)
