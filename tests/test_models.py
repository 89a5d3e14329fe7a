"""assetgen.models: tiny checkpoints, safe loading, offline registry, batched generation, OOM splitting, device.

Tests that load audiocraft are marked ``slow`` and share conftest's session-scoped ``tiny_models`` directory.
Token-level checks capture the LM's tokens (``model.generate_audio`` input): the tiny EnCodec's codebooks are all
zeros (see ``test_tiny_audio_depends_on_tokens``), so its audio cannot show which tokens were sampled.
"""

from __future__ import annotations

import contextlib
import fractions
import os
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
    assert len(f1) == 64 and set(f1) <= set("0123456789abcdef"), f1  # lowercase hex sha256
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


# ------------------------------------------------------------------------------- tiny checkpoints (slow: audiocraft)

@contextlib.contextmanager
def captured_tokens(backend):
    """Record the LM tokens of each ``backend.generate`` call (input of ``model.generate_audio``)."""
    seen: list = []
    model = backend.model
    original = model.generate_audio

    def spy(tokens):
        seen.append(tokens.detach().cpu().clone())
        return original(tokens)

    model.generate_audio = spy
    try:
        yield seen
    finally:
        del model.generate_audio  # back to the class method


@pytest.fixture(scope="session")
def music(tiny_models):
    from assetgen.models.cache import get_backend

    return get_backend("music", model_dir=tiny_models, device="cpu")


@pytest.fixture(scope="session")
def sfx(tiny_models):
    from assetgen.models.cache import get_backend

    return get_backend("sfx", model_dir=tiny_models, device="cpu")


@pytest.mark.slow
def test_tiny_checkpoints_load_through_get_pretrained(tiny_models, music, sfx, monkeypatch):
    import torch
    from audiocraft.models import AudioGen, MusicGen

    from assetgen.models import cache

    assert isinstance(music.model, MusicGen) and isinstance(sfx.model, AudioGen)
    assert (music.sample_rate, sfx.sample_rate) == (32000, 16000)
    assert (music.max_duration_s, sfx.max_duration_s) == (30.0, 10.0)
    assert music.placeholder and sfx.placeholder
    assert "PLACEHOLDER" in music.name and "PLACEHOLDER" in sfx.name
    # the same get_pretrained path as a real checkpoint: prove it by watching the class method being called
    calls = []
    real = MusicGen.get_pretrained  # a staticmethod in audiocraft 1.3.0

    def watch(name, device=None):
        calls.append(name)
        return real(name, device=device)

    monkeypatch.setattr(MusicGen, "get_pretrained", staticmethod(watch))
    by_dir = cache.ModelCache().get(str(tiny_models / "music"), device="cpu")  # a fresh cache: loads for sure
    assert calls == [str((tiny_models / "music").resolve())]
    assert by_dir.sample_rate == 32000 and "PLACEHOLDER" in by_dir.name
    # plain torch.load with weights_only=True reads every file (no custom globals)
    for kind in ("music", "sfx"):
        for name in registry.CHECKPOINT_FILES:
            pkg = torch.load(tiny_models / kind / name, weights_only=True, map_location="cpu")
            assert isinstance(pkg["xp.cfg"], str) and pkg["best_state"]
            assert (tiny_models / kind / name).stat().st_size < 8_000_000  # dim-128 LM: still tiny


@pytest.mark.slow
def test_get_backend_caches_one_backend_per_process(tiny_models, music):
    from assetgen.models import cache

    before = cache.load_count
    assert cache.get_backend("music", model_dir=tiny_models, device="cpu") is music
    assert cache.get_backend(str(tiny_models / "music"), device="cpu") is music
    assert cache.load_count == before


@pytest.mark.slow
def test_tiny_audio_depends_on_tokens(music):
    # Placeholder audio must at least differ between requests: audiocraft's default rvq kmeans_init=True leaves
    # the codebooks zero until training, so tiny.py turns it off.
    assert all(float(layer._codebook.embed.abs().max()) > 0.0
               for layer in music.model.compression_model.quantizer.vq.layers)
    a, b = music.generate([req(0, seed=1), req(1, seed=2)])
    assert not np.allclose(a, b)


# ------------------------------------------------------------------------------------------------ safe loading (slow)

class RunsCode:
    """Pickles as a call to os.system (what a crafted checkpoint would do)."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def crafted_copy(src: Path, dst: Path, extra) -> Path:
    import torch

    shutil.copytree(src, dst)
    pkg = torch.load(dst / "state_dict.bin", weights_only=True)
    pkg["extra"] = extra
    torch.save(pkg, dst / "state_dict.bin")
    return dst


@pytest.mark.slow
def test_pickled_callable_is_refused_and_never_runs(tiny_models, tmp_path):
    from assetgen.models.cache import get_backend

    sentinel = tmp_path / "pwned"
    evil = crafted_copy(tiny_models / "music", tmp_path / "evil", RunsCode(f"touch {sentinel}"))
    assert b"system" in (evil / "state_dict.bin").read_bytes()
    with pytest.raises(CheckpointRefused) as ei:
        get_backend(str(evil), device="cpu")
    msg = str(ei.value)
    assert "posix.system" in msg or "os.system" in msg
    assert "ASSETGEN_TRUSTED_GLOBALS" in msg and "state_dict.bin" in msg
    assert not sentinel.exists()
    # torch.load outside the loading block is back to the original function
    import torch
    assert getattr(torch.load, "__module__", "") == "torch.serialization"


@pytest.mark.slow
def test_trusted_globals_opt_in(tiny_models, tmp_path, monkeypatch):
    from assetgen.models.cache import get_backend
    from assetgen.models.safe_load import TRUST_ENV

    ckpt = crafted_copy(tiny_models / "sfx", tmp_path / "sfx", fractions.Fraction(1, 3))
    monkeypatch.delenv(TRUST_ENV, raising=False)
    with pytest.raises(CheckpointRefused, match="fractions.Fraction"):
        get_backend(str(ckpt), device="cpu")
    monkeypatch.setenv(TRUST_ENV, "fractions.Fraction")
    backend = get_backend(str(ckpt), device="cpu")
    assert backend.sample_rate == 16000 and backend.placeholder


# ------------------------------------------------------------------------------------------ batched generation (slow)

@pytest.mark.slow
def test_batch_keeps_prompts_and_is_batch_invariant_and_reproducible(music):
    reqs = [req(0, prompt="calm forest", seed=7), req(1, prompt="epic battle", seed=7),
            req(2, prompt="calm forest", seed=8), req(3, prompt="rain", seed=9)]
    with captured_tokens(music) as toks:
        batch = music.generate(reqs)
        again = music.generate(reqs)
        alone = [music.generate([r])[0] for r in reqs]
        shuffled = music.generate([reqs[3], reqs[1]])
    tb, ta = toks[0], toks[1]
    assert all(o.shape == (1, 32000) and o.dtype == np.float32 for o in batch)
    # reproducible: same requests + seeds -> identical tokens and samples
    assert torch_equal(tb, ta) and all(np.array_equal(x, y) for x, y in zip(batch, again))
    # batch invariance: a request's tokens/audio are the same alone, in the batch, or with other neighbours
    for i in range(4):
        assert torch_equal(toks[2 + i][0], tb[i]), f"request {i} changed with its batch"
        np.testing.assert_allclose(alone[i], batch[i], atol=1e-6)
    assert torch_equal(toks[6][0], tb[3]) and torch_equal(toks[6][1], tb[1])
    np.testing.assert_allclose(shuffled[0], batch[3], atol=1e-6)
    # each request keeps its own prompt (same seed, other prompt -> other tokens) and seed
    assert not torch_equal(tb[0], tb[1])
    assert not torch_equal(tb[0], tb[2])
    assert not torch_equal(tb[2], tb[3])


def torch_equal(a, b) -> bool:
    import torch

    return a.shape == b.shape and bool(torch.equal(a, b))


@pytest.mark.slow
def test_generation_runs_in_inference_mode_with_the_tokens_of_no_grad(music, monkeypatch):
    import torch

    from assetgen.models import audiocraft_backend

    modes: list = []
    reqs = [req(0, GenParams(duration_s=0.4), seed=3), req(1, GenParams(duration_s=0.4), seed=4)]
    with captured_tokens(music) as toks:
        capture = music.model.generate_audio

        def spy(tokens):
            modes.append(torch.is_inference_mode_enabled())
            return capture(tokens)

        music.model.generate_audio = spy
        try:
            fast = music.generate(reqs)
            monkeypatch.setattr(audiocraft_backend.torch, "inference_mode", torch.no_grad)
            stock = music.generate(reqs)
        finally:
            music.model.generate_audio = capture
    assert modes == [True, False]
    assert torch_equal(toks[0], toks[1])
    assert all(np.array_equal(a, b) for a, b in zip(fast, stock))


@pytest.mark.slow
def test_generation_params_reach_the_sampler(music):
    greedy = GenParams(duration_s=0.4, top_k=1)  # 10 frames at 25 Hz (audiocraft floors to whole frames)
    with captured_tokens(music) as toks:
        short = music.generate([req(0, greedy, seed=1), req(1, greedy, prompt="prompt 0", seed=2)])
        music.generate([req(0, GenParams(duration_s=0.4, top_k=1, cfg_coef=1.0), seed=1)])
        music.generate([req(0, GenParams(duration_s=0.4, temperature=0.0), seed=1)])
        music.generate([req(0, GenParams(duration_s=0.4, top_k=0, top_p=0.9), seed=1),
                        req(0, GenParams(duration_s=0.4, top_k=0, top_p=0.9), seed=2)])
    assert [o.shape for o in short] == [(1, 12800), (1, 12800)]
    # top_k=1 is greedy: the seed no longer matters
    assert torch_equal(toks[0][0], toks[0][1])
    # cfg_coef changes the logits (greedy tokens differ between cfg 1 and 3)
    assert not torch_equal(toks[1][0], toks[0][0])
    # temperature 0 is argmax, which equals top_k=1 at the same cfg
    assert torch_equal(toks[2][0], toks[0][0])
    # top_p sampling still depends on the seed
    assert not torch_equal(toks[3][0], toks[3][1])
    # a batch must share its params (the planner groups them); mixing is refused, not silently unified
    with pytest.raises(ValueError, match="share one GenParams"):
        music.generate([req(0, greedy), req(1, P1)])


@pytest.mark.slow
@pytest.mark.parametrize("seconds", [0.5, 1.03, 10.0])
def test_output_is_exactly_the_requested_length(sfx, seconds):
    # 25 Hz frames: 0.5 s is 12.5 frames, which audiocraft alone would floor to 12 (0.48 s)
    (out,) = sfx.generate([req(0, GenParams(duration_s=seconds))])
    assert out.shape == (1, round(seconds * 16000))
    assert np.abs(out[:, -160:]).max() > 0  # generated, not padded


@pytest.mark.slow
def test_duration_beyond_max_uses_continuation(sfx):
    assert sfx.max_duration_s == 10.0
    (out,) = sfx.generate([req(0, GenParams(duration_s=12.0), prompt="rain on a tin roof")])
    assert out.shape == (1, 12 * 16000)
    assert np.isfinite(out).all()


# ---------------------------------------------------------------------------------- OOM split on the real model (slow)

class OOMInjector:
    """Wraps a real backend; raises torch.cuda.OutOfMemoryError for batches larger than ``max_batch``."""

    def __init__(self, inner, max_batch: int):
        self.inner, self.max_batch, self.sizes = inner, max_batch, []
        self.name, self.sample_rate = inner.name, inner.sample_rate
        self.max_duration_s, self.placeholder = inner.max_duration_s, inner.placeholder

    def generate(self, requests):
        import torch

        self.sizes.append(len(requests))
        if len(requests) > self.max_batch:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 4.00 GiB")
        return self.inner.generate(requests)


@pytest.mark.slow
def test_oom_split_on_real_model_matches_unsplit_batch(music):
    params = GenParams(duration_s=0.5)
    reqs = [req(i, params) for i in range(6)]
    with captured_tokens(music) as toks:
        whole = music.generate(reqs)
        injector = OOMInjector(music, max_batch=2)
        split = generate_split(injector, reqs)
    assert injector.sizes == [6, 3, 1, 2, 3, 1, 2]
    assert all(isinstance(s, np.ndarray) for s in split)
    split_tokens = [t for batch in toks[1:] for t in batch]
    assert len(split_tokens) == 6
    for i in range(6):
        assert torch_equal(split_tokens[i], toks[0][i])
        np.testing.assert_allclose(split[i], whole[i], atol=1e-6)


@pytest.mark.slow
def test_per_request_sampler_draws_the_distribution(music):
    import torch

    import assetgen.models.audiocraft_backend as ab

    probs = torch.tensor([0.0, 0.5, 0.0, 0.3, 0.2])
    batch = probs.expand(2, 4000, 5).clone()  # [B, R, card]: 2 requests x 4000 draws each
    ab._rows.generators = [torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)]
    try:
        drawn = ab._row_multinomial(batch, num_samples=1)
    finally:
        ab._rows.generators = None
    assert drawn.shape == (2, 4000, 1)
    freq = torch.bincount(drawn.flatten(), minlength=5).float() / drawn.numel()
    assert freq[0] == 0 and freq[2] == 0  # zero-probability tokens never drawn
    assert torch.allclose(freq, probs, atol=0.02), freq
    # row b depends only on its own generator
    ab._rows.generators = [torch.Generator().manual_seed(2)]
    try:
        alone = ab._row_multinomial(batch[1:], num_samples=1)
    finally:
        ab._rows.generators = None
    assert torch.equal(alone[0], drawn[1])
