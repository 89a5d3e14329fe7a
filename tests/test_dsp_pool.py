"""Local renders post-process in a spawned DSP process: same results, replaced when it dies, gone with its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures.process import BrokenProcessPool
from types import SimpleNamespace

import numpy as np
import pytest

from assetgen import render
from assetgen.dsp_pool import DspPool, default_pool
from assetgen.render import Failure
from assetgen.spec import AssetSpec, GenParams, PostParams


def _gen() -> render.GenResult:
    rng = np.random.default_rng(0)
    items = [SimpleNamespace(spec=AssetSpec(scene="s", asset=f"a{i}", model="sfx", prompt="p", seed=i,
                                            gen=GenParams(duration_s=1.0), post=PostParams(loop=i == 1)))
             for i in range(3)]
    audio = [(0.1 * rng.standard_normal((1, 17000))).astype(np.float32), (0.1 * rng.standard_normal((1, 20000))).astype(
        np.float32), Failure("generate", "GenerationError", "CUDA out of memory")]
    return render.GenResult(items=items, audio=audio, sample_rate=16000, model_label="sfx", placeholder=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def pool():
    pool = DspPool()
    yield pool
    pool.shutdown()


def test_isolated_postprocessing_equals_in_process_and_runs_elsewhere(pool):
    gen = _gen()
    here, there = render.postprocess_batch(gen), render.postprocess_batch_isolated(gen, pool)
    assert pool.worker_pid() != os.getpid()
    from threadpoolctl import threadpool_info

    blas = [i["num_threads"] for i in pool.run(threadpool_info) if i["user_api"] == "blas"]
    assert blas and set(blas) == {1}  # the DSP process keeps to one core
    assert [i.spec.asset for i, _ in there] == ["a0", "a1", "a2"]
    assert there[2][1] == here[2][1] == _gen().audio[2]
    for (_, a), (_, b) in zip(here[:2], there[:2]):
        assert a.samples == b.samples  # the encoded samples (wav.Samples: bytes and their sha256)
        assert (a.info.lufs, a.info.true_peak_dbtp, a.info.loop_end, a.info.seam_score) == (
            b.info.lufs, b.info.true_peak_dbtp, b.info.loop_end, b.info.seam_score)


def test_a_killed_dsp_process_fails_its_batch_and_is_replaced(pool):
    import psutil

    gen = _gen()
    pid = pool.worker_pid()
    os.kill(pid, signal.SIGKILL)
    psutil.Process(pid).wait(30)  # dead (and reaped by the executor) before the next call
    with pytest.raises(BrokenProcessPool):
        render.postprocess_batch_isolated(gen, pool)
    assert len(render.postprocess_batch_isolated(gen, pool)) == 3  # a fresh process
    assert pool.worker_pid() != pid


def test_shutdown_stops_the_worker_and_the_pool_starts_again(pool):
    import psutil

    pid = pool.worker_pid()
    pool.shutdown()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert pool.worker_pid() not in (pid, os.getpid())
    assert default_pool() is default_pool()


def test_dsp_process_exits_when_the_flow_process_is_killed():
    code = ("import os, sys; from assetgen.dsp_pool import DspPool; "
            "print(DspPool(parent_poll_s=0.1).worker_pid(), flush=True); os.kill(os.getpid(), 9)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    child = int(out.stdout.split()[0])
    deadline = time.time() + 10  # the worker polls its parent every 0.1 s
    while _alive(child) and time.time() < deadline:
        time.sleep(0.1)
    assert not _alive(child)


@pytest.mark.parametrize("n,parts", [(16, 2), (7, 2), (5, 3), (1, 1), (3, 4)])
def test_batch_parts_cover_every_item_once_in_order(n, parts):
    gen = render.GenResult(items=list(range(n)), audio=[f"a{i}" for i in range(n)], sample_rate=16000,
                           model_label="sfx", placeholder=True, split_log=["OOM at batch 16: split in halves"])
    pieces = [render.part_of(gen, p, parts) for p in range(parts)]
    assert [i for piece in pieces for i in piece.items] == list(range(n))
    assert all(piece.audio == [f"a{i}" for i in piece.items] for piece in pieces)
    assert max(len(p.items) for p in pieces) - min(len(p.items) for p in pieces) <= 1
    assert [len(p.split_log) for p in pieces] == [1] + [0] * (parts - 1)  # logged once per batch
