"""The post-processing process: one spawned worker process beside the flow process's generation.

Post-processing in a thread of the flow process would share the GIL with the generation thread, whose sampling
loop releases and re-takes it at every torch call; a separate process keeps generation at its own speed. One
worker: CPU renders give torch every core but one, and on a GPU worker one core of DSP keeps up with the device.

:class:`DspPool` owns one ``ProcessPoolExecutor`` (spawn context: the flow process has torch, Prefect and
event-loop threads, which ``fork`` would copy mid-state). The worker imports the DSP stack on start, keeps BLAS to
one thread, and exits when its parent is gone, even if the parent was SIGKILLed. A pool whose worker died is
replaced on the next call. :func:`default_pool` is the one per-process instance the render flow uses.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import multiprocessing
import os
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable

PARENT_POLL_S = 1.0  # how often (s) the worker checks that its parent is alive


def _worker_init(parent_pid: int, poll_s: float) -> None:
    """Import the DSP stack up front, keep BLAS to one core, and exit when ``parent_pid`` is gone."""
    import assetgen.dsp.chain  # noqa: F401
    import pedalboard  # noqa: F401
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # one core: the others generate (true peak's GEMM would otherwise use every core)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="watch-parent").start()


class DspPool:
    """A lazily started one-worker process pool; its executor is replaced after the worker dies.

    Invariant: ``_executor`` is None or a pool not yet seen broken; it is only read or swapped under ``_lock``.
    """

    def __init__(self, workers: int = 1, parent_poll_s: float = PARENT_POLL_S) -> None:
        self.workers = workers
        self.parent_poll_s = parent_poll_s
        self._lock = threading.Lock()
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None
        self._exit_hook = False

    def executor(self) -> concurrent.futures.ProcessPoolExecutor:
        """The live executor, started on first use."""
        with self._lock:
            if self._executor is None:
                self._executor = concurrent.futures.ProcessPoolExecutor(
                    max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                    initializer=_worker_init, initargs=(os.getpid(), self.parent_poll_s))
                if not self._exit_hook:  # before interpreter teardown, or the executor's weakref callback errors
                    atexit.register(self.shutdown)
                    self._exit_hook = True
            return self._executor

    def warm(self) -> None:
        """Start the worker now, so it imports the DSP stack while the first batch generates."""
        self.executor().submit(int)

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in the worker; ``BrokenProcessPool`` if the worker died (the next call gets a new one)."""
        executor = self.executor()
        try:
            return executor.submit(fn, *args).result()
        except BrokenProcessPool:
            with self._lock:
                if self._executor is executor:
                    self._executor = None
            raise

    def worker_pid(self) -> int:
        """The worker's process id (starts it if needed)."""
        return self.run(os.getpid)

    def shutdown(self) -> None:
        """Stop the worker (waits for the running call, cancels queued ones); the pool can start again later."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)


_default: DspPool | None = None
_default_lock = threading.Lock()


def default_pool() -> DspPool:
    """The flow process's pool: one per process, so every batch of every run reuses one warm worker."""
    global _default
    with _default_lock:
        if _default is None:
            _default = DspPool()
        return _default
