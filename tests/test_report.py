"""Report page: checks, media (cached, inside ROOT), loop audition, page structure and relative srcs."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
import soundfile as sf

from assetgen.report import build_report
from assetgen.report import media
from assetgen.report.build import collect, ensure_media, render_page
from assetgen.report.checks import loudness_check, row_checks, seam_check, true_peak_check
from assetgen.store.index import Index
from tests.test_report_helpers import add_asset, tone


class Tags(HTMLParser):
    """Every start tag of a page as (tag, attrs dict)."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def find(self, tag: str, **attrs) -> list[dict]:
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())]


def tree(path: Path) -> dict[str, int]:
    return {str(p.relative_to(path)): p.stat().st_mtime_ns for p in path.rglob("*") if p.is_file()}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "out"
    add_asset(root, "forest", "birds", tone(freq=300))
    add_asset(root, "forest", "birds", tone(freq=600), lufs=-26.5, status="approved")  # fails loudness
    add_asset(root, "forest", "wind", tone(seconds=4, freq=150), loop_start=8_000, loop_end=56_000,
              seam_score=0.02, model="tiny/sfx", placeholder=1, category="loops")
    add_asset(root, "city", "horn", tone(seconds=1, freq=900), true_peak_dbtp=-0.9)  # peak over -1 + 0.05
    Index(root).record_failure("run2", "city", "siren", None, "generate", "model exploded")
    return root


# -- checks ------------------------------------------------------------------------------------------
def test_loudness_window_is_the_qc_gates_tolerance() -> None:
    """The page judges loudness as the QC gate does: +-0.5 LU unless the row's loudness_tolerance_lu says."""
    assert loudness_check(-22.5, -23.0).state == "pass"
    assert loudness_check(-23.5, -23.0).state == "pass"
    assert loudness_check(-23.55, -23.0).state == "fail"
    assert loudness_check(-22.0, -23.0, tolerance=1.0).state == "pass"
    assert loudness_check(None, -23.0).state == "fail"  # target but nothing measurable (silence)
    assert loudness_check(-20.0, None).state == "n/a"


def test_row_checks_read_the_rows_tolerance_and_loudness_mode() -> None:
    import json

    from assetgen.report.checks import row_checks

    params = json.dumps({"post": {"loudness_tolerance_lu": 2.0, "loudness_mode": "short-term"}})
    row = {"lufs": -30.0, "max_short_term_lufs": -17.0, "loudness_target": -16.0, "params": params}
    [loud, _] = row_checks(row, 1.0)
    assert loud.state == "pass" and loud.target == "-16.0 ± 2 LU" and "max short-term" in loud.value
    [strict, _] = row_checks({**row, "params": "{}"}, 1.0)  # integrated, +-0.5 LU
    assert strict.state == "fail" and strict.value == "-30.0 LUFS"


def test_true_peak_ceiling_with_margin() -> None:
    assert true_peak_check(-0.96, -1.0).state == "pass"
    assert true_peak_check(-0.94, -1.0).state == "fail"
    assert true_peak_check(None, -1.0).state == "n/a"


def test_seam_check_only_for_loops() -> None:
    assert seam_check(0.05, 0.1, is_loop=True).state == "pass"
    assert seam_check(0.2, 0.1, is_loop=True).state == "fail"
    assert seam_check(0.2, 0.1, is_loop=False) is None
    names = [c.name for c in row_checks({"loop_start": 0, "loop_end": 10, "seam_score": 0.5}, 0.1)]
    assert names == ["Loudness", "True peak", "Loop seam"]


# -- media -------------------------------------------------------------------------------------------
def test_seam_clip_plays_loop_end_then_loop_start() -> None:
    sr = 1000
    ramp = np.arange(10_000, dtype=np.float32)[None, :].repeat(2, axis=0)
    clip = media.seam_clip(ramp, sr, loop_start=2_000, loop_end=8_000, side_s=1.5)
    assert clip.shape == (2, 3_000)
    assert np.array_equal(clip[0, :1500], np.arange(6_500, 8_000))  # last 1.5 s of the loop region
    assert np.array_equal(clip[0, 1500:], np.arange(2_000, 3_500))  # then its first 1.5 s
    short = media.seam_clip(ramp, sr, loop_start=100, loop_end=1_100, side_s=1.5)
    assert np.array_equal(short[0], np.r_[np.arange(600, 1_100), np.arange(100, 600)])  # halves of a 1 s loop
    with pytest.raises(ValueError, match="empty"):
        media.seam_clip(ramp, sr, 5_000, 5_000)


def test_envelope_keeps_peaks() -> None:
    x = np.zeros(1000, np.float32)
    x[123], x[777] = 0.9, -0.7
    lo, hi = media.envelope(x, columns=10)
    assert hi[1] == pytest.approx(0.9) and lo[7] == pytest.approx(-0.7) and len(hi) == 10


def test_png_is_small_and_drawn(tmp_path: Path) -> None:
    dest = tmp_path / "x.png"
    media.render_png(tone(seconds=10, sr=48_000), 48_000, dest)
    from PIL import Image

    with Image.open(dest) as im:
        assert im.size == (480, 160)
        assert len(np.unique(np.asarray(im.convert("RGB")).reshape(-1, 3), axis=0)) > 4  # not a blank image
    assert dest.stat().st_size < 60_000


# -- page --------------------------------------------------------------------------------------------
def test_report_page_structure(root: Path) -> None:
    page = build_report(root, workers=1)
    assert page == root / "report" / "index.html"
    html = page.read_text()
    tags = Tags(html)
    audio = tags.find("audio")
    # birds: current + previous; wind: current + seam audition; horn: current
    assert len(audio) == 5
    assert all(a["preload"] == "none" for a in audio)
    imgs = tags.find("img")
    assert len(imgs) == 3 and all(a["loading"] == "lazy" for a in imgs)
    for src in [a["src"] for a in audio + imgs]:
        assert not src.startswith(("/", "http", "file:")), src
        target = (page.parent / unquote(src)).resolve()
        assert target.is_file() and target.is_relative_to(root.resolve()), src
    assert {a["src"] for a in audio} >= {"../forest/birds/birds_v002.wav", "../forest/birds/birds_v001.wav"}
    seam_src = [a["src"] for a in audio if a["src"].endswith("_seam.wav")]
    assert len(seam_src) == 1
    data, sr = sf.read(page.parent / seam_src[0])
    assert sr == 16_000 and data.shape == (48_000, 2)  # 1.5 s + 1.5 s of the 3 s loop region
    # no external resources: works offline / from disk
    assert all("src" not in a for a in tags.find("script")) and not tags.find("link")
    assert "http://" not in html and "https://" not in html


def test_report_marks_placeholder_failures_and_status(root: Path) -> None:
    html = build_report(root, workers=1).read_text()
    tags = Tags(html)
    assert 'id="placeholder-banner"' in html
    cards = {a["data-asset"]: a for a in tags.find("article")}
    assert set(cards) == {"birds", "wind", "horn"}
    assert cards["birds"]["data-failing"] == "1" and cards["birds"]["data-status"] == "approved"
    assert cards["horn"]["data-failing"] == "1" and cards["wind"]["data-failing"] == "0"
    assert cards["wind"]["data-category"] == "loops"
    assert html.count('class="badge placeholder"') == 1
    assert "city/siren" in html and "model exploded" in html  # failed before any version landed
    # static page: buttons shown disabled with a hint
    buttons = tags.find("button")
    assert len(buttons) == 6 and all("disabled" in b for b in buttons)
    assert 'id="readonly-hint"' in html


def test_no_banner_without_placeholders(tmp_path: Path) -> None:
    root = tmp_path / "out"
    add_asset(root, "a", "b")
    html = build_report(root, workers=1).read_text()
    assert "placeholder-banner" not in html and 'class="badge placeholder"' not in html


def test_media_cached_per_version_and_nothing_outside_root(root: Path, tmp_path: Path) -> None:
    before_outside = {k: v for k, v in tree(tmp_path).items() if not k.startswith("out/")}
    build_report(root, workers=1)
    made = tree(root / "report" / "media")
    assert len(made) == 4  # 3 PNGs + 1 loop audition
    assert {k: v for k, v in tree(tmp_path).items() if not k.startswith("out/")} == before_outside
    build_report(root, workers=1)
    assert tree(root / "report" / "media") == made  # cached: not rewritten
    add_asset(root, "city", "horn", tone(seconds=1, freq=450))  # new version -> one new image only
    build_report(root, workers=1)
    again = tree(root / "report" / "media")
    assert len(again) == 5 and {k: again[k] for k in made} == made


def test_missing_and_broken_files_do_not_break_the_report(root: Path) -> None:
    (root / "city/horn/horn_v001.wav").unlink()
    (root / "forest/birds/birds_v002.wav").write_bytes(b"not a wav")
    html = build_report(root, workers=1).read_text()
    cards, _ = collect(root)
    by = {c.asset: c for c in cards}
    assert by["horn"].current.src is None and by["horn"].failing
    assert "audio file missing" in html
    assert by["birds"].current.damaged and by["birds"].failing  # not the indexed bytes: marked, no media made
    assert "v2: file damaged" in html
    assert len(Tags(html).find("img")) == 1  # only wind still has an image


def test_media_in_a_process_pool(root: Path, monkeypatch) -> None:
    from assetgen.report import build

    monkeypatch.setattr(build, "POOL_MIN_JOBS", 1)
    cards, _ = collect(root)
    assert ensure_media(root, cards, workers=2) == 4
    assert len(list((root / "report" / "media").iterdir())) == 4


@pytest.fixture
def fast_tmp(tmp_path: Path):
    """A scratch dir in RAM when /dev/shm exists (1 000 index commits each fsync on disk)."""
    if not os.path.isdir("/dev/shm"):
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(prefix="assetgen-report-", dir="/dev/shm"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.slow
def test_thousand_assets_page_is_light(fast_tmp: Path) -> None:
    root = fast_tmp / "big"
    audio = tone(seconds=0.05, sr=8_000, channels=1)
    for i in range(1000):
        add_asset(root, f"scene{i % 10}", f"asset{i:04d}", audio, sr=8_000)
    t0 = time.monotonic()
    cards, orphans = collect(root)
    html = render_page(root, cards, orphans)
    elapsed = time.monotonic() - t0
    tags = Tags(html)
    assert len(tags.find("article")) == 1000
    assert all(a["preload"] == "none" for a in tags.find("audio"))
    assert len(html) < 4_000 * 1000  # < 4 kB per asset
    assert elapsed < 15, elapsed


def test_bit_flipped_and_truncated_takes_marked_damaged(root: Path) -> None:
    horn = root / "city/horn/horn_v001.wav"
    st = horn.stat()
    data = bytearray(horn.read_bytes())
    data[-50] ^= 0x01  # one bit, same size and mtime
    horn.write_bytes(bytes(data))
    os.utime(horn, ns=(st.st_atime_ns, st.st_mtime_ns))
    birds_v1 = root / "forest/birds/birds_v001.wav"
    birds_v1.write_bytes(birds_v1.read_bytes()[:2000])  # the previous take, truncated
    html = build_report(root, workers=1).read_text()
    cards = {a["data-asset"]: a for a in Tags(html).find("article")}
    assert cards["horn"]["data-damaged"] == "1" and cards["horn"]["data-failing"] == "1"
    assert cards["birds"]["data-damaged"] == "0" and cards["wind"]["data-damaged"] == "0"  # current takes intact
    assert "v1: file damaged, content changed since render" in html and 'class="badge damaged"' in html
    assert "file damaged: content changed since render" in html  # birds' previous take
    assert '<b id="n-damaged">1</b> damaged' in html
    key = Index(root).get("city", "horn")["content_key"]
    assert not (root / "report/media" / f"{key}.png").exists()  # no waveform drawn from damaged bytes


def test_report_records_verified_files(root: Path) -> None:
    build_report(root, workers=1)
    cache = Index(root).verified_files()
    assert set(cache) == {r["path"] for r in Index(root).rows()}  # each intact file recorded at its stat
    assert all(cache[r["path"]][0] == r["sha256"] for r in Index(root).rows())


def test_report_hashes_a_file_again_only_when_it_changed(root: Path, monkeypatch) -> None:
    """The report verifies every shown file cheaply: hashed once, then only stat'ed until it changes."""
    from types import SimpleNamespace

    from assetgen.report import verify
    from assetgen.store import root as root_mod
    from assetgen.store.store import sha256_file

    later = time.time_ns() + 10**10  # the files' last change is long before their verification
    monkeypatch.setattr(verify, "time", SimpleNamespace(time_ns=lambda: later))
    hashed: list[str] = []
    monkeypatch.setattr(root_mod, "sha256_file", lambda p: hashed.append(p.name) or sha256_file(p))
    build_report(root, workers=1)
    assert sorted(hashed) == sorted(Path(r["path"]).name for r in Index(root).rows())
    hashed.clear()
    build_report(root, workers=1)
    assert hashed == []
    wind = root / "forest/wind/wind_v001.wav"
    data = bytearray(wind.read_bytes())
    data[-10] ^= 0x01
    wind.write_bytes(bytes(data))
    html = build_report(root, workers=1).read_text()
    assert hashed == ["wind_v001.wav"]
    assert {a["data-asset"]: a for a in Tags(html).find("article")}["wind"]["data-damaged"] == "1"


def test_card_shows_delivery_statistics_tempo_and_meta(tmp_path: Path) -> None:
    root = tmp_path / "out"
    add_asset(root, "music", "theme", lra_lu=6.25, max_momentary_lufs=-15.04, max_short_term_lufs=-17.5,
              sample_peak_dbfs=-2.25, dc_offset=3e-6, tempo_bpm=123.456, tempo_source="beat-tracked",
              loudness_shortfall_lu=1.71, audio_status="loudness-unreachable", meta='{"meta_owner": "jo"}')
    add_asset(root, "ui", "click")  # an index row without the statistics: no empty entries
    html = build_report(root, workers=1).read_text()
    theme = html[html.index('id="a-music-theme"'):html.index('id="a-ui-click"')]
    assert "LRA 6.2 LU · max M -15.0 LUFS · max S -17.5 LUFS · sample peak -2.2 dBFS · DC 3.0e-06" in theme
    assert "1.71 LU short of the target" in theme and "loudness-unreachable" in theme
    assert "123.46 BPM (beat-tracked)" in theme and "meta_owner=jo" in theme
    click = html[html.index('id="a-ui-click"'):]
    assert '<dd class="stats">' not in click and "BPM" not in click


def test_cards_show_qc_reasons_and_the_page_filters_by_verdict_and_gate(tmp_path: Path) -> None:
    import json

    from assetgen import qc

    quiet = tone(seconds=1) * 1e-5
    silent = qc.silence_gate(quiet, 16_000)
    clipped = qc.clipping_gate(np.clip(tone(seconds=1) * 20, -1, 1))
    _, reasons = qc.verdict([silent, clipped])
    root = tmp_path / "out"
    add_asset(root, "ui", "beep", quiet, qc="fail", qc_reasons=json.dumps(reasons), audio_status="qc-failed")
    add_asset(root, "ui", "click", qc="pass", qc_reasons="[]")
    add_asset(root, "ui", "old")  # indexed before gates: no verdict
    html = build_report(root, workers=1).read_text()
    cards = {a["data-asset"]: a for a in Tags(html).find("article")}
    assert (cards["beep"]["data-qc"], cards["click"]["data-qc"], cards["old"]["data-qc"]) == (
        "fail", "pass", "unchecked")
    assert cards["beep"]["data-gates"].split() == ["clipping", "silence"] and cards["click"]["data-gates"].strip() == ""
    assert cards["beep"]["data-failing"] == "1" and cards["click"]["data-failing"] == "0"
    from html import escape

    assert all(escape(r, quote=False) in html for r in reasons) and 'class="qc-reasons error"' in html
    options = [o for o in Tags(html).find("option")]
    assert 'id="f-qc"' in html and 'id="f-gate"' in html and len(options) >= 5
    assert ">1</b> failed QC" in html
