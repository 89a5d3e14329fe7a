"""WAV writer read back by independent readers: soundfile (audio), wavinfo (smpl/bext/iXML/INFO), ffprobe."""

from __future__ import annotations

import datetime as dt
import io
import json
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
from wavinfo import WavInfoReader

from assetgen.store import wav

WHEN = dt.datetime(2025, 3, 4, 5, 6, 7, tzinfo=dt.timezone.utc)
FFPROBE = shutil.which("ffprobe")


def _audio(channels=2, frames=4801, seed=0):
    return np.random.default_rng(seed).uniform(-0.9, 0.9, (channels, frames)).astype(np.float32)


def _quantised(audio, bit_depth):
    """What libsndfile stores for ``audio`` at this depth, decoded back to float (the expected read-back)."""
    subtype = wav.BIT_DEPTHS[bit_depth][0]
    raw = io.BytesIO()
    sf.write(raw, audio.T, 48000, format="RAW", subtype=subtype)
    raw.seek(0)
    data, _ = sf.read(raw, samplerate=48000, channels=audio.shape[0], format="RAW", subtype=subtype,
                      dtype="float32", always_2d=True)
    return data


@pytest.mark.parametrize("bit_depth,rate,fmt_tag,subtype", [
    (24, 48000, 1, "PCM_24"), (16, 44100, 1, "PCM_16"), (32, 48000, 3, "FLOAT")])
@pytest.mark.parametrize("channels", [1, 2])
def test_audio_reads_back_sample_exact(tmp_path, bit_depth, rate, fmt_tag, subtype, channels):
    audio = _audio(channels)
    path = wav.write_wav(tmp_path / "a.wav", audio, rate, bit_depth, loop=(100, 4801), description="x",
                         provenance={"content_key": "k"}, when=WHEN)
    info = sf.info(path)
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (rate, channels, 4801, subtype)
    data, _ = sf.read(path, dtype="float32", always_2d=True)
    np.testing.assert_array_equal(data, _quantised(audio, bit_depth))
    assert np.abs(data.T - audio).max() <= 2.0 ** -(bit_depth - 1) if bit_depth < 32 else \
        np.array_equal(data.T, audio)
    reader = WavInfoReader(str(path))
    assert reader.fmt.audio_format == fmt_tag and reader.fmt.bits_per_sample == bit_depth
    assert reader.data.frame_count == 4801
    if bit_depth == 32:
        assert wav.read_chunks(path)[b"fact"] == (4801).to_bytes(4, "little")
    assert path.stat().st_size % 2 == 0


def test_full_scale_clips_instead_of_wrapping(tmp_path):
    audio = np.array([[1.0, -1.0, 1.7, -3.0, 0.0]], dtype=np.float32)
    path = wav.write_wav(tmp_path / "a.wav", audio, 48000, 24)
    data, _ = sf.read(path, dtype="int32", always_2d=True)
    assert list(data[:, 0] >> 8) == [2**23 - 1, -(2**23), 2**23 - 1, -(2**23), 0]


@pytest.mark.parametrize("loop", [(0, 4801), (1234, 3000), (0, 1)])
def test_smpl_loop_is_sample_exact_with_inclusive_end(tmp_path, loop):
    path = wav.write_wav(tmp_path / "loop.wav", _audio(), 48000, 24, loop=loop, when=WHEN)
    smpl = WavInfoReader(str(path)).smpl
    assert len(smpl.sample_loops) == 1
    only = smpl.sample_loops[0]
    assert (only.loop_type, only.start, only.end, only.repetition_count) == (0, loop[0], loop[1] - 1, 0)
    assert smpl.sample_period_ns == round(1e9 / 48000)
    assert wav.read_loop(path) == loop


def test_no_loop_means_no_smpl(tmp_path):
    path = wav.write_wav(tmp_path / "a.wav", _audio(), 48000, 24)
    assert WavInfoReader(str(path)).smpl is None and wav.read_loop(path) is None


def test_bext_ixml_info_carry_prompt_and_provenance(tmp_path):
    prompt = "dawn chorus, Vögel im Wald " * 20  # > 256 bytes with multi-byte characters
    prov = {"content_key": "ab" * 32, "model": "music (placeholder)", "seed": 7, "params": {"gen": {"top_k": 250}}}
    path = wav.write_wav(tmp_path / "a.wav", _audio(), 48000, 24, description=prompt, provenance=prov,
                         lufs=-23.04, true_peak_dbtp=-1.5, when=WHEN, scene="forest", take="v001")
    reader = WavInfoReader(str(path), info_encoding="utf-8", bext_encoding="utf-8")
    bext = reader.bext
    expected = prompt.encode()[:256].decode("utf-8", errors="ignore")
    assert bext.description == expected and len(expected.encode()) <= 256 and prompt.startswith(expected)
    assert bext.originator == "assetgen" and bext.originator_ref == "ab" * 16
    assert (bext.originator_date, bext.originator_time) == ("2025-03-04", "05:06:07")
    assert bext.version == 2 and bext.loudness_value == -23.04 and bext.max_true_peak == -1.5
    ixml = reader.ixml
    assert (ixml.project, ixml.scene, ixml.take) == ("assetgen", "forest", "v001")
    stored = json.loads(ixml.raw_xml.find("ASSETGEN").text)
    assert {k: stored[k] for k in prov} == prov
    assert reader.info.software == "assetgen" and reader.info.comment == prompt
    back = wav.read_provenance(path)
    assert {k: back[k] for k in prov} == prov and wav.audio_intact(path)


@pytest.mark.skipif(FFPROBE is None, reason="ffprobe not installed")
@pytest.mark.parametrize("bit_depth,codec", [(16, "pcm_s16le"), (24, "pcm_s24le"), (32, "pcm_f32le")])
def test_ffprobe_reads_stream_and_bext(tmp_path, bit_depth, codec):
    path = wav.write_wav(tmp_path / "a.wav", _audio(frames=48000), 48000, bit_depth, loop=(0, 48000),
                         description="rain on tin roof", provenance={"content_key": "cd" * 32}, when=WHEN)
    out = subprocess.run([FFPROBE, "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True)
    probe = json.loads(out.stdout)
    stream = probe["streams"][0]
    assert (stream["codec_name"], int(stream["sample_rate"]), stream["channels"]) == (codec, 48000, 2)
    assert int(stream["duration_ts"]) == 48000
    tags = probe["format"]["tags"]
    assert tags["encoded_by"] == "assetgen" and tags["comment"] == "rain on tin roof"
    assert tags["originator_reference"] == "cd" * 16 and tags["date"] == "2025-03-04"
    assert tags["creation_time"] == "05:06:07" and tags["coding_history"].startswith(f"A=PCM,F=48000,W={bit_depth}")


def test_truncation_never_splits_a_character():
    text = "a" + "é" * 200  # 401 bytes; byte 256 falls inside a 2-byte character
    cut = wav.truncate_utf8(text, 256)
    assert len(cut) == 255 and cut.decode("utf-8") == text[:128]


def test_corrupted_audio_is_detected(tmp_path):
    path = wav.write_wav(tmp_path / "a.wav", _audio(), 48000, 24, provenance={"content_key": "k"})
    blob = bytearray(path.read_bytes())
    blob[-10] ^= 0xFF
    path.write_bytes(bytes(blob))
    assert not wav.audio_intact(path)
    path.write_bytes(bytes(blob[: len(blob) // 2]))
    assert not wav.audio_intact(path)


@pytest.mark.parametrize("kwargs,match", [
    ({"bit_depth": 8}, "bit depth"), ({"loop": (10, 5)}, "loop"), ({"loop": (0, 5000)}, "loop"),
    ({"audio": np.zeros((2, 0), np.float32)}, "shape"), ({"audio": np.full((1, 4), np.nan, np.float32)}, "NaN")])
def test_bad_requests_raise_clear_errors(kwargs, match):
    args = {"audio": _audio(), "sample_rate": 48000, "bit_depth": 24} | kwargs
    with pytest.raises(wav.WavError, match=match):
        wav.wav_bytes(**args)


@pytest.mark.parametrize("bit_depth", [16, 24, 32])
def test_encoded_bytes_equal_libsndfile(bit_depth):
    rng = np.random.default_rng(bit_depth)
    edges = [1.0, -1.0, 0.99999994, -0.99999994, 1.7, -3.0, 0.0, -0.0, 1e-9, -1e-9, 2.0**-24, -(2.0**-24),
             2.0**-16, -(2.0**-16), 0.5 + 2.0**-24, -0.5 - 2.0**-24, 2.0**-8 * 1.5, -(2.0**-8) * 1.5, -1e-10, 1e-10]
    audio = np.concatenate([np.array(edges, np.float32)[None].repeat(2, axis=0),
                            rng.uniform(-1.2, 1.2, (2, 5000)).astype(np.float32),
                            rng.standard_normal((2, 5000)).astype(np.float32) * 1e-5], axis=1)
    for part in (audio, audio[:1, :-1], audio[:1, :-2], audio[:1, :-3]):  # sample counts of every remainder mod 4
        raw = io.BytesIO()
        sf.write(raw, part.T, 48000, format="RAW", subtype=wav.BIT_DEPTHS[bit_depth][0], endian="LITTLE")
        assert wav.encode_samples(part, bit_depth) == raw.getvalue()
    assert wav.encode_samples(audio[:1], bit_depth) == wav.encode_samples(audio[0], bit_depth)


@pytest.mark.parametrize("bit_depth", [16, 24, 32])
def test_pre_encoded_samples_give_the_same_file(bit_depth):
    audio = _audio(seed=bit_depth)
    samples = wav.encode(audio, bit_depth)
    assert samples.data == wav.encode_samples(audio, bit_depth) and (samples.channels, samples.frames) == (2, 4801)
    kw = {"loop": (0, 4801), "description": "p", "provenance": {"content_key": "k"}, "when": WHEN}
    assert wav.wav_bytes(samples, 48000, bit_depth, **kw) == wav.wav_bytes(audio, 48000, bit_depth, **kw)
    with pytest.raises(wav.WavError, match="encoded at"):
        wav.wav_bytes(samples, 48000, 24 if bit_depth != 24 else 16)
    with pytest.raises(wav.WavError, match="NaN"):
        wav.encode(np.full((1, 4), np.nan, np.float32), bit_depth)
    for bad in (np.nan, np.inf, -np.inf):  # one bad sample anywhere, in either channel
        spoiled = audio.copy()
        spoiled[1, 3001] = bad
        with pytest.raises(wav.WavError, match="NaN or infinite"):
            wav.encode(spoiled, bit_depth)
