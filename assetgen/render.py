"""Render stages as plain functions over plain data; ``flows/render.py`` wires them into Prefect tasks.

prepare (validate, resolve models, plan, batch) -> generate_batch -> postprocess -> commit; mixes after their layers.
Nothing here knows about Prefect, so every stage is tested on its own.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from assetgen.spec import AssetSpec, ProcessedAudio

DEFAULT_BATCH_SIZE = 8


class InvalidInput(Exception):
    """Bad manifests, arguments or models: CLI exit code 2, never retried."""


class AssetsFailed(Exception):
    """Some assets of a render failed (the others landed); ``summary`` is the run's :func:`summary`.

    The data of the flow's Failed state, so ``render_flow(...)`` called from Python raises it (Prefect can
    only raise exceptions from a failed state) and ``assetgen render`` reads the summary from it.
    """

    def __init__(self, message: str, summary: dict) -> None:
        super().__init__(message)
        self.summary = summary

    def __reduce__(self):
        return type(self), (str(self), self.summary)


@dataclass
class Prepared:
    """Everything decided before any model loads."""

    specs: list
    plan: Any  # assetgen.plan.Plan
    batches: list  # assetgen.plan.Batch, generating items only
    mixes: list  # PlanItems of scene mixes to render (after their layers)
    models: dict  # model ref -> ResolvedModel
    fingerprints: dict  # model ref -> fingerprint


@dataclass
class Outcome:
    """One asset's result in a run: the committed index row, or the stage and error that failed it."""

    ident: str
    key: str
    row: dict | None = None
    stage: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class GenResult:
    """A generated batch: per item the audio at the model's native rate, or the error that failed it alone."""

    items: list
    audio: list  # np.ndarray | str (error text) per item
    sample_rate: int
    model_label: str
    placeholder: bool
    split_log: list = field(default_factory=list)


def read_latest_keys(root: Path) -> dict[str, str]:
    """ident -> content key of the latest version, read without writing anything (empty if no index yet)."""
    if not (Path(root) / "index.sqlite").exists():
        return {}
    from assetgen.store.index import Index

    return Index(Path(root)).latest_keys()


def resolve_models(specs: Sequence[AssetSpec], model_dir: str | Path | None) -> tuple[dict, dict]:
    """Resolve every generating model once; all unavailable models reported together (``InvalidInput``)."""
    from assetgen.models.registry import ModelUnavailable, fingerprint, resolve

    refs = sorted({s.model for s in specs if not s.is_mix})
    models, prints, errors = {}, {}, []
    for ref in refs:
        try:
            models[ref] = resolve(ref, model_dir)
            prints[ref] = fingerprint(ref, model_dir)
        except ModelUnavailable as exc:
            errors.append(str(exc))
    if errors:
        raise InvalidInput("\n".join(errors))
    return models, prints


def prepare(manifests: Sequence[str | Path], root: str | Path, *, model_dir=None,
            batch_size: int = DEFAULT_BATCH_SIZE, max_assets: int = 10_000) -> Prepared:
    """Validate manifests, resolve models, diff against the index and batch what must be generated."""
    from assetgen.manifest import ManifestError, load_manifests
    from assetgen.plan import make_batches, make_plan

    try:
        specs = load_manifests([Path(m) for m in manifests], max_assets=max_assets)
    except ManifestError as exc:
        raise InvalidInput(str(exc)) from None
    models, prints = resolve_models(specs, model_dir)
    plan = make_plan(specs, read_latest_keys(Path(root)), prints)
    todo = [it for it in plan.items if it.state in ("new", "changed")]
    batches = make_batches([it for it in todo if not it.spec.is_mix], batch_size)
    mixes = [it for it in todo if it.spec.is_mix]
    return Prepared(specs, plan, batches, mixes, models, prints)


def generate_batch(batch, *, model_dir=None, device: str | None = None, max_batch: int | None = None) -> GenResult:
    """Generate one planned batch on this process's cached model; OOM splits, per-request failures kept."""
    from assetgen.models.batching import generate_split
    from assetgen.models.cache import get_backend

    backend = get_backend(batch.model, model_dir, device)
    splits: list = []
    results = generate_split(backend, batch.requests(),
                             on_split=lambda n, exc: splits.append(f"OOM at batch {n}: split in halves"))
    audio = [r if not isinstance(r, BaseException) else f"{type(r).__name__}: {r}" for r in results]
    return GenResult(list(batch.items), audio, backend.sample_rate, backend.name, backend.placeholder, splits)


def part_slice(n: int, part: int, parts: int) -> slice:
    """Part ``part`` of ``parts`` contiguous, near-equal slices of ``n`` items."""
    return slice(part * n // parts, (part + 1) * n // parts)


def part_of(gen: GenResult, part: int, parts: int) -> GenResult:
    """:func:`part_slice` of a generated batch (its OOM-split log goes with part 0 only)."""
    cut = part_slice(len(gen.items), part, parts)
    return dataclasses.replace(gen, items=gen.items[cut], audio=gen.audio[cut],
                               split_log=gen.split_log if part == 0 else [])


def postprocess(spec: AssetSpec, audio, sample_rate: int) -> ProcessedAudio:
    """Delivery chain for one generated clip (resample, fx, loop, loudness; see ``dsp.chain``), its audio
    encoded for the WAV here, where the DSP runs (the flow process then only adds headers and writes)."""
    from assetgen.dsp.chain import process_clip
    from assetgen.store.wav import encode

    out = process_clip(audio, sample_rate, spec.post, spec.target_duration_s)
    return dataclasses.replace(out, audio=encode(out.audio, spec.post.bit_depth))


def postprocess_batch(gen: GenResult) -> list[tuple[Any, ProcessedAudio | str]]:
    """Post-process every successful item of a generated batch; a DSP error fails only its item."""
    out = []
    for item, audio in zip(gen.items, gen.audio):
        if isinstance(audio, str):
            out.append((item, audio))
            continue
        try:
            out.append((item, postprocess(item.spec, audio, gen.sample_rate)))
        except Exception as exc:  # noqa: BLE001 - isolated per asset
            out.append((item, f"dsp: {type(exc).__name__}: {exc}"))
    return out


_DSP_POOL: Any = None
_DSP_POOL_LOCK = threading.Lock()


def dsp_pool():
    """The flow process's post-processing process (spawned on first use, reused for every batch).

    Post-processing in a thread of the flow process would share the GIL with the generation thread, whose
    sampling loop releases and re-takes it at every torch call; a separate process keeps generation at its
    own speed (measured: a 16-request batch takes 5.8-7.2 s alone, 8.9-9.5 s beside a DSP thread, 5.9-6.4 s
    beside a DSP process). One process: CPU renders give torch every core but one, and on a GPU worker one
    core of DSP (~400x realtime) keeps up with the device.
    """
    global _DSP_POOL
    with _DSP_POOL_LOCK:
        if _DSP_POOL is None:
            import concurrent.futures
            import multiprocessing

            # spawn, not fork: the flow process has torch, Prefect and event-loop threads
            _DSP_POOL = concurrent.futures.ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=_dsp_worker_init,
                initargs=(os.getpid(),))
            atexit.register(_shutdown_dsp_pool)  # before interpreter teardown, or its weakref callback errors
        return _DSP_POOL


def _shutdown_dsp_pool() -> None:
    global _DSP_POOL
    with _DSP_POOL_LOCK:
        pool, _DSP_POOL = _DSP_POOL, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


def _dsp_worker_init(parent_pid: int) -> None:
    """Import the DSP stack up front, and exit when the flow process is gone (even if it was killed)."""
    import assetgen.dsp.chain  # noqa: F401
    import pedalboard  # noqa: F401
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # one core: the others generate (true peak's GEMM would otherwise use every core)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def warm_dsp_pool() -> None:
    """Start the post-processing process now (it imports the DSP stack while the first batch generates)."""
    dsp_pool().submit(int)


def postprocess_batch_isolated(gen: GenResult) -> list[tuple[Any, ProcessedAudio | str]]:
    """:func:`postprocess_batch` in :func:`dsp_pool`'s process; a dead process is replaced for the next batch."""
    from concurrent.futures.process import BrokenProcessPool

    global _DSP_POOL
    pool = dsp_pool()
    try:
        return pool.submit(postprocess_batch, gen).result()
    except BrokenProcessPool:
        with _DSP_POOL_LOCK:
            if _DSP_POOL is pool:
                _DSP_POOL = None
        raise


def params_record(spec: AssetSpec) -> dict:
    """Generation + post-processing settings as stored in the index's ``params`` column."""
    return {"gen": dataclasses.asdict(spec.gen), "post": dataclasses.asdict(spec.post),
            "template": dict(spec.template_params), "layers": list(spec.layers)}


def commit(store, item, processed: ProcessedAudio, *, model_label: str, placeholder: bool, run_id: str) -> dict:
    """Write one asset version atomically and index it (flow process only: the index's single writer)."""
    return store.commit(item.spec, item.key, processed, model_label=model_label, placeholder=placeholder,
                        run_id=run_id, params=params_record(item.spec))


def mix_layers_audio(root: Path, spec: AssetSpec, layer_specs: dict[str, AssetSpec]) -> list:
    """Delivered audio of a mix's layers (latest versions in the index) with each layer's placement settings."""
    import soundfile as sf

    from assetgen.store.index import Index

    index = Index(Path(root))
    layers = []
    for name in spec.layers:
        row = index.get(spec.scene, name)
        if row is None:
            raise RuntimeError(f"layer {spec.scene}/{name} has no rendered version")
        data, sr = sf.read(Path(root) / row["path"], dtype="float32", always_2d=True)
        layers.append((data.T.copy(), int(sr), layer_specs[f"{spec.scene}/{name}"].post))
    return layers


def render_mix(root: Path, item, layer_specs: dict[str, AssetSpec]) -> ProcessedAudio:
    from assetgen.dsp.chain import process_mix

    spec = item.spec
    return process_mix(mix_layers_audio(root, spec, layer_specs), spec.post, spec.target_duration_s)


def error_text(exc: BaseException) -> str:
    """One line for the index and the CLI; the traceback's last frame for context."""
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" ({Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    return f"{type(exc).__name__}: {exc}{where}"


def summary(prepared: Prepared, outcomes: Sequence[Outcome], run_id: str) -> dict:
    """Counts, failures and the new versions of a run (CLI output and Prefect artifacts)."""
    counts = prepared.plan.counts() if hasattr(prepared.plan, "counts") else {}
    rows = [o.row for o in outcomes if o.ok and o.row]
    failed = [{"asset": o.ident, "stage": o.stage, "error": o.error} for o in outcomes if not o.ok]
    return {"run_id": run_id, "plan": counts, "rendered": len(rows), "failed": failed,
            "placeholder": any(m.placeholder for m in prepared.models.values()),
            "versions": [{k: r.get(k) for k in ("scene", "asset", "version", "path", "lufs", "true_peak_dbtp",
                                                "seam_score", "model")} for r in rows]}
