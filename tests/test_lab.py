"""``assetgen lab`` through its JSON API (FastAPI TestClient) on the tiny models: takes, the session list, keep,
the review server's protections, per-device queueing, and a kept row rendering to the take's samples."""

from __future__ import annotations

import csv
import hashlib
import io
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from assetgen.lab.engine import Lab
from assetgen.lab.server import create_app
from assetgen.manifest import load_manifests

LOCAL = "http://127.0.0.1:8766"
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed (.ci/run)")


@pytest.fixture(scope="module")
def lab(tmp_path_factory, tiny_models):
    base = tmp_path_factory.mktemp("lab")
    (base / "manifests").mkdir()
    session = Lab(base / "out", model_dir=tiny_models, device="cpu", manifest_root=base / "manifests")
    session.warm(["music"])
    yield session
    session.close()


@pytest.fixture(scope="module")
def client(lab) -> TestClient:
    return TestClient(create_app(lab), base_url=LOCAL)


def data_sha256(wav_bytes: bytes) -> str:
    """sha256 of a WAV's data chunk (the samples as delivered)."""
    pos = 12
    while pos < len(wav_bytes):
        cid, size = wav_bytes[pos:pos + 4], int.from_bytes(wav_bytes[pos + 4:pos + 8], "little")
        if cid == b"data":
            return hashlib.sha256(wav_bytes[pos + 8:pos + 8 + size]).hexdigest()
        pos += 8 + size + (size & 1)
    raise AssertionError("no data chunk")


@pytest.fixture(scope="module")
def music_take(client) -> dict:
    r = client.post("/api/takes", json={"model": "music", "prompt": "calm {piano} theme", "duration_s": 2.5,
                                        "temperature": 0.9, "top_k": 100, "cfg": 2.5, "seed": 1234})
    assert r.status_code == 200, r.text
    return r.json()


def test_a_take_is_delivered_measured_and_listed(client, music_take):
    take = music_take
    assert take["state"] == "done" and take["placeholder"]
    assert take["qc"]["qc"] in ("pass", "fail") and {g["name"] for g in take["qc"]["gates"]} >= {"silence", "loudness"}
    assert take["lufs"] == pytest.approx(-23.0, abs=0.01) and take["true_peak_dbtp"] <= -1.0
    assert take["seam_score"] is None and take["rows"][0]["seed"] == "1234"
    audio = client.get(take["audio_url"])
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    assert data_sha256(audio.content) == take["audio_sha256"]
    samples, sr = sf.read(io.BytesIO(audio.content), always_2d=True)
    assert (sr, samples.shape) == (48000, (120000, 2))
    assert client.get(take["image_url"]).content[:8] == b"\x89PNG\r\n\x1a\n"
    listed = client.get("/api/takes").json()["takes"]
    assert take["id"] in [t["id"] for t in listed]
    t = take["timings"]
    assert t["total"] >= t["generate"] + t["postprocess"] and t["load"] < 0.5  # warm: no load on the take


def test_same_request_same_samples_and_the_model_stays_loaded(client, lab, music_take):
    loads = lab.cache.load_count
    again = client.post("/api/takes", json={"model": "music", "prompt": "calm {piano} theme", "duration_s": 2.5,
                                            "temperature": 0.9, "top_k": 100, "cfg": 2.5, "seed": 1234}).json()
    assert again["audio_sha256"] == music_take["audio_sha256"] and again["id"] != music_take["id"]
    other = client.post("/api/takes", json={"model": "music", "prompt": "calm {piano} theme", "duration_s": 2.5,
                                            "seed": 99}).json()
    assert other["audio_sha256"] != music_take["audio_sha256"]
    assert lab.cache.load_count == loads  # no reload


def test_loop_take_reports_its_seam(client):
    take = client.post("/api/takes", json={"model": "music", "prompt": "drum loop", "loop": True, "bpm": 120,
                                           "bars": 1, "seed": 3, "loudness": "aswg-mobile"}).json()
    assert take["state"] == "done" and take["seam_score"] is not None
    assert take["lufs"] == pytest.approx(-18.0, abs=0.01) and take["duration_s"] == pytest.approx(2.0)


@pytest.mark.parametrize(("body", "expect"), [
    ({"model": "music", "prompt": "x", "duration_s": 2, "temperature": 0}, "'temperature' = '0.0'"),
    ({"model": "musicc", "prompt": "x", "duration_s": 2}, "did you mean 'music'"),
    ({"model": "music", "duration_s": 2}, "prompt: required"),
    ({"model": "music", "prompt": "x", "duration_s": 2, "voice": "en-us"}, "applies only to model tts"),
    ({"model": "music", "prompt": "x", "duration_s": 2, "loudness": "loud"}, "unknown loudness profile"),
    ({"layers": [{"prompt": "x"}], "duration_s": 2, "prompt": "y"}, "per layer"),
])
def test_bad_requests_are_422_with_the_manifest_rules_message(client, body, expect):
    r = client.post("/api/takes", json=body)
    assert r.status_code == 422 and expect in str(r.json()["detail"]), r.text


def test_unknown_fields_and_wrong_types_are_refused(client):
    assert client.post("/api/takes", json={"prompt": "x", "duration_s": 2, "lufs": -14}).status_code == 422
    assert client.post("/api/takes", json={"prompt": "x", "duration_s": "long"}).status_code == 422


def test_keep_writes_a_validated_row_that_keys_to_the_take(client, lab, music_take):
    r = client.post(f"/api/takes/{music_take['id']}/keep",
                    json={"manifest": "kept.csv", "scene": "forest", "asset": "calm_theme"})
    assert r.status_code == 200, r.text
    kept = r.json()
    path = lab.manifest_root / "kept.csv"
    assert kept["manifest"] == str(path) and kept["lines"] == [2] and kept["content_key"] == music_take["content_key"]
    assert kept["row"] == {"scene": "forest", "asset": "calm_theme", "model": "music",
                           "prompt": "calm {{piano}} theme", "duration_s": "2.5", "temperature": "0.9",
                           "top_k": "100", "cfg_coef": "2.5", "seed": "1234"}
    [spec] = load_manifests([path])
    assert spec.prompt == "calm {piano} theme" and spec.seed == 1234  # braces are text, not a template
    # the same name again: the manifest would have a duplicate, nothing is written
    before = path.read_bytes()
    r = client.post(f"/api/takes/{music_take['id']}/keep",
                    json={"manifest": "kept.csv", "scene": "forest", "asset": "calm_theme"})
    assert r.status_code == 422 and "duplicate asset 'forest/calm_theme'" in r.json()["detail"]
    assert path.read_bytes() == before
    assert client.get(f"/api/takes/{music_take['id']}").json()["kept"][0]["lines"] == [2]


def test_keep_extends_an_existing_manifest_and_refuses_paths_outside(client, lab, music_take):
    existing = lab.manifest_root / "team.csv"
    existing.write_text("scene,asset,model,prompt,duration_s,meta_owner\nui,click,sfx,click,1,Ana\n")
    r = client.post(f"/api/takes/{music_take['id']}/keep", json={"manifest": "team.csv", "scene": "ui",
                                                                  "asset": "theme"})
    assert r.status_code == 200, r.text
    rows = list(csv.DictReader(existing.open()))
    assert rows[0] == {"scene": "ui", "asset": "click", "model": "sfx", "prompt": "click", "duration_s": "1",
                       "meta_owner": "Ana", "temperature": "", "top_k": "", "cfg_coef": "", "seed": ""}
    assert [s.ident for s in load_manifests([existing])] == ["ui/click", "ui/theme"]
    for manifest in ("../escape.csv", "/tmp/abs.csv", "kept.txt", "missing_dir/x.csv"):
        r = client.post(f"/api/takes/{music_take['id']}/keep", json={"manifest": manifest, "scene": "s",
                                                                      "asset": "a"})
        assert r.status_code == 422, manifest
    r = client.post(f"/api/takes/{music_take['id']}/keep", json={"manifest": "k.csv", "scene": "s", "asset": "a/b"})
    assert r.status_code == 422 and "asset" in r.json()["detail"]
    assert client.post("/api/takes/t999/keep", json={"manifest": "k.csv", "scene": "s", "asset": "a"}).status_code \
        == 404
    assert not (lab.manifest_root.parent / "escape.csv").exists()


def test_host_origin_and_content_type_checks(client):
    assert client.get("/api/takes", headers={"Host": "evil.example:8766"}).status_code == 421
    body = {"model": "music", "prompt": "x", "duration_s": 2}
    assert client.post("/api/takes", json=body, headers={"Origin": "http://evil.example"}).status_code == 403
    assert client.post("/api/takes", content='{"prompt": "x"}', headers={"Content-Type": "text/plain"}) \
        .status_code in (415, 422)
    assert client.get("/").status_code == 200 and "assetgen lab" in client.get("/").text


def test_concurrent_takes_queue_on_their_device(client, lab):
    results: list[dict] = []

    def one(seed: int) -> None:
        results.append(client.post("/api/takes", json={"model": "music", "prompt": "queue", "duration_s": 2,
                                                       "seed": seed}).json())

    threads = [threading.Thread(target=one, args=(s,)) for s in (1, 2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spans = sorted((t["started"], t["finished"]) for t in results)
    assert all(t["state"] == "done" and t["device"] == "cpu" for t in results)
    assert all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:]))  # one at a time
    assert max(t["timings"]["queue"] for t in results) > 0.5 * min(t["timings"]["generate"] for t in results)


def test_generation_reports_progress(lab):
    from assetgen.lab.rows import clip_row

    take, future = lab.submit([clip_row({"model": "music", "prompt": "long", "duration_s": 8.0, "seed": 1}, "lab",
                                        "take")])
    seen: list[tuple[str, float]] = []
    while not future.done():
        seen.append((take.state, take.progress))
        time.sleep(0.005)
    future.result()
    assert any(state == "generating" and 0 < p < 1 for state, p in seen), sorted(set(seen))
    assert [p for _, p in seen] == sorted(p for _, p in seen) and take.progress == 1.0 and take.state == "done"


@needs_espeak
def test_scene_with_narration_ducking_keeps_all_rows(client, lab):
    r = client.post("/api/takes", json={"duration_s": 4, "layers": [
        {"name": "vo", "model": "tts", "prompt": "Hello there, traveller.", "start_s": 0.5, "duck_db": 9,
         "voice": "en-gb"},
        {"name": "music", "model": "music", "prompt": "calm piano", "gain_db": -8, "seed": 5}]})
    assert r.status_code == 200, r.text
    take = r.json()
    assert take["kind"] == "scene" and "PLACEHOLDER VO" in take["model"] and len(take["layers"]) == 2
    assert take["lufs"] == pytest.approx(-23.0, abs=0.01)
    kept = client.post(f"/api/takes/{take['id']}/keep", json={"manifest": "scenes.csv", "scene": "intro",
                                                               "asset": "scene_mix"}).json()
    assert [r["asset"] for r in kept["rows"]] == ["vo", "music", "scene_mix"] and kept["lines"] == [2, 3, 4]
    specs = {s.asset: s for s in load_manifests([lab.manifest_root / "scenes.csv"])}
    assert specs["scene_mix"].layers == ("music", "vo") and specs["vo"].post.duck_db == 9.0
    assert specs["vo"].gen.voice == "en-gb"


@pytest.mark.slow
def test_kept_take_renders_to_the_same_samples(client, lab, tiny_models, tmp_path):
    """Keep, then `assetgen render` that manifest: the delivered samples are the take's, bit for bit."""
    from assetgen.cli import app
    from assetgen.store.index import Index
    from assetgen.store.wav import read_provenance

    take = client.post("/api/takes", json={"model": "sfx", "prompt": "door creak", "duration_s": 2,
                                           "temperature": 0.8, "loudness": -20}).json()
    client.post(f"/api/takes/{take['id']}/keep", json={"manifest": "render_me.csv", "scene": "house",
                                                        "asset": "door"}).raise_for_status()
    out = tmp_path / "render"
    result = CliRunner().invoke(app, ["render", "--fail-on", "error", str(lab.manifest_root / "render_me.csv"), "--out", str(out),
                                      "--model-dir", str(tiny_models), "--no-progress"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [row] = Index(out).rows()
    assert row["content_key"] == take["content_key"]
    rendered = out / row["path"]
    assert data_sha256(rendered.read_bytes()) == take["audio_sha256"] == read_provenance(rendered)["audio_sha256"]
    mine, _ = sf.read(io.BytesIO(client.get(take["audio_url"]).content), dtype="float32")
    theirs, _ = sf.read(rendered, dtype="float32")
    assert np.array_equal(mine, theirs)


def test_a_take_failing_a_gate_is_rerolled_as_the_render_rerolls_it(client, lab, tiny_models, tmp_path):
    """A silence floor that the first attempt fails and a later one passes: the lab delivers that later take
    (the render's own re-roll loop and seeds), lists every attempt, and a render of the kept row agrees."""
    from assetgen.cli import app
    from assetgen.seeds import attempt_seed
    from assetgen.store.index import Index
    from tests.test_qc_e2e import raw_levels

    prompt = "metal door slam"
    for seed in range(1, 40):
        levels = raw_levels(tiny_models, prompt, seed, 3)
        later = [k for k in (2, 3) if levels[k - 1] > max(levels[: k - 1]) + 0.2]
        if later:
            break
    else:
        pytest.fail(f"no seed whose later take is louder than the first: {levels}")
    k = later[0]
    floor = round((max(levels[: k - 1]) + levels[k - 1]) / 2, 2)
    take = client.post("/api/takes", json={"model": "sfx", "prompt": prompt, "duration_s": 1.0, "seed": seed,
                                           "qc": f"none,silence:{floor}"}).json()
    assert take["state"] == "done" and take["qc"]["qc"] == "pass", take
    attempts = take["attempts"]["take"]
    assert [(a["attempt"], a["seed"], a["passed"], a["chosen"]) for a in attempts] == [
        (n, attempt_seed(seed, n), n == k, n == k) for n in range(1, k + 1)]
    client.post(f"/api/takes/{take['id']}/keep", json={"manifest": "reroll.csv", "scene": "fx",
                                                        "asset": "slam"}).raise_for_status()
    out = tmp_path / "render"
    result = CliRunner().invoke(app, ["render", str(lab.manifest_root / "reroll.csv"), "--out", str(out),
                                      "--model-dir", str(tiny_models), "--no-progress"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [row] = Index(out).rows()
    assert row["content_key"] == take["content_key"] and row["seed"] == attempt_seed(seed, k)
    assert data_sha256((out / row["path"]).read_bytes()) == take["audio_sha256"]


@pytest.mark.slow
def test_cli_serves_the_lab_on_loopback(tmp_path, tiny_models):
    """`assetgen lab` as a user starts it: the page, a take through the API, the Host check, Ctrl-C."""
    import json
    import signal
    import socket
    import subprocess
    import sys
    import urllib.error
    import urllib.request

    from tests.conftest import REPO

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = "from assetgen.cli import main; main()"
    proc = subprocess.Popen([sys.executable, "-c", code, "lab", "--out", str(tmp_path / "out"), "--model-dir",
                             str(tiny_models), "--device", "cpu", "--port", str(port), "--manifests", str(tmp_path)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                health = json.loads(urllib.request.urlopen(base + "/api/health", timeout=5).read())
                break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.poll() else ""
                time.sleep(0.2)
        assert health["manifest_root"] == str(tmp_path.resolve()) and health["device"] == "cpu"
        assert b"assetgen lab" in urllib.request.urlopen(base + "/", timeout=5).read()
        request = urllib.request.Request(base + "/api/takes", method="POST",
                                         headers={"Content-Type": "application/json"},
                                         data=json.dumps({"model": "sfx", "prompt": "thud", "duration_s": 1}).encode())
        take = json.loads(urllib.request.urlopen(request, timeout=300).read())
        assert take["state"] == "done" and take["lufs"] == pytest.approx(-23.0, abs=0.01)
        rebound = urllib.request.Request(base + "/api/takes", headers={"Host": f"evil.example:{port}"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(rebound, timeout=5)
        assert err.value.code == 421
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_cli_refuses_a_missing_manifest_folder(tmp_path):
    from assetgen.cli import app

    result = CliRunner().invoke(app, ["lab", "--out", str(tmp_path), "--manifests", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "not a folder" in result.output
