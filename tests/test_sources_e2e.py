"""Recorded sources rendered end to end through the CLI (Prefect flow, store, index, report, export): a
synthesised 120 BPM recording looped on its bar grid, the CC BY freedesktop sounds (tests/data/LICENSE) and an
MP3 read through ffmpeg; loudness checked with ffmpeg's own EBU R128 meter."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from tests.conftest import REPO

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")]
DATA = REPO / "tests" / "data"
SR = 44_100


def run(*args):
    from assetgen.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def groove(path: Path, seconds: float = 10.0, bpm: float = 120.0, seed: int = 1) -> None:
    """A drum-machine-like recording: a decaying noise burst on every beat over a low drone (stereo, 44.1 kHz)."""
    rng = np.random.default_rng(seed)
    n = round(seconds * SR)
    t = np.arange(n) / SR
    x = 0.05 * np.sin(2 * np.pi * 55 * t)
    hit = rng.standard_normal(round(0.08 * SR)) * np.exp(-np.arange(round(0.08 * SR)) / (0.015 * SR)) * 0.5
    for beat in np.arange(0, seconds, 60.0 / bpm):
        a = round(beat * SR)
        x[a:a + hit.size] += hit[: n - a]
    sf.write(path, np.stack([x, x]).T.astype(np.float32), SR, subtype="PCM_16")


def ebur128(path: Path) -> tuple[float, float]:
    """(integrated LUFS, true peak dBFS) of ``path`` by ffmpeg's ebur128 filter."""
    done = subprocess.run(["ffmpeg", "-hide_banner", "-nostats", "-i", str(path), "-af", "ebur128=peak=true",
                           "-f", "null", "-"], capture_output=True, text=True, check=True)
    summary = done.stderr[done.stderr.rindex("Summary:"):]
    lufs = float(re.search(r"I:\s+(-?[\d.]+) LUFS", summary).group(1))
    peak = float(re.search(r"Peak:\s+(-?[\d.]+) dBFS", summary).group(1))
    return lufs, peak


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    folder = tmp_path_factory.mktemp("recorded")
    groove(folder / "groove.wav")
    for name in ("bell.oga", "complete.oga"):
        shutil.copy(DATA / name, folder / name)
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(folder / "complete.oga"), "-b:a", "192k",
                    str(folder / "complete.mp3")], check=True)
    (folder / "m.csv").write_text(
        "scene,asset,model,source,source_start_s,source_end_s,loop,bpm,bars,duration_s,prompt,loudness\n"
        "rec,groove,file,groove.wav,1,,true,120,2,,drum groove,\n"
        "rec,bell,file,bell.oga,,,,,,0.5,,\n"
        "rec,complete,file,complete.oga,,,,,,,,-18\n"
        "rec,complete_mp3,file,complete.mp3,,,,,,,,-18\n")
    root = folder / "out"
    result = run("render", folder / "m.csv", "--out", root, "--no-progress", "--fail-on", "error")
    assert result.exit_code == 0, result.output
    return folder, root


def rows(root: Path) -> dict:
    from assetgen.store.index import Index

    return {r["asset"]: r for r in Index(root).rows()}


def test_recordings_are_delivered_looped_and_measured(rendered):
    from assetgen.store.wav import read_loop

    _, root = rendered
    found = rows(root)
    assert set(found) == {"groove", "bell", "complete", "complete_mp3"}
    assert found["groove"]["model"] == "recording groove.wav"
    assert found["complete_mp3"]["model"] == "recording complete.mp3"
    assert all(r["placeholder"] == 0 and r["version"] == 1 for r in found.values())
    groove, sr = sf.read(root / found["groove"]["path"], dtype="float32", always_2d=True)
    assert sr == 48_000 and groove.shape == (192_000, 2)  # 2 bars at 120 BPM
    assert read_loop(root / found["groove"]["path"]) == (0, 192_000)
    assert found["groove"]["seam_score"] < 0.5 and found["groove"]["qc"] == "pass"
    bell, _ = sf.read(root / found["bell"]["path"], always_2d=True)
    assert bell.shape == (24_000, 2)
    # ffmpeg's own meter agrees with the row's target (1.1 s clips gate on the whole clip)
    for asset, target in (("groove", -23.0), ("complete", -18.0), ("complete_mp3", -18.0)):
        lufs, peak = ebur128(root / found[asset]["path"])
        assert lufs == pytest.approx(target, abs=0.3), asset
        assert peak <= -1.0 + 0.1, asset


def test_a_rerun_is_up_to_date_and_a_changed_recording_makes_a_new_version(rendered):
    folder, root = rendered
    again = run("plan", folder / "m.csv", "--out", root)
    assert again.exit_code == 0 and "up-to-date: 4" in again.output, again.output
    groove(folder / "groove.wav", seed=2)  # the same groove played again: other bytes
    result = run("render", folder / "m.csv", "--out", root, "--no-progress", "--fail-on", "error")
    assert result.exit_code == 0 and "changed 1" in result.output, result.output
    assert rows(root)["groove"]["version"] == 2


def test_report_and_export_carry_recordings(rendered, tmp_path):
    _, root = rendered
    assert run("report", "--out", root).exit_code == 0
    html = (root / "report" / "index.html").read_text()
    assert "recording groove.wav" in html and "recording complete.mp3" in html
    result = run("export", "--to", tmp_path / "engine", "--out", root, "--all-latest")
    assert result.exit_code == 0, result.output
    assert {p.name for p in (tmp_path / "engine").glob("*.wav")} >= {"rec_groove.wav", "rec_complete_mp3.wav"}


def test_a_recorded_stem_set_renders_aligned_and_the_report_checks_it(tmp_path):
    """Four stems of one multitrack through the CLI: one length and loop points, the report's set check passes
    and its mixed preview is the sum of the delivered stems (scaled to -1 dBFS)."""
    from assetgen.stems import PREVIEW_PEAK
    from assetgen.store.wav import read_loop
    from tests.test_stems import multitrack

    multitrack(tmp_path)
    names = ("kick", "hats", "bass", "pad")
    (tmp_path / "m.csv").write_text("scene,asset,model,source,source_start_s,loop,bpm,bars,stem_set\n" + "".join(
        f"groove,{n},file,{n}.wav,2,true,120,2,groove\n" for n in names))
    root = tmp_path / "out"
    result = run("render", tmp_path / "m.csv", "--out", root, "--no-progress", "--fail-on", "error")
    assert result.exit_code == 0, result.output
    found = rows(root)
    delivered = {n: sf.read(root / found[n]["path"], dtype="float32", always_2d=True)[0] for n in names}
    assert {d.shape for d in delivered.values()} == {(192_000, 2)}
    assert {read_loop(root / found[n]["path"]) for n in names} == {(0, 192_000)}
    assert run("report", "--out", root).exit_code == 0
    html = (root / "report" / "index.html").read_text()
    block = html[html.index('id="set-stems-groove-groove"'):]
    assert "set check pass" in block[:block.index("</section>")]
    [preview] = (root / "report" / "media").glob("*_stems.wav")
    mixed, _ = sf.read(preview, dtype="float32", always_2d=True)
    total = sum(delivered.values())
    assert np.max(np.abs(mixed - total * (PREVIEW_PEAK / np.max(np.abs(total))))) < 1e-3
