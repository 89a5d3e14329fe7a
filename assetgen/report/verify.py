"""Do the delivered files still hold the bytes the index recorded? (for ``report``, ``review`` and ``export``)

Files are read through the root's ``store.root.Files`` (a remote root's objects, listed once). Cheap through
reconcile's verification cache (``Index.verified_files``): a file whose ``os.stat`` fingerprint
(size, mtime, ctime, inode) is the one its hash was last verified at is only stat'ed; any other file is hashed.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from assetgen.store.verified import still_verified

CHANGED = "content changed since render (sha256 differs from the index: bit-flipped, truncated or edited)"


def file_problems(root: Path, rows: list[dict], record: bool = False) -> dict[str, str]:
    """ROOT-relative path -> problem for the rows whose file is not the one the index recorded.

    Rows already marked ``file_state='missing'`` and paths outside ROOT are left to the caller. ``record``:
    store the files found intact in the verification cache, so the next call only stats them (best effort:
    a read-only root is not an error).
    """
    from assetgen.store.index import Index

    from assetgen.store.root import files_for

    root = Path(root)
    index = Index(root)
    files = files_for(root)  # a remote root's working folder: the bucket's objects, listed once
    cache = index.verified_files()
    problems: dict[str, str] = {}
    fresh = []
    wanted = []
    for row in rows:
        rel = row.get("path") or ""
        if row.get("file_state", "ok") != "ok" or not rel or os.path.isabs(rel) or ".." in Path(rel).parts:
            continue
        wanted.append(row)
    fingerprints = files.fingerprints(r["path"] for r in wanted)
    for row in wanted:
        rel = row["path"]
        fingerprint = fingerprints[rel]
        if fingerprint is None:
            problems[rel] = "file missing" if files.remote or not (root / rel).exists() else "not a regular file"
            continue
        if still_verified(cache.get(rel), row["sha256"], fingerprint):
            continue
        now = time.time_ns()
        try:
            digest = files.sha256(rel)
        except OSError as exc:
            problems[rel] = f"unreadable ({exc.strerror or exc})"
            continue
        if digest != row["sha256"]:
            problems[rel] = CHANGED
        else:
            fresh.append((rel, digest, *fingerprint, now))
    if record and fresh:
        try:
            index.record_verified(fresh)
        except (sqlite3.Error, OSError):
            pass  # a cache: the files are hashed again next time
    return problems
