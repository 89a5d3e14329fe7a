"""The lab's takes: validated rows -> generation on warm models -> the render's post-processing -> a WAV.

One :class:`Lab` per server. Models stay loaded in its :class:`~assetgen.models.cache.ModelCache`; post-processing
runs in its :class:`~assetgen.dsp_pool.DspPool` process, the render's own stages (``render.generate_batch``,
``render.postprocess_batch_isolated``, ``dsp.chain.process_mix``, ``store.encode_for_delivery``), so a kept row
renders to the same samples. Takes run one at a time per device, first come first served (``tts`` takes on the
CPU queue: espeak-ng does not wait behind the GPU). Take files live in ``ROOT/.assetgen/lab/<session>/``, which
renders and the review page ignore (dot folder).
"""

from __future__ import annotations

import dataclasses

import io
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from assetgen.lab.rows import LabInputError, keep_rows, renamed, validate_rows
from assetgen.spec import AssetSpec

STATES = ("queued", "loading", "generating", "post-processing", "mixing", "done", "failed")
LAB_DIR = Path(".assetgen") / "lab"


def take_qc(processed: Any) -> dict | None:
    """The render's QC verdict for a take: the gates :func:`assetgen.render.check_take` ran where the take was
    post-processed (a lone take has no siblings, so near-duplicate cannot fail it). None when no gates ran."""
    from assetgen import qc

    gates = getattr(processed, "gates", None)
    if gates is None:
        return None
    state, reasons = (processed.qc, list(processed.qc_reasons)) if processed.qc else qc.verdict(gates, bool(gates))
    return {"qc": state, "reasons": list(reasons), "gates": [dataclasses.asdict(g) for g in gates]}


@dataclass
class Take:
    """One take of the session: its manifest rows, where it is, and what was measured on it."""

    id: str
    kind: str  # "clip" or "scene"
    rows: list[dict[str, str]]  # manifest cells under the lab's scene name
    key: str  # content key of the clip, or of the scene's mix
    device: str
    model: str  # model label (placeholder models say so), or "mix of ..."
    placeholder: bool
    prompt: str
    state: str = "queued"
    progress: float = 0.0  # 0..1 while generating
    error: str | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None  # time.time() when its device's queue reached it
    finished: float | None = None
    timings: dict[str, float] = field(default_factory=dict)  # s: queue, load, generate, postprocess, mix, total
    measured: dict[str, Any] = field(default_factory=dict)
    qc: dict | None = None
    kept: list[dict] = field(default_factory=list)
    path: Path | None = None  # the take's WAV
    layers: list[dict] = field(default_factory=list)  # a scene's layers: asset, key, lufs, true peak
    attempts: dict[str, list[dict]] = field(default_factory=dict)  # per asset: each attempt's seed and gates

    def public(self) -> dict:
        """The take as the JSON API shows it."""
        done = self.state == "done"
        return {"id": self.id, "kind": self.kind, "state": self.state, "progress": round(self.progress, 3),
                "error": self.error, "prompt": self.prompt, "model": self.model, "placeholder": self.placeholder,
                "device": self.device, "content_key": self.key, "created": self.created, "started": self.started,
                "finished": self.finished,
                "audio_url": f"/api/takes/{self.id}/audio" if done else None,
                "image_url": f"/api/takes/{self.id}/image.png" if done else None,
                **{k: self.measured.get(k) for k in ("lufs", "true_peak_dbtp", "seam_score", "audio_status",
                                                      "duration_s", "sample_rate", "audio_sha256", "notes")},
                "qc": self.qc, "timings": dict(self.timings), "rows": self.rows, "layers": self.layers,
                "attempts": self.attempts, "kept": self.kept}


class Lab:
    """Warm models, one queue per device, the session's takes."""

    def __init__(self, root: str | Path, *, model_dir: str | Path | None = None, device: str | None = None,
                 manifest_root: str | Path | None = None, cache=None, pool=None) -> None:
        from assetgen.dsp_pool import DspPool
        from assetgen.models.cache import ModelCache
        from assetgen.models.device import pick_device, reserve_core_for_postprocessing

        self.root = Path(root)
        self.session = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.folder = self.root / LAB_DIR / self.session
        self.model_dir = model_dir
        self.device = pick_device(device)
        reserve_core_for_postprocessing(self.device)  # as a render does: same threads, same samples
        self.manifest_root = Path(manifest_root or Path.cwd()).resolve()
        self.cache = cache or ModelCache()
        self.pool = pool or DspPool()
        self._queues: dict[str, ThreadPoolExecutor] = {}
        self._takes: dict[str, Take] = {}
        self._lock = threading.Lock()
        self._count = 0

    # -- lifecycle -------------------------------------------------------------------------------------
    def warm(self, models: Sequence[str] = ()) -> None:
        """Start the DSP process and load ``models`` now, so the first take pays for neither."""
        self.pool.warm()
        for ref in models:
            self.cache.get(ref, self.model_dir, self._device_for([ref]))

    def close(self) -> None:
        for queue in self._queues.values():
            queue.shutdown(wait=False, cancel_futures=True)
        self.pool.shutdown()

    # -- takes -----------------------------------------------------------------------------------------
    def takes(self) -> list[Take]:
        with self._lock:
            return list(self._takes.values())

    def get(self, take_id: str) -> Take | None:
        with self._lock:
            return self._takes.get(take_id)

    def _device_for(self, models: Sequence[str]) -> str:
        from assetgen.spec import TTS_MODEL

        return "cpu" if all(m == TTS_MODEL for m in models) else self.device

    def _queue(self, device: str) -> ThreadPoolExecutor:
        with self._lock:
            if device not in self._queues:
                self._queues[device] = ThreadPoolExecutor(1, thread_name_prefix=f"lab-{device}")
            return self._queues[device]

    def submit(self, rows: list[dict[str, str]]) -> tuple[Take, Future]:
        """Validate ``rows`` (one clip, or layers + a mix row) and queue the take on its device.

        Raises ``LabInputError`` for rows the manifest rules refuse or models that are not available."""
        from assetgen import render
        from assetgen.plan import make_plan

        # keyed as `assetgen render` keys them: with the render's default attempts where the row has none
        specs = render.with_max_attempts(validate_rows(rows, self.folder), render.DEFAULT_MAX_ATTEMPTS)
        mixes = [s for s in specs if s.is_mix]
        clips = [s for s in specs if not s.is_mix]
        if len(mixes) > 1 or (not mixes and len(clips) != 1):
            raise LabInputError(f"a take is one clip or one scene; these rows make {len(specs)} assets "
                                "(sweeps a|b and variants are for manifests)")
        try:
            models, prints = render.resolve_models(clips, self.model_dir)
        except render.InvalidInput as exc:
            raise LabInputError(str(exc)) from None
        plan = make_plan(specs, {}, prints)
        main = next(it for it in plan.items if it.spec.is_mix) if mixes else plan.items[0]
        if mixes:
            by_ident = {s.ident: s for s in specs}
            label, placeholder = render.mix_label(main.spec, by_ident, models)
        else:
            label, placeholder = models[main.spec.model].label, models[main.spec.model].placeholder
        with self._lock:
            self._count += 1
            take_id = f"t{self._count:03d}"
        prompt = " | ".join(s.prompt for s in clips)
        device = self._device_for([s.model for s in clips])
        take = Take(take_id, "scene" if mixes else "clip", list(rows), main.key, device, label, placeholder, prompt)
        with self._lock:
            self._takes[take_id] = take
        future = self._queue(device).submit(self._run, take, plan.items, models)
        return take, future

    def create(self, rows: list[dict[str, str]]) -> Take:
        """:meth:`submit` and wait for the take to finish (or fail)."""
        take, future = self.submit(rows)
        future.result()
        return take

    # -- one take, on its device's queue -----------------------------------------------------------------
    def _run(self, take: Take, items: list, models: dict) -> None:
        start = time.perf_counter()
        take.started = time.time()
        take.timings["queue"] = round(take.started - take.created, 4)
        try:
            self._make(take, items, models)
            take.state = "done"
        except Exception as exc:  # noqa: BLE001 - the take fails, the lab goes on
            from assetgen.render import Failure

            take.error = exc.text if isinstance(exc, _TakeFailed) else Failure.from_exception("generate", exc).text
            take.state = "failed"
        take.timings["total"] = round(time.perf_counter() - start, 4)
        take.finished = time.time()

    def _make(self, take: Take, items: list, models: dict) -> None:
        from assetgen import render
        from assetgen.plan import make_batches
        from assetgen.store.store import encode_for_delivery

        clips = [it for it in items if not it.spec.is_mix]
        continuing = sorted(it.spec.ident for it in clips if it.spec.gen.continue_from)
        if continuing:  # the lab keeps no delivered takes to continue from
            raise _TakeFailed(f"continue_from is rendered by `assetgen render`, not the lab: {', '.join(continuing)}")
        # the render's own re-roll loop: a take failing a generation-dependent gate is generated again with
        # the next attempt's seed, so the delivered take is the one `assetgen render` of the kept rows delivers
        chooser = render.TakeChooser(clips)
        batches = make_batches(clips, batch_size=render.DEFAULT_BATCH_SIZE)
        encoded = {}
        clock = time.perf_counter
        done, total = 0, len(batches)
        while batches:
            for batch in batches:
                gen = self._generate(take, batch, done, total)
                done += 1
                take.progress = min(1.0, done / total)
                for failure in gen.failures:
                    raise _TakeFailed(failure.text)
                take.state = "post-processing"
                t = clock()
                for item, result in render.postprocess_batch_isolated(gen, self.pool):
                    if isinstance(result, render.Failure):
                        raise _TakeFailed(result.text)
                    chooser.add(item, result, gen.model_label, gen.placeholder)
                take.timings["postprocess"] = round(take.timings.get("postprocess", 0.0) + clock() - t, 4)
            batches = render.reroll_batches(chooser.rerolls(), render.DEFAULT_BATCH_SIZE)
            total += len(batches)
        for settled in chooser.settled():
            if settled.failure is not None or settled.payload is None:
                raise _TakeFailed(settled.failure.text if settled.failure else "no take")
            encoded[settled.item.spec.ident] = settled.payload
            take.attempts[settled.item.spec.asset] = settled.attempts
        mix = next((it for it in items if it.spec.is_mix), None)
        if mix is None:
            [item] = clips
            result, spec = encoded[item.spec.ident], item.spec
        else:
            from assetgen.dsp.chain import process_mix

            take.state = "mixing"
            t = clock()
            spec = mix.spec
            layers = []  # as render.render_mix reads them: the layers' delivered files, decoded
            for name in spec.layers:
                layer = next(it for it in clips if it.spec.asset == name)
                audio, sr = _decode(encoded[layer.spec.ident], layer.spec)
                layers.append((audio, sr, layer.spec.post))
                info = encoded[layer.spec.ident].info
                take.layers.append({"asset": name, "layer": layer.spec.layer, "content_key": layer.key,
                                    "lufs": info.lufs, "true_peak_dbtp": info.true_peak_dbtp})
            processed = process_mix(layers, spec.post, spec.target_duration_s)
            result = encode_for_delivery(processed, spec.post.bit_depth)
            take.timings["mix"] = round(clock() - t, 4)
        take.qc = take_qc(result.info)
        self._write(take, spec, result)

    def _generate(self, take: Take, batch, done: int, total: int):
        """Generate one batch on the take's device, reporting progress and load/generate seconds."""
        from assetgen import render

        clock = time.perf_counter
        take.state = "loading"
        t = clock()
        backend = self.cache.get(batch.model, self.model_dir, take.device)
        take.timings["load"] = round(take.timings.get("load", 0.0) + clock() - t, 4)
        take.state = "generating"
        if hasattr(backend, "on_progress"):
            backend.on_progress = lambda f: setattr(take, "progress", min(1.0, (done + f) / total))
        t = clock()
        try:
            return render.generate_batch(batch, model_dir=self.model_dir, device=take.device, cache=self.cache)
        finally:
            if hasattr(backend, "on_progress"):
                backend.on_progress = None
            take.timings["generate"] = round(take.timings.get("generate", 0.0) + clock() - t, 4)

    def _write(self, take: Take, spec: AssetSpec, encoded) -> None:
        from assetgen.store import wav
        from assetgen.store.atomic import atomic_write

        info = encoded.info
        loop = (int(info.loop_start), int(info.loop_end)) if info.loop_start is not None else None
        data = wav.wav_bytes(encoded.samples, int(info.sample_rate), int(spec.post.bit_depth), loop=loop,
                             description=spec.prompt or take.prompt,
                             provenance={"lab_take": take.id, "content_key": take.key, "model": take.model})
        take.path = atomic_write(self.folder / f"{take.id}.wav", data, durable=False)
        take.measured = {"lufs": info.lufs, "true_peak_dbtp": info.true_peak_dbtp, "seam_score": info.seam_score,
                         "audio_status": info.status, "notes": list(info.notes), "sample_rate": info.sample_rate,
                         "duration_s": encoded.samples.frames / info.sample_rate,
                         "audio_sha256": encoded.samples.sha256, "loop": loop}

    # -- keep ------------------------------------------------------------------------------------------
    def manifest_path(self, manifest: str) -> Path:
        """``manifest`` (a .csv path relative to the manifest root) as a path inside it; LabInputError else."""
        rel = Path(manifest)
        if not manifest or rel.suffix.lower() != ".csv" or ".." in rel.parts or "\0" in manifest:
            raise LabInputError(f"manifest {manifest!r}: expected a .csv path inside {self.manifest_root}")
        path = (self.manifest_root / rel).resolve()
        if not path.is_relative_to(self.manifest_root):
            raise LabInputError(f"manifest {manifest!r}: expected a .csv path inside {self.manifest_root}")
        if not path.parent.is_dir():
            raise LabInputError(f"manifest {manifest!r}: folder {path.parent} does not exist")
        return path

    def keep(self, take_id: str, manifest: str, scene: str, asset: str) -> dict:
        """Append the take's rows, named ``scene``/``asset``, to ``manifest``; returns what was written.

        The written rows are loaded back and keyed: their content key is the take's (else nothing would
        reproduce it, and that is an error, not a silent keep)."""
        from assetgen import render
        from assetgen.models.registry import fingerprint
        from assetgen.plan import make_plan

        take = self.get(take_id)
        if take is None:
            raise KeyError(take_id)
        if take.state != "done":
            raise LabInputError(f"take {take_id} is {take.state}: only a finished take can be kept")
        path = self.manifest_path(manifest)
        rows = renamed(take.rows, scene, asset)

        def same_key(specs: list[AssetSpec]) -> None:
            specs = render.with_max_attempts(specs, render.DEFAULT_MAX_ATTEMPTS)
            prints = {s.model: fingerprint(s.model, self.model_dir) for s in specs if not s.is_mix}
            keys = {it.spec.asset: it.key for it in make_plan(specs, {}, prints).items}
            if keys.get(asset) != take.key:
                raise RuntimeError(f"the rows of take {take_id} would key to {keys.get(asset)}, not to the "
                                   f"take's {take.key}; nothing was written")

        kept = keep_rows(path, rows, check=same_key)
        main = next(r for r in rows if r["asset"] == asset)
        record = {"manifest": str(path), "scene": scene, "asset": asset, "row": main, "rows": rows,
                  "lines": kept.lines, "content_key": take.key}
        take.kept.append({k: record[k] for k in ("manifest", "scene", "asset", "lines")})
        return record


class _TakeFailed(Exception):
    """A take's asset failed at a stage; ``text`` is the render's one-line failure text."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def _decode(encoded, spec: AssetSpec):
    """Float32 ``(channels, samples)`` and rate of an encoded clip, read from WAV bytes as the store reads files."""
    import numpy as np
    import soundfile as sf

    from assetgen.store import wav

    data = wav.wav_bytes(encoded.samples, int(encoded.info.sample_rate), int(spec.post.bit_depth))
    audio, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return np.ascontiguousarray(audio.T), int(sr)

