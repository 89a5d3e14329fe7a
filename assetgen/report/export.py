"""``assetgen export --to DIR``: the latest approved (or latest passing) take of each asset into an engine folder.

Flat, predictable names (``{scene}_{asset}.wav`` by default, NFC-normalised) and a manifest of what was delivered,
``DIR/assetgen_export.csv``. Everything is checked before anything is copied, and nothing is copied when a check
fails:

- two assets mapping to one name (also when they differ only in case or Unicode normal form) is an error;
- every source file's sha256 is checked against the index (cheaply through the verification cache): damaged or
  missing sources are refused, listed (``skip_damaged=True`` exports the rest and lists them);
- a file in DIR that the previous manifest does not list is the user's: it is not overwritten unless
  ``overwrite=True`` (a file that already holds exactly the bytes to deliver is taken over, nothing is lost);
- retired assets (``assetgen retire``) are left out, whatever the mode and ``include_failing``, and listed; a
  file an earlier export delivered for one stays in DIR, unlisted (like any file export no longer delivers);
- takes with ``approval_blockers`` (placeholder, bad audio status, failed QC) are skipped and listed unless
  ``include_failing=True``; a skipped asset's file from an earlier export stays listed in the manifest (it is
  still there, and still export's). Files an export no longer delivers for other reasons (a new pattern, an
  asset no longer approved) are left in place, unlisted: from then on they count as the user's.

A re-run copies only what changed: a file is unchanged when the previous manifest lists the same sha256 and
the file in DIR hashes to it (always hashed: bit rot and copies that keep size and mtime are exactly what a
stat cannot see, and reading a file costs less than the copy it saves). Every copy (and the manifest) goes to a
temporary file in DIR first and is renamed into place, so the engine never sees a half-written WAV; should a
copy still fail, the manifest is written for what DIR then holds before the error is raised.
Reads ROOT, writes only into DIR.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from assetgen.report.approval import approval_blockers
from assetgen.store.store import sha256_file
from assetgen.store.atomic import atomic_write

MANIFEST_NAME = "assetgen_export.csv"
MANIFEST_COLUMNS = ("scene", "asset", "version", "file", "sha256", "content_key", "lufs", "loop_start", "loop_end")
PATTERN_FIELDS = ("scene", "asset", "version", "category")
DEFAULT_PATTERN = "{scene}_{asset}.wav"
MODES = ("approved", "all-latest")


class ExportError(ValueError):
    """An export refused before copying (or stopped with its manifest written); the message lists every problem."""


@dataclass
class ExportResult:
    """What one export did. Lists hold file names relative to ``to`` unless noted."""

    to: Path
    manifest: Path
    mode: str = "approved"
    copied: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)  # in the previous manifest, no longer delivered (left in place)
    overwritten: list[str] = field(default_factory=list)  # files export did not deliver, replaced (overwrite=True)
    skipped: list[str] = field(default_factory=list)  # "scene/asset@vN: reasons" left out (approval blockers)
    damaged: list[str] = field(default_factory=list)  # "scene/asset@vN: problem" left out (skip_damaged=True)
    kept: list[str] = field(default_factory=list)  # a skipped asset's file as an earlier export delivered it
    retired: list[str] = field(default_factory=list)  # "scene/asset" of retired assets, never exported

    @property
    def delivered(self) -> int:
        return len(self.copied) + len(self.overwritten) + len(self.unchanged)

    def __str__(self) -> str:
        what = "approved" if self.mode == "approved" else "latest passing"
        text = (f"exported {self.delivered} {what} asset(s) to {self.to}: {len(self.copied)} copied, "
                f"{len(self.overwritten)} overwritten, {len(self.unchanged)} unchanged; manifest {self.manifest}")
        sections = (  # (names, heading, separator): one line per list that is not empty
            (self.overwritten, "overwritten (export had not delivered them): ", ", "),
            (self.skipped, "skipped {n} take(s) that need review (--include-failing to export them):\n  ", "\n  "),
            (self.damaged, "skipped {n} damaged source file(s) (run a render to repair them):\n  ", "\n  "),
            (self.retired, "left out {n} retired asset(s): ", ", "),
            (self.kept, "{n} file(s) of skipped assets stay as an earlier export delivered them: ", ", "),
            (self.stale, "{n} file(s) from an earlier export are no longer delivered (left in place): ", ", "),
        )
        for names, heading, sep in sections:
            if names:
                text += "\n" + heading.format(n=len(names)) + sep.join(names)
        return text


def file_name(pattern: str, row: dict) -> str:
    """Fill ``pattern`` from an index row (NFC); raises ValueError unless the result is a plain ``.wav`` file name."""
    values = {"scene": row["scene"], "asset": row["asset"], "version": int(row["version"]),
              "category": row.get("category") or ""}
    try:
        name = unicodedata.normalize("NFC", pattern.format(**values))
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"export pattern {pattern!r}: {exc}; fields are "
                         + ", ".join("{%s}" % f for f in PATTERN_FIELDS)) from None
    if not name.lower().endswith(".wav") or name.startswith(".") or any(c in name for c in "/\\\0") \
            or name in (".wav",):
        raise ValueError(f"export pattern {pattern!r} gives {name!r}: expected a plain file name ending in .wav")
    return name


def name_key(name: str) -> str:
    """What makes two file names look the same (and collide on case- or normalisation-insensitive disks)."""
    return unicodedata.normalize("NFC", name).casefold()


def _ident(row: dict) -> str:
    return f"{row['scene']}/{row['asset']}@v{row['version']}"


def select_rows(root: Path, mode: str = "approved", include_failing: bool = False,
                ) -> tuple[list[dict], list[tuple[dict, str]]]:
    """The takes to export, and the (take, why) left out for their approval blockers.

    ``approved``: each asset's latest approved version. ``all-latest``: each asset's latest version that is not
    rejected and has no approval blockers (``include_failing``: the latest not rejected). Retired assets are
    never chosen (:func:`retired_assets`).
    """
    from assetgen.store.index import Index

    if mode not in MODES:
        raise ValueError(f"export mode {mode!r}: expected one of {', '.join(MODES)}")
    index = Index(root)
    retired = set(index.retired())
    chosen, skipped = [], []
    if mode == "approved":
        for latest in index.rows(latest_only=True):
            if f"{latest['scene']}/{latest['asset']}" in retired:
                continue
            row = index.latest_approved(latest["scene"], latest["asset"])
            if row is None:
                continue
            blockers = approval_blockers(row)
            if blockers and not include_failing:
                skipped.append((row, "; ".join(blockers)))
            else:
                chosen.append(row)
        return chosen, skipped
    versions: dict[tuple[str, str], list[dict]] = {}
    for row in index.rows():
        if f"{row['scene']}/{row['asset']}" not in retired:
            versions.setdefault((row["scene"], row["asset"]), []).append(row)
    for takes in versions.values():
        candidates = [r for r in reversed(takes) if r.get("status") != "rejected"]
        passing = candidates if include_failing else [r for r in candidates if not approval_blockers(r)]
        if passing:
            chosen.append(passing[0])
        elif candidates:
            why = "; ".join(approval_blockers(candidates[0]))
            skipped.append((candidates[0], f"no passing take; the latest has {why}"))
    return chosen, skipped


def retired_assets(root: Path) -> list[str]:
    """``"scene/asset"`` of every retired asset (export leaves them out)."""
    from assetgen.store.index import Index

    return sorted(Index(root).retired())


def read_manifest(path: Path) -> dict[str, dict]:
    """A previous export manifest as file name -> row (empty when absent or unreadable)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return {r["file"]: r for r in csv.DictReader(fh) if r.get("file")}
    except (OSError, csv.Error, KeyError):
        return {}


def plan_names(rows: list[dict], pattern: str) -> list[tuple[dict, str]]:
    """(row, file name) pairs; raises ValueError when two assets would get names that look the same."""
    taken: dict[str, str] = {}
    out = []
    for row in rows:
        name = file_name(pattern, row)
        ident = f"{row['scene']}/{row['asset']}"
        key = name_key(name)
        if key in taken:
            other = taken[key]
            spelled = (f" (one name in two Unicode spellings: {ascii(other)} and {ascii(ident)})"
                       if other != ident and unicodedata.normalize("NFC", other) == unicodedata.normalize("NFC", ident)
                       else "")
            raise ValueError(f"export pattern {pattern!r} names both {other} and {ident} {name!r}{spelled}; "
                             "include {scene} and {asset}, or rename one of them")
        taken[key] = ident
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
    return src


def source_problems(root: Path, rows: list[dict]) -> dict[str, str]:
    """``"scene/asset@vN"`` -> why its source file cannot be exported (missing, or not the indexed bytes)."""
    from assetgen.report.verify import file_problems

    damaged = file_problems(root, rows)
    out = {}
    for row in rows:
        _source(root, row)
        if row.get("file_state", "ok") != "ok":
            out[_ident(row)] = f"{row['path']}: file missing (found damaged or deleted by a render's check)"
        elif row["path"] in damaged:
            out[_ident(row)] = f"{row['path']}: {damaged[row['path']]}"
    return out


def _present(to: Path) -> dict[str, list[str]]:
    """name_key -> the names in ``to`` with that key."""
    out: dict[str, list[str]] = {}
    for entry in os.scandir(to):
        out.setdefault(name_key(entry.name), []).append(entry.name)
    return out


def _dest_state(to: Path, name: str, sha256: str, previous: dict[str, dict], present: dict[str, list[str]],
                ) -> tuple[str, list[str]]:
    """How ``to/name`` stands before delivering ``sha256`` there, and export's earlier spellings of it to remove.

    ``new`` (nothing there), ``unchanged`` (the previous manifest lists this sha256 and the file hashes to it),
    ``replace`` (export's own file), ``same`` (a file export did not list, already holding these bytes),
    ``foreign`` (a file export did not deliver), ``lookalike`` (a file export did not deliver whose name
    differs only in case or Unicode spelling) or ``folder`` (a directory is in the way).
    """
    others = [n for n in present.get(name_key(name), []) if n != name]
    theirs = [n for n in others if n not in previous]
    if theirs:
        return "lookalike", theirs
    dest = to / name
    if not os.path.lexists(dest):
        return "new", others
    if dest.is_dir() and not dest.is_symlink():
        return "folder", []
    if not dest.is_file() or dest.is_symlink():
        return "foreign", others
    old = previous.get(name)
    if old is None:
        return ("same" if sha256_file(dest) == sha256 else "foreign"), others
    if old.get("sha256") == sha256 and not others and sha256_file(dest) == sha256:
        return "unchanged", []
    return "replace", others


def export_assets(root: Path, to: Path, pattern: str = DEFAULT_PATTERN, *, mode: str = "approved",
                  include_failing: bool = False, overwrite: bool = False, skip_damaged: bool = False) -> ExportResult:
    """Copy the latest approved (``mode="approved"``) or latest passing (``"all-latest"``) take of each asset.

    Raises :class:`ExportError` (a ValueError) before anything is copied for a bad pattern, names that look
    the same, damaged or missing sources (unless ``skip_damaged``) and files in ``to`` that export did not
    deliver (unless ``overwrite``; a lookalike name is refused even then, since replacing one spelling would
    leave the other). See the module docstring.
    """
    root, to = Path(root), Path(to)
    if to.exists() and not to.is_dir():
        raise ExportError(f"--to {to}: not a directory")
    chosen, skipped = select_rows(root, mode, include_failing)
    try:
        rows = plan_names(chosen, pattern)
        problems = source_problems(root, [row for row, _ in rows])
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    if problems and not skip_damaged:
        raise ExportError(f"{len(problems)} source file(s) are not the bytes the index recorded; nothing was "
                          "exported. Run a render to repair them, then export again:\n  "
                          + "\n  ".join(f"{k}: {v}" for k, v in problems.items()))
    sources = [(row, name, _source(root, row)) for row, name in rows if _ident(row) not in problems]
    to.mkdir(parents=True, exist_ok=True)
    manifest = to / MANIFEST_NAME
    previous = read_manifest(manifest)
    present = _present(to)
    states = {name: _dest_state(to, name, row["sha256"], previous, present) for row, name, _ in sources}
    refused = [f"{name}: looks the same as {', '.join(map(ascii, extra))} (not from export; rename or remove it)"
               for name, (state, extra) in states.items() if state == "lookalike"]
    refused += [f"{name}: is a folder" for name, (state, _) in states.items() if state == "folder"]
    if not overwrite:
        refused += [f"{name}: exists and was not delivered by export (--overwrite replaces it)"
                    for name, (state, _) in states.items() if state == "foreign"]
    if refused:
        raise ExportError(f"{to}: {len(refused)} file(s) in the way; nothing was exported:\n  "
                          + "\n  ".join(refused))
    result = ExportResult(to=to, manifest=manifest, mode=mode, skipped=[f"{_ident(r)}: {why}" for r, why in skipped],
                          damaged=[f"{k}: {v}" for k, v in problems.items()], retired=retired_assets(root))
    entries: dict[str, dict] = {}
    removed: set[str] = set()
    try:
        for row, name, src in sources:
            state, extra = states[name]
            if state in ("unchanged", "same"):
                result.unchanged.append(name)
            else:
                copy_verified(src, to / name, row["sha256"])
                (result.overwritten if state == "foreign" else result.copied).append(name)
            entries[name] = {**{c: row.get(c) for c in MANIFEST_COLUMNS if c != "file"}, "file": name}
            for old in extra:  # export's own earlier spelling of this name (not the same file on this disk)
                if os.path.lexists(to / old) and not os.path.samefile(to / old, to / name):
                    (to / old).unlink()
                    removed.add(old)
    except (OSError, ValueError) as exc:
        # DIR holds what was delivered so far plus earlier exports' files not reached yet: list both
        kept = {n: r for n, r in previous.items() if n not in entries and (to / n).is_file()}
        write_manifest(manifest, list(entries.values()) + list(kept.values()))
        raise ExportError(f"export stopped after {len(entries)} of {len(sources)} file(s): {exc}; "
                          f"{manifest} lists what {to} holds") from exc
    left_out = [row for row, _ in skipped] + [row for row, _ in rows if _ident(row) in problems]
    for name, entry in _carried(to, pattern, left_out, previous, entries).items():
        entries[name] = entry
        result.kept.append(name)
    result.stale = sorted(set(previous) - set(entries) - removed)
    write_manifest(manifest, list(entries.values()))
    return result


def _carried(to: Path, pattern: str, left_out: list[dict], previous: dict[str, dict],
             entries: dict[str, dict]) -> dict[str, dict]:
    """Previous manifest entries of assets left out this time whose file is still there, by name.

    Kept in the manifest so the file stays export's: a later export replaces it without ``overwrite``.
    """
    out = {}
    for row in left_out:
        try:
            name = file_name(pattern, row)
        except ValueError:
            continue
        old = previous.get(name)
        if old and name not in entries and (old.get("scene"), old.get("asset")) == (row["scene"], row["asset"]) \
                and (to / name).is_file():
            out[name] = old
    return out


def export_approved(root: Path, to: Path, pattern: str = DEFAULT_PATTERN, **options) -> ExportResult:
    """:func:`export_assets` in ``approved`` mode (the latest approved take of each asset)."""
    return export_assets(root, to, pattern, mode="approved", **options)
