"""Render stages as plain functions over plain data; ``flows/render.py`` wires them into Prefect tasks.

prepare (validate, resolve models, plan, batch) -> generate_batch -> postprocess_batch -> record_outcome (commit
or failure) -> mixes after their layers (mix_blockers, render_mix, mix_label) -> summary. Also the decisions the
flow takes between stages: whether a partly failed batch is retried (:func:`retry_reason`), which exceptions are
worth a retry (:func:`is_transient`), how many parts a batch's post-processing is split into
(:func:`postprocess_parts`). Nothing here knows about Prefect, so every stage is tested on its own.

A failed asset is a :class:`Failure` (stage, exception type, message) from the moment it fails to the index row,
the CLI line and the run summary.
"""

from __future__ import annotations

import dataclasses
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from assetgen.spec import AssetSpec, ProcessedAudio

if TYPE_CHECKING:
    import numpy as np

    from assetgen.dsp_pool import DspPool
    from assetgen.models.cache import ModelCache
    from assetgen.store import AssetStore
    from assetgen.store.store import Encoded

DEFAULT_BATCH_SIZE = 8
STAGES = ("generate", "dsp", "store", "mix")


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


class ModelLoadError(RuntimeError):
    """A model's checkpoint could not be loaded (truncated, empty, not a checkpoint): retrying cannot help.

    Carries the original exception's type name, message and raising frame, which survive pickling between
    processes where ``__cause__`` does not.
    """

    def __init__(self, model: str, error_type: str, message: str, where: str = "") -> None:
        super().__init__(f"{error_type}: {message}")
        self.model, self.error_type, self.message, self.where = model, error_type, message, where

    @classmethod
    def wrap(cls, model: str, exc: BaseException) -> "ModelLoadError":
        return cls(model, type(exc).__name__, str(exc), _where(exc))

    def __reduce__(self):
        return type(self), (self.model, self.error_type, self.message, self.where)


@dataclass(frozen=True)
class Failure:
    """Why one asset failed: the stage (one of ``STAGES``), the exception's type name and message, and where
    it was raised (``" (file.py:line)"`` or empty). ``error_type`` is empty for a failure that is a decision,
    not an exception (a mix whose layers failed)."""

    stage: str
    error_type: str
    message: str
    where: str = ""

    @classmethod
    def from_exception(cls, stage: str, exc: BaseException, *, location: bool = True) -> "Failure":
        """The failure ``exc`` caused at ``stage``; a :class:`ModelLoadError` reports its original exception."""
        if isinstance(exc, ModelLoadError):
            detail = f": {exc.message}" if exc.message else ""
            return cls(stage, exc.error_type, f"loading model {exc.model!r}{detail}", exc.where if location else "")
        return cls(stage, type(exc).__name__, str(exc), _where(exc) if location else "")

    @property
    def text(self) -> str:
        """The error as the index, the CLI and the artifacts show it (``dsp:`` prefixes a DSP failure)."""
        prefix = "dsp: " if self.stage == "dsp" else ""
        kind = f"{self.error_type}: " if self.error_type else ""
        return f"{prefix}{kind}{self.message}{self.where}"

    def __str__(self) -> str:
        return self.text


def _where(exc: BaseException) -> str:
    """`` (file.py:line)`` of the frame that raised ``exc``, or empty without a traceback."""
    tb = traceback.extract_tb(exc.__traceback__)
    return f" ({Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""


def error_text(exc: BaseException) -> str:
    """One line for the index and the CLI: type, message and the raising frame."""
    return f"{type(exc).__name__}: {exc}{_where(exc)}"


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
    """One asset's result in a run: the committed index row, or the failure."""

    ident: str
    key: str
    row: dict | None = None
    failure: Failure | None = None
    notes: tuple[str, ...] = ()  # what post-processing said about the take (tempo used, limiting, shortfall)

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def stage(self) -> str | None:
        return self.failure.stage if self.failure else None

    @property
    def error(self) -> str | None:
        return self.failure.text if self.failure else None


@dataclass
class GenResult:
    """A generated batch: per item the audio at the model's native rate (float32 (channels, samples)), or the
    failure of that item alone."""

    items: list
    audio: list  # np.ndarray | Failure per item
    sample_rate: int
    model_label: str
    placeholder: bool
    split_log: list = field(default_factory=list)

    @property
    def failures(self) -> list[Failure]:
        return [a for a in self.audio if isinstance(a, Failure)]


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


def generate_batch(batch, *, model_dir=None, device: str | None = None,
                   cache: ModelCache | None = None) -> GenResult:
    """Generate one planned batch on ``cache``'s model (default: this process's); OOM splits the batch, a
    request that fails alone gets a :class:`Failure`. A checkpoint that does not load raises
    :class:`ModelLoadError` (an out-of-memory error while loading is raised as it is: a retry may fit)."""
    from assetgen.models.batching import generate_split, is_oom
    from assetgen.models.cache import default_cache

    cache = cache or default_cache()
    try:
        backend = cache.get(batch.model, model_dir, device)
    except (InvalidInput, ModelLoadError):
        raise
    except Exception as exc:
        from assetgen.models.base import CheckpointRefused
        from assetgen.models.device import DeviceUnavailable
        from assetgen.models.registry import ModelUnavailable

        if isinstance(exc, (ModelUnavailable, CheckpointRefused, DeviceUnavailable)) or is_oom(exc):
            raise
        raise ModelLoadError.wrap(batch.model, exc) from exc
    splits: list = []
    results = generate_split(backend, batch.requests(),
                             on_split=lambda n, exc: splits.append(f"OOM at batch {n}: split in halves"))
    audio = [Failure.from_exception("generate", r, location=False) if isinstance(r, BaseException) else r
             for r in results]
    return GenResult(list(batch.items), audio, backend.sample_rate, backend.name, backend.placeholder, splits)


def is_transient(exc: BaseException) -> bool:
    """Whether a failed generation task is worth retrying: flaky workers and OOM (after splitting) are; invalid
    input, missing, refused or unloadable checkpoints and missing devices are not."""
    from assetgen.models.base import CheckpointRefused
    from assetgen.models.device import DeviceUnavailable
    from assetgen.models.registry import ModelUnavailable

    return not isinstance(exc, (InvalidInput, ModelLoadError, ModelUnavailable, CheckpointRefused,
                                DeviceUnavailable))


def retry_reason(gen: GenResult, attempt: int, attempts: int) -> str | None:
    """Why batch ``gen`` (generated at 1-based ``attempt`` of ``attempts``) should be generated again, or None.

    A batch some of whose requests failed alone is retried while attempts remain (a transient fault hit part
    of it); on the last attempt its failures are kept and the rest is delivered. Requests the model refused
    (``models.base.RequestRefused``) fail the same way on every attempt and cause no retry.
    """
    failed = [f for f in gen.failures if f.error_type != "RequestRefused"]  # the same again on every attempt
    if not failed or attempt >= attempts:
        return None
    return f"{len(failed)} of {len(gen.audio)} requests failed, retrying: {failed[0].text}"


def part_slice(n: int, part: int, parts: int) -> slice:
    """Part ``part`` of ``parts`` contiguous, near-equal slices of ``n`` items."""
    return slice(part * n // parts, (part + 1) * n // parts)


def part_of(gen: GenResult, part: int, parts: int) -> GenResult:
    """:func:`part_slice` of a generated batch (its OOM-split log goes with part 0 only)."""
    cut = part_slice(len(gen.items), part, parts)
    return dataclasses.replace(gen, items=gen.items[cut], audio=gen.audio[cut],
                               split_log=gen.split_log if part == 0 else [])


def postprocess_parts(batch_index: int, n_batches: int, n_items: int, isolated: bool) -> int:
    """Into how many parts a batch's post-processing is split: 2 for the last batch of a local render (one
    part in the DSP process, one in the flow process, which nothing else uses once generation is over),
    else 1."""
    return 2 if isolated and batch_index == n_batches - 1 and n_items > 1 else 1


def postprocess(spec: AssetSpec, audio: np.ndarray, sample_rate: int) -> ProcessedAudio:
    """Delivery chain for one generated clip (resample, fx, loop, loudness; see ``dsp.chain``): float audio."""
    from assetgen.dsp.chain import process_clip

    return process_clip(audio, sample_rate, spec.post, spec.target_duration_s)


def postprocess_batch(gen: GenResult) -> list[tuple[Any, Encoded | Failure]]:
    """Post-process every successful item of a generated batch and encode it for the store, where this runs
    (the DSP process or a Dask worker); a DSP error fails only its item (stage ``dsp``)."""
    from assetgen.store.store import encode_for_delivery

    out: list[tuple[Any, Encoded | Failure]] = []
    for item, audio in zip(gen.items, gen.audio):
        if isinstance(audio, Failure):
            out.append((item, audio))
            continue
        try:
            processed = postprocess(item.spec, audio, gen.sample_rate)
            out.append((item, encode_for_delivery(processed, item.spec.post.bit_depth)))
        except Exception as exc:  # noqa: BLE001 - isolated per asset
            out.append((item, Failure.from_exception("dsp", exc, location=False)))
    return out


def postprocess_batch_isolated(gen: GenResult, pool: DspPool | None = None) -> list[tuple[Any, Encoded | Failure]]:
    """:func:`postprocess_batch` in ``pool``'s worker process (default: :func:`dsp_pool.default_pool`)."""
    from assetgen.dsp_pool import default_pool

    return (pool or default_pool()).run(postprocess_batch, gen)


def params_record(spec: AssetSpec) -> dict:
    """Generation + post-processing settings as stored in the index's ``params`` column."""
    return {"gen": dataclasses.asdict(spec.gen), "post": dataclasses.asdict(spec.post),
            "template": dict(spec.template_params), "layers": list(spec.layers)}


def commit(store: AssetStore, item, payload: Encoded | ProcessedAudio, *, model_label: str, placeholder: bool,
           run_id: str) -> dict:
    """Write one asset version atomically and index it (flow process only: the index's single writer)."""
    from assetgen.store.store import Encoded

    write = store.commit_encoded if isinstance(payload, Encoded) else store.commit
    return write(item.spec, item.key, payload, model_label=model_label, placeholder=placeholder, run_id=run_id,
                 params=params_record(item.spec))


def record_failure(store: AssetStore, item, failure: Failure, run_id: str) -> Outcome:
    """Index ``failure`` for ``item`` (the run goes on) and return its outcome."""
    store.record_failure(item.spec, item.key, failure.stage, failure.text, run_id)
    return Outcome(item.spec.ident, item.key, failure=failure)


def record_outcome(store: AssetStore, item, result: Encoded | ProcessedAudio | Failure, *, model_label: str,
                   placeholder: bool, run_id: str) -> Outcome:
    """Commit one post-processed asset, or record why it failed; a commit error fails the asset at stage
    ``store`` (never the run)."""
    if isinstance(result, Failure):
        return record_failure(store, item, result, run_id)
    try:
        row = commit(store, item, result, model_label=model_label, placeholder=placeholder, run_id=run_id)
    except Exception as exc:  # noqa: BLE001
        return record_failure(store, item, Failure.from_exception("store", exc), run_id)
    info = getattr(result, "info", result)  # an Encoded clip carries its ProcessedAudio as ``info``
    return Outcome(item.spec.ident, item.key, row=row, notes=tuple(getattr(info, "notes", ()) or ()))


def record_batch_failure(store: AssetStore, items: Sequence, stage: str, exc: BaseException,
                         run_id: str) -> list[Outcome]:
    """Every item of a batch (or batch part) whose generation (``stage="generate"``) or post-processing task
    (``"dsp"``: the DSP process died) failed as a whole with ``exc``."""
    failure = Failure.from_exception(stage, exc)
    return [record_failure(store, it, failure, run_id) for it in items]


def mix_blockers(spec: AssetSpec, failed: set[str]) -> list[str]:
    """The layers of mix ``spec`` whose assets failed in this run (idents in ``failed``), in layer order."""
    return [n for n in spec.layers if f"{spec.scene}/{n}" in failed]


def mix_blocked(blockers: Sequence[str]) -> Failure:
    """The failure of a mix whose layers ``blockers`` failed."""
    return Failure("mix", "", f"layer(s) failed: {', '.join(blockers)}")


def mix_label(spec: AssetSpec, layer_specs: dict[str, AssetSpec], models: dict) -> tuple[str, bool]:
    """(model label, placeholder) of a mix: ``"mix of "`` its layers' sorted model labels; placeholder when
    any layer's model is."""
    layer_models = [models[layer_specs[f"{spec.scene}/{n}"].model] for n in spec.layers]
    return "mix of " + ", ".join(sorted({m.label for m in layer_models})), any(m.placeholder for m in layer_models)


def mix_layers_audio(store: AssetStore, spec: AssetSpec, layer_specs: dict[str, AssetSpec]) -> list:
    """Delivered audio of a mix's layers (latest versions) with each layer's placement settings."""
    layers = []
    for name in spec.layers:
        latest = store.read_latest(spec.scene, name)
        if latest is None:
            raise RuntimeError(f"layer {spec.scene}/{name} has no rendered version")
        audio, sr, _ = latest
        layers.append((audio, sr, layer_specs[f"{spec.scene}/{name}"].post))
    return layers


def render_mix(store: AssetStore, item, layer_specs: dict[str, AssetSpec]) -> ProcessedAudio:
    """A scene mix from its layers' latest delivered versions (float audio; the store encodes on commit)."""
    from assetgen.dsp.chain import process_mix

    spec = item.spec
    return process_mix(mix_layers_audio(store, spec, layer_specs), spec.post, spec.target_duration_s)


def summary(prepared: Prepared, outcomes: Sequence[Outcome], run_id: str) -> dict:
    """Counts, failures and the new versions of a run (CLI output and Prefect artifacts)."""
    counts = prepared.plan.counts() if hasattr(prepared.plan, "counts") else {}
    rows = [o.row for o in outcomes if o.ok and o.row]
    notes = {o.ident: list(o.notes) for o in outcomes if o.ok and o.notes}
    failed = [{"asset": o.ident, "stage": o.stage, "error": o.error} for o in outcomes if not o.ok]
    return {"run_id": run_id, "plan": counts, "rendered": len(rows), "failed": failed,
            "placeholder": any(m.placeholder for m in prepared.models.values()),
            "versions": [{**{k: r.get(k) for k in ("scene", "asset", "version", "path", "lufs", "true_peak_dbtp",
                                                   "seam_score", "tempo_bpm", "tempo_source", "audio_status",
                                                   "model")},
                          "notes": notes.get(f"{r['scene']}/{r['asset']}", [])} for r in rows]}


def version_lines(summary: dict, everything: bool = False) -> list[str]:
    """One line per new version of ``summary``: path, LUFS, dBTP, tempo and post-processing notes; without
    ``everything`` only the versions whose audio status is not ``ok`` (what needs a look)."""
    lines = []
    for v in summary["versions"]:
        status = v.get("audio_status") or "ok"
        if not everything and status == "ok":
            continue
        figures = [f"{v['lufs']:.1f} LUFS" if v.get("lufs") is not None else "",
                   f"{v['true_peak_dbtp']:.1f} dBTP" if v.get("true_peak_dbtp") is not None else "",
                   f"{v['tempo_bpm']:.2f} BPM" if v.get("tempo_bpm") else "", "" if status == "ok" else status]
        notes = "; ".join(v.get("notes") or ())
        lines.append(f"{v['scene']}/{v['asset']} v{v['version']}: {', '.join(f for f in figures if f)}"
                     + (f" ({notes})" if notes else ""))
    return lines
