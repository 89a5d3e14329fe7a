"""End to end on the tiny models: `assetgen render` writes ROOT/runs/<run_id>.json (schema-valid) and .junit.xml
(read with junitparser) over the whole set, exits by --fail-on, and orphans are listed, retired and left out of
export."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
from pathlib import Path

import jsonschema
import junitparser
import pytest
from typer.testing import CliRunner

from tests.conftest import REPO

pytestmark = pytest.mark.slow
SCHEMA = json.loads((REPO / "docs" / "run-report.schema.json").read_text())
HEADER = "scene,asset,model,prompt,duration_s\n"
ROWS = {"s/a": "s,a,sfx,a door creaks,1\n", "s/b": "s,b,sfx,rain on a window,1\n", "t/c": "t,c,sfx,a bell rings,1\n"}


def run(*args):
    from assetgen.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def manifest(path: Path, *idents: str, extra: str = "") -> Path:
    path.write_text(HEADER + "".join(ROWS[i] for i in idents) + extra)
    return path


def render(m: Path, root: Path, models: Path, *flags: str):
    return run("render", m, "--out", root, "--model-dir", models, "--no-progress", *flags)


def run_report(root: Path, output: str) -> tuple[dict, junitparser.JUnitXml]:
    """The JSON and JUnit XML of the run a render's output names, checked against each other and the schema."""
    found = re.search(r"run report: (\S+\.json) \(JUnit: (\S+\.junit\.xml)\)", output)
    assert found, output
    json_path, xml_path = Path(found[1]), Path(found[2])
    assert json_path.parent == xml_path.parent == root / "runs"
    assert (root / "runs" / "latest.junit.xml").read_bytes() == xml_path.read_bytes()
    report = json.loads(json_path.read_text())
    jsonschema.validate(report, SCHEMA)
    assert json_path.name == f"{report['run_id']}.json"
    xml = junitparser.JUnitXml.fromfile(str(xml_path))
    assert xml.tests == len(report["assets"]) == report["counts"]["assets"]
    cases = sorted((c.classname, c.name) for suite in xml for c in suite)
    assert cases == sorted((a["scene"], a["asset"]) for a in report["assets"])
    return report, xml


def by_ident(report: dict) -> dict[str, dict]:
    return {f"{a['scene']}/{a['asset']}": a for a in report["assets"]}


def test_run_reports_exit_codes_and_orphans_on_real_renders(tmp_path, tiny_models):
    from assetgen.store.index import Index

    root = tmp_path / "out"
    full = manifest(tmp_path / "full.csv", "s/a", "s/b", "t/c")
    first = render(full, root, tiny_models)
    assert first.exit_code == 0, first.output
    report, xml = run_report(root, first.output)
    assert {i: a["status"] for i, a in by_ident(report).items()} == {"s/a": "rendered", "s/b": "rendered",
                                                                   "t/c": "rendered"}
    assert (xml.failures, xml.errors, xml.skipped) == (0, 0, 0)
    rows = {f"{r['scene']}/{r['asset']}": r for r in Index(root).rows()}
    for ident, entry in by_ident(report).items():
        row = rows[ident]
        assert (entry["version"], entry["path"], entry["content_key"]) == (1, row["path"], row["content_key"])
        assert hashlib.sha256((root / entry["path"]).read_bytes()).hexdigest() == row["sha256"]
        assert entry["lufs"] == row["lufs"] and entry["duration_s"] == row["duration_s"] == 1.0
        assert entry["version_run_id"] == report["run_id"] and entry["placeholder"] is True

    # the gates' verdict on s/a (as the QC stage stores it): the next render of the same manifest renders
    # nothing, still lists the whole set, and signals the failure by --fail-on
    con = sqlite3.connect(root / "index.sqlite")
    con.execute("UPDATE assets SET qc = 'fail', qc_reasons = ? WHERE scene = 's' AND asset = 'a'",
                (json.dumps(["silence: -71.2 dBFS RMS below -60 dBFS"]),))
    con.commit()
    con.close()
    again = render(full, root, tiny_models)
    assert again.exit_code == 1, again.output
    assert "rendered 0 new version(s)" in again.output
    assert "1 asset(s) fail QC:\n  s/a: silence: -71.2 dBFS RMS below -60 dBFS" in again.output
    report, xml = run_report(root, again.output)
    assert {i: a["status"] for i, a in by_ident(report).items()} == {"s/a": "up-to-date", "s/b": "up-to-date",
                                                                   "t/c": "up-to-date"}
    assert report["counts"]["qc_failed"] == 1 and (xml.failures, xml.errors) == (1, 0)
    (failure,) = [c for suite in xml for c in suite if c.name == "a"][0].result
    assert failure.message == "QC failed: silence: -71.2 dBFS RMS below -60 dBFS"
    assert render(full, root, tiny_models, "--fail-on", "error").exit_code == 0

    # t/c leaves the manifests: orphaned since this run, listed by plan, retired, left out of export
    small = manifest(tmp_path / "small.csv", "s/a", "s/b")
    dropped = render(small, root, tiny_models, "--fail-on", "never")
    assert dropped.exit_code == 0, dropped.output
    assert "1 asset(s) in the index are in none of the manifests" in dropped.output
    report, xml = run_report(root, dropped.output)
    orphan = by_ident(report)["t/c"]
    assert orphan["status"] == "orphaned" and orphan["orphaned_since"]["run_id"] == report["run_id"]
    assert orphan["path"] == rows["t/c"]["path"] and xml.skipped == 1
    plan = run("plan", small, "--out", root, "--model-dir", tiny_models)
    assert plan.exit_code == 0, plan.output
    assert f"  t/c  not in the manifest since run {report['run_id']}" in plan.output
    retired = run("retire", "--orphans", "--out", root, small)
    assert retired.exit_code == 0 and "retired 1 asset(s): t/c" in retired.output, retired.output
    exported = run("export", "--all-latest", "--include-failing", "--to", tmp_path / "engine", "--out", root)
    assert exported.exit_code == 0, exported.output
    assert sorted(p.name for p in (tmp_path / "engine").glob("*.wav")) == ["s_a.wav", "s_b.wav"]
    assert "left out 1 retired asset(s): t/c" in exported.output
    assert (root / rows["t/c"]["path"]).is_file()  # files kept
    assert run("report", "--out", root).exit_code == 0
    assert re.search(r'data-asset="c"[^>]*data-lifecycle="retired"', (root / "report" / "index.html").read_text())
    later, _ = run_report(root, render(small, root, tiny_models, "--fail-on", "never").output)
    assert by_ident(later)["t/c"]["status"] == "retired"
    assert by_ident(later)["t/c"]["orphaned_since"]["run_id"] == report["run_id"]  # since the first absence

    # named again: no longer orphaned nor retired
    assert "retired but named by these manifests (a render un-retires them): t/c" in \
        run("plan", full, "--out", root, "--model-dir", tiny_models).output
    back = render(full, root, tiny_models, "--fail-on", "error")
    assert back.exit_code == 0 and "no longer retired: t/c" in back.output, back.output
    report, _ = run_report(root, back.output)
    assert by_ident(report)["t/c"]["status"] == "up-to-date" and Index(root).retired() == {}


def test_a_generation_error_is_a_junit_error_and_fail_on_decides_the_exit_code(tmp_path, tiny_models):
    broken = tmp_path / "broken_model"
    shutil.copytree(tiny_models / "sfx", broken)
    (broken / "state_dict.bin").write_bytes(b"")
    m = manifest(tmp_path / "m.csv", "s/a", extra=f"bad,two,{broken},a door slams,1\n")
    root = tmp_path / "out"
    never = render(m, root, tiny_models, "--fail-on", "never")
    assert never.exit_code == 0 and "bad/two [generate] EOFError: loading model" in never.output, never.output
    report, xml = run_report(root, never.output)
    bad = by_ident(report)["bad/two"]
    assert (bad["status"], bad["stage"], bad["version"]) == ("failed", "generate", None)
    assert bad["error"].startswith("EOFError: loading model ")
    assert (xml.errors, xml.failures) == (1, 0)
    (error,) = [c for suite in xml for c in suite if (c.classname, c.name) == ("bad", "two")][0].result
    assert isinstance(error, junitparser.Error) and error.message == bad["error"]
    assert render(m, root, tiny_models, "--fail-on", "error").exit_code == 1
    bad_flag = render(m, root, tiny_models, "--fail-on", "sometimes")
    assert bad_flag.exit_code == 2 and "--fail-on 'sometimes': expected one of error, qc, never" in bad_flag.output
    assert len(list((root / "runs").glob("*.json"))) == 3  # two runs and latest: the refused run wrote nothing
