"""Where ``assetgen.qc``'s near-duplicate threshold sits between real sounds that differ and copies of one sound.

Embeds every sound of the freedesktop.org sound theme (Debian's sound-theme-freedesktop, or the few copies in
tests/data) and prints the distribution of pairwise distances between different sounds, and the distances of
each sound to itself after a gain change, -50 dB (re peak) of white noise and a 10 ms delay.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_near_duplicate.py [DIR]
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from assetgen.qc import DEFAULTS, embedding, embedding_distance

THEME = Path("/usr/share/sounds/freedesktop/stereo")


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else (THEME if THEME.is_dir() else Path("tests/data"))
    files = sorted(f for f in folder.glob("*.og[ag]") if not f.is_symlink())
    raw, embs = {}, {}
    for f in files:
        x, sr = sf.read(f, dtype="float32", always_2d=True)
        raw[f.name] = (x.T, sr)
        embs[f.name] = embedding(x.T, sr)
    pairs = sorted((embedding_distance(embs[a], embs[b]), a, b) for a, b in itertools.combinations(embs, 2))
    d = [p[0] for p in pairs]
    print(f"{len(files)} sounds in {folder}; threshold {DEFAULTS['near_duplicate']}")
    print(f"different sounds: {len(d)} pairs, min {min(d):.3f}, 5th percentile {np.percentile(d, 5):.3f}, "
          f"median {np.median(d):.3f}; closest: " + ", ".join(f"{a}~{b} {v:.3f}" for v, a, b in pairs[:3]))
    rng = np.random.default_rng(0)
    for label, change in (("gain -6 dB", lambda x, sr: 0.5 * x),
                          ("noise -50 dB", lambda x, sr: x + 10 ** (-50 / 20) * np.abs(x).max()
                           * rng.standard_normal(x.shape).astype(np.float32)),
                          ("delay 10 ms", lambda x, sr: np.pad(x, ((0, 0), (round(0.01 * sr), 0))))):
        same = sorted((embedding_distance(embs[n], embedding(change(x, sr), sr)), n) for n, (x, sr) in raw.items())
        print(f"same sound, {label}: median {np.median([s[0] for s in same]):.4f}, max {same[-1][0]:.3f} "
              f"({same[-1][1]})")


if __name__ == "__main__":
    main()
