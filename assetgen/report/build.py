"""The review page: ROOT/report/index.html from the index (jinja2), plus cached media under ROOT/report/media/.

The page is static and self-contained (inline CSS/JS, no CDN) so it works opened from disk, as a CI artifact
and behind ``assetgen review`` (``live=True`` enables the Approve / Reject buttons). Every src is a relative
path from ROOT/report/ (``../scene/asset/asset_v001.wav``, ``media/<content_key>.png``), audio is
``preload="none"`` and images ``loading="lazy"`` so 1 000+ assets stay fast. Nothing is written outside ROOT.

Every shown file is checked against its index sha256 (``verify.file_problems``, cheap through the
verification cache): a bit-flipped or truncated take is marked damaged on its card.
"""

from __future__ import annotations

import json
import os
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from assetgen.report import media
from assetgen.report.approval import approval_blockers
from assetgen.report.checks import Check, is_loop, row_checks, seam_threshold
from assetgen.report.verify import file_problems
from assetgen.spec import PLACEHOLDER_VO
from assetgen.store.atomic import atomic_write
from assetgen.store.versions import qc_reasons

REPORT_DIR = "report"
MEDIA_DIR = "media"
PAGE_NAME = "index.html"
API_STATUS = "../_review/status"  # relative to ROOT/report/index.html; served by assetgen.report.review
POOL_MIN_JOBS = 16  # below this, a process pool costs more than it saves


@dataclass
class Take:
    """One version as the page shows it."""

    version: int
    status: str
    src: str | None  # relative URL of the WAV, None when the file is missing or outside ROOT
    created_at: str
    lufs: float | None
    model: str
    placeholder: bool
    content_key: str
    damaged: str | None = None  # why the file no longer matches its index sha256

    @property
    def scratch_vo(self) -> bool:
        """Placeholder narration (espeak-ng) is in this take (a tts take, or a mix with a tts layer)."""
        return self.placeholder and PLACEHOLDER_VO in self.model

    @property
    def random_weights(self) -> bool:
        """Placeholder audio other than scratch VO (tiny random-weight models) is in this take."""
        return self.placeholder and (not self.scratch_vo or "tiny-random" in self.model)


@dataclass
class AssetCard:
    """Everything one asset's card needs (latest version first)."""

    scene: str
    asset: str
    row: dict
    current: Take
    previous: Take | None
    history: list[Take]
    checks: list[Check]
    image: str | None
    seam_audio: str | None
    params: str
    tags: list[str]
    failure: dict | None = None
    lifecycle: str = ""  # "orphaned" (no manifest of the last render names it), "retired" or empty
    lifecycle_note: str = ""
    notes: list[str] = field(default_factory=list)
    blockers: list[str] = field(default_factory=list)  # why approving needs a confirmation (approval_blockers)
    qc_reasons: list[str] = field(default_factory=list)  # the QC gates' reasons ("gate: text") of the current take

    @property
    def qc(self) -> str:
        """The current take's QC verdict: pass | fail | waived, or ``unchecked`` (indexed before gates)."""
        return self.row.get("qc") or "unchecked"

    @property
    def qc_gates(self) -> list[str]:
        """The gates the current take failed (from its reasons), for the page's filter."""
        from assetgen.qc import reason_gate

        return sorted({reason_gate(r) for r in self.qc_reasons})

    @property
    def ident(self) -> str:
        return f"{self.scene}/{self.asset}"

    @property
    def failing(self) -> bool:
        """Any failed check, a non-ok measurement status, a missing or damaged file or a newer render failure."""
        return (any(c.state == "fail" for c in self.checks) or self.failure is not None or self.qc == "fail"
                or (self.row.get("audio_status") or "ok") != "ok" or self.current.src is None
                or self.current.damaged is not None)


def safe_key(content_key: str) -> str:
    """A content key usable as a file name (keys are hex; anything else is reduced to [A-Za-z0-9_-])."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", str(content_key))[:128] or "unknown"


def wav_path(root: Path, rel: str | None) -> Path | None:
    """The WAV of a row's ``path`` when it is a relative path inside ROOT and exists, else None."""
    if not rel or os.path.isabs(rel) or "\\" in rel or ".." in Path(rel).parts:
        return None
    path = root / rel
    try:
        if not path.resolve().is_relative_to(root.resolve()) or not path.is_file():
            return None
    except OSError:
        return None
    return path


def audio_src(rel: str) -> str:
    """URL of a ROOT-relative WAV path as seen from ROOT/report/index.html."""
    return "../" + quote(Path(rel).as_posix())


def _take(root: Path, row: dict, damaged: dict[str, str]) -> Take:
    present = row.get("file_state", "ok") == "ok" and wav_path(root, row.get("path")) is not None
    return Take(version=int(row["version"]), status=row.get("status") or "rendered",
                src=audio_src(row["path"]) if present else None, created_at=row.get("created_at") or "",
                lufs=row.get("lufs"), model=row.get("model") or "", placeholder=bool(row.get("placeholder")),
                content_key=row.get("content_key") or "",
                damaged=damaged.get(row.get("path") or "") if present else None)


def _pretty_params(text) -> str:
    if not text:
        return "{}"
    try:
        return json.dumps(json.loads(text) if isinstance(text, str) else text, indent=2, sort_keys=True)
    except (TypeError, ValueError):
        return str(text)


def _json_object(text) -> dict:
    """A JSON object column (``meta``) as a dict; anything else as ``{"value": text}``."""
    try:
        value = json.loads(text) if isinstance(text, str) else text
    except ValueError:
        value = text
    return value if isinstance(value, dict) else {"value": value}


def _tags(text) -> list[str]:
    try:
        tags = json.loads(text) if isinstance(text, str) else (text or [])
    except ValueError:
        return [str(text)]
    return [str(t) for t in tags] if isinstance(tags, list) else [str(tags)]


def group_versions(rows: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """Index rows grouped by (scene, asset), versions ascending, groups in scene/asset order."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in sorted(rows, key=lambda r: (r["scene"], r["asset"], int(r["version"]))):
        groups.setdefault((row["scene"], row["asset"]), []).append(row)
    return groups


def open_failures(groups: dict[tuple[str, str], list[dict]], failures: list[dict]) -> dict[tuple[str, str], dict]:
    """Per asset, its last recorded failure when it is newer than the asset's latest version (still open)."""
    last: dict[tuple[str, str], dict] = {}
    for failure in failures:
        last[(failure["scene"], failure["asset"])] = failure  # failures come oldest first
    still_open = {}
    for key, failure in last.items():
        versions = groups.get(key)
        if not versions or (failure.get("created_at") or "") > (versions[-1].get("created_at") or ""):
            still_open[key] = failure
    return still_open


def make_cards(root: Path, groups: dict[tuple[str, str], list[dict]], failures: dict[tuple[str, str], dict],
               threshold: float, damaged: dict[str, str] | None = None) -> list[AssetCard]:
    """One card per asset from its versions (media paths are where ``ensure_media`` puts them).

    ``damaged``: ROOT-relative path -> problem (``verify.file_problems``); a damaged current take gets no
    media (cached images show the audio as rendered, not as it is now).
    """
    damaged = damaged or {}
    cards = []
    for (scene, asset), versions in groups.items():
        row = versions[-1]
        takes = [_take(root, r, damaged) for r in versions]
        key = safe_key(row.get("content_key") or "")
        current = takes[-1]
        viewable = current.src is not None and current.damaged is None
        cards.append(AssetCard(
            scene=scene, asset=asset, row=row, current=current, previous=takes[-2] if len(takes) > 1 else None,
            history=list(reversed(takes)), checks=row_checks(row, threshold),
            image=f"{MEDIA_DIR}/{key}.png" if viewable else None,
            seam_audio=f"{MEDIA_DIR}/{key}_seam.wav" if viewable and is_loop(row) else None,
            params=_pretty_params(row.get("params")), tags=_tags(row.get("tags")),
            failure=failures.get((scene, asset)), blockers=approval_blockers(row), qc_reasons=qc_reasons(row)))
    return cards


def _media_jobs(root: Path, card: AssetCard) -> list[tuple]:
    """(kind, wav, dest, loop_start, loop_end) for the card's media that do not exist yet."""
    out = root / REPORT_DIR
    wav = wav_path(root, card.row.get("path"))
    jobs = []
    loop = (int(card.row["loop_start"]), int(card.row["loop_end"])) if is_loop(card.row) else (None, None)
    if card.image and not (out / card.image).exists():
        jobs.append(("png", wav, out / card.image, *loop))
    if card.seam_audio and not (out / card.seam_audio).exists():
        jobs.append(("seam", wav, out / card.seam_audio, *loop))
    return jobs


def _run_job(job: tuple) -> str | None:
    """Make one media file; returns an error message instead of raising (one bad WAV must not stop a report)."""
    kind, wav, dest, start, end = job
    try:
        if kind == "png":
            media.ensure_png(wav, dest, loop=(start, end) if start is not None else None)
        else:
            media.ensure_seam_wav(wav, start, end, dest)
    except Exception as exc:  # noqa: BLE001 - reported on the card
        return f"{kind} for {wav.name}: {exc}"
    return None


def ensure_media(root: Path, cards: list[AssetCard], workers: int | None = None) -> int:
    """Create missing images / loop auditions (cached by content key). Returns how many were made.

    Uses a process pool for large batches (image drawing is CPU-bound). A failed item drops its media
    from the card and leaves a note instead of failing the whole report.
    """
    todo = [(card, job) for card in cards for job in _media_jobs(root, card)]
    if not todo:
        return 0
    workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    if workers > 1 and len(todo) >= POOL_MIN_JOBS:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            errors = list(pool.map(_run_job, [job for _, job in todo], chunksize=8))
    else:
        errors = [_run_job(job) for _, job in todo]
    for (card, job), error in zip(todo, errors):
        if error:
            card.notes.append(error)
            if job[0] == "png":
                card.image = None
            else:
                card.seam_audio = None
    return sum(error is None for error in errors)


def lifecycle(orphan: dict | None, retired: dict | None) -> tuple[str, str]:
    """(state, note) of an asset from its ``orphans`` and ``retired`` index rows (``store.lifecycle``)."""
    since = (orphan or {}).get("since_run")
    absent = f"not in the manifest since run {since}" if since else ("not in the manifests" if orphan else "")
    if retired is not None:
        who = f" by {retired['user']}" if retired.get("user") else ""
        why = f": {retired['reason']}" if retired.get("reason") else ""
        when = (retired.get("retired_at") or "")[:10]
        note = f"retired{who}{' on ' + when if when else ''}{why}; export leaves it out"
        return "retired", note + (f" ({absent})" if absent else "")
    if orphan is not None:
        return "orphaned", f"{absent}; kept and still exported until retired"
    return "", ""


def collect(root: Path) -> tuple[list[AssetCard], list[dict]]:
    """Cards for every asset in ROOT's index and the open failures of assets that never landed."""
    from assetgen.store.index import Index

    index = Index(root)
    rows = index.rows()
    groups = group_versions(rows)
    failures = open_failures(groups, index.failures())
    damaged = file_problems(root, rows, record=True)
    cards = make_cards(root, groups, failures, seam_threshold(), damaged)
    orphaned, retired = index.orphans(), index.retired()
    for card in cards:
        card.lifecycle, card.lifecycle_note = lifecycle(orphaned.get(card.ident), retired.get(card.ident))
    orphans = [f for key, f in failures.items() if key not in groups]
    return cards, orphans


def render_page(root: Path, cards: list[AssetCard], orphan_failures: list[dict], live: bool = False) -> str:
    """The page HTML (``live``: served by ``assetgen review``, buttons enabled); sets of assets (``report.sets``)
    are shown above the cards."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    from assetgen.report.sets import take_sets

    env = Environment(loader=FileSystemLoader(Path(__file__).with_name("templates")),
                      autoescape=select_autoescape(["html", "j2"]), trim_blocks=True, lstrip_blocks=True)
    env.filters["fromjson"] = _json_object
    statuses = {s: sum(c.current.status == s for c in cards) for s in ("rendered", "approved", "rejected")}
    return env.get_template("index.html.j2").render(
        root=str(root), cards=cards, orphan_failures=orphan_failures, live=live, api_status=API_STATUS,
        orphaned=sum(c.lifecycle == "orphaned" for c in cards), retired=sum(c.lifecycle == "retired" for c in cards),
        damaged=sum(c.current.damaged is not None for c in cards),
        scenes=sorted({c.scene for c in cards}), categories=sorted({c.row.get("category") or "" for c in cards} - {""}),
        statuses=statuses, failing=sum(c.failing for c in cards) + len(orphan_failures),
        qc_states=sorted({c.qc for c in cards}), qc_gates=sorted({g for c in cards for g in c.qc_gates}),
        qc_failed=sum(c.qc == "fail" for c in cards),
        placeholders=sum(c.current.placeholder for c in cards), threshold=seam_threshold(),
        take_sets=take_sets(root, cards))


def build_report(root: Path, workers: int | None = None) -> Path:
    """Write ROOT/report/index.html (and any missing media); returns the page path."""
    root = Path(root)
    cards, orphans = collect(root)
    ensure_media(root, cards, workers=workers)
    html = render_page(root, cards, orphans, live=False)
    page = root / REPORT_DIR / PAGE_NAME
    atomic_write(page, html.encode("utf-8"))
    return page
