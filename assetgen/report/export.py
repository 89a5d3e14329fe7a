"""``assetgen export --approved --to DIR``: the latest approved take of each asset into an engine folder.

Flat, predictable names (``{scene}_{asset}.wav`` by default) and a manifest of what was delivered,
``DIR/assetgen_export.csv``. Re-running copies only what changed: a file is skipped when the previous
manifest lists the same sha256 for it and the file in DIR still has that size. Every copy (and the manifest)
goes to a temporary file in DIR first and is renamed into place, so the engine never sees a half-written WAV.
Reads ROOT, writes only into DIR.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from assetgen.store.atomic import atomic_write

MANIFEST_NAME = "assetgen_export.csv"
MANIFEST_COLUMNS = ("scene", "asset", "version", "file", "sha256", "content_key", "lufs", "loop_start", "loop_end")
PATTERN_FIELDS = ("scene", "asset", "version", "category")
DEFAULT_PATTERN = "{scene}_{asset}.wav"


@dataclass
class ExportResult:
    """What one export did. Lists hold file names relative to ``to``."""

    to: Path
    manifest: Path
    copied: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)  # in the previous manifest, no longer delivered (left in place)

    @property
    def delivered(self) -> int:
        return len(self.copied) + len(self.unchanged)

    def __str__(self) -> str:
        text = (f"exported {self.delivered} approved asset(s) to {self.to}: {len(self.copied)} copied, "
                f"{len(self.unchanged)} unchanged; manifest {self.manifest}")
        if self.stale:
            text += f"\n{len(self.stale)} file(s) from an earlier export are no longer delivered (left in place): " \
                    + ", ".join(self.stale)
        return text


def file_name(pattern: str, row: dict) -> str:
    """Fill ``pattern`` from an index row; raises ValueError unless the result is a plain ``.wav`` file name."""
    values = {"scene": row["scene"], "asset": row["asset"], "version": int(row["version"]),
              "category": row.get("category") or ""}
    try:
        name = pattern.format(**values)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"export pattern {pattern!r}: {exc}; fields are "
                         + ", ".join("{%s}" % f for f in PATTERN_FIELDS)) from None
    if not name.lower().endswith(".wav") or name.startswith(".") or any(c in name for c in "/\\\0") \
            or name in (".wav",):
        raise ValueError(f"export pattern {pattern!r} gives {name!r}: expected a plain file name ending in .wav")
    return name


def approved_rows(root: Path) -> list[dict]:
    """The latest approved version of each asset in ROOT's index (scene/asset order)."""
    from assetgen.store.index import Index

    index = Index(root)
    found = (index.latest_approved(r["scene"], r["asset"]) for r in index.rows(latest_only=True))
    return [row for row in found if row is not None]


def read_manifest(path: Path) -> dict[str, dict]:
    """A previous export manifest as file name -> row (empty when absent or unreadable)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return {r["file"]: r for r in csv.DictReader(fh) if r.get("file")}
    except (OSError, csv.Error, KeyError):
        return {}


def plan_names(rows: list[dict], pattern: str) -> list[tuple[dict, str]]:
    """(row, file name) pairs; raises ValueError when two assets would get the same name."""
    taken: dict[str, str] = {}
    out = []
    for row in rows:
        name = file_name(pattern, row)
        ident = f"{row['scene']}/{row['asset']}"
        if name.lower() in taken:
            raise ValueError(f"export pattern {pattern!r} names both {taken[name.lower()]} and {ident} "
                             f"{name!r}; include {{scene}} and {{asset}}")
        taken[name.lower()] = ident
        out.append((row, name))
    return out


def copy_verified(src: Path, dest: Path, sha256: str) -> None:
    """Copy ``src`` to ``dest`` via a temp file in dest's folder; ValueError if the bytes do not hash to ``sha256``."""
    def copy(tmp: Path) -> None:
        digest = hashlib.sha256()
        with open(tmp, "wb") as out, open(src, "rb") as inp:
            for chunk in iter(lambda: inp.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sha256:
            raise ValueError(f"{src}: content does not match the index sha256 (file changed since render); "
                             "run a render to reconcile it, then export again")
        shutil.copymode(src, tmp)

    atomic_write(dest, copy)


def write_manifest(path: Path, entries: list[dict]) -> None:
    """Write the export manifest atomically (``MANIFEST_COLUMNS``)."""
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=MANIFEST_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(entries)

    atomic_write(path, write)


def _source(root: Path, row: dict) -> Path:
    rel = row.get("path") or ""
    src = (root / rel)
    if os.path.isabs(rel) or ".." in Path(rel).parts or not src.resolve().is_relative_to(root.resolve()):
        raise ValueError(f"{row['scene']}/{row['asset']}@v{row['version']}: index path {rel!r} is outside {root}")
    if not src.is_file():
        raise ValueError(f"{row['scene']}/{row['asset']}@v{row['version']}: {src} is missing; "
                         "run a render to restore it, then export again")
    return src


def export_approved(root: Path, to: Path, pattern: str = DEFAULT_PATTERN) -> ExportResult:
    """Copy the latest approved version of each asset from ROOT into ``to`` (only what changed).

    Raises ValueError for user errors (bad pattern, name clash, missing source file: all checked before
    anything is copied; a source whose bytes no longer match the index sha256 stops at that file).
    """
    root, to = Path(root), Path(to)
    if to.exists() and not to.is_dir():
        raise ValueError(f"--to {to}: not a directory")
    rows = plan_names(approved_rows(root), pattern)
    sources = [(row, name, _source(root, row)) for row, name in rows]  # all checked before copying
    to.mkdir(parents=True, exist_ok=True)
    manifest = to / MANIFEST_NAME
    previous = read_manifest(manifest)
    result = ExportResult(to=to, manifest=manifest)
    entries = []
    for row, name, src in sources:
        dest = to / name
        old = previous.get(name)
        if old and old.get("sha256") == row["sha256"] and dest.is_file() and dest.stat().st_size == src.stat().st_size:
            result.unchanged.append(name)
        else:
            copy_verified(src, dest, row["sha256"])
            result.copied.append(name)
        entries.append({**{c: row.get(c) for c in MANIFEST_COLUMNS if c != "file"}, "file": name})
    result.stale = sorted(set(previous) - {name for _, name, _ in sources})
    write_manifest(manifest, entries)
    return result
