"""Run reports and the render's exit code: the signals a CI server or a nightly job reads.

Every render writes ``ROOT/runs/<run_id>.json`` (schema: ``docs/run-report.schema.json``) and
``ROOT/runs/<run_id>.junit.xml`` (one test suite per scene, one test case per asset: classname = scene,
name = asset), atomically, when its flow finishes, and copies them to ``ROOT/runs/latest.json`` and
``latest.junit.xml``. Both list the whole set: every asset the run's manifests
name (``rendered`` this run, ``up-to-date``, or ``failed`` with its error) and every indexed asset they do
not name (``orphaned`` since a given run, or ``retired``). In the JUnit file a QC failure (``qc == "fail"``)
is a ``failure`` with the gates' reasons, a generation / post-processing / store / mix error an ``error``,
and an orphaned or retired asset ``skipped``.

:func:`exit_code` is the decision ``assetgen render --fail-on`` applies. Everything but :func:`finish` and
:func:`write` is a pure function over plain data.
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

FAIL_ON = ("error", "qc", "never")
DEFAULT_FAIL_ON = "qc"
RUNS_DIR = "runs"
LATEST = "latest"  # ROOT/runs/latest.json and latest.junit.xml: copies of the last run's report
REPORT_VERSION = 1  # the JSON's "report_version"; bump when a field changes meaning or goes away
STATUSES = ("rendered", "up-to-date", "failed", "orphaned", "retired")
FIGURES = ("lufs", "loudness_target", "true_peak_dbtp", "true_peak_target", "seam_score", "duration_s")
_RUN_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def exit_code(errors: int, qc_failed: int, fail_on: str = DEFAULT_FAIL_ON) -> int:
    """The exit code of a render that ended with ``errors`` failed assets (generation, post-processing, store or
    mix errors) and ``qc_failed`` manifest assets whose delivered take fails QC.

    ``fail_on``: ``qc`` (default) -> 1 when either is non-zero; ``error`` -> 1 only for errors; ``never`` -> 0.
    Bad input and a broken environment end a render before this decision (exit codes 2 and 1).
    """
    if fail_on not in FAIL_ON:
        raise ValueError(f"--fail-on {fail_on!r}: expected one of {', '.join(FAIL_ON)}")
    if fail_on == "never":
        return 0
    if errors:
        return 1
    return 1 if fail_on == "qc" and qc_failed else 0


def finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (JSON has no NaN or infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def _attempt(row: Mapping) -> dict:
    try:
        gates = json.loads(row.get("gates") or "null")
    except ValueError:
        gates = row.get("gates")
    return {"attempt": int(row["attempt"]), "seed": int(row["seed"]), "passed": bool(row["passed"]),
            "chosen": bool(row["chosen"]), "run_id": row.get("run_id"), "gates": finite(gates)}


def group_attempts(rows: Sequence[Mapping]) -> dict[tuple[str, str, str], list[dict]]:
    """``attempts`` rows by (scene, asset, content_key), keeping per key only the last run's attempts (a key
    rendered again, e.g. to restore a lost file, shows the attempts that made the current file)."""
    out: dict[tuple[str, str, str], list[Mapping]] = {}
    for row in rows:  # oldest first
        key = (row["scene"], row["asset"], row["content_key"])
        if out.get(key) and out[key][-1].get("run_id") != row.get("run_id"):
            out[key] = []
        out.setdefault(key, []).append(row)
    return {k: [_attempt(r) for r in v] for k, v in out.items()}


def _entry(scene: str, asset: str, status: str, row: Mapping | None, attempts: list[dict], *,
           error: str | None = None, stage: str | None = None, orphan: Mapping | None = None,
           retired: Mapping | None = None) -> dict:
    from assetgen.store.versions import qc_reasons

    row = row or {}
    entry = {
        "scene": scene, "asset": asset, "status": status,
        "version": row.get("version"), "path": row.get("path"), "content_key": row.get("content_key"),
        "version_run_id": row.get("run_id"), "review_status": row.get("status"),
        "audio_status": row.get("audio_status"),
        "placeholder": bool(row["placeholder"]) if row.get("placeholder") is not None else None,
        "qc": row.get("qc"), "qc_reasons": qc_reasons(row.get("qc_reasons")),
        **{k: finite(row.get(k)) for k in FIGURES},
        "attempts": attempts, "error": error, "stage": stage,
        "orphaned_since": None, "retired": None,
    }
    if orphan is not None:
        entry["orphaned_since"] = {"run_id": orphan.get("since_run"), "at": orphan.get("since_at")}
    if retired is not None:
        entry["retired"] = {"at": retired.get("retired_at"), "user": retired.get("user"),
                            "reason": retired.get("reason")}
    return entry


def build(run_id: str, items: Sequence, outcomes: Sequence, latest: Mapping[str, Mapping],
          attempts: Mapping[tuple[str, str, str], list[dict]], orphans: Mapping[str, Mapping],
          retired: Mapping[str, Mapping], *, run: Mapping | None = None, manifests: Sequence[str] = (),
          placeholder: bool = False, set_failures: Mapping[str, Sequence[str]] | None = None) -> dict:
    """The run report (a JSON-ready dict; see ``docs/run-report.schema.json``).

    ``items``: the plan's items (``spec``, ``key``, ``state``), the assets the manifests name; ``outcomes``:
    the run's :class:`assetgen.render.Outcome` list; ``latest``: ident -> the index row of its latest version
    (after the run); ``attempts``: :func:`group_attempts`; ``orphans`` / ``retired``: ident -> row of the
    index's lifecycle tables; ``run``: the run's ``runs`` row (start and finish times); ``set_failures``:
    ident -> why the stem set it belongs to fails its set check (:func:`stem_set_failures`): a QC failure of
    each member, reason ``stem_set: ...``.
    """
    done = {o.ident: o for o in outcomes}
    entries, named = [], set()
    for item in items:
        spec = item.spec
        ident = spec.ident
        named.add(ident)
        outcome = done.get(ident)
        row = latest.get(ident)
        if outcome is not None and not outcome.ok:
            status, error, stage = "failed", outcome.failure.text, outcome.failure.stage
        elif outcome is not None:
            status, error, stage = "rendered", None, None
            row = row if row is not None else outcome.row  # re-read after the run: the index's final word
        elif item.state == "up-to-date" and row is not None:
            status, error, stage = "up-to-date", None, None
        else:  # planned but no outcome recorded: the run ended before this asset
            status, error, stage = "failed", "no outcome recorded for this asset in the run", "render"
        key = (row or {}).get("content_key") if status != "failed" else item.key
        entry = _entry(spec.scene, spec.asset, status, row, attempts.get((spec.scene, spec.asset, key), []),
                       error=error, stage=stage)
        if (set_failures or {}).get(ident) and status in ("rendered", "up-to-date"):
            entry["qc"] = "fail"
            entry["qc_reasons"] = [*entry["qc_reasons"], *(f"stem_set: {r}" for r in set_failures[ident])]
        entries.append(entry)
    for ident in sorted(set(latest) - named):
        row = latest[ident]
        status = "retired" if ident in retired else "orphaned"
        entries.append(_entry(row["scene"], row["asset"], status, row,
                              attempts.get((row["scene"], row["asset"], row["content_key"]), []),
                              orphan=orphans.get(ident), retired=retired.get(ident)))
    entries.sort(key=lambda e: (e["scene"], e["asset"]))
    counts = {s: sum(e["status"] == s for e in entries) for s in STATUSES}
    counts["qc_failed"] = sum(_qc_failed(e) for e in entries)
    counts["assets"] = len(entries)
    run = run or {}
    return {
        "report_version": REPORT_VERSION, "run_id": run_id, "started_at": run.get("started_at"),
        "finished_at": run.get("finished_at"), "manifests": [str(m) for m in manifests],
        "placeholder": bool(placeholder), "counts": counts, "assets": entries,
    }


def _qc_failed(entry: Mapping) -> bool:
    """A manifest asset whose delivered take fails QC (failed, orphaned and retired assets do not count)."""
    return entry["status"] in ("rendered", "up-to-date") and entry.get("qc") == "fail"


def failure_message(failed: Sequence[Mapping], qc_failed: Sequence[Mapping], fail_on: str = DEFAULT_FAIL_ON) -> str:
    """Why a run fails under ``fail_on`` (the render flow's Failed state message), or "" when it does not:
    the errored assets, then (``fail_on="qc"``) those failing QC, at most 10 names each."""
    if not exit_code(len(failed), len(qc_failed), fail_on):
        return ""
    parts = []
    if failed:
        parts.append(f"{len(failed)} asset(s) failed: " + ", ".join(f["asset"] for f in failed[:10]))
    if qc_failed and fail_on == "qc":
        parts.append(f"{len(qc_failed)} asset(s) failed QC: " + ", ".join(f["asset"] for f in qc_failed[:10]))
    return "; ".join(parts)


def qc_failures(report: Mapping) -> list[dict]:
    """``[{"asset": "scene/asset", "reasons": [...]}]`` for every QC failure :func:`exit_code` counts."""
    return [{"asset": f"{e['scene']}/{e['asset']}", "reasons": list(e["qc_reasons"])}
            for e in report["assets"] if _qc_failed(e)]


def _fmt(value: Any) -> str:
    return "-" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))


def _case_text(entry: Mapping) -> str:
    """What a CI server shows under a test case: the take, its figures, QC and attempts."""
    lines = [f"status: {entry['status']}", f"version: {_fmt(entry['version'])}", f"path: {_fmt(entry['path'])}",
             f"audio_status: {_fmt(entry['audio_status'])}", f"qc: {entry['qc'] or 'not evaluated'}"]
    lines += [f"qc reason: {r}" for r in entry["qc_reasons"]]
    lines += [f"{k}: {_fmt(entry[k])}" for k in FIGURES]
    if entry["placeholder"]:
        lines.append("placeholder audio (tiny random-weight model)")
    for a in entry["attempts"]:
        lines.append(f"attempt {a['attempt']}: seed {a['seed']}, {'passed' if a['passed'] else 'failed'}"
                     + (", chosen" if a["chosen"] else ""))
    return "\n".join(lines) + "\n"


def _skip_message(entry: Mapping) -> str:
    since = (entry.get("orphaned_since") or {}).get("run_id")
    absent = f"not in the manifest since run {since}" if since else "not in the run's manifests"
    return f"retired; {absent}" if entry["status"] == "retired" else absent


def junit_xml(report: Mapping) -> bytes:
    """The run report as JUnit XML: one ``testsuite`` per scene, one ``testcase`` per asset (UTF-8 bytes)."""
    scenes: dict[str, list[Mapping]] = {}
    for entry in report["assets"]:
        scenes.setdefault(entry["scene"], []).append(entry)
    stamp = (report.get("started_at") or "")[:19]
    top = ET.Element("testsuites", name=f"assetgen render {report['run_id']}")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for scene, entries in scenes.items():
        suite = ET.SubElement(top, "testsuite", name=scene)
        if stamp:
            suite.set("timestamp", stamp)
        counts = {"tests": len(entries), "failures": 0, "errors": 0, "skipped": 0}
        for entry in entries:
            case = ET.SubElement(suite, "testcase", classname=scene, name=entry["asset"], time="0")
            if entry["status"] == "failed":
                ET.SubElement(case, "error", message=entry["error"] or "failed",
                              type=entry["stage"] or "error").text = entry["error"]
                counts["errors"] += 1
            elif _qc_failed(entry):
                reasons = entry["qc_reasons"] or ["no reason recorded"]
                ET.SubElement(case, "failure", message="QC failed: " + "; ".join(reasons),
                              type="qc").text = "\n".join(reasons)
                counts["failures"] += 1
            elif entry["status"] in ("orphaned", "retired"):
                ET.SubElement(case, "skipped", message=_skip_message(entry))
                counts["skipped"] += 1
            ET.SubElement(case, "system-out").text = _case_text(entry)
        for k, v in counts.items():
            suite.set(k, str(v))
            totals[k] += v
    for k, v in totals.items():
        top.set(k, str(v))
    ET.indent(top)
    return ET.tostring(top, encoding="utf-8", xml_declaration=True) + b"\n"


def report_paths(root: str | Path, run_id: str) -> tuple[Path, Path]:
    """``(ROOT/runs/<run_id>.json, ROOT/runs/<run_id>.junit.xml)``; a run id that is not one safe file name
    component (or is ``latest``) is a ValueError."""
    if not _RUN_ID_RE.match(run_id or "") or run_id == LATEST:
        raise ValueError(f"run id {run_id!r}: expected letters, digits, '-' or '_' (and not {LATEST!r})")
    folder = Path(root) / RUNS_DIR
    return folder / f"{run_id}.json", folder / f"{run_id}.junit.xml"


def to_json(report: Mapping) -> str:
    """The report as JSON text: the run's fields indented, then one asset per line (readable, diffable, and
    encoded by the json module's C encoder, which indentation would turn off)."""
    head = json.dumps({k: v for k, v in report.items() if k != "assets"}, indent=2, ensure_ascii=False,
                      allow_nan=False)
    assets = [json.dumps(e, ensure_ascii=False, allow_nan=False) for e in report["assets"]]
    body = "[]" if not assets else "[\n    " + ",\n    ".join(assets) + "\n  ]"
    return f'{head[:-2]},\n  "assets": {body}\n}}\n'


def write(root: str | Path, report: Mapping) -> tuple[Path, Path]:
    """Write the report's JSON and JUnit XML under ``ROOT/runs/`` atomically, then the same bytes as
    ``ROOT/runs/latest.json`` and ``latest.junit.xml`` (what a CI job on a persistent root reads: the other
    runs' files would repeat every asset); returns the run's two paths."""
    from assetgen.store.atomic import atomic_write

    json_path, xml_path = report_paths(root, report["run_id"])
    text, xml = to_json(report).encode("utf-8"), junit_xml(report)
    atomic_write(json_path, text)
    atomic_write(xml_path, xml)
    atomic_write(json_path.with_name(f"{LATEST}.json"), text)
    atomic_write(xml_path.with_name(f"{LATEST}.junit.xml"), xml)
    return json_path, xml_path


def stem_set_failures(store, items: Sequence) -> dict[str, list[str]]:
    """ident -> the reasons its stem set fails :func:`assetgen.stems.check_stem_set` on the delivered latest
    versions, for every member of every failing set among ``items`` (the plan's); sets with a member that has
    no delivered version are not checked (that member failed already)."""
    sets: dict[tuple[str, str], list] = {}
    for item in items:
        if item.spec.post.stem_set and not item.spec.is_mix:
            sets.setdefault((item.spec.scene, item.spec.post.stem_set), []).append(item.spec)
    if not sets:
        return {}
    from assetgen.stems import Stem, check_stem_set

    out: dict[str, list[str]] = {}
    for specs in sets.values():
        stems = {}
        for spec in specs:
            try:
                latest = store.read_latest(spec.scene, spec.asset)
            except Exception:  # noqa: BLE001 - a damaged file is reconcile's business; the set is not checked
                latest = None
            if latest is None:
                break
            audio, sr, row = latest
            loop = (int(row["loop_start"]), int(row["loop_end"])) if row.get("loop_end") is not None else None
            stems[spec.asset] = Stem(audio, sr, loop)
        else:
            check = check_stem_set(stems)
            if not check.passed:
                out.update({spec.ident: list(check.reasons) for spec in specs})
    return out


def finish(store, prepared, outcomes: Sequence, run_id: str, manifests: Sequence[str] = ()) -> dict:
    """At the end of a render (writer lock held, run finished in the index): record which indexed assets the
    manifests no longer name (``Index.record_presence``), then write the run report. Returns what the CLI
    prints and decides on: the report paths (relative to ROOT), counts, QC failures, orphaned and un-retired
    assets."""
    index = store.index
    presence = index.record_presence([it.spec.ident for it in prepared.plan.items], run_id)
    latest = {f"{r['scene']}/{r['asset']}": r for r in index.rows(latest_only=True)}
    run = next((r for r in index.runs() if r["run_id"] == run_id), None)
    report = build(run_id, prepared.plan.items, outcomes, latest, group_attempts(index.report_attempts(run_id)),
                   index.orphans(), index.retired(), run=run, manifests=manifests,
                   placeholder=any(m.placeholder for m in prepared.models.values()),
                   set_failures=stem_set_failures(store, prepared.plan.items))
    json_path, xml_path = write(store.root, report)
    return {"json": json_path.relative_to(store.root).as_posix(), "junit": xml_path.relative_to(store.root).as_posix(),
            "counts": report["counts"], "qc_failed": qc_failures(report),
            "orphaned": [f"{e['scene']}/{e['asset']}" for e in report["assets"] if e["status"] == "orphaned"],
            "retired": [f"{e['scene']}/{e['asset']}" for e in report["assets"] if e["status"] == "retired"],
            "unretired": presence["unretired"]}
