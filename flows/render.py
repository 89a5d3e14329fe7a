"""The main Prefect flow: validate -> plan -> generate (one task per batch) -> post-process -> store -> index.

Only wiring lives here; every stage is a plain function in ``assetgen.render``. Generation tasks are chained so the
device runs one batch at a time, and each batch's post-processing task starts as soon as its generation finishes,
overlapping with the next batch's generation. Files and index rows are written by the flow process itself (the
index's single writer), as post-processed batches complete.
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

from assetgen import progress, render
from assetgen.render import InvalidInput, Outcome
from assetgen.store.crash import crashpoint


def _retry_transient(task, task_run, state) -> bool:
    """Retry flaky workers and OOM after splitting; never invalid input (missing or refused checkpoints)."""
    from assetgen.models.base import CheckpointRefused
    from assetgen.models.registry import ModelUnavailable

    try:
        state.result()
    except (InvalidInput, ModelUnavailable, CheckpointRefused):
        return False
    except Exception:  # noqa: BLE001
        return True
    return False


@task(name="generate-batch", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=_retry_transient,
      cache_policy=NO_CACHE)
def generate_task(batch, model_dir, device, attempts: int = 3):
    from prefect.runtime import task_run

    from assetgen.models.device import reserve_core_for_postprocessing

    reserve_core_for_postprocessing(device)
    result = render.generate_batch(batch, model_dir=model_dir, device=device)
    failed = [a for a in result.audio if isinstance(a, str)]
    if failed and (task_run.run_count or 1) < attempts:
        raise RuntimeError(f"{len(failed)} of {len(result.audio)} requests failed, retrying: {failed[0]}")
    return result


@task(name="post-process", cache_policy=NO_CACHE)
def postprocess_task(gen, isolated: bool = False, part: int = 0, parts: int = 1):
    """Post-process slice ``part`` of ``parts`` of a generated batch, in the DSP process when ``isolated``."""
    piece = render.part_of(gen, part, parts)
    return piece, (render.postprocess_batch_isolated(piece) if isolated else render.postprocess_batch(piece))


@task(name="mix-scene", cache_policy=NO_CACHE)
def mix_task(root, item, layer_specs):
    return render.render_mix(Path(root), item, layer_specs)


def _gpu_annotation(runner: str):
    if runner != "dask":
        return contextlib.nullcontext()
    import dask

    return dask.annotate(resources={"GPU": 1})


def _artifacts(summary: dict) -> None:
    failed = summary["failed"]
    lines = [f"# assetgen render {summary['run_id']}", "",
             "| plan | count |", "|---|---|", *[f"| {k} | {v} |" for k, v in summary["plan"].items()], "",
             f"Rendered **{summary['rendered']}** new versions, **{len(failed)}** failed."]
    if summary["placeholder"]:
        lines.append("\n**PLACEHOLDER AUDIO**: tiny random-weight models were used.")
    lines += [f"- `{f['asset']}` ({f['stage']}): {f['error']}" for f in failed]
    create_markdown_artifact("\n".join(lines), key="assetgen-render-summary", description="render summary")
    if summary["versions"]:
        create_table_artifact(summary["versions"], key="assetgen-new-versions", description="new versions")


@flow(name="assetgen-render", log_prints=True)
def render_flow(manifests: list[str], out: str = "outputs", model_dir: str | None = None, device: str | None = None,
                batch_size: int = render.DEFAULT_BATCH_SIZE, max_assets: int = 10_000, wait: bool = True,
                runner: str = "local"):
    """Render only new and changed assets of ``manifests`` into ``out``; returns the run summary."""
    from assetgen.store import AssetStore

    log = get_run_logger()
    root = Path(out)
    prepared = render.prepare(manifests, root, model_dir=model_dir, batch_size=batch_size, max_assets=max_assets)
    if any(m.placeholder for m in prepared.models.values()):
        log.warning("PLACEHOLDER AUDIO: models %s are tiny random-weight checkpoints, not real MusicGen/AudioGen",
                    sorted(r for r, m in prepared.models.items() if m.placeholder))
    store = AssetStore(root)
    outcomes: list[Outcome] = []
    with store.lock(wait=wait, on_wait=lambda: log.warning("another render holds %s; waiting for it", root)), \
            store.index.keep_open():
        report = store.reconcile()
        if report:
            log.warning("reconciled output root: %s", report)
        run_id = store.index.start_run(uuid.uuid4().hex[:12])
        progress.start(prepared)
        # locally, DSP runs in its own process so it does not share the GIL with generation; Dask workers
        # are processes already
        isolated = runner != "dask" and bool(prepared.batches)
        if isolated:
            render.warm_dsp_pool()
        pending, parts_of, previous = [], [], None
        for i, batch in enumerate(prepared.batches):
            # one device locally: chain generations (a failed batch must not block the next one); on Dask the
            # GPU=1 resource already limits each worker to one generation at a time
            chain = [allow_failure(previous)] if previous is not None and runner != "dask" else None
            with _gpu_annotation(runner):
                gen = generate_task.submit(batch, model_dir, device, wait_for=chain)
            previous = gen
            # after the last generation nothing shares the GIL with DSP any more: half of the last batch is
            # post-processed in this process beside the DSP process, and each half is stored when it is done
            # (a native crash in that half would end the run like any crash: atomic files, consistent index)
            parts = 2 if isolated and i == len(prepared.batches) - 1 and len(batch.items) > 1 else 1
            for part in range(parts):
                pending.append(postprocess_task.submit(gen, isolated and part == 0, part, parts))
                parts_of.append((batch, part, parts))
        for fut in as_completed(pending):
            try:
                gen, processed = fut.result()
            except Exception as exc:  # noqa: BLE001 - a whole batch failed after retries
                batch, part, parts = parts_of[pending.index(fut)]
                items = batch.items[render.part_slice(len(batch.items), part, parts)]
                error = render.error_text(exc)
                outcomes += [_store(store, it, error, "", False, run_id) for it in items]
                progress.advance("generate", len(items))
                continue
            crashpoint("batch-generated")
            for line in gen.split_log:
                log.warning("batch of %d on %s: %s", len(gen.items), gen.model_label, line)
            progress.advance("generate", len(gen.items), sum(it.spec.gen.duration_s for it in gen.items))
            for item, result in processed:
                outcomes.append(_store(store, item, result, gen.model_label, gen.placeholder, run_id))
        outcomes += _render_mixes(store, root, prepared, outcomes, run_id)
        summary = render.summary(prepared, outcomes, run_id)
        store.index.finish_run(run_id, {**summary["plan"], "rendered": summary["rendered"],
                                        "failed": len(summary["failed"])})
    progress.stop()
    _artifacts(summary)
    if summary["failed"]:
        names = ", ".join(f["asset"] for f in summary["failed"][:10])
        message = f"{len(summary['failed'])} asset(s) failed: {names}"
        return Failed(message=message, data=render.AssetsFailed(message, summary))
    return Completed(message=f"{summary['rendered']} new version(s)", data=summary)


def _store(store, item, result, model_label, placeholder, run_id) -> Outcome:
    """Commit one post-processed asset, or record why it failed (failures never stop the run)."""
    if isinstance(result, str):
        stage = "dsp" if result.startswith("dsp:") else "generate"
        store.record_failure(item.spec, item.key, stage, result, run_id)
        progress.advance("write", 1)
        return Outcome(item.spec.ident, item.key, stage=stage, error=result)
    try:
        row = render.commit(store, item, result, model_label=model_label, placeholder=placeholder, run_id=run_id)
        progress.advance("write", 1)
        return Outcome(item.spec.ident, item.key, row=row)
    except Exception as exc:  # noqa: BLE001
        store.record_failure(item.spec, item.key, "store", render.error_text(exc), run_id)
        return Outcome(item.spec.ident, item.key, stage="store", error=render.error_text(exc))


def _render_mixes(store, root, prepared, outcomes, run_id) -> list[Outcome]:
    """Scene mixes, after their layers landed; a mix with a failed layer fails with that reason."""
    failed = {o.ident for o in outcomes if not o.ok}
    specs = {s.ident: s for s in prepared.specs}
    results = []
    for item in prepared.mixes:
        spec = item.spec
        bad = [n for n in spec.layers if f"{spec.scene}/{n}" in failed]
        if bad:
            error = f"layer(s) failed: {', '.join(bad)}"
            store.record_failure(spec, item.key, "mix", error, run_id)
            results.append(Outcome(spec.ident, item.key, stage="mix", error=error))
            continue
        try:
            processed = mix_task.submit(str(root), item, specs).result()
        except Exception as exc:  # noqa: BLE001
            store.record_failure(spec, item.key, "mix", render.error_text(exc), run_id)
            results.append(Outcome(spec.ident, item.key, stage="mix", error=render.error_text(exc)))
            continue
        layer_models = [prepared.models[specs[f"{spec.scene}/{n}"].model] for n in spec.layers]
        placeholder = any(m.placeholder for m in layer_models)
        label = "mix of " + ", ".join(sorted({m.label for m in layer_models}))
        results.append(_store(store, item, processed, label, placeholder, run_id))
    return results
