"""Recorded sources (model ``file``): the ``ModelBackend`` that reads instead of generating.

A request's ``GenParams`` carries the file, its sha256 and the segment (``source_*``); the backend returns the
whole segment at the file's own rate, so the delivery chain resamples, loops (searching the whole segment for
its seam), applies fx and loudness exactly as for a model's take. Nothing is loaded and torch is never
imported; the model cache makes a fresh reader per batch, because a batch's rate is its file's rate (a batch
holds one file: batches group requests by ``GenParams``, which name the file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from assetgen.models.base import RequestRefused
from assetgen.models.registry import ResolvedModel
from assetgen.sources import SourceError, read_segment
from assetgen.spec import GenRequest

MAX_DURATION_S = 600.0  # the manifest refuses longer segments


class FileBackend:
    """``ModelBackend`` for ``file`` rows: each request's recording segment, float32 ``(channels, samples)``.

    ``sample_rate`` is the rate of the batch's file once :meth:`generate` ran (requests of another rate are
    resampled to the first one's, should a batch ever mix files); ``name`` says which file it read."""

    def __init__(self, resolved: ResolvedModel, device: str = "cpu"):
        self.resolved = resolved
        self.device = "cpu"
        self.name = resolved.label
        self.placeholder = False
        self.sample_rate = 48_000  # replaced by the first file's rate
        self.max_duration_s = MAX_DURATION_S
        self._rate: int | None = None

    def _one(self, request: GenRequest) -> np.ndarray | RequestRefused:
        import soxr

        p = request.params
        try:
            audio, sr = read_segment(p.source, p.source_start_s, p.source_end_s, p.source_sha256)
        except SourceError as exc:
            return RequestRefused(str(exc))
        if self._rate is None:
            self._rate = self.sample_rate = sr
        elif sr != self._rate:
            audio = np.ascontiguousarray(soxr.resample(audio.T, sr, self._rate, quality="VHQ").T, dtype=np.float32)
        return audio

    def generate(self, requests: Sequence[GenRequest]) -> list[np.ndarray | RequestRefused]:
        """The segment of each request's recording, or a ``RequestRefused`` for a file that cannot be read."""
        out = [self._one(r) for r in requests]
        names = sorted({Path(r.params.source).name for r in requests})
        self.name = f"recording {names[0]}" if len(names) == 1 else f"recordings ({len(names)} files)"
        return out
