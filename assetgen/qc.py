"""Quality gates: small pure functions over one take's audio, its measurements and its row's targets.

Each gate returns a :class:`GateResult` (name, passed, measured value, threshold, unit, reason). Which gates run on
an asset, and with which thresholds, comes from its kind's defaults (:data:`KIND_GATES`) edited by the row's
``qc`` column (:func:`parse_qc_text`). Gates that depend on what the model generated (:data:`REROLL_GATES`) make
the render generate the take again with another seed; the others describe delivery and only fail the take.

Where a gate looks:

- ``silence`` and ``clipping`` look at the raw model output (before resampling and gain): the delivered audio is
  normalised, so a near-silent take is raised and a clipped one lowered until neither shows;
- ``dc``, ``loudness``, ``true_peak``, ``seam`` and ``length`` look at the delivered audio and its measurements
  (``assetgen.spec.ProcessedAudio``);
- ``near_duplicate`` compares an :func:`embedding` of the raw take with its siblings' (the other variants and
  sweep values of the same manifest row).

numpy only at import; librosa is imported by :func:`embedding` when it runs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Mapping

import numpy as np

if TYPE_CHECKING:
    from assetgen.spec import AssetSpec, ProcessedAudio

GATES = ("silence", "clipping", "dc", "loudness", "true_peak", "seam", "length", "near_duplicate")
REROLL_GATES = frozenset(("silence", "clipping", "seam", "near_duplicate"))  # a new seed may pass these
KINDS = ("loop", "one-shot", "music", "mix")
_ALL_TAKE = ("silence", "clipping", "dc", "loudness", "true_peak", "length", "near_duplicate")
KIND_GATES: dict[str, tuple[str, ...]] = {
    "loop": (*_ALL_TAKE, "seam"),
    "one-shot": _ALL_TAKE,
    "music": _ALL_TAKE,
    # a mix is rendered from delivered layers: no model output of its own to be clipped or duplicated
    "mix": ("silence", "dc", "loudness", "true_peak", "length", "seam"),
}
UNITS = {"silence": "dBFS", "clipping": "samples", "dc": "FS", "loudness": "LU", "true_peak": "dB",
         "seam": "score", "length": "samples", "near_duplicate": "distance"}
# Default thresholds; ``loudness`` comes from the row's ``loudness_tolerance_lu`` and ``seam`` from the DSP's
# own flagging rule (``dsp.loop.SEAM_THRESHOLD``, the report's too), so they are not listed here.
DEFAULTS: dict[str, float] = {
    "silence": -60.0,  # the loudest 50 ms of the raw take must reach this RMS level (dBFS)
    "clipping": 2.0,  # longest allowed run of consecutive full-scale samples in the raw take
    "dc": 0.01,  # largest allowed |mean| of a delivered channel (full scale 1, i.e. -40 dBFS)
    "true_peak": 0.05,  # measurement slack (dB) above the row's true-peak ceiling
    "length": 0.0,  # extra samples allowed beyond the row's own tolerance (loop_tolerance_s)
    "near_duplicate": 0.09,  # takes closer than this (embedding_distance) are near-duplicates (README: QC)
}
DEFAULT_LOUDNESS_TOLERANCE_LU = 0.5
DEFAULT_MAX_ATTEMPTS = 3
FULL_SCALE = 0.9999  # |sample| at or above this is at full scale (a clamp or a saturated decoder)
SILENCE_FRAME_S = 0.05
EMBED_SR = 16_000  # embeddings are taken at one rate, so takes of models with other rates compare
N_MFCC = 20
ACTIVE_DB = 30.0  # frames (and mel bins) more than this below the loudest do not count in an embedding

_ALIASES = {
    "silent": "silence", "near_silence": "silence", "clip": "clipping", "clipped": "clipping",
    "dc_offset": "dc", "lufs": "loudness", "tp": "true_peak", "truepeak": "true_peak", "peak": "true_peak",
    "loop_seam": "seam", "duration": "length", "loop_length": "length", "near_dup": "near_duplicate",
    "dup": "near_duplicate", "duplicate": "near_duplicate",
}  # fmt: skip


@dataclass(frozen=True)
class GateResult:
    """One gate on one take: ``value`` measured against ``threshold`` (both in ``unit``); ``reason`` says why
    it failed (empty when it passed)."""

    name: str
    passed: bool
    value: float | None
    threshold: float | None
    unit: str
    reason: str = ""

    @property
    def rerolls(self) -> bool:
        """Whether this failure is worth generating the take again (a generation-dependent gate failed)."""
        return not self.passed and self.name in REROLL_GATES

    def as_dict(self) -> dict:
        return {"name": self.name, "passed": self.passed, "value": self.value, "threshold": self.threshold,
                "unit": self.unit, "reason": self.reason}


def _result(name: str, passed: bool, value: float | None, threshold: float | None, reason: str) -> GateResult:
    return GateResult(name, bool(passed), None if value is None else float(value),
                      None if threshold is None else float(threshold), UNITS[name], "" if passed else reason)


def _2d(audio: np.ndarray) -> np.ndarray:
    x = np.asarray(audio, dtype=np.float32)
    return x[None, :] if x.ndim == 1 else x


# --- the gates -----------------------------------------------------------------------------------------------


def loudest_frame_dbfs(audio: np.ndarray, sr: int, frame_s: float = SILENCE_FRAME_S) -> float:
    """RMS level (dBFS, full-scale sine = -3 dBFS) of the loudest ``frame_s`` frame of any channel; -inf for
    digital silence."""
    x = _2d(audio)
    n = max(1, round(frame_s * sr))
    frames = x.shape[1] // n
    if frames == 0:
        power = np.mean(x.astype(np.float64) ** 2, axis=1)
    else:
        power = np.mean(x[:, : frames * n].astype(np.float64).reshape(x.shape[0], frames, n) ** 2, axis=2)
    top = float(np.max(power)) if power.size else 0.0
    return 10 * math.log10(top) if top > 0 else -math.inf


def silence_gate(raw: np.ndarray, sr: int, threshold_dbfs: float = DEFAULTS["silence"]) -> GateResult:
    """Fails a take whose loudest 50 ms (raw model output, ``sr`` Hz) stays below ``threshold_dbfs`` RMS."""
    return silence_result(loudest_frame_dbfs(raw, sr), threshold_dbfs)


def silence_result(level_dbfs: float, threshold_dbfs: float) -> GateResult:
    """The silence gate on an already measured loudest-50-ms level (dBFS)."""
    value = max(level_dbfs, -200.0)  # -inf does not survive JSON
    return _result("silence", level_dbfs >= threshold_dbfs, value, threshold_dbfs,
                   f"loudest 50 ms at {level_dbfs:.1f} dBFS < {threshold_dbfs:g} dBFS (silent or near-silent take)")


def longest_full_scale_run(audio: np.ndarray, full_scale: float = FULL_SCALE) -> int:
    """Longest run of consecutive samples at or above ``full_scale`` in magnitude, over all channels."""
    best = 0
    for channel in _2d(audio):
        hot = np.abs(channel) >= full_scale
        if not hot.any():
            continue
        edges = np.diff(np.concatenate(([0], hot.view(np.int8), [0])))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        best = max(best, int((ends - starts).max()))
    return best


def clipping_gate(raw: np.ndarray, max_run: float = DEFAULTS["clipping"]) -> GateResult:
    """Fails a raw model take with a run of more than ``max_run`` consecutive full-scale samples (a clamp)."""
    return clipping_result(longest_full_scale_run(raw), max_run)


def clipping_result(run: float, max_run: float) -> GateResult:
    """The clipping gate on an already measured longest full-scale run (samples)."""
    return _result("clipping", run <= max_run, run, max_run,
                   f"{run:g} consecutive full-scale samples in the model output (> {max_run:g}: clipped)")


def dc_gate(audio: np.ndarray, threshold: float = DEFAULTS["dc"], measured: float | None = None) -> GateResult:
    """Fails delivered audio whose largest per-channel |mean| (full scale 1) exceeds ``threshold``;
    ``measured`` (``ProcessedAudio.dc_offset``) saves the pass over the samples."""
    dc = abs(measured) if measured is not None else float(np.max(np.abs(np.mean(_2d(audio), axis=1))))
    return _result("dc", dc <= threshold, dc, threshold, f"DC offset {dc:.4f} > {threshold:g} FS")


def loudness_gate(measured: "ProcessedAudio", target_lufs: float, tolerance_lu: float,
                  mode: str = "integrated") -> GateResult:
    """Fails when the loudness the row targets (``mode``: integrated, or max short-term / momentary) is more
    than ``tolerance_lu`` from ``target_lufs``. ``value`` is the deviation (LU, signed); a target that the
    limiter could not reach (status ``loudness-unreachable``) fails with its shortfall."""
    level = {"integrated": measured.lufs, "short-term": measured.max_short_term_lufs,
             "momentary": measured.max_momentary_lufs}[mode]
    label = "integrated loudness" if mode == "integrated" else f"max {mode} loudness"
    if level is None:
        return _result("loudness", False, None, tolerance_lu,
                       f"{label} not measurable ({measured.status}); target {target_lufs:g} LUFS")
    off = level - target_lufs
    if measured.status == "loudness-unreachable":
        short = measured.loudness_shortfall_lu
        return _result("loudness", abs(off) <= tolerance_lu + 1e-9, off, tolerance_lu,
                       f"loudness-unreachable: {label} {level:.1f} LUFS, {short or -off:.1f} LU short of "
                       f"{target_lufs:g} within max_limit_db")
    return _result("loudness", abs(off) <= tolerance_lu + 1e-9, off, tolerance_lu,
                   f"{label} {level:.1f} LUFS is {off:+.1f} LU off {target_lufs:g} (> ±{tolerance_lu:g} LU)")


def true_peak_gate(true_peak_dbtp: float | None, ceiling_dbtp: float,
                   margin_db: float = DEFAULTS["true_peak"]) -> GateResult:
    """Fails when the true peak (dBTP) exceeds ``ceiling_dbtp`` by more than ``margin_db``; ``value`` is the
    excess over the ceiling (dB), ``threshold`` the margin."""
    if true_peak_dbtp is None:
        return _result("true_peak", True, None, margin_db, "")  # nothing measurable: silence, another gate's
    over = true_peak_dbtp - ceiling_dbtp
    return _result("true_peak", over <= margin_db + 1e-9, over, margin_db,
                   f"true peak {true_peak_dbtp:.2f} dBTP over the {ceiling_dbtp:g} dBTP ceiling")


def seam_threshold() -> float:
    """Default loop-seam threshold: the DSP's own flagging rule, ``dsp.loop.SEAM_THRESHOLD``."""
    from assetgen.dsp.loop import SEAM_THRESHOLD  # imported here: the loop module pulls in scipy

    return float(SEAM_THRESHOLD)


def seam_gate(seam_score: float | None, threshold: float) -> GateResult:
    """Fails a loop whose seam score (``dsp.loop.seam_score``) is above ``threshold``."""
    if seam_score is None:
        return _result("seam", False, None, threshold, "loop seam not measured")
    return _result("seam", seam_score <= threshold + 1e-12, seam_score, threshold,
                   f"loop seam score {seam_score:.2f} > {threshold:g}")


def expected_length(spec: "AssetSpec", sr: int, tempo_bpm: float | None = None) -> tuple[int, int]:
    """(samples, allowed deviation in samples) the row asks for at ``sr``: whole bars at the given (or, for a
    bar loop without ``bpm``, the tracked ``tempo_bpm``) tempo, else ``round(target_duration_s * sr)`` within
    ``loop_tolerance_s`` for loops. A beat-grid length is rounded from a fitted period: 1 sample of slack."""
    from assetgen.spec import bars_seconds, seconds_bars

    post = spec.post
    if post.loop and (post.bpm or post.bars):
        bpm = post.bpm or tempo_bpm
        if bpm:
            bars = post.bars or max(1, round(seconds_bars(spec.gen.duration_s - post.crossfade_s, bpm)))
            return round(bars_seconds(bars, bpm) * sr), 0 if post.bpm else 1
    n = round(spec.target_duration_s * sr)
    tolerance = min(round(post.loop_tolerance_s * sr), n // 2) if post.loop else 0
    return n, tolerance


def length_gate(n_samples: int, expected: int, tolerance: int, extra: float = DEFAULTS["length"],
                what: str = "length") -> GateResult:
    """Fails when a length (samples) differs from ``expected`` by more than ``tolerance + extra`` samples;
    ``value`` is the signed difference."""
    off = int(n_samples) - int(expected)
    allowed = tolerance + extra
    return _result("length", abs(off) <= allowed, off, allowed,
                   f"{what} {n_samples} samples, expected {expected} (±{allowed:g})")


def embedding(raw: np.ndarray, sr: int) -> np.ndarray:
    """Spectral fingerprint of a take: mean and standard deviation over its active frames (within
    :data:`ACTIVE_DB` of the loudest) of MFCCs 1..19 of the mono mix at 16 kHz, from a log-mel spectrum
    referenced to its own maximum and floored :data:`ACTIVE_DB` below it (so neither gain nor a quiet tail's
    noise counts; c0, the level, is left out); float64 vector of 38."""
    import librosa

    mono = np.mean(_2d(raw), axis=0).astype(np.float32)
    if sr != EMBED_SR:
        mono = librosa.resample(mono, orig_sr=sr, target_sr=EMBED_SR, res_type="soxr_hq")
    if mono.size < 2048:
        mono = np.pad(mono, (0, 2048 - mono.size))
    mel = librosa.feature.melspectrogram(y=mono, sr=EMBED_SR, n_mels=40, n_fft=1024, hop_length=256)
    db = librosa.power_to_db(mel, ref=float(mel.max()) or 1.0, top_db=ACTIVE_DB)
    frame_db = librosa.power_to_db(mel.sum(axis=0), ref=float(mel.sum(axis=0).max()) or 1.0, top_db=None)
    active = frame_db > -ACTIVE_DB
    mfcc = librosa.feature.mfcc(S=db[:, active] if active.any() else db, n_mfcc=N_MFCC)[1:]
    return np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1)]).astype(np.float64)


def embedding_distance(a: Iterable[float], b: Iterable[float]) -> float:
    """Distance between two :func:`embedding` vectors: the RMS of their difference divided by the RMS of their
    mean magnitude, so it is a relative difference (0 = same spectrum statistics, ~1 = unrelated)."""
    a, b = np.asarray(list(a), np.float64), np.asarray(list(b), np.float64)
    scale = math.sqrt(float(np.mean(((np.abs(a) + np.abs(b)) / 2) ** 2)))
    return float(np.sqrt(np.mean((a - b) ** 2)) / scale) if scale > 0 else 0.0


def near_duplicate_gate(emb: Iterable[float], siblings: Mapping[str, Iterable[float]],
                        threshold: float = DEFAULTS["near_duplicate"]) -> GateResult:
    """Fails a take whose embedding is closer than ``threshold`` to any sibling's (``name -> embedding``);
    ``value`` is the smallest distance (None without siblings: passes)."""
    emb = list(emb)
    dists = {name: embedding_distance(emb, other) for name, other in siblings.items()}
    if not dists:
        return _result("near_duplicate", True, None, threshold, "")
    name = min(dists, key=lambda k: (dists[k], k))
    return near_duplicate_result(name, dists[name], threshold)


def near_duplicate_result(nearest: str, distance: float, threshold: float) -> GateResult:
    """The near-duplicate gate on an already measured smallest distance, to the sibling ``nearest``."""
    return _result("near_duplicate", distance >= threshold, distance, threshold,
                   f"near-duplicate of {nearest} (distance {distance:.3f} < {threshold:g})")


# --- which gates a row runs -------------------------------------------------------------------------------------


class QcSyntaxError(ValueError):
    """A ``qc`` cell that does not parse; the message says what was expected."""


_TOKEN = re.compile(r"^([+-]?)([a-z_\-]+)(?::(.+))?$")


def _gate_name(raw: str) -> str:
    key = raw.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in GATES:
        from assetgen.hints import did_you_mean

        raise QcSyntaxError(f"unknown gate{did_you_mean(raw.strip(), GATES)}; expected {', '.join(GATES)}")
    return key


def parse_qc_text(text: str) -> tuple[bool, dict[str, float | None], frozenset[str]]:
    """Parse a ``qc`` cell into (start from none, gate -> threshold or None for the default, removed gates).

    Syntax: items separated by ``,`` ``;`` or spaces: ``gate`` adds a gate, ``gate:NUMBER`` adds it with that
    threshold, ``-gate`` removes it; ``none`` first starts from no gates (``none`` alone waives QC), ``all``
    from every gate. Example: ``silence:-50, loudness:0.3, -near_duplicate``.
    """
    items = [t for t in re.split(r"[,;\s]+", text.strip()) if t]
    if not items:
        raise QcSyntaxError("empty qc; expected gates such as 'silence,loudness:0.3,-near_duplicate' or 'none'")
    base_none = items[0].lower() == "none"
    if items[0].lower() in ("none", "all"):
        added: dict[str, float | None] = {g: None for g in GATES} if items[0].lower() == "all" else {}
        items = items[1:]
    else:
        added = {}
    removed: set[str] = set()
    for item in items:
        m = _TOKEN.match(item.lower())
        if not m:
            raise QcSyntaxError(f"bad qc item {item!r}; expected gate, gate:NUMBER or -gate")
        sign, name, number = m.groups()
        gate = _gate_name(name)
        if sign == "-":
            if number is not None:
                raise QcSyntaxError(f"bad qc item {item!r}: a removed gate takes no threshold")
            removed.add(gate)
            added.pop(gate, None)
            continue
        value = None
        if number is not None:
            try:
                value = float(number)
            except ValueError:
                raise QcSyntaxError(f"bad threshold in {item!r}; expected a number after ':'") from None
            if not math.isfinite(value):
                raise QcSyntaxError(f"bad threshold in {item!r}; expected a finite number")
            if gate in ("clipping", "dc", "loudness", "true_peak", "seam", "length", "near_duplicate") and value < 0:
                raise QcSyntaxError(f"threshold of {gate} must be >= 0, got {number}")
        added[gate] = value
        removed.discard(gate)
    return base_none, added, frozenset(removed)


def canonical_qc(text: str) -> str:
    """The ``qc`` cell in one spelling (names resolved, items sorted) for the content key and the index."""
    if not text.strip():
        return ""
    base_none, added, removed = parse_qc_text(text)
    items = (["none"] if base_none else []) + [g if v is None else f"{g}:{v:g}" for g, v in sorted(added.items())]
    return ",".join(items + [f"-{g}" for g in sorted(removed)])


def asset_kind(spec: "AssetSpec", model_kind: str | None = None) -> str:
    """The gate defaults an asset gets (:data:`KINDS`): ``mix``, ``loop``, ``music`` (a MusicGen one-shot, by
    the resolved ``model_kind`` or the ``music`` / ``melody`` alias) or ``one-shot``."""
    if spec.is_mix:
        return "mix"
    if spec.post.loop:
        return "loop"
    kind = model_kind or ("music" if spec.model in ("music", "melody") or "musicgen" in spec.model.lower() else "sfx")
    return "music" if kind == "music" else "one-shot"


def gates_for(spec: "AssetSpec", kind: str) -> dict[str, float]:
    """Gate -> threshold for ``spec`` of ``kind``: the kind's defaults edited by the row's ``qc`` cell
    (``spec.post.qc``, canonical), ``loudness_tolerance_lu`` and the seam rule. Empty when QC is waived."""
    text = spec.post.qc
    names: dict[str, float | None] = {g: None for g in KIND_GATES[kind]}
    if text:
        base_none, added, removed = parse_qc_text(text)
        if base_none:
            names = {}
        names.update(added)
        for gate in removed:
            names.pop(gate, None)
    defaults = {**DEFAULTS, "loudness": spec.post.loudness_tolerance_lu}
    out = {}
    for gate in GATES:  # fixed order, so results list the same way everywhere
        if gate in names:
            given = names[gate]
            out[gate] = given if given is not None else (seam_threshold() if gate == "seam" else defaults[gate])
    if not spec.post.loop and "seam" in out and not spec.is_mix:
        del out["seam"]  # a one-shot has no seam
    if spec.is_mix and not spec.post.loop:
        out.pop("seam", None)
    if spec.gen.source_sha256:  # a recording (also as the index's params rebuild it): nothing generated to compare
        out.pop("near_duplicate", None)
    return out


def evaluate_take(spec: "AssetSpec", gates: Mapping[str, float], raw: np.ndarray | None, raw_sr: int | None,
                  processed: "ProcessedAudio") -> list[GateResult]:
    """Every gate in ``gates`` except ``near_duplicate`` (which needs the siblings) on one take: ``raw`` is
    the model output at ``raw_sr`` (None for a mix: the raw-take gates then look at the delivered audio)."""
    src, src_sr = (raw, raw_sr) if raw is not None else (processed.audio, processed.sample_rate)
    out = []
    for gate, threshold in gates.items():
        if gate == "silence":
            out.append(silence_gate(src, src_sr, threshold))
        elif gate == "clipping":
            out.append(clipping_gate(src, threshold))
        elif gate == "dc":
            out.append(dc_gate(processed.audio, threshold, processed.dc_offset))
        elif gate == "loudness":
            out.append(loudness_gate(processed, spec.post.loudness_lufs, threshold, spec.post.loudness_mode))
        elif gate == "true_peak":
            out.append(true_peak_gate(processed.true_peak_dbtp, spec.post.true_peak_db, threshold))
        elif gate == "seam":
            out.append(seam_gate(processed.seam_score, threshold))
        elif gate == "length":
            out.append(_length(spec, processed, threshold))
    return out


def _length(spec: "AssetSpec", processed: "ProcessedAudio", extra: float) -> GateResult:
    expected, tolerance = expected_length(spec, processed.sample_rate, processed.tempo_bpm)
    if spec.post.loop and processed.loop_start is not None and processed.loop_end is not None:
        return length_gate(processed.loop_end - processed.loop_start, expected, tolerance, extra, "loop length")
    if spec.is_mix and not spec.target_duration_s:
        return _result("length", True, 0, extra, "")  # a mix without a duration takes its layers' length
    return length_gate(_2d(processed.audio).shape[1], expected, tolerance, extra, "duration")


def verdict(results: Iterable[GateResult], gates_run: bool = True) -> tuple[str, list[str]]:
    """(qc, qc_reasons) for the index: ``pass``, ``fail`` with one ``"gate: reason"`` text per failed gate, or
    ``waived`` when the row runs no gates."""
    if not gates_run:
        return "waived", []
    failed = [f"{r.name}: {r.reason}" for r in results if not r.passed]
    return ("fail", failed) if failed else ("pass", [])


def reason_gate(reason: str) -> str:
    """The gate a ``qc_reasons`` text is about (its ``gate:`` prefix), or ``other``."""
    head = str(reason).split(":", 1)[0].strip()
    return head if head in GATES else "other"


def badness(results: Iterable[GateResult]) -> tuple[int, int]:
    """Sort key of a take among its attempts (smaller is better): failed re-roll gates, then failed gates."""
    results = list(results)
    return sum(r.rerolls for r in results), sum(not r.passed for r in results)
