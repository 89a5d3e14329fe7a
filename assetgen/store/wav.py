"""Engine-ready WAV files: PCM/float audio plus ``bext``, ``smpl``, ``iXML`` and ``LIST/INFO`` chunks.

Written by hand because no well-kept Python library writes ``smpl`` loops together with BWF ``bext`` and
iXML (libsndfile cannot add these chunks; samples are quantised exactly as libsndfile does, see
:func:`encode_samples`). Layouts, all little-endian:

- RIFF/WAVE (Microsoft "Multimedia Programming Interface and Data Specifications 1.0", 1991):
  ``"RIFF" <u32 size> "WAVE"`` then chunks ``<4-char id> <u32 size> <payload> [pad byte if size is odd]``.
  ``fmt `` = wFormatTag u16, nChannels u16, nSamplesPerSec u32, nAvgBytesPerSec u32, nBlockAlign u16,
  wBitsPerSample u16 (+ cbSize u16 = 0 for non-PCM). 16/24-bit use WAVE_FORMAT_PCM (1); 32-bit float uses
  WAVE_FORMAT_IEEE_FLOAT (3), which requires a ``fact`` chunk (u32 dwSampleLength = frames).
- ``bext`` (EBU Tech 3285 v2, Broadcast Wave Format): Description[256], Originator[32],
  OriginatorReference[32], OriginationDate[10] "yyyy-mm-dd", OriginationTime[8] "hh:mm:ss",
  TimeReferenceLow/High u32, Version u16 (=2), UMID[64], LoudnessValue/LoudnessRange/MaxTruePeakLevel/
  MaxMomentaryLoudness/MaxShortTermLoudness i16 (value x 100, 0x7FFF = not measured), Reserved[180],
  CodingHistory (ASCII, CR/LF terminated). Text fields are NUL padded; the description is the prompt,
  cut to 256 bytes on a UTF-8 character boundary.
- ``smpl`` (same Microsoft spec, "Sampler Chunk"): dwManufacturer, dwProduct, dwSamplePeriod (ns),
  dwMIDIUnityNote, dwMIDIPitchFraction, dwSMPTEFormat, dwSMPTEOffset, cSampleLoops, cbSamplerData (9 x u32),
  then per loop dwIdentifier, dwType (0 = forward), dwStart, dwEnd, dwFraction, dwPlayCount (0 = infinite).
  dwStart and dwEnd are sample frames and **dwEnd is inclusive** (the last frame played before jumping back).
  assetgen's ``loop_end`` is exclusive, so ``dwEnd = loop_end - 1`` on write and ``loop_end = dwEnd + 1`` on
  read. This is the loop Unreal, Wwise and FMOD import.
- ``iXML`` (iXML specification v2.10, ixml.info): a ``<BWFXML>`` document; assetgen's provenance (content
  key, model, seed, params, ...) is JSON inside an ``<ASSETGEN>`` element, plus standard PROJECT/SCENE/
  TAKE/NOTE elements. ``audio_sha256`` (sha256 of the ``data`` payload) is added so a file found without an
  index row can be checked before it is adopted.
- ``LIST``/``INFO`` (Microsoft spec): ISFT (software), ICMT (comment = prompt), ICRD (creation date).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import struct
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_IEEE_FLOAT = 0x0003
BIT_DEPTHS = {16: ("PCM_16", WAVE_FORMAT_PCM), 24: ("PCM_24", WAVE_FORMAT_PCM), 32: ("FLOAT", WAVE_FORMAT_IEEE_FLOAT)}
ORIGINATOR = "assetgen"
BEXT_DESCRIPTION_BYTES = 256
_BEXT_UNKNOWN = 0x7FFF
_MAX_RIFF = 0xFFFFFFFF
_MODES = {1: "mono", 2: "stereo"}  # EBU R98 coding-history mode


class WavError(ValueError):
    """Audio or metadata that cannot be written as requested, or a file that is not a readable WAV."""


# -- writing ---------------------------------------------------------------------------------------------
def chunk(cid: bytes, payload: bytes) -> bytes:
    """One RIFF chunk: id, u32 size, payload, plus a pad byte when the size is odd."""
    assert len(cid) == 4
    return cid + struct.pack("<I", len(payload)) + payload + (b"\0" if len(payload) % 2 else b"")


def encode_samples(audio: np.ndarray, bit_depth: int) -> bytes:
    """Interleaved little-endian sample bytes: libsndfile's quantisation, values clipped to [-1, 1]."""
    return bytes(_encode(np.asarray(audio, dtype=np.float32), bit_depth)[0])


def _encode(audio: np.ndarray, bit_depth: int) -> tuple[memoryview, bool]:
    """:func:`encode_samples` without the final copy into ``bytes``, and whether every sample was finite.

    Written by hand rather than with soundfile: libsndfile can only encode into a file or a Python-callback
    virtual file, while the store needs the bytes in memory (hashed, then written once). This is libsndfile's
    own clipping converter (``f2let_clip_array``/``f2les_clip_array``: scale by 2**31 in float32, clip,
    ``lrintf``, keep the top 16/24 bits), compiled (:func:`assetgen.dsp.kernels.pcm`, imported here so that
    reading WAVs stays light); tests check the bytes equal libsndfile's.
    """
    x = audio if audio.ndim == 2 else audio[None]
    if bit_depth == 32:  # NaN and inf propagate into the sum; float64 cannot overflow
        finite = bool(np.isfinite(np.sum(x, dtype=np.float64)))
        return memoryview(np.ascontiguousarray(x.T, dtype="<f4")).cast("B"), finite
    from ..dsp.kernels import pcm

    data, finite = pcm(x, bit_depth // 8)
    return memoryview(data), finite


def fmt_chunk(channels: int, sample_rate: int, bit_depth: int) -> bytes:
    """``fmt `` (+ ``fact`` placeholder is separate): PCM for 16/24 bit, IEEE float for 32 bit."""
    tag = BIT_DEPTHS[bit_depth][1]
    block = channels * bit_depth // 8
    payload = struct.pack("<HHIIHH", tag, channels, sample_rate, sample_rate * block, block, bit_depth)
    if tag != WAVE_FORMAT_PCM:
        payload += struct.pack("<H", 0)  # cbSize
    return chunk(b"fmt ", payload)


def truncate_utf8(text: str, limit: int) -> bytes:
    """``text`` as UTF-8, at most ``limit`` bytes, never cutting a multi-byte character."""
    return text.encode("utf-8")[:limit].decode("utf-8", errors="ignore").encode("utf-8")


def _centi(value: float | None) -> int:
    if value is None or not np.isfinite(value):
        return _BEXT_UNKNOWN
    return int(np.clip(round(value * 100), -32768, 32766))


def bext_chunk(description: str, when: _dt.datetime, *, reference: str = "", lufs: float | None = None,
               true_peak_dbtp: float | None = None, coding_history: str = "") -> bytes:
    """EBU Tech 3285 v2 ``bext``: description (prompt), originator ``assetgen``, date/time, loudness."""
    when = when.astimezone(_dt.timezone.utc)
    payload = struct.pack(
        "<256s32s32s10s8sIIH64s5h180s",
        truncate_utf8(description, BEXT_DESCRIPTION_BYTES),
        ORIGINATOR.encode("ascii"),
        reference.encode("ascii", errors="replace")[:32],
        when.strftime("%Y-%m-%d").encode("ascii"),
        when.strftime("%H:%M:%S").encode("ascii"),
        0, 0, 2, b"",
        _centi(lufs), _BEXT_UNKNOWN, _centi(true_peak_dbtp), _BEXT_UNKNOWN, _BEXT_UNKNOWN,
        b"",
    ) + coding_history.encode("ascii", errors="replace")
    return chunk(b"bext", payload)


def smpl_chunk(loop_start: int, loop_end: int, sample_rate: int) -> bytes:
    """One infinite forward loop over frames ``[loop_start, loop_end)`` (dwEnd = loop_end - 1, inclusive)."""
    header = struct.pack("<9I", 0, 0, round(1e9 / sample_rate), 60, 0, 0, 0, 1, 0)
    loop = struct.pack("<6I", 0, 0, loop_start, loop_end - 1, 0, 0)
    return chunk(b"smpl", header + loop)


def ixml_chunk(provenance: dict, *, scene: str = "", take: str = "", note: str = "") -> bytes:
    """iXML document with standard PROJECT/SCENE/TAKE/NOTE and the provenance JSON in ``<ASSETGEN>``."""
    root = ET.Element("BWFXML")
    for tag, text in (("IXML_VERSION", "2.10"), ("PROJECT", ORIGINATOR), ("SCENE", scene), ("TAKE", take),
                      ("NOTE", note), ("ASSETGEN", json.dumps(provenance, sort_keys=True, default=str))):
        ET.SubElement(root, tag).text = text
    return chunk(b"iXML", ET.tostring(root, encoding="utf-8", xml_declaration=True))


def info_chunk(comment: str, when: _dt.datetime) -> bytes:
    """``LIST``/``INFO`` with ISFT = assetgen, ICMT = comment (UTF-8), ICRD = creation date."""
    fields = b"".join(chunk(cid, text.encode("utf-8") + b"\0") for cid, text in (
        (b"ISFT", ORIGINATOR), (b"ICMT", comment), (b"ICRD", when.strftime("%Y-%m-%d"))) if text)
    return chunk(b"LIST", b"INFO" + fields)


@dataclass(frozen=True)
class Samples:
    """Audio encoded for a WAV ``data`` chunk (interleaved, little-endian) with the sha256 of those bytes.

    Made by :func:`encode` where the audio is post-processed (a DSP process or a Dask worker), so the
    process that writes the files only adds the header chunks; also 3/4 the size of float32 to send back.
    """

    data: bytes
    sha256: str
    channels: int
    frames: int
    bit_depth: int


def encode(audio: np.ndarray, bit_depth: int) -> Samples:
    """Validate ``audio`` (float, (channels, samples), finite) and encode it at ``bit_depth`` (16/24/32)."""
    if bit_depth not in BIT_DEPTHS:
        raise WavError(f"bit depth {bit_depth}: expected 16, 24 (PCM) or 32 (float)")
    audio = np.asarray(audio)
    if audio.ndim != 2 or audio.shape[0] < 1 or audio.shape[1] < 1:
        raise WavError(f"audio shape {audio.shape}: expected (channels, samples) with at least one sample")
    data, finite = _encode(np.asarray(audio, dtype=np.float32), bit_depth)
    if not finite:
        raise WavError("audio contains NaN or infinite samples")
    return Samples(bytes(data), hashlib.sha256(data).hexdigest(), audio.shape[0], audio.shape[1], bit_depth)


def wav_bytes(audio: np.ndarray | Samples, sample_rate: int, bit_depth: int = 24, *,
              loop: tuple[int, int] | None = None, description: str = "", provenance: dict | None = None,
              lufs: float | None = None, true_peak_dbtp: float | None = None,
              when: _dt.datetime | None = None, scene: str = "", take: str = "") -> bytes:
    """The complete file. ``audio`` is float (channels, samples) or already :func:`encode`-d at ``bit_depth``;
    ``loop`` = (start, end) frames, end exclusive."""
    samples = audio if isinstance(audio, Samples) else encode(audio, bit_depth)
    if samples.bit_depth != bit_depth:
        raise WavError(f"samples encoded at {samples.bit_depth} bit, file asked for {bit_depth} bit")
    if not 1 <= int(sample_rate) <= 768_000:
        raise WavError(f"sample rate {sample_rate}: out of range")
    channels, frames, data = samples.channels, samples.frames, samples.data
    if loop is not None:
        start, end = int(loop[0]), int(loop[1])
        if not 0 <= start < end <= frames:
            raise WavError(f"loop ({start}, {end}): need 0 <= start < end <= {frames} frames")
    when = when or _dt.datetime.now(_dt.timezone.utc)
    prov = dict(provenance or {}) | {"audio_sha256": samples.sha256}
    key = str(prov.get("content_key", ""))
    history = f"A=PCM,F={sample_rate},W={bit_depth},M={_MODES.get(channels, str(channels))},T={ORIGINATOR}\r\n"
    chunks = [fmt_chunk(channels, int(sample_rate), bit_depth)]
    if bit_depth == 32:
        chunks.append(chunk(b"fact", struct.pack("<I", frames)))
    chunks.append(bext_chunk(description, when, reference=key[:32], lufs=lufs, true_peak_dbtp=true_peak_dbtp,
                             coding_history=history))
    if loop is not None:
        chunks.append(smpl_chunk(int(loop[0]), int(loop[1]), int(sample_rate)))
    chunks.append(info_chunk(description, when))
    chunks.append(ixml_chunk(prov, scene=scene, take=take, note=description))
    # the data chunk is joined in place rather than built with chunk(): one copy of the samples, not three
    chunks += [b"data" + struct.pack("<I", len(data)), data, b"\0" if len(data) % 2 else b""]
    size = 4 + sum(len(c) for c in chunks)
    if size > _MAX_RIFF:
        raise WavError(f"{size} bytes: too large for a RIFF WAV (4 GiB)")
    return b"".join([b"RIFF", struct.pack("<I", size), b"WAVE", *chunks])


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int, bit_depth: int = 24, **kw: Any) -> Path:
    """Write :func:`wav_bytes` to ``path`` (plain write; ``AssetStore`` does the atomic version)."""
    path = Path(path)
    path.write_bytes(wav_bytes(audio, sample_rate, bit_depth, **kw))
    return path


# -- reading (our own files; tests use independent readers) -----------------------------------------------
def iter_chunks(blob: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(id, payload) of each top-level chunk of a RIFF/WAVE file's bytes."""
    if len(blob) < 12 or blob[:4] != b"RIFF" or blob[8:12] != b"WAVE":
        raise WavError("not a RIFF/WAVE file")
    end = min(len(blob), 8 + struct.unpack_from("<I", blob, 4)[0])
    pos = 12
    while pos + 8 <= end:
        cid, size = blob[pos:pos + 4], struct.unpack_from("<I", blob, pos + 4)[0]
        if pos + 8 + size > end:
            raise WavError(f"chunk {cid!r} runs past the end of the file (truncated?)")
        yield cid, blob[pos + 8:pos + 8 + size]
        pos += 8 + size + (size & 1)


def read_chunks(path: str | os.PathLike | bytes) -> dict[bytes, bytes]:
    """Top-level chunks of a WAV file (a path, or the file's bytes) by id (last one wins)."""
    try:
        return dict(iter_chunks(path if isinstance(path, (bytes, bytearray, memoryview)) else Path(path).read_bytes()))
    except WavError as exc:
        where = "<bytes>" if isinstance(path, (bytes, bytearray, memoryview)) else path
        raise WavError(f"{where}: {exc}") from None


def read_loop(path: str | os.PathLike | bytes) -> tuple[int, int] | None:
    """First ``smpl`` loop as (start, end) frames, end exclusive; None without a loop."""
    smpl = read_chunks(path).get(b"smpl")
    if not smpl or len(smpl) < 60 or struct.unpack_from("<I", smpl, 28)[0] < 1:
        return None
    start, end_inclusive = struct.unpack_from("<II", smpl, 36 + 8)
    return start, end_inclusive + 1


def read_provenance(path: str | os.PathLike | bytes) -> dict:
    """The provenance dict from the iXML ``<ASSETGEN>`` element (empty when absent or unreadable)."""
    ixml = read_chunks(path).get(b"iXML")
    if not ixml:
        return {}
    try:
        node = ET.fromstring(ixml.rstrip(b"\0")).find("ASSETGEN")
        return json.loads(node.text) if node is not None and node.text else {}
    except (ET.ParseError, json.JSONDecodeError):
        return {}


def audio_intact(path: str | os.PathLike | bytes) -> bool:
    """True when the file (a path, or its bytes) parses and its ``data`` payload matches the provenance
    ``audio_sha256``."""
    try:
        if not isinstance(path, (bytes, bytearray, memoryview)):
            path = Path(path).read_bytes()
        chunks = read_chunks(path)
        prov = read_provenance(path)
    except (OSError, WavError):
        return False
    data = chunks.get(b"data")
    return data is not None and prov.get("audio_sha256") == hashlib.sha256(data).hexdigest()
