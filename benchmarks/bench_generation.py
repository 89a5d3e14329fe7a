"""Generation throughput on the tiny music model: per-prompt calls vs assetgen's batched path vs raw audiocraft.

The same 16 prompts x 2 s, timed side by side in one run:

  (a) one ``generate()`` call per prompt, as the seed tutorial does (raw ``model.generate([prompt])``);
  (b) assetgen's batched path: ``batching.chunk`` + ``batching.generate_split`` over ``cache.get_backend(...)``
      with batch size 16 (what the render uses; per-request RNG for batch invariance);
  (c) raw audiocraft: ``backend.model.set_generation_params`` + ``.generate`` on one batch of 16.

Each is warmed up once, then timed 3 times; the median is reported. Targets: b >= 8x faster than a, and b >= 0.9x
the throughput of c. A profile section then splits (b)'s overhead over (c): the per-row generator sampling in
``audiocraft_backend._row_multinomial`` (timed by swapping audiocraft's plain ``multinomial`` back in).

Run: ``.venv/bin/python benchmarks/bench_generation.py`` (writes tiny checkpoints to a temp dir).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

N_PROMPTS = 16
DURATION_S = 2.0
REPEATS = 3
TARGET_B_OVER_A = 8.0
TARGET_B_OVER_C = 0.9


def median_time(fn, repeats: int = REPEATS) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    t_import = time.perf_counter()
    import torch

    import assetgen.models.audiocraft_backend as ab
    import audiocraft.utils.utils as ac_utils
    from assetgen.models.batching import chunk, generate_split
    from assetgen.models.cache import get_backend
    from assetgen.models.tiny import make_tiny
    from assetgen.spec import GenParams, GenRequest

    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory(prefix="bench-gen-") as tmp:
        make_tiny(Path(tmp))
        backend = get_backend("music", model_dir=tmp, device="cpu")
        print(f"setup (imports + tiny checkpoints + load): {time.perf_counter() - t_import:.1f} s; "
              f"model {backend.name}, {backend.sample_rate} Hz, torch threads {torch.get_num_threads()}")

        params = GenParams(duration_s=DURATION_S)
        prompts = [f"prompt {i}: {w} theme" for i, w in enumerate(
            "forest ocean city space cave desert storm castle market river snow night dawn battle menu boss".split())]
        assert len(prompts) == N_PROMPTS
        requests = [GenRequest(key=f"k{i}", prompt=p, seed=1000 + i, params=params) for i, p in enumerate(prompts)]
        model = backend.model
        gen_kwargs = dict(duration=params.duration_s, temperature=params.temperature, top_k=params.top_k,
                          top_p=params.top_p, cfg_coef=params.cfg_coef)

        def per_prompt():  # (a) the tutorial: one call per prompt
            model.set_generation_params(**gen_kwargs)
            for r in requests:
                torch.manual_seed(r.seed)
                model.generate([r.prompt])

        def batched():  # (b) assetgen's render path
            out = []
            for batch in chunk(requests, 16):
                out += generate_split(backend, batch)
            bad = [o for o in out if isinstance(o, BaseException)]
            if bad:
                raise bad[0]
            assert len(out) == N_PROMPTS

        def raw_batch():  # (c) audiocraft on one batch of 16
            model.set_generation_params(**gen_kwargs)
            torch.manual_seed(0)
            with torch.no_grad():
                model.generate(prompts)

        # interleaved (a, b, c per round) so that load from other processes hits all three alike
        for fn in (per_prompt, batched, raw_batch):
            fn()  # warm-up
        rounds = {per_prompt: [], batched: [], raw_batch: []}
        for _ in range(REPEATS):
            for fn in rounds:
                t0 = time.perf_counter()
                fn()
                rounds[fn].append(time.perf_counter() - t0)
        t_a, t_b, t_c = (statistics.median(rounds[f]) for f in (per_prompt, batched, raw_batch))

        audio_s = N_PROMPTS * DURATION_S
        print()
        print(f"{N_PROMPTS} prompts x {DURATION_S:g} s, median of {REPEATS} interleaved rounds (after 1 warm-up)")
        print(f"{'path':<44}{'time s':>9}{'audio s/s':>11}")
        for label, t in (("(a) one generate() per prompt", t_a),
                         ("(b) assetgen chunk+generate_split, bs 16", t_b),
                         ("(c) raw model.generate, batch of 16", t_c)):
            print(f"{label:<44}{t:>9.3f}{audio_s / t:>11.1f}")
        b_over_a = t_a / t_b
        b_over_c = t_c / t_b  # throughput of b relative to c
        ok_a = b_over_a >= TARGET_B_OVER_A
        ok_c = b_over_c >= TARGET_B_OVER_C
        print()
        print(f"b/a speed-up      : {b_over_a:6.2f}x  (target >= {TARGET_B_OVER_A:g}x)   {'OK' if ok_a else 'MISSED'}")
        print(f"b/c throughput    : {b_over_c:6.2f}x  (target >= {TARGET_B_OVER_C:g}x)  {'OK' if ok_c else 'MISSED'}")

        # Profile: where does (b) spend time that (c) does not?
        calls = {"n": 0, "t": 0.0}
        row_mn = ab._row_multinomial

        def counted(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return row_mn(*args, **kwargs)
            finally:
                calls["n"] += 1
                calls["t"] += time.perf_counter() - t0

        ac_utils.multinomial = counted
        try:
            batched()
        finally:
            ac_utils.multinomial = row_mn
        t_b_counted = calls["t"]
        n_calls = calls["n"]

        ac_utils.multinomial = ab._original_multinomial  # plain audiocraft sampling inside the backend
        try:
            t_b_plain = median_time(batched)
        finally:
            ac_utils.multinomial = row_mn
        print()
        print("profile of (b):")
        print(f"  sampling calls per batch of {N_PROMPTS}: {n_calls}, time inside _row_multinomial: "
              f"{t_b_counted:.3f} s ({100 * t_b_counted / t_b:.0f} % of b)")
        print(f"  (b) with audiocraft's plain multinomial swapped back in: {t_b_plain:.3f} s "
              f"-> per-row RNG costs {t_b - t_b_plain:+.3f} s per batch")
        return 0 if (ok_a and ok_c) else 1


if __name__ == "__main__":
    sys.exit(main())
