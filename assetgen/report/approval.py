"""Review discipline: why a take should not be approved without ``force``, and who overrode that and why.

- :func:`approval_blockers` (pure, over an index row): placeholder audio, a non-ok ``audio_status``, a failed
  QC (``qc == "fail"``; rows without a ``qc`` column carry no QC information);
- :func:`set_status_checked`: set a review status under the caller's writer lock; approving a blocked take
  raises :class:`ApprovalBlocked` unless ``force`` and a reason are given;
- a forced approval is appended to ``ROOT/.assetgen/approval_overrides.jsonl`` (one JSON object a line: time,
  scene, asset, version, content key, sha256, user, reason, blockers, via) before the index changes, so no
  forced approval exists without its record.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import json
import os
from pathlib import Path

from assetgen.spec import PLACEHOLDER_VO

JOURNAL_DIR = ".assetgen"
OVERRIDES_NAME = "approval_overrides.jsonl"
MAX_REASON_CHARS = 500


class ApprovalBlocked(ValueError):
    """Approving this take needs ``force`` and a reason; ``blockers`` names why."""

    def __init__(self, ident: str, blockers: list[str], message: str | None = None) -> None:
        self.ident, self.blockers = ident, list(blockers)
        super().__init__(message or f"{ident}: not approved: {'; '.join(blockers)}; approve with force and a "
                                    "reason to override")


def _reasons(text) -> str:
    """``qc_reasons`` as one line (JSON list or plain text)."""
    if text is None or text == "":
        return ""
    try:
        value = json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return str(text)
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def approval_blockers(row: dict) -> list[str]:
    """Why the take in ``row`` (an index row) should not be approved without force; empty when nothing does."""
    out = []
    if row.get("placeholder") not in (None, 0, False, "0", ""):
        model = str(row.get("model") or "")
        vo = PLACEHOLDER_VO in model
        if not vo or "tiny-random" in model:
            out.append("placeholder audio (tiny random-weight model)")
        if vo:
            out.append("placeholder VO (synthetic espeak-ng narration)")
    status = row.get("audio_status")
    if status not in (None, "", "ok"):
        out.append(f"audio status {status!r}")
    if row.get("qc") == "fail":
        reasons = _reasons(row.get("qc_reasons"))
        out.append("QC failed" + (f": {reasons}" if reasons else ""))
    return out


def reviewer() -> str:
    """Who is reviewing: ``ASSETGEN_USER``, else ``USER``, else the login name (``getpass``), else "unknown"."""
    name = os.environ.get("ASSETGEN_USER") or os.environ.get("USER")
    if name:
        return name
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def overrides_path(root: Path) -> Path:
    return Path(root) / JOURNAL_DIR / OVERRIDES_NAME


def append_override(root: Path, entry: dict) -> None:
    """Append one JSON line to the overrides journal and fsync it (one ``write`` call on an O_APPEND file)."""
    path = overrides_path(root)
    path.parent.mkdir(exist_ok=True)
    line = (json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_overrides(root: Path) -> list[dict]:
    """The overrides journal, oldest first (a line cut short by a crash is skipped)."""
    try:
        lines = overrides_path(root).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def set_status_checked(store, scene: str, asset: str, version: int | None, status: str, *, force: bool = False,
                       reason: str | None = None, user: str | None = None, via: str = "cli") -> dict:
    """Set a version's review status (``store``: an ``AssetStore`` whose lock the caller holds).

    Approving a take with :func:`approval_blockers` raises :class:`ApprovalBlocked` unless ``force`` and a
    non-empty ``reason`` are given; a forced approval is journaled (who, why, blockers) before the index
    changes. Raises ``IndexLookupError`` for unknown assets or versions.
    """
    if status == "approved":
        row = store.index.get(scene, asset, version)
        if row is None:  # the index's own lookup names what exists (e.g. "have v1..v2")
            return store.index.set_status(scene, asset, version, status)
        blockers = approval_blockers(row)
        ident = f"{scene}/{asset}@v{row['version']}"
        if blockers:
            why = (reason or "").strip()
            if not force:
                raise ApprovalBlocked(ident, blockers)
            if not why:
                raise ApprovalBlocked(ident, blockers, f"{ident}: forcing approval over "
                                                       f"{'; '.join(blockers)} needs a reason")
            append_override(store.root, {
                "at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds"),
                "scene": scene, "asset": asset, "version": int(row["version"]), "content_key": row["content_key"],
                "sha256": row["sha256"], "user": user or reviewer(), "reason": why[:MAX_REASON_CHARS],
                "blockers": blockers, "via": via})
        version = int(row["version"])
    return store.index.set_status(scene, asset, version, status)
