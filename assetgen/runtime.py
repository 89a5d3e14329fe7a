"""How a render runs: Prefect settings, the task runner, SIGTERM handling; ``assetgen render`` calls :func:`run_render`.

Prefect is imported only inside these functions (after :func:`prefect_env` has set its environment), so the CLI's
other commands start without it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

RUNNERS = ("local", "dask")


def prefect_env(out: str | os.PathLike) -> None:
    """Local Prefect defaults, set before Prefect is imported.

    Without a configured server, Prefect's ephemeral mode keeps its database in PREFECT_HOME; it goes under the
    output root so a render writes nothing outside it. Telemetry off (its heartbeat logs "database is locked" on
    the temporary SQLite server); a generous start-up timeout (s) for the temporary server on a loaded machine.
    """
    if not os.environ.get("PREFECT_API_URL") and not os.environ.get("PREFECT_HOME"):
        home = Path(out).resolve() / ".prefect"
        home.mkdir(parents=True, exist_ok=True)  # Prefect does not create missing parents
        os.environ["PREFECT_HOME"] = str(home)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


@contextlib.contextmanager
def exit_on_sigterm():
    """SIGTERM (a CI timeout, systemd, a farm's scheduler) ends a render like an error, with exit code 143.

    Python's default SIGTERM action kills the process without unwinding: Prefect marks the flow run crashed,
    then re-sends the signal to whatever handler was there before, so the temporary Prefect server (a child
    process) and the DSP process would be left running. Raising ``SystemExit`` instead runs the ``finally``
    blocks and exit handlers that stop them; files and index rows stay as after any crash (atomic).
    """
    import signal

    def handler(signum, frame):
        print("error: render terminated (SIGTERM); what landed is in the index, run it again to render the rest",
              file=sys.stderr, flush=True)
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. called from a test runner's thread): nothing to do
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def ephemeral_run_settings():
    """Prefect settings for a flow run in ephemeral mode (no ``PREFECT_API_URL``): no flow-run heartbeats.

    Heartbeats feed a server's zombie-run automations; an ephemeral server lives and dies with this process,
    so nothing reads them, and Prefect's heartbeat thread sleeps in 1 s steps, which would delay the end of
    every flow run by up to 1 s. With a configured server (nightly deployments, a farm) they stay on.
    """
    if os.environ.get("PREFECT_API_URL"):
        yield
        return
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


def dask_runner_kwargs(address: str | None = None, workers: int = 2) -> dict:
    """``DaskTaskRunner`` arguments: a cluster at ``address``, or a LocalCluster of ``workers`` single-threaded
    processes, each with one ``GPU`` resource (generation tasks ask for it, so a worker generates one batch at a
    time)."""
    if address:
        return {"address": address}
    return {"cluster_kwargs": {"n_workers": workers, "processes": True, "threads_per_worker": 1,
                               "resources": {"GPU": 1}}}


def task_runner(runner: str = "local", address: str | None = None, workers: int = 2):
    """The flow's task runner: None for ``local`` (the flow's own thread pool), a ``DaskTaskRunner`` for ``dask``."""
    if runner not in RUNNERS:
        raise ValueError(f"--runner {runner!r}: expected local or dask")
    if runner == "local":
        return None
    from prefect_dask import DaskTaskRunner

    return DaskTaskRunner(**dask_runner_kwargs(address, workers))


def run_render(manifests, out, *, model_dir=None, device: str | None = None, batch_size: int = 8,
               max_assets: int = 10_000, wait: bool = True, runner: str = "local", dask_address: str | None = None,
               workers: int = 2, progress_bars: bool = False, max_attempts: int = 3, fail_on: str = "qc"):
    """Run ``flows.render.render_flow`` as ``assetgen render`` does and return its final Prefect state.

    Sets Prefect's environment, builds the task runner, ends with exit code 143 on SIGTERM and skips
    heartbeats on an ephemeral server. Raises ``RootLocked`` when ``wait`` is False and another render holds
    ``out``.
    """
    prefect_env(out)
    from flows.render import render_flow

    flow_fn = render_flow
    built = task_runner(runner, dask_address, workers)
    if built is not None:
        flow_fn = render_flow.with_options(task_runner=built)
    with exit_on_sigterm(), ephemeral_run_settings():
        return flow_fn(manifests=[str(m) for m in manifests], out=str(out),
                       model_dir=str(model_dir) if model_dir else None, device=device, batch_size=batch_size,
                       max_assets=max_assets, max_attempts=max_attempts, wait=wait, runner=runner,
                       progress_bars=progress_bars, fail_on=fail_on,
                       return_state=True)
