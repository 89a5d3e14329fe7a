"""End to end into a bucket: ``assetgen render --out s3://...`` on the tiny placeholder models against SeaweedFS
(the ``seaweed`` fixture), a no-change re-run, then ``report``, ``export``, ``qc`` and ``index export`` reading
the bucket. Nothing secret lands in the index, the run report, the page or the output."""

from __future__ import annotations

import hashlib
import json

import pytest
from typer.testing import CliRunner

from assetgen.store import root as root_mod
from assetgen.store import wav

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

MANIFEST = """scene,asset,model,prompt,duration_s,layer,gain_db
ui,click,sfx,short wooden button click,1,,
tavern,crowd,sfx,tavern crowd chatter,1,ambience,-2
tavern,mugs,sfx,clinking mugs,1,foley,-4
tavern,mix,mix,,,,
"""


def run(*args):
    from assetgen.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def objects(url: str) -> dict[str, dict]:
    return root_mod.RemoteFiles(url).listing()


def test_render_rerun_report_export_from_a_bucket(s3_root, seaweed, tiny_models, tmp_path):
    from assetgen.store.index import Index

    manifest = tmp_path / "small.csv"
    manifest.write_text(MANIFEST)
    render = ("render", manifest, "--out", s3_root, "--model-dir", tiny_models, "--no-progress", "--fail-on", "error")
    first = run(*render)
    assert first.exit_code == 0, first.output
    assert f"into {s3_root}" in first.output
    listing = objects(s3_root)
    files = root_mod.RemoteFiles(s3_root)
    work = root_mod.writer_root(s3_root)
    rows = Index(work).rows()
    assert sorted(r["asset"] for r in rows) == ["click", "crowd", "mix", "mugs"]
    for r in rows:  # every row's object holds its bytes, published whole
        data = files.read_bytes(r["path"])
        assert hashlib.sha256(data).hexdigest() == r["sha256"] and wav.audio_intact(data)
    assert {k for k in listing if k.endswith(".wav")} == {r["path"] for r in rows}
    assert not [k for k in listing if ".tmp-" in k] and root_mod.LOCK_KEY not in listing
    runs = [k for k in listing if k.startswith("runs/") and k.endswith(".json") and "latest" not in k]
    assert len(runs) == 1 and "index.sqlite" in listing
    # the snapshot in the bucket is the working folder's index
    snap = tmp_path / "snap" / "index.sqlite"
    snap.parent.mkdir()
    snap.write_bytes(files.read_bytes("index.sqlite"))
    assert {(r["path"], r["sha256"]) for r in Index(snap.parent).rows()} == {(r["path"], r["sha256"]) for r in rows}

    again = run(*render)
    assert again.exit_code == 0, again.output
    assert "rendered 0 new version(s)" in again.output
    after = objects(s3_root)
    assert {k: v["ETag"] for k, v in after.items() if k.endswith(".wav")} == \
        {k: v["ETag"] for k, v in listing.items() if k.endswith(".wav")}

    page = run("report", "--out", s3_root)
    assert page.exit_code == 0, page.output
    assert page.output.strip() == f"{s3_root}/report/index.html"
    html = files.read_bytes("report/index.html").decode()
    assert all(r["asset"] in html for r in rows)

    engine = tmp_path / "engine"
    exported = run("export", "--to", engine, "--out", s3_root, "--all-latest", "--include-failing")
    assert exported.exit_code == 0, exported.output
    for r in rows:
        dest = engine / f"{r['scene']}_{r['asset']}.wav"
        assert hashlib.sha256(dest.read_bytes()).hexdigest() == r["sha256"]

    table = run("index", "export", "--out", s3_root)
    assert table.exit_code == 0, table.output
    assert table.output.strip() == f"{s3_root}/index.csv"
    assert len(files.read_bytes("index.csv").decode().strip().splitlines()) == len(rows) + 1

    checked = run("qc", "--out", s3_root, "--json")
    assert json.loads(checked.output)["checks"], checked.output

    # a decision made from another machine's folder reaches the bucket's snapshot, and exports from it
    approved = run("approve", "ui/click", "--out", s3_root, "--index", tmp_path / "desk" / "index.sqlite",
                   "--force", "--reason", "placeholder accepted for the test")
    assert approved.exit_code == 0, approved.output
    only = tmp_path / "approved"
    exported = run("export", "--to", only, "--out", s3_root, "--include-failing")  # placeholder audio
    assert exported.exit_code == 0, exported.output
    assert sorted(p.name for p in only.glob("*.wav")) == ["ui_click.wav"]

    # a second render of the same bucket root is refused while the lock object is held
    from assetgen.store import AssetStore

    holder = AssetStore(root_mod.writer_root(s3_root, tmp_path / "holder" / "index.sqlite"))
    with holder.lock(wait=False):
        refused = run("render", manifest, "--out", s3_root, "--model-dir", tiny_models, "--no-progress", "--no-wait")
    assert refused.exit_code == 2 and "in use by another assetgen process" in refused.output, refused.output

    secret = seaweed.env["AWS_SECRET_ACCESS_KEY"].encode()
    key_id = seaweed.env["AWS_ACCESS_KEY_ID"].encode()
    texts = [files.read_bytes(k) for k in objects(s3_root) if not k.endswith(".wav")]
    texts += [p.read_bytes() for p in work.rglob("*") if p.is_file()]
    texts += [o.encode() for o in (first.output, again.output, page.output, exported.output, refused.output)]
    assert not [t for t in texts if secret in t or key_id in t]


def test_dask_workers_write_into_the_bucket(s3_root, seaweed, tiny_models, tmp_path, monkeypatch):
    """`--runner dask` into a bucket: each worker stages its takes in the bucket itself (the flow process stages
    nothing), the flow publishes them by server-side copy, and no staged object is left."""
    from assetgen.store.index import Index

    staged_by_flow: list[str] = []
    original = root_mod.RemoteFiles.stage
    monkeypatch.setattr(root_mod.RemoteFiles, "stage",
                        lambda self, rel, data: staged_by_flow.append(rel) or original(self, rel, data))
    manifest = tmp_path / "small.csv"
    manifest.write_text(MANIFEST)
    result = run("render", manifest, "--out", s3_root, "--model-dir", tiny_models, "--no-progress", "--fail-on",
                 "error", "--runner", "dask", "--workers", "2", "--batch-size", "2")
    assert result.exit_code == 0, result.output
    assert staged_by_flow == []
    files = root_mod.RemoteFiles(s3_root)
    rows = Index(root_mod.writer_root(s3_root)).rows()
    assert sorted(r["asset"] for r in rows) == ["click", "crowd", "mix", "mugs"]
    for r in rows:
        assert hashlib.sha256(files.read_bytes(r["path"])).hexdigest() == r["sha256"]
    listing = objects(s3_root)
    assert {k for k in listing if k.endswith(".wav")} == {r["path"] for r in rows}  # nothing staged is left
