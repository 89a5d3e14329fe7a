"""``assetgen lab``: the prompt lab page and its JSON API, on the review server's stack and protections.

Routes:

- ``GET /`` -> the lab page (single take, mixed scene, the session's takes with players for A/B listening);
- ``POST /api/takes`` JSON ``{model, prompt, duration_s, temperature, top_k, top_p, cfg, seed, loop, bpm, bars,
  loudness, voice, rate, ...}`` or ``{layers: [{name, model, prompt, gain_db, fade_in_s, ...}], duration_s, ...}``
  -> the finished take ``{id, audio_url, lufs, true_peak_dbtp, seam_score, qc, ...}`` (422: the manifest rules
  refuse the request, every problem listed; 500: generation or post-processing failed, the take is listed);
- ``GET /api/takes`` -> ``{"takes": [...]}``, queued and running ones with ``state`` and ``progress``;
- ``GET /api/takes/{id}``, ``/api/takes/{id}/audio`` (WAV), ``/api/takes/{id}/image.png`` (waveform + spectrogram);
- ``POST /api/takes/{id}/keep`` JSON ``{manifest, scene, asset}`` -> ``{row, rows, manifest, lines, content_key}``.

As ``assetgen review``: every request must name an allowed host in ``Host`` (DNS rebinding, 421), POSTs must be
JSON and same-origin when the browser sends an ``Origin`` (403), and the server binds 127.0.0.1 by default.
"""

# no ``from __future__ import annotations``: FastAPI reads the route signatures' types (local classes) at runtime
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from assetgen.lab.engine import Lab
from assetgen.lab.rows import LAB_SCENE, LabInputError, clip_row, scene_rows

PAGE = Path(__file__).with_name("page.html")
MAX_LAYERS = 8
log = logging.getLogger(__name__)

_CLIP_FIELDS = ("model", "prompt", "duration_s", "temperature", "top_k", "top_p", "cfg", "seed", "loop", "bpm",
                "bars", "crossfade_s", "loudness", "voice", "rate", "fx", "qc", "max_attempts")
_LAYER_FIELDS = (*_CLIP_FIELDS, "gain_db", "start_s", "fade_in_s", "fade_out_s", "duck_db", "duck_attack_s",
                 "duck_release_s")
_MIX_FIELDS = ("duration_s", "loudness", "loop", "bpm", "bars", "crossfade_s")


def request_rows(body: dict[str, Any]) -> list[dict[str, str]]:
    """Manifest rows of a take request (already shape-checked): one clip, or the layers and a mix row."""
    layers = body.get("layers")
    if not layers:
        fields = {k: body.get(k) for k in _CLIP_FIELDS}
        fields["model"] = fields["model"] or "music"
        if not fields.get("prompt"):
            raise LabInputError("prompt: required (for a clip; a mixed scene sends layers)")
        return [clip_row(fields, LAB_SCENE, "take")]
    if body.get("prompt") or body.get("model"):
        raise LabInputError("a mixed scene takes its prompts and models per layer; leave prompt and model out")
    named = []
    for i, layer in enumerate(layers, 1):
        fields = {k: layer.get(k) for k in _LAYER_FIELDS}
        fields["model"] = fields["model"] or "music"
        if fields["duration_s"] is None and not (fields.get("bpm") and fields.get("bars")):
            fields["duration_s"] = body.get("duration_s")  # a layer as long as the scene unless it says
        named.append((layer.get("name") or f"layer{i}", fields))
    return scene_rows({k: body.get(k) for k in _MIX_FIELDS}, named, LAB_SCENE, "mix")


def create_app(lab: Lab, allowed_hosts: Iterable[str] = (), bind_host: str = "127.0.0.1", port: int | None = None):
    """The lab's ASGI app (tests drive it with ``fastapi.testclient``)."""
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
    from pydantic import BaseModel, ConfigDict, Field
    from starlette.concurrency import run_in_threadpool

    from assetgen.report.review import HostCheck, same_origin, host_names

    app = FastAPI(title="assetgen lab", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(HostCheck, names=host_names(bind_host, allowed_hosts), port=port)

    class Clip(BaseModel):
        model_config = ConfigDict(extra="forbid", protected_namespaces=())

        model: str | None = Field(default=None, max_length=1000)
        prompt: str | None = Field(default=None, max_length=2000)
        duration_s: float | None = None
        temperature: float | None = None
        top_k: int | None = None
        top_p: float | None = None
        cfg: float | None = None
        seed: int | None = None
        loop: bool | None = None
        bpm: float | None = None
        bars: int | None = None
        crossfade_s: float | None = None
        loudness: float | str | None = Field(default=None, union_mode="left_to_right")
        voice: str | None = Field(default=None, max_length=100)
        rate: int | None = None
        fx: str | None = Field(default=None, max_length=1000)
        qc: str | None = Field(default=None, max_length=1000)
        max_attempts: int | None = None

    class Layer(Clip):
        name: str | None = Field(default=None, max_length=120)
        gain_db: float | None = None
        start_s: float | None = None
        fade_in_s: float | None = None
        fade_out_s: float | None = None
        duck_db: float | None = None
        duck_attack_s: float | None = None
        duck_release_s: float | None = None

    class TakeRequest(Clip):
        layers: list[Layer] | None = Field(default=None, max_length=MAX_LAYERS)

    class KeepRequest(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)

        manifest: str = Field(min_length=1, max_length=1000)
        scene: str = Field(min_length=1, max_length=256)
        asset: str = Field(min_length=1, max_length=256)

    def guard(request: Request) -> None:
        if not request.headers.get("content-type", "").startswith("application/json"):
            raise HTTPException(415, "send JSON")
        if not same_origin(request.headers.get("origin"), request.headers.get("host")):
            raise HTTPException(403, "cross-origin requests are refused")

    def found(take_id: str):
        take = lab.get(take_id)
        if take is None:
            raise HTTPException(404, f"no take {take_id!r} in this session")
        return take

    @app.get("/", include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"), headers={"Cache-Control": "no-store"})

    @app.get("/api/health")
    def health() -> dict:
        return {"ok": True, "root": str(lab.root), "device": lab.device, "manifest_root": str(lab.manifest_root)}

    @app.post("/api/takes")
    async def create_take(body: TakeRequest, request: Request):
        guard(request)
        try:
            rows = request_rows(body.model_dump(exclude_none=True))
            take, future = lab.submit(rows)
        except LabInputError as exc:
            raise HTTPException(422, str(exc)) from None
        await run_in_threadpool(future.result)  # queued per device; the event loop keeps serving meanwhile
        if take.state != "done":
            return JSONResponse({"detail": {"message": take.error, "take": take.public()}}, status_code=500)
        return take.public()

    @app.get("/api/takes")
    def list_takes() -> dict:
        return {"takes": [t.public() for t in lab.takes()]}

    @app.get("/api/takes/{take_id}")
    def one_take(take_id: str) -> dict:
        return found(take_id).public()

    @app.get("/api/takes/{take_id}/audio", include_in_schema=False)
    def audio(take_id: str) -> FileResponse:
        take = found(take_id)
        if take.path is None:
            raise HTTPException(409, f"take {take_id} is {take.state}")
        return FileResponse(take.path, media_type="audio/wav", headers={"Cache-Control": "no-store"})

    @app.get("/api/takes/{take_id}/image.png", include_in_schema=False)
    def image(take_id: str) -> FileResponse:
        from assetgen.report.media import ensure_png

        take = found(take_id)
        if take.path is None:
            raise HTTPException(409, f"take {take_id} is {take.state}")
        png = take.path.with_suffix(".png")
        ensure_png(take.path, png, take.measured.get("loop"))
        return FileResponse(png, media_type="image/png")

    @app.post("/api/takes/{take_id}/keep")
    def keep(take_id: str, body: KeepRequest, request: Request) -> dict:
        guard(request)
        found(take_id)
        try:
            return lab.keep(take_id, body.manifest, body.scene, body.asset)
        except LabInputError as exc:
            raise HTTPException(422, str(exc)) from None

    return app


def serve_lab(lab: Lab, host: str = "127.0.0.1", port: int = 8766, allowed_hosts: Iterable[str] = ()) -> None:
    """Serve the lab until interrupted (blocking)."""
    import uvicorn

    from assetgen.report.review import LOOPBACK_NAMES

    if host not in LOOPBACK_NAMES:
        log.warning("lab bound to %s: anyone who can reach it can generate and write manifests", host)
    app = create_app(lab, allowed_hosts=tuple(allowed_hosts), bind_host=host, port=port)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        lab.close()
