"""``assetgen qc``: the quality gates run again over the latest delivered version of every asset of an output
root, without generating (after a threshold change, or to audit a root).

Where each gate's input comes from:

- ``dc``, ``loudness``, ``true_peak``, ``length`` (and ``silence`` of a mix, which has no raw take): measured
  again on the delivered file with the render's own meters (:func:`assetgen.dsp.loudness.measure`, read with
  the file's ``smpl`` loop as :func:`assetgen.measure.measure_file` reads it), so a damaged file fails too;
- ``seam``: the seam score the render measured (it depends on the splice point, which the file does not keep);
- ``silence``, ``clipping``, ``near_duplicate`` of a generated take: the raw model output they judge is not
  kept, so the value the render measured on the delivered attempt (the index's attempts table) is compared
  with the threshold again; without a stored value a failure the index records stays a failure, else the
  gate is listed as not re-evaluated.

Thresholds are the row's (its ``qc`` cell and ``loudness_tolerance_lu``, as stored with the version) under
today's defaults, edited by an optional ``qc`` text given to :func:`recheck` (the manifest's ``qc`` syntax).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from assetgen import qc
from assetgen.runreport import finite
from assetgen.spec import MIX_MODEL, AssetSpec, GenParams, PostParams, ProcessedAudio
from assetgen.store.versions import qc_reasons

RAW_GATES = ("silence", "clipping", "near_duplicate")  # judged on the raw model output, which is not kept


@dataclass(frozen=True)
class Recheck:
    """One asset's latest version judged again: ``qc`` now (``pass``/``fail``/``waived``) and as stored."""

    scene: str
    asset: str
    version: int
    path: str
    stored_qc: str | None
    qc: str
    reasons: tuple[str, ...]
    gates: tuple[qc.GateResult, ...]
    not_evaluated: tuple[str, ...] = ()  # gates whose input is not kept (see the module docstring)
    error: str | None = None  # the delivered file could not be read

    @property
    def changed(self) -> bool:
        return (self.stored_qc or "") != self.qc

    def as_dict(self) -> dict:
        return {"scene": self.scene, "asset": self.asset, "version": self.version, "path": self.path,
                "stored_qc": self.stored_qc, "qc": self.qc, "changed": self.changed, "reasons": list(self.reasons),
                "gates": [finite(g.as_dict()) for g in self.gates], "not_evaluated": list(self.not_evaluated),
                "error": self.error}


def spec_of(row: Mapping[str, Any]) -> AssetSpec:
    """The asset spec an index row was rendered from (its ``params`` JSON), as far as the gates need it."""
    params = json.loads(row["params"]) if isinstance(row.get("params"), str) else (row.get("params") or {})
    post_fields = {f.name for f in dataclasses.fields(PostParams)}
    gen_fields = {f.name for f in dataclasses.fields(GenParams)}
    post = PostParams(**{k: v for k, v in params.get("post", {}).items() if k in post_fields})
    gen = GenParams(**{k: v for k, v in params.get("gen", {}).items() if k in gen_fields})
    layers = tuple(params.get("layers") or ())
    return AssetSpec(scene=row["scene"], asset=row["asset"], model=MIX_MODEL if layers else str(row.get("model")),
                     prompt=row.get("prompt") or "", seed=int(row.get("seed") or 0), gen=gen, post=post,
                     layers=layers)


def rethreshold(stored: Mapping[str, Any], threshold: float) -> qc.GateResult:
    """A raw-take gate's stored result (``GateResult.as_dict``) judged against ``threshold`` by the gate's own
    rule (``qc.silence_result`` / ``clipping_result`` / ``near_duplicate_result``). A passing near-duplicate
    result stores no reason, so its sibling is named only when the stored result failed."""
    name, value = stored["name"], stored.get("value")
    if name == "near_duplicate" and value is None:
        return qc.GateResult(name, True, None, float(threshold), qc.UNITS[name])
    if value is None:
        return qc.GateResult(name, False, None, float(threshold), qc.UNITS[name], f"{name}: no stored value")
    if name == "silence":
        return qc.silence_result(float(value), threshold)
    if name == "clipping":
        return qc.clipping_result(float(value), threshold)
    if name == "near_duplicate":
        prefix, reason = "near-duplicate of ", str(stored.get("reason") or "")
        nearest = reason[len(prefix):].split(" (distance")[0] if reason.startswith(prefix) else "a sibling"
        return qc.near_duplicate_result(nearest, float(value), threshold)
    raise ValueError(f"{name}: not a raw-take gate")


def delivered(root: Path, row: Mapping[str, Any]) -> ProcessedAudio:
    """The delivered file measured again, as the gates read a post-processed take."""
    import soundfile as sf

    from assetgen.dsp.loudness import measure
    from assetgen.store.wav import read_loop

    path = root / row["path"]
    data, sr = sf.read(path, dtype="float32", always_2d=True)
    loop = read_loop(path)
    x = data.T
    m = measure(x, sr, cyclic=loop is not None and loop == (0, x.shape[1]))
    shortfall = row.get("loudness_shortfall_lu")
    processed = ProcessedAudio(
        audio=x, sample_rate=int(sr), lufs=m.lufs, true_peak_dbtp=m.true_peak_dbtp,
        loop_start=loop[0] if loop else None, loop_end=loop[1] if loop else None,
        seam_score=row.get("seam_score"), status="loudness-unreachable" if shortfall else m.status,
        lra_lu=m.lra_lu, max_momentary_lufs=m.max_momentary_lufs, max_short_term_lufs=m.max_short_term_lufs,
        sample_peak_dbfs=m.sample_peak_dbfs, dc_offset=m.dc_offset, loudness_shortfall_lu=shortfall,
        tempo_bpm=row.get("tempo_bpm"))
    return processed


def recheck_row(root: Path, row: Mapping[str, Any], chosen_gates: list[dict] | None, override: str = "") -> Recheck:
    """:class:`Recheck` of one index row; ``chosen_gates`` are the stored gate results of its delivered attempt."""
    spec = spec_of(row)
    if override:
        # edits go on top of the row's own gates; an override that starts from none/all replaces them
        base = spec.post.qc
        fresh = override.split(",")[0].strip().lower() in ("none", "all")
        spec = spec.replace(post=dataclasses.replace(spec.post, qc=qc.canonical_qc(
            override if fresh or not base else f"{base},{override}")))
    gates = qc.gates_for(spec, qc.asset_kind(spec, "sfx"))
    head = dict(scene=row["scene"], asset=row["asset"], version=int(row["version"]), path=row["path"],
                stored_qc=row.get("qc"))
    try:
        processed = delivered(root, row)
    except Exception as exc:  # noqa: BLE001 - any unreadable file fails its check, the others go on
        reason = f"file: cannot read {row['path']} ({type(exc).__name__}: {exc})"
        return Recheck(**head, qc="fail", reasons=(reason,), gates=(), error=reason)
    stored = {g["name"]: g for g in chosen_gates or []}
    failed_before = {qc.reason_gate(r): r.split(":", 1)[-1].strip() for r in qc_reasons(row)}
    results, missing = [], []
    on_file = dict(gates)
    if not spec.is_mix:
        for name in RAW_GATES:
            if name in on_file:
                threshold = on_file.pop(name)
                if name in stored:
                    results.append(rethreshold(stored[name], threshold))
                elif name in failed_before:  # nothing to compare again, but the render said it failed
                    results.append(qc.GateResult(name, False, None, float(threshold), qc.UNITS[name],
                                                 failed_before[name]))
                else:
                    missing.append(name)
    results += qc.evaluate_take(spec, on_file, None, None, processed)
    order = {g: i for i, g in enumerate(qc.GATES)}
    results.sort(key=lambda r: order[r.name])
    state, reasons = qc.verdict(results, bool(gates))
    return Recheck(**head, qc=state, reasons=tuple(reasons), gates=tuple(results), not_evaluated=tuple(missing))


@dataclass
class Summary:
    """What ``assetgen qc`` found over a root."""

    checks: list[Recheck] = field(default_factory=list)

    @property
    def failed(self) -> list[Recheck]:
        return [c for c in self.checks if c.qc == "fail"]

    @property
    def changed(self) -> list[Recheck]:
        return [c for c in self.checks if c.changed]

    def as_dict(self) -> dict:
        counts: dict[str, int] = {}
        for c in self.checks:
            counts[c.qc] = counts.get(c.qc, 0) + 1
        return {"assets": len(self.checks), "counts": counts, "changed": len(self.changed),
                "checks": [c.as_dict() for c in self.checks]}


def recheck(root: str | Path, override: str = "", pattern: str | None = None) -> Summary:
    """The gates over the latest version of every indexed, not retired asset of ``root`` (``scene/asset``
    glob ``pattern`` to narrow), in scene/asset order. Reads only; the index is left as it is."""
    from fnmatch import fnmatchcase

    from assetgen.store.index import Index

    root = Path(root)
    index = Index(root)
    retired = index.retired()
    chosen: dict[tuple[str, str, str], list[dict]] = {}
    for a in index.attempts():
        if a.get("chosen"):
            chosen[a["scene"], a["asset"], a["content_key"]] = a["gates"]
    out = Summary()
    for row in sorted(index.rows(latest_only=True), key=lambda r: (r["scene"], r["asset"])):
        ident = f"{row['scene']}/{row['asset']}"
        if ident in retired or (pattern and not fnmatchcase(ident, pattern)):
            continue
        out.checks.append(recheck_row(root, row, chosen.get((row["scene"], row["asset"], row["content_key"])),
                                      override))
    return out

