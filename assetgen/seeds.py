"""Deterministic seeds: the same parts give the same seed on every run, platform and row order."""

from __future__ import annotations

import hashlib

SEED_MAX = 2**32 - 1  # largest seed a manifest may give (audiocraft takes a 32-bit seed)


def derive_seed(*parts: object) -> int:
    """Deterministic 31-bit seed from the given parts (their ``str``, joined by U+001F)."""
    text = "\x1f".join(map(str, parts)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big") & 0x7FFF_FFFF
