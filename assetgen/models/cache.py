"""Model cache: each model is loaded once per process and device, not once per task.

:class:`ModelCache` is the cache; :func:`default_cache` is the one instance per process that the render's
generation tasks share (a Prefect or Dask worker keeps its models between tasks). ``get_backend``, ``clear``
and ``load_count`` are that instance's, for callers that do not hold a cache of their own.
"""

from __future__ import annotations

import threading
from pathlib import Path

from assetgen.models.registry import resolve


class ModelCache:
    """Loaded backends keyed by (checkpoint source, device); ``load_count`` counts loads since creation."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._backends: dict[tuple[str, str], object] = {}
        self.load_count = 0

    def get(self, ref: str, model_dir: str | Path | None = None, device: str | None = None):
        """The loaded backend for ``ref`` on ``device`` (auto-picked when None), loading it on first use."""
        from assetgen.models.device import pick_device
        from assetgen.models.registry import FILE_KIND, TTS_KIND

        resolved = resolve(ref, model_dir)
        if resolved.kind == FILE_KIND:  # nothing to load: a fresh reader per batch (it takes its file's rate)
            from assetgen.models.file_backend import FileBackend

            return FileBackend(resolved)
        tts = resolved.kind == TTS_KIND
        dev = "cpu" if tts else pick_device(device)  # espeak-ng is a CPU program; no torch import for it
        key = (resolved.source, dev)
        with self._lock:  # one load per key even when two threads ask at once
            backend = self._backends.get(key)
            if backend is None:
                if tts:
                    from assetgen.models.espeak_backend import EspeakBackend as Backend
                else:
                    from assetgen.models.audiocraft_backend import AudiocraftBackend as Backend
                backend = self._backends[key] = Backend(resolved, dev)
                self.load_count += 1
            return backend

    def clear(self) -> None:
        """Forget every loaded backend (the next ``get`` loads again)."""
        with self._lock:
            self._backends.clear()


_default = ModelCache()


def default_cache() -> ModelCache:
    """This process's cache."""
    return _default


def get_backend(ref: str, model_dir: str | Path | None = None, device: str | None = None):
    """:meth:`ModelCache.get` on this process's cache."""
    return _default.get(ref, model_dir, device)


def clear() -> None:
    """:meth:`ModelCache.clear` on this process's cache."""
    _default.clear()


def __getattr__(name: str):
    if name == "load_count":  # models this process's cache loaded (benchmarks and tests read it)
        return _default.load_count
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
