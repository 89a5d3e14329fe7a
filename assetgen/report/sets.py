"""Sets of assets the review page shows together: the variants of one manifest row (variation sets).

A variation set is the assets ``NAME__v01``, ``NAME__v02``... of one scene (the names ``variants`` expands to),
shown with their players side by side and the pairwise distance of their delivered takes under the QC
near-duplicate measure (``qc.embedding`` / ``qc.embedding_distance``; the gate itself compares the raw model
takes at render time, the page the delivered files, which are what a reviewer hears). Embeddings are cached per
content key under ROOT/report/media/, like the other media.
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

    kind: str  # "variants"
    scene: str
    name: str
    members: list = field(default_factory=list)
    distances: list = field(default_factory=list)
    threshold: float = 0.0
    notes: list[str] = field(default_factory=list)

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
    return variation_sets(root, cards)


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
