"""``assetgen review``: the report page served locally (FastAPI + uvicorn) with working Approve / Reject.

Routes (the page lives at /report/index.html so its relative ``../scene/asset/x.wav`` srcs resolve):

- ``GET /`` -> redirect to ``/report/index.html``;
- ``GET /report/index.html`` -> the page, rendered fresh from the index with the buttons enabled;
- ``POST /_review/status`` JSON ``{scene, asset, version, status}`` -> the updated index row. Goes through the
  same writer lock as renders (``AssetStore.lock``), retried for ``lock_wait_s``; 409 when a render holds it;
- ``GET /<path>`` -> a file under ROOT (only .wav/.png/.html; ``..``, absolute, backslash and NUL paths are
  refused with 400, anything resolving outside ROOT, e.g. through a symlink, is 404).

State-changing requests must be JSON and, when the browser sends an ``Origin``, come from the page's own
origin: a web page elsewhere cannot approve assets through a reviewer's browser.
"""


import logging
import os
import time
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from assetgen.report.build import PAGE_NAME, REPORT_DIR, collect, ensure_media, render_page

SERVED_SUFFIXES = frozenset({".wav", ".png", ".html"})
LOCK_WAIT_S = 2.0
LOCK_RETRY_S = 0.1
log = logging.getLogger(__name__)


class UnsafePath(ValueError):
    """A request path that could escape ROOT (``..``, absolute, backslash, NUL)."""


def resolve_under(root: Path, rel: str) -> Path | None:
    """The file ``rel`` (URL path, already percent-decoded) under ``root``, or None when absent or outside.

    Raises :class:`UnsafePath` for paths that try to escape (checked before touching the file system).
    """
    if not rel or rel.startswith(("/", "\\")) or "\\" in rel or "\0" in rel or os.path.isabs(rel):
        raise UnsafePath(rel)
    parts = rel.split("/")
    if any(p in ("..", ".") for p in parts):
        raise UnsafePath(rel)
    base = root.resolve()
    path = (base / rel).resolve()
    if not path.is_relative_to(base) or not path.is_file() or path.suffix.lower() not in SERVED_SUFFIXES:
        return None
    return path


def set_status_locked(root: Path, scene: str, asset: str, version: int | None, status: str,
                      wait_s: float = LOCK_WAIT_S) -> dict:
    """Set a version's review status under the root's writer lock, waiting at most ``wait_s`` seconds.

    Raises ``RootLocked`` when a render keeps the lock longer, ``IndexLookupError`` for unknown assets.
    """
    from assetgen.store import AssetStore, RootLocked

    store = AssetStore(root)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with store.lock(wait=False):
                return store.index.set_status(scene, asset, version, status)
        except RootLocked:
            if time.monotonic() >= deadline:
                raise
            time.sleep(LOCK_RETRY_S)


def _same_origin(origin: str | None, host: str | None) -> bool:
    """True when there is no Origin header (non-browser client) or it names the Host being served."""
    if not origin:
        return True
    return bool(host) and urlsplit(origin).netloc == host


def create_app(root: Path, lock_wait_s: float = LOCK_WAIT_S):
    """The review ASGI app for output root ``root`` (tests drive it with ``fastapi.testclient``)."""
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
    from pydantic import BaseModel, Field

    from assetgen.store import IndexLookupError, RootLocked

    root = Path(root)
    app = FastAPI(title="assetgen review", docs_url=None, redoc_url=None, openapi_url=None)

    class StatusChange(BaseModel):
        scene: str = Field(min_length=1)
        asset: str = Field(min_length=1)
        version: int | None = Field(default=None, ge=1)
        status: Literal["approved", "rejected", "rendered"]

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse(f"/{REPORT_DIR}/{PAGE_NAME}")

    @app.get(f"/{REPORT_DIR}/", include_in_schema=False)
    @app.get(f"/{REPORT_DIR}/{PAGE_NAME}", include_in_schema=False)
    def page() -> HTMLResponse:
        cards, orphans = collect(root)
        ensure_media(root, cards, workers=1)  # only versions rendered since the server started
        return HTMLResponse(render_page(root, cards, orphans, live=True), headers={"Cache-Control": "no-store"})

    @app.get("/_review/health")
    def health() -> dict:
        return {"ok": True, "root": str(root)}

    @app.post("/_review/status")
    def change_status(change: StatusChange, request: Request) -> dict:
        if not request.headers.get("content-type", "").startswith("application/json"):
            raise HTTPException(415, "send JSON")
        if not _same_origin(request.headers.get("origin"), request.headers.get("host")):
            raise HTTPException(403, "cross-origin status changes are refused")
        try:
            row = set_status_locked(root, change.scene, change.asset, change.version, change.status, lock_wait_s)
        except RootLocked as exc:
            raise HTTPException(409, f"a render is writing to this output root; try again when it finishes "
                                     f"({exc})") from None
        except IndexLookupError as exc:
            raise HTTPException(404, str(exc)) from None
        return {k: row[k] for k in ("scene", "asset", "version", "status")}

    @app.get("/{rel:path}", include_in_schema=False)
    def files(rel: str) -> FileResponse:
        try:
            path = resolve_under(root, rel)
        except UnsafePath:
            raise HTTPException(400, "path not allowed") from None
        if path is None:
            raise HTTPException(404, "not found")
        return FileResponse(path)

    return app


def serve_review(root: Path, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Build the report's media, then serve ``create_app(root)`` until interrupted (blocking)."""
    import uvicorn

    from assetgen.report.build import build_report

    root = Path(root)
    build_report(root)  # media for every asset up front (process pool), so page loads stay fast
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("review server bound to %s: anyone who can reach it can approve or reject assets", host)
    uvicorn.run(create_app(root), host=host, port=port, log_level="warning")
