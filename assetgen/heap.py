"""glibc heap settings for the long-running render process.

glibc raises its mmap threshold each time a large mmapped block is freed (up to 32 MiB on 64-bit), so after the
first batches the per-batch audio buffers (a few MiB each: generated takes, resampled and encoded clips) are
carved from the heap instead; freed, they leave holes that later, differently sized buffers only partly reuse,
and the process's resident size climbs with every batch. Fixing the threshold keeps such buffers in their own
mappings, returned to the system when freed, and ``malloc_trim`` hands back the heap's free top and pages after
a batch. glibc offers no Python binding for either, hence ctypes; elsewhere (musl, macOS) both do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import lru_cache

M_MMAP_THRESHOLD = -3  # mallopt parameter number (malloc.h)
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's own initial value, held fixed


@lru_cache(maxsize=1)
def _libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def fix_mmap_threshold() -> bool:
    """Hold glibc's mmap threshold at :data:`MMAP_THRESHOLD_BYTES`; True when glibc accepted it."""
    libc = _libc()
    return bool(libc and libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))


def trim() -> None:
    """Return the heap's free memory to the system (``malloc_trim(0)``); a no-op without glibc."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
