"""assetgen command line: parses arguments and calls flows / modules; nothing else.

Exit codes: 0 success; 1 some assets failed (the others landed) or, with ``render --fail-on qc`` (the default),
failed QC; 2 invalid input (manifest, arguments, missing model), nothing written, or an output root that cannot
be written (read-only, full, no permission; one line, what landed before stays valid). Heavy modules (torch,
audiocraft, Prefect, pandas) are imported inside the commands that need them, so ``--help``, ``validate``,
``plan``, ``report`` and ``index`` start fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from typer.core import TyperGroup

from assetgen.runtime import ephemeral_run_settings  # noqa: F401 - importable from here (benchmarks)


class _Commands(TyperGroup):
    """Every command: a disk that cannot be written (read-only, full, no permission; ``store.disk``) ends it
    with a one-line error and exit code 2 instead of a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except Exception as exc:
            from assetgen.store.disk import describe

            problem = describe(exc)
            if problem is None:
                raise
            _err(problem)


app = typer.Typer(cls=_Commands, add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Batch audio-asset pipeline: manifests -> MusicGen/AudioGen -> game-ready, versioned WAVs.")
index_app = typer.Typer(no_args_is_help=True, help="Inspect the metadata index.")
models_app = typer.Typer(no_args_is_help=True, help="Model checkpoints.")
app.add_typer(index_app, name="index")
app.add_typer(models_app, name="models")

OUT = typer.Option("outputs", "--out", "-o",
                   help="Output root (versioned WAVs, index.sqlite, report/): a folder, or an fsspec URL such as "
                        "s3://bucket/prefix (credentials and endpoint from the environment, e.g. AWS_PROFILE, "
                        "AWS_ENDPOINT_URL).")
INDEX = typer.Option(None, "--index",
                     help="The index of a remote --out: a local path named index.sqlite (default: a folder under "
                          "$ASSETGEN_REMOTE_HOME or ~/.cache/assetgen/remote); a local root's index is "
                          "OUT/index.sqlite.")
MANIFESTS = typer.Argument(..., help="Manifest files: .csv, .parquet or seed-style .json scene files.")
MAX_ASSETS = typer.Option(10_000, "--max-assets", help="Refuse manifests that expand to more assets than this.")
MAX_ATTEMPTS = typer.Option(3, "--max-attempts", min=1,
                            help="Takes generated per asset at most when QC gates fail (a row's max_attempts wins).")
MODEL_DIR = typer.Option(None, "--model-dir", envvar="ASSETGEN_MODEL_DIR",
                         help="Folder with one checkpoint folder per alias or hub id (DIR/music, DIR/sfx, "
                              "DIR/facebook/musicgen-small, ...).")


SHOWN = 10  # names listed in one line of a render's output before "and N more"


def _err(message: str, code: int = 2) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


def _writer_root(out: str, index: Optional[Path] = None) -> Path:
    """The local folder a writing command works in: ``out`` itself, or a remote root's working folder holding its
    index (``store.root.writer_root``)."""
    from assetgen.store.root import RemoteRootError, writer_root

    try:
        return writer_root(out, index)
    except RemoteRootError as exc:
        _err(str(exc))
    except OSError as exc:  # unreachable endpoint, missing bucket, no credentials: botocore's words, no secrets
        _err(f"cannot use --out {out}: {exc}")


def _reader_root(out: str) -> Path:
    """The local folder a reading command reads: ``out`` itself, or a remote root's mirror (the index snapshot and
    the delivered files, fetched when changed)."""
    from assetgen.store.root import RemoteRootError, is_url, reader_root

    try:
        root = reader_root(out)
    except RemoteRootError as exc:
        _err(str(exc))
    except OSError as exc:
        _err(f"cannot read --out {out}: {exc}")
    if is_url(out) and not (root / "index.sqlite").is_file():
        _err(f"no index at {out.rstrip('/')}/index.sqlite: render something into {out} first")
    return root


def _shown(out: str, rel: str) -> str:
    """Where ``rel`` (ROOT-relative) is, as the user named the root."""
    from assetgen.store.root import is_url

    return f"{out.rstrip('/')}/{rel}" if is_url(out) else str(Path(out) / rel)


def _load(manifests: List[Path], max_assets: int):
    from assetgen.manifest import ManifestError, load_manifests

    missing = [str(m) for m in manifests if not Path(m).is_file()]
    if missing:
        _err("manifest not found: " + ", ".join(missing))
    from assetgen.manifest import print_warnings

    found: list = []
    try:
        return load_manifests(manifests, max_assets=max_assets, warnings=found)
    except ManifestError as exc:
        _err(str(exc))
    finally:
        print_warnings(found)


@app.command()
def validate(manifests: List[Path] = MANIFESTS, max_assets: int = MAX_ASSETS) -> None:
    """Check manifests only; report every error (file, row, column, value, expectation) at once."""
    specs = _load(manifests, max_assets)
    scenes = len({s.scene for s in specs})
    typer.echo(f"ok: {len(specs)} assets in {scenes} scenes from {len(manifests)} manifest(s)")


@app.command()
def plan(manifests: List[Path] = MANIFESTS, out: str = OUT, model_dir: Optional[Path] = MODEL_DIR,
         batch_size: int = typer.Option(8, "--batch-size", min=1), max_assets: int = MAX_ASSETS,
         max_attempts: int = MAX_ATTEMPTS, index: Optional[Path] = INDEX) -> None:
    """Show what a render would do: new / changed / up-to-date / repair (latest file missing or damaged) /
    orphaned and the batches. Writes nothing."""
    from assetgen import render
    from assetgen.plan import plan_summary

    root = _writer_root(out, index)
    try:
        prepared = render.prepare(manifests, root, model_dir=model_dir, batch_size=batch_size, max_assets=max_assets,
                                  max_attempts=max_attempts, check_files=True)
    except render.InvalidInput as exc:
        _err(str(exc))
    _print_plan(plan_summary(prepared.plan, prepared.batches), prepared, out)


def _lifecycle(root: Path, idents: List[str], specs) -> tuple[list[str], list[str], list[str]]:
    """``idents`` (not named by the manifests) split into orphaned and retired, each orphan with the render
    since which no manifest names it when the index knows it; and the retired assets ``specs`` name again."""
    from assetgen.store.index import Index

    index = Index(root)
    orphans, retired = index.orphans(), index.retired()
    lines = []
    for ident in idents:
        if ident in retired:
            continue
        since = (orphans.get(ident) or {}).get("since_run")
        lines.append(f"{ident}  not in the manifest since run {since}" if since else ident)
    back = sorted({s.ident for s in specs} & set(retired))
    return lines, [i for i in idents if i in retired], back


def _print_plan(summary: dict, prepared, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print("  ".join(f"{k}: [bold]{v}[/]" for k, v in summary["counts"].items()))
    orphaned, retired, back = _lifecycle(out, summary["orphaned"], prepared.specs)
    if orphaned:
        console.print(f"orphaned: {len(orphaned)} asset(s) in the index that none of these manifests names (kept and "
                      "still exported; `assetgen retire --orphans --out ROOT MANIFEST...` takes them out):",
                      highlight=False, markup=False, soft_wrap=True)
        for line in orphaned:
            console.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)
    if retired:
        console.print(f"retired (not exported): {', '.join(retired)}", highlight=False, markup=False, soft_wrap=True)
    if back:
        console.print(f"retired but named by these manifests (a render un-retires them): {', '.join(back)}",
                      highlight=False, markup=False, soft_wrap=True)
    table = Table("batch", "model", "assets", "dur s", "temp", "top_k", "top_p", "cfg", "audio-s")
    for i, b in enumerate(summary["batches"], 1):
        table.add_row(str(i), b["model"], str(b["size"]), f"{b['duration_s']:g}", f"{b['temperature']:g}",
                      str(b["top_k"]), f"{b['top_p']:g}", f"{b['cfg_coef']:g}", f"{b['duration_s'] * b['size']:g}")
    if summary["batches"]:
        console.print(table)
    console.print(f"audio-seconds to generate: {summary['generate_audio_s']:g}; "
                  f"scene mixes to render: {summary['mixes_to_render']}"
                  + (f"; continuations to render after their bases: {summary['continuations_to_render']}"
                     if summary.get("continuations_to_render") else "")
                  + (f"; melodies from assets to render after them: {summary['melodies_to_render']}"
                     if summary.get("melodies_to_render") else ""))
    for ref, model in prepared.models.items():
        if model.placeholder:
            console.print(f"[yellow]PLACEHOLDER AUDIO[/]: {ref} -> {model.source} ({model.placeholder_note})")


@app.command("render")
def render_cmd(
    manifests: List[Path] = MANIFESTS, out: str = OUT, model_dir: Optional[Path] = MODEL_DIR,
    index: Optional[Path] = INDEX,
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present, else CPU), cpu, cuda, cuda:N."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Requests per generate() call."),
    runner: str = typer.Option("local", "--runner", help="local (one process) or dask (workers)."),
    dask_address: Optional[str] = typer.Option(None, "--dask-address", help="tcp://host:port of a Dask cluster."),
    workers: int = typer.Option(2, "--workers", min=1, help="LocalCluster worker processes for --runner dask."),
    max_assets: int = MAX_ASSETS,
    max_attempts: int = MAX_ATTEMPTS,
    no_wait: bool = typer.Option(False, "--no-wait", help="Fail at once if another render holds the output root."),
    progress_bars: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    verbose: bool = typer.Option(False, "--verbose", "-v",
                                 help="List every new version with its loudness, true peak, tempo and notes."),
    fail_on: str = typer.Option("qc", "--fail-on",
                                help="When the render exits 1: qc (an asset failed, or a manifest asset's take fails "
                                     "QC), error (only generation / post-processing errors), never (0 unless the "
                                     "input or environment is bad)."),
) -> None:
    """Render new and changed assets into versioned WAVs, update the index (only what changed); writes the run
    report OUT/runs/<run_id>.json and .junit.xml."""
    from assetgen import render

    from assetgen import runtime
    from assetgen.runreport import FAIL_ON, exit_code

    if runner not in runtime.RUNNERS:
        _err(f"--runner {runner!r}: expected local or dask")
    if fail_on not in FAIL_ON:
        _err(f"--fail-on {fail_on!r}: expected one of {', '.join(FAIL_ON)}")
    root = _writer_root(out, index)
    try:
        # files checked now so the plan line shows repairs (the hashes read are cached: reconcile only stats)
        prepared = render.prepare(manifests, root, model_dir=model_dir, batch_size=batch_size, max_assets=max_assets,
                                  max_attempts=max_attempts, check_files=True, record_verified=True)
        if prepared.batches or any(it.spec.gen.continue_from for it in prepared.plan.pending):
            from assetgen.models.device import DeviceUnavailable, pick_device

            try:
                pick_device(device)
            except DeviceUnavailable as exc:
                raise render.InvalidInput(str(exc)) from None
    except render.InvalidInput as exc:
        _err(str(exc))
    for ref, model in prepared.models.items():
        if model.placeholder:
            typer.secho(f"PLACEHOLDER AUDIO: model {ref!r} ({model.source}) is a {model.placeholder_note}; "
                        "outputs are labelled placeholder in the index and report.", fg="yellow", err=True)
    counts = prepared.plan.counts()
    typer.echo("plan: " + ", ".join(f"{k} {v}" for k, v in counts.items()), err=True)
    from assetgen.render import AssetsFailed
    from assetgen.store import RootLocked
    from assetgen.store.disk import check_writable, describe

    check_writable(root)  # a read-only root fails here, before Prefect starts or a model loads

    try:
        state = runtime.run_render(manifests, root, model_dir=model_dir, device=device, batch_size=batch_size,
                                   max_assets=max_assets, max_attempts=max_attempts, wait=not no_wait, runner=runner,
                                   dask_address=dask_address, fail_on=fail_on,
                                   workers=workers, progress_bars=progress_bars and sys.stderr.isatty())
    except RootLocked as exc:
        _err(str(exc))
    summary = state.result(raise_on_failure=False)
    if isinstance(summary, AssetsFailed):
        summary = summary.summary
    if isinstance(summary, BaseException):
        if isinstance(summary, RootLocked):
            _err(str(summary))
        if describe(summary) is not None:
            _err(f"{describe(summary)}; the render stopped (what landed before is intact and indexed)")
        _err(f"render failed: {summary}", code=1)
    typer.echo(f"rendered {summary['rendered']} new version(s) into {out}")
    repaired = summary.get("repaired") or []
    if repaired:
        more = f" and {len(repaired) - SHOWN} more" if len(repaired) > SHOWN else ""
        typer.echo(f"repaired {len(repaired)} missing or damaged file(s) at their own version: "
                   f"{', '.join(repaired[:SHOWN])}{more}")
    for line in render.version_lines(summary, everything=verbose):
        typer.echo(f"  {line}")
    report = summary.get("report") or {}
    if summary["failed"]:
        typer.secho(f"{len(summary['failed'])} asset(s) failed:", fg="red", err=True)
        for f in summary["failed"]:
            typer.echo(f"  {f['asset']} [{f['stage']}] {f['error']}", err=True)
    _print_run_report(report, out)
    code = exit_code(len(summary["failed"]), len(report.get("qc_failed", [])), fail_on)
    if code:
        raise typer.Exit(code)


def _print_run_report(report: dict, out: str) -> None:
    """QC failures, orphaned and un-retired assets of a render, and where its run report is (stderr)."""
    if report.get("qc_failed"):
        typer.secho(f"{len(report['qc_failed'])} asset(s) fail QC:", fg="red", err=True)
        for q in report["qc_failed"]:
            typer.echo(f"  {q['asset']}: {'; '.join(q['reasons']) or 'no reason recorded'}", err=True)
    if report.get("orphaned"):
        names = report["orphaned"]
        more = f" and {len(names) - SHOWN} more (the run report lists them)" if len(names) > SHOWN else ""
        typer.echo(f"{len(names)} asset(s) in the index are in none of the manifests (kept, still exported; "
                   f"`assetgen retire --orphans` takes them out): {', '.join(names[:SHOWN])}{more}", err=True)
    if report.get("unretired"):
        typer.echo(f"named by the manifests again, no longer retired: {', '.join(report['unretired'])}", err=True)
    if report.get("json"):
        typer.echo(f"run report: {_shown(out, report['json'])} (JUnit: {_shown(out, report['junit'])})", err=True)


@app.command()
def report(out: str = OUT) -> None:
    """Write OUT/report/index.html: players, waveforms, loudness and seam checks, version history."""
    from assetgen.report import build_report
    from assetgen.store.root import REPORT_DIR, RemoteFiles, is_url

    root = _reader_root(out)
    _need_index(root)
    page = build_report(root)
    if is_url(out):  # built in the mirror beside the files it plays; the page and media go to ROOT/report/
        RemoteFiles(out).upload_tree(root / REPORT_DIR, REPORT_DIR)
        page = _shown(out, page.relative_to(root).as_posix())
    typer.echo(str(page))


@app.command()
def review(out: str = OUT, host: str = typer.Option("127.0.0.1", "--host", help="Address to bind."),
           port: int = typer.Option(8765, "--port"),
           allowed_host: List[str] = typer.Option([], "--allowed-host",
                                                  help="Another Host name requests may use (repeatable), e.g. the "
                                                       "machine's LAN name when bound to 0.0.0.0. Requests naming any "
                                                       "other host are refused (DNS-rebinding protection).")) -> None:
    """Serve the report locally with Approve / Reject buttons (binds to 127.0.0.1 by default)."""
    from assetgen.report.review import serve_review
    from assetgen.store.root import RemoteFiles, fetch_snapshot, is_url

    root = _reader_root(out)
    _need_index(root)
    status_root = refresh = None
    if is_url(out):  # the page is served from the mirror; decisions go through the root's writer folder
        status_root = _writer_root(out)
        refresh = lambda: fetch_snapshot(root, RemoteFiles(out))  # noqa: E731
    typer.echo(f"review page: http://{host}:{port}/  (Ctrl-C to stop)")
    serve_review(root, host=host, port=port, allowed_hosts=allowed_host, status_root=status_root,
                 after_change=refresh)


@app.command()
def lab(out: Path = OUT, model_dir: Optional[Path] = MODEL_DIR,
        device: str = typer.Option("auto", "--device", help="auto (CUDA when present, else CPU), cpu, cuda, cuda:N."),
        host: str = typer.Option("127.0.0.1", "--host", help="Address to bind."),
        port: int = typer.Option(8766, "--port"),
        allowed_host: List[str] = typer.Option([], "--allowed-host",
                                               help="Another Host name requests may use (repeatable); requests "
                                                    "naming any other host are refused (DNS-rebinding protection)."),
        manifests: Path = typer.Option(Path("."), "--manifests",
                                       help="Folder that Keep may write manifest CSVs into (paths are relative "
                                            "to it)."),
        warm: List[str] = typer.Option([], "--warm", help="Model to load before serving (repeatable): the first "
                                                          "take of it then starts at once.")) -> None:
    """Prompt lab: audition takes on warm models (single clips, mixed scenes) and keep them as manifest rows."""
    from assetgen.lab.engine import Lab
    from assetgen.lab.server import serve_lab
    from assetgen.models.device import DeviceUnavailable
    from assetgen.models.registry import ModelUnavailable

    if not Path(manifests).is_dir():
        _err(f"--manifests {manifests}: not a folder")
    try:
        session = Lab(out, model_dir=model_dir, device=device, manifest_root=manifests)
        session.warm(warm)
    except (DeviceUnavailable, ModelUnavailable) as exc:
        _err(str(exc))
    typer.echo(f"lab: http://{host}:{port}/  (takes in {session.folder}; Keep writes under "
               f"{session.manifest_root}; Ctrl-C to stop)")
    serve_lab(session, host=host, port=port, allowed_hosts=allowed_host)


def _need_index(out: str | Path) -> None:
    if not (Path(out) / "index.sqlite").is_file():
        _err(f"no index at {Path(out) / 'index.sqlite'}: render something into {out} first")


def _set_status(target: str, out: str, status: str, force: bool = False, reason: Optional[str] = None,
                index: Optional[Path] = None) -> None:
    from assetgen.report.approval import ApprovalBlocked, set_status_checked
    from assetgen.store import AssetStore

    root = _writer_root(out, index)
    _need_index(root)
    ref, _, ver = target.partition("@")
    scene, _, asset = ref.partition("/")
    if not scene or not asset:
        _err(f"{target!r}: expected SCENE/ASSET or SCENE/ASSET@vN")
    version = None
    if ver:
        digits = ver[1:] if ver[:1] in ("v", "V") else ver
        if not digits.isdigit():
            _err(f"{target!r}: version must look like @v3")
        version = int(digits)
    store = AssetStore(root)
    try:
        with store.lock(wait=True):
            row = set_status_checked(store, scene, asset, version, status, force=force, reason=reason, via="cli")
    except ApprovalBlocked as exc:
        _err(f"{exc}\n  use --force --reason TEXT to approve it anyway (who and why are journaled)")
    except Exception as exc:  # noqa: BLE001 - unknown asset/version: user error
        _err(str(exc))
    typer.echo(f"{row['scene']}/{row['asset']}@v{row['version']}: {row['status']}")


@app.command()
def approve(target: str = typer.Argument(..., help="SCENE/ASSET or SCENE/ASSET@vN (default: latest)"),
            out: str = OUT, index: Optional[Path] = INDEX,
            force: bool = typer.Option(False, "--force", help="Approve a take that fails QC, has a non-ok audio "
                                                               "status or is placeholder audio (needs --reason)."),
            reason: Optional[str] = typer.Option(None, "--reason", help="Why a blocked take is approved anyway "
                                                                         "(journaled with the user's name).")) -> None:
    """Mark a version approved (a failing or placeholder take needs --force --reason)."""
    _set_status(target, out, "approved", force=force, reason=reason, index=index)


@app.command()
def reject(target: str = typer.Argument(..., help="SCENE/ASSET or SCENE/ASSET@vN (default: latest)"),
           out: str = OUT, index: Optional[Path] = INDEX) -> None:
    """Mark a version rejected."""
    _set_status(target, out, "rejected", index=index)


@app.command()
def retire(targets: List[str] = typer.Argument(..., help="SCENE/ASSET ... or, with --orphans, the manifests whose "
                                                          "assets stay (every indexed asset none of them names is "
                                                          "retired)."),
           out: str = OUT, index: Optional[Path] = INDEX,
           orphans: bool = typer.Option(False, "--orphans", help="Retire every asset in the index that none of the "
                                                                  "given manifests names."),
           reason: Optional[str] = typer.Option(None, "--reason", help="Why (kept in the index with the user's "
                                                                        "name)."),
           max_assets: int = MAX_ASSETS) -> None:
    """Take assets out of delivery: export leaves them out, the report shows them retired; files and versions
    stay. A render whose manifests name a retired asset again un-retires it."""
    from assetgen.report.approval import reviewer
    from assetgen.store import AssetStore

    root = _writer_root(out, index)
    _need_index(root)
    store = AssetStore(root)
    if orphans:
        named = {s.ident for s in _load([Path(t) for t in targets], max_assets)}
        indexed = store.index.indexed_assets()
        idents = [i for i in indexed if i not in named]
        if not idents:
            typer.echo("no orphaned assets: every asset in the index is named by these manifests")
            return
        if len(idents) == len(indexed):
            _err(f"these manifests name none of the {len(indexed)} asset(s) in {out}; refusing to retire them all "
                 "(another output root or other manifests?); retire them by name instead")
    else:
        idents = []
        for target in targets:
            scene, _, asset = target.partition("/")
            if not scene or not asset or "/" in asset or "@" in target:
                _err(f"{target!r}: expected SCENE/ASSET (retiring applies to every version)")
            idents.append(target)
    try:
        with store.lock(wait=True):
            known = store.index.orphans()
            new = store.index.retire(idents, user=reviewer(), reason=(reason or "").strip() or None,
                                     orphaned=orphans)
    except Exception as exc:  # noqa: BLE001 - unknown asset: user error
        _err(str(exc))
    kept = sorted(set(idents) - set(new))
    typer.echo(f"retired {len(new)} asset(s){': ' + ', '.join(new) if new else ''}"
               + (f"; already retired: {', '.join(kept)}" if kept else ""))
    named = [i for i in new if i not in known and not orphans]
    if named:
        typer.echo(f"note: no render has found {', '.join(named)} orphaned; a render whose manifests name them "
                   "un-retires them", err=True)


@app.command()
def export(to: Path = typer.Option(..., "--to", help="Engine folder to copy into."), out: str = OUT,
           approved: bool = typer.Option(True, "--approved/--all-latest",
                                         help="--approved: the latest approved take of each asset; --all-latest: "
                                              "the latest passing (not rejected, not failing) take of each asset."),
           pattern: str = typer.Option("{scene}_{asset}.wav", "--pattern", help="File name pattern."),
           include_failing: bool = typer.Option(False, "--include-failing",
                                                help="Also export takes that fail QC, have a non-ok audio status "
                                                     "or are placeholder audio (skipped and listed otherwise)."),
           overwrite: bool = typer.Option(False, "--overwrite",
                                          help="Replace files in the target that export did not deliver."),
           skip_damaged: bool = typer.Option(False, "--skip-damaged",
                                             help="Export the rest when some source files are damaged or missing "
                                                  "(they are listed; exit code 1).")) -> None:
    """Copy the chosen take of each asset into an engine folder (only what changed; hashes verified)."""
    from assetgen.report.export import export_assets

    root = _reader_root(out)
    _need_index(root)
    try:
        result = export_assets(root, to, pattern=pattern, mode="approved" if approved else "all-latest",
                               include_failing=include_failing, overwrite=overwrite, skip_damaged=skip_damaged)
    except ValueError as exc:
        _err(str(exc))
    typer.echo(str(result))
    if result.damaged:
        raise typer.Exit(1)


@app.command("qc")
def qc_cmd(out: str = OUT,
           as_json: bool = typer.Option(False, "--json", help="Print the results as JSON (one object)."),
           gates: str = typer.Option("", "--qc", help="Gate edits on top of each row's own, in the manifest's qc "
                                                     "syntax, e.g. 'loudness:0.3' or '-near_duplicate'."),
           pattern: Optional[str] = typer.Option(None, "--match", help="Only SCENE/ASSET matching this glob.")
           ) -> None:
    """Run the quality gates again over the latest version of every asset, without generating: delivery
    gates are measured again on the files; raw-take gates (silence, clipping, near-duplicate) compare the
    values the render measured with today's thresholds. Reads only. Exit code 1 when any asset fails."""
    import json

    from assetgen import qc
    from assetgen.recheck import recheck

    if gates:
        try:
            qc.parse_qc_text(gates)
        except qc.QcSyntaxError as exc:
            _err(f"--qc {gates!r}: {exc}")
    root = _reader_root(out)
    _need_index(root)
    result = recheck(root, gates, pattern)
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=1, allow_nan=False))
    else:
        for c in result.checks:
            mark = c.qc if not c.changed else f"{c.qc} (was {c.stored_qc or '-'})"
            typer.echo(f"{c.scene}/{c.asset} v{c.version:03d}: {mark}")
            for reason in c.reasons:
                typer.echo(f"    {reason}")
            if c.not_evaluated:
                typer.echo(f"    not re-evaluated (no stored raw-take value): {', '.join(c.not_evaluated)}")
        counts = result.as_dict()["counts"]
        typer.echo(f"qc: {len(result.checks)} asset(s): " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
                   + f"; {len(result.changed)} changed from the index")
    if result.failed:
        raise typer.Exit(1)


@app.command()
def measure(files: List[Path] = typer.Argument(..., help="Audio files (WAV, FLAC, OGG, AIFF)."),
            as_json: bool = typer.Option(False, "--json", help="Print a JSON list, one object per file.")) -> None:
    """Loudness (integrated, LRA, max momentary / short-term), true and sample peak, DC, duration and smpl loop
    points of any audio file, measured with the render's own meters (no torch, no Prefect)."""
    from assetgen.measure import run

    raise typer.Exit(run(files, as_json=as_json))


@index_app.command("export")
def index_export(out: str = OUT, fmt: str = typer.Option("csv", "--format", help="csv or parquet"),
                 to: Optional[Path] = typer.Option(None, "--to", help="File to write (default OUT/index.<fmt>)."))\
        -> None:
    """Dump the index (one row per asset version)."""
    from assetgen.store.index import Index

    if fmt not in ("csv", "parquet"):
        _err(f"--format {fmt!r}: expected csv or parquet")
    from assetgen.store.root import RemoteFiles, is_url

    root = _reader_root(out)
    _need_index(root)
    path = to or root / f"index.{fmt}"
    Index(root).export(path, fmt)
    if is_url(out) and to is None:  # the default file sits in the root, as for a local root
        RemoteFiles(out).put(path.name, path.read_bytes())
        typer.echo(_shown(out, path.name))
        return
    typer.echo(str(path))


@models_app.command("make-tiny")
def make_tiny_cmd(directory: Path = typer.Argument(..., help="Writes DIR/music (32 kHz), DIR/sfx (16 kHz) and "
                                                   "DIR/melody (32 kHz, melody conditioning)."),
                  dim: int = typer.Option(128, "--dim"), layers: int = typer.Option(2, "--layers")) -> None:
    """Write tiny random-weight checkpoints in audiocraft's format (PLACEHOLDER audio, for tests/demo)."""
    from assetgen.models.tiny import make_tiny

    for kind, path in make_tiny(directory, dim=dim, num_layers=layers).items():
        typer.echo(f"{kind}: {path} (placeholder: random weights)")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
