"""Narration (model ``tts``, espeak-ng): manifest columns, content keys, the backend, the registry, errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from assetgen.manifest import ManifestError, load_manifests
from assetgen.models.registry import ModelUnavailable
from assetgen.spec import DEFAULT_TTS_RATE, DEFAULT_TTS_VOICE, GenParams, GenRequest
from tests.conftest import REPO

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed (.ci/run)")
HEADER = "scene,asset,model,prompt,duration_s"
LINE = "The old road ends at the river."


def write(tmp_path: Path, text: str, name: str = "m.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def issues(path: Path):
    with pytest.raises(ManifestError) as err:
        load_manifests([path])
    return err.value.issues


@needs_espeak
def test_tts_rows_take_voice_and_rate_with_defaults(tmp_path):
    path = write(tmp_path, f"{HEADER},voice,rate\nvo,a,tts,{LINE},4,en-gb+f3,200\nvo,b,tts,{LINE},4,,\n"
                           f"fx,c,sfx,wind,2,,\n")
    a, b, c = load_manifests([path])
    assert (a.model, a.gen.voice, a.gen.rate) == ("tts", "en-gb+f3", 200)
    assert (b.gen.voice, b.gen.rate) == (DEFAULT_TTS_VOICE, DEFAULT_TTS_RATE)
    assert (c.gen.voice, c.gen.rate) == ("", 0)  # other models carry no tts settings


@needs_espeak
@pytest.mark.parametrize(("columns", "row", "column", "message"), [
    ("voice", "vo,a,tts,hi,3,xx-nope", "voice", "espeak-ng has no voice 'xx-nope'"),
    ("voice", "vo,a,tts,hi,3,en-us+F3", "voice", "no voice variant 'F3'"),  # espeak-ng would ignore it
    ("voice", "vo,a,tts,hi,3,en us", "voice", "expected an espeak-ng voice"),
    ("rate", "vo,a,tts,hi,3,500", "rate", "words per minute between 80 and 450"),
    ("voice", "fx,a,sfx,wind,3,en-us", "voice", "applies only to model tts"),
    ("temperature", "vo,a,tts,hi,3,0.7", "temperature", "has no effect on a tts row"),
    ("variants", "vo,a,tts,hi,3,2", "variants", "has no effect on a tts row"),
    ("duck_db", "vo,a,tts,hi,3,6", "duck_db", "only on a row with a layer value"),
    ("layer,duck_release_s", "vo,a,tts,hi,3,vo,0.5", "duck_release_s", "has no effect without duck_db"),
    ("duck_db", "vo,a,tts,hi,3,61", "duck_db", "between 0 and 60"),
])
def test_bad_tts_and_ducking_cells_name_row_column_value(tmp_path, columns, row, column, message):
    path = write(tmp_path, f"{HEADER},{columns}\n{row}\n")
    found = [i for i in issues(path) if i.column == column]
    assert found and found[0].row == 2 and message in found[0].message, issues(path)


def test_ducking_on_a_mix_row_and_voice_on_a_swept_model_are_errors(tmp_path):
    path = write(tmp_path, f"{HEADER},layer,duck_db\ns,a,sfx,wind,3,amb,\ns,m,mix,,,,6\n")
    assert any(i.column == "duck_db" and "no effect on a mix row" in i.message for i in issues(path))
    path = write(tmp_path, f"{HEADER},voice\ns,a,music|sfx,wind,3,en-us\n")
    assert any("voice and rate apply only to model tts" in i.message for i in issues(path))


def test_rate_is_the_speaking_rate_not_an_alias_of_sample_rate(tmp_path):
    path = write(tmp_path, f"{HEADER},rate\ns,a,sfx,wind,3,48000\n")
    found = {i.message for i in issues(path) if i.column == "rate"}
    assert any("words per minute" in m for m in found)
    assert any("applies only to model tts (narration) (the delivery rate in Hz is sample_rate)" in m for m in found)


def test_other_models_keys_keep_their_recipe():
    from assetgen.plan import _gen_text

    assert _gen_text(GenParams(3.0)) == "3.0,1.0,250,0.0,3.0"  # as before tts existed: no re-render on upgrade


@needs_espeak
def test_tts_settings_and_ducking_enter_the_keys(tmp_path):
    from dataclasses import replace

    from assetgen.plan import content_key, placed_layer_key

    spec = load_manifests([write(tmp_path, f"{HEADER}\nvo,a,tts,{LINE},3\n")])[0]
    keys = {content_key(spec.replace(gen=g), "fp") for g in (
        GenParams(3.0, voice="en-us", rate=150), GenParams(3.0, voice="en-gb", rate=150),
        GenParams(3.0, voice="en-us", rate=151))}
    assert len(keys) == 3
    layer = spec.replace(layer="vo")
    plain = placed_layer_key(layer, "k")
    assert placed_layer_key(layer.replace(post=replace(layer.post, duck_attack_s=2.0)), "k") == plain  # no duck_db
    ducking = layer.replace(post=replace(layer.post, duck_db=6.0))
    assert placed_layer_key(ducking, "k") != plain
    assert placed_layer_key(ducking.replace(post=replace(ducking.post, duck_release_s=1.0)), "k") != \
        placed_layer_key(ducking, "k")


@needs_espeak
def test_backend_speaks_pads_to_duration_and_refuses_a_line_too_long():
    from assetgen.models.base import ModelBackend, RequestRefused
    from assetgen.models.cache import ModelCache

    cache = ModelCache()
    backend = cache.get("tts")
    assert isinstance(backend, ModelBackend) and backend.placeholder and cache.get("tts") is backend
    assert cache.load_count == 1 and backend.name.startswith("PLACEHOLDER VO espeak-ng")
    ok = GenRequest("a", LINE, 0, GenParams(4.0, voice="en-us", rate=150))
    long = GenRequest("b", LINE * 6, 0, GenParams(4.0, voice="en-us", rate=150))
    out = backend.generate([ok, long, ok])
    audio = out[0]
    assert audio.dtype == np.float32 and audio.shape == (1, round(4.0 * backend.sample_rate))
    active = np.flatnonzero(np.abs(audio[0]) > 1e-3)
    assert active[0] < 0.3 * backend.sample_rate  # speech starts at once ...
    assert 1.0 * backend.sample_rate < active[-1] < 3.5 * backend.sample_rate  # ... and silence pads the rest
    assert isinstance(out[1], RequestRefused) and "longer than duration_s 4" in str(out[1])
    assert np.array_equal(out[2], audio)  # deterministic: same line, same samples
    faster = backend.generate([GenRequest("c", LINE, 0, GenParams(4.0, voice="en-us", rate=300))])[0]
    assert np.flatnonzero(np.abs(faster[0]) > 1e-3)[-1] < 0.7 * active[-1]


@needs_espeak
def test_registry_labels_placeholder_vo_and_fingerprints_espeak(tmp_path):
    from assetgen.models.registry import fingerprint, resolve

    model = resolve("tts")
    assert model.placeholder and model.kind == "tts" and model.label.startswith("PLACEHOLDER VO espeak-ng ")
    assert "scratch VO" in model.placeholder_note
    assert fingerprint("tts") == fingerprint("tts", model_dir=tmp_path) and len(fingerprint("tts")) == 64


@needs_espeak
def test_tts_loads_without_torch():
    code = ("import sys; from assetgen.models.cache import ModelCache; b = ModelCache().get('tts'); "
            "b.generate([]); assert 'torch' not in sys.modules, 'torch imported'")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_missing_espeak_is_one_clear_line(tmp_path, monkeypatch):
    from assetgen.cli import app
    from assetgen.models.registry import resolve

    monkeypatch.setenv("PATH", str(tmp_path))  # no espeak-ng on PATH
    with pytest.raises(ModelUnavailable, match=r"needs espeak-ng, which is not installed: install it with "
                                               r"`apt-get install espeak-ng`"):
        resolve("tts")
    path = write(tmp_path, f"{HEADER}\nvo,a,tts,{LINE},4\n")
    result = CliRunner().invoke(app, ["plan", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "apt-get install espeak-ng" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


def test_refused_requests_are_not_retried():
    from assetgen.render import Failure, GenResult, retry_reason

    refused = GenResult([1, 2], [np.zeros((1, 4)), Failure("generate", "RequestRefused", "too long")], 16000, "m",
                        True)
    assert retry_reason(refused, 1, 3) is None
    flaky = GenResult([1, 2], [np.zeros((1, 4)), Failure("generate", "GenerationError", "flaky")], 16000, "m", True)
    assert retry_reason(flaky, 1, 3) is not None


def test_approval_names_placeholder_vo():
    from assetgen.report.approval import approval_blockers

    assert approval_blockers({"placeholder": 1, "model": "PLACEHOLDER VO espeak-ng 1.51 (tts)"}) == [
        "placeholder VO (synthetic espeak-ng narration)"]
    mixed = "mix of PLACEHOLDER VO espeak-ng 1.51 (tts), PLACEHOLDER tiny-random music (music)"
    assert approval_blockers({"placeholder": 1, "model": mixed}) == [
        "placeholder audio (tiny random-weight model)", "placeholder VO (synthetic espeak-ng narration)"]
