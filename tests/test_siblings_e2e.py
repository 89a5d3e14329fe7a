"""Near-duplicates across renders: a sweep value added to a row is compared with the row's assets delivered by
earlier renders that sort before it (their raw takes' embeddings, stored in the WAVs), not only with what the
same run generates."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

pytestmark = pytest.mark.slow
HEADER = "scene,asset,model,prompt,duration_s,seed,qc,max_attempts,weather"


def run(*args) -> object:
    from assetgen.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_a_new_sweep_value_is_judged_against_the_delivered_siblings(tmp_path, tiny_models):
    from assetgen.store.index import Index

    manifest = tmp_path / "m.csv"
    # a threshold no two takes can clear: every take after the first of the row is a near-duplicate
    row = 'amb,wind,sfx,{weather} wind,1.0,11,"none,near_duplicate:5",1,'
    manifest.write_text(f"{HEADER}\n{row}calm|still\n")
    out = tmp_path / "out"
    first = run("render", manifest, "--out", out, "--model-dir", tiny_models, "--no-progress", "--fail-on", "never")
    assert first.exit_code == 0, first.output
    index = Index(out)
    assert [index.get("amb", f"wind__weather-{w}")["qc"] for w in ("calm", "still")] == ["pass", "fail"]
    manifest.write_text(f"{HEADER}\n{row}calm|still|gusty\n")
    second = run("render", manifest, "--out", out, "--model-dir", tiny_models, "--no-progress", "--fail-on", "never")
    assert second.exit_code == 0, second.output
    assert "rendered 1 new version(s)" in second.output  # calm and still are up to date: only gusty
    gusty = Index(out).get("amb", "wind__weather-gusty")
    reasons = json.loads(gusty["qc_reasons"])
    assert gusty["qc"] == "fail" and reasons[0].startswith("near_duplicate: near-duplicate of amb/wind__weather-calm "), reasons
    [attempt] = Index(out).attempts("amb", "wind__weather-gusty")
    dup = next(g for g in attempt["gates"] if g["name"] == "near_duplicate")
    assert dup["value"] is not None and 0 < dup["value"] < 5
