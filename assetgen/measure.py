"""``assetgen measure``: the render's own meters on any WAV/FLAC/OGG file, without torch or Prefect.

``measure_file(path)`` returns integrated loudness, loudness range, max momentary and short-term loudness
(LUFS/LU, BS.1770-4 / EBU Tech 3341-3342), true and sample peak (dBTP/dBFS), DC offset, duration (s) and
the first ``smpl`` loop (frames, end exclusive) of a WAV; ``main`` prints them as a table or JSON.
The true peak of a file with a loop is read cyclically (across the seam, as the engine plays it).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

KEYS = ("path", "integrated_lufs", "lra_lu", "max_momentary_lufs", "max_short_term_lufs", "true_peak_dbtp",
        "sample_peak_dbfs", "dc_offset", "duration_s", "loop_start", "loop_end")


class MeasureError(ValueError):
    """A file that cannot be read as audio."""


def measure_file(path: str | Path) -> dict:
    """Measurements of one audio file (keys ``KEYS``; None where not applicable, e.g. no loop, silence)."""
    import soundfile as sf

    from .dsp.loudness import measure
    from .store.wav import WavError, read_loop

    p = Path(path)
    try:
        data, sr = sf.read(p, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise MeasureError(f"{p}: cannot read audio ({exc})") from None
    loop = None
    if p.suffix.lower() in (".wav", ".wave"):
        try:
            loop = read_loop(p)
        except (WavError, OSError):
            loop = None
    x = data.T
    whole_loop = loop is not None and loop == (0, x.shape[1])
    m = measure(x, sr, cyclic=whole_loop)
    return {
        "path": str(p), "integrated_lufs": m.lufs, "lra_lu": m.lra_lu,
        "max_momentary_lufs": m.max_momentary_lufs, "max_short_term_lufs": m.max_short_term_lufs,
        "true_peak_dbtp": m.true_peak_dbtp, "sample_peak_dbfs": m.sample_peak_dbfs, "dc_offset": m.dc_offset,
        "duration_s": x.shape[1] / sr, "loop_start": loop[0] if loop else None,
        "loop_end": loop[1] if loop else None,
    }


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2e}" if value != 0 and abs(value) < 1e-3 else f"{value:.2f}"
    return str(value)


def format_table(rows: Sequence[dict]) -> str:
    """One line per file, columns ``KEYS`` (shortened headers), values rounded to 0.01."""
    heads = ("file", "I LUFS", "LRA LU", "M max", "S max", "TP dBTP", "SP dBFS", "DC", "dur s", "loop start",
             "loop end")
    cells = [heads] + [tuple(_cell(r[k]) for k in KEYS) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(heads))]
    return "\n".join("  ".join(c[i].ljust(widths[i]) if i == 0 else c[i].rjust(widths[i])
                               for i in range(len(heads))).rstrip() for c in cells)


def _json_safe(row: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


def main(argv: Sequence[str] | None = None) -> int:
    """``measure FILE... [--json]``: prints a table (or a JSON list, one object per file); exit 0, or 2 when a
    file cannot be read (its error on stderr, the other files still measured)."""
    args = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in args
    files = [a for a in args if a != "--json"]
    if not files:
        print("usage: assetgen measure FILE... [--json]", file=sys.stderr)
        return 2
    return run(files, as_json)


def run(files: Sequence[str | Path], as_json: bool = False) -> int:
    """Measure ``files`` and print them (what the CLI command calls); exit code 0, or 2 if any was unreadable."""
    rows, code = [], 0
    for f in files:
        try:
            rows.append(_json_safe(measure_file(f)))
        except MeasureError as exc:
            print(f"error: {exc}", file=sys.stderr)
            code = 2
    print(json.dumps(rows, indent=2) if as_json else format_table(rows))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
