"""Stem sets: one grid checked in the manifest, the delivered set checked (lengths, loop points, seam of the
sum), and the report's set block with its mixed preview; on a synthesised 4-stem 120 BPM multitrack."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.test_sources import delivered, load, problems, render_one

SR = 44_100
BPM = 120.0
HEADER = "scene,asset,model,source,loop,bpm,bars,duration_s,stem_set"


def multitrack(folder: Path, seconds: float = 12.0) -> dict[str, np.ndarray]:
    """Four stems of one 120 BPM groove (kick, hats, bass, pad), written as WAVs; returns them."""
    rng = np.random.default_rng(3)
    n = round(seconds * SR)
    t = np.arange(n) / SR
    beat = 60.0 / BPM
    stems = {"kick": np.zeros(n), "hats": np.zeros(n)}
    kick = np.sin(2 * np.pi * 60 * t[: round(0.15 * SR)]) * np.exp(-t[: round(0.15 * SR)] / 0.04)
    hat = rng.standard_normal(round(0.03 * SR)) * np.exp(-np.arange(round(0.03 * SR)) / (0.005 * SR)) * 0.2
    hat[: round(0.001 * SR)] *= np.linspace(0, 1, round(0.001 * SR))  # a 1 ms attack, as a recorded hat has
    for k, b in enumerate(np.arange(0, seconds - 0.2, beat / 2)):
        a = round(b * SR)
        if k % 2 == 0:
            stems["kick"][a:a + kick.size] += 0.6 * kick
        stems["hats"][a:a + hat.size] += hat
    stems["bass"] = 0.2 * np.sin(2 * np.pi * 55 * t) * (0.6 + 0.4 * np.cos(2 * np.pi * t / beat))
    stems["pad"] = 0.08 * (np.sin(2 * np.pi * 220 * t) + np.sin(2 * np.pi * 277.2 * t) + np.sin(2 * np.pi * 329.6 * t))
    out = {}
    for name, x in stems.items():
        out[name] = np.stack([x, x]).astype(np.float32)
        sf.write(folder / f"{name}.wav", out[name].T, SR, subtype="PCM_24")
    return out


def test_stems_are_delivered_on_one_grid_and_their_sum_loops(tmp_path):
    """Recorded stems are cut where their segment starts (no per-stem seam search or beat rotation): each
    delivered stem is the source from that point, so the stems stay aligned sample for sample."""
    from assetgen.dsp.loudness import highpass
    from assetgen.dsp.resample import resample
    from assetgen.stems import Stem, check_stem_set

    sources = multitrack(tmp_path)
    rows = "\n".join(f"m,{name},file,{name}.wav,true,120,2,,groove" for name in ("kick", "hats", "bass", "pad"))
    specs = load((tmp_path / "m.csv").write_text(f"{HEADER}\n{rows}\n") and tmp_path / "m.csv")
    stems = {}
    for name, spec in sorted(specs.items()):
        _, _, encoded = render_one(spec)
        info = encoded.info
        stems[name] = Stem(delivered(encoded), info.sample_rate, (info.loop_start, info.loop_end))
        assert info.seam_score is not None and info.seam_score < 1.0
        # past the head's crossfade, the delivered stem is the source from source_start_s (0) on (through the
        # same 20 Hz DC-blocking high-pass, whose phase shift at 55 Hz would otherwise count as a difference)
        src = highpass(resample(sources[name], SR, 48_000), 48_000, 20.0)[0, 24_000:192_000].astype(np.float64)
        out = stems[name].audio[0, 24_000:].astype(np.float64)
        assert np.dot(src, out) / np.sqrt(np.dot(src, src) * np.dot(out, out)) > 0.99, name
        print(name, f"seam {info.seam_score:.3f}")
    check = check_stem_set(stems)
    print("4-stem set:", check.lengths, check.loops, f"sum seam {check.sum_seam:.3f}")
    assert set(check.lengths.values()) == {192_000}  # 2 bars at 120 BPM, 48 kHz
    assert set(check.loops.values()) == {(0, 192_000)}
    assert check.sum_seam is not None and check.sum_seam < check.threshold and check.passed


def test_the_set_check_names_what_differs():
    from assetgen.stems import Stem, check_stem_set

    rng = np.random.default_rng(0)
    a = Stem(rng.standard_normal((2, 48_000)).astype(np.float32) * 0.1, 48_000, (0, 48_000))
    short = Stem(a.audio[:, :47_000], 48_000, (0, 47_000))
    check = check_stem_set({"a": a, "b": short})
    assert not check.passed and check.sum_seam is None
    assert check.reasons == ["lengths differ: a 48000, b 47000", "loop points differ: a (0, 48000), b (0, 47000)"]
    # equal lengths, but one stem jumps at the wrap: the sum does not loop
    ramp = Stem(np.tile(np.linspace(-0.5, 0.5, 48_000, dtype=np.float32), (2, 1)), 48_000, (0, 48_000))
    check = check_stem_set({"a": a, "ramp": ramp})
    assert not check.passed and check.sum_seam > check.threshold
    assert check.reasons[0].startswith("the sum of the stems does not loop: seam score")


def test_the_manifest_holds_a_set_to_one_grid(tmp_path):
    multitrack(tmp_path, seconds=6.0)
    found = problems((tmp_path / "m.csv").write_text(f"""{HEADER},variants
m,kick,file,kick.wav,true,120,2,,g,
m,hats,file,hats.wav,true,120,1,,g,
m,bass,file,bass.wav,true,,2,,h,
m,pad,file,pad.wav,true,,,,h,
m,lone,file,pad.wav,true,,,2,solo,
m,many,file,pad.wav,true,120,2,,k,3
""") and tmp_path / "m.csv")
    text = "\n".join(found)
    assert "line 3: column 'bars' = '1': stem set 'g': bars 1 differs from 2 of m/kick" in text
    assert "line 4: column 'bars' = '2': a stem of a loop set needs bpm with bars" in text
    assert "line 6: column 'stem_set' = 'solo': stem set 'solo' of scene 'm' has one row" in text
    assert "line 7: column 'stem_set' = 'k': a stem row cannot be swept or have variants" in text


def test_stems_of_one_duration_must_have_one_length(tmp_path):
    multitrack(tmp_path, seconds=6.0)
    found = problems((tmp_path / "m.csv").write_text(f"""{HEADER}
m,a,file,kick.wav,true,,,2,g
m,b,file,hats.wav,true,,,2.5,g
""") and tmp_path / "m.csv")
    assert any("line 3: column 'duration_s' = '2.5': stem set 'g': 120000 samples long, m/a is 96000" in p
               for p in found), found


def test_the_report_groups_a_set_with_a_mixed_preview(tmp_path):
    from assetgen.report import build_report
    from assetgen.stems import PREVIEW_PEAK
    from tests.test_report_helpers import add_asset

    stems = multitrack(tmp_path, seconds=2.0)
    root = tmp_path / "out"
    params = json.dumps({"post": {"stem_set": "groove", "loop": True}})
    for name, audio in stems.items():
        add_asset(root, "m", name, audio, sr=SR, params=params, loop_start=0, loop_end=audio.shape[1])
    add_asset(root, "m", "other", stems["pad"], sr=SR)
    html = build_report(root, workers=1).read_text()
    block = html[html.index('id="set-stems-m-groove"'):]
    block = block[:block.index("</section>")]
    assert block.count("<audio") == 5  # four stems and the mix
    from assetgen.stems import Stem, check_stem_set

    n = stems["pad"].shape[1]
    expected_check = check_stem_set({k: Stem(v, SR, (0, n)) for k, v in stems.items()})
    # whole bars of a repeating multitrack: the set passes, and the page shows the sum's own seam score
    assert expected_check.passed and "set check pass" in block and f"{expected_check.sum_seam:.3f}" in block
    assert block.count(f"<td>{n}</td><td>0–{n}</td>") == 4 and "other" not in block
    [preview] = (root / "report" / "media").glob("*_stems.wav")
    mixed, sr = sf.read(preview, dtype="float32", always_2d=True)
    total = sum(stems.values()).T
    assert sr == SR and mixed.shape == total.shape
    expected = total * (PREVIEW_PEAK / np.max(np.abs(total)))
    assert np.max(np.abs(mixed - expected)) < 1e-4  # 16-bit preview of the scaled sum
