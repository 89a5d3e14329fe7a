"""The main Prefect flow: validate -> plan -> generate (one task per batch) -> post-process -> store -> index.

Only wiring lives here: Prefect tasks, their retries and concurrency, futures and artifacts. Every stage and
every decision between stages is a plain function in ``assetgen.render``. Generation tasks are chained so the
device runs one batch at a time, and each batch's post-processing task starts as soon as its generation finishes,
overlapping with the next batch's generation. Locally, files and index rows are written by the flow process
itself (the index's single writer), as post-processed batches complete. On Dask, a batch is generated,
post-processed and written to the root's staging folder by one worker (``render-batch``); the flow receives rows
and QC facts, publishes the delivered takes under their final names and indexes them.
"""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path

from prefect import allow_failure, flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.states import Completed, Failed

from assetgen import render, runreport
from assetgen.heap import trim
from assetgen.progress import RenderProgress
from assetgen.store.crash import crashpoint
from assetgen.store.disk import describe

GENERATE_ATTEMPTS = 3  # 1 + the generation task's retries
GENERATE_AHEAD = 2  # locally: batches generated ahead of post-processing (bounds the audio held in memory)


def _retry_transient(task, task_run, state) -> bool:
    """Prefect's retry condition: retry only what :func:`render.is_transient` calls transient."""
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001
        return render.is_transient(exc)
    return False


def _generate(batch, model_dir, device, attempts: int):
    from prefect.runtime import task_run

    from assetgen.models.device import reserve_core_for_postprocessing

    reserve_core_for_postprocessing(device)
    result = render.generate_batch(batch, model_dir=model_dir, device=device)
    reason = render.retry_reason(result, task_run.run_count or 1, attempts)
    if reason is not None:
        raise RuntimeError(reason)
    return result


@task(name="generate-batch", retries=GENERATE_ATTEMPTS - 1, retry_delay_seconds=[2, 10],
      retry_condition_fn=_retry_transient, cache_policy=NO_CACHE)
def generate_task(batch, model_dir, device, attempts: int = GENERATE_ATTEMPTS):
    return _generate(batch, model_dir, device, attempts)


@task(name="render-batch", retries=GENERATE_ATTEMPTS - 1, retry_delay_seconds=[2, 10],
      retry_condition_fn=_retry_transient, cache_policy=NO_CACHE)
def render_batch_task(batch, model_dir, device, staging, attempts: int = GENERATE_ATTEMPTS):
    """Generate, post-process and stage one batch on the worker that runs it (Dask): only rows come back."""
    return render.render_batch(_generate(batch, model_dir, device, attempts), staging)


@task(name="post-process", cache_policy=NO_CACHE)
def postprocess_task(gen, isolated: bool = False, part: int = 0, parts: int = 1):
    """Post-process slice ``part`` of ``parts`` of a generated batch, in the DSP process when ``isolated``."""
    piece = render.part_of(gen, part, parts)
    return piece, (render.postprocess_batch_isolated(piece) if isolated else render.postprocess_batch(piece))


@task(name="mix-scene", cache_policy=NO_CACHE)
def mix_task(where, item, layer_specs, paths, staging=None, label=("", False)):
    """A scene mix as float audio from its layers' files at ``paths`` under the root at ``where`` (a folder or a
    bucket URL); with ``staging`` (Dask) staged where it is rendered, as a batch's takes."""
    from assetgen.store.root import files_at

    processed = render.render_mix(files_at(where), item, layer_specs, paths)
    if staging is None:
        return processed
    return render.stage_processed(staging, item, processed, model_label=label[0], placeholder=label[1])


def _gpu_annotation(runner: str):
    if runner != "dask":
        return contextlib.nullcontext()
    import dask

    return dask.annotate(resources={"GPU": 1})


def _artifacts(summary: dict) -> None:
    failed = summary["failed"]
    # the run report's QC failures: the whole set the manifests name, up-to-date takes too (as the state)
    qc_failed = summary["report"]["qc_failed"]
    lines = [f"# assetgen render {summary['run_id']}", "",
             "| plan | count |", "|---|---|", *[f"| {k} | {v} |" for k, v in summary["plan"].items()], "",
             f"Rendered **{summary['rendered']}** new versions, repaired **{len(summary.get('repaired', []))}**, "
             f"**{len(failed)}** failed, "
             f"**{len(qc_failed)}** failed QC, **{summary.get('rerolled', 0)}** re-rolled."]
    if summary["placeholder"]:
        lines.append("\n**PLACEHOLDER AUDIO**: tiny random-weight models were used.")
    lines += [f"- `{f['asset']}` ({f['stage']}): {f['error']}" for f in failed]
    lines += [f"- `{f['asset']}` (QC): {'; '.join(f['reasons'])}" for f in qc_failed]
    create_markdown_artifact("\n".join(lines), key="assetgen-render-summary", description="render summary")
    if summary["versions"]:
        create_table_artifact(render.artifact_rows(summary), key="assetgen-new-versions", description="new versions")


def _batch_error(future, generation) -> tuple[str, BaseException]:
    """(stage, exception) that failed post-processing task ``future``: its upstream ``generation``'s own
    exception when that failed (the post-processing task then never ran and only reports "NotReady")."""
    generation.wait()
    stage, source = ("generate", generation) if generation.state.is_failed() else ("dsp", future)
    try:
        source.result()
    except BaseException as exc:  # noqa: BLE001
        return stage, exc
    return stage, RuntimeError(f"task ended in state {source.state.type}")


@flow(name="assetgen-render", log_prints=True)
def render_flow(manifests: list[str], out: str = "outputs", model_dir: str | None = None, device: str | None = None,
                batch_size: int = render.DEFAULT_BATCH_SIZE, max_assets: int = 10_000, wait: bool = True,
                runner: str = "local", progress_bars: bool = False, max_attempts: int = render.DEFAULT_MAX_ATTEMPTS,
                fail_on: str = runreport.DEFAULT_FAIL_ON):
    """Render only new and changed assets of ``manifests`` into ``out``, and repair latest versions whose file
    is missing or damaged; returns the run summary. The run's state is Failed when ``fail_on``
    (``assetgen render --fail-on``: error | qc | never) says so."""
    from assetgen.store import AssetStore

    runreport.exit_code(0, 0, fail_on)  # an unknown value fails before anything runs
    log = get_run_logger()
    root = Path(out)
    prepared = render.prepare(manifests, root, model_dir=model_dir, batch_size=batch_size, max_assets=max_assets,
                              max_attempts=max_attempts)
    if any(m.placeholder for m in prepared.models.values()):
        log.warning("PLACEHOLDER AUDIO: %s", "; ".join(f"{r}: {m.placeholder_note}"
                                                      for r, m in sorted(prepared.models.items()) if m.placeholder))
    store = AssetStore(root)
    bars = RenderProgress(progress_bars)
    outcomes: list[render.Outcome] = []
    try:
        with store.lock(wait=wait, on_wait=lambda: log.warning("another render holds %s; waiting for it", root)), \
                store.index.keep_open():
            report = store.reconcile()
            if report:
                log.warning("reconciled output root: %s", report)
            stale = store.clear_staging()  # takes a killed render staged and never published
            if stale:
                log.warning("removed %d unpublished staged take(s) of earlier runs", len(stale))
            # planned again now that the lock is held and reconcile ran: a latest file it found missing or damaged
            # is generated again in this run (state ``repair``), and nothing another render just finished is redone
            prepared = render.replan(prepared, root, batch_size)
            repairs = [it.spec.ident for it in prepared.plan.items if it.state == "repair"]
            if repairs:
                log.warning("repairing %d missing or damaged file(s): %s", len(repairs), ", ".join(repairs[:10]))
            run_id = store.index.start_run(uuid.uuid4().hex[:12])
            bars.start(prepared)
            # locally, DSP runs in its own process so it does not share the GIL with generation; Dask workers
            # are processes already
            isolated = runner != "dask" and bool(prepared.batches)
            if isolated:
                from assetgen.dsp_pool import default_pool

                default_pool().warm()
            chooser = render.TakeChooser([it for b in prepared.batches for it in b.items],
                                         external=render.delivered_siblings(store, prepared.plan.items))
            batches, previous, n_round = prepared.batches, None, 0
            while batches:  # round 1: the plan's batches; then each round's re-rolls, batched together
                previous = _generate_round(store, batches, model_dir, device, runner, isolated, previous, chooser,
                                           outcomes, run_id, bars, log)
                for settled in chooser.settled():
                    outcomes.append(render.record_settled(store, settled, run_id))
                    bars.advance("write", 1)
                rerolls = chooser.rerolls()
                n_round += 1
                if rerolls:
                    log.warning("QC round %d: generating %d take(s) again: %s", n_round, len(rerolls),
                                ", ".join(f"{it.spec.ident} (attempt {it.attempt})" for it in rerolls[:10]))
                batches = render.reroll_batches(rerolls, batch_size)
            outcomes += _render_continuations(store, prepared, outcomes, batch_size, previous,
                                              (model_dir, device, runner, isolated), run_id, bars, log)
            outcomes += _render_mixes(store, root, prepared, outcomes, run_id, bars, runner)
            store.clear_staging(run_id)  # takes of batches that failed after staging them
            summary = render.summary(prepared, outcomes, run_id)
            for version in summary["versions"]:
                for note in version["notes"]:
                    log.info("%s/%s v%s: %s", version["scene"], version["asset"], version["version"], note)
            store.index.finish_run(run_id, {**summary["plan"], "rendered": summary["rendered"],
                                            "failed": len(summary["failed"])})
            summary["report"] = runreport.finish(store, prepared, outcomes, run_id, manifests)
    except Exception as exc:  # noqa: BLE001
        problem = describe(exc)
        if problem is None:
            raise
        bars.stop()  # a read-only or full disk: one line (the CLI's), not a traceback; what landed is indexed
        return Failed(message=problem, data=exc)
    bars.stop()
    _artifacts(summary)
    message = runreport.failure_message(summary["failed"], summary["report"]["qc_failed"], fail_on)
    if message:
        return Failed(message=message, data=render.AssetsFailed(message, summary))
    return Completed(message=f"{summary['rendered']} new version(s)", data=summary)


def _generate_round(store, batches, model_dir, device, runner, isolated, previous, chooser, outcomes, run_id, bars,
                    log):
    """Generate and post-process ``batches`` (chained after ``previous`` locally) and hand every take to
    ``chooser``; a batch that failed as a whole is recorded at once. Returns the last generation future.

    Memory stays flat in the number of batches: locally a generation waits until the post-processing of the
    batch ``GENERATE_AHEAD`` before it finished (generated audio waits for DSP in at most that many batches), and
    a future is dropped once its result is handled (a future keeps its result)."""
    parts_of = {}  # future -> (batch, part, parts, its generation's future); popped when handled
    done_by_batch: list[list] = []  # per batch: its post-processing futures (locally)
    for i, batch in enumerate(batches):
        if runner == "dask":  # one worker generates, post-processes and stages the batch
            with _gpu_annotation(runner):
                staging = render.staging_for(store, run_id, batch.items)
                fut = render_batch_task.submit(batch, model_dir, device, staging)
            parts_of[fut] = (batch, 0, 1, fut)
            continue
        # one device locally: chain generations (a failed batch must not block the next one)
        after = [previous] if previous is not None else []
        if i >= GENERATE_AHEAD:
            after += done_by_batch[i - GENERATE_AHEAD]
            done_by_batch[i - GENERATE_AHEAD] = []
        gen = generate_task.submit(batch, model_dir, device, wait_for=[allow_failure(f) for f in after] or None)
        previous = gen
        parts = render.postprocess_parts(i, len(batches), len(batch.items), isolated)
        done_by_batch.append([])
        for part in range(parts):
            fut = postprocess_task.submit(gen, isolated and part == 0, part, parts)
            parts_of[fut] = (batch, part, parts, gen)
            done_by_batch[-1].append(fut)
    done_by_batch.clear()
    for fut in as_completed(iter(list(parts_of))):  # the iterator, not a list, is what as_completed keeps
        batch, part, parts, gen_future = parts_of.pop(fut)
        try:
            gen, processed = fut.result()
        except Exception:  # noqa: BLE001 - a whole batch failed after retries
            items = batch.items[render.part_slice(len(batch.items), part, parts)]
            stage, exc = _batch_error(fut, gen_future)
            failure = render.Failure.from_exception(stage, exc)
            for item in items:
                chooser.add(item, failure)
            bars.advance("generate", len(items))
            continue
        crashpoint("batch-generated")
        for line in gen.split_log:
            log.warning("batch of %d on %s: %s", len(gen.items), gen.model_label, line)
        bars.advance("generate", len(gen.items), sum(it.spec.gen.duration_s for it in gen.items))
        for item, result in processed:
            chooser.add(item, result, gen.model_label, gen.placeholder)
        for settled in chooser.settled():  # commit as soon as decided: a crash keeps what landed
            outcomes.append(render.record_settled(store, settled, run_id))
            bars.advance("write", 1)
        trim()  # the batch's buffers are freed: give their pages back (assetgen.heap)
    return previous


def _render_continuations(store, prepared, outcomes, batch_size, previous, where, run_id, bars,
                          log) -> list[render.Outcome]:
    """Rows with a base (``continue_from``, or a ``melody`` naming an asset of the run), phase by phase
    (``plan.continuation_phases``), each phase generated once the takes it continues or takes as melodies landed;
    ``where`` is (model_dir, device, runner, isolated) as for the first phase."""
    from assetgen import continuation
    from assetgen.plan import continuation_phases, make_batches

    results: list[render.Outcome] = []
    keys = {it.spec.ident: it.key for it in prepared.plan.items}
    for items in continuation_phases(prepared.plan.pending):
        phase = continuation.prepare_phase(store, items, {o.ident for o in [*outcomes, *results] if not o.ok}, keys)
        for item, failure in phase.blocked:
            results.append(render.record_failure(store, item, failure, run_id))
            bars.advance("write", 1)
        chooser = render.TakeChooser(phase.ready, external=render.delivered_siblings(store, prepared.plan.items))
        batches = make_batches(phase.ready, batch_size, phase.prompts)
        while batches:
            previous = _generate_round(store, batches, *where, previous, chooser, results, run_id, bars, log)
            for settled in chooser.settled():
                results.append(render.record_settled(store, settled, run_id))
                bars.advance("write", 1)
            batches = make_batches(chooser.rerolls(), batch_size, phase.prompts)
    return results


def _render_mixes(store, root, prepared, outcomes, run_id, bars, runner) -> list[render.Outcome]:
    """Scene mixes, after their layers landed; a mix with a failed layer fails with that reason (on Dask the
    worker that renders a mix stages it, as it does a batch)."""
    failed = {o.ident for o in outcomes if not o.ok}
    specs = {s.ident: s for s in prepared.specs}
    results = []
    for item in prepared.mixes:
        blockers = render.mix_blockers(item.spec, failed)
        if blockers:
            results.append(render.record_failure(store, item, render.mix_blocked(blockers), run_id))
        else:
            label, placeholder = render.mix_label(item.spec, specs, prepared.models)
            staging = render.staging_for(store, run_id, [item]) if runner == "dask" else None
            try:
                where = store.files.url if store.files.remote else str(root.resolve())
                processed = mix_task.submit(where, item, specs, render.mix_layer_paths(store, item.spec), staging,
                                            (label, placeholder)).result()
            except Exception as exc:  # noqa: BLE001
                results.append(render.record_failure(store, item, render.Failure.from_exception("mix", exc), run_id))
            else:
                results.append(render.record_outcome(store, item, processed, model_label=label,
                                                     placeholder=placeholder, run_id=run_id))
        bars.advance("write", 1)
    return results
