"""How a render runs: Prefect settings, the task runner, SIGTERM handling; ``assetgen render`` calls :func:`run_render`.

Prefect is imported only inside these functions (after :func:`prefect_env` has set its environment), so the CLI's
other commands start without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import sys
import threading
from pathlib import Path

RUNNERS = ("local", "dask")
PREFECT_HOME_ENV = "ASSETGEN_PREFECT_HOME"


def prefect_state_dir() -> Path:
    """Where renders keep Prefect's local state: ``$ASSETGEN_PREFECT_HOME``, else
    ``$XDG_CACHE_HOME/assetgen/prefect`` (``~/.cache/assetgen/prefect`` when XDG_CACHE_HOME is unset or not
    absolute, as the XDG spec says)."""
    explicit = os.environ.get(PREFECT_HOME_ENV)
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(cache) if os.path.isabs(cache) else Path.home() / ".cache"
    return base / "assetgen" / "prefect"


def prefect_home(out: str | os.PathLike) -> Path:
    """The Prefect home of renders into output root ``out``: one folder per root under
    :func:`prefect_state_dir` (``<root name>-<hash of its absolute path>``), so renders into different roots
    never share Prefect's SQLite database (which locks under concurrent servers)."""
    root = Path(out).resolve()
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", root.name)[:40] or "root"
    return prefect_state_dir() / f"{name}-{hashlib.sha256(str(root).encode()).hexdigest()[:12]}"


def prefect_env(out: str | os.PathLike) -> None:
    """Local Prefect defaults, set before Prefect is imported.

    Without a configured server (``PREFECT_API_URL``) or home (``PREFECT_HOME``), Prefect's ephemeral mode keeps
    its database in :func:`prefect_home`, outside the output root: orchestration state is a cache that studios
    should not sync or back up with the assets, and it must not fill the assets' disk. Telemetry off (its
    heartbeat logs "database is locked" on the temporary SQLite server); a generous start-up timeout (s) for
    the temporary server on a loaded machine. Raises ``OSError`` when the home cannot be created.
    """
    if not os.environ.get("PREFECT_API_URL") and not os.environ.get("PREFECT_HOME"):
        home = prefect_home(out)
        home.mkdir(parents=True, exist_ok=True)  # Prefect does not create missing parents
        os.environ["PREFECT_HOME"] = str(home)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def parent_death_hook(sig: int = signal.SIGKILL):
    """A ``preexec_fn`` that makes the child get ``sig`` when the thread that started it ends (Linux
    ``prctl(PR_SET_PDEATHSIG)``), or None on other systems.

    The kernel sends it when the *thread* that forked the child exits, so only children started from the main
    thread (which lives as long as the process) may use it. The child checks that its parent is still the
    process that started it, since the parent may have died before ``prctl`` ran. Everything the child runs is
    prepared here, before the fork.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), sig)

    return preexec


class _PopenDyingWithParent:
    """Stands in for the ``subprocess`` module inside ``prefect.server.api.server``: the same module, except
    that a ``Popen`` from the main thread passes :func:`parent_death_hook` (unless given a ``preexec_fn``)."""

    def __init__(self, module) -> None:
        self._module = module

    def __getattr__(self, name):
        return getattr(self._module, name)

    def Popen(self, *args, **kwargs):  # noqa: N802 - the name Prefect calls
        if "preexec_fn" not in kwargs and threading.current_thread() is threading.main_thread():
            kwargs["preexec_fn"] = parent_death_hook()
        return self._module.Popen(*args, **kwargs)


def start_ephemeral_server() -> None:
    """Start Prefect's temporary server (ephemeral mode: no ``PREFECT_API_URL``) from the main thread, so that
    it dies with this process even when the process is SIGKILLed (a scheduler, the OOM killer).

    Prefect starts it as a plain child (``SubprocessASGIServer._run_uvicorn_command``) and stops it only from
    an ``atexit`` hook, which a SIGKILL never runs: the server then outlived the render under PID 1, holding
    the caller's stdout pipe and Prefect's database. Prefect offers no hook for the child's start, so the one
    module that starts it gets a ``subprocess`` whose ``Popen`` adds ``PR_SET_PDEATHSIG`` (SIGKILL: the
    server's state is a cache, and nothing would wait for a graceful stop). Starting it here, first and from
    the main thread, keeps the kernel's "parent" the thread that lives until the process ends; Prefect's own
    later ``start()`` calls find it running and reuse it.
    """
    if os.environ.get("PREFECT_API_URL"):
        return
    import subprocess

    from prefect.server.api import server as prefect_server

    if not isinstance(prefect_server.subprocess, _PopenDyingWithParent):
        prefect_server.subprocess = _PopenDyingWithParent(subprocess)
    if threading.current_thread() is threading.main_thread():
        prefect_server.SubprocessASGIServer().start()


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

    Sets Prefect's environment, starts the temporary Prefect server so that it dies with this process
    (:func:`start_ephemeral_server`), builds the task runner, ends with exit code 143 on SIGTERM and skips
    heartbeats on an ephemeral server. Raises ``RootLocked`` when ``wait`` is False and another render holds
    ``out``.
    """
    from assetgen.heap import fix_mmap_threshold

    fix_mmap_threshold()  # memory flat in the number of batches (assetgen.heap)
    prefect_env(out)
    start_ephemeral_server()
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
