"""export_approved: latest approved take per asset, flat names, manifest, copy-only-what-changed."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
import soundfile as sf

from assetgen.report.export import MANIFEST_COLUMNS, MANIFEST_NAME, export_approved, file_name
from assetgen.store.index import Index
from tests.test_report_helpers import add_asset, sha256, tone


def _manifest(to: Path) -> list[dict]:
    with open(to / MANIFEST_NAME, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    add_asset(root, "forest", "birds", tone(freq=300), status="approved")  # v1 approved
    add_asset(root, "forest", "birds", tone(freq=500))  # v2 only rendered: v1 must be exported
    add_asset(root, "forest", "wind", tone(freq=200), loop_start=100, loop_end=30000, status="approved")
    add_asset(root, "ocean", "waves", tone(freq=100), status="rejected")  # never approved: not exported
    return root


def test_exports_latest_approved_with_manifest(root: Path, tmp_path: Path) -> None:
    to = tmp_path / "engine"
    result = export_approved(root, to)
    assert sorted(result.copied) == ["forest_birds.wav", "forest_wind.wav"]
    assert sorted(p.name for p in to.iterdir()) == sorted(["forest_birds.wav", "forest_wind.wav", MANIFEST_NAME])
    birds_v1 = root / "forest/birds/birds_v001.wav"
    assert sha256(to / "forest_birds.wav") == sha256(birds_v1)  # v1 (approved), not v2
    rows = {r["file"]: r for r in _manifest(to)}
    assert list(_manifest(to)[0]) == list(MANIFEST_COLUMNS)
    assert rows["forest_birds.wav"]["version"] == "1"
    assert rows["forest_birds.wav"]["sha256"] == sha256(birds_v1)
    assert (rows["forest_wind.wav"]["loop_start"], rows["forest_wind.wav"]["loop_end"]) == ("100", "30000")
    assert rows["forest_wind.wav"]["content_key"] == Index(root).get("forest", "wind")["content_key"]
    assert not list(to.glob(".*.tmp"))  # no temp files left behind
    assert "2 copied" in str(result)


def test_rerun_copies_only_what_changed(root: Path, tmp_path: Path) -> None:
    to = tmp_path / "engine"
    export_approved(root, to)
    wind_mtime = (to / "forest_wind.wav").stat().st_mtime_ns
    again = export_approved(root, to)
    assert again.copied == [] and sorted(again.unchanged) == ["forest_birds.wav", "forest_wind.wav"]

    Index(root).set_status("forest", "birds", 2, "approved")  # a newer take gets approved
    third = export_approved(root, to)
    assert third.copied == ["forest_birds.wav"] and third.unchanged == ["forest_wind.wav"]
    assert sha256(to / "forest_birds.wav") == sha256(root / "forest/birds/birds_v002.wav")
    assert (to / "forest_wind.wav").stat().st_mtime_ns == wind_mtime
    assert {r["file"]: r["version"] for r in _manifest(to)}["forest_birds.wav"] == "2"

    (to / "forest_wind.wav").unlink()  # deleted in the engine folder: copied again
    assert export_approved(root, to).copied == ["forest_wind.wav"]


def test_pattern_and_stale_files(root: Path, tmp_path: Path) -> None:
    to = tmp_path / "engine"
    export_approved(root, to)
    result = export_approved(root, to, pattern="{category}/{asset}.wav".replace("/", "-"))
    assert sorted(result.copied) == ["ambience-birds.wav", "ambience-wind.wav"]
    assert sorted(result.stale) == ["forest_birds.wav", "forest_wind.wav"]
    assert (to / "forest_birds.wav").exists()  # the user's folder: never deleted
    versioned = export_approved(root, tmp_path / "v", pattern="{scene}_{asset}_v{version:03d}.wav")
    assert sorted(versioned.copied) == ["forest_birds_v001.wav", "forest_wind_v001.wav"]


@pytest.mark.parametrize("pattern, message", [
    ("{scene}/{asset}.wav", "plain file name"),
    ("{asset}.ogg", "ending in .wav"),
    ("{scene}_{nope}.wav", "fields are"),
    ("../{asset}.wav", "plain file name"),
])
def test_bad_patterns_are_user_errors(root: Path, tmp_path: Path, pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        export_approved(root, tmp_path / "engine", pattern=pattern)
    assert not (tmp_path / "engine" / MANIFEST_NAME).exists()


def test_name_clash_and_changed_source(root: Path, tmp_path: Path) -> None:
    add_asset(root, "ocean", "wind", tone(freq=250), status="approved")
    with pytest.raises(ValueError, match="names both forest/wind and ocean/wind"):
        export_approved(root, tmp_path / "a", pattern="{asset}.wav")
    src = root / "forest/wind/wind_v001.wav"
    data, sr = sf.read(src)
    sf.write(src, data * 0.5, sr, subtype="PCM_24")  # tampered after render
    with pytest.raises(ValueError, match="does not match the index sha256"):
        export_approved(root, tmp_path / "b")
    assert not (tmp_path / "b" / "forest_wind.wav").exists()
    assert not [p for p in (tmp_path / "b").iterdir() if ".tmp" in p.name]  # no temp left (store.atomic names)


def test_file_name_fields() -> None:
    row = {"scene": "city", "asset": "horn", "version": 7, "category": "sfx"}
    assert file_name("{scene}_{asset}.wav", row) == "city_horn.wav"
    assert file_name("{category}_{asset}_{version}.WAV", row) == "sfx_horn_7.WAV"


def test_nothing_approved_writes_empty_manifest(tmp_path: Path) -> None:
    root = tmp_path / "root"
    add_asset(root, "a", "b")
    result = export_approved(root, tmp_path / "engine")
    assert result.delivered == 0 and _manifest(tmp_path / "engine") == []
    assert os.listdir(tmp_path / "engine") == [MANIFEST_NAME]
