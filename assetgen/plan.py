"""Content keys, the diff against the index, and generation batches.

A content key hashes everything that changes an asset's delivered audio or its QC status and nothing else:
model fingerprint, prompt (whitespace-normalised), generation params (with ``voice`` and ``rate`` for tts, the
source's sha256 and segment for recordings), seed (not for tts or recordings: they have no randomness; nor the
prompt of a recording, which is only its label), delivery settings, the quality gates and attempts (which take is
delivered, and whether it passes) and ``POSTPROCESS_VERSION``. Names, row order, category, tags and template
columns do not enter it.
A continuation's key adds its base (``continue_from``, ``prompt_s``) and the base's key, so a changed base
re-renders its continuations; a pinned base (``@vN``) adds only its name and version (a version never changes).
A melody's key adds the recording's sha256 (``melody`` a file), or the asset's name and, as for a continuation, its
key (``melody`` an asset of the run: the same dependency, phased the same way after its base).
A mix's key hashes its own delivery settings and, per layer, the layer's key plus its placement
(gain, start, fades, ducking), so a changed layer or placement changes the mix and nothing else.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Mapping, Sequence

from assetgen.dsp import POSTPROCESS_VERSION
from assetgen.gcpause import gc_paused
from assetgen.seeds import attempt_seed
from assetgen.spec import FILE_MODEL, MIX_MODEL, TTS_MODEL, AssetSpec, GenParams, GenRequest, PostParams

KEY_SCHEMA = 1  # bump if the key's recipe below changes
STATES = ("new", "changed", "up-to-date", "repair")  # repair: the latest version's file is missing or damaged
_SEP = "\x1f"
_PLACEMENT = ("gain_db", "start_s", "fade_in_s", "fade_out_s")
_DUCKING = ("duck_db", "duck_attack_s", "duck_release_s")


@lru_cache(maxsize=1 << 14)
def _gen_text(gen: GenParams) -> str:
    text = f"{gen.duration_s!r},{gen.temperature!r},{gen.top_k!r},{gen.top_p!r},{gen.cfg_coef!r}"
    # voice and rate are set on tts rows only: other models' keys stay what they were before tts existed
    if gen.source_sha256:  # a recording is its bytes and the segment read, wherever the file lies
        text += f",src={gen.source_sha256},{gen.source_start_s!r},{gen.source_end_s!r}"
    if gen.continue_from:  # continuations only: other keys stay what they were before continuations existed
        text += f",cont={gen.continue_from},{gen.prompt_s!r}"
    if gen.melody:  # melody rows only: a recording is its bytes wherever it lies, an asset its name (and base key)
        text += f",mel={gen.melody_sha256 or gen.melody}"
    return f"{text},{gen.voice},{gen.rate!r}" if gen.voice or gen.rate else text


@lru_cache(maxsize=1 << 14)
def _post_text(post: PostParams) -> str:
    """Delivery settings that shape this asset's own file (layer placement only matters to the mix)."""
    loop = f"loop,{post.bpm!r},{post.bars!r},{post.crossfade_s!r},{post.loop_tolerance_s!r}" if post.loop else "oneshot"
    fx = "".join(post.fx.split())
    return (
        f"{post.sample_rate},{post.bit_depth},{post.channels},{post.loudness_lufs!r},"
        f"{post.true_peak_db!r},{loop},{fx},{post.highpass_hz!r},{post.max_limit_db!r},{post.loudness_mode},"
        f"qc={post.qc},{post.loudness_tolerance_lu!r},{post.max_attempts}"  # gates decide status and re-rolls
    )


def _sha(*parts: object) -> str:
    return hashlib.sha256(_SEP.join(map(str, parts)).encode()).hexdigest()


def content_key(spec: AssetSpec, model_fingerprint: str, layer_keys: Sequence[str] = (), base_key: str = "") -> str:
    """Hex sha256 of what changes ``spec``'s audio.

    For a mix, ``layer_keys`` are the layers' placed keys (``placed_layer_key``) in ``spec.layers`` order
    and ``model_fingerprint`` is ignored. For a continuation of an unpinned base, or a melody taken from one,
    ``base_key`` is the base's key.
    """
    if spec.is_mix:
        return _sha(f"k{KEY_SCHEMA}p{POSTPROCESS_VERSION}", "mix", spec.gen.duration_s, _post_text(spec.post),
                    *layer_keys)
    return _generating_key(spec, model_fingerprint, _gen_text(spec.gen), _post_text(spec.post), base_key)


def _generating_key(spec: AssetSpec, model_fingerprint: str, gen_text: str, post_text: str,
                    base_key: str = "") -> str:
    """``content_key`` of a generated or recorded asset, given its ``_gen_text`` and ``_post_text``."""
    model = spec.model
    prompt = " ".join(spec.prompt.split()) if model != FILE_MODEL else ""  # a recording's prompt is a label
    seed = "" if model in (TTS_MODEL, FILE_MODEL) else str(spec.seed)  # no randomness: a seed changes nothing
    if model == FILE_MODEL and spec.post.stem_set:
        post_text += ",stem"  # a recorded stem is cut where its set's grid starts, not where its own loop search would
    parts = [f"k{KEY_SCHEMA}p{POSTPROCESS_VERSION}", model_fingerprint, prompt, seed, gen_text, post_text]
    if base_key:
        parts.append(f"base={base_key}")
    return hashlib.sha256(_SEP.join(parts).encode()).hexdigest()


def split_base(ref: str) -> tuple[str, int | None]:
    """``scene/asset[@vN]`` (``continue_from``, or ``melody`` naming an asset) -> (``scene/asset``, N or None)."""
    ident, _, version = ref.partition("@v")
    return ident, (int(version) if version else None)


def placed_layer_key(layer: AssetSpec, key: str) -> str:
    """A layer's key combined with its placement in the mix (gain, start, fades, ducking of the others)."""
    placement = [repr(getattr(layer.post, f)) for f in _PLACEMENT]
    if layer.post.duck_db:  # only a ducking layer carries these, so mixes without ducking keep their keys
        placement += [f"duck,{getattr(layer.post, f)!r}" for f in _DUCKING]
    return _sha(layer.asset, key, *placement)


@dataclass(frozen=True)
class PlanItem:
    spec: AssetSpec
    key: str
    state: str  # new | changed | up-to-date | repair (re-generated and restored at its own version)
    attempt: int = 1  # generation attempt (a re-roll after a failed QC gate is attempt 2, 3, ...)

    @property
    def seed(self) -> int:
        """The seed this attempt generates with (``seeds.attempt_seed``)."""
        return attempt_seed(self.spec.seed, self.attempt)


# PlanItem's fields in order: _make_plan builds one per spec without a frozen setattr call per field
_ITEM_FIELDS = tuple(f.name for f in dataclasses.fields(PlanItem))
assert _ITEM_FIELDS == ("spec", "key", "state", "attempt")


@dataclass
class Plan:
    items: list[PlanItem]
    orphaned: list[str] = field(default_factory=list)  # idents in the index but not in the manifests

    @property
    def pending(self) -> list[PlanItem]:
        """Items to render (new or changed), in plan order."""
        return [i for i in self.items if i.state != "up-to-date"]

    def counts(self) -> dict[str, int]:
        counts = {s: 0 for s in STATES}
        for item in self.items:
            counts[item.state] += 1
        counts["orphaned"] = len(self.orphaned)
        return counts


def make_plan(
    specs: Sequence[AssetSpec], index_latest: Mapping[str, str], fingerprints: Mapping[str, str],
    damaged: Mapping[str, str] | None = None,
) -> Plan:
    """Key every spec and compare with the index's latest key per ident ("scene/asset").

    ``fingerprints`` maps each generating spec's ``model`` to its fingerprint; a missing one is a
    ValueError naming the models (the caller resolves models before planning). ``damaged`` maps idents whose
    latest version's file is missing or no longer matches its sha256 to that version's key: an asset whose
    key is still that one is ``repair`` (its file is generated again and restored at the same version), one
    whose key changed is ``changed``; ``damaged`` wins over ``index_latest``.
    """
    with gc_paused():
        return _make_plan(specs, index_latest, fingerprints, damaged or {})


def _make_plan(specs, index_latest, fingerprints, damaged) -> Plan:
    missing = sorted({s.model for s in specs}.difference(fingerprints, (MIX_MODEL,)))
    if missing:
        raise ValueError(f"no model fingerprint for: {', '.join(missing)}")
    idents = [f"{s.scene}/{s.asset}" for s in specs]  # AssetSpec.ident
    by_ident = dict(zip(idents, specs))
    keys: dict[str, str] = {}
    mixes, continuations = [], []
    # specs of one manifest row share their GenParams / PostParams objects: their texts are built once per object
    # (by id: the specs hold them alive for the whole call), not hashed field by field for a cache per spec
    gen_texts: dict[int, str] = {}
    post_texts: dict[int, str] = {}

    def texts(spec: AssetSpec) -> tuple[str, str]:
        gen, post = spec.gen, spec.post
        gen_text = gen_texts.get(id(gen))
        if gen_text is None:
            gen_text = gen_texts[id(gen)] = _gen_text(gen)
        post_text = post_texts.get(id(post))
        if post_text is None:
            post_text = post_texts[id(post)] = _post_text(post)
        return gen_text, post_text

    for ident, spec in zip(idents, specs):
        if spec.model == MIX_MODEL:
            mixes.append((ident, spec))
        elif spec.gen.base:  # a continuation, or a melody from an asset of the run
            continuations.append((ident, spec))
        else:
            keys[ident] = _generating_key(spec, fingerprints[spec.model], *texts(spec))
    for ident, spec in _in_dependency_order(continuations):
        base, pinned = split_base(spec.gen.base)
        base_key = "" if pinned is not None else keys.get(base, "")
        keys[ident] = _generating_key(spec, fingerprints[spec.model], *texts(spec), base_key)
    for ident, spec in mixes:
        placed = []
        for name in spec.layers:
            layer_ident = f"{spec.scene}/{name}"
            placed.append(placed_layer_key(by_ident[layer_ident], keys[layer_ident]))
        keys[ident] = content_key(spec, "", placed)
    get = index_latest.get
    states = []
    for ident in idents:
        key = keys[ident]
        if ident in damaged:
            states.append("repair" if damaged[ident] == key else "changed")
            continue
        old = get(ident)
        states.append("new" if old is None else ("up-to-date" if old == key else "changed"))
    new, fields = object.__new__, _ITEM_FIELDS
    items = []
    for ident, spec, state in zip(idents, specs, states):  # PlanItem(spec, key, state), one per spec
        item = new(PlanItem)
        item.__dict__.update(zip(fields, (spec, keys[ident], state, 1)))
        items.append(item)
    orphaned = sorted({i for i in itertools.chain(index_latest, damaged) if i not in by_ident})
    return Plan(items, orphaned)


def _in_dependency_order(continuations: list[tuple[str, AssetSpec]]) -> list[tuple[str, AssetSpec]]:
    """Specs with a base (``GenParams.base``: continuations, melodies from assets) with each after its base when
    the base has one too (the manifest refuses cycles; a cycle left here raises ValueError)."""
    todo = dict(continuations)
    done: set[str] = set()
    out = []
    while todo:
        ready = [(i, s) for i, s in todo.items() if split_base(s.gen.base)[0] not in todo]
        if not ready:
            raise ValueError(f"dependency cycle among: {', '.join(sorted(todo))}")
        for ident, spec in ready:
            out.append((ident, spec))
            done.add(ident)
            del todo[ident]
    return out


def continuation_phases(items: Sequence[PlanItem]) -> list[list[PlanItem]]:
    """Pending items with a base (continuations, melodies from assets of the run) in render phases: phase 1
    depends on bases without one, phase k+1 on the takes of phase k (a base always renders before the items that
    continue it or take it as their melody)."""
    conts = {it.spec.ident: it for it in items if it.spec.gen.base}
    ordered = _in_dependency_order([(i, it.spec) for i, it in conts.items()])
    depth: dict[str, int] = {}
    for ident, spec in ordered:
        base = split_base(spec.gen.base)[0]
        depth[ident] = depth.get(base, 0) + 1
    phases: list[list[PlanItem]] = [[] for _ in range(max(depth.values(), default=0))]
    for ident in sorted(depth):
        phases[depth[ident] - 1].append(conts[ident])
    return phases


@dataclass(frozen=True)
class Batch:
    """Generation requests that one model call can serve together (same model, same GenParams with the melody
    cleared: each request brings its own; for continuations the same prompt length and rate, with
    ``params.continue_from`` cleared)."""

    model: str
    params: GenParams
    items: tuple[PlanItem, ...]
    # items with a base: (audio (channels, samples), rate Hz) per item, the continuation's prompt or the melody
    prompts: tuple = ()

    def requests(self) -> list[GenRequest]:
        out = []
        for n, item in enumerate(self.items):
            gen, kw = item.spec.gen, {}
            if gen.melody_sha256:  # a recording: the backend reads it (and checks its bytes)
                kw.update(melody_file=gen.melody, melody_sha256=gen.melody_sha256)
            if self.prompts:
                audio, sr = self.prompts[n]
                if gen.continue_from:
                    kw.update(prompt_audio=audio, prompt_sr=sr)
                else:
                    kw.update(melody_audio=audio, melody_sr=sr)
            out.append(GenRequest(item.key, item.spec.prompt, item.seed, self.params, **kw))
        return out


def _gen_sort_key(model: str, gen: GenParams) -> tuple:
    return (model, gen.duration_s, gen.temperature, gen.top_k, gen.top_p, gen.cfg_coef, gen.voice, gen.rate,
            gen.prompt_s)


def make_batches(items: Sequence[PlanItem], batch_size: int, prompts: Mapping[str, tuple] | None = None
                 ) -> list[Batch]:
    """Group generating items (mixes skipped) by (model, GenParams), at most ``batch_size`` per batch.

    Items with a base (``GenParams.base``) are batched only with ``prompts`` (ident -> (audio, rate) of their
    prompt or melody: they render after their bases, see :func:`continuation_phases`), continuations grouped also
    by prompt shape and rate (audiocraft continues a batch from prompts of one length), their bases ignored (the
    audio carries them); without ``prompts`` they are skipped. Each request carries its own melody (a recording or
    a take); melodies are grouped by length and rate: audiocraft pads a batch's melodies to the longest, which
    would change a shorter melody's chroma, so a take would depend on its batch neighbours. Deterministic: groups sorted by model and params, items within a group by
    ident. Pass ``plan.pending`` to batch only what needs rendering.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    with gc_paused():
        return _make_batches(items, batch_size, prompts)


def _make_batches(items: Sequence[PlanItem], batch_size: int, prompts: Mapping[str, tuple] | None) -> list[Batch]:
    groups: dict[tuple, list[PlanItem]] = {}
    for item in items:
        spec = item.spec
        if spec.is_mix:
            continue
        gen = dataclasses.replace(spec.gen, melody="", melody_sha256="") if spec.gen.melody else spec.gen
        if not spec.gen.base:
            inputs = ("file", _recording_length(spec.gen.melody), 0) if spec.gen.melody else ()
            groups.setdefault((spec.model, gen, inputs), []).append(item)
        elif prompts is not None and spec.ident in prompts:
            audio, sr = prompts[spec.ident]
            if spec.gen.continue_from:
                gen, inputs = dataclasses.replace(gen, continue_from=""), ("prompt", tuple(audio.shape), sr)
            else:
                inputs = ("take", (audio.shape[-1],), sr)
            groups.setdefault((spec.model, gen, inputs), []).append(item)
    batches = []
    for model, gen, inputs in sorted(groups, key=lambda g: (*_gen_sort_key(*g[:2]), g[2])):
        members = sorted(groups[model, gen, inputs], key=lambda i: i.spec.ident)
        for start in range(0, len(members), batch_size):
            chunk = tuple(members[start : start + batch_size])
            batch_prompts = tuple(prompts[i.spec.ident] for i in chunk) if inputs and inputs[0] != "file" else ()
            batches.append(Batch(model, gen, chunk, batch_prompts))
    return batches


def _recording_length(path: str) -> tuple[int, int]:
    """(frames, rate Hz) of a melody recording, as validation found it (``sources.probe``, cached per file
    version)."""
    from assetgen.sources import SourceError, probe

    try:
        rec = probe(path)
    except SourceError:  # changed or gone since validation: the backend refuses it with the reason
        return (0, 0)
    return (rec.frames, rec.sample_rate)


def plan_summary(plan: Plan, batches: Sequence[Batch]) -> dict:
    """Plain dict for ``assetgen plan`` to print: counts, batches, audio seconds to generate, mixes."""
    pending = plan.pending
    return {
        "counts": plan.counts(),
        "assets": len(plan.items),
        "orphaned": list(plan.orphaned),
        "batches": [
            {
                "model": b.model,
                "duration_s": b.params.duration_s,
                "temperature": b.params.temperature,
                "top_k": b.params.top_k,
                "top_p": b.params.top_p,
                "cfg_coef": b.params.cfg_coef,
                "size": len(b.items),
            }
            for b in batches
        ],
        # items with a base are batched once their bases are delivered: counted here, not in ``batches``
        "generate_audio_s": round(sum(b.params.duration_s * len(b.items) for b in batches)
                                  + sum(i.spec.gen.duration_s for i in pending if i.spec.gen.base), 3),
        "mixes_to_render": sum(1 for i in pending if i.spec.is_mix),
        "continuations_to_render": sum(1 for i in pending if i.spec.gen.continue_from),
        "melodies_to_render": sum(1 for i in pending if i.spec.gen.base and not i.spec.gen.continue_from),
    }
