"""MusicGen / AudioGen through audiocraft's own ``get_pretrained`` (hub ids and checkpoint directories).

Reproducibility: audiocraft samples a whole batch from one global RNG, so a request's audio would depend on its
batch neighbours (and change when an out-of-memory split changes the batch). ``_row_multinomial`` gives each
request its own ``torch.Generator`` seeded from the request's seed, so the same request + seed gives the same
tokens whatever batch it lands in (up to float differences between batch shapes on some GPUs).

audiocraft looks ``multinomial`` up in ``audiocraft.utils.utils`` at call time, so the per-request sampler is
installed there: by :func:`install_row_sampler`, which :class:`AudiocraftBackend` calls when it loads a model
(importing this module changes nothing). Outside :meth:`AudiocraftBackend.generate` no per-request generators are
set, and the installed sampler defers to audiocraft's own.
"""

from __future__ import annotations

import math
import os
import threading
from typing import Callable, Sequence

import numpy as np
import torch
import audiocraft.utils.utils as ac_utils
from audiocraft.models import AudioGen, MusicGen

from assetgen.models.base import RequestRefused
from assetgen.models.melody import SEPARATOR_GLOBALS, has_local_separator, local_separator, model_takes_melody
from assetgen.models.registry import ResolvedModel
from assetgen.models.safe_load import safe_torch_load
from assetgen.sources import SourceError, read_recording
from assetgen.spec import GenRequest

_rows = threading.local()
_original_multinomial = ac_utils.multinomial


def _row_multinomial(input: torch.Tensor, num_samples: int, replacement: bool = False, *, generator=None):
    """audiocraft's ``multinomial``, drawing batch row ``b`` from the b-th active per-request generator.

    One uniform per (row, codebook) from that row's generator, then inverse-CDF sampling for the whole batch
    at once (a token with zero probability can never be drawn: it adds nothing to the CDF).
    """
    gens = getattr(_rows, "generators", None)
    if gens is None or generator is not None or num_samples != 1 or input.dim() < 2 or input.shape[0] != len(gens):
        return _original_multinomial(input, num_samples, replacement, generator=generator)
    rows = input.reshape(input.shape[0], -1, input.shape[-1]).to(torch.float32)  # [B, R, card]
    u = torch.stack([torch.rand(rows.shape[1], generator=g, device=g.device) for g in gens])  # [B, R]
    cdf = rows.cumsum(-1)
    idx = torch.searchsorted(cdf, (u * cdf[..., -1]).unsqueeze(-1), right=True)
    return idx.clamp_(max=input.shape[-1] - 1).reshape(*input.shape[:-1], 1)


def install_row_sampler() -> None:
    """Route audiocraft's sampling through :func:`_row_multinomial` (idempotent; leaves a sampler that someone
    else put in place, such as a benchmark's timer, alone)."""
    if ac_utils.multinomial is _original_multinomial:
        ac_utils.multinomial = _row_multinomial


class AudiocraftBackend:
    """One loaded MusicGen or AudioGen model on one device (see ``ModelBackend``)."""

    def __init__(self, resolved: ResolvedModel, device: str = "cpu"):
        install_row_sampler()
        cls = AudioGen if resolved.kind == "sfx" else MusicGen
        env_before = os.environ.get("HF_HUB_OFFLINE")
        os.environ["HF_HUB_OFFLINE"] = "1"  # never reach for the hub: resolve() found local files
        chroma = cls is MusicGen and model_takes_melody(resolved.ref) or has_local_separator(resolved.checkpoint_dir)
        try:
            # a melody checkpoint's separator is a demucs package: its model class may be unpickled (demucs builds
            # it from the package's kwargs), from the checkpoint's own separator repository when it has one
            with safe_torch_load(SEPARATOR_GLOBALS if chroma else ()), local_separator(resolved.checkpoint_dir):
                self.model = cls.get_pretrained(resolved.source, device=device)
        finally:
            if env_before is None:
                os.environ.pop("HF_HUB_OFFLINE", None)
            else:
                os.environ["HF_HUB_OFFLINE"] = env_before
        self.resolved = resolved
        self.device = device
        self.name = resolved.label
        self.placeholder = resolved.placeholder
        self.sample_rate = int(self.model.sample_rate)
        self.max_duration_s = float(self.model.max_duration)
        # MusicGen-melody's chroma conditioner: only such a model takes a melody (generate_with_chroma)
        self.takes_melody = "self_wav" in getattr(getattr(self.model.lm, "condition_provider", None),
                                                  "conditioners", {})
        self.on_progress: Callable[[float], None] | None = None  # fraction of tokens generated (the lab sets it)

    def generate(self, requests: Sequence[GenRequest]) -> list[np.ndarray | RequestRefused]:
        """Generate one batch; all requests must share ``params`` (the planner groups them so). Requests with a
        melody go through ``generate_with_chroma`` (each with its own melody, of one length: audiocraft pads them to
        the longest, which changes a shorter one's chroma); a request whose melody recording cannot be read, or any
        melody on a model without a chroma conditioner, is refused alone."""
        params = requests[0].params
        if any(r.params != params for r in requests):
            raise ValueError("a batch must share one GenParams; group requests with plan.make_batches")
        melodies, refused = self._melodies(requests)
        keep = [i for i in range(len(requests)) if i not in refused]
        kept = [melodies[i] for i in keep] if melodies is not None else None
        if kept is not None and all(m is None for m in kept):
            kept = None  # no melody left: the text-only path, as for any other batch
        made = iter(self._generate([requests[i] for i in keep], kept) if keep else [])
        return [refused[i] if i in refused else next(made) for i in range(len(requests))]

    def _generate(self, requests: Sequence[GenRequest], melodies: list | None) -> list[np.ndarray]:
        params = requests[0].params
        # audiocraft generates int(duration * frame_rate) frames: round up to whole frames, trim to the sample
        frames = math.ceil(params.duration_s * self.model.frame_rate - 1e-6)
        samples = round(params.duration_s * self.sample_rate)
        prompt, prompt_frames = self._prompt(requests)
        # a continuation's frames count the prompt's: audiocraft returns prompt + continuation
        duration = (prompt_frames + frames + 0.5) / self.model.frame_rate
        if params.duration_s + prompt_frames / self.model.frame_rate <= self.max_duration_s:
            duration = min(duration, self.max_duration_s)  # stay in the single-window path
        self.model.set_generation_params(
            duration=duration, temperature=params.temperature, top_k=params.top_k,
            top_p=params.top_p, cfg_coef=params.cfg_coef)
        torch.manual_seed(int(requests[0].seed) % (2**63))
        _rows.generators = [torch.Generator(device=self.device).manual_seed(int(r.seed) % (2**63))
                            for r in requests]
        try:
            # inference mode, not audiocraft's no_grad: no version counters or view tracking per op (decoding is
            # thousands of small ops per second of audio); tokens are bit-identical.
            report = self.on_progress
            if report is not None:
                self.model.set_custom_progress_callback(lambda done, total: report(min(1.0, done / max(total, 1))))
            texts = [r.prompt for r in requests]
            with torch.inference_mode():
                if melodies is not None:
                    if prompt is not None:
                        raise ValueError("audiocraft continues a prompt without melody conditioning: a batch "
                                         "holds continuations or melodies, not both")
                    wav = self.model.generate_with_chroma(texts, melodies, self.sample_rate,
                                                          progress=report is not None)
                elif prompt is None:
                    wav = self.model.generate(texts, progress=report is not None)
                else:
                    wav = self.model.generate_continuation(prompt, self.sample_rate, texts,
                                                           progress=report is not None)
        finally:
            _rows.generators = None
        skip = prompt_frames * round(self.sample_rate / self.model.frame_rate)  # the prompt's decoded samples
        return [w[..., skip:skip + samples].detach().to("cpu", torch.float32).numpy() for w in wav]

    def _melodies(self, requests: Sequence[GenRequest]) -> tuple[list | None, dict[int, RequestRefused]]:
        """Each request's melody at the model's rate and channels (``[C, T]`` tensor, None without one), or None
        when no request has one; and the requests refused (index -> ``RequestRefused``)."""
        if not any(r.has_melody for r in requests):
            return None, {}
        from audiocraft.data.audio_utils import convert_audio

        melodies: list = []
        refused: dict[int, RequestRefused] = {}
        for i, r in enumerate(requests):
            melodies.append(None)
            if not r.has_melody:
                continue
            if not self.takes_melody:
                refused[i] = RequestRefused(f"model {self.name} has no chroma conditioner: it cannot take a melody "
                                            "(use melody, facebook/musicgen-melody or a melody checkpoint)")
                continue
            try:
                audio, sr = ((r.melody_audio, r.melody_sr) if r.melody_audio is not None
                             else read_recording(r.melody_file, r.melody_sha256))
            except SourceError as exc:
                refused[i] = RequestRefused(f"melody: {exc}")
                continue
            wav = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
            melodies[i] = convert_audio(wav, int(sr), self.sample_rate, self.model.audio_channels).to(self.device)
        if len({m.shape[-1] for m in melodies if m is not None}) > 1:
            raise ValueError("a batch's melodies must have one length and rate; group requests with "
                             "plan.make_batches")
        return melodies, refused

    def _prompt(self, requests: Sequence[GenRequest]) -> tuple[torch.Tensor | None, int]:
        """The batch's continuation prompts at the model's rate and channels, [B, C, T], and their length in
        frames (None, 0 for text-only requests). All or none of a batch must have a prompt, of one length."""
        given = [r.prompt_audio is not None for r in requests]
        if not any(given):
            return None, 0
        if not all(given) or len({(np.shape(r.prompt_audio), r.prompt_sr) for r in requests}) != 1:
            raise ValueError("a continuation batch needs a prompt of one length and rate on every request; "
                             "group requests with plan.make_batches")
        from audiocraft.data.audio_utils import convert_audio

        audio = torch.from_numpy(np.stack([np.asarray(r.prompt_audio, dtype=np.float32) for r in requests]))
        audio = convert_audio(audio, requests[0].prompt_sr, self.sample_rate, self.model.audio_channels)
        hop = round(self.sample_rate / self.model.frame_rate)
        n = audio.shape[-1] // hop  # whole frames, the latest ones: the prompt's tokens then decode to n * hop samples
        if n < 1:
            raise ValueError(f"a continuation prompt needs at least one frame ({hop} samples at "
                             f"{self.sample_rate} Hz)")
        return audio[..., audio.shape[-1] - n * hop:].contiguous().to(self.device), n

    def free_memory(self) -> None:
        """Release cached device memory after an out-of-memory error."""
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()
