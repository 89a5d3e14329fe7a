"""The seed's narrated scene (manifests/narrated.csv) rendered end to end on the tiny models and espeak-ng:
placeholder VO labelled in the index and report, and the ducking depth measured on the delivered mix."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from tests.conftest import REPO

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed (.ci/run)")]
NARRATED = REPO / "manifests" / "narrated.csv"
SCENE = "narrated_forest"


def run(*args):
    from assetgen.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def narrated_root(tmp_path_factory, tiny_models) -> Path:
    root = tmp_path_factory.mktemp("narrated") / "out"
    result = run("render", NARRATED, "--out", root, "--model-dir", tiny_models, "--no-progress", "--fail-on", "error")
    assert result.exit_code == 0, result.output
    return root


def delivered(root: Path, asset: str) -> tuple[np.ndarray, int]:
    from assetgen.store.index import Index

    [row] = [r for r in Index(root).rows() if r["asset"] == asset]
    audio, sr = sf.read(root / row["path"], dtype="float32", always_2d=True)
    return audio.T, sr


def fit(mix, columns, start, stop, window) -> np.ndarray:
    """Least-squares coefficients of ``mix`` on ``columns`` in each ``window``-sample window of [start, stop)."""
    out = []
    for s in range(start, stop - window + 1, window):
        basis = np.stack([c[:, s:s + window].ravel() for c in columns], 1)
        out.append(np.linalg.lstsq(basis, mix[:, s:s + window].ravel(), rcond=None)[0])
    return np.array(out)


def test_narration_is_labelled_placeholder_vo(narrated_root, tiny_models):
    from assetgen.store.index import Index

    rows = {r["asset"]: r for r in Index(narrated_root).rows()}
    assert set(rows) == {"narration", "music", "ambience", "scene_mix"}
    assert rows["narration"]["placeholder"] == 1 and rows["narration"]["model"].startswith("PLACEHOLDER VO espeak-ng")
    assert rows["scene_mix"]["placeholder"] == 1 and "PLACEHOLDER VO" in rows["scene_mix"]["model"]
    assert all(r["audio_status"] == "ok" and abs(r["lufs"] + 23.0) < 0.01 for r in rows.values())
    assert run("report", "--out", narrated_root).exit_code == 0
    html = (narrated_root / "report" / "index.html").read_text()
    card = html[html.index(f'id="a-{SCENE}-narration"'):]
    card = card[:card.index("</article>")]
    assert "placeholder VO</span>" in card and ">placeholder</span>" not in card
    # a rerun finds nothing to do: the tts fingerprint and keys are stable
    again = run("plan", NARRATED, "--out", narrated_root, "--model-dir", tiny_models)
    assert again.exit_code == 0 and "up-to-date: 4" in again.output, again.output


def test_music_and_ambience_are_ducked_under_the_narration_by_duck_db(narrated_root):
    """The delivered mix is fitted, window by window, on the delivered narration and on the delivered bed
    (music + ambience placed as the manifest says, without ducking): the narration's coefficient is the
    mix's normalisation gain, the bed's is that gain times the ducking, so their ratio is the ducking depth."""
    from assetgen.dsp.mix import mix_layers
    from assetgen.manifest import load_manifests

    specs = {s.asset: s for s in load_manifests([NARRATED])}
    mix, sr = delivered(narrated_root, "scene_mix")
    duration = specs["scene_mix"].target_duration_s

    def placed(*names):
        layers = [(*delivered(narrated_root, n), dataclasses.replace(specs[n].post, duck_db=0.0)) for n in names]
        return mix_layers(layers, sr, mix.shape[0], duration)[0]

    voice, bed = placed("narration"), placed("music", "ambience")
    post = specs["narration"].post
    assert post.duck_db == 9.0
    speech = np.flatnonzero(np.abs(voice).max(0) > 1e-3)
    first, last = speech[0] / sr, speech[-1] / sr
    assert first == pytest.approx(post.start_s, abs=0.3)
    window = round(0.1 * sr)
    start, stop = round((first + 0.2) * sr), round((last - 0.2) * sr)
    under = fit(mix, [voice, bed], start, stop, window)
    # windows in the pauses between words hold no voice: its coefficient is undetermined there
    level = np.sqrt([np.mean(voice[:, s:s + window] ** 2) for s in range(start, stop - window + 1, window)])
    voiced = under[level > 0.01 * level.max()]
    assert len(voiced) >= 0.7 * len(under)
    depth = np.median(20 * np.log10(voiced[:, 0] / voiced[:, 1]))
    assert depth == pytest.approx(post.duck_db, abs=0.1)
    gain = np.median(voiced[:, 0])  # the mix's normalisation gain
    before = fit(mix, [bed], 0, round((first - post.duck_attack_s - 0.1) * sr), window)[:, 0]
    after = fit(mix, [bed], round((last + post.duck_release_s + 0.1) * sr), round(12.5 * sr), window)[:, 0]
    assert np.allclose(20 * np.log10(gain / before), 0.0, atol=0.1)  # untouched before the attack
    assert np.allclose(20 * np.log10(gain / after), 0.0, atol=0.1)  # recovered after the release
