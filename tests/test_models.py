"""assetgen.models: tiny checkpoints, safe loading, offline registry, batched generation, OOM splitting, device.

Tests that load audiocraft are marked ``slow`` and share conftest's session-scoped ``tiny_models`` directory.
Token-level checks capture the LM's tokens (``model.generate_audio`` input): the tiny EnCodec's codebooks are all
zeros (see ``test_tiny_audio_depends_on_tokens``), so its audio cannot show which tokens were sampled.
"""

from __future__ import annotations

import contextlib
import fractions
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from assetgen.models import registry
from assetgen.models.batching import chunk, generate_split, is_oom
from assetgen.models.base import CheckpointRefused, GenerationError
from assetgen.models.registry import ModelUnavailable, fingerprint, resolve
from assetgen.spec import GenParams, GenRequest

REPO = Path(__file__).resolve().parents[1]
P1 = GenParams(duration_s=1.0)


def req(i: int, params: GenParams = P1, prompt: str | None = None, seed: int | None = None) -> GenRequest:
    return GenRequest(key=f"k{i}", prompt=prompt if prompt is not None else f"prompt {i}",
                      seed=1000 + i if seed is None else seed, params=params)


def fake_ckpt(path: Path, payload: bytes = b"x") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name in registry.CHECKPOINT_FILES:
        (path / name).write_bytes(payload + name.encode())
    return path


# --------------------------------------------------------------------------------------------- registry (no torch)

def test_registry_import_does_not_import_torch():
    code = "import assetgen.models.registry, assetgen.models, sys; assert 'torch' not in sys.modules, 'torch imported'"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_missing_model_names_model_places_and_hint(tmp_path, monkeypatch):
    monkeypatch.delenv(registry.MODEL_DIR_ENV, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))  # an empty HF cache
    monkeypatch.setattr(registry, "_hf_cached_dir", lambda hub_id: None)
    with pytest.raises(ModelUnavailable) as ei:
        resolve("music", model_dir=tmp_path / "models")
    msg = str(ei.value)
    assert "'music'" in msg
    assert str(tmp_path / "models" / "music") in msg
    assert str(tmp_path / "models" / "facebook" / "musicgen-small") in msg
    assert "Hugging Face cache" in msg
    assert "--model-dir" in msg and "ASSETGEN_MODEL_DIR" in msg

    with pytest.raises(ModelUnavailable) as ei:
        resolve("facebook/audiogen-medium")
    assert "'facebook/audiogen-medium'" in str(ei.value) and "--model-dir" in str(ei.value)

    with pytest.raises(ModelUnavailable) as ei:
        resolve(str(tmp_path / "nowhere"))
    assert str(tmp_path / "nowhere") in str(ei.value) and "state_dict.bin" in str(ei.value)


def test_model_dir_from_env_and_hub_id_layout(tmp_path, monkeypatch):
    fake_ckpt(tmp_path / "facebook" / "musicgen-small")
    fake_ckpt(tmp_path / "facebook" / "audiogen-medium")
    monkeypatch.setenv(registry.MODEL_DIR_ENV, str(tmp_path))
    r = resolve("facebook/musicgen-small")
    assert r.checkpoint_dir == (tmp_path / "facebook" / "musicgen-small").resolve()
    assert r.kind == "music" and not r.placeholder
    assert resolve("facebook/audiogen-medium").kind == "sfx"
    # the aliases fall back to their default hub ids inside the model dir
    assert resolve("music").checkpoint_dir == r.checkpoint_dir and resolve("music").kind == "music"
    sfx = resolve("sfx")
    assert sfx.kind == "sfx" and sfx.checkpoint_dir.name == "audiogen-medium"
    # an explicit model_dir wins over the environment
    other = fake_ckpt(tmp_path / "other" / "music")
    assert resolve("music", model_dir=tmp_path / "other").checkpoint_dir == other.resolve()


def test_fingerprint_tracks_checkpoint_bytes(tmp_path):
    d = fake_ckpt(tmp_path / "music")
    f1 = fingerprint("music", model_dir=tmp_path)
    assert f1 == fingerprint("music", model_dir=tmp_path) == fingerprint(str(d))
    assert len(f1) == 64 and int(f1, 16) >= 0
    # new bytes (written as a new file, like tiny.write_checkpoint does): fingerprint changes
    tmp = d / ".state_dict.bin.tmp"
    tmp.write_bytes(b"different weights")
    tmp.replace(d / "state_dict.bin")
    f2 = fingerprint("music", model_dir=tmp_path)
    assert f2 != f1
    assert f2 == fingerprint("music", model_dir=tmp_path)
    # same bytes as before: back to the first fingerprint
    (d / "state_dict.bin").write_bytes(b"x" + b"state_dict.bin")
    assert fingerprint("music", model_dir=tmp_path) == f1


# ------------------------------------------------------------------------------------- batching with a fake backend

class FakeBackend:
    """Raises OOM for batches larger than ``max_batch`` and for any batch holding a poison key."""

    name, sample_rate, max_duration_s, placeholder = "fake", 100, 10.0, True

    def __init__(self, max_batch: int, poison=(), oom=lambda msg: RuntimeError(msg)):
        self.max_batch, self.poison, self.oom = max_batch, set(poison), oom
        self.calls: list[list[str]] = []
        self.freed = 0

    def generate(self, requests):
        keys = [r.key for r in requests]
        self.calls.append(keys)
        if len(requests) > self.max_batch or self.poison & set(keys):
            raise self.oom("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [np.full((1, 4), float(r.seed), np.float32) for r in requests]

    def free_memory(self):
        self.freed += 1


def test_oom_splits_in_halves_down_to_single_poison_request():
    reqs = [req(i) for i in range(8)]
    backend = FakeBackend(max_batch=2, poison={"k5"})
    splits = []
    out = generate_split(backend, reqs, on_split=lambda n, exc: splits.append(n))
    assert [c for c in backend.calls] == [
        [f"k{i}" for i in range(8)],
        ["k0", "k1", "k2", "k3"], ["k0", "k1"], ["k2", "k3"],
        ["k4", "k5", "k6", "k7"], ["k4", "k5"], ["k4"], ["k5"], ["k6", "k7"],
    ]
    assert splits == [8, 4, 4, 2]  # the failing single request is not split further
    for i, o in enumerate(out):
        if i == 5:
            assert isinstance(o, GenerationError) and "single request" in str(o) and "out of memory" in str(o)
        else:
            assert isinstance(o, np.ndarray) and o[0, 0] == 1000 + i  # in request order
    assert backend.freed == 5  # memory released after every OOM


def test_oom_split_with_torch_error_and_odd_sizes():
    import torch

    backend = FakeBackend(max_batch=2, oom=torch.cuda.OutOfMemoryError)
    reqs = [req(i) for i in range(5)]
    out = generate_split(backend, reqs)
    assert [len(c) for c in backend.calls] == [5, 2, 3, 1, 2]
    assert [o[0, 0] for o in out] == [1000 + i for i in range(5)]
    assert is_oom(torch.cuda.OutOfMemoryError("x")) and is_oom(RuntimeError("CUDA out of memory"))
    assert not is_oom(RuntimeError("shape mismatch"))


def test_non_oom_error_fails_whole_batch_without_split():
    class Broken(FakeBackend):
        def generate(self, requests):
            self.calls.append([r.key for r in requests])
            raise ValueError("bad prompt")

    backend = Broken(max_batch=99)
    out = generate_split(backend, [req(i) for i in range(4)])
    assert len(backend.calls) == 1 and len(out) == 4
    assert all(isinstance(o, ValueError) for o in out)


def test_wrong_result_count_is_an_error():
    class Short(FakeBackend):
        def generate(self, requests):
            return super().generate(requests)[:-1]

    out = generate_split(Short(max_batch=99), [req(0), req(1)])
    assert all(isinstance(o, GenerationError) and "1 results for 2" in str(o) for o in out)


def test_chunk_keeps_order_and_sizes():
    reqs = [req(i) for i in range(37)]
    batches = chunk(reqs, 16)
    assert [len(b) for b in batches] == [16, 16, 5]
    assert [r for b in batches for r in b] == reqs
    assert [len(b) for b in chunk(reqs, 0)] == [1] * 37


# ------------------------------------------------------------------------------------------------------------ device

def test_pick_device_here_and_with_fake_cuda(monkeypatch):
    import torch

    from assetgen.models.device import DeviceUnavailable, pick_device

    if torch.cuda.is_available():
        pytest.skip("this test describes the CPU-only machine")
    assert pick_device() == pick_device("auto") == pick_device(None) == "cpu"
    assert pick_device("cpu") == "cpu"
    for bad in ("cuda", "cuda:0"):
        with pytest.raises(DeviceUnavailable, match="CUDA is not available"):
            pick_device(bad)
    with pytest.raises(DeviceUnavailable, match="expected auto, cpu"):
        pick_device("tpu")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert pick_device() == "cuda"
    assert pick_device("cuda") == "cuda"
    assert pick_device("cuda:1") == "cuda:1"
    with pytest.raises(DeviceUnavailable, match="only 2 CUDA device"):
        pick_device("cuda:2")
    assert pick_device("cpu") == "cpu"
