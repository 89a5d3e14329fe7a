"""``assetgen review``: the report page served locally (FastAPI + uvicorn) with working Approve / Reject.

Routes (the page lives at /report/index.html so its relative ``../scene/asset/x.wav`` srcs resolve):

- ``GET /`` -> redirect to ``/report/index.html``;
- ``GET /report/index.html`` -> the page, rendered fresh from the index with the buttons enabled;
- ``POST /_review/status`` JSON ``{scene, asset, version, status[, force, reason]}`` -> the updated index row.
  Goes through the same writer lock as renders (``AssetStore.lock``), retried for ``lock_wait_s``; 409 when a
  render holds it. Approving a take with ``approval_blockers`` (placeholder, bad audio status, failed QC) is
  409 with ``detail.blockers`` unless ``force`` and a ``reason`` come with it (journaled with the user);
- ``GET /<path>`` -> a file under ROOT (only .wav/.png/.html; ``..``, absolute, backslash and NUL paths are
  refused with 400, anything resolving outside ROOT, e.g. through a symlink, is 404).

Every request must name, in its ``Host`` header, a host the server answers to: 127.0.0.1, localhost, [::1], the
bound host and the ``allowed_hosts`` (421 otherwise). A page on a rebound DNS name (Host ``evil.example``
resolving to 127.0.0.1) therefore gets nothing. State-changing requests must be JSON and, when the browser
sends an ``Origin``, come from the page's own origin: a web page elsewhere cannot approve assets through a
reviewer's browser.
"""


import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from assetgen.report.approval import MAX_REASON_CHARS, ApprovalBlocked, set_status_checked
from assetgen.report.build import PAGE_NAME, REPORT_DIR, collect, ensure_media, render_page

SERVED_SUFFIXES = frozenset({".wav", ".png", ".html"})
LOCK_WAIT_S = 2.0
LOCK_RETRY_S = 0.1
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
WILDCARD_BINDS = ("0.0.0.0", "::")  # every interface: other machines name it by an address or name of their own
MAX_VERSION = 2**31 - 1
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
                      wait_s: float = LOCK_WAIT_S, force: bool = False, reason: str | None = None) -> dict:
    """Set a version's review status under the root's writer lock, waiting at most ``wait_s`` seconds.

    Raises ``RootLocked`` when a render keeps the lock longer, ``IndexLookupError`` for unknown assets,
    ``ApprovalBlocked`` for a blocked approval without ``force`` and ``reason``.
    """
    from assetgen.store import AssetStore, RootLocked

    store = AssetStore(root)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with store.lock(wait=False):
                return set_status_checked(store, scene, asset, version, status, force=force, reason=reason,
                                          via="review")
        except RootLocked:
            if time.monotonic() >= deadline:
                raise
            time.sleep(LOCK_RETRY_S)


def same_origin(origin: str | None, host: str | None) -> bool:
    """True when there is no Origin header (non-browser client) or it names the Host being served."""
    if not origin:
        return True
    return bool(host) and urlsplit(origin).netloc == host


def host_names(bind_host: str = "127.0.0.1", allowed_hosts: Iterable[str] = ()) -> frozenset[str]:
    """The host names (lower case, IPv6 without brackets) a server bound to ``bind_host`` answers to.

    Names may come with a port (``studio.lan:8765``, ``[fe80::1]:8765``); the port is dropped.
    """
    names = set(LOOPBACK_NAMES)
    for name in (bind_host, *allowed_hosts):
        name = (name or "").strip().lower()
        if name.count(":") <= 1 or name.startswith("["):  # not a bare IPv6 address
            try:
                name = urlsplit("//" + name).hostname or ""
            except ValueError:
                raise ValueError(f"allowed host {name!r}: expected a host name or address") from None
        if name:  # the URL the CLI prints names the bound host; an address cannot be rebound
            names.add(name)
    return frozenset(names)


def host_allowed(host_header: str | None, names: frozenset[str], port: int | None = None) -> bool:
    """True when a ``Host`` header (``name[:port]``) names one of ``names`` and, when ``port`` is given, that port.

    A Host without a port means port 80. Headers with user info, paths or an unparsable port are refused.
    """
    if not host_header or any(c in host_header for c in "@/\\?# \t"):
        return False
    try:
        parts = urlsplit("//" + host_header)
        hostname, given = parts.hostname, parts.port
    except ValueError:
        return False
    if hostname is None or hostname not in names:
        return False
    return port is None or (given if given is not None else 80) == port


class HostCheck:
    """ASGI middleware: 421 for any request whose Host is not one the server answers to (DNS rebinding).

    Starlette's TrustedHostMiddleware makes the same check but ignores the port and answers a bare 400.
    """

    def __init__(self, app, names: frozenset[str], port: int | None = None) -> None:
        self.app, self.names, self.port = app, names, port

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1")
        if host_allowed(host, self.names, self.port):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        shown = ", ".join(sorted(f"[{n}]" if ":" in n else n for n in self.names))
        detail = (f"Host {host!r} is not a name this review server answers to ({shown}"
                  f"{f', port {self.port}' if self.port else ''}). A page on another name reaching this server "
                  "may be a DNS-rebinding attack; to allow a name, start it with --allowed-host NAME.")
        from starlette.responses import JSONResponse

        await JSONResponse({"detail": detail}, status_code=421)(scope, receive, send)


def create_app(root: Path, lock_wait_s: float = LOCK_WAIT_S, allowed_hosts: Iterable[str] = (),
               bind_host: str = "127.0.0.1", port: int | None = None, status_root: Path | None = None,
               after_change: Callable[[], object] | None = None):
    """The review ASGI app for output root ``root`` (tests drive it with ``fastapi.testclient``).

    A remote root is served from its mirror (``store.root.reader_root``): decisions are then written through
    ``status_root`` (its writer folder, whose lock uploads the snapshot) and ``after_change()`` refreshes the
    mirror's index.

    Requests are answered only when their Host is 127.0.0.1, localhost, [::1], ``bind_host`` or one of
    ``allowed_hosts`` (and, when ``port`` is given, that port).
    """
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
    from pydantic import BaseModel, ConfigDict, Field

    from assetgen.store import IndexLookupError, RootLocked

    root = Path(root)
    app = FastAPI(title="assetgen review", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(HostCheck, names=host_names(bind_host, allowed_hosts), port=port)

    class StatusChange(BaseModel):
        model_config = ConfigDict(strict=True, extra="forbid")

        scene: str = Field(min_length=1, max_length=256)
        asset: str = Field(min_length=1, max_length=256)
        version: int | None = Field(default=None, ge=1, le=MAX_VERSION)  # strict: no floats (1e23), no bools
        status: Literal["approved", "rejected", "rendered"]
        force: bool = False
        reason: str | None = Field(default=None, max_length=MAX_REASON_CHARS)

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
        if not same_origin(request.headers.get("origin"), request.headers.get("host")):
            raise HTTPException(403, "cross-origin status changes are refused")
        try:
            row = set_status_locked(status_root or root, change.scene, change.asset, change.version, change.status, lock_wait_s,
                                    force=change.force, reason=change.reason)
        except ApprovalBlocked as exc:
            raise HTTPException(409, {"message": str(exc), "blockers": exc.blockers}) from None
        except RootLocked as exc:
            raise HTTPException(409, f"a render is writing to this output root; try again when it finishes "
                                     f"({exc})") from None
        except IndexLookupError as exc:
            raise HTTPException(404, str(exc)) from None
        if after_change is not None:
            after_change()
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


def serve_review(root: Path, host: str = "127.0.0.1", port: int = 8765, allowed_hosts: Iterable[str] = (),
                 status_root: Path | None = None, after_change: Callable[[], object] | None = None) -> None:
    """Build the report's media, then serve ``create_app(root)`` until interrupted (blocking).

    ``allowed_hosts``: host names besides 127.0.0.1, localhost, [::1] and ``host`` that requests may name
    (e.g. the machine's LAN name when bound to 0.0.0.0).
    """
    import uvicorn

    from assetgen.report.build import build_report

    root = Path(root)
    allowed_hosts = tuple(allowed_hosts)
    build_report(root)  # media for every asset up front (process pool), so page loads stay fast
    if host not in LOOPBACK_NAMES:
        log.warning("review server bound to %s: anyone who can reach it can approve or reject assets", host)
    if host in WILDCARD_BINDS and not allowed_hosts:
        log.warning("bound to every interface but answering only to %s and loopback names: add --allowed-host "
                    "NAME for the name or address other machines use", host)
    app = create_app(root, allowed_hosts=allowed_hosts, bind_host=host, port=port, status_root=status_root,
                     after_change=after_change)
    uvicorn.run(app, host=host, port=port, log_level="warning")
