"""How different the tiny placeholder models' takes are across seeds and prompts.

Writes tiny checkpoints (``assetgen.models.tiny.make_tiny``) into DIR unless they are there, generates one take per
(prompt, seed) with each model, and prints the median pairwise Pearson correlation of the raw waveforms and of
their log-mel spectra (librosa), plus the median near-duplicate distance of ``assetgen.qc``'s embedding, over all
pairs and over the pairs of one prompt's seeds (what the near-duplicate gate compares: a row's variants). Takes that
are all alike make near-duplicate gates and re-rolls untestable on these models.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_tiny_diversity.py /tmp/qc-tiny [--seeds 4] [--duration 2]
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

PROMPTS = ("rain on a tin roof", "sword clash", "calm lute melody", "footsteps on gravel")


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else 1.0


def _logmel(x: np.ndarray, sr: int) -> np.ndarray:
    import librosa

    return librosa.power_to_db(librosa.feature.melspectrogram(y=x.mean(axis=0), sr=sr, n_mels=40), ref=1.0)


def measure(model_dir: Path, seeds: int, duration_s: float) -> dict:
    from assetgen.models.cache import ModelCache
    from assetgen.qc import embedding, embedding_distance
    from assetgen.spec import GenParams, GenRequest

    cache = ModelCache()
    out = {}
    for kind in ("music", "sfx"):
        backend = cache.get(kind, model_dir, "cpu")
        reqs = [GenRequest(f"{p}-{s}", p, 1000 + s, GenParams(duration_s=duration_s))
                for p in PROMPTS for s in range(seeds)]
        takes = backend.generate(reqs)
        sr = backend.sample_rate
        pairs = list(itertools.combinations(range(len(takes)), 2))
        wave = [abs(_corr(takes[i], takes[j])) for i, j in pairs]
        mels = [_logmel(t, sr) for t in takes]
        mel = [_corr(mels[i], mels[j]) for i, j in pairs]
        embs = [embedding(t, sr) for t in takes]
        dist = [embedding_distance(embs[i], embs[j]) for i, j in pairs]
        same = [d for (i, j), d in zip(pairs, dist) if i // seeds == j // seeds]  # one prompt, two seeds
        out[kind] = {"takes": len(takes), "median_abs_wave_corr": round(float(np.median(wave)), 4),
                     "median_same_prompt_distance": round(float(np.median(same)), 4) if same else None,
                     "min_same_prompt_distance": round(float(np.min(same)), 4) if same else None,
                     "median_logmel_corr": round(float(np.median(mel)), 4),
                     "median_embedding_distance": round(float(np.median(dist)), 4),
                     "min_embedding_distance": round(float(np.min(dist)), 4)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--duration", type=float, default=2.0)
    args = ap.parse_args()
    if not (args.model_dir / "music" / "state_dict.bin").exists():
        from assetgen.models.tiny import make_tiny

        make_tiny(args.model_dir)
    print(json.dumps(measure(args.model_dir, args.seeds, args.duration), indent=2))


if __name__ == "__main__":
    main()
