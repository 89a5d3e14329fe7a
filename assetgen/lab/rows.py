"""Lab requests as manifest rows: a take is validated, keyed and kept through the manifest's own parser.

A take request (one clip, or a scene of layers) becomes manifest cells (column -> text) with an explicit
seed, so the row a user keeps is the row that made the take: the next render gives it the same content key
and the same samples. Every take is validated by writing its rows as a CSV and loading it with
``manifest.load_manifests`` (one set of rules for the lab and for renders); keeping appends the rows to a
manifest CSV after validating the whole resulting file.
"""

from __future__ import annotations

import csv
import io
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from assetgen.manifest import ManifestError, load_manifests
from assetgen.manifest._fields import REQUIRED
from assetgen.spec import MIX_MODEL, TTS_MODEL, AssetSpec

LAB_SCENE = "lab"  # scene of a take's rows until it is kept under the user's own scene name
SEED_LIMIT = 2**32  # seeds the lab draws: the manifest's seed range
# request field -> manifest column (``cfg`` is the issue's name for ``cfg_coef``)
_CELLS = {"model": "model", "prompt": "prompt", "duration_s": "duration_s", "temperature": "temperature",
          "top_k": "top_k", "top_p": "top_p", "cfg": "cfg_coef", "seed": "seed", "loop": "loop", "bpm": "bpm",
          "bars": "bars", "crossfade_s": "crossfade_s", "loudness": "loudness", "voice": "voice", "rate": "rate",
          "gain_db": "gain_db", "start_s": "start_s", "fade_in_s": "fade_in_s", "fade_out_s": "fade_out_s",
          "duck_db": "duck_db", "duck_attack_s": "duck_attack_s", "duck_release_s": "duck_release_s",
          "fx": "fx", "qc": "qc", "max_attempts": "max_attempts"}  # fmt: skip
_MIX_CELLS = ("loudness", "loop", "bpm", "bars", "crossfade_s", "duration_s")


class LabInputError(ValueError):
    """A take or keep request the manifest rules refuse; the message lists every problem (HTTP 422)."""


def cell(value: Any) -> str:
    """Manifest text of a request value: ``repr`` for floats (exact round trip), ``true``/``false``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def escape_prompt(prompt: str) -> str:
    """A prompt as a manifest cell: braces doubled, so they are text and not template placeholders."""
    return prompt.replace("{", "{{").replace("}", "}}")


def draw_seed() -> int:
    """A fresh seed for a take that did not ask for one (written into its row, so a render repeats it)."""
    return secrets.randbelow(SEED_LIMIT)


def clip_row(fields: dict[str, Any], scene: str, asset: str) -> dict[str, str]:
    """Manifest cells of one generated clip; ``fields`` are request fields (see ``_CELLS``), None = unset.

    A ``tts`` row gets no seed (espeak-ng has none); every other row gets the request's seed or a new one.
    """
    row = {"scene": scene, "asset": asset}
    for name, column in _CELLS.items():
        value = fields.get(name)
        if value is not None:
            # prompts are whitespace-normalised as the manifest does it: one CSV line per row
            row[column] = escape_prompt(" ".join(str(value).split())) if name == "prompt" else cell(value)
    if fields.get("model") != TTS_MODEL and fields.get("seed") is None:
        row["seed"] = str(draw_seed())
    return row


def scene_rows(mix: dict[str, Any], layers: Sequence[tuple[str, dict[str, Any]]], scene: str,
               asset: str) -> list[dict[str, str]]:
    """Rows of a mixed scene: one per ``(label, layer fields)`` (asset = label, so layer names and hence the
    mix's key do not depend on the scene's name) and the ``model=mix`` row ``asset`` with ``mix``'s fields."""
    rows = [{**clip_row(fields, scene, label), "layer": label} for label, fields in layers]
    mix_row = {"scene": scene, "asset": asset, "model": MIX_MODEL}
    mix_row.update({c: cell(mix[c]) for c in _MIX_CELLS if mix.get(c) is not None})
    return rows + [mix_row]


def renamed(rows: Sequence[dict[str, str]], scene: str, asset: str) -> list[dict[str, str]]:
    """The same rows under ``scene``; the single clip or the mix row named ``asset`` (layers keep theirs)."""
    out = []
    for row in rows:
        named = {**row, "scene": scene}
        if len(rows) == 1 or row.get("model") == MIX_MODEL:
            named["asset"] = asset
        out.append(named)
    return out


def header_for(rows: Sequence[dict[str, str]], existing: Sequence[str] = ()) -> list[str]:
    """``existing`` columns, then the required ones, then any other column the rows use (first-seen order)."""
    columns = list(existing)
    for column in (*REQUIRED, *(c for row in rows for c in row)):
        if column not in columns:
            columns.append(column)
    return columns


def csv_text(header: Sequence[str], rows: Sequence[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(header), lineterminator="\n", extrasaction="raise")
    writer.writerows(rows)
    return out.getvalue()


def _issues_text(exc: ManifestError, path: Path, shown: str) -> str:
    return str(exc).replace(str(path), shown)


def validate_rows(rows: Sequence[dict[str, str]], folder: Path) -> list[AssetSpec]:
    """The specs of ``rows`` as a manifest in ``folder`` would give them; raises ``LabInputError``."""
    header = header_for(rows)
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".lab-take-", suffix=".csv", dir=folder)
    path = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(",".join(header) + "\n" + csv_text(header, rows))
        return load_manifests([path])
    except ManifestError as exc:
        raise LabInputError(_issues_text(exc, path, "request")) from None
    finally:
        path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Kept:
    """What keep wrote: the manifest, the rows (cells as written) and their CSV line numbers."""

    manifest: Path
    rows: list[dict[str, str]]
    lines: list[int]
    specs: list[AssetSpec]


def _read_existing(path: Path) -> tuple[list[str], list[dict[str, str]], str]:
    text = path.read_text(encoding="utf-8-sig")
    reader = csv.DictReader(io.StringIO(text))
    return list(reader.fieldnames or []), list(reader), text


def keep_rows(manifest: Path, rows: Sequence[dict[str, str]],
              check: Callable[[list[AssetSpec]], None] | None = None) -> Kept:
    """Append ``rows`` to the CSV ``manifest`` (created with a header if missing), after validating the whole
    resulting file with the manifest rules; nothing is written when it would not validate.

    When the file lacks some of the rows' columns, it is rewritten with them added at the end of its header
    (its existing rows get those cells empty, which means "not set"); otherwise the rows are appended as
    lines and the existing bytes stay as they are. ``check(kept specs)`` runs before anything is written (it
    raises to refuse). Raises ``LabInputError``.
    """
    from assetgen.store.atomic import atomic_write

    scenes = {r["scene"] for r in rows}
    columns, existing, text = _read_existing(manifest) if manifest.is_file() else ([], [], "")
    layered = sorted({r.get("scene", "") for r in existing if r.get("layer")} & scenes)
    if layered and any(r.get("layer") for r in rows):
        raise LabInputError(f"{manifest}: scene {layered[0]!r} already has layer rows; their mix would take "
                            "this scene's layers too: keep it under another scene name")
    header = header_for(rows, columns)
    if columns and header == columns:
        new_text = text + ("" if not text or text.endswith("\n") else "\n") + csv_text(header, rows)
    else:
        new_text = ",".join(header) + "\n" + csv_text(header, [*existing, *rows])
    first_line = _line_count(new_text) - _line_count(csv_text(header, rows)) + 1
    trial = manifest.with_name(f".{manifest.name}.lab-check.csv")  # same folder: relative model paths resolve
    try:
        trial.write_text(new_text, encoding="utf-8")
        specs = load_manifests([trial])
    except ManifestError as exc:
        raise LabInputError(_issues_text(exc, trial, str(manifest))) from None
    finally:
        trial.unlink(missing_ok=True)
    mine = {(r["scene"], r["asset"]) for r in rows}
    kept_specs = [s for s in specs if (s.scene, s.asset) in mine]
    if check is not None:
        check(kept_specs)
    atomic_write(manifest, new_text.encode("utf-8"))
    return Kept(manifest, list(rows), list(range(first_line, first_line + len(rows))), kept_specs)


def _line_count(text: str) -> int:
    """Physical lines of CSV text (quoted cells may span lines)."""
    return text.count("\n") + (0 if not text or text.endswith("\n") else 1)
