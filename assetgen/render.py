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
import io
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from assetgen.gcpause import gc_paused
from assetgen.spec import AssetSpec, PostParams, ProcessedAudio

if TYPE_CHECKING:
    import numpy as np

    from assetgen.dsp_pool import DspPool
    from assetgen.models.cache import ModelCache
    from assetgen.store import AssetStore
    from assetgen.store.store import Encoded, StagedTake

DEFAULT_BATCH_SIZE = 8
DEFAULT_MAX_ATTEMPTS = 3  # takes generated per asset at most, unless the row's max_attempts says otherwise
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
    attempts: int = 1  # takes generated for it in this run (more than 1: re-rolled after failed QC gates)

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
    model_kind: str | None = None  # "music" | "sfx" (the resolved checkpoint's), for the QC gate defaults

    @property
    def failures(self) -> list[Failure]:
        return [a for a in self.audio if isinstance(a, Failure)]


def read_index_state(root: Path, check_files: bool = False,
                     record_verified: bool = False) -> tuple[dict[str, str], dict[str, str]]:
    """(ident -> key of the latest version, ident -> key of a latest version whose file is missing or damaged).

    The index's ``file_state`` says what the last reconcile found; ``check_files`` also compares every latest
    file with its sha256 now (``report.verify.file_problems``: only stat for files unchanged since their hash
    was verified), so ``plan`` and the render's own preview show repairs before any reconcile ran.
    ``record_verified`` stores the hashes found intact in the verification cache (best effort).
    """
    if not (Path(root) / "index.sqlite").exists():
        return {}, {}
    from assetgen.store.index import Index

    if not check_files:
        latest = Index(Path(root)).latest_states()  # (ident, key, ok, version) tuples
        return {i: k for i, k, ok, _ in latest if ok}, {i: k for i, k, ok, _ in latest if not ok}
    from assetgen.report.verify import file_problems

    latest = Index(Path(root)).latest_states(files=True)  # (ident, key, ok, path, sha256, version)
    problems = file_problems(Path(root), [{"path": r[3], "file_state": "ok" if r[2] else "missing", "sha256": r[4]}
                                          for r in latest], record=record_verified)
    keys = {i: k for i, k, ok, path, _, _ in latest if ok and path not in problems}
    damaged = {i: k for i, k, ok, path, _, _ in latest if not ok or path in problems}
    return keys, damaged


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


def with_max_attempts(specs: Sequence[AssetSpec], default: int) -> list[AssetSpec]:
    """``specs`` with the render's ``default`` attempts where the row gave no ``max_attempts`` (before keying:
    how many takes may be generated decides which one is delivered)."""
    if default < 1:
        raise InvalidInput(f"--max-attempts must be >= 1, got {default}")
    posts: dict[int, PostParams] = {}  # one replaced PostParams per distinct one: a row's specs share theirs

    def with_default(post: PostParams) -> PostParams:
        found = posts.get(id(post))
        if found is None:
            found = posts[id(post)] = dataclasses.replace(post, max_attempts=default)
        return found

    with gc_paused():  # one new spec per asset, none in a reference cycle
        return [s if s.post.max_attempts or s.is_mix else s.replace(post=with_default(s.post)) for s in specs]


def prepare(manifests: Sequence[str | Path], root: str | Path, *, model_dir=None,
            batch_size: int = DEFAULT_BATCH_SIZE, max_assets: int = 10_000,
            max_attempts: int = DEFAULT_MAX_ATTEMPTS, check_files: bool = False,
            record_verified: bool = False) -> Prepared:
    """Validate manifests, resolve models, diff against the index and batch what must be generated
    (``check_files``, ``record_verified``: see :func:`read_index_state`)."""
    from assetgen.manifest import ManifestError, load_manifests

    try:
        specs = load_manifests([Path(m) for m in manifests], max_assets=max_assets)
    except ManifestError as exc:
        raise InvalidInput(str(exc)) from None
    specs = with_max_attempts(specs, max_attempts)
    models, prints = resolve_models(specs, model_dir)
    return replan(Prepared(specs, None, [], [], models, prints), root, batch_size, check_files=check_files,
                  record_verified=record_verified)


def replan(prepared: Prepared, root: str | Path, batch_size: int = DEFAULT_BATCH_SIZE, *,
           check_files: bool = False, record_verified: bool = False) -> Prepared:
    """``prepared`` planned again against the index as it is now: the render calls it under the root's lock
    after reconcile, so what reconcile found missing or damaged is repaired in the same run, and what another
    render finished meanwhile is not generated twice."""
    from assetgen.plan import make_batches, make_plan

    keys, damaged = read_index_state(Path(root), check_files=check_files, record_verified=record_verified)
    plan = make_plan(prepared.specs, keys, prepared.fingerprints, damaged)
    todo = plan.pending
    batches = make_batches([it for it in todo if not it.spec.is_mix], batch_size)
    mixes = [it for it in todo if it.spec.is_mix]
    return dataclasses.replace(prepared, plan=plan, batches=batches, mixes=mixes)


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
    kind = getattr(getattr(backend, "resolved", None), "kind", None)
    return GenResult(list(batch.items), audio, backend.sample_rate, backend.name, backend.placeholder, splits,
                     kind)


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
    from assetgen.spec import FILE_MODEL

    # the stems of a recorded set are cut where their segments start, so they stay aligned with each other
    fixed = bool(spec.post.stem_set) and spec.model == FILE_MODEL
    return process_clip(audio, sample_rate, spec.post, spec.target_duration_s, fixed_start=fixed)


def check_take(spec: AssetSpec, processed: ProcessedAudio, raw: np.ndarray | None = None, raw_sr: int | None = None,
               model_kind: str | None = None) -> ProcessedAudio:
    """``processed`` with the row's QC gates run on it (``assetgen.qc``; all but ``near_duplicate``, which
    :class:`TakeChooser` runs against the siblings) and, when that gate is on, the raw take's embedding.
    ``raw`` is the model output at ``raw_sr`` (None for a mix). The verdict (``qc``) is set here for a take
    that runs no gates (``waived``) or no near-duplicate gate; else by the chooser."""
    from assetgen import qc
    from assetgen.spec import FILE_MODEL

    if raw is not None and raw_sr and spec.model == FILE_MODEL and not spec.post.loop:
        # a one-shot recording delivers the start of its segment: the raw-take gates judge that part only
        raw = raw[..., : max(1, round(spec.target_duration_s * raw_sr))]
    gates = qc.gates_for(spec, qc.asset_kind(spec, model_kind))
    results = tuple(qc.evaluate_take(spec, gates, raw, raw_sr, processed))
    emb = tuple(qc.embedding(raw, raw_sr).tolist()) if "near_duplicate" in gates and raw is not None else None
    verdict = (None, ()) if emb is not None else _verdict(results, bool(gates))
    return dataclasses.replace(processed, gates=results, embedding=emb, qc=verdict[0], qc_reasons=verdict[1])


def _verdict(results, gates_run: bool) -> tuple[str, tuple[str, ...]]:
    from assetgen import qc

    state, reasons = qc.verdict(results, gates_run)
    return state, tuple(reasons)


def postprocess_batch(gen: GenResult,
                      staging: Staging | None = None) -> list[tuple[Any, Encoded | StagedTake | Failure]]:
    """Post-process every successful item of a generated batch, run its QC gates (:func:`check_take`) and
    encode it for the store, where this runs (the DSP process or a Dask worker); a DSP error fails only its
    item (stage ``dsp``). With ``staging`` each take is also written there (:func:`stage_take`) and only its
    row and QC facts come back, not its samples."""
    from assetgen.store.store import encode_for_delivery

    out: list[tuple[Any, Encoded | StagedTake | Failure]] = []
    for item, audio in zip(gen.items, gen.audio):
        if isinstance(audio, Failure):
            out.append((item, audio))
            continue
        try:
            processed = postprocess(item.spec, audio, gen.sample_rate)
            processed = check_take(item.spec, processed, audio, gen.sample_rate, gen.model_kind)
            encoded = encode_for_delivery(processed, item.spec.post.bit_depth)
        except Exception as exc:  # noqa: BLE001 - isolated per asset
            out.append((item, Failure.from_exception("dsp", exc, location=False)))
            continue
        if staging is None:
            out.append((item, encoded))
            continue
        try:
            out.append((item, stage_take(staging, item, encoded, model_label=gen.model_label,
                                         placeholder=gen.placeholder)))
        except Exception as exc:  # noqa: BLE001 - isolated per asset, as a commit error is
            from assetgen.store.disk import describe

            if describe(exc) is not None:  # read-only or full: the run stops, as at a commit
                raise
            out.append((item, Failure.from_exception("store", exc)))
    return out


def postprocess_batch_isolated(gen: GenResult, pool: DspPool | None = None) -> list[tuple[Any, Encoded | Failure]]:
    """:func:`postprocess_batch` in ``pool``'s worker process (default: :func:`dsp_pool.default_pool`)."""
    from assetgen.dsp_pool import default_pool

    return (pool or default_pool()).run(postprocess_batch, gen)


@dataclass(frozen=True)
class Staging:
    """Where the process that post-processes a batch writes its takes (``store.stage``): the output root (its own
    location, a folder or an fsspec URL, so a worker without the render's working folder reaches it),
    the run, and per asset ident the version its take becomes, or the index row of the missing latest version
    it restores (:func:`staging_for` decides them in the flow, which holds the root's lock)."""

    root: str
    run_id: str
    targets: dict  # ident -> int | dict


def staging_for(store: AssetStore, run_id: str, items: Sequence) -> Staging:
    """The :class:`Staging` of a batch of ``items``: a repair restores its latest version, anything else becomes
    the version after the latest (the render holds the lock, so nothing else adds one meanwhile)."""
    targets: dict[str, int | dict] = {}
    for it in items:
        latest = store.index.get(it.spec.scene, it.spec.asset)
        if it.state == "repair" and latest is not None:
            targets[it.spec.ident] = latest
        else:
            targets[it.spec.ident] = latest["version"] + 1 if latest is not None else 1
    return Staging(store.files.url if store.files.remote else str(store.root.resolve()), run_id, targets)


def provisional_verdict(info: ProcessedAudio) -> ProcessedAudio:
    """``info`` with the verdict its file records when staged before :class:`TakeChooser` judged near-duplicates:
    the verdict if the near-duplicate gate passes (a passing gate adds no reason), which ``AssetStore.publish``
    keeps when the final verdict agrees and rewrites otherwise."""
    if info.qc is not None:
        return info
    state, reasons = _verdict(info.gates, True)
    return dataclasses.replace(info, qc=state, qc_reasons=reasons)


def stage_take(staging: Staging, item, encoded: Encoded, *, model_label: str, placeholder: bool) -> StagedTake:
    """Write one post-processed take under the root's staging folder (``AssetStore.stage``), for the flow to
    publish or discard once :class:`TakeChooser` decided; the returned take carries ``encoded``'s QC facts."""
    from assetgen.store.root import files_at
    from assetgen.store.store import stage

    spec, params = take_spec(item)
    header = dataclasses.replace(encoded, info=provisional_verdict(encoded.info))
    take = stage(files_at(staging.root), spec, item.key, header, version=staging.targets[item.spec.ident],
                 model_label=model_label, placeholder=placeholder, run_id=staging.run_id, params=params,
                 attempt=getattr(item, "attempt", 1))
    return dataclasses.replace(take, info=encoded.info)


def stage_processed(staging: Staging, item, processed: ProcessedAudio, *, model_label: str,
                    placeholder: bool) -> StagedTake:
    """:func:`stage_take` of float audio (a scene mix rendered on a worker), encoded at the asset's bit depth."""
    from assetgen.store.store import encode_for_delivery

    return stage_take(staging, item, encode_for_delivery(processed, item.spec.post.bit_depth),
                      model_label=model_label, placeholder=placeholder)


def render_batch(gen: GenResult, staging: Staging) -> tuple[GenResult, list]:
    """Post-process a generated batch and write its takes to ``staging`` where it was generated (a Dask
    worker): returns the batch without its audio (``audio`` empty) and per item its :class:`StagedTake` or
    :class:`Failure`, so no samples cross back to the flow."""
    results = postprocess_batch(gen, staging)
    return dataclasses.replace(gen, audio=[]), results


def params_record(spec: AssetSpec, attempt: int = 1) -> dict:
    """Generation + post-processing settings as stored in the index's ``params`` column (with the generation
    attempt that made the take and the asset's own seed, when a re-roll made it)."""
    record = {"gen": dataclasses.asdict(spec.gen), "post": dataclasses.asdict(spec.post),
              "template": dict(spec.template_params), "layers": list(spec.layers)}
    if attempt > 1:
        record.update(attempt=attempt, asset_seed=spec.seed)
    return record


def commit(store: AssetStore, item, payload: Encoded | ProcessedAudio, *, model_label: str, placeholder: bool,
           run_id: str) -> dict:
    """Write one asset version atomically and index it (flow process only: the index's single writer)."""
    from assetgen.store.store import Encoded, StagedTake

    if isinstance(payload, StagedTake):
        return store.publish(payload, payload.info)
    write = store.commit_encoded if isinstance(payload, Encoded) else store.commit
    spec, params = take_spec(item)
    return write(spec, item.key, payload, model_label=model_label, placeholder=placeholder, run_id=run_id,
                 params=params)


def take_spec(item) -> tuple[AssetSpec, dict]:
    """The spec a take's index row records (with the take's own seed after a re-roll) and its ``params``."""
    attempt = getattr(item, "attempt", 1)
    spec = item.spec if attempt == 1 else item.spec.replace(seed=item.seed)  # the index keeps the take's seed
    return spec, params_record(item.spec, attempt)


def record_failure(store: AssetStore, item, failure: Failure, run_id: str) -> Outcome:
    """Index ``failure`` for ``item`` (the run goes on) and return its outcome."""
    store.record_failure(item.spec, item.key, failure.stage, failure.text, run_id)
    return Outcome(item.spec.ident, item.key, failure=failure)


def record_outcome(store: AssetStore, item, result: Encoded | ProcessedAudio | Failure, *, model_label: str,
                   placeholder: bool, run_id: str) -> Outcome:
    """Commit one post-processed asset, or record why it failed; a commit error fails the asset at stage
    ``store``, except a disk problem (``store.disk``: read-only, full), which stops the run."""
    if isinstance(result, Failure):
        return record_failure(store, item, result, run_id)
    try:
        row = commit(store, item, result, model_label=model_label, placeholder=placeholder, run_id=run_id)
    except Exception as exc:  # noqa: BLE001
        from assetgen.store.disk import describe

        if describe(exc) is not None:  # read-only or full: every later write fails too, so the render stops
            raise
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


def mix_layer_paths(store: AssetStore, spec: AssetSpec) -> dict[str, str]:
    """Layer name -> ROOT-relative path of its latest delivered version (read from the index by the flow, so
    the process that mixes needs only the files)."""
    paths = {}
    for name in spec.layers:
        row = store.index.get(spec.scene, name)
        if row is None:
            raise RuntimeError(f"layer {spec.scene}/{name} has no rendered version")
        paths[name] = row["path"]
    return paths


def mix_layers_audio(files, spec: AssetSpec, layer_specs: dict[str, AssetSpec], paths: dict[str, str]) -> list:
    """Delivered audio of a mix's layers (the files at ``paths`` under ``files``' root, a ``store.root.Files``)
    with each layer's placement settings."""
    import numpy as np
    import soundfile as sf

    layers = []
    for name in spec.layers:
        data, sr = sf.read(io.BytesIO(files.read_bytes(paths[name])), dtype="float32", always_2d=True)
        layers.append((np.ascontiguousarray(data.T), int(sr), layer_specs[f"{spec.scene}/{name}"].post))
    return layers


def render_mix(files, item, layer_specs: dict[str, AssetSpec], paths: dict[str, str]) -> ProcessedAudio:
    """A scene mix from its layers' delivered versions at ``paths`` (:func:`mix_layer_paths`); float audio, the
    store encodes on commit."""
    from assetgen.dsp.chain import process_mix

    spec = item.spec
    processed = process_mix(mix_layers_audio(files, spec, layer_specs, paths), spec.post, spec.target_duration_s)
    return check_take(spec, processed)


def summary(prepared: Prepared, outcomes: Sequence[Outcome], run_id: str) -> dict:
    """Counts, failures and the new versions of a run (CLI output and Prefect artifacts). ``rendered`` counts new
    versions; ``repaired`` lists the assets whose missing or damaged latest file was restored at its version
    (their rows are among ``versions`` too)."""
    from assetgen.store.versions import qc_reasons

    counts = prepared.plan.counts() if hasattr(prepared.plan, "counts") else {}
    rows = [o.row for o in outcomes if o.ok and o.row]
    to_repair = {it.spec.ident for it in getattr(prepared.plan, "items", ()) if it.state == "repair"}
    repaired = sorted(o.ident for o in outcomes if o.ok and o.row and o.ident in to_repair)
    notes = {o.ident: list(o.notes) for o in outcomes if o.ok and o.notes}
    failed = [{"asset": o.ident, "stage": o.stage, "error": o.error} for o in outcomes if not o.ok]
    attempts = {o.ident: o.attempts for o in outcomes if o.ok}
    versions = [{**{k: r.get(k) for k in ("scene", "asset", "version", "path", "lufs", "true_peak_dbtp",
                                          "seam_score", "tempo_bpm", "tempo_source", "audio_status", "model",
                                          "qc")},
                 "qc_reasons": qc_reasons(r), "attempts": attempts.get(f"{r['scene']}/{r['asset']}", 1),
                 "notes": notes.get(f"{r['scene']}/{r['asset']}", [])} for r in rows]
    return {"run_id": run_id, "plan": counts, "rendered": len(rows) - len(repaired), "repaired": repaired,
            "failed": failed,
            "qc_failed": [{"asset": f"{v['scene']}/{v['asset']}", "reasons": v["qc_reasons"]}
                          for v in versions if v["qc"] == "fail"],
            "rerolled": sum(1 for v in versions if v["attempts"] > 1),
            "placeholder": any(m.placeholder for m in prepared.models.values()), "versions": versions}


def artifact_rows(summary: dict) -> list[dict]:
    """The new versions of ``summary`` as the Prefect table artifact shows them: one flat row each, QC verdict
    and reasons (``; ``-joined) and attempts included."""
    return [{k: ("; ".join(map(str, v)) if isinstance(v, (list, tuple)) else v) for k, v in version.items()}
            for version in summary["versions"]]


def version_lines(summary: dict, everything: bool = False) -> list[str]:
    """One line per new version of ``summary``: path, LUFS, dBTP, tempo and post-processing notes; without
    ``everything`` only the versions whose audio status is not ``ok`` (what needs a look)."""
    lines = []
    for v in summary["versions"]:
        status = v.get("audio_status") or "ok"
        if not everything and status == "ok" and v.get("qc") != "fail":
            continue
        figures = [f"{v['lufs']:.1f} LUFS" if v.get("lufs") is not None else "",
                   f"{v['true_peak_dbtp']:.1f} dBTP" if v.get("true_peak_dbtp") is not None else "",
                   f"{v['tempo_bpm']:.2f} BPM" if v.get("tempo_bpm") else "", "" if status == "ok" else status]
        if v.get("qc") == "fail":
            figures.append("QC failed: " + "; ".join(v.get("qc_reasons") or ()))
        if v.get("attempts", 1) > 1:
            figures.append(f"{v['attempts']} takes")
        notes = "; ".join(v.get("notes") or ())
        lines.append(f"{v['scene']}/{v['asset']} v{v['version']}: {', '.join(f for f in figures if f)}"
                     + (f" ({notes})" if notes else ""))
    return lines


# -- QC: re-rolls and the take each asset delivers ---------------------------------------------------------------


def _info(payload: Encoded | ProcessedAudio) -> ProcessedAudio:
    """The measurements of a take (an :class:`Encoded`'s ``info``, or the float ``ProcessedAudio`` itself)."""
    return getattr(payload, "info", payload)


def _with_info(payload: Encoded | ProcessedAudio, info: ProcessedAudio) -> Encoded | ProcessedAudio:
    return dataclasses.replace(payload, info=info) if hasattr(payload, "info") else info


def sibling_group(spec: AssetSpec) -> tuple:
    """Assets whose takes must differ (near-duplicate gate): the variants and sweep values of one manifest row."""
    return (spec.source.file, str(spec.source.row)) if spec.source is not None else (spec.ident,)


def delivered_siblings(store: AssetStore, items: Sequence) -> dict[tuple, list[tuple[str, tuple[float, ...]]]]:
    """The raw-take embeddings of the up-to-date siblings of the assets a run generates (stored with each
    delivered take), for :class:`TakeChooser`'s ``external``: a new sweep value or variant is compared with the
    delivered siblings that sort before it, as a render of the whole row from scratch would compare it. Only
    groups with a generated asset whose near-duplicate gate is on are read; a take delivered without a stored
    embedding is not compared. ``items`` are the plan's items."""
    from assetgen import qc

    todo = {sibling_group(it.spec) for it in items
            if it.state in ("new", "changed", "repair") and not it.spec.is_mix
            and "near_duplicate" in qc.gates_for(it.spec, qc.asset_kind(it.spec))}
    out: dict[tuple, list[tuple[str, tuple[float, ...]]]] = {}
    for it in items:
        group = sibling_group(it.spec)
        if it.state == "up-to-date" and group in todo and not it.spec.is_mix:
            emb = store.latest_embedding(it.spec.scene, it.spec.asset)
            if emb is not None:
                out.setdefault(group, []).append((it.spec.ident, emb))
    return out


@dataclass
class Attempt:
    """One generated take of an asset: the plan item it was generated for (its ``attempt`` and ``seed``), the
    post-processed payload with its per-take gates, the model that made it."""

    item: Any
    payload: Any  # Encoded | ProcessedAudio
    model_label: str
    placeholder: bool


@dataclass
class Settled:
    """An asset whose delivered take is decided: ``chosen`` (its payload carries the final gates and verdict)
    or ``failure``; ``attempts`` every take generated for it this run, as index rows for the attempts table."""

    item: Any  # the chosen attempt's plan item (or the first attempt's, for a failure)
    payload: Any = None
    model_label: str = ""
    placeholder: bool = False
    failure: Failure | None = None
    attempts: list = field(default_factory=list)
    rejected: list = field(default_factory=list)  # payloads of the takes not delivered (staged ones are discarded)


@dataclass
class _Asset:
    first: Any
    max_attempts: int
    attempts: list = field(default_factory=list)  # emptied once settled: the chooser keeps no payload after that
    in_flight: bool = True  # a take is being generated
    failure: Failure | None = None
    settled: bool = False
    embedding: Any = None  # the delivered take's raw-take embedding, once settled (compared with later siblings)

    @property
    def exhausted(self) -> bool:
        return len(self.attempts) >= self.max_attempts


class TakeChooser:
    """Decides which take of each generated asset is delivered, and which assets are generated again.

    A take that fails a generation-dependent gate (``qc.REROLL_GATES``) is generated again with the next
    attempt's seed (``seeds.attempt_seed``) while the asset has attempts left (``post.max_attempts``).
    Near-duplicates are judged within a sibling group (:func:`sibling_group`) in ident order: an asset's take
    is compared with the delivered takes of the siblings before it, so it is decided only once those are, and
    the decision does not depend on which batch finished first; a re-run of the same manifest chooses the same
    takes. An asset out of attempts delivers its best take (fewest failed re-roll gates, then fewest failed
    gates, then the earliest) with QC failed and its reasons.

    Use: :meth:`add` each generated take (or its failure), then take :meth:`rerolls` (plan items to generate,
    to be batched together) and :meth:`settled` (assets to commit) until both are empty.
    """

    def __init__(self, items: Sequence, external: Mapping[tuple, Sequence[tuple[str, Sequence[float]]]] | None = None):
        self._assets = {it.spec.ident: _Asset(it, it.spec.post.max_attempts or DEFAULT_MAX_ATTEMPTS) for it in items}
        self._groups: dict[tuple, list[str]] = {}
        for it in items:
            self._groups.setdefault(sibling_group(it.spec), []).append(it.spec.ident)
        for members in self._groups.values():
            members.sort()
        self._external = {g: sorted(v) for g, v in (external or {}).items()}  # in ident order, as siblings are
        self._rerolls: list = []
        self._settled: list[Settled] = []

    def add(self, item, result, model_label: str = "", placeholder: bool = False) -> None:
        """Record a generated take of ``item`` (post-processed payload with gates, or its :class:`Failure`)."""
        a = self._assets[item.spec.ident]
        a.in_flight = False
        if isinstance(result, Failure):
            a.failure = result
        else:
            a.attempts.append(Attempt(item, result, model_label, placeholder))
            if any(g.rerolls for g in _info(result).gates) and not a.exhausted:
                self._reroll(a)
        self._decide(sibling_group(item.spec))

    def rerolls(self) -> list:
        """Plan items to generate again (each the next attempt of its asset), in ident order; clears them."""
        out, self._rerolls = sorted(self._rerolls, key=lambda it: it.spec.ident), []
        return out

    def settled(self) -> list[Settled]:
        """Assets decided since the last call; clears them."""
        out, self._settled = self._settled, []
        return out

    @property
    def pending(self) -> list[str]:
        """Idents of assets not decided yet."""
        return sorted(i for i, a in self._assets.items() if not a.settled)

    def _reroll(self, a: _Asset) -> None:
        a.in_flight = True
        self._rerolls.append(dataclasses.replace(a.attempts[-1].item, attempt=a.attempts[-1].item.attempt + 1))

    def _decide(self, group: tuple) -> None:
        external = self._external.get(group, [])
        accepted, e = [], 0
        for ident in self._groups[group]:
            while e < len(external) and external[e][0] < ident:  # delivered siblings before this asset
                accepted.append(external[e])
                e += 1
            a = self._assets[ident]
            if not a.settled:
                if a.in_flight:
                    return  # later siblings are compared with this one's delivered take: wait for it
                if not a.attempts:
                    a.settled = True
                    self._settled.append(Settled(a.first, failure=a.failure))
                    continue
                last = a.attempts[-1]
                dup = self._near_duplicate(last, accepted)
                if dup is not None and not dup.passed and not a.exhausted and a.failure is None:
                    self._reroll(a)
                    return
                self._settle(a, accepted)
            if a.embedding is not None:
                accepted.append((ident, a.embedding))

    @staticmethod
    def _near_duplicate(att: Attempt, accepted: list) -> Any:
        """The near-duplicate gate of one take against the accepted siblings (None when the gate is off)."""
        from assetgen import qc

        info = _info(att.payload)
        if info.embedding is None:
            return None
        gates = qc.gates_for(att.item.spec, qc.asset_kind(att.item.spec))
        threshold = gates.get("near_duplicate", qc.DEFAULTS["near_duplicate"])
        return qc.near_duplicate_gate(info.embedding, dict(accepted), threshold)

    def _settle(self, a: _Asset, accepted: list) -> None:
        from assetgen import qc

        finals = []
        for att in a.attempts:
            info = _info(att.payload)
            dup = self._near_duplicate(att, accepted)
            gates = tuple(info.gates) + ((dup,) if dup is not None else ())
            finals.append(gates)
        # the last take when it passed the re-roll gates (a.attempts only grows past a passing take by a
        # near-duplicate, which finals now judge), else the best of all
        best = min(range(len(a.attempts)), key=lambda i: (qc.badness(finals[i]), i))
        last = len(a.attempts) - 1
        if not any(g.rerolls for g in finals[last]):
            best = last
        att = a.attempts[best]
        info = _info(att.payload)
        ran = bool(finals[best]) or info.qc != "waived"
        state, reasons = _verdict(finals[best], ran)
        payload = _with_info(att.payload, dataclasses.replace(info, gates=finals[best], qc=state, qc_reasons=reasons))
        records = [{"attempt": t.item.attempt, "seed": t.item.seed, "passed": all(g.passed for g in gates),
                    "gates": [g.as_dict() for g in gates], "chosen": i == best}
                   for i, (t, gates) in enumerate(zip(a.attempts, finals))]
        rejected = [t.payload for i, t in enumerate(a.attempts) if i != best]
        self._settled.append(Settled(att.item, payload, att.model_label, att.placeholder, None, records, rejected))
        # only the embedding stays: the chooser's memory does not grow with the takes of a long run
        a.settled, a.embedding, a.attempts = True, info.embedding, []


def record_settled(store: AssetStore, settled: Settled, run_id: str) -> Outcome:
    """Index every attempt of a decided asset and commit its chosen take (or record its failure)."""
    from assetgen.store.store import StagedTake

    item = settled.item
    for payload in settled.rejected:
        if isinstance(payload, StagedTake):
            store.discard(payload)
    if settled.attempts:
        store.index.record_attempts(run_id, item.spec.scene, item.spec.asset, item.key, settled.attempts)
    if settled.failure is not None or settled.payload is None:
        return record_failure(store, item, settled.failure or Failure("generate", "", "no take"), run_id)
    outcome = record_outcome(store, item, settled.payload, model_label=settled.model_label,
                             placeholder=settled.placeholder, run_id=run_id)
    return dataclasses.replace(outcome, attempts=max(1, len(settled.attempts)))


def reroll_batches(items: Sequence, batch_size: int) -> list:
    """Generation batches of re-roll items (``plan.make_batches``: by model and params, ``batch_size`` each)."""
    from assetgen.plan import make_batches

    return make_batches(items, batch_size)
