"""Narration (model ``tts``): the prompt is the spoken line, synthesised by the espeak-ng command.

espeak-ng is formant synthesis: deterministic (the same line, voice, rate and espeak-ng data give the same
samples, so the request's seed has no effect) and obviously synthetic, so every take is labelled placeholder
VO ("scratch VO" until actors record). It is a command, not a Python library: nothing here imports torch, and
a missing ``espeak-ng`` is a ``ModelUnavailable`` error saying how to install it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from assetgen.models.base import GenerationError, RequestRefused
from assetgen.models.registry import ModelUnavailable, ResolvedModel
from assetgen.spec import DEFAULT_TTS_RATE, DEFAULT_TTS_VOICE, GenRequest

ESPEAK = "espeak-ng"
SAMPLE_RATE = 22_050  # espeak-ng's output rate for its own voices; other rates are resampled to it
MAX_DURATION_S = 600.0  # one line is one call: no generation window
RATE_RANGE = (80, 450)  # words per minute espeak-ng honours (it clamps values outside)
# espeak-ng data files that shape every voice's sound: part of the model fingerprint
DATA_FILES = ("phondata", "phontab", "phonindex", "intonations")
INSTALL_HINT = "install it with `apt-get install espeak-ng` (Debian/Ubuntu) or your system's package manager"
_TIMEOUT_S = 120.0


def espeak_path() -> str | None:
    """Path of the espeak-ng executable on PATH, or None."""
    return shutil.which(ESPEAK)


def _run(args: Sequence[str], text: str | None = None) -> subprocess.CompletedProcess:
    exe = espeak_path()
    if exe is None:
        raise ModelUnavailable(f"model 'tts' needs {ESPEAK}, which is not installed: {INSTALL_HINT}")
    return subprocess.run([exe, *args], input=text, capture_output=True, text=True, timeout=_TIMEOUT_S,
                          check=False)


@lru_cache(maxsize=1)
def _version_text() -> str:
    return _run(["--version"]).stdout.strip()


def version() -> str:
    """espeak-ng's version number (``1.51``); raises ``ModelUnavailable`` when espeak-ng is missing."""
    match = re.search(r"text-to-speech:\s*(\S+)", _version_text())
    return match.group(1) if match else "unknown"


def data_dir() -> Path:
    """espeak-ng's data folder (phoneme tables, dictionaries, voices), as ``espeak-ng --version`` names it."""
    match = re.search(r"Data at:\s*(.+)$", _version_text(), re.M)
    if not match:
        raise ModelUnavailable(f"model 'tts': cannot find {ESPEAK}'s data folder in `{ESPEAK} --version`")
    return Path(match.group(1).strip())


def resolve_tts(ref: str) -> ResolvedModel:
    """The ``tts`` model: espeak-ng and its data folder (``ModelUnavailable`` when espeak-ng is missing)."""
    if espeak_path() is None:
        raise ModelUnavailable(f"model {ref!r} needs {ESPEAK}, which is not installed: {INSTALL_HINT}")
    return ResolvedModel(ref=ref, kind="tts", source=f"{ESPEAK} {version()}", checkpoint_dir=data_dir(),
                         placeholder=True)


@dataclass(frozen=True)
class Voices:
    """espeak-ng's voices: language codes (lower case), voice files (``gmw/en-US``) and variants (``f3``)."""

    languages: frozenset[str]
    files: frozenset[str]
    variants: frozenset[str]


def _listing(kind: str | None) -> list[list[str]]:
    out = _run(["--voices" + (f"={kind}" if kind else "")]).stdout.splitlines()[1:]
    return [line.split() for line in out if len(line.split()) >= 5]


@lru_cache(maxsize=1)
def voices() -> Voices:
    """The installed voices (``espeak-ng --voices`` and ``--voices=variant``), read once per process."""
    plain = _listing(None)
    variants = _listing("variant")
    return Voices(frozenset(cols[1].lower() for cols in plain), frozenset(cols[4] for cols in plain),
                  frozenset(cols[4].removeprefix("!v/") for cols in variants))


def voice_problem(voice: str) -> str | None:
    """Why espeak-ng would not speak with ``voice`` (``language[+variant]``), or None when it would -- or
    when espeak-ng is not installed (then the model itself is reported missing)."""
    if espeak_path() is None:
        return None
    base, _, variant = voice.partition("+")
    known = voices()
    if base.lower() not in known.languages and base not in known.files:
        return f"espeak-ng has no voice {base!r} (`espeak-ng --voices` lists them, e.g. en-us, en-gb, fr, de)"
    # espeak-ng silently ignores an unknown variant, so the take would not sound as the row asks
    if variant and variant not in known.variants:
        return (f"espeak-ng has no voice variant {variant!r} (`espeak-ng --voices=variant` lists them, "
                "e.g. f3, m2, whisper; names are case-sensitive)")
    return None


def synthesize(text: str, voice: str = DEFAULT_TTS_VOICE, rate: int = DEFAULT_TTS_RATE) -> tuple[np.ndarray, int]:
    """Speak ``text`` -> (float32 (1, samples), sample rate Hz). Raises ``GenerationError`` with espeak-ng's
    own message when it fails or produces no audio."""
    import soundfile as sf

    with tempfile.TemporaryDirectory(prefix="assetgen-tts-") as tmp:
        path = Path(tmp) / "line.wav"
        # the line goes through stdin (-b 1: UTF-8), so text starting with '-' is never read as an option
        done = _run(["-v", voice, "-s", str(int(rate)), "-b", "1", "-w", str(path)], text=text)
        if done.returncode != 0:
            first = (done.stderr or done.stdout).strip().splitlines()
            raise GenerationError(f"{ESPEAK} failed (exit {done.returncode}): {first[0] if first else 'no message'}")
        audio, sr = sf.read(path, dtype="float32", always_2d=True)
    if not audio.size or not np.any(audio):
        raise RequestRefused(f"{ESPEAK} produced no audio for the line {text!r}")
    return np.ascontiguousarray(audio.T), int(sr)


class EspeakBackend:
    """``ModelBackend`` for ``tts`` rows: each request's prompt spoken with its ``voice`` and ``rate``
    (``GenParams``), padded with silence to ``duration_s``. A line longer than ``duration_s`` fails alone
    (its entry in the result list is a ``RequestRefused``): cutting speech would deliver half a word."""

    def __init__(self, resolved: ResolvedModel, device: str = "cpu"):
        self.resolved = resolved
        self.device = "cpu"  # espeak-ng runs on the CPU whatever the render's device
        self.name = resolved.label
        self.placeholder = True
        self.sample_rate = SAMPLE_RATE
        self.max_duration_s = MAX_DURATION_S

    def _one(self, request: GenRequest) -> np.ndarray | GenerationError:
        import soxr

        params = request.params
        voice, rate = params.voice or DEFAULT_TTS_VOICE, params.rate or DEFAULT_TTS_RATE
        try:
            audio, sr = synthesize(request.prompt, voice, rate)
        except GenerationError as exc:
            return exc
        if sr != self.sample_rate:
            audio = soxr.resample(audio.T, sr, self.sample_rate).T.astype(np.float32)
        n = round(params.duration_s * self.sample_rate)
        spoken = audio.shape[1] / self.sample_rate
        if audio.shape[1] > n:
            return RequestRefused(
                f"the line takes {spoken:.2f} s at rate {rate} with voice {voice}, longer than duration_s "
                f"{params.duration_s:g}: raise duration_s or rate, or shorten the line")
        return np.pad(audio, ((0, 0), (0, n - audio.shape[1])))

    def generate(self, requests: Sequence[GenRequest]) -> list[np.ndarray | GenerationError]:
        """One (1, round(duration_s * 22050)) float32 array per request, or the error of that request alone."""
        return [self._one(r) for r in requests]
