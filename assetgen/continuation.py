"""Dependency phases of a render: rows with ``continue_from`` generate from the end of their base's
delivered take (audiocraft's ``generate_continuation``), rows whose ``melody`` names an asset of the run take that
asset's whole delivered take as their melody (``generate_with_chroma``); both after the base is delivered.

The delivered take of a continuation is only the new part (``duration_s`` long, as any row); the prompt is the
last ``prompt_s`` seconds of the base's delivered WAV: its latest version, which this run delivered first when the
base was new or changed, or version N for ``scene/asset@vN``. A base that failed in this run, or a delivered take
that is not the base's current version, fails its continuations (a later run renders them once the base is
delivered).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from assetgen.plan import split_base
from assetgen.render import Failure


@dataclass
class Phase:
    """One phase's items ready to generate, their prompts or melodies (ident -> (audio, rate Hz)), and the ones
    that cannot run, each with its failure."""

    ready: list = field(default_factory=list)
    prompts: dict = field(default_factory=dict)
    blocked: list = field(default_factory=list)  # (PlanItem, Failure)


def prepare_phase(store, items: Sequence, failed: set[str], plan_keys: dict[str, str]) -> Phase:
    """Prompts of ``items`` (plan items of one phase) read from ``store``; ``failed``: idents that failed in this
    run; ``plan_keys``: ident -> content key the plan expects of each asset."""
    phase = Phase()
    for item in items:
        gen = item.spec.gen
        base, version = split_base(gen.base)
        if base in failed:
            phase.blocked.append((item, Failure("generate", "", f"its base {base} failed in this run")))
            continue
        try:  # a melody is the whole take
            phase.prompts[item.spec.ident] = prompt_audio(store, base, version,
                                                          gen.prompt_s if gen.continue_from else None,
                                                          None if version else plan_keys.get(base))
        except LookupError as exc:
            phase.blocked.append((item, Failure("generate", "", str(exc))))
            continue
        phase.ready.append(item)
    return phase


def prompt_audio(store, base: str, version: int | None, prompt_s: float | None,
                 expected_key: str | None = None) -> tuple[np.ndarray, int]:
    """The last ``prompt_s`` seconds (the whole take when shorter or None) of ``base``'s delivered take (version
    ``version``, or the latest), float32 ``(channels, samples)`` and its rate (Hz). LookupError when there is no
    such version, or the latest is not the one with ``expected_key``."""
    import soundfile as sf

    scene, _, asset = base.partition("/")
    row = store.index.get(scene, asset, version)
    if row is None:
        raise LookupError(f"{base} has no delivered version" + (f" {version}" if version else ""))
    if expected_key is not None and row["content_key"] != expected_key:
        raise LookupError(f"{base}'s latest version {row['version']} is not its current take (it was not "
                          "delivered in this run)")
    try:
        data, sr = sf.read(store.file_source(row["path"]), dtype="float32", always_2d=True)
    except (OSError, RuntimeError) as exc:  # soundfile raises LibsndfileError (a RuntimeError) on bad files
        raise LookupError(f"cannot read {base} v{row['version']}: {exc}") from None
    n = len(data) if prompt_s is None else min(len(data), max(1, round(prompt_s * sr)))
    return np.ascontiguousarray(data[len(data) - n:].T), int(sr)
