"""Plain data shared by every stage: what one asset is, how it is generated and delivered.

Conventions used across assetgen:
- audio arrays are float32 numpy arrays shaped ``(channels, samples)`` (librosa / pedalboard order);
- times are seconds (``*_s``), rates Hz, loudness LUFS, peaks dBTP, loop points samples;
- everything here is pure data (frozen dataclasses) so it can cross process boundaries (Dask, Prefect).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

from assetgen.names import RESERVED_SCENES  # noqa: F401  (its home is names.py; re-exported for the store)

LOUDNESS_PROFILES: dict[str, float] = {
    "ebu-r128": -23.0,
    "aswg-console": -24.0,
    "aswg-mobile": -18.0,
}
DEFAULT_LOUDNESS_LUFS = LOUDNESS_PROFILES["ebu-r128"]
DEFAULT_TRUE_PEAK_DBTP = -1.0
DEFAULT_SAMPLE_RATE = 48_000
DEFAULT_BIT_DEPTH = 24  # 16 and 24 are PCM, 32 means 32-bit float
MODEL_ALIASES = ("music", "sfx", "melody")  # melody: facebook/musicgen-melody (a music model taking a melody)
MIX_MODEL = "mix"  # pseudo-model of a scene's mix asset: rendered from its layers, not generated
FILE_MODEL = "file"  # recorded source: the row's ``source`` file is read instead of generated (assetgen.sources)
TTS_MODEL = "tts"  # narration: the prompt is the spoken line, synthesised by espeak-ng (placeholder VO)
DEFAULT_TTS_VOICE = "en-us"  # espeak-ng voice of a tts row without a ``voice`` cell
DEFAULT_TTS_RATE = 160  # espeak-ng speaking rate of a tts row without a ``rate`` cell, words per minute
PLACEHOLDER_VO = "PLACEHOLDER VO"  # starts the model label of tts takes (and appears in their mixes' labels)
DEFAULT_PROMPT_S = 2.0  # seconds of the base's delivered take that prompt a continuation without ``prompt_s``
BEATS_PER_BAR = 4  # loops are counted in 4/4 bars


def bars_seconds(bars: float, bpm: float, beats_per_bar: int = BEATS_PER_BAR) -> float:
    """Length (s) of ``bars`` bars at ``bpm`` beats per minute: ``bars * beats_per_bar * 60 / bpm``."""
    return bars * beats_per_bar * 60.0 / bpm


def seconds_bars(seconds: float, bpm: float, beats_per_bar: int = BEATS_PER_BAR) -> float:
    """Bars (fractional) in ``seconds`` at ``bpm``: the inverse of :func:`bars_seconds`."""
    return seconds * bpm / (beats_per_bar * 60.0)


@dataclass(frozen=True)
class Source:
    """Where a spec came from, as the user sees it (CSV line number, Parquet row index, JSON path)."""

    file: str
    row: int | str

    def __str__(self) -> str:
        return f"{self.file}:{self.row}"


@dataclass(frozen=True)
class GenParams:
    """Generation parameters of one request (audiocraft's ``set_generation_params``).

    ``duration_s`` is what is generated; for loop assets it is the loop length plus ``PostParams.crossfade_s``
    so the loop machinery has material to crossfade (see ``target_duration_s``).
    """

    duration_s: float
    temperature: float = 1.0
    top_k: int = 250
    top_p: float = 0.0
    cfg_coef: float = 3.0
    # text-to-speech only (model ``tts``); empty / 0 on every other model, so they stay out of its content key
    voice: str = ""  # espeak-ng voice, e.g. ``en-us`` or ``en-gb+f3``
    rate: int = 0  # speaking rate, words per minute
    # recorded sources only (model ``file``): the file (absolute path), its sha256, and the segment read (s);
    # empty / 0 on every other model, so they stay out of its content key. The reader returns the whole segment
    # (a loop searches all of it for its seam); ``duration_s`` stays what the row delivers, as for a model.
    source: str = ""
    source_sha256: str = ""
    source_start_s: float = 0.0
    source_end_s: float = 0.0
    # continuations only (music rows with ``continue_from``): the base asset ``scene/asset`` or ``scene/asset@vN``
    # whose delivered take's last ``prompt_s`` seconds prompt the model; empty / 0 elsewhere (not in other keys)
    continue_from: str = ""
    prompt_s: float = 0.0
    # melody conditioning (MusicGen-melody rows with ``melody``): a recording (absolute path, with its sha256) or
    # an asset of the run, ``scene/asset`` or ``scene/asset@vN`` (``melody_sha256`` empty), whose delivered take
    # conditions the model; empty elsewhere (not in other keys)
    melody: str = ""
    melody_sha256: str = ""

    @property
    def base(self) -> str:
        """The asset of the run this generation needs delivered first (``scene/asset[@vN]``): the one it continues
        or whose take is its melody; empty when it needs none."""
        return self.continue_from or (self.melody if self.melody and not self.melody_sha256 else "")


@dataclass(frozen=True)
class PostParams:
    """Delivery settings of one asset (resample, fx, loop, layer mix, loudness, file format)."""

    sample_rate: int = DEFAULT_SAMPLE_RATE
    bit_depth: int = DEFAULT_BIT_DEPTH
    channels: int = 2
    loudness_lufs: float = DEFAULT_LOUDNESS_LUFS
    true_peak_db: float = DEFAULT_TRUE_PEAK_DBTP
    loop: bool = False
    bpm: float | None = None
    bars: int | None = None
    crossfade_s: float = 0.5
    fx: str = ""  # strict fx chain syntax, e.g. "reverb(room_size=0.7); highpass(cutoff_frequency_hz=120)"
    highpass_hz: float = 20.0  # DC-blocking / subsonic high-pass before loudness (Hz); 0 disables
    max_limit_db: float = 12.0  # most gain reduction (dB) the true-peak limiter may apply to reach the target
    loudness_mode: str = "integrated"  # what ``loudness_lufs`` targets: integrated | short-term | momentary (max)
    loop_tolerance_s: float = 0.0  # how far (s) a second-based loop may deviate from its length to match phase
    # quality gates (assetgen.qc): the row's ``qc`` cell in canonical spelling ("" = its kind's defaults),
    # the loudness gate's tolerance (LU), and how many takes may be generated (0 = the render's --max-attempts)
    qc: str = ""
    loudness_tolerance_lu: float = 0.5
    max_attempts: int = 0
    # layer placement inside a scene mix (ignored for stand-alone assets)
    gain_db: float = 0.0
    start_s: float = 0.0
    fade_in_s: float = 0.0
    fade_out_s: float = 0.0
    # side-chain ducking: while this layer sounds, the scene's other layers are turned down by ``duck_db`` dB,
    # reaching it over ``duck_attack_s`` s before the layer starts and recovering over ``duck_release_s`` s
    duck_db: float = 0.0
    duck_attack_s: float = 0.1
    duck_release_s: float = 0.5
    # vertical layering: the rows of one scene sharing ``stem_set`` are delivered on one grid (same length in
    # samples, same loop points); the manifest checks the grid, ``assetgen.stems`` the delivered set
    stem_set: str = ""


@dataclass(frozen=True)
class AssetSpec:
    """One deliverable asset after template filling, sweep and variant expansion.

    ``model`` is an alias (``music``/``sfx``), a hub id, a checkpoint directory, or ``mix`` for a scene
    mix; a mix has ``layers`` (asset names of the same scene) and no prompt of its own.
    """

    scene: str
    asset: str
    model: str
    prompt: str
    seed: int
    gen: GenParams
    post: PostParams = field(default_factory=PostParams)
    layer: str | None = None
    layers: tuple[str, ...] = ()
    category: str = ""
    tags: tuple[str, ...] = ()
    template_params: tuple[tuple[str, str], ...] = ()
    source: Source | None = None
    meta: tuple[tuple[str, str], ...] = ()  # free ``meta_*`` columns, kept in the index, not in the content key

    @property
    def ident(self) -> str:
        """``scene/asset``: the asset's identity in the output tree and the index."""
        return f"{self.scene}/{self.asset}"

    @property
    def is_mix(self) -> bool:
        return self.model == MIX_MODEL

    @property
    def target_duration_s(self) -> float:
        """Delivered length (s): bars at bpm for music loops, else the generated length minus loop material."""
        if self.post.loop and self.post.bpm and self.post.bars:
            return bars_seconds(self.post.bars, self.post.bpm)
        extra = self.post.crossfade_s if self.post.loop else 0.0
        return max(self.gen.duration_s - extra, 0.0)

    def replace(self, **changes: Any) -> "AssetSpec":
        """A copy with ``changes`` (what ``dataclasses.replace`` gives: AssetSpec has no ``__post_init__`` and
        no field outside ``__init__``), built without a frozen ``__setattr__`` call per field: planning
        replaces one spec per asset (variants, ``--max-attempts``)."""
        if type(self) is not AssetSpec or not _SPEC_FIELDS.issuperset(changes):
            return dataclasses.replace(self, **changes)  # a subclass's own rules; a TypeError naming a bad field
        new = object.__new__(AssetSpec)
        new.__dict__.update(self.__dict__)
        new.__dict__.update(changes)
        return new


_SPEC_FIELDS = frozenset(f.name for f in dataclasses.fields(AssetSpec))


@dataclass(frozen=True)
class GenRequest:
    """One generation request handed to a model backend."""

    key: str  # caller's id for the result (content key)
    prompt: str
    seed: int
    params: GenParams
    # continuation prompt: float32 (channels, samples) at ``prompt_sr`` Hz, or None for a text-only request;
    # the backend resamples it to the model's rate and returns only the continuation after it
    prompt_audio: Any = None
    prompt_sr: int = 0
    # melody (models with a chroma conditioner): float32 (channels, samples) at ``melody_sr`` Hz (an asset's delivered
    # take), or a recording the backend reads, ``melody_file`` checked against ``melody_sha256``; neither: no melody
    melody_audio: Any = None
    melody_sr: int = 0
    melody_file: str = ""
    melody_sha256: str = ""

    @property
    def has_melody(self) -> bool:
        return self.melody_audio is not None or bool(self.melody_file)


@dataclass
class ProcessedAudio:
    """Delivered audio plus what was measured on it (goes to the WAV chunks and the index)."""

    audio: np.ndarray  # float32 (channels, samples); the store alone encodes it for delivery
    sample_rate: int
    lufs: float | None
    true_peak_dbtp: float | None
    loop_start: int | None = None  # samples, inclusive
    loop_end: int | None = None  # samples, exclusive (== len for a whole-file loop)
    seam_score: float | None = None
    status: str = "ok"  # "ok", or a short measurement status such as "silent" / "too-short"
    notes: tuple[str, ...] = ()
    lra_lu: float | None = None  # loudness range (EBU Tech 3342), LU
    max_momentary_lufs: float | None = None  # max momentary loudness (400 ms), LUFS
    max_short_term_lufs: float | None = None  # max short-term loudness (3 s), LUFS
    sample_peak_dbfs: float | None = None
    dc_offset: float | None = None  # mean sample value of the delivered audio (full scale = 1)
    loudness_shortfall_lu: float | None = None  # target minus reached loudness when the target was out of reach
    tempo_bpm: float | None = None  # tempo the loop grid used
    tempo_source: str | None = None  # "given", or how it was estimated
    gates: tuple = ()  # assetgen.qc.GateResult of each gate run on this take
    embedding: tuple[float, ...] | None = None  # assetgen.qc.embedding of the raw take (near-duplicate gate)
    qc: str | None = None  # verdict over ``gates``: pass | fail | waived (None: no gates were run)
    qc_reasons: tuple[str, ...] = ()  # why it failed, one text per failed gate
