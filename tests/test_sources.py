"""Recorded sources (model ``file``): validation of the ``source`` columns, content keys, the file backend and
the delivery chain on synthesised recordings and the CC BY freedesktop sounds in tests/data."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import REPO

DATA = REPO / "tests" / "data"
SR = 44_100


def tone(path: Path, seconds: float = 3.0, sr: int = SR, hz: float = 220.0, level: float = 0.3) -> np.ndarray:
    """Write a stereo sine with a slow tremolo as 24-bit WAV; returns the float samples written (channels, n)."""
    t = np.arange(round(seconds * sr)) / sr
    x = level * np.sin(2 * np.pi * hz * t) * (1 + 0.2 * np.sin(2 * np.pi * 2 * t))
    audio = np.stack([x, 0.8 * x]).astype(np.float32)
    sf.write(path, audio.T, sr, subtype="PCM_24")
    return audio


def manifest(folder: Path, body: str, header: str = "scene,asset,model,source,source_start_s,source_end_s,loop,"
                                                      "duration_s,prompt") -> Path:
    path = folder / "m.csv"
    path.write_text(header + "\n" + body.strip() + "\n")
    return path


def load(path: Path):
    from assetgen.manifest import load_manifests

    return {s.asset: s for s in load_manifests([path])}


def problems(path: Path) -> list[str]:
    from assetgen.manifest import ManifestError, load_manifests

    with pytest.raises(ManifestError) as err:
        load_manifests([path])
    return [str(i) for i in err.value.issues]


def key(spec) -> str:
    from assetgen.models.registry import fingerprint
    from assetgen.plan import content_key

    return content_key(spec, fingerprint("file"))


# --- manifest --------------------------------------------------------------------------------------------------


def test_file_rows_need_no_prompt_duration_or_model(tmp_path):
    tone(tmp_path / "tone.wav")
    specs = load(manifest(tmp_path, """
s,whole,file,tone.wav,,,,,
s,cut,file,tone.wav,0.5,2.5,,,a label
s,loop,file,tone.wav,0.5,,true,2,
"""))
    whole, cut, loop = specs["whole"], specs["cut"], specs["loop"]
    assert whole.gen.source == str(tmp_path / "tone.wav") and whole.gen.source_end_s == pytest.approx(3.0)
    assert whole.target_duration_s == pytest.approx(3.0) and whole.prompt == ""
    assert (cut.gen.source_start_s, cut.gen.source_end_s, cut.target_duration_s) == (0.5, 2.5, 2.0)
    assert cut.prompt == "a label"
    # a loop generates (reads) its length plus crossfade_s of material; its length is duration_s
    assert loop.target_duration_s == 2.0 and loop.gen.duration_s == pytest.approx(2.5)
    assert all(s.post.max_attempts == 1 for s in specs.values())  # never re-rolled
    # a manifest of file rows needs neither a prompt nor a duration_s column
    minimal = load(manifest(tmp_path, "s,a,file,tone.wav", header="scene,asset,model,source"))
    assert minimal["a"].target_duration_s == pytest.approx(3.0)


def test_a_default_loop_keeps_crossfade_of_the_segment_as_material(tmp_path):
    tone(tmp_path / "tone.wav", seconds=3.0)
    [spec] = load(manifest(tmp_path, "s,a,file,tone.wav,1,,true,,")).values()
    assert spec.gen.duration_s == pytest.approx(2.0) and spec.target_duration_s == pytest.approx(1.5)


def test_the_key_follows_the_recordings_bytes_not_its_path_or_label(tmp_path):
    first = tone(tmp_path / "tone.wav")
    path = manifest(tmp_path, "s,a,file,tone.wav,,,,,label one")
    before = key(load(path)["a"])
    path.write_text(path.read_text().replace("label one", "another label"))
    assert key(load(path)["a"]) == before  # the prompt of a recording is only its label
    moved = tmp_path / "sub"
    moved.mkdir()
    shutil.copy(tmp_path / "tone.wav", moved / "take.wav")
    path.write_text(path.read_text().replace("tone.wav", "sub/take.wav"))
    assert key(load(path)["a"]) == before  # same bytes elsewhere: same recording
    sf.write(moved / "take.wav", (first * 0.5).T, SR, subtype="PCM_24")  # a changed recording
    changed = key(load(path)["a"])
    assert changed != before
    path.write_text(path.read_text().replace(",,,,,", ",0.1,,,,"))
    assert key(load(path)["a"]) != changed  # the segment read is part of the key


@pytest.mark.parametrize("setup, cell, expected", [
    (lambda d: None, "missing.wav", "file not found: {d}/missing.wav"),
    (lambda d: (d / "junk.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 10), "junk.wav",
     "cannot decode {d}/junk.wav"),
    (lambda d: (d / "empty.flac").write_bytes(b""), "empty.flac", "cannot decode {d}/empty.flac"),
    (lambda d: (d / "folder.wav").mkdir(), "folder.wav", "not a file: {d}/folder.wav"),
])
def test_a_missing_or_corrupt_source_names_file_row_column_and_path(tmp_path, setup, cell, expected):
    setup(tmp_path)
    path = manifest(tmp_path, f"s,a,file,{cell},,,,,")
    [issue] = problems(path)
    assert issue.startswith(f"{path}:line 2: column 'source' = '{cell}': ")
    assert expected.format(d=tmp_path.resolve()) in issue


def flip_one_byte(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1:]


@pytest.mark.parametrize("name, damage, message", [
    ("cut.oga", lambda d: d[: len(d) // 2], "is cut short"),
    ("flipped.oga", lambda d: flip_one_byte(d, len(d) // 2), "checksum mismatch in the Ogg page"),
    ("cut.wav", lambda d: d[: len(d) // 2], "truncated: the data chunk holds"),
])
def test_damage_the_decoder_reads_past_is_a_validation_error(tmp_path, name, damage, message):
    """libsndfile decodes a cut or bit-flipped Ogg and a cut WAV without an error: the container is checked."""
    tone(tmp_path / "tone.wav")
    whole = (DATA / "complete.oga" if name.endswith(".oga") else tmp_path / "tone.wav").read_bytes()
    (tmp_path / name).write_bytes(damage(whole))
    [issue] = problems(manifest(tmp_path, f"s,a,file,{name},,,,,"))
    assert f"column 'source' = '{name}': cannot decode {tmp_path.resolve()}/{name}: " in issue and message in issue


@pytest.mark.parametrize("cells, column, message", [
    ("5,,,,", "source_start_s", "at or past the end of"),
    (",4,,,", "source_end_s", "past the end of"),
    ("2,1,,,", "source_end_s", "must be after source_start_s 2"),
    ("1,,true,2.5,", "duration_s", "the loop (2.5 s) is longer than the segment read (2 s"),
])
def test_segments_are_checked_against_the_recording(tmp_path, cells, column, message):
    tone(tmp_path / "tone.wav", seconds=3.0)
    [issue] = problems(manifest(tmp_path, f"s,a,file,tone.wav,{cells}"))
    assert f"column '{column}'" in issue and message in issue, issue


def test_generation_columns_on_file_rows_and_source_columns_elsewhere_are_errors(tmp_path):
    tone(tmp_path / "tone.wav")
    found = problems(manifest(tmp_path, """
s,a,file,tone.wav,,,,,,7,3
s,b,music,tone.wav,,,,2,a prompt,,
s,c,file,,,,,,,,
""", header="scene,asset,model,source,source_start_s,source_end_s,loop,duration_s,prompt,seed,variants"))
    assert any("line 2: column 'seed' = '7': has no effect on a file row" in p for p in found)
    assert any("line 2: column 'variants' = '3': has no effect on a file row" in p for p in found)
    assert any("line 3: column 'source' = 'tone.wav': applies only to model file" in p for p in found)
    assert any("line 4: column 'source' = '': a file row needs source" in p for p in found)


def test_mp3_is_read_through_ffmpeg_and_refused_clearly_without_it(tmp_path, monkeypatch):
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    tone(tmp_path / "tone.wav", seconds=2.0)
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(tmp_path / "tone.wav"), "-b:a", "192k",
                    str(tmp_path / "tone.mp3")], check=True)
    spec = load(manifest(tmp_path, "s,a,file,tone.mp3,,,,,"))["a"]
    # the MP3 decoder adds its priming delay and padding: within 60 ms of the 2 s source
    assert spec.gen.source_end_s == pytest.approx(2.0, abs=0.06)
    (tmp_path / "junk.mp3").write_bytes(b"not an mp3 at all" * 64)
    [issue] = problems(manifest(tmp_path, "s,a,file,junk.mp3,,,,,"))
    assert f"column 'source' = 'junk.mp3': cannot decode {tmp_path.resolve()}/junk.mp3: " in issue
    assert "[" not in issue.split("junk.mp3: ")[-1]  # ffmpeg's message without its [demuxer @ 0x..] prefix
    from assetgen import sources

    monkeypatch.setattr(sources.shutil, "which", lambda name: None)
    (tmp_path / "other.mp3").write_bytes((tmp_path / "tone.mp3").read_bytes())
    [issue] = problems(manifest(tmp_path, "s,a,file,other.mp3,,,,,"))
    assert "column 'source' = 'other.mp3': reading .mp3 needs ffmpeg, which is not installed" in issue
    assert str(tmp_path.resolve() / "other.mp3") in issue


def test_sources_that_name_other_files_are_refused(tmp_path):
    """A playlist names other files, which the content key would not cover: refused by extension, and by
    container when it is disguised as an audio file; an unknown extension is refused up front."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    (tmp_path / "lib").mkdir()
    tone(tmp_path / "lib" / "tone.wav", seconds=1.0)
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(tmp_path / "lib" / "tone.wav"), str(tmp_path / "lib" / "s.mp3")],
                   check=True)
    playlist = "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:1.0,\nlib/s.mp3\n#EXT-X-ENDLIST\n"
    for name in ("list.m3u8", "list.mp3"):
        (tmp_path / name).write_text(playlist)
    [by_suffix] = problems(manifest(tmp_path, "s,a,file,list.m3u8,,,,,"))
    assert "column 'source' = 'list.m3u8'" in by_suffix and ".m3u8 is not an audio file type" in by_suffix
    [by_container] = problems(manifest(tmp_path, "s,a,file,list.mp3,,,,,"))
    assert "container 'hls' is not an audio file" in by_container
    assert load(manifest(tmp_path, "s,a,file,lib/s.mp3,,,,,"))["a"].gen.source_end_s == pytest.approx(1.0, abs=0.06)


# --- the file backend ------------------------------------------------------------------------------------------


def test_the_backend_reads_the_segment_at_the_files_rate_without_loading_a_model(tmp_path):
    from assetgen.models.cache import ModelCache
    from assetgen.models.base import RequestRefused
    from assetgen.spec import GenRequest

    written = tone(tmp_path / "tone.wav", seconds=3.0)
    spec = load(manifest(tmp_path, "s,a,file,tone.wav,0.5,2,,,"))["a"]
    cache = ModelCache()
    backend = cache.get("file")
    [audio] = backend.generate([GenRequest("k", "", 0, spec.gen)])
    assert cache.load_count == 0 and backend.sample_rate == SR and backend.name == "recording tone.wav"
    expected = written[:, round(0.5 * SR): 2 * SR]
    assert audio.shape == expected.shape and np.max(np.abs(audio - expected)) < 2 ** -22  # 24-bit PCM
    sf.write(tmp_path / "tone.wav", written.T * 0.5, SR, subtype="PCM_24")  # changed after validation
    [refused] = cache.get("file").generate([GenRequest("k", "", 0, spec.gen)])
    assert isinstance(refused, RequestRefused) and "changed since the manifest was validated" in str(refused)


def test_a_file_only_render_never_imports_torch(tmp_path):
    tone(tmp_path / "tone.wav", seconds=1.0)
    path = manifest(tmp_path, "s,a,file,tone.wav,,,,,")
    code = f"""
import sys
from assetgen import render
prepared = render.prepare([{str(path)!r}], {str(tmp_path / 'out')!r})
gen = render.generate_batch(prepared.batches[0])
[(item, encoded)] = render.postprocess_batch(gen)
assert encoded.info.lufs is not None
print(sorted(m for m in ('torch', 'audiocraft') if m in sys.modules), gen.model_label)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[] recording tone.wav"


# --- the chain --------------------------------------------------------------------------------------------------


def delivered(encoded) -> np.ndarray:
    """The delivered samples of an encoded take, read back from its WAV bytes (channels, samples)."""
    import io

    from assetgen.store.wav import wav_bytes

    blob = wav_bytes(encoded.samples, encoded.info.sample_rate, encoded.samples.bit_depth)
    audio, _ = sf.read(io.BytesIO(blob), dtype="float32", always_2d=True)
    return audio.T


def render_one(spec):
    """(generated batch, processed take with its gates) of one file row, without Prefect."""
    from assetgen import render
    from assetgen.plan import PlanItem, make_batches

    item = PlanItem(spec, key(spec), "new")
    [batch] = make_batches([item], 8)
    gen = render.generate_batch(batch)
    [(item, encoded)] = render.postprocess_batch(gen)
    return item, gen, encoded


def test_a_recording_goes_through_resample_loop_fx_and_loudness(tmp_path):
    from assetgen.dsp.loudness import measure

    tone(tmp_path / "tone.wav", seconds=4.0)
    body = "s,a,file,tone.wav,0.25,,true,2,,48000,-18,reverb(room_size=0.3)"
    spec = load(manifest(tmp_path, body, header="scene,asset,model,source,source_start_s,source_end_s,loop,"
                                                "duration_s,prompt,sample_rate,loudness,fx"))["a"]
    _, gen, encoded = render_one(spec)
    info, audio = encoded.info, delivered(encoded)
    assert gen.sample_rate == SR and info.sample_rate == 48_000
    assert audio.shape == (2, 96_000) and (info.loop_start, info.loop_end) == (0, 96_000)
    assert info.seam_score is not None and info.seam_score < 0.5
    assert measure(audio, 48_000).lufs == pytest.approx(-18.0, abs=0.1)
    assert info.qc == "pass", info.qc_reasons
    assert {g.name for g in info.gates} == {"silence", "clipping", "dc", "loudness", "true_peak", "length", "seam"}


def test_a_silent_recording_fails_qc_and_is_not_rerolled(tmp_path):
    from assetgen import render

    sf.write(tmp_path / "silence.wav", np.zeros((SR, 1), np.float32), SR)
    spec = load(manifest(tmp_path, "s,a,file,silence.wav,,,,,"))["a"]
    item, gen, encoded = render_one(spec)
    chooser = render.TakeChooser([item])
    chooser.add(item, encoded, gen.model_label, gen.placeholder)
    assert chooser.rerolls() == []
    [settled] = chooser.settled()
    assert settled.payload.info.qc == "fail"
    assert any(r.startswith("silence:") for r in settled.payload.info.qc_reasons)
    assert len(settled.attempts) == 1


def test_a_one_shot_is_judged_on_the_part_it_delivers(tmp_path):
    """1 s of silence, then a tone: a 1 s one-shot from the start is silent (fails), from 1 s it passes,
    though the whole recording holds the tone either way."""
    x = np.zeros((2, 3 * SR), np.float32)
    x[:, SR:] = tone(tmp_path / "t.wav", seconds=2.0)
    sf.write(tmp_path / "late.wav", x.T, SR, subtype="PCM_24")
    rows = load(manifest(tmp_path, "s,head,file,late.wav,,,false,1.0,\ns,tail,file,late.wav,1.0,,false,1.0,"))
    verdicts = {}
    for name, spec in rows.items():
        _, _, encoded = render_one(spec)
        verdicts[name] = [r.split(":")[0] for r in encoded.info.qc_reasons] if encoded.info.qc else None
    assert "silence" in verdicts["head"] and "silence" not in (verdicts["tail"] or [])


def test_freedesktop_bell_is_delivered_at_the_row_length(tmp_path):
    """bell.oga (CC BY 3.0, tests/data/LICENSE): 0.14 s at 44.1 kHz, padded to the row's 0.5 s at 48 kHz."""
    shutil.copy(DATA / "bell.oga", tmp_path / "bell.oga")
    spec = load(manifest(tmp_path, "s,a,file,bell.oga,,,,0.5,"))["a"]
    _, gen, encoded = render_one(spec)
    bell, sr = sf.read(DATA / "bell.oga", dtype="float32", always_2d=True)
    assert gen.sample_rate == sr == 44_100
    audio = delivered(encoded)
    assert audio.shape == (2, 24_000)
    # the recording's onset survives: the delivered file is silent only after the bell ends
    active = np.flatnonzero(np.max(np.abs(audio), axis=0) > 1e-3)
    assert active[0] < 48 and active[-1] == pytest.approx(bell.shape[0] * 48_000 / 44_100, abs=2_400)


def test_scene_files_take_recordings_as_layers_of_a_mix(tmp_path):
    """JSON scene files: a component of ``type`` file with a ``source`` is a recorded layer of its scene's mix."""
    import json

    from assetgen.manifest import load_manifests

    tone(tmp_path / "tone.wav", seconds=2.0)
    shutil.copy(DATA / "complete.oga", tmp_path / "complete.oga")
    (tmp_path / "s.json").write_text(json.dumps([{"name": "hall", "components": [
        {"name": "tone", "type": "file", "source": "tone.wav"},
        {"name": "chime", "type": "file", "source": "complete.oga", "duration": 3, "weight": 0.5}]}]))
    specs = {s.asset: s for s in load_manifests([tmp_path / "s.json"])}
    assert specs["tone"].layer == "tone" and specs["tone"].target_duration_s == pytest.approx(2.0)
    assert specs["chime"].gen.source == str(tmp_path / "complete.oga") and specs["chime"].post.gain_db < -6
    assert specs["mix"].layers == ("chime", "tone") and specs["mix"].target_duration_s == pytest.approx(3.0)


def test_assetgen_qc_rechecks_a_recording_without_a_near_duplicate_gate(tmp_path):
    """``assetgen qc`` rebuilds the spec from the index (model label ``recording ...``): still a recording."""
    from assetgen import qc
    from assetgen.recheck import spec_of
    from assetgen.render import params_record

    tone(tmp_path / "tone.wav")
    spec = load(manifest(tmp_path, "s,a,file,tone.wav,,,,,"))["a"]
    import json

    row = {"scene": "s", "asset": "a", "model": "recording tone.wav", "params": json.dumps(params_record(spec))}
    rebuilt = spec_of(row)
    assert "near_duplicate" not in qc.gates_for(rebuilt, qc.asset_kind(rebuilt, "sfx"))
    assert "silence" in qc.gates_for(rebuilt, qc.asset_kind(rebuilt, "sfx"))
