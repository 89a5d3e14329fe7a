"""A render repairs, in the same run, the latest files its reconcile finds damaged or missing (issue 16, item 1).

Real renders of a small manifest on the tiny placeholder models: a bit-flipped and a truncated delivered WAV are
shown as ``repair`` by ``plan`` and marked damaged by ``report`` before the render, restored at their own version
by it, and afterwards every index row matches its file's sha256.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytestmark = pytest.mark.slow

MANIFEST = """scene,asset,model,prompt,duration_s
ui,click,sfx,short wooden button click,1
ui,beep,sfx,soft electronic beep,1
forest,birds,sfx,birdsong in a quiet forest,1
"""


def run(*args):
    from assetgen.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_bit_flipped_and_truncated_latest_files_are_repaired_in_the_same_run(tmp_path, tiny_models):
    from assetgen.store.index import Index

    manifest = tmp_path / "small.csv"
    manifest.write_text(MANIFEST)
    root = tmp_path / "out"
    render = ("render", manifest, "--out", root, "--model-dir", tiny_models, "--no-progress", "--fail-on", "error")
    first = run(*render)
    assert first.exit_code == 0, first.output
    rows = {r["asset"]: r for r in Index(root).rows()}
    assert sorted(rows) == ["beep", "birds", "click"]

    click, beep = root / rows["click"]["path"], root / rows["beep"]["path"]
    data = bytearray(click.read_bytes())
    data[-100] ^= 0x01  # one bit of one sample
    click.write_bytes(bytes(data))
    beep.write_bytes(beep.read_bytes()[:2000])  # truncated

    plan = run("plan", manifest, "--out", root, "--model-dir", tiny_models)
    assert plan.exit_code == 0, plan.output
    assert "up-to-date: 1" in plan.output and "repair: 2" in plan.output, plan.output
    page = run("report", "--out", root)
    assert page.exit_code == 0, page.output
    html = (root / "report" / "index.html").read_text()
    assert '<b id="n-damaged">2</b> damaged' in html

    second = run(*render)
    assert second.exit_code == 0, second.output
    assert "repaired 2 missing or damaged file(s) at their own version: ui/beep, ui/click" in second.output
    assert "rendered 0 new version(s)" in second.output
    after = Index(root).rows()
    assert [(r["asset"], r["version"], r["file_state"]) for r in after] == \
        [("birds", 1, "ok"), ("beep", 1, "ok"), ("click", 1, "ok")]
    for row in after:
        assert sha256(root / row["path"]) == row["sha256"], row["path"]
    quarantined = sorted(p.name for p in (root / ".quarantine").rglob("*.wav"))
    assert quarantined == ["beep_v001.wav", "click_v001.wav"]  # the damaged bytes are kept, not overwritten
    run_id = Index(root).runs()[-1]["run_id"]
    report = json.loads((root / "runs" / f"{run_id}.json").read_text())
    assert {a["asset"]: a["status"] for a in report["assets"]} == \
        {"birds": "up-to-date", "beep": "rendered", "click": "rendered"}
    assert json.loads(Index(root).runs()[-1]["counts"])["repair"] == 2

    plan = run("plan", manifest, "--out", root, "--model-dir", tiny_models)
    assert "up-to-date: 3" in plan.output and "repair: 0" in plan.output, plan.output
    page = run("report", "--out", root)
    assert page.exit_code == 0, page.output
    assert 'id="n-damaged"' not in (root / "report" / "index.html").read_text()
