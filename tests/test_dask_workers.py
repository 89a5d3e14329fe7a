"""`--runner dask` on a 2-worker LocalCluster: the workers generate, post-process and write; the flow only
publishes and indexes. Also a SIGKILL of the flow mid-run, then a re-run: a consistent root, no staging left."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.test_crash_render import _env, prefect_api  # noqa: F401 (fixture)
from tests.test_staging import contains_samples

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
# demo rows: two variants of one row (the tiny models make near-duplicates of them: re-rolls), a one-shot, two
# layers and their mix
MANIFEST = """scene,asset,model,prompt,duration_s,layer,gain_db,loudness,channels,variants,category,tags
ui,click,sfx,short wooden button click,2,,,aswg-mobile,1,,ui,"ui,oneshot"
combat,sting,music,tense orchestral sting with timpani,2,,,ebu-r128,2,2,music,sting
tavern,lute,music,cheerful lute and fiddle tavern music,3,music,-4.4,ebu-r128,2,,music,tavern
tavern,crowd,sfx,tavern crowd chatter with clinking mugs,3,ambience,-1.9,ebu-r128,2,,ambience,tavern
tavern,mix,mix,,,,,ebu-r128,2,,scene,tavern
"""
IDENTS = {"combat/sting__v01", "combat/sting__v02", "ui/click", "tavern/lute", "tavern/crowd", "tavern/mix"}


@pytest.fixture
def manifest(tmp_path) -> Path:
    path = tmp_path / "small.csv"
    path.write_text(MANIFEST)
    return path


def assert_consistent(root: Path) -> list[dict]:
    """Every index row's file exists with its sha256; no temp, partial or staged file is left anywhere."""
    from assetgen.store.index import Index

    rows = Index(root).rows()
    for row in rows:
        assert row["file_state"] == "ok" and hashlib.sha256((root / row["path"]).read_bytes()).hexdigest() == row[
            "sha256"], row["path"]
    indexed = {r["path"] for r in rows}
    wavs = {p.relative_to(root).as_posix() for p in root.rglob("*.wav") if "runs" not in p.parts}
    assert wavs == indexed, "files without index rows (or staged files) left"
    assert not [p for p in root.rglob("*") if ".tmp" in p.name] and not (root / ".staging").exists()
    return rows


def test_workers_write_and_the_flow_receives_no_audio(tmp_path, tiny_models, manifest, monkeypatch):
    from assetgen.runtime import ephemeral_run_settings, prefect_env, task_runner
    from assetgen.store import AssetStore
    from flows.render import render_flow

    calls: dict[str, list] = {"stage": [], "commit": [], "commit_encoded": [], "publish": []}
    for name in calls:
        original = getattr(AssetStore, name)

        def spy(self, *args, _name=name, _original=original, **kwargs):
            calls[_name].append(args)
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(AssetStore, name, spy)
    root = tmp_path / "out"
    prefect_env(root)
    with ephemeral_run_settings():
        state = render_flow.with_options(task_runner=task_runner("dask", workers=2))(
            manifests=[str(manifest)], out=str(root), model_dir=str(tiny_models), runner="dask", batch_size=2,
            fail_on="never", return_state=True)
    summary = state.result()
    assert not summary["failed"] and summary["rendered"] == len(IDENTS)
    # the flow process staged, encoded and committed nothing: it published what the workers wrote
    assert calls["stage"] == calls["commit"] == calls["commit_encoded"] == []
    published = [args[0] for args in calls["publish"]]
    assert {f"{t.row['scene']}/{t.row['asset']}" for t in published} == IDENTS
    assert not contains_samples(published)
    rows = assert_consistent(root)
    assert {f"{r['scene']}/{r['asset']}" for r in rows} == IDENTS and {r["version"] for r in rows} == {1}
    assert any(v["attempts"] > 1 for v in summary["versions"]), "no QC re-roll happened"
    from assetgen.store.index import Index

    rerolled = [v for v in summary["versions"] if v["attempts"] > 1]
    for v in rerolled:
        attempts = Index(root).attempts(v["scene"], v["asset"])
        assert len(attempts) == v["attempts"] and sum(a["chosen"] for a in attempts) == 1


def render_cmd(root: Path, models: Path, manifest: Path) -> list[str]:
    return [sys.executable, "-m", "assetgen.cli", "render", str(manifest), "--out", str(root), "--model-dir",
            str(models), "--no-progress", "--batch-size", "2", "--fail-on", "error", "--runner", "dask",
            "--workers", "2"]


def run_render(root: Path, models: Path, manifest: Path, api: str, crash: str | None = None) -> tuple[int, str]:
    """One render in its own process group (flow, scheduler and workers), killed afterwards whatever happens."""
    env = _env({"PREFECT_API_URL": api, **({"ASSETGEN_CRASH_AT": crash} if crash else {})})
    log = root.parent / f"{root.name}-{crash or 'clean'}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(render_cmd(root, models, manifest), cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=600)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    return code, log.read_text()


def test_a_killed_dask_render_leaves_a_root_the_next_run_completes(tmp_path, tiny_models, manifest,
                                                                    prefect_api):  # noqa: F811
    root = tmp_path / "out"
    # killed when the second batch came back (its takes staged, not published), then between a publish's
    # link into place and its index row
    code, log = run_render(root, tiny_models, manifest, prefect_api, "batch-generated:2")
    assert code == -signal.SIGKILL, log[-3000:]
    staged = [p for p in (root / ".staging").rglob("*.wav")]
    assert staged, "the kill left no staged take: the crash point missed the window it tests"
    code, log = run_render(root, tiny_models, manifest, prefect_api, "after-rename:1")
    assert code == -signal.SIGKILL, log[-3000:]
    assert "unpublished staged take" in log  # the first kill's staged takes, cleared under the lock
    # what the second kill left staged depends on which batches the workers had finished by then
    left = [p for p in (root / ".staging").rglob("*.wav")]
    code, log = run_render(root, tiny_models, manifest, prefect_api)
    assert code == 0, log[-3000:]
    assert ("unpublished staged take" in log) == bool(left), log[-3000:]
    rows = assert_consistent(root)
    assert {f"{r['scene']}/{r['asset']}" for r in rows} == IDENTS
    assert sorted(r["version"] for r in rows) == [1] * len(IDENTS)
