"""Recorded sources (model ``file``): read a recording from disk as float32 ``(channels, samples)``.

WAV, FLAC, OGG/Vorbis and AIFF are decoded by soundfile (libsndfile); the audio-file extensions of
``FFMPEG_SUFFIXES`` (MP3, M4A, Opus...) by the ``ffmpeg`` command, at the file's own rate and channel count,
when it is installed; other extensions are refused. ffmpeg reads only the file itself: its container must be
one of ``FFMPEG_FORMATS`` (no playlists, concat lists or image sequences, which name other files) and the
decoder is limited to the ``file`` protocol. A recording is
identified by the sha256 of its bytes: the manifest checks every source when it validates (so a missing,
unreadable or corrupt file is a validation error) and the reader refuses a file whose bytes changed since.
The ``melody`` column's recordings are read the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

SOUNDFILE_SUFFIXES = frozenset((".wav", ".wave", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".aifc"))
# audio files ffmpeg decodes for us, by extension, and the demuxers (ffprobe's format_name) they may use
FFMPEG_SUFFIXES = frozenset((".mp3", ".m4a", ".mp4", ".aac", ".opus", ".wma", ".webm", ".mka", ".ac3", ".caf",
                             ".mp2", ".amr"))
FFMPEG_FORMATS = frozenset(("mp3", "mov", "mp4", "m4a", "3gp", "3g2", "mj2", "aac", "ogg", "matroska", "webm",
                            "asf", "ac3", "caf", "mp2", "amr", "wav", "flac", "aiff"))
FFMPEG = "ffmpeg"
FFPROBE = "ffprobe"
FFMPEG_HINT = "install it with `apt-get install ffmpeg` (Debian/Ubuntu) or convert the file to WAV or FLAC"
_TIMEOUT_S = 300.0


class SourceError(ValueError):
    """A recording that cannot be used; the message names the path and says why."""


@dataclass(frozen=True)
class Recording:
    """What validation learnt about one source file (``path`` absolute)."""

    path: str
    sha256: str
    sample_rate: int
    channels: int
    frames: int
    decoder: str  # "soundfile" or "ffmpeg"

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def decoder_for(path: str | Path) -> str:
    """``soundfile`` for the formats libsndfile reads reliably, ``ffmpeg`` for ``FFMPEG_SUFFIXES`` (by
    extension); :class:`SourceError` for any other extension."""
    suffix = Path(path).suffix.lower()
    if suffix in SOUNDFILE_SUFFIXES:
        return "soundfile"
    if suffix in FFMPEG_SUFFIXES:
        return "ffmpeg"
    known = sorted(SOUNDFILE_SUFFIXES | FFMPEG_SUFFIXES)
    raise SourceError(f"{path}: {suffix or 'no extension'} is not an audio file type assetgen reads "
                      f"({', '.join(known)})")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_REVERSED_BITS = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))


def _bitrev32(x: int) -> int:
    return int(f"{x:032b}"[::-1], 2)


def ogg_crc(page: bytes) -> int:
    """Ogg's page checksum (CRC-32, polynomial 0x04C11DB7, not reflected, initial value and final xor 0), through
    zlib's reflected CRC-32 of the bit-reversed bytes (C speed)."""
    import zlib

    raw = zlib.crc32(page.translate(_REVERSED_BITS), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return _bitrev32(raw)


def container_problem(path: str) -> str | None:
    """Damage a decoder would read past without a word: an Ogg page with a bad checksum, bytes between pages or
    a stream cut before its last page; a WAV whose data chunk is shorter than its header says. None when the
    container is whole (or is another format: its decoder reports its own errors)."""
    suffix = Path(path).suffix.lower()
    data = Path(path).read_bytes()
    if suffix in (".ogg", ".oga", ".opus"):
        pos, last = 0, None
        while pos < len(data):
            if data[pos:pos + 4] != b"OggS" or len(data) < pos + 27:
                return f"not an Ogg page at byte {pos} (damaged or not an Ogg file)"
            nseg = data[pos + 26]
            size = 27 + nseg + sum(data[pos + 27:pos + 27 + nseg])
            page = data[pos:pos + size]
            if len(page) < size:
                return f"truncated: the Ogg page at byte {pos} is cut short"
            stored = int.from_bytes(page[22:26], "little")
            if ogg_crc(page[:22] + b"\0\0\0\0" + page[26:]) != stored:
                return f"damaged: checksum mismatch in the Ogg page at byte {pos}"
            last, pos = page, pos + size
        if last is None or not last[5] & 0x04:
            return "truncated: the Ogg stream ends before its last page"
    elif suffix in (".wav", ".wave") and data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        pos = 12
        while pos + 8 <= len(data):
            chunk, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
            if chunk == b"data":
                if size not in (0, 0xFFFFFFFF) and pos + 8 + size > len(data):
                    return f"truncated: the data chunk holds {len(data) - pos - 8} of {size} bytes"
                break
            pos += 8 + size + (size & 1)
    return None


def _read_soundfile(path: str) -> tuple[np.ndarray, int]:
    import soundfile as sf

    problem = container_problem(path)
    if problem:
        raise SourceError(f"cannot decode {path}: {problem}")
    try:
        info = sf.info(path)
        audio, sr = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        raise SourceError(f"cannot decode {path}: {exc}") from None
    if info.frames > 0 and audio.shape[0] < info.frames:
        raise SourceError(f"cannot decode {path}: truncated (header says {info.frames} frames, "
                          f"{audio.shape[0]} decoded)")
    return np.ascontiguousarray(audio.T), int(sr)


def _ffmpeg_missing(path: str) -> SourceError:
    return SourceError(f"reading {Path(path).suffix or 'this file type'} needs {FFMPEG}, which is not installed "
                       f"({path}): {FFMPEG_HINT}")


def _first_line(text: str, default: str) -> str:
    """ffmpeg's first message line without its ``[demuxer @ 0x...]`` prefix."""
    import re

    lines = [re.sub(r"^\[[^\]]*\]\s*", "", line).strip() for line in text.strip().splitlines()]
    return next((line for line in lines if line), default)


def _run(cmd: list[str], path: str, text: bool = False) -> subprocess.CompletedProcess:
    """``cmd`` to completion; a timeout or an OS error is a :class:`SourceError` naming ``path``."""
    try:
        return subprocess.run(cmd, capture_output=True, text=text, timeout=_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise SourceError(f"cannot decode {path}: {Path(cmd[0]).name} took over {_TIMEOUT_S:g} s") from None
    except OSError as exc:
        raise SourceError(f"cannot decode {path}: {Path(cmd[0]).name}: {exc.strerror or exc}") from None


def _read_ffmpeg(path: str) -> tuple[np.ndarray, int]:
    ffmpeg, ffprobe = shutil.which(FFMPEG), shutil.which(FFPROBE)
    if ffmpeg is None or ffprobe is None:
        raise _ffmpeg_missing(path)
    local = ["-protocol_whitelist", "file"]  # the file itself: no network, no other files by reference
    probe = _run([ffprobe, *local, "-v", "error", "-select_streams", "a:0", "-show_entries",
                  "format=format_name:stream=sample_rate,channels", "-of", "json", path], path, text=True)
    try:
        info = json.loads(probe.stdout or "{}")
        stream = info.get("streams", [])[0]
        sr, channels = int(stream["sample_rate"]), int(stream["channels"])
        formats = str(info.get("format", {}).get("format_name", "")).split(",")
    except (ValueError, IndexError, KeyError, TypeError, AttributeError):
        first = _first_line(probe.stderr, "no audio stream")
        raise SourceError(f"cannot decode {path}: {first}") from None
    if not formats or not set(formats) <= FFMPEG_FORMATS:
        raise SourceError(f"cannot decode {path}: container {','.join(formats)!r} is not an audio file "
                          "(playlists, concat lists and image sequences are refused)")
    # decode at the file's own rate and channel count, with the probed demuxer; -xerror stops at the first
    # damaged packet
    done = _run([ffmpeg, "-nostdin", "-v", "error", "-xerror", *local, "-f", formats[0], "-i", path,
                 "-map", "0:a:0", "-f", "f32le", "-acodec", "pcm_f32le", "-ac", str(channels), "-ar", str(sr), "-"],
                path)
    if done.returncode != 0:
        first = _first_line(done.stderr.decode(errors="replace"), f"exit {done.returncode}")
        raise SourceError(f"cannot decode {path}: {first}")
    audio = np.frombuffer(done.stdout, dtype="<f4")
    audio = audio[: audio.size // channels * channels].reshape(-1, channels)
    return np.ascontiguousarray(audio.T, dtype=np.float32), sr


def decode(path: str | Path) -> tuple[np.ndarray, int]:
    """The whole recording as (float32 (channels, samples), sample rate Hz); raises :class:`SourceError`."""
    path = str(path)
    if not os.path.isfile(path):
        raise SourceError(f"file not found: {path}")
    return _read_soundfile(path) if decoder_for(path) == "soundfile" else _read_ffmpeg(path)


@lru_cache(maxsize=256)
def _probe(path: str, size: int, mtime_ns: int) -> Recording:
    try:
        sha = file_sha256(path)
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from None
    audio, sr = decode(path)
    if audio.shape[1] == 0:
        raise SourceError(f"{path} holds no audio (0 samples)")
    if not np.all(np.isfinite(audio)):
        raise SourceError(f"{path} holds NaN or infinite samples")
    return Recording(path, sha, sr, audio.shape[0], audio.shape[1], decoder_for(path))


def probe(path: str | Path) -> Recording:
    """Check that ``path`` is a readable recording by decoding it whole; its hash, rate, channels and length.

    Cached per (path, size, mtime). Raises :class:`SourceError` naming the path."""
    path = str(Path(path).resolve())
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise SourceError(f"file not found: {path}") from None
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not os.path.isfile(path):
        raise SourceError(f"not a file: {path}")
    if st.st_size == 0:
        raise SourceError(f"cannot decode {path}: the file is empty (0 bytes)")
    return _probe(path, st.st_size, st.st_mtime_ns)


def read_recording(path: str, sha256: str = "") -> tuple[np.ndarray, int]:
    """The whole recording at ``path`` at its own rate (float32 ``(channels, samples)``, Hz); with ``sha256``, a
    file whose bytes differ (changed since validation) is refused."""
    if sha256:
        try:
            now = file_sha256(path)
        except OSError as exc:
            raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from None
        if now != sha256:
            raise SourceError(f"{path} changed since the manifest was validated (sha256 differs); render again")
    return decode(path)


def read_segment(path: str, start_s: float, end_s: float, sha256: str = "") -> tuple[np.ndarray, int]:
    """Samples ``[start_s, end_s)`` of the recording at ``path`` at its own rate; with ``sha256``, a file whose
    bytes differ (changed since validation) is refused."""
    audio, sr = read_recording(path, sha256)
    a, b = round(start_s * sr), min(audio.shape[1], round(end_s * sr))
    if b <= a:
        raise SourceError(f"{path}: segment {start_s:g}..{end_s:g} s is empty (the file holds "
                          f"{audio.shape[1] / sr:g} s)")
    return np.ascontiguousarray(audio[:, a:b]), sr
