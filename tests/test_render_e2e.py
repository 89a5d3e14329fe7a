"""End to end on the tiny placeholder models: `assetgen render` through the Prefect flow, read back from disk."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from tests.conftest import REPO

pytestmark = pytest.mark.slow
DEMO = REPO / "manifests" / "demo.csv"


def run(*args: str):
    from assetgen.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    return result


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wav_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.wav") if "report" not in p.parts and ".quarantine" not in p.parts)


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory, tiny_models):
    root = tmp_path_factory.mktemp("render") / "out"
    result = run("render", DEMO, "--out", root, "--model-dir", tiny_models, "--no-progress", "--fail-on", "error")
    assert result.exit_code == 0, result.output
    return root


@pytest.fixture
def demo_copy(demo_root, tmp_path) -> Path:
    """A copy of the demo render for tests that change it, so ``demo_root`` stays as rendered whatever the order."""
    copy = tmp_path / "demo"
    shutil.copytree(demo_root, copy, ignore=shutil.ignore_patterns(".prefect"))
    return copy


def rows(root: Path) -> list[dict]:
    from assetgen.store.index import Index

    return Index(root).rows()


def test_every_asset_lands_once_with_matching_index(demo_root):
    from assetgen.manifest import load_manifests

    specs = load_manifests([DEMO])
    index_rows = rows(demo_root)
    assert sorted(f"{r['scene']}/{r['asset']}" for r in index_rows) == sorted(s.ident for s in specs)
    files = wav_files(demo_root)
    assert len(files) == len(index_rows)
    for row in index_rows:
        path = demo_root / row["path"]
        assert path.name == f"{row['asset']}_v001.wav"
        assert sha256(path) == row["sha256"]
        info = sf.info(path)
        assert info.samplerate == row["sample_rate"] == 48000
        assert info.channels == row["channels"]
        assert info.subtype == "PCM_24"
        assert row["placeholder"] == 1 and "PLACEHOLDER" in row["model"]
    assert not [p for p in demo_root.rglob("*") if ".tmp" in p.name]


def test_loudness_and_loops_as_delivered(demo_root):
    # libebur128, the referee the meters are validated against to 0.001 LU (tests/test_dsp_meters.py);
    # pyloudnorm's own K-weighting reads a 1 kHz tone ~0.04 LU low, so it only agreed on steady low takes
    from tests.test_dsp_meters import libebur128

    from assetgen.store.wav import read_loop

    by_ident = {f"{r['scene']}/{r['asset']}": r for r in rows(demo_root)}
    for row in by_ident.values():
        data, sr = sf.read(demo_root / row["path"], always_2d=True)
        if row["audio_status"] == "ok":
            measured = libebur128(np.ascontiguousarray(data.T), sr)["I"]
            assert abs(measured - row["lufs"]) < 1e-3, (row["asset"], measured, row["lufs"])
            # on target, unless the true-peak ceiling capped the gain (then the peak sits at the ceiling)
            at_ceiling = row["true_peak_dbtp"] > row["true_peak_target"] - 0.5
            assert abs(measured - row["loudness_target"]) < 0.5 or (at_ceiling and measured < row["loudness_target"])
        assert row["true_peak_dbtp"] <= row["true_peak_target"] + 0.05, row["asset"]
        loop = read_loop(demo_root / row["path"])
        if row["loop_end"] is not None:
            assert loop == (row["loop_start"], row["loop_end"]), row["asset"]
    theme = by_ident["title/theme_loop"]
    # 2 bars of 4/4 at 120 bpm = 4 s: exactly 192000 samples at 48 kHz
    assert theme["loop_end"] - theme["loop_start"] == 192000
    assert sf.info(demo_root / theme["path"]).frames == 192000


def test_rerun_renders_nothing_and_a_changed_target_renders_one(demo_copy, tiny_models, tmp_path):
    demo_root = demo_copy
    before = {p: sha256(p) for p in wav_files(demo_root)}
    result = run("render", DEMO, "--out", demo_root, "--model-dir", tiny_models, "--no-progress", "--fail-on", "error")
    assert result.exit_code == 0, result.output
    assert "rendered 0 new version(s)" in result.output
    assert {p: sha256(p) for p in wav_files(demo_root)} == before

    changed = tmp_path / "demo.csv"
    text = DEMO.read_text().replace("short wooden button click,2,,,,,,,aswg-mobile",
                                    "short wooden button click,2,,,,,,,-20")
    assert text != DEMO.read_text()
    changed.write_text(text)
    plan = run("plan", changed, "--out", demo_root, "--model-dir", tiny_models)
    assert plan.exit_code == 0, plan.output
    assert "changed: 1" in plan.output
    result = run("render", changed, "--out", demo_root, "--model-dir", tiny_models, "--no-progress", "--fail-on", "error")
    assert result.exit_code == 0, result.output
    assert "rendered 1 new version(s)" in result.output
    after = wav_files(demo_root)
    assert {p: sha256(p) for p in before} == before  # nothing overwritten
    new = [p for p in after if p not in before]
    assert [p.name for p in new] == ["click_v002.wav"]


def test_invalid_input_exits_2_and_writes_nothing(tmp_path, tiny_models):
    bad = tmp_path / "bad.csv"
    bad.write_text("scene,asset,model,prompt,duration_s\nui,click,sfx,click,-3\n")
    root = tmp_path / "out"
    result = run("render", bad, "--out", root, "--model-dir", tiny_models)
    assert result.exit_code == 2
    assert "duration_s" in result.output and "bad.csv" in result.output
    assert not root.exists()


def test_missing_model_exits_2_with_a_pointer(tmp_path, monkeypatch):
    monkeypatch.delenv("ASSETGEN_MODEL_DIR", raising=False)
    root = tmp_path / "out"
    result = run("render", DEMO, "--out", root, "--model-dir", tmp_path / "empty")
    assert result.exit_code == 2
    assert "--model-dir" in result.output and "'music'" in result.output
    assert not root.exists()


@pytest.fixture
def half_broken_manifest(tmp_path, tiny_models) -> Path:
    """ok/one on the tiny sfx model, bad/two on a copy of it whose weights file is empty (0 bytes)."""
    broken = tmp_path / "broken_model"
    shutil.copytree(tiny_models / "sfx", broken)
    (broken / "state_dict.bin").write_bytes(b"")
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "scene,asset,model,prompt,duration_s\n"
        "ok,one,sfx,a door creaks,1\n"
        f"bad,two,{broken},a door slams,1\n")
    return manifest


def test_failing_asset_is_isolated_and_exit_code_is_1(tmp_path, tiny_models, half_broken_manifest):
    manifest = half_broken_manifest
    root = tmp_path / "out"
    result = run("render", manifest, "--out", root, "--model-dir", tiny_models, "--no-progress")
    assert result.exit_code == 1, result.output
    assert "bad/two" in result.output
    landed = rows(root)
    assert [(r["scene"], r["asset"]) for r in landed] == [("ok", "one")]
    from assetgen.store.index import Index

    failures = Index(root).failures()
    assert [(f["scene"], f["asset"], f["stage"]) for f in failures] == [("bad", "two", "generate")]
    # the loader's own exception, in the index and on the console (not Prefect's "UnfinishedRun")
    assert failures[0]["error"].startswith("EOFError: loading model "), failures[0]["error"]
    assert f"bad/two [generate] {failures[0]['error']}" in result.output


def test_render_flow_called_from_python_raises_the_failures(tmp_path, tiny_models, half_broken_manifest):
    from assetgen.render import AssetsFailed
    from assetgen.runtime import ephemeral_run_settings, prefect_env
    from flows.render import render_flow

    root = tmp_path / "out"
    prefect_env(root)
    with ephemeral_run_settings(), pytest.raises(AssetsFailed, match="1 asset\\(s\\) failed: bad/two") as caught:
        render_flow(manifests=[str(half_broken_manifest)], out=str(root), model_dir=str(tiny_models))
    summary = caught.value.summary
    assert summary["rendered"] == 1 and [f["asset"] for f in summary["failed"]] == ["bad/two"]
    assert summary["failed"][0]["error"].startswith("EOFError: loading model ")
    assert [(r["scene"], r["asset"]) for r in rows(root)] == [("ok", "one")]


def test_dask_runner_matches_local_runner(demo_root, tiny_models, tmp_path):
    root = tmp_path / "dask"
    result = run("render", DEMO, "--out", root, "--model-dir", tiny_models, "--fail-on", "error", "--runner", "dask", "--workers", "2",
                 "--no-progress")
    assert result.exit_code == 0, result.output
    local = {(r["scene"], r["asset"]): r for r in rows(demo_root)}
    assert {r["version"] for r in local.values()} == {1}
    dask = {(r["scene"], r["asset"]): r for r in rows(root)}
    assert set(local) == set(dask)
    for ident, row in dask.items():
        assert row["content_key"] == local[ident]["content_key"], ident
        a, _ = sf.read(root / row["path"])
        b, _ = sf.read(demo_root / local[ident]["path"])
        np.testing.assert_allclose(a, b, atol=1e-5, err_msg=str(ident))  # float rounding only


def test_index_export_and_review_status(demo_copy, tmp_path):
    import pandas as pd

    demo_root = demo_copy
    out = tmp_path / "index.parquet"
    result = run("index", "export", "--out", demo_root, "--format", "parquet", "--to", out)
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out)
    assert len(frame) == len(rows(demo_root))
    blocked = run("approve", "ui/click@v1", "--out", demo_root)  # tiny-model output is placeholder audio
    assert blocked.exit_code == 2 and "placeholder" in blocked.output and "--force" in blocked.output
    from assetgen.store.index import Index

    assert Index(demo_root).get("ui", "click", 1)["status"] == "rendered"
    forced = run("approve", "ui/click@v1", "--out", demo_root, "--force", "--reason", "temp sound for the build")
    assert forced.exit_code == 0, forced.output
    assert Index(demo_root).get("ui", "click", 1)["status"] == "approved"
    journal = (demo_root / ".assetgen" / "approval_overrides.jsonl").read_text().splitlines()
    assert json.loads(journal[-1])["reason"] == "temp sound for the build"
    export_to = tmp_path / "engine"
    skipped = run("export", "--approved", "--to", export_to, "--out", demo_root)
    assert skipped.exit_code == 0 and "ui/click@v1" in skipped.output and not list(export_to.glob("*.wav"))
    included = run("export", "--approved", "--include-failing", "--to", export_to, "--out", demo_root)
    assert included.exit_code == 0 and [p.name for p in export_to.glob("*.wav")] == ["ui_click.wav"]
    assert run("approve", "ui/nope", "--out", demo_root).exit_code == 2
    params = json.loads(Index(demo_root).get("ui", "click", 1)["params"])
    assert params["post"]["loudness_lufs"] == -18.0


def test_theme_manifests_and_seed_scenes_render(tmp_path, tiny_models):
    from assetgen.manifest import load_manifests

    manifests = sorted((REPO / "manifests" / "themes").glob("*.csv")) + [REPO / "manifests" / "scenes.json"]
    root = tmp_path / "themes"
    result = run("render", *manifests, "--out", root, "--model-dir", tiny_models, "--fail-on", "error", "--batch-size", "16",
                 "--no-progress")
    assert result.exit_code == 0, result.output
    expected = sorted(s.ident for s in load_manifests(manifests))
    landed = sorted(f"{r['scene']}/{r['asset']}" for r in rows(root))
    assert landed == expected
    for row in rows(root):
        assert sha256(root / row["path"]) == row["sha256"]
    # the seed's mixed scenes: 16 kHz AudioGen and 32 kHz MusicGen layers resampled before mixing, at 48 kHz
    mixes = [r for r in rows(root) if r["asset"] == "mix"]
    assert mixes and all(r["sample_rate"] == 48000 for r in mixes)
