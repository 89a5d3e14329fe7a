"""Pass/fail checks shown per asset version: loudness, true peak, loop seam (pure functions over index rows).

The thresholds are the QC gates' defaults (``assetgen.qc``): one rule for the render's verdict and the page.
The row's own loudness tolerance and mode come from its ``params`` (the ``post`` settings it was rendered with).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from assetgen.qc import DEFAULT_LOUDNESS_TOLERANCE_LU, DEFAULTS, seam_threshold  # noqa: F401 (seam: re-exported)

LOUDNESS_TOLERANCE_LU = DEFAULT_LOUDNESS_TOLERANCE_LU  # when the row's params do not say
TRUE_PEAK_MARGIN_DB = DEFAULTS["true_peak"]  # measurement slack above the true-peak ceiling
_MODE_COLUMN = {"integrated": "lufs", "short-term": "max_short_term_lufs", "momentary": "max_momentary_lufs"}


@dataclass(frozen=True)
class Check:
    """One measured value against its target. ``state`` is ``pass``, ``fail`` or ``n/a`` (nothing measured)."""

    name: str
    value: str
    target: str
    state: str


def _num(value) -> float | None:
    try:
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None


def loudness_check(lufs, target, tolerance: float = LOUDNESS_TOLERANCE_LU, mode: str = "integrated") -> Check:
    """Loudness (LUFS; integrated, or the max short-term / momentary one for those ``mode``s) within
    ±``tolerance`` LU of ``target`` (LUFS)."""
    lufs, target = _num(lufs), _num(target)
    value = "—" if lufs is None else f"{lufs:.1f} LUFS" + ("" if mode == "integrated" else f" (max {mode})")
    if target is None:
        return Check("Loudness", value, "no target", "n/a")
    text = f"{target:.1f} ± {tolerance:g} LU"
    if lufs is None:
        return Check("Loudness", value, text, "fail")  # a target exists but nothing measurable (e.g. silence)
    ok = abs(lufs - target) <= tolerance + 1e-9
    return Check("Loudness", value, text, "pass" if ok else "fail")


def true_peak_check(peak, ceiling) -> Check:
    """True peak (dBTP) at most ``ceiling`` + 0.05 dB."""
    peak, ceiling = _num(peak), _num(ceiling)
    value = "—" if peak is None else f"{peak:.2f} dBTP"
    if ceiling is None or peak is None:
        return Check("True peak", value, "no ceiling" if ceiling is None else f"≤ {ceiling:.1f} dBTP", "n/a")
    ok = peak <= ceiling + TRUE_PEAK_MARGIN_DB + 1e-9
    return Check("True peak", value, f"≤ {ceiling:.1f} dBTP", "pass" if ok else "fail")


def seam_check(score, threshold: float, is_loop: bool) -> Check | None:
    """Loop seam score at most ``threshold``; None for non-loop assets."""
    if not is_loop:
        return None
    score = _num(score)
    if score is None:
        return Check("Loop seam", "—", f"≤ {threshold:g}", "n/a")
    return Check("Loop seam", f"{score:.3f}", f"≤ {threshold:g}", "pass" if score <= threshold + 1e-12 else "fail")


def is_loop(row: dict) -> bool:
    """True when the row carries a usable loop region (samples, end exclusive)."""
    start, end = _num(row.get("loop_start")), _num(row.get("loop_end"))
    return start is not None and end is not None and end > start


def row_post(row: dict) -> dict:
    """The ``post`` settings in a row's ``params`` JSON (empty when absent or unreadable)."""
    try:
        params = json.loads(row.get("params") or "{}")
    except (TypeError, ValueError):
        return {}
    post = params.get("post") if isinstance(params, dict) else None
    return post if isinstance(post, dict) else {}


def row_checks(row: dict, threshold: float) -> list[Check]:
    """All checks of one index row, in display order."""
    post = row_post(row)
    mode = post.get("loudness_mode") if post.get("loudness_mode") in _MODE_COLUMN else "integrated"
    tolerance = _num(post.get("loudness_tolerance_lu"))
    checks = [loudness_check(row.get(_MODE_COLUMN[mode]), row.get("loudness_target"),
                             LOUDNESS_TOLERANCE_LU if tolerance is None else tolerance, mode),
              true_peak_check(row.get("true_peak_dbtp"), row.get("true_peak_target"))]
    seam = seam_check(row.get("seam_score"), threshold, is_loop(row))
    return checks + ([seam] if seam else [])
