"""Batched generation with out-of-memory splitting: halve the batch and retry, down to single requests."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from assetgen.models.base import GenerationError, ModelBackend
from assetgen.spec import GenRequest

Result = np.ndarray | BaseException


def is_oom(exc: BaseException) -> bool:
    """True for CUDA/MPS out-of-memory errors (``torch.cuda.OutOfMemoryError`` or its RuntimeError form)."""
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


def chunk(requests: Sequence[GenRequest], size: int) -> list[list[GenRequest]]:
    """Split into batches of at most ``size`` requests, order kept."""
    size = max(1, int(size))
    return [list(requests[i:i + size]) for i in range(0, len(requests), size)]


def generate_split(backend: ModelBackend, requests: Sequence[GenRequest],
                   on_split: Callable[[int, BaseException], None] | None = None) -> list[Result]:
    """Generate ``requests`` as one batch; on OOM split in halves recursively.

    Returns one entry per request: the audio array, or the exception that made it fail *alone*. Errors other than
    out-of-memory fail every request of the batch (they are not caused by the batch size).
    """
    try:
        out = backend.generate(requests)
        if len(out) != len(requests):
            raise GenerationError(f"backend returned {len(out)} results for {len(requests)} requests")
        return list(out)
    except Exception as exc:  # noqa: BLE001 - sorted into per-request results below
        if not is_oom(exc):
            return [exc] * len(requests)
        free = getattr(backend, "free_memory", None)
        if free is not None:
            free()
        if len(requests) == 1:
            return [GenerationError(f"out of memory generating a single request: {exc}")]
        if on_split is not None:
            on_split(len(requests), exc)
        half = len(requests) // 2
        return generate_split(backend, requests[:half], on_split) + generate_split(backend, requests[half:], on_split)
