"""Every QC gate on real signals: recordings of the freedesktop.org sound theme (tests/data, see LICENSE there)
and music-like test signals, delivered through the real DSP chain and measured by it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from assetgen import qc
from assetgen.dsp.chain import process_clip
from assetgen.dsp.loop import seam_score
from assetgen.spec import AssetSpec, GenParams, PostParams
from tests.test_dsp_signals import music

DATA = Path(__file__).parent / "data"


def sound(name: str) -> tuple[np.ndarray, int]:
    x, sr = sf.read(DATA / f"{name}.oga", dtype="float32", always_2d=True)
    return np.ascontiguousarray(x.T), sr


def spec(duration_s: float, model: str = "sfx", **post) -> AssetSpec:
    return AssetSpec(scene="s", asset="a", model=model, prompt="p", seed=1, gen=GenParams(duration_s=duration_s),
                     post=PostParams(**post))


# -- silence ---------------------------------------------------------------------------------------------------

def test_silence_gate_passes_a_recording_and_fails_it_80_db_down_and_digital_silence():
    x, sr = sound("bell")
    ok = qc.silence_gate(x, sr)
    assert ok.passed and -30 < ok.value < 0 and ok.unit == "dBFS" and ok.reason == ""
    quiet = qc.silence_gate(x * 10 ** (-80 / 20), sr)
    assert not quiet.passed and quiet.value == pytest.approx(ok.value - 80, abs=0.01)
    assert "near-silent" in quiet.reason and quiet.rerolls
    zero = qc.silence_gate(np.zeros_like(x), sr)
    assert not zero.passed and zero.value == -200.0
    assert qc.silence_gate(x * 10 ** (-80 / 20), sr, threshold_dbfs=-120).passed  # a row may lower the floor


# -- clipping --------------------------------------------------------------------------------------------------

def test_clipping_gate_finds_runs_of_full_scale_samples_in_the_raw_take():
    x, sr = sound("complete")
    assert qc.clipping_gate(x).passed and qc.longest_full_scale_run(x) == 0
    clipped = np.clip(x * 4.0, -1.0, 1.0)  # 12 dB too hot into a clamp: flat tops
    run = qc.longest_full_scale_run(clipped)
    result = qc.clipping_gate(clipped)
    assert run > 2 and not result.passed and result.value == run and result.rerolls
    assert f"{run} consecutive full-scale samples" in result.reason
    # the same take normalised later would hide it: the gate reads the model output, before gain
    assert qc.longest_full_scale_run(clipped * 0.5) == 0


# -- DC ----------------------------------------------------------------------------------------------------------

def test_dc_gate_on_delivered_audio_with_and_without_the_high_pass():
    x, sr = sound("complete")
    offset = x + 0.1  # a recording riding on DC
    filtered = process_clip(offset, sr, PostParams(), 1.0)
    unfiltered = process_clip(offset, sr, PostParams(highpass_hz=0.0), 1.0)
    good = qc.dc_gate(filtered.audio, measured=filtered.dc_offset)
    bad = qc.dc_gate(unfiltered.audio, measured=unfiltered.dc_offset)
    assert good.passed and abs(good.value) < 0.001
    assert not bad.passed and bad.value > 0.01 and "DC offset" in bad.reason and not bad.rerolls
    assert qc.dc_gate(unfiltered.audio).value == pytest.approx(bad.value, rel=1e-3)  # measured on the samples


# -- loudness ---------------------------------------------------------------------------------------------------

def test_loudness_gate_within_tolerance_of_the_target_and_in_every_mode():
    x, sr = sound("complete")
    delivered = process_clip(x, sr, PostParams(loudness_lufs=-20.0), 1.0)
    assert qc.loudness_gate(delivered, -20.0, 0.5).passed
    off = qc.loudness_gate(delivered, -16.0, 0.5)
    assert not off.passed and off.value == pytest.approx(delivered.lufs + 16.0) and "LU off -16" in off.reason
    assert qc.loudness_gate(delivered, -16.0, 5.0).passed  # the row's tolerance
    short = process_clip(x, sr, PostParams(loudness_lufs=-18.0, loudness_mode="momentary"), 1.0)
    assert qc.loudness_gate(short, -18.0, 0.5, "momentary").passed
    assert not qc.loudness_gate(short, -18.0, 0.5, "integrated").passed  # a momentary target is louder


def test_loudness_gate_names_an_unreachable_target():
    x, sr = sound("complete")  # peaky: -6 LUFS needs far more limiting than 0 dB allows
    delivered = process_clip(x, sr, PostParams(loudness_lufs=-6.0, max_limit_db=0.0), 1.0)
    assert delivered.status == "loudness-unreachable"
    result = qc.loudness_gate(delivered, -6.0, 0.5)
    assert not result.passed and result.reason.startswith("loudness-unreachable") and "max_limit_db" in result.reason


# -- true peak ----------------------------------------------------------------------------------------------------

def test_true_peak_gate_on_the_limited_delivery_and_on_an_unlimited_hot_file():
    from assetgen.dsp.loudness import true_peak

    x, sr = sound("complete")
    delivered = process_clip(x, sr, PostParams(loudness_lufs=-14.0, true_peak_db=-1.0), 1.0)
    assert qc.true_peak_gate(delivered.true_peak_dbtp, -1.0).passed
    hot = 20 * np.log10(true_peak(x * 1.4))  # the raw recording, 3 dB hotter, no limiter
    result = qc.true_peak_gate(hot, -1.0)
    assert not result.passed and result.value == pytest.approx(hot + 1.0) and "dBTP" in result.reason


# -- loop seam ------------------------------------------------------------------------------------------------

def test_seam_gate_passes_a_made_loop_and_fails_a_spliced_one():
    sr = 48_000
    loop = process_clip(music(sr, 5.0, intro=False), sr, PostParams(loop=True, bpm=120, bars=2), 4.0)
    made = qc.seam_gate(loop.seam_score, qc.seam_threshold())
    assert made.passed and made.value == loop.seam_score
    x, xsr = sound("complete")
    cut = np.concatenate([music(xsr, 2.0, intro=False)[:, : xsr], x[:, : xsr]], axis=1)  # two sounds, butted
    broken = qc.seam_gate(seam_score(cut), qc.seam_threshold())
    assert not broken.passed and broken.rerolls and "seam score" in broken.reason
    assert qc.seam_gate(seam_score(cut), 1e6).passed  # a row may raise the threshold


# -- length ---------------------------------------------------------------------------------------------------

def test_length_gate_checks_loop_points_and_durations_sample_exactly():
    x, sr = sound("complete")
    loop_spec = spec(0.9 + 0.1, loop=True, crossfade_s=0.1)  # a 0.9 s loop (generated with its crossfade)
    loop = process_clip(x, sr, loop_spec.post, loop_spec.target_duration_s)
    [result] = qc.evaluate_take(loop_spec, {"length": 0.0}, x, sr, loop)
    assert result.passed and result.value == 0 and loop.loop_end - loop.loop_start == round(0.9 * 48_000)
    short = dataclasses.replace(loop, loop_end=loop.loop_end - 1)
    [bad] = qc.evaluate_take(loop_spec, {"length": 0.0}, x, sr, short)
    assert not bad.passed and bad.value == -1 and "loop length" in bad.reason
    tolerant = spec(1.0, loop=True, crossfade_s=0.1, loop_tolerance_s=0.01)
    [ok] = qc.evaluate_take(tolerant, {"length": 0.0}, x, sr, short)
    assert ok.passed and ok.threshold == 480
    one_shot = spec(0.5)
    clip = process_clip(x, sr, one_shot.post, one_shot.target_duration_s)
    assert qc.evaluate_take(one_shot, {"length": 0.0}, x, sr, clip)[0].passed
    padded = dataclasses.replace(clip, audio=np.pad(clip.audio, ((0, 0), (0, 7))))
    [long] = qc.evaluate_take(one_shot, {"length": 0.0}, x, sr, padded)
    assert not long.passed and long.value == 7 and "duration" in long.reason


def test_length_of_a_bar_loop_follows_the_given_tempo():
    sr = 48_000
    bar_spec = AssetSpec(scene="s", asset="a", model="music", prompt="p", seed=1, gen=GenParams(duration_s=4.5),
                         post=PostParams(loop=True, bpm=120, bars=2))
    loop = process_clip(music(sr, 5.0, intro=False), sr, bar_spec.post, bar_spec.target_duration_s)
    assert qc.expected_length(bar_spec, sr) == (sr * 4, 0)
    assert qc.evaluate_take(bar_spec, {"length": 0.0}, None, None, loop)[0].passed


# -- near-duplicates -------------------------------------------------------------------------------------------

def test_near_duplicate_gate_flags_a_copy_of_a_recording_and_passes_different_ones():
    bell, sr = sound("bell")
    noisy = bell * 0.5 + 10 ** (-50 / 20) * np.abs(bell).max() * np.random.default_rng(0).standard_normal(
        bell.shape).astype(np.float32)  # the same take 6 dB down under -50 dB of noise
    e_bell = qc.embedding(bell, sr)
    siblings = {name: qc.embedding(*sound(name)) for name in ("complete", "dialog-information")}
    assert qc.near_duplicate_gate(e_bell, siblings).passed
    result = qc.near_duplicate_gate(qc.embedding(noisy, sr), {**siblings, "bell": e_bell})
    assert not result.passed and result.rerolls and "near-duplicate of bell" in result.reason
    assert result.value < qc.DEFAULTS["near_duplicate"] and result.unit == "distance"
    assert qc.near_duplicate_gate(e_bell, {}).value is None  # no sibling: nothing to compare


def test_embedding_ignores_gain_and_rate_but_not_content():
    busy, sr = sound("phone-outgoing-busy")
    import librosa

    up = librosa.resample(busy, orig_sr=sr, target_sr=48_000)
    assert qc.embedding_distance(qc.embedding(busy, sr), qc.embedding(0.25 * up, 48_000)) < 0.05
    bell, bsr = sound("bell")
    assert qc.embedding_distance(qc.embedding(busy, sr), qc.embedding(bell, bsr)) > 0.3


# -- the qc cell, kinds and verdicts ------------------------------------------------------------------------------

def test_qc_cell_syntax_and_kind_defaults():
    assert qc.canonical_qc("Silence:-50; -near-dup  loudness:0.3") == "loudness:0.3,silence:-50,-near_duplicate"
    assert qc.canonical_qc("none") == "none" and qc.canonical_qc("") == ""
    assert qc.canonical_qc("none, seam") == "none,seam"
    with pytest.raises(qc.QcSyntaxError, match="did you mean 'clipping'"):
        qc.parse_qc_text("cliping")
    loop = spec(2.0, loop=True)
    assert list(qc.gates_for(loop, qc.asset_kind(loop))) == ["silence", "clipping", "dc", "loudness", "true_peak",
                                                             "seam", "length", "near_duplicate"]
    assert qc.gates_for(loop, "loop")["seam"] == qc.seam_threshold()
    assert qc.asset_kind(spec(2.0, model="music")) == "music" and qc.asset_kind(spec(2.0)) == "one-shot"
    assert qc.asset_kind(spec(2.0, model="/ckpt/x"), "music") == "music"
    mix = AssetSpec(scene="s", asset="mix", model="mix", prompt="", seed=0, gen=GenParams(duration_s=2.0))
    assert set(qc.gates_for(mix, qc.asset_kind(mix))) == {"silence", "dc", "loudness", "true_peak", "length"}
    only = spec(2.0, qc="none,silence:-40")
    assert qc.gates_for(only, "one-shot") == {"silence": -40.0}
    assert qc.gates_for(spec(2.0, qc="none"), "one-shot") == {}


def test_verdict_and_badness():
    x, sr = sound("bell")
    passed = [qc.silence_gate(x, sr), qc.clipping_gate(x)]
    failed = [qc.silence_gate(x * 1e-5, sr), qc.clipping_gate(x)]
    assert qc.verdict(passed) == ("pass", [])
    state, reasons = qc.verdict(failed)
    assert state == "fail" and len(reasons) == 1 and reasons[0].startswith("silence: loudest 50 ms at")
    assert qc.reason_gate(reasons[0]) == "silence" and qc.reason_gate("odd text") == "other"
    assert qc.verdict([], gates_run=False) == ("waived", [])
    assert qc.badness(passed) < qc.badness(failed)
