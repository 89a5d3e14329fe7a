"""Sets of assets the review page shows together: the variants of one manifest row (variation sets) and the
stems of one ``stem_set`` (stem sets).

A variation set is the assets ``NAME__v01``, ``NAME__v02``... of one scene (the names ``variants`` expands to),
shown with their players side by side and the pairwise distance of their delivered takes under the QC
near-duplicate measure (``qc.embedding`` / ``qc.embedding_distance``; the gate itself compares the raw model
takes at render time, the page the delivered files, which are what a reviewer hears). Embeddings are cached per
content key under ROOT/report/media/, like the other media.

A stem set is the assets of one scene whose row named the same ``stem_set`` (the index's ``params``), shown
with a player per stem, a mixed preview (the stems summed, cached by the stems' content keys) and the set check
of ``assetgen.stems`` (lengths, loop points, seam of the sum).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from assetgen.store.atomic import atomic_write

if TYPE_CHECKING:
    from assetgen.report.build import AssetCard

VARIANT_NAME = re.compile(r"^(?P<base>.+)__v(?P<k>\d{2,})$")  # manifest._expand_row names variants so


@dataclass
class TakeSet:
    """Assets shown as one group: ``members`` (cards, in name order) and, for variants, ``distances[i][j]``
    between members i and j (None where a take could not be read)."""

    kind: str  # "variants" | "stems"
    scene: str
    name: str
    members: list = field(default_factory=list)
    distances: list = field(default_factory=list)
    threshold: float = 0.0
    notes: list[str] = field(default_factory=list)
    preview: str | None = None  # stems: ROOT/report-relative URL of the mixed preview WAV
    check: object = None  # stems: assetgen.stems.StemSetCheck (None when a stem could not be read)

    @property
    def ident(self) -> str:
        return f"{self.scene}/{self.name}"

    @property
    def closest(self) -> float | None:
        """Smallest pairwise distance of the set (None without two readable takes)."""
        values = [d for i, row in enumerate(self.distances) for d in row[i + 1:] if d is not None]
        return min(values) if values else None


def embedding_of(root: Path, card: "AssetCard") -> list[float] | None:
    """``qc.embedding`` of the card's current delivered take, cached as ROOT/report/media/<content key>.emb.json;
    None when the file is missing, damaged or unreadable."""
    from assetgen import qc
    from assetgen.report.build import MEDIA_DIR, REPORT_DIR, safe_key, wav_path
    from assetgen.report.media import read_audio

    wav = wav_path(root, card.row.get("path"))
    if wav is None or card.current.src is None or card.current.damaged:
        return None
    cache = root / REPORT_DIR / MEDIA_DIR / f"{safe_key(card.row.get('content_key') or '')}.emb.json"
    if cache.is_file():
        try:
            return [float(v) for v in json.loads(cache.read_text())]
        except (ValueError, TypeError):
            pass  # rewritten below
    try:
        audio, sr = read_audio(wav)
    except Exception:  # noqa: BLE001 - an unreadable take gets no distances, the page still builds
        return None
    values = [float(v) for v in qc.embedding(audio, sr)]
    atomic_write(cache, json.dumps(values).encode())
    return values


def take_sets(root: Path, cards: Sequence["AssetCard"]) -> list[TakeSet]:
    """Every set the page shows."""
    return variation_sets(root, cards) + stem_sets(root, cards)


def _stem_set_name(card: "AssetCard") -> str:
    try:
        params = json.loads(card.row.get("params") or "{}")
    except (TypeError, ValueError):
        return ""
    post = params.get("post") if isinstance(params, dict) else None
    return str(post.get("stem_set") or "") if isinstance(post, dict) else ""


def stem_sets(root: Path, cards: Sequence["AssetCard"]) -> list[TakeSet]:
    """One :class:`TakeSet` per scene and ``stem_set`` name, with its set check and mixed preview."""
    import hashlib

    import soundfile as sf

    from assetgen.report.build import MEDIA_DIR, REPORT_DIR, wav_path
    from assetgen.report.media import read_audio
    from assetgen.stems import Stem, check_stem_set, preview

    groups: dict[tuple[str, str], list] = {}
    for card in cards:
        name = _stem_set_name(card)
        if name and card.lifecycle != "retired":  # a retired stem is out of delivery, so out of its set
            groups.setdefault((card.scene, name), []).append(card)
    sets = []
    for (scene, name), members in sorted(groups.items()):
        members = sorted(members, key=lambda c: c.asset)
        found, notes = {}, []
        for card in members:
            wav = wav_path(root, card.row.get("path"))
            if wav is None or card.current.src is None or card.current.damaged:
                notes.append(f"{card.asset}: file missing or damaged, the set is not checked")
                continue
            try:
                audio, sr = read_audio(wav)
            except Exception as exc:  # noqa: BLE001 - one unreadable stem leaves its set unchecked, not the page
                notes.append(f"{card.asset}: cannot read its file ({type(exc).__name__}), the set is not checked")
                continue
            row = card.row
            loop = (int(row["loop_start"]), int(row["loop_end"])) if row.get("loop_end") is not None else None
            found[card.asset] = Stem(audio, sr, loop)
        take = TakeSet("stems", scene, name, members, notes=notes)
        if len(found) == len(members):
            take.check = check_stem_set(found)
            keys = "".join(sorted(c.row.get("content_key") or "" for c in members))
            rel = f"{MEDIA_DIR}/{hashlib.sha256(keys.encode()).hexdigest()[:32]}_stems.wav"
            dest = root / REPORT_DIR / rel
            if not dest.exists() and len(set(take.check.lengths.values())) == 1:
                mixed = preview(found)
                rate = next(iter(found.values())).sample_rate
                atomic_write(dest, lambda tmp: sf.write(tmp, mixed.T, rate, subtype="PCM_16", format="WAV"))
            take.preview = rel if dest.exists() else None
        sets.append(take)
    return sets


def variation_sets(root: Path, cards: Sequence["AssetCard"]) -> list[TakeSet]:
    """One :class:`TakeSet` per scene and variant base name with two or more variants, in scene/name order."""
    from assetgen import qc

    groups: dict[tuple[str, str], list] = {}
    for card in cards:
        match = VARIANT_NAME.match(card.asset)
        if match:
            groups.setdefault((card.scene, match["base"]), []).append(card)
    sets = []
    for (scene, base), members in sorted(groups.items()):
        if len(members) < 2:
            continue
        members = sorted(members, key=lambda c: c.asset)
        embeddings = [embedding_of(root, c) for c in members]
        distances = [[None if a is None or b is None else (0.0 if i == j else qc.embedding_distance(a, b))
                      for j, b in enumerate(embeddings)] for i, a in enumerate(embeddings)]
        notes = [f"{c.asset}: file missing or unreadable, no distances" for c, e in zip(members, embeddings)
                 if e is None]
        sets.append(TakeSet("variants", scene, base, members, distances, qc.DEFAULTS["near_duplicate"], notes))
    return sets
