"""export: latest approved (or passing) take per asset, flat NFC names, manifest, copy-only-what-changed,
never over a file export did not deliver, never from a damaged source, blocked takes skipped and listed."""

from __future__ import annotations

import csv
import os
import shutil
import unicodedata
from pathlib import Path

import pytest
import soundfile as sf

from assetgen.report.approval import approval_blockers
from assetgen.report.export import (MANIFEST_COLUMNS, MANIFEST_NAME, ExportError, export_approved, export_assets,
                                    file_name)
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
    with pytest.raises(ValueError, match="forest/wind@v1: .*sha256 differs from the index"):
        export_approved(root, tmp_path / "b")
    assert not (tmp_path / "b").exists()  # refused before anything was created


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


def _flip_byte(path: Path, offset: int = -100) -> None:
    """Flip one bit inside ``path`` keeping its size and mtime (what bit rot or a careless tool does)."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_user_file_not_overwritten_without_overwrite(root: Path, tmp_path: Path) -> None:
    to = tmp_path / "engine"
    to.mkdir()
    (to / "forest_wind.wav").write_bytes(b"the user's own wind")
    with pytest.raises(ExportError, match=r"forest_wind.wav: exists and was not delivered by export \(--overwrite"):
        export_approved(root, to)
    assert sorted(os.listdir(to)) == ["forest_wind.wav"]  # nothing copied, no manifest
    assert (to / "forest_wind.wav").read_bytes() == b"the user's own wind"
    result = export_approved(root, to, overwrite=True)
    assert result.overwritten == ["forest_wind.wav"] and result.copied == ["forest_birds.wav"]
    assert sha256(to / "forest_wind.wav") == sha256(root / "forest/wind/wind_v001.wav")
    assert "1 copied, 1 overwritten, 0 unchanged" in str(result) and result.delivered == 2
    assert "overwritten (export had not delivered them): forest_wind.wav" in str(result)
    assert export_approved(root, to).unchanged == ["forest_birds.wav", "forest_wind.wav"]  # now export's own


def test_identical_unlisted_file_is_taken_over(root: Path, tmp_path: Path) -> None:
    to = tmp_path / "engine"
    to.mkdir()
    shutil.copy(root / "forest/wind/wind_v001.wav", to / "forest_wind.wav")  # e.g. a lost manifest
    result = export_approved(root, to)
    assert result.unchanged == ["forest_wind.wav"] and result.copied == ["forest_birds.wav"]


def test_reexport_compares_hashes_not_sizes(root: Path, tmp_path: Path) -> None:
    to = tmp_path / "engine"
    export_approved(root, to)
    _flip_byte(to / "forest_wind.wav")
    result = export_approved(root, to)
    assert result.copied == ["forest_wind.wav"] and result.unchanged == ["forest_birds.wav"]
    assert sha256(to / "forest_wind.wav") == sha256(root / "forest/wind/wind_v001.wav")


def test_nfc_and_nfd_names_are_one_name(tmp_path: Path) -> None:
    nfc, nfd = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    assert nfc != nfd
    root = tmp_path / "root"
    add_asset(root, "bar", nfd, tone(freq=300), status="approved")
    result = export_approved(root, tmp_path / "one")
    assert result.copied == [f"bar_{nfc}.wav"]
    assert sorted(os.listdir(tmp_path / "one")) == sorted([f"bar_{nfc}.wav", MANIFEST_NAME])
    assert [r["file"] for r in _manifest(tmp_path / "one")] == [f"bar_{nfc}.wav"]

    add_asset(root, "bar", nfc, tone(freq=500), status="approved")
    with pytest.raises(ExportError, match=r"one name in two Unicode spellings: 'bar/caf\\xe9' and 'bar/cafe\\u0301'"
                                          r"|one name in two Unicode spellings: 'bar/cafe\\u0301' and 'bar/caf\\xe9'"):
        export_approved(root, tmp_path / "two")
    assert not (tmp_path / "two").exists()


def test_lookalike_user_file_refused_even_with_overwrite(root: Path, tmp_path: Path) -> None:
    to = tmp_path / "engine"
    to.mkdir()
    (to / "Forest_Wind.wav").write_bytes(b"user")  # one file on case-insensitive disks
    for overwrite in (False, True):
        with pytest.raises(ExportError, match="forest_wind.wav: looks the same as 'Forest_Wind.wav'"):
            export_approved(root, to, overwrite=overwrite)
    assert os.listdir(to) == ["Forest_Wind.wav"]


def test_damaged_sources_refused_before_anything_is_copied(root: Path, tmp_path: Path) -> None:
    wind = root / "forest/wind/wind_v001.wav"
    _flip_byte(wind)
    add_asset(root, "ocean", "surf", tone(freq=120), status="approved")
    surf = root / "ocean/surf/surf_v001.wav"
    surf.write_bytes(surf.read_bytes()[:1000])  # truncated
    to = tmp_path / "engine"
    with pytest.raises(ExportError) as err:
        export_approved(root, to)
    assert "2 source file(s)" in str(err.value)
    assert "forest/wind@v1: forest/wind/wind_v001.wav: content changed" in str(err.value)
    assert "ocean/surf@v1: ocean/surf/surf_v001.wav: content changed" in str(err.value)
    assert not to.exists()  # birds (sorted first) was not copied either

    result = export_approved(root, to, skip_damaged=True)
    assert result.copied == ["forest_birds.wav"] and len(result.damaged) == 2
    assert [r["file"] for r in _manifest(to)] == ["forest_birds.wav"]
    assert "skipped 2 damaged source file(s)" in str(result)


def test_missing_source_is_listed(root: Path, tmp_path: Path) -> None:
    (root / "forest/wind/wind_v001.wav").unlink()
    with pytest.raises(ExportError, match="forest/wind@v1: forest/wind/wind_v001.wav: file missing"):
        export_approved(root, tmp_path / "engine")
    Index(root).set_file_state("forest", "birds", 1, "missing")  # what a render's check records
    with pytest.raises(ExportError, match="2 source file"):
        export_approved(root, tmp_path / "engine")


def test_failed_copy_leaves_a_manifest_of_what_is_there(root: Path, tmp_path: Path, monkeypatch) -> None:
    from assetgen.report import export

    to = tmp_path / "engine"
    real = export.copy_verified

    def flaky(src, dest, sha):
        if dest.name == "forest_wind.wav":
            raise OSError(28, "No space left on device")
        real(src, dest, sha)

    monkeypatch.setattr(export, "copy_verified", flaky)
    with pytest.raises(ExportError, match="stopped after 1 of 2 file.*No space left"):
        export_approved(root, to)
    assert [r["file"] for r in _manifest(to)] == ["forest_birds.wav"]
    assert sorted(os.listdir(to)) == sorted(["forest_birds.wav", MANIFEST_NAME])


def test_verification_cache_spares_hashing(root: Path, tmp_path: Path, monkeypatch) -> None:
    from assetgen.report import verify
    from assetgen.store import root as root_mod

    index = Index(root)
    rows = [r for r in index.rows() if r["status"] == "approved"]
    entries = []
    for r in rows:  # verified long after the files' last change, as a render's check leaves them
        st = (root / r["path"]).stat()
        entries.append((r["path"], r["sha256"], st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino,
                        st.st_ctime_ns + 10**10))
    index.record_verified(entries)
    hashed = []
    monkeypatch.setattr(root_mod, "sha256_file", lambda p: hashed.append(p) or sha256(p))
    assert verify.file_problems(root, rows) == {}
    assert hashed == []
    wind = root / "forest/wind/wind_v001.wav"
    _flip_byte(wind)  # rewriting changes ctime: no longer vouched for
    assert verify.file_problems(root, rows) == {"forest/wind/wind_v001.wav": verify.CHANGED}
    assert hashed == [wind]


# -- review discipline: blocked takes, --all-latest --------------------------------------------------------
def test_blocked_approved_takes_skipped_and_listed(root: Path, tmp_path: Path) -> None:
    add_asset(root, "city", "horn", tone(freq=900), placeholder=1, status="approved")
    add_asset(root, "city", "hum", tone(freq=60), audio_status="silent", status="approved")
    result = export_approved(root, tmp_path / "a")
    assert sorted(result.copied) == ["forest_birds.wav", "forest_wind.wav"]
    assert result.skipped == ["city/horn@v1: placeholder audio (tiny random-weight model)",
                              "city/hum@v1: audio status 'silent'"]
    assert "skipped 2 take(s) that need review (--include-failing" in str(result)
    every = export_approved(root, tmp_path / "b", include_failing=True)
    assert sorted(every.copied) == ["city_horn.wav", "city_hum.wav", "forest_birds.wav", "forest_wind.wav"]
    assert every.skipped == []


def test_all_latest_exports_latest_passing_take(root: Path, tmp_path: Path) -> None:
    add_asset(root, "forest", "birds", tone(freq=700), placeholder=1)  # v3 placeholder: v2 is the latest passing
    add_asset(root, "city", "hum", tone(freq=60), audio_status="silent")  # nothing passing
    result = export_assets(root, tmp_path / "a", mode="all-latest")
    files = {r["file"]: r["version"] for r in _manifest(tmp_path / "a")}
    # birds v2, wind v1, waves is rejected (its only take): left out
    assert files == {"forest_birds.wav": "2", "forest_wind.wav": "1"}
    assert sha256(tmp_path / "a/forest_birds.wav") == sha256(root / "forest/birds/birds_v002.wav")
    assert result.skipped == ["city/hum@v1: no passing take; the latest has audio status 'silent'"]
    assert "latest passing" in str(result)
    loose = export_assets(root, tmp_path / "b", mode="all-latest", include_failing=True)
    assert {r["file"]: r["version"] for r in _manifest(tmp_path / "b")} == {
        "city_hum.wav": "1", "forest_birds.wav": "3", "forest_wind.wav": "1"}
    assert loose.skipped == []
    with pytest.raises(ValueError, match="export mode 'newest'"):
        export_assets(root, tmp_path / "c", mode="newest")


def test_approval_blockers() -> None:
    assert approval_blockers({"placeholder": 0, "audio_status": "ok"}) == []
    assert approval_blockers({"placeholder": 0, "audio_status": None}) == []  # no measurement recorded
    assert approval_blockers({"placeholder": 1, "audio_status": "too-short"}) == [
        "placeholder audio (tiny random-weight model)", "audio status 'too-short'"]
    assert approval_blockers({"qc": "fail", "qc_reasons": '["silence", "clipping"]'}) == [
        "QC failed: silence, clipping"]
    assert approval_blockers({"qc": "fail", "qc_reasons": "loudness off target"}) == ["QC failed: loudness off target"]
    assert approval_blockers({"qc": "fail"}) == ["QC failed"]
    assert approval_blockers({"qc": "waived", "qc_reasons": "silence"}) == []
    assert approval_blockers({"qc": "pass"}) == []


def test_skipped_asset_keeps_its_earlier_export(root: Path, tmp_path: Path) -> None:
    to = tmp_path / "engine"
    export_approved(root, to)
    birds_v1 = sha256(to / "forest_birds.wav")
    add_asset(root, "forest", "birds", tone(freq=800), placeholder=1, status="approved")  # v3 blocked: skipped
    result = export_approved(root, to)
    assert result.kept == ["forest_birds.wav"] and result.skipped == [
        "forest/birds@v3: placeholder audio (tiny random-weight model)"]
    assert sha256(to / "forest_birds.wav") == birds_v1 and result.stale == []
    assert {r["file"]: r["version"] for r in _manifest(to)} == {"forest_birds.wav": "1", "forest_wind.wav": "1"}
    add_asset(root, "forest", "birds", tone(freq=900), status="approved")  # v4 passes: replaces export's own file
    assert export_approved(root, to).copied == ["forest_birds.wav"]
    assert sha256(to / "forest_birds.wav") == sha256(root / "forest/birds/birds_v004.wav")


def test_earlier_nfd_export_is_replaced_by_its_nfc_name(tmp_path: Path) -> None:
    nfc, nfd = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    root = tmp_path / "root"
    add_asset(root, "bar", nfd, tone(freq=300), status="approved")
    to = tmp_path / "engine"
    export_approved(root, to)
    os.rename(to / f"bar_{nfc}.wav", to / f"bar_{nfd}.wav")  # as an export that kept the NFD spelling left it
    text = (to / MANIFEST_NAME).read_text(encoding="utf-8").replace(f"bar_{nfc}.wav", f"bar_{nfd}.wav")
    (to / MANIFEST_NAME).write_text(text, encoding="utf-8")
    result = export_approved(root, to)
    assert result.copied == [f"bar_{nfc}.wav"] and result.stale == []
    assert sorted(os.listdir(to)) == sorted([f"bar_{nfc}.wav", MANIFEST_NAME])  # one file, not two lookalikes
