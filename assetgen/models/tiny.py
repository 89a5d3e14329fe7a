"""Tiny, randomly initialised AudioCraft checkpoints written in audiocraft's own checkpoint format.

No pretrained weights can be downloaded on machines without a model hub, so tests and the demo run on these.
They are built with ``audiocraft.models.builders`` from hand-written configs and saved exactly as audiocraft's
exported checkpoints are (``{"xp.cfg": <yaml str>, "best_state": state_dict, ...}`` in ``state_dict.bin`` and
``compression_state_dict.bin``), so they load through the same ``MusicGen/AudioGen.get_pretrained(dir)`` path as
real checkpoints. Everything they produce is random-weight PLACEHOLDER audio; the ``assetgen.json`` marker next to
the checkpoints says so and the registry labels every output made with them.

Default random initialisation makes every take sound alike: the small decoder weights shrink the codes' signal
until the biases' fixed waveform is all that is left, and iid tokens average to one spectrum. QC gates that compare
takes (near-duplicates, re-rolls) need takes that differ, so the weights are then set by construction
(:func:`_shape_lm`, :func:`_shape_decoder`): the LM prefers to repeat each codebook's previous token (a take holds
a timbre for a while, chosen by its seed), the prompt reaches the logits through cross-attention (prompts prefer
different tokens), and the decoder passes its codes through at unit gain without biases, so different tokens
decode to different spectra. ``benchmarks/bench_tiny_diversity.py`` measures how alike the takes are.

The melody checkpoint (``DIR/melody``) is the music model plus audiocraft's chroma conditioner (``self_wav`` of type
``chroma_stem``, as in MusicGen-melody), attended to by cross-attention next to the prompt (the shaped LM's
self-attention carries nothing, so a prepended melody would not reach the logits), and its stem separator: a tiny
random-weight HTDemucs written as a demucs local model repository (see ``assetgen.models.melody``).
"""

from __future__ import annotations

import json
from pathlib import Path

from assetgen.models.registry import MARKER_FILE

# Encoder strides giving 25 Hz frames, as in audiocraft's debug models.
_RATIOS = {32000: [10, 8, 16], 16000: [10, 8, 8]}
KINDS = {"music": 32000, "sfx": 16000}
MELODY = "melody"  # a music checkpoint with a chroma conditioner: DIR/melody
# Max generation window (s) stored as dataset.segment_duration; audiocraft reads it as max_duration.
_SEGMENT_S = {"music": 30.0, "sfx": 10.0}


def _compression_cfg(sample_rate: int, n_q: int, bins: int):
    from omegaconf import OmegaConf

    return OmegaConf.create({
        "compression_model": "encodec",
        "device": "cpu",
        "encodec": {"autoencoder": "seanet", "quantizer": "rvq", "sample_rate": sample_rate,
                    "channels": 1, "causal": False, "renormalize": False},
        "seanet": {"dimension": 32, "channels": 1, "n_filters": 4, "n_residual_layers": 1,
                   "ratios": _RATIOS[sample_rate], "encoder": {}, "decoder": {}},
        # kmeans_init=False: random codebooks (kmeans init leaves them zero until training, so every token
        # sequence would decode to the same waveform).
        "rvq": {"n_q": n_q, "bins": bins, "kmeans_init": False},
    })


def _lm_cfg(segment_s: float, n_q: int, card: int, dim: int, num_heads: int, num_layers: int,
            sample_rate: int = 32000, chroma: bool = False):
    # positional_scale 0: the sinusoidal positions would otherwise swamp the token embeddings that
    # _shape_lm makes the logits follow
    from omegaconf import OmegaConf

    conditioners = {"description": {"model": "lut", "lut": {"n_bins": 256, "dim": dim, "tokenizer": "noop"}}}
    cross = ["description"]
    if chroma:  # MusicGen-melody's chroma settings (12 bins, 2**14-sample STFT, the strongest bin per frame)
        conditioners["self_wav"] = {"model": "chroma_stem", "chroma_stem": {
            "sample_rate": sample_rate, "n_chroma": 12, "radix2_exp": 14, "argmax": True,
            "match_len_on_eval": False, "eval_wavs": None, "n_eval_wavs": 0, "cache_path": None}}
        cross.append("self_wav")
    return OmegaConf.create({
        "lm_model": "transformer_lm",
        "device": "cpu",
        "dtype": "float32",
        "dataset": {"segment_duration": segment_s},
        "transformer_lm": {"n_q": n_q, "card": card, "dim": dim, "num_heads": num_heads,
                           "num_layers": num_layers, "custom": False, "causal": True, "positional_scale": 0.0},
        "codebooks_pattern": {"modeling": "delay", "delay": {"delays": list(range(n_q))}},
        "attribute_dropout": {},
        "classifier_free_guidance": {"training_dropout": 0.0, "inference_coef": 3.0},
        "fuser": {"sum": [], "cross": cross, "prepend": [], "input_interpolate": []},
        # 'noop' tokenizer: 'whitespace' would fetch a spaCy model from the network.
        "conditioners": conditioners,
    })


STICKINESS = 2.0  # logit scale of "repeat the previous token" (after the LM's LayerNorm)
PROMPT_GAIN = 1.0  # scale of the cross-attention (prompt) contribution to the residual stream
OUTPUT_RMS = 0.1  # RMS the decoder is scaled to on random codes (full scale 1)


def _shape_lm(lm, n_q: int, card: int, dim: int) -> None:
    """Make the random LM sticky and prompt-dependent (see the module docstring); in place.

    Token embeddings are unit vectors (orthonormal across all codebooks when ``dim >= n_q * card``), the special
    token's is zero; each codebook's output projection is its embedding table times :data:`STICKINESS`, so after
    the layers (whose self-attention and feed-forward outputs are zeroed: each layer is its norms and its
    cross-attention) a codebook's logits favour the token it had one step before.
    """
    import torch

    with torch.no_grad():
        rows = torch.randn(max(dim, n_q * card), dim)
        if dim >= n_q * card:
            q, _ = torch.linalg.qr(torch.randn(dim, dim))
            rows = q.T[: n_q * card]
        rows = rows / rows.norm(dim=1, keepdim=True)
        for k in range(n_q):
            table = rows[k * card : (k + 1) * card] if dim >= n_q * card else rows[torch.randperm(len(rows))[:card]]
            lm.emb[k].weight.zero_()
            lm.emb[k].weight[:card] = table
            lm.linears[k].weight.copy_(STICKINESS * table)
            if lm.linears[k].bias is not None:
                lm.linears[k].bias.zero_()
        for layer in lm.transformer.layers:
            for mod in (_out_proj(layer.self_attn), layer.linear2):
                mod.weight.zero_()
                if mod.bias is not None:
                    mod.bias.zero_()
            if layer.cross_attention is not None:
                out = _out_proj(layer.cross_attention)
                out.weight.mul_(PROMPT_GAIN * dim**0.5 / out.weight.norm())


def _out_proj(attention):
    """The output projection of an audiocraft attention module (its own, or its torch ``mha``'s)."""
    return attention.out_proj if hasattr(attention, "out_proj") else attention.mha.out_proj


def _shape_decoder(compression, n_q: int, card: int) -> None:
    """Unit-gain decoder without biases, and a last layer that rejects DC (its taps sum to zero per input
    channel); scaled so random codes decode at :data:`OUTPUT_RMS`. In place."""
    import math

    import torch

    with torch.no_grad():
        convs = [m for m in compression.decoder.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.ConvTranspose1d))]
        for m in convs:
            if isinstance(m, torch.nn.ConvTranspose1d):  # each output sample sees kernel/stride taps per input channel
                fan_in = m.in_channels * m.kernel_size[0] / m.stride[0]
            else:
                fan_in = m.in_channels * m.kernel_size[0]
            m.weight.normal_(0.0, math.sqrt(2.0 / fan_in))
            if m.bias is not None:
                m.bias.zero_()
        last = convs[-1]
        last.weight.sub_(last.weight.mean(dim=-1, keepdim=True))
        codes = torch.randint(0, card, (4, n_q, 50))
        rms = compression.decode(codes, None).pow(2).mean().sqrt()
        last.weight.mul_(OUTPUT_RMS / max(float(rms), 1e-9))


# the tiny separator: HTDemucs' structure (4 sources, spectral and temporal branches, cross-domain transformer)
# at a few thousand weights, separating 2-s segments at the melody model's rate
_SEPARATOR = {"sources": ["drums", "bass", "other", "vocals"], "audio_channels": 2, "channels": 8, "dconv_comp": 4,
              "depth": 3, "nfft": 1024, "t_layers": 1, "t_heads": 1, "t_hidden_scale": 1.0, "dconv_depth": 1,
              "norm_starts": 99, "segment": 2}
SEPARATOR_SIGNATURE = "tinyhtdemucs"


def _shape_separator(model) -> None:
    """Make the random separator keep the melody's pitch; in place.

    At random initialisation its biases' fixed output dominates whatever the input, so every melody would give the
    same chroma. Without biases, and with the spectral branch silenced (its frequency convolutions smear a tone
    over hundreds of Hz), the output is the temporal branch's: convolutions in time, which keep each partial's
    frequency (their nonlinearities add octaves, the same pitch class). Scaled so that the melody stems (``vocals``
    and ``other``) of white noise come out at the noise's RMS.
    """
    import torch

    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.ConvTranspose1d, torch.nn.ConvTranspose2d,
                                torch.nn.Linear)) and mod.bias is not None:
                mod.bias.zero_()
        model.decoder[-1].conv_tr.weight.zero_()  # the spectral branch's last layer
        noise = 0.1 * torch.randn(1, model.audio_channels, round(model.segment * model.samplerate))
        melody = [model.sources.index("vocals"), model.sources.index("other")]
        rms = model.eval()(noise)[:, melody].sum(1).pow(2).mean().sqrt()
        model.tdecoder[-1].conv_tr.weight.mul_(0.1 / max(float(rms), 1e-9))


def write_separator(repo: Path, sample_rate: int, seed: int = 0) -> Path:
    """Write a random-weight HTDemucs as a demucs local model repository (``demucs.repo.LocalRepo``: the package
    ``<signature>-<first 8 hex of its sha256>.th`` made by ``demucs.states.serialize_model``, and the bag
    ``htdemucs.yaml`` naming it) into ``repo``; returns the package's path."""
    import hashlib
    import io

    import torch
    import yaml
    from demucs.htdemucs import HTDemucs
    from demucs.states import serialize_model
    from omegaconf import OmegaConf

    from assetgen.models.melody import SEPARATOR_BAG
    from assetgen.store.atomic import atomic_write

    repo = Path(repo)
    repo.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = HTDemucs(samplerate=sample_rate, **_SEPARATOR)
    _shape_separator(model)
    buf = io.BytesIO()
    torch.save(serialize_model(model, OmegaConf.create({}), half=False), buf)
    data = buf.getvalue()
    for old in repo.glob(f"{SEPARATOR_SIGNATURE}-*.th"):  # one package per signature (demucs refuses two)
        old.unlink()
    package = repo / f"{SEPARATOR_SIGNATURE}-{hashlib.sha256(data).hexdigest()[:8]}.th"
    atomic_write(package, data)
    atomic_write(repo / f"{SEPARATOR_BAG}.yaml", yaml.safe_dump({"models": [SEPARATOR_SIGNATURE]}).encode())
    return package


def write_checkpoint(out_dir: Path, kind: str, *, dim: int = 128, num_layers: int = 2, num_heads: int = 2,
                     n_q: int = 4, card: int = 400, seed: int = 0, chroma: bool = False) -> Path:
    """Write one random-weight checkpoint pair for ``kind`` ('music' 32 kHz / 'sfx' 16 kHz) into ``out_dir``;
    ``chroma`` adds the melody conditioner and its separator (music only).

    ``dim``/``num_layers`` size the LM (the defaults make a sub-megabyte model; larger values give a model whose
    CPU generation speed is closer to a real model's share of the work, for benchmarks).
    """
    import torch
    from audiocraft.models import builders
    from omegaconf import OmegaConf

    from assetgen.store.atomic import atomic_write

    sample_rate = KINDS[kind]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    ccfg = _compression_cfg(sample_rate, n_q, card)
    lcfg = _lm_cfg(_SEGMENT_S[kind], n_q, card, dim, num_heads, num_layers, sample_rate, chroma)
    compression = builders.get_compression_model(ccfg)
    if chroma:
        from assetgen.models.melody import SEPARATOR_DIR, local_separator

        write_separator(out_dir / SEPARATOR_DIR, sample_rate, seed)
        with local_separator(out_dir):  # the conditioner's constructor loads the separator
            lm = builders.get_lm_model(lcfg)
    else:
        lm = builders.get_lm_model(lcfg)
    compression.eval()
    _shape_decoder(compression, n_q, card)
    _shape_lm(lm, n_q, card, dim)
    for name, cfg, model in (("compression_state_dict.bin", ccfg, compression), ("state_dict.bin", lcfg, lm)):
        pkg = {"xp.cfg": OmegaConf.to_yaml(cfg), "best_state": model.state_dict(),
               "version": "audiocraft-1.3.0", "exported": True}
        atomic_write(out_dir / name, lambda tmp, pkg=pkg: torch.save(pkg, tmp))
    marker = {"kind": kind, "sample_rate": sample_rate, "placeholder": True, "chroma": chroma,
              "note": "random-weight tiny model written by `assetgen models make-tiny`: placeholder audio",
              "lm": {"dim": dim, "num_layers": num_layers, "n_q": n_q, "card": card}}
    (out_dir / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")
    return out_dir


def make_tiny(root: Path, **sizes) -> dict[str, Path]:
    """Write ``root/music`` (32 kHz), ``root/sfx`` (16 kHz) and ``root/melody`` (the music model with a chroma
    conditioner) tiny checkpoints; returns name -> dir."""
    out = {kind: write_checkpoint(Path(root) / kind, kind, **sizes) for kind in KINDS}
    out[MELODY] = write_checkpoint(Path(root) / MELODY, "music", chroma=True, **sizes)
    return out
