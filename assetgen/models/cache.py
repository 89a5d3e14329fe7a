"""Per-process model cache: each model is loaded once per process and device, not once per task."""

from __future__ import annotations

import threading
from pathlib import Path

from assetgen.models.registry import resolve

_lock = threading.Lock()
_cache: dict[tuple[str, str], object] = {}
load_count = 0  # how many models this process loaded (benchmarks and tests read it)


def get_backend(ref: str, model_dir: str | Path | None = None, device: str | None = None):
    """The loaded backend for ``ref`` on ``device`` (auto-picked when None), loading it on first use."""
    global load_count
    from assetgen.models.device import pick_device

    resolved = resolve(ref, model_dir)
    dev = pick_device(device)
    key = (resolved.source, dev)
    with _lock:
        backend = _cache.get(key)
        if backend is None:
            from assetgen.models.audiocraft_backend import AudiocraftBackend

            backend = _cache[key] = AudiocraftBackend(resolved, dev)
            load_count += 1
        return backend


def clear() -> None:
    with _lock:
        _cache.clear()
