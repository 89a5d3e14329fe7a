"""Print the set check of a rendered stem set (assetgen.stems): lengths, loop points, seam scores per stem and
of the sum, on the latest version of each asset. Usage:
PYTHONPATH=$PWD .venv/bin/python benchmarks/stem_set_check.py ROOT (one stem set in ROOT)."""

from __future__ import annotations

import sys
from pathlib import Path

import soundfile as sf

from assetgen.stems import Stem, check_stem_set
from assetgen.store.index import Index
from assetgen.store.wav import read_loop

root = Path(sys.argv[1])
stems, seams = {}, {}
for r in Index(root).rows(latest_only=True):
    audio, sr = sf.read(root / r["path"], dtype="float32", always_2d=True)
    stems[r["asset"]] = Stem(audio.T, sr, read_loop(root / r["path"]))
    seams[r["asset"]] = None if r["seam_score"] is None else round(r["seam_score"], 3)
if len(stems) < 2:
    sys.exit(f"{root}: {len(stems)} delivered asset(s); a stem set needs two or more")
check = check_stem_set(stems)
print("lengths", check.lengths)
print("loop points (smpl chunk)", check.loops)
print("seam scores per stem", seams)
print(f"seam score of the sum {check.sum_seam:.3f} (threshold {check.threshold:g}); set check",
      "pass" if check.passed else "fail")
