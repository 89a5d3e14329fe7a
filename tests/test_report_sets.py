"""Report sets: the variants of one row grouped with players side by side and their pairwise distances."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from assetgen.report import build_report
from tests.test_report_helpers import add_asset, texture, tone


class Sets(HTMLParser):
    """The page's set blocks: id -> {"audio": [srcs], "cells": [distance cell texts], "near": [near cells]}."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.sets: dict[str, dict] = {}
        self._set = None
        self._cell = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "div" and "set" in (a.get("class") or "").split():
            self._set = self.sets.setdefault(a["id"], {"audio": [], "cells": [], "near": []})
        elif self._set is not None and tag == "audio":
            self._set["audio"].append(a["src"])
        elif self._set is not None and tag == "td":
            self._cell = "near" in (a.get("class") or "")

    def handle_data(self, data):
        if self._cell is not None and data.strip():
            self._set["cells"].append(data.strip())
            if self._cell:
                self._set["near"].append(data.strip())
            self._cell = None

    def handle_endtag(self, tag):
        if tag == "section":
            self._set = None


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "out"
    add_asset(root, "town", "bell__v01", texture(seed=1))
    add_asset(root, "town", "bell__v02", texture(seed=1) * 0.5)  # the same take, quieter: distance 0
    add_asset(root, "town", "bell__v03", tone(freq=300))
    add_asset(root, "town", "horn", tone(freq=500))  # not a variant
    add_asset(root, "town", "lone__v01", tone(freq=700))  # a single variant left: no set
    return root


def test_variants_are_grouped_with_players_and_pairwise_distances(root):
    from assetgen import qc
    from assetgen.report.media import read_audio

    html = (build_report(root, workers=1)).read_text()
    sets = Sets(html).sets
    assert list(sets) == ["set-variants-town-bell"]
    bell = sets["set-variants-town-bell"]
    assert bell["audio"] == [f"../town/bell__v0{k}/bell__v0{k}_v001.wav" for k in (1, 2, 3)]
    emb = [qc.embedding(*read_audio(root / f"town/bell__v0{k}/bell__v0{k}_v001.wav")) for k in (1, 2, 3)]
    expected = [[qc.embedding_distance(a, b) for b in emb] for a in emb]
    cells = [c for c in bell["cells"]]
    assert len(cells) == 9 and cells[0] == cells[4] == cells[8] == "—"
    assert float(cells[1]) == pytest.approx(expected[0][1], abs=5e-4) and float(cells[1]) < 0.01
    assert float(cells[2]) == pytest.approx(expected[0][2], abs=5e-4) and float(cells[2]) > 0.3
    assert float(cells[5]) == pytest.approx(expected[1][2], abs=5e-4)
    assert bell["near"] == [cells[1], cells[3]]  # v01-v02 below the near-duplicate threshold, both ways
    cached = sorted(p.name for p in (root / "report" / "media").glob("*.emb.json"))
    assert len(cached) == 3


def test_distances_come_from_the_cache_and_a_missing_take_is_noted(root):
    build_report(root, workers=1)
    (root / "town/bell__v03/bell__v03_v001.wav").unlink()
    html = build_report(root, workers=1).read_text()
    bell = Sets(html).sets["set-variants-town-bell"]
    assert len(bell["audio"]) == 2  # the missing take has no player
    assert bell["cells"].count("?") == 4  # its row and column
    assert "bell__v03: file missing or unreadable, no distances" in html
