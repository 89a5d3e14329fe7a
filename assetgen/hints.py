"""Spelling hints: "did you mean" for names typed by hand (columns, models, profiles, placeholders)."""

from __future__ import annotations

from typing import Iterable


def edit_distance(a: str, b: str) -> int:
    """Optimal-string-alignment distance (Levenshtein + adjacent swaps).

    Written by hand: difflib's ratio misses transpositions in short names (bpm/bmp) and no edit-distance
    library is among the project's dependencies.
    """
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[-1]


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice within typo distance of ``word`` (1 edit up to 4 letters, 2 beyond), case-insensitive."""
    limit = 1 if len(word) <= 4 else 2
    best = min(((edit_distance(word.lower(), c.lower()), c) for c in choices), default=None)
    return best[1] if best is not None and best[0] <= limit else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` 'word'`` followed by ``(did you mean 'x'?)`` when a choice is close."""
    match = closest(word, choices)
    return f" '{word}' (did you mean '{match}'?)" if match else f" '{word}'"
