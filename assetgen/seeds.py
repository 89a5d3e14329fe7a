"""Deterministic seeds: the same parts give the same seed on every run, platform and row order."""

from __future__ import annotations

import hashlib

SEED_MAX = 2**32 - 1  # largest seed a manifest may give (audiocraft takes a 32-bit seed)


def derive_seed(*parts: object) -> int:
    """Deterministic 31-bit seed from the given parts (their ``str``, joined by U+001F)."""
    text = "\x1f".join(map(str, parts)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big") & 0x7FFF_FFFF


def attempt_seed(seed: int, attempt: int) -> int:
    """Seed of generation attempt ``attempt`` (1-based) of an asset whose seed is ``seed``: the asset's own seed
    first (so a take that passes its gates is the take it always was), then one derived from both."""
    return int(seed) if attempt <= 1 else derive_seed(seed, "attempt", attempt)
