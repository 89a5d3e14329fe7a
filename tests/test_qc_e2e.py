"""A re-roll end to end on the tiny models: `assetgen render` through the Prefect flow, where the first take of an
asset fails a QC gate and a later take (the next attempt's seed) passes; read back from the index and the files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

pytestmark = pytest.mark.slow
HEADER = "scene,asset,model,prompt,duration_s,seed,qc,max_attempts"


def run(*args) -> object:
    from assetgen.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def raw_levels(model_dir, prompt: str, seed: int, attempts: int) -> list[float]:
    """Loudest-50-ms level (dBFS) of the raw take of each attempt's seed, as the render generates them."""
    from assetgen.models.cache import ModelCache
    from assetgen.qc import loudest_frame_dbfs
    from assetgen.seeds import attempt_seed
    from assetgen.spec import GenParams, GenRequest

    backend = ModelCache().get("sfx", model_dir, "cpu")
    takes = backend.generate([GenRequest(str(k), prompt, attempt_seed(seed, k), GenParams(duration_s=1.0))
                              for k in range(1, attempts + 1)])
    return [loudest_frame_dbfs(t, backend.sample_rate) for t in takes]


def silence_floor_seed(model_dir, prompt: str) -> tuple[int, int, float, list[float]]:
    """(seed, k, floor, levels): a seed whose attempt k (2 or 3) is the first whose raw take is louder than a
    silence floor that every earlier attempt misses (the floor halfway between them, dBFS)."""
    for seed in range(1, 40):
        levels = raw_levels(model_dir, prompt, seed, 3)
        later = [k for k in (2, 3) if levels[k - 1] > max(levels[: k - 1]) + 0.2]
        if later:
            k = later[0]
            return seed, k, round((max(levels[: k - 1]) + levels[k - 1]) / 2, 2), levels
    pytest.fail(f"no seed whose later take is louder than the first: {levels}")


def test_a_take_failing_a_gate_is_generated_again_and_the_passing_take_delivered(tmp_path, tiny_models):
    from assetgen.seeds import attempt_seed
    from assetgen.store.index import Index

    prompt = "metal door slam"
    seed, k, floor, levels = silence_floor_seed(tiny_models, prompt)
    manifest = tmp_path / "m.csv"
    manifest.write_text(f'{HEADER}\nfx,slam,sfx,{prompt},1.0,{seed},"none,silence:{floor}",3\n')
    out = tmp_path / "out"
    result = run("render", manifest, "--out", out, "--model-dir", tiny_models, "--no-progress", "-v")
    assert result.exit_code == 0, result.output
    row = Index(out).get("fx", "slam")
    assert row["qc"] == "pass" and json.loads(row["qc_reasons"]) == [] and row["audio_status"] == "ok"
    assert row["seed"] == attempt_seed(seed, k) and json.loads(row["params"])["attempt"] == k
    attempts = Index(out).attempts("fx", "slam")
    assert [(a["attempt"], a["seed"], a["passed"], a["chosen"]) for a in attempts] == [
        (n, attempt_seed(seed, n), int(n == k), int(n == k)) for n in range(1, k + 1)]
    first = attempts[0]["gates"]
    assert [(g["name"], g["passed"]) for g in first] == [("silence", False)]
    assert first[0]["value"] == pytest.approx(levels[0], abs=0.01) and first[0]["threshold"] == floor
    assert f"{k} takes" in result.output
    # the same manifest into a fresh root delivers the same take, sample for sample
    again = tmp_path / "again"
    assert run("render", manifest, "--out", again, "--model-dir", tiny_models, "--no-progress").exit_code == 0
    other = Index(again).get("fx", "slam")
    a, _ = sf.read(out / row["path"], dtype="int32")
    b, _ = sf.read(again / other["path"], dtype="int32")
    assert other["seed"] == row["seed"] and np.array_equal(a, b)
    # and the same root is up to date: nothing generated again
    rerun = run("render", manifest, "--out", out, "--model-dir", tiny_models, "--no-progress")
    assert rerun.exit_code == 0 and "rendered 0 new version(s)" in rerun.output
    assert len(Index(out).attempts("fx", "slam")) == k


def test_a_take_that_never_passes_is_delivered_with_qc_failed(tmp_path, tiny_models):
    from assetgen.store.index import Index

    manifest = tmp_path / "m.csv"
    manifest.write_text(f'{HEADER}\nfx,hum,sfx,low hum,1.0,7,"none,silence:0",2\n')  # 0 dBFS RMS: unreachable
    out = tmp_path / "out"
    result = run("render", manifest, "--out", out, "--model-dir", tiny_models, "--no-progress", "--fail-on", "error")
    assert result.exit_code == 0, result.output
    row = Index(out).get("fx", "hum")
    reasons = json.loads(row["qc_reasons"])
    assert row["qc"] == "fail" and row["audio_status"] == "qc-failed" and reasons[0].startswith("silence: ")
    attempts = Index(out).attempts("fx", "hum")
    assert [a["attempt"] for a in attempts] == [1, 2] and sum(a["chosen"] for a in attempts) == 1
    assert "QC failed: silence: loudest 50 ms" in result.output
    # the Prefect flow run's own state follows --fail-on, as a deployment's nightly run is judged by it
    from assetgen import runtime

    state = runtime.run_render([manifest], out, model_dir=tiny_models, fail_on="qc")
    assert state.is_failed() and state.message == "1 asset(s) failed QC: fx/hum", state.message
    assert runtime.run_render([manifest], out, model_dir=tiny_models, fail_on="error").is_completed()
