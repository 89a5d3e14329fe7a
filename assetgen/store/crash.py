"""Named crash points for crash-safety tests: ``ASSETGEN_CRASH_AT=<point>:<n>`` SIGKILLs this process.

``crashpoint("after-rename")`` is a no-op (one dict lookup) unless the environment variable names that
point; then the n-th time (1-based, default 1) the point is reached the process kills itself with SIGKILL,
exactly like a power cut or an OOM kill: no ``finally`` blocks, no flushing. Any module may add points.
Points of the store's commit path: ``wav-half-written``, ``after-fsync``, ``after-rename``,
``after-index``.
"""

from __future__ import annotations

import os
import signal

ENV = "ASSETGEN_CRASH_AT"
_counts: dict[str, int] = {}
_target: tuple[str, int] | None | bool = False  # False = not parsed yet


def _parse(value: str | None) -> tuple[str, int] | None:
    """``"point:n"`` -> (point, n); ``"point"`` -> (point, 1); unset/empty -> None."""
    if not value:
        return None
    point, _, n = value.rpartition(":") if value.rpartition(":")[2].isdigit() else (value, "", "1")
    return point, max(int(n), 1)


def crashpoint(name: str) -> None:
    """SIGKILL this process if ``ASSETGEN_CRASH_AT`` names ``name`` and this is its n-th hit."""
    global _target
    if _target is False:
        _target = _parse(os.environ.get(ENV))
    if _target is None or _target[0] != name:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] == _target[1]:
        os.kill(os.getpid(), signal.SIGKILL)


def reset() -> None:
    """Re-read the environment and forget hit counts (tests)."""
    global _target
    _target = False
    _counts.clear()
