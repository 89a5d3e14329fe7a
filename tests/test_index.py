"""Index: versions, latest/approved queries, status, failures, runs, export, readers during a write."""

from __future__ import annotations

import json
import sqlite3

import pandas as pd
import pytest

from assetgen.store.index import (COLUMNS, SCHEMA_VERSION, Index, IndexConflictError, IndexLookupError,
                                  IndexSchemaError)


def _row(scene="forest", asset="birds", key="k1", **extra):
    return {"scene": scene, "asset": asset, "path": f"{scene}/{asset}/{asset}_{key}.wav", "content_key": key,
            "sha256": "0" * 64, **extra}


def test_reads_on_missing_index_are_empty_and_create_nothing(tmp_path):
    index = Index(tmp_path / "out")
    assert index.rows() == [] and index.latest_keys() == {} and index.get("a", "b") is None
    assert index.failures() == [] and index.next_version("a", "b") == 1
    assert not (tmp_path / "out").exists()


def test_versions_are_contiguous_and_latest_is_highest(tmp_path):
    index = Index(tmp_path)
    rows = [index.add_version(_row(key=f"k{i}")) for i in range(1, 4)]
    index.add_version(_row(asset="wind", key="w1"))
    assert [r["version"] for r in rows] == [1, 2, 3]
    assert [r["version"] for r in index.history("forest", "birds")] == [1, 2, 3]
    assert index.latest_keys() == {"forest/birds": "k3", "forest/wind": "w1"}
    assert index.get("forest", "birds")["content_key"] == "k3"
    assert index.get("forest", "birds", 2)["content_key"] == "k2"
    assert [(r["asset"], r["version"]) for r in index.rows(latest_only=True)] == [("birds", 3), ("wind", 1)]
    assert index.rows(scene="ocean") == []
    assert index.next_version("forest", "birds") == 4


def test_duplicate_content_key_and_gaps_are_refused(tmp_path):
    index = Index(tmp_path)
    index.add_version(_row(key="k1"))
    with pytest.raises(IndexConflictError, match="already the latest version"):
        index.add_version(_row(key="k1") | {"path": "other.wav"})
    with pytest.raises(IndexConflictError, match="contiguous"):
        index.add_version(_row(key="k2", version=3))
    with pytest.raises(IndexConflictError, match="sha256"):
        index.add_version({"scene": "a", "asset": "b", "path": "p", "content_key": "k"})
    assert len(index.rows()) == 1


def test_json_columns_and_placeholder_are_stored_as_text_and_int(tmp_path):
    index = Index(tmp_path)
    row = index.add_version(_row(params={"gen": {"duration_s": 2.0}}, tags=("a", "b"), placeholder=True,
                                 model="music (placeholder)"))
    assert json.loads(row["params"]) == {"gen": {"duration_s": 2.0}}
    assert json.loads(row["tags"]) == ["a", "b"] and row["placeholder"] == 1
    assert row["created_at"].endswith("Z") and row["status"] == "rendered" and row["file_state"] == "ok"


def test_set_status_and_latest_approved(tmp_path):
    index = Index(tmp_path)
    for i in range(1, 4):
        index.add_version(_row(key=f"k{i}"))
    assert index.latest_approved("forest", "birds") is None
    assert index.set_status("forest", "birds", 1, "approved")["status"] == "approved"
    assert index.set_status("forest", "birds", None, "rejected")["version"] == 3
    assert index.latest_approved("forest", "birds")["version"] == 1
    index.set_status("forest", "birds", 2, "approved")
    assert index.latest_approved("forest", "birds")["version"] == 2
    assert index.get("forest", "birds")["status"] == "rejected"  # latest stays a query, not a copy
    with pytest.raises(IndexLookupError, match="no such version"):
        index.set_status("forest", "birds", 9, "approved")
    with pytest.raises(IndexLookupError, match="no such asset"):
        index.set_status("forest", "nope", None, "approved")
    with pytest.raises(IndexLookupError, match="expected one of"):
        index.set_status("forest", "birds", 1, "great")


def test_missing_latest_file_drops_out_of_latest_keys(tmp_path):
    index = Index(tmp_path)
    index.add_version(_row(key="k1"))
    index.add_version(_row(key="k2"))
    index.set_file_state("forest", "birds", 2, "missing")
    assert index.latest_keys() == {}
    index.set_file_state("forest", "birds", 2, "ok", sha256="f" * 64)
    assert index.latest_keys() == {"forest/birds": "k2"} and index.get("forest", "birds")["sha256"] == "f" * 64


def test_failures_and_runs(tmp_path):
    index = Index(tmp_path)
    run = index.start_run()
    index.record_failure(run, "forest", "birds", "k1", "generate", "RuntimeError: boom")
    index.record_failure("other", "ocean", "waves", None, "dsp", "bad")
    assert [(f["asset"], f["stage"], f["error"]) for f in index.failures(run)] == \
        [("birds", "generate", "RuntimeError: boom")]
    assert len(index.failures()) == 2
    index.finish_run(run, {"new": 3})
    index.finish_run("never-started", {"new": 0})
    runs = {r["run_id"]: r for r in index.runs()}
    assert json.loads(runs[run]["counts"]) == {"new": 3} and runs[run]["finished_at"] >= runs[run]["started_at"]
    assert set(runs) == {run, "other", "never-started"}


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_round_trips(tmp_path, fmt):
    index = Index(tmp_path)
    index.add_version(_row(key="k1", lufs=-23.0, loop_start=0, loop_end=48000, tags=["x"]))
    index.add_version(_row(asset="wind", key="w1", lufs=-18.5))
    out = index.export(tmp_path / "dump" / f"index.{fmt}", fmt)
    frame = pd.read_csv(out) if fmt == "csv" else pd.read_parquet(out)
    assert list(frame.columns) == list(COLUMNS)
    assert list(frame["content_key"]) == ["k1", "w1"] and list(frame["lufs"]) == [-23.0, -18.5]
    assert list(frame["path"]) == [r["path"] for r in index.rows()]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]
    with pytest.raises(ValueError, match="csv or parquet"):
        index.export(tmp_path / "x.xlsx", "xlsx")


def test_readers_see_committed_state_while_a_writer_holds_a_transaction(tmp_path):
    index = Index(tmp_path)
    index.add_version(_row(key="k1"))
    writer = sqlite3.connect(index.path, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE assets SET content_key = 'uncommitted'")
        assert index.latest_keys() == {"forest/birds": "k1"}  # WAL: no block, no dirty read
        writer.execute("COMMIT")
    finally:
        writer.close()
    assert index.latest_keys() == {"forest/birds": "uncommitted"}


def test_keep_open_keeps_the_wal_between_commits_and_checkpoints_once_at_the_end(tmp_path):
    index = Index(tmp_path / "out")
    wal = index.path.with_name(index.path.name + "-wal")
    index.add_version(_row(key="k1"))
    assert not wal.exists()  # the last connection closed: checkpointed into the database, WAL deleted
    with index.keep_open():
        index.add_version(_row(key="k2"))
        assert wal.exists() and wal.stat().st_size > 0  # not checkpointed and deleted per commit
        index.add_version(_row(asset="wind", key="w1"))
        other = sqlite3.connect(index.path)  # a reader elsewhere sees every committed row meanwhile
        assert other.execute("SELECT COUNT(*) FROM assets").fetchone()[0] == 3
        other.close()
    assert not wal.exists()
    assert [r["version"] for r in Index(tmp_path / "out").history("forest", "birds")] == [1, 2]


def test_keep_open_creates_a_missing_index(tmp_path):
    index = Index(tmp_path / "new")
    with index.keep_open():
        assert index.path.exists() and index.rows() == []
        index.add_version(_row())
    assert index.get("forest", "birds")["version"] == 1


def test_newer_schema_is_refused_clearly(tmp_path):
    index = Index(tmp_path)
    index.add_version(_row())
    con = sqlite3.connect(index.path)
    con.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    con.commit()
    con.close()
    with pytest.raises(IndexSchemaError, match="newer"):
        index.rows()


def test_cli_index_export_and_status_errors(tmp_path):
    from typer.testing import CliRunner

    from assetgen.cli import app

    index = Index(tmp_path)
    index.add_version(_row(key="k1"))
    index.add_version(_row(key="k2"))
    runner = CliRunner()
    done = runner.invoke(app, ["index", "export", "--out", str(tmp_path), "--format", "csv"])
    assert done.exit_code == 0, done.output
    assert list(pd.read_csv(tmp_path / "index.csv")["version"]) == [1, 2]
    bad = runner.invoke(app, ["approve", "forest/birds@v7", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "no such version (have v1..v2)" in bad.output
    good = runner.invoke(app, ["approve", "forest/birds@v1", "--out", str(tmp_path)])
    assert good.exit_code == 0 and index.latest_approved("forest", "birds")["version"] == 1
