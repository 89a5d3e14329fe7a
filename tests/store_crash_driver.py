"""Crash-test driver: reconcile ROOT, then commit a fixed set of synthetic assets through AssetStore.

Usage: python tests/store_crash_driver.py ROOT [N_ASSETS]; ROOT may be a remote root's URL (``store.root``). Deterministic: the same assets, keys and audio on
every run, so a crashed-then-resumed root must end equal to a clean one. ``ASSETGEN_CRASH_AT`` picks the
crash point. Prints the reconcile report and ``done`` on success.
"""

from __future__ import annotations

import sys

import numpy as np

from assetgen.spec import AssetSpec, GenParams, PostParams, ProcessedAudio
from assetgen.store import AssetStore
from assetgen.store.root import writer_root


def plan(n_assets: int) -> list[tuple[AssetSpec, str, ProcessedAudio]]:
    """(spec, content key, audio) in commit order: every asset once, then every other asset again (v2)."""
    items = []
    for rnd in (1, 2):
        for i in range(n_assets):
            if rnd == 2 and i % 2:
                continue
            loop = i % 3 == 0
            spec = AssetSpec(scene=f"scene{i % 2}", asset=f"asset{i}", model="sfx", prompt=f"sound {i} take {rnd}",
                             seed=i, gen=GenParams(duration_s=1.0),
                             post=PostParams(loop=loop, bit_depth=(24, 16, 32)[i % 3]))
            frames = 24_000 + 1000 * i
            audio = np.random.default_rng(100 * i + rnd).uniform(-0.5, 0.5, (2, frames)).astype(np.float32)
            processed = ProcessedAudio(audio=audio, sample_rate=48_000, lufs=-23.0, true_peak_dbtp=-1.0,
                                       loop_start=0 if loop else None, loop_end=frames if loop else None)
            items.append((spec, f"key-{i}-{rnd}", processed))
    return items


def main(root: str, n_assets: int = 8) -> None:
    store = AssetStore(writer_root(root))
    with store.lock():
        print("reconcile:", store.reconcile(), flush=True)
        for spec, key, processed in plan(n_assets):
            seen = store.index.get_by_key(spec.scene, spec.asset, key)
            if seen is not None and store.index.get(spec.scene, spec.asset)["content_key"] != key:
                continue  # a resumed run: this take was superseded by a later one already (as the plan would)
            store.commit(spec, key, processed, model_label="synthetic", placeholder=True, run_id="crash",
                         params={"i": spec.seed})
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 8)
