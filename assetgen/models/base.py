"""The one protocol every model backend follows, and the errors generation can raise."""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from assetgen.spec import GenRequest


@runtime_checkable
class ModelBackend(Protocol):
    """A text-to-audio model: a batch of requests sharing one ``GenParams`` in, one array per request out."""

    name: str  # label for logs / index ("PLACEHOLDER ..." for random-weight models)
    sample_rate: int  # native rate of the returned audio, Hz
    max_duration_s: float  # longest single window; longer requests use continuation
    placeholder: bool

    def generate(self, requests: Sequence[GenRequest]) -> list[np.ndarray | BaseException]:
        """Return float32 arrays shaped (channels, samples), one per request, in request order; a request that
        fails on its own (not the batch) may have its exception in its place instead. A request with
        ``prompt_audio`` continues that audio (only music backends get such requests) and returns only the new
        part, ``params.duration_s`` long."""
        ...


class GenerationError(RuntimeError):
    """Generation of one request failed (after batch splitting)."""


class RequestRefused(GenerationError):
    """A request that cannot succeed as asked (retrying it gives the same result): never retried."""


class CheckpointRefused(RuntimeError):
    """A checkpoint needs a pickled global outside the allowlist; it is not loaded."""
