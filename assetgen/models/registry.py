"""Resolve a manifest's model reference to a loadable checkpoint, offline-first, without importing torch.

A reference is an alias (``music``, ``sfx``, ``melody``; ``tts`` is espeak-ng, see ``espeak_backend``), a hub id (``facebook/musicgen-small``...) or a checkpoint directory.
Look-up order for aliases and hub ids: ``--model-dir`` / ``ASSETGEN_MODEL_DIR`` (``DIR/<alias>``, ``DIR/<hub id>``),
then the local Hugging Face cache. Nothing is ever downloaded: a missing checkpoint is a ``ModelUnavailable``
error that says which model, where it looked and how to point at a directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from assetgen.spec import PLACEHOLDER_VO

MARKER_FILE = "assetgen.json"  # written next to tiny checkpoints; marks placeholder audio
CHECKPOINT_FILES = ("state_dict.bin", "compression_state_dict.bin")
DEFAULT_HUB_IDS = {"music": "facebook/musicgen-small", "sfx": "facebook/audiogen-medium",
                   "melody": "facebook/musicgen-melody"}
ALIAS_KINDS = {"music": "music", "sfx": "sfx", "melody": "music"}  # the model class an alias fixes
HUB_IDS = tuple(f"facebook/musicgen-{s}" for s in ("small", "medium", "large", "melody")) + (
    "facebook/audiogen-medium",)
MODEL_DIR_ENV = "ASSETGEN_MODEL_DIR"
TTS_KIND = "tts"  # narration via espeak-ng (assetgen.models.espeak_backend); no checkpoint files
FILE_KIND = "file"  # recorded sources read from disk (assetgen.models.file_backend); nothing to load
FILE_READER_VERSION = "1"  # part of a recording's fingerprint: bump when decoding changes the samples read


class ModelUnavailable(Exception):
    """A model's checkpoints are not available locally (CLI exit code 2)."""


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model reference points: ``source`` is what ``get_pretrained`` is given (a dir or a hub id)."""

    ref: str
    kind: str  # "music" (MusicGen class), "sfx" (AudioGen class) or "tts" (espeak-ng)
    source: str
    checkpoint_dir: Path  # directory holding the two checkpoint files (tts: espeak-ng's data folder)
    placeholder: bool

    @property
    def placeholder_note(self) -> str:
        """What kind of placeholder audio this model makes (for warnings), empty for real models."""
        if self.kind == TTS_KIND:
            return "synthetic scratch VO (espeak-ng), to be replaced by recorded dialogue"
        return "tiny random-weight model" if self.placeholder else ""

    @property
    def label(self) -> str:
        """Model label for logs, the index and the report; placeholder models say so."""
        name = self.source if not Path(self.source).is_absolute() else Path(self.source).name
        if self.kind == TTS_KIND:
            return f"{PLACEHOLDER_VO} {self.source} ({self.ref})"
        if self.kind == FILE_KIND:
            return "recording"
        if self.placeholder:
            return f"PLACEHOLDER tiny-random {self.kind} ({self.ref})"
        return name


def model_dir_from_env(model_dir: str | Path | None = None) -> Path | None:
    value = model_dir if model_dir not in (None, "") else os.environ.get(MODEL_DIR_ENV) or None
    return Path(value).expanduser() if value else None


def _has_checkpoints(path: Path) -> bool:
    return all((path / name).is_file() for name in CHECKPOINT_FILES)


def _hf_cached_dir(hub_id: str) -> Path | None:
    """Snapshot directory of ``hub_id`` in the local HF cache when both checkpoint files are there."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub comes with audiocraft
        return None
    found = [try_to_load_from_cache(hub_id, name) for name in CHECKPOINT_FILES]
    if all(isinstance(f, str) for f in found):
        return Path(found[0]).parent
    return None


def _kind_of(path: Path, hint: str) -> str:
    marker = path / MARKER_FILE
    if marker.is_file():
        return json.loads(marker.read_text()).get("kind", hint)
    return "sfx" if "audiogen" in hint.lower() or "audiogen" in str(path).lower() else "music"


def checkpoint_kind(path: str | Path) -> str:
    """``music`` or ``sfx``: what a checkpoint directory generates (its marker, else its name)."""
    return _kind_of(Path(path), str(path))


def _placeholder(path: Path) -> bool:
    marker = path / MARKER_FILE
    return marker.is_file() and bool(json.loads(marker.read_text()).get("placeholder", False))


def _dir_model(ref: str, path: Path) -> ResolvedModel:
    path = path.resolve()
    kind = _kind_of(path, ref)
    return ResolvedModel(ref=ref, kind=kind, source=str(path), checkpoint_dir=path, placeholder=_placeholder(path))


def resolve(ref: str, model_dir: str | Path | None = None) -> ResolvedModel:
    """Resolve ``ref`` to local checkpoints or raise ``ModelUnavailable`` naming every place looked at."""
    if ref == TTS_KIND:
        from assetgen.models.espeak_backend import resolve_tts

        return resolve_tts(ref)
    if ref == FILE_KIND:
        return ResolvedModel(ref=ref, kind=FILE_KIND, source=f"file reader {FILE_READER_VERSION}",
                             checkpoint_dir=Path("."), placeholder=False)
    mdir = model_dir_from_env(model_dir)
    looked: list[str] = []
    if ref not in DEFAULT_HUB_IDS and ref not in HUB_IDS:
        path = Path(ref).expanduser()
        if _has_checkpoints(path):
            return _dir_model(ref, path)
        raise ModelUnavailable(
            f"model {ref!r}: no checkpoint directory there (expected {' and '.join(CHECKPOINT_FILES)} in {path})."
        )
    candidates = [ref] if ref not in DEFAULT_HUB_IDS else [ref, DEFAULT_HUB_IDS[ref]]
    for name in candidates:
        if mdir is not None:
            local = mdir / name
            looked.append(str(local))
            if _has_checkpoints(local):
                resolved = _dir_model(ref, local)
                if ref in DEFAULT_HUB_IDS:  # the alias fixes the model class
                    resolved = ResolvedModel(ref, ALIAS_KINDS[ref], resolved.source, resolved.checkpoint_dir,
                                             resolved.placeholder)
                return resolved
        if name in HUB_IDS:
            looked.append(f"Hugging Face cache ({name})")
            cached = _hf_cached_dir(name)
            if cached is not None:
                kind = "sfx" if "audiogen" in name else "music"
                return ResolvedModel(ref=ref, kind=kind, source=name, checkpoint_dir=cached, placeholder=False)
    hint = (
        f"Point at a folder of checkpoints with --model-dir DIR or {MODEL_DIR_ENV}=DIR (DIR/{ref} or DIR/<hub id> "
        "holding state_dict.bin + compression_state_dict.bin), or write tiny placeholder models with "
        "`assetgen models make-tiny DIR`."
    )
    where = "; ".join(looked) if looked else "nowhere (no --model-dir given)"
    raise ModelUnavailable(f"model {ref!r} is not available locally (looked in: {where}). {hint}")


@lru_cache(maxsize=64)
def _file_digest(path: str, size: int, mtime_ns: int, inode: int, ctime_ns: int) -> str:
    real = os.path.realpath(path)
    blob = os.path.basename(real)
    # Files in the HF cache are symlinks to blobs named by their sha256: no need to read gigabytes.
    if real != path and os.sep + "blobs" + os.sep in real and re.fullmatch(r"[0-9a-f]{64}", blob):
        return blob
    h = hashlib.sha256()
    with open(real, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(ref: str, model_dir: str | Path | None = None) -> str:
    """sha256 over the model's checkpoint files (part of every content key). Raises ``ModelUnavailable``."""
    resolved = resolve(ref, model_dir)
    h = hashlib.sha256(resolved.kind.encode())
    if resolved.kind == FILE_KIND:  # the recording's own sha256 is in each row's key (plan._gen_text)
        h.update(resolved.source.encode())
        return h.hexdigest()
    names = CHECKPOINT_FILES
    if resolved.kind == TTS_KIND:  # the synthesiser's version and its phoneme data decide the samples
        from assetgen.models.espeak_backend import DATA_FILES

        h.update(resolved.source.encode())
        names = tuple(n for n in DATA_FILES if (resolved.checkpoint_dir / n).is_file())
    paths = [resolved.checkpoint_dir / name for name in names]
    if resolved.kind != TTS_KIND:  # a melody checkpoint's own stem separator shapes its conditioning
        from assetgen.models.melody import separator_files

        paths += separator_files(resolved.checkpoint_dir)
    for path in paths:
        st = path.stat()
        h.update(_file_digest(str(path), st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns).encode())
    return h.hexdigest()
