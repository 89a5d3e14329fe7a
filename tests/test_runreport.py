"""Run reports (ROOT/runs/<run_id>.json + .junit.xml) over a real store, read back with jsonschema and junitparser;
the render's exit-code decision."""

from __future__ import annotations

import json
import sqlite3

import jsonschema
import junitparser
import numpy as np
import pytest

from assetgen import render, runreport
from assetgen.plan import Plan, PlanItem
from assetgen.render import Failure, Prepared
from assetgen.spec import AssetSpec, GenParams, PostParams, ProcessedAudio
from assetgen.store import AssetStore
from tests.conftest import REPO

SCHEMA = json.loads((REPO / "docs" / "run-report.schema.json").read_text())


@pytest.mark.parametrize("errors, qc_failed, fail_on, code", [
    (0, 0, "qc", 0), (0, 2, "qc", 1), (1, 0, "qc", 1), (1, 3, "qc", 1),
    (0, 2, "error", 0), (1, 0, "error", 1), (1, 2, "error", 1),
    (0, 0, "never", 0), (4, 5, "never", 0),
])
def test_exit_code_by_fail_on(errors, qc_failed, fail_on, code):
    assert runreport.exit_code(errors, qc_failed, fail_on) == code


def test_failure_message_follows_fail_on():
    failed = [{"asset": "fx/a"}]
    qc_failed = [{"asset": f"fx/q{i}"} for i in range(12)]
    assert runreport.failure_message([], [], "qc") == ""
    assert runreport.failure_message([], qc_failed, "error") == ""
    assert runreport.failure_message(failed, qc_failed, "never") == ""
    assert runreport.failure_message(failed, qc_failed, "error") == "1 asset(s) failed: fx/a"
    both = runreport.failure_message(failed, qc_failed, "qc")
    assert both.startswith("1 asset(s) failed: fx/a; 12 asset(s) failed QC: fx/q0, fx/q1")
    assert both.endswith("fx/q9")  # at most 10 names


def test_exit_code_refuses_an_unknown_mode():
    with pytest.raises(ValueError, match="--fail-on 'warn': expected one of error, qc, never"):
        runreport.exit_code(0, 0, "warn")


def spec(scene: str, asset: str, loop: bool = False) -> AssetSpec:
    return AssetSpec(scene=scene, asset=asset, model="sfx", prompt=f"{asset} sound", seed=7,
                     gen=GenParams(duration_s=0.5), post=PostParams(loop=loop))


def processed(seed: int, loop: bool = False) -> ProcessedAudio:
    audio = (0.1 * np.random.default_rng(seed).standard_normal((1, 24000))).astype(np.float32)
    return ProcessedAudio(audio=audio, sample_rate=48000, lufs=-23.0 + seed / 10, true_peak_dbtp=-3.5,
                          loop_start=0 if loop else None, loop_end=24000 if loop else None,
                          seam_score=0.12 if loop else None)


def land(store, item, run_id, seed=0) -> render.Outcome:
    return render.record_outcome(store, item, processed(seed, item.spec.post.loop), model_label="sfx",
                                 placeholder=True, run_id=run_id)


def set_qc(root, scene, asset, qc, reasons):
    con = sqlite3.connect(root / "index.sqlite")
    con.execute("UPDATE assets SET qc = ?, qc_reasons = ? WHERE scene = ? AND asset = ?",
                (qc, json.dumps(reasons), scene, asset))
    con.commit()
    con.close()


def add_attempts(root, run_id, scene, asset, key, passed: list[bool]):
    con = sqlite3.connect(root / "index.sqlite")
    chosen = max(range(len(passed)), key=lambda i: (passed[i], -i))
    con.executemany("INSERT INTO attempts (run_id, scene, asset, content_key, attempt, seed, passed, gates, chosen, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'now')",
                    [(run_id, scene, asset, key, i + 1, 100 + i, int(p),
                      json.dumps({"silence": {"passed": p, "value": -80.0 if not p else -20.0, "threshold": -60.0}}),
                      int(i == chosen)) for i, p in enumerate(passed)])
    con.commit()
    con.close()


@pytest.fixture
def two_runs(tmp_path):
    """run1 lands four assets; run2's manifests name three of them and a new one that fails."""
    root = tmp_path / "out"
    store = AssetStore(root)
    up, loop, gone, cut = (PlanItem(spec("forest", "birds"), "k-birds", "new"),
                           PlanItem(spec("forest", "wind", loop=True), "k-wind1", "new"),
                           PlanItem(spec("town", "bell"), "k-bell", "new"),
                           PlanItem(spec("town", "cart"), "k-cart", "new"))
    store.index.start_run("run1")
    for i, it in enumerate((up, loop, gone, cut)):
        land(store, it, "run1", i)
    set_qc(root, "forest", "birds", "fail", ["loudness -19.9 LUFS is 3.1 LU off the -23.0 LUFS target (± 0.5 LU)"])
    store.index.record_presence(["forest/birds", "forest/wind", "town/bell", "town/cart"], "run1")
    store.index.finish_run("run1")
    store.index.retire(["town/cart"], user="jo", reason="cut from the level")

    run2 = "run2"
    store.index.start_run(run2)
    wind2 = PlanItem(spec("forest", "wind", loop=True), "k-wind2", "changed")
    broken = PlanItem(spec("forest", "owl"), "k-owl", "new")
    outcomes = [land(store, wind2, run2, 9),
                render.record_failure(store, broken, Failure("generate", "EOFError", "loading model 'sfx'"), run2)]
    add_attempts(root, run2, "forest", "wind", "k-wind2", [False, True])
    add_attempts(root, run2, "forest", "owl", "k-owl", [False])
    set_qc(root, "forest", "wind", "pass", [])
    items = [PlanItem(up.spec, up.key, "up-to-date"), wind2, broken]
    prepared = Prepared(specs=[i.spec for i in items], plan=Plan(items), batches=[], mixes=[], models={},
                        fingerprints={})
    store.index.finish_run(run2)
    return store, prepared, outcomes


def test_report_lists_the_whole_set_and_validates_against_its_schema(two_runs):
    store, prepared, outcomes = two_runs
    result = runreport.finish(store, prepared, outcomes, "run2", ["manifests/forest.csv"])
    assert result["json"] == "runs/run2.json" and result["junit"] == "runs/run2.junit.xml"
    report = json.loads((store.root / result["json"]).read_text())
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.validate(report, SCHEMA)
    by = {f"{e['scene']}/{e['asset']}": e for e in report["assets"]}
    assert {k: e["status"] for k, e in by.items()} == {
        "forest/birds": "up-to-date", "forest/wind": "rendered", "forest/owl": "failed",
        "town/bell": "orphaned", "town/cart": "retired"}
    assert report["counts"] == {"rendered": 1, "up-to-date": 1, "failed": 1, "orphaned": 1, "retired": 1,
                                "qc_failed": 1, "assets": 5}
    rows = {f"{r['scene']}/{r['asset']}": r for r in store.index.rows(latest_only=True)}
    birds = by["forest/birds"]
    assert (birds["qc"], birds["version"], birds["path"]) == ("fail", 1, rows["forest/birds"]["path"])
    assert birds["qc_reasons"] == ["loudness -19.9 LUFS is 3.1 LU off the -23.0 LUFS target (± 0.5 LU)"]
    assert birds["lufs"] == rows["forest/birds"]["lufs"] and birds["duration_s"] == 0.5
    wind = by["forest/wind"]
    assert (wind["version"], wind["content_key"], wind["version_run_id"]) == (2, "k-wind2", "run2")
    assert wind["seam_score"] == pytest.approx(0.12) and wind["qc"] == "pass"
    assert [(a["attempt"], a["seed"], a["passed"], a["chosen"]) for a in wind["attempts"]] == \
        [(1, 100, False, False), (2, 101, True, True)]
    assert wind["attempts"][0]["gates"]["silence"] == {"passed": False, "value": -80.0, "threshold": -60.0}
    owl = by["forest/owl"]
    assert (owl["stage"], owl["error"], owl["version"]) == ("generate", "EOFError: loading model 'sfx'", None)
    assert [a["passed"] for a in owl["attempts"]] == [False]
    assert by["town/bell"]["orphaned_since"]["run_id"] == "run2" and by["town/bell"]["retired"] is None
    assert by["town/cart"]["retired"]["user"] == "jo" and by["town/cart"]["orphaned_since"]["run_id"] == "run2"
    assert result["qc_failed"] == [{"asset": "forest/birds", "reasons": birds["qc_reasons"]}]
    assert result["orphaned"] == ["town/bell"] and result["retired"] == ["town/cart"]
    assert runreport.exit_code(report["counts"]["failed"], report["counts"]["qc_failed"], "error") == 1
    runs = store.root / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["latest.json", "latest.junit.xml", "run2.json",
                                                      "run2.junit.xml"]
    assert (runs / "latest.json").read_bytes() == (runs / "run2.json").read_bytes()
    assert (runs / "latest.junit.xml").read_bytes() == (runs / "run2.junit.xml").read_bytes()


def test_junit_xml_parses_with_one_case_per_asset(two_runs):
    store, prepared, outcomes = two_runs
    result = runreport.finish(store, prepared, outcomes, "run2")
    xml = junitparser.JUnitXml.fromfile(str(store.root / result["junit"]))
    suites = {s.name: s for s in xml}
    assert sorted(suites) == ["forest", "town"]
    assert (xml.tests, xml.failures, xml.errors, xml.skipped) == (5, 1, 1, 2)
    assert (suites["forest"].tests, suites["forest"].failures, suites["forest"].errors) == (3, 1, 1)
    cases = {(c.classname, c.name): c for s in xml for c in s}
    assert sorted(cases) == [("forest", "birds"), ("forest", "owl"), ("forest", "wind"), ("town", "bell"),
                             ("town", "cart")]
    (failure,) = cases["forest", "birds"].result
    assert isinstance(failure, junitparser.Failure) and failure.type == "qc"
    assert failure.message == "QC failed: loudness -19.9 LUFS is 3.1 LU off the -23.0 LUFS target (± 0.5 LU)"
    (error,) = cases["forest", "owl"].result
    assert isinstance(error, junitparser.Error) and error.type == "generate"
    assert error.message == "EOFError: loading model 'sfx'"
    wind = cases["forest", "wind"]
    assert wind.is_passed and "attempt 2: seed 101, passed, chosen" in wind.system_out
    (skip,) = cases["town", "bell"].result
    assert isinstance(skip, junitparser.Skipped) and skip.message == "not in the manifest since run run2"
    assert cases["town", "cart"].result[0].message == "retired; not in the manifest since run run2"


def test_qc_not_evaluated_passes_and_non_finite_figures_become_null(tmp_path):
    store = AssetStore(tmp_path)
    item = PlanItem(spec("forest", "birds"), "k1", "new")
    outcome = land(store, item, "r1")
    row = dict(store.index.get("forest", "birds"), lufs=float("-inf"))
    report = runreport.build("r1", [item], [outcome], {"forest/birds": row}, {}, {}, {})
    jsonschema.validate(report, SCHEMA)
    (entry,) = report["assets"]
    assert (entry["status"], entry["qc"], entry["lufs"], report["counts"]["qc_failed"]) == ("rendered", None, None, 0)
    xml = junitparser.JUnitXml.fromstring(runreport.junit_xml(report))
    assert [c.is_passed for s in xml for c in s] == [True]


def test_run_ids_must_be_one_file_name(tmp_path):
    for bad in ("../x", "a/b", "", ".hidden", "latest"):
        with pytest.raises(ValueError, match="run id"):
            runreport.report_paths(tmp_path, bad)
    assert runreport.report_paths(tmp_path, "abc123")[0] == tmp_path / "runs" / "abc123.json"


def test_a_stem_set_failing_its_set_check_is_a_qc_failure_of_each_member(tmp_path):
    """Two stems of one set with different lengths: each member fails QC in the run report (reason
    stem_set: ...), so --fail-on qc exits 1 and JUnit shows the failure; a passing set adds nothing."""
    sr = 48_000
    t = np.arange(2 * sr) / sr
    tone = (0.2 * np.sin(2 * np.pi * 120 * t)).astype(np.float32)  # 120 Hz: whole cycles in 2 s and 1.5 s
    store = AssetStore(tmp_path)
    items = []
    with store.lock():
        for name, n in (("bass", 2 * sr), ("pad", 2 * sr), ("drums", 3 * sr // 2)):
            spec = AssetSpec("m", name, "sfx", "x", 1, GenParams(2.0),
                             PostParams(loop=True, stem_set="groove" if name != "drums" else "beat"))
            audio = np.stack([tone[:n], tone[:n]])
            store.commit(spec, f"k-{name}", ProcessedAudio(audio, sr, -23.0, -10.0, loop_start=0, loop_end=n,
                                                           qc="pass"),
                         model_label="sfx", placeholder=False, run_id="r", params={})
            items.append(PlanItem(spec, f"k-{name}", "up-to-date"))
    assert runreport.stem_set_failures(store, items) == {}  # groove: equal lengths; beat: one stem
    odd = AssetSpec("m", "lead", "sfx", "x", 1, GenParams(2.0), PostParams(loop=True, stem_set="beat"))
    with store.lock():
        store.commit(odd, "k-lead", ProcessedAudio(np.stack([tone, tone]), sr, -23.0, -10.0, loop_start=0,
                                                   loop_end=2 * sr, qc="pass"),
                     model_label="sfx", placeholder=False, run_id="r", params={})
    items.append(PlanItem(odd, "k-lead", "up-to-date"))
    failures = runreport.stem_set_failures(store, items)
    assert set(failures) == {"m/drums", "m/lead"} and failures["m/lead"][0].startswith("lengths differ: ")
    latest = {f"m/{r['asset']}": r for r in store.index.rows(latest_only=True)}
    report = runreport.build("r", items, [], latest, {}, {}, {}, set_failures=failures)
    jsonschema.validate(report, SCHEMA)
    by = {e["asset"]: e for e in report["assets"]}
    assert by["lead"]["qc"] == "fail" and by["lead"]["qc_reasons"] == [f"stem_set: {r}" for r in failures["m/lead"]]
    assert by["lead"]["qc_reasons"][1].startswith("stem_set: loop points differ: ")
    assert by["bass"]["qc"] == "pass" and report["counts"]["qc_failed"] == 2
    assert runreport.exit_code(0, report["counts"]["qc_failed"], "qc") == 1
