"""Melody conditioning (MusicGen-melody): which models take a melody, and where their stem separator comes from.

audiocraft's ``ChromaStemConditioner`` (the ``self_wav`` conditioner of type ``chroma_stem``) separates the melody
with demucs before taking its chroma, and builds that separator with ``demucs.pretrained.get_model('htdemucs')``:
demucs looks in the Hugging Face hub, then in the legacy repository on dl.fbaipublicfiles.com (torch hub's cache).
A melody checkpoint directory may carry its own separator as a demucs *local model repository* in
:data:`SEPARATOR_DIR` (the bag ``htdemucs.yaml`` and ``<signature>-<sha256 prefix>.th``: the layout ``demucs --repo``
reads, whose checksum demucs verifies); :func:`local_separator` has demucs load from there while the checkpoint
loads, so no network or cache outside the directory is consulted. Hub ids and directories without a separator load
it demucs' own way. Redirecting torch hub's folder would not do: demucs tries the Hugging Face cache first, so a
cached real separator would silently replace the directory's own.
"""

from __future__ import annotations

import contextlib
import json
import threading
from functools import lru_cache
from pathlib import Path

SEPARATOR_DIR = "separator"
SEPARATOR_BAG = "htdemucs"  # the name audiocraft asks demucs for
# what a demucs model package pickles besides plain data: its model class (demucs constructs it from the package's
# kwargs) and the Fraction of htdemucs' segment length; allowed only while a melody checkpoint loads
SEPARATOR_GLOBALS = ("demucs.htdemucs.HTDemucs", "fractions.Fraction")
CHROMA_HUB_IDS = ("facebook/musicgen-melody",)
MELODY_ALIAS = "melody"  # the alias of facebook/musicgen-melody (or DIR/melody under --model-dir)
_LOCK = threading.Lock()


def has_local_separator(checkpoint_dir: str | Path) -> bool:
    """Whether ``checkpoint_dir`` carries its own separator repository (:data:`SEPARATOR_DIR`)."""
    return (Path(checkpoint_dir) / SEPARATOR_DIR / f"{SEPARATOR_BAG}.yaml").is_file()


def separator_files(checkpoint_dir: str | Path) -> list[Path]:
    """The files of a checkpoint's own separator repository, sorted (part of the model's fingerprint)."""
    repo = Path(checkpoint_dir) / SEPARATOR_DIR
    if not has_local_separator(checkpoint_dir):
        return []
    return sorted(p for p in repo.iterdir() if p.is_file() and p.suffix in (".yaml", ".th"))


@contextlib.contextmanager
def local_separator(checkpoint_dir: str | Path | None):
    """While this block runs, ``demucs.pretrained.get_model`` loads from ``checkpoint_dir``'s separator repository
    (when it has one; otherwise nothing changes)."""
    if checkpoint_dir is None or not has_local_separator(checkpoint_dir):
        yield
        return
    from demucs import pretrained

    local = Path(checkpoint_dir) / SEPARATOR_DIR
    original = pretrained.get_model

    def get_model(name: str, repo: Path | None = None):
        return original(name, repo=local)

    with _LOCK:
        pretrained.get_model = get_model
        try:
            yield
        finally:
            pretrained.get_model = original


def model_takes_melody(model: str) -> bool:
    """Whether a manifest's ``model`` value (alias, hub id, or absolute checkpoint directory) has a chroma
    conditioner: the ``melody`` alias, ``facebook/musicgen-melody``, or a directory whose LM has one."""
    if model == MELODY_ALIAS or model in CHROMA_HUB_IDS:
        return True
    path = Path(model)
    if not path.is_absolute() or not (path / "state_dict.bin").is_file():
        return False
    st = (path / "state_dict.bin").stat()
    return _checkpoint_has_chroma(str(path), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=64)
def _checkpoint_has_chroma(path: str, size: int, mtime_ns: int) -> bool:
    from assetgen.models.registry import MARKER_FILE

    marker = Path(path) / MARKER_FILE
    if marker.is_file():
        known = json.loads(marker.read_text()).get("chroma")
        if known is not None:
            return bool(known)
    return "chroma_stem" in _conditioner_models(Path(path) / "state_dict.bin")


def _conditioner_models(state_dict: Path) -> set[str]:
    """The conditioner types (``lut``, ``t5``, ``chroma_stem``...) in an audiocraft LM checkpoint's config
    (memory-mapped: the weights are not read)."""
    import torch
    from omegaconf import OmegaConf

    from assetgen.models.safe_load import safe_torch_load

    with safe_torch_load():
        pkg = torch.load(state_dict, map_location="cpu", mmap=True)
    cfg = pkg.get("xp.cfg") if isinstance(pkg, dict) else None
    if cfg is None:
        return set()
    cfg = OmegaConf.create(cfg) if isinstance(cfg, str) else cfg
    conditioners = OmegaConf.to_container(cfg, resolve=False).get("conditioners") or {}
    return {str(c.get("model")) for c in conditioners.values() if isinstance(c, dict)}
