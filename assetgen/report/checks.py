"""Pass/fail checks shown per asset version: loudness, true peak, loop seam (pure functions over index rows)."""

from __future__ import annotations

from dataclasses import dataclass

LOUDNESS_TOLERANCE_LU = 1.0  # integrated loudness within +-1 LU of the row's target
TRUE_PEAK_MARGIN_DB = 0.05  # measurement slack above the true-peak ceiling


def seam_threshold() -> float:
    """The seam score above which a loop fails: the DSP's own ``assetgen.dsp.loop.SEAM_THRESHOLD``."""
    from assetgen.dsp.loop import SEAM_THRESHOLD  # imported here: the loop module pulls in scipy

    return float(SEAM_THRESHOLD)


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


def loudness_check(lufs, target) -> Check:
    """Integrated loudness (LUFS) within ±1 LU of ``target`` (LUFS)."""
    lufs, target = _num(lufs), _num(target)
    value = "—" if lufs is None else f"{lufs:.1f} LUFS"
    if target is None:
        return Check("Loudness", value, "no target", "n/a")
    text = f"{target:.1f} ± {LOUDNESS_TOLERANCE_LU:g} LU"
    if lufs is None:
        return Check("Loudness", value, text, "fail")  # a target exists but nothing measurable (e.g. silence)
    ok = abs(lufs - target) <= LOUDNESS_TOLERANCE_LU + 1e-9
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


def row_checks(row: dict, threshold: float) -> list[Check]:
    """All checks of one index row, in display order."""
    checks = [loudness_check(row.get("lufs"), row.get("loudness_target")),
              true_peak_check(row.get("true_peak_dbtp"), row.get("true_peak_target"))]
    seam = seam_check(row.get("seam_score"), threshold, is_loop(row))
    return checks + ([seam] if seam else [])
