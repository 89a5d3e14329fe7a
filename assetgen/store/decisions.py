"""The review-decision journal ``ROOT/.assetgen/decisions.jsonl``: every approve / reject, append-only.

One JSON object per line: ``scene``, ``asset``, ``version``, ``content_key``, ``sha256``, ``status`` and
``time`` (ISO-8601 UTC). A decision is appended and fsynced *before* the index row changes (inside the same
index transaction), so the journal holds every decision the index has, and more only when a crash came
between the two. When the index is lost and rebuilt from the files' provenance (``AssetStore.reconcile``
adopts them), :func:`latest_decisions` gives each adopted version its last decision back, provided the
version's content key and sha256 are those the decision was made on (a reviewer judged those exact bytes).

A line torn by a crash is skipped on reading, and the next append starts on a fresh line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from assetgen.store.atomic import fsync_dir

JOURNAL_DIR = ".assetgen"
JOURNAL_NAME = "decisions.jsonl"
FIELDS = ("scene", "asset", "version", "content_key", "sha256", "status", "time")


def journal_path(root: str | os.PathLike) -> Path:
    return Path(root) / JOURNAL_DIR / JOURNAL_NAME


def match_key(row: dict) -> tuple:
    """What a decision is bound to: the version and the exact content it was made on."""
    return row["scene"], row["asset"], int(row["version"]), row["content_key"], row["sha256"]


def append(root: str | os.PathLike, row: dict, status: str, time: str) -> None:
    """Append one decision on index ``row`` and fsync it (and, when they are new, the folders holding it)."""
    record = {k: row[k] for k in FIELDS[:5]} | {"version": int(row["version"]), "status": status, "time": time}
    append_record(journal_path(root), record)


def append_record(path: Path, record: dict) -> None:
    """Append ``record`` as one JSON line to the journal at ``path`` and fsync it (and, when they are new, the
    folders holding it); a torn last line left by a crash is ended first."""
    new_dir = not path.parent.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    if new_dir:
        fsync_dir(path.parent.parent)
    line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":  # a torn last line: do not glue this record to it
            line = b"\n" + line
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    if size == 0:
        fsync_dir(path.parent)


def read(root: str | os.PathLike) -> Iterator[dict]:
    """Decisions in the order they were made (complete, well-formed lines only)."""
    try:
        data = journal_path(root).read_bytes()
    except FileNotFoundError:
        return
    for raw in data.splitlines():
        try:
            record = json.loads(raw)
            if isinstance(record, dict) and all(k in record for k in FIELDS):
                match_key(record)
                yield record
        except (ValueError, TypeError):
            continue


def latest_decisions(root: str | os.PathLike, rows: Iterable[dict]) -> dict[tuple, str]:
    """``match_key(row)`` -> the last journaled status for each of ``rows`` that has one."""
    wanted = {match_key(r) for r in rows}
    found: dict[tuple, str] = {}
    for record in read(root):
        key = match_key(record)
        if key in wanted:
            found[key] = record["status"]
    return found
