"""`assetgen qc`: the gates again over the latest versions, without generating. The rethreshold rules are
checked against the gate functions; end to end on the tiny models: a clean root passes as stored, a tighter
threshold and a damaged file fail with the values measured again, a raw-take gate compares the stored value."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from assetgen import qc
from assetgen.recheck import rethreshold


def run(*args) -> object:
    from assetgen.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("level_db", [-70.0, -40.0, -12.0])
@pytest.mark.parametrize("threshold", [-60.0, -30.0])
def test_silence_rethreshold_agrees_with_the_gate(level_db, threshold):
    sr = 16_000
    tone = (10 ** (level_db / 20) * np.sqrt(2) * np.sin(2 * np.pi * 440 * np.arange(sr) / sr)).astype(np.float32)
    measured = qc.silence_gate(tone, sr, -60.0)  # as the render stored it, under the default threshold
    again = rethreshold(measured.as_dict(), threshold)
    direct = qc.silence_gate(tone, sr, threshold)
    assert (again.passed, again.value, again.threshold, again.reason) == (direct.passed, direct.value,
                                                                          direct.threshold, direct.reason)


@pytest.mark.parametrize("run_length,threshold", [(0, 2.0), (3, 2.0), (3, 5.0), (40, 10.0)])
def test_clipping_rethreshold_agrees_with_the_gate(run_length, threshold):
    raw = np.full((2, 4000), 0.3, np.float32)
    raw[:, 100:100 + run_length] = 1.0
    again = rethreshold(qc.clipping_gate(raw).as_dict(), threshold)
    direct = qc.clipping_gate(raw, threshold)
    assert (again.passed, again.value, again.reason) == (direct.passed, direct.value, direct.reason)


def test_near_duplicate_rethreshold_keeps_the_sibling_name():
    stored = qc.near_duplicate_gate([1.0, 2.0], {"fx/a__v01": [1.0, 2.1]}, 0.5).as_dict()
    assert not stored["passed"]
    again = rethreshold(stored, 0.3)
    assert not again.passed and again.reason == f"near-duplicate of fx/a__v01 (distance {stored['value']:.3f} < 0.3)"
    assert rethreshold(stored, 0.01).passed
    passed = qc.near_duplicate_gate([1.0, 2.0], {"fx/a__v01": [1.0, 2.1]}, 0.01).as_dict()
    # a passing gate stores no reason, so the sibling is not named
    assert rethreshold(passed, 0.5).reason.startswith("near-duplicate of a sibling (distance ")
    assert rethreshold({"name": "near_duplicate", "value": None}, 0.5).passed  # no siblings: passes


@pytest.fixture(scope="module")
def root(tmp_path_factory, tiny_models):
    base = tmp_path_factory.mktemp("recheck")
    manifest = base / "m.csv"
    manifest.write_text("scene,asset,model,prompt,duration_s,seed,loudness,loop\n"
                        "fx,thud,sfx,a heavy thud,1.0,3,-20,false\n"
                        "amb,hum,sfx,machine hum,2.0,5,-23,true\n")
    out = base / "out"
    result = run("render", manifest, "--out", out, "--model-dir", tiny_models, "--no-progress", "--fail-on", "never")
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.slow
def test_qc_over_a_root_matches_the_render_and_follows_thresholds_and_files(root, tmp_path):
    import shutil

    from assetgen.store.index import Index

    rows = {r["asset"]: r for r in Index(root).rows()}
    clean = run("qc", "--out", root, "--json")
    data = json.loads(clean.output)
    assert clean.exit_code == (1 if data["counts"].get("fail") else 0)
    assert data["changed"] == 0 and data["assets"] == 2
    checks = {c["asset"]: c for c in data["checks"]}
    assert {a: c["qc"] for a, c in checks.items()} == {a: r["qc"] for a, r in rows.items()}
    for asset, check in checks.items():
        gates = {g["name"]: g for g in check["gates"]}
        # loudness measured again on the file: the index's figure, as a signed deviation from the target
        assert gates["loudness"]["value"] == pytest.approx(rows[asset]["lufs"] - rows[asset]["loudness_target"],
                                                           abs=0.01)
        stored = {g["name"]: g for g in next(a for a in Index(root).attempts("fx" if asset == "thud" else "amb",
                                                                              asset) if a["chosen"])["gates"]}
        assert gates["silence"]["value"] == stored["silence"]["value"]  # the raw take's stored level
    assert "seam" in {g["name"] for g in checks["hum"]["gates"]}
    # a threshold above the stored raw level fails silence; a zero loudness tolerance is still met or not
    level = checks["thud"]["gates"][0]["value"]
    tight = run("qc", "--out", root, "--match", "fx/*", "--qc", f"silence:{level + 1:.2f}")
    assert tight.exit_code == 1 and "fx/thud v001: fail (was pass)" in tight.output, tight.output
    assert f"silence: loudest 50 ms at {level:.1f} dBFS" in tight.output and "amb/hum" not in tight.output
    # a damaged file (6 dB quieter, same name) fails loudness with the value measured now
    damaged = tmp_path / "damaged"
    shutil.copytree(root, damaged)
    path = damaged / rows["thud"]["path"]
    audio, sr = sf.read(path, dtype="float64", always_2d=True)
    sf.write(path, audio * 10 ** (-6 / 20), sr, subtype="PCM_24")
    hurt = run("qc", "--out", damaged, "--json")
    assert hurt.exit_code == 1
    thud = next(c for c in json.loads(hurt.output)["checks"] if c["asset"] == "thud")
    loud = next(g for g in thud["gates"] if g["name"] == "loudness")
    assert thud["qc"] == "fail" and loud["value"] == pytest.approx(-6.0, abs=0.05)
    # a missing file is a failure that names it, the rest is still judged
    path.unlink()
    gone = run("qc", "--out", damaged)
    assert gone.exit_code == 1 and "file: cannot read fx/thud/" in gone.output and "amb/hum v001" in gone.output


def test_qc_refuses_bad_gate_text_and_a_root_without_index(tmp_path):
    missing = run("qc", "--out", tmp_path)
    assert missing.exit_code == 2 and "no index at" in missing.output
    bad = run("qc", "--out", tmp_path, "--qc", "loudness:loud")
    assert bad.exit_code == 2 and "--qc 'loudness:loud'" in bad.output


def test_an_override_from_none_replaces_the_rows_gates_and_recorded_failures_stay_failures(tmp_path):
    """`--qc none,...` on a row with its own qc cell (no traceback); a raw-take gate without a stored value
    keeps the failure the index recorded."""
    import soundfile as sf

    from assetgen.recheck import recheck_row

    sr = 48_000
    t = np.arange(sr) / sr
    audio = (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    (tmp_path / "s" / "a").mkdir(parents=True)
    sf.write(tmp_path / "s" / "a" / "a_v001.wav", np.stack([audio, audio], 1), sr, subtype="PCM_24")
    params = {"gen": {"duration_s": 1.0}, "post": {"qc": "silence:-50", "loudness_lufs": -23.0}}
    row = {"scene": "s", "asset": "a", "version": 1, "path": "s/a/a_v001.wav", "model": "sfx", "prompt": "",
           "seed": 1, "params": json.dumps(params), "qc": "fail",
           "qc_reasons": json.dumps(["silence: loudest 50 ms at -70.0 dBFS < -50 dBFS (silent or near-silent take)"])}
    check = recheck_row(tmp_path, row, None, "none,dc")
    assert [g.name for g in check.gates] == ["dc"] and check.qc == "pass" and check.not_evaluated == ()
    check = recheck_row(tmp_path, row, None, "")
    silence = next(g for g in check.gates if g.name == "silence")
    assert check.qc == "fail" and not silence.passed and silence.reason.startswith("loudest 50 ms at -70.0 dBFS")
    assert check.not_evaluated == ("clipping", "near_duplicate")
