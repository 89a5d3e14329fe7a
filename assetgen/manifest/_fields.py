"""Cell parsers and the column schema of manifests.

Every parser takes the cell text (already stripped, never empty) and returns a value or raises
``BadValue(message)`` whose message says what was expected. Numeric cells go through pydantic
``TypeAdapter``s (lax string -> number parsing with range constraints); the few rules pydantic has no
type for (model references, loudness profiles, fx chains) are small functions here; name and text rules
live in ``assetgen.names``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Callable

from pydantic import Field, TypeAdapter, ValidationError

from assetgen.hints import closest, did_you_mean
from assetgen.models.registry import CHECKPOINT_FILES, HUB_IDS
from assetgen.names import RESERVED_SCENES, RESERVED_USE, name_problem, nfc, text_problem
from assetgen.seeds import SEED_MAX
from assetgen.spec import FILE_MODEL, LOUDNESS_PROFILES, MIX_MODEL, MODEL_ALIASES, TTS_MODEL

MAX_DURATION_S = 600.0
SAMPLE_RATES = (16_000, 22_050, 24_000, 32_000, 44_100, 48_000, 96_000)
BIT_DEPTHS = (16, 24, 32)
LOUDNESS_MODES = ("integrated", "short-term", "momentary")
META_PREFIX = "meta_"  # free metadata columns: carried on AssetSpec.meta, never part of the content key
_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+$")


class BadValue(ValueError):
    """A cell's value is not acceptable; the message says what was expected. ``column``/``value`` name the cell
    when the problem is found after parsing (a combination of cells)."""

    def __init__(self, message: str, column: str | None = None, value: str | None = None) -> None:
        super().__init__(message)
        self.column, self.value = column, value


def _refuse_decimal_comma(raw: str) -> None:
    """Raise the decimal-comma explanation when ``raw`` is a number written as ``-14,5``."""
    if _DECIMAL_COMMA.match(raw):
        raise BadValue(
            f"decimal comma: write {raw.replace(',', '.')} with a point (the file was probably saved with a "
            "comma as decimal separator; export CSV with '.' decimals)"
        )


# --- numeric columns: pydantic adapters ---------------------------------------------------------


def _number(tp: Any, expected: str, **constraints: Any) -> Callable[[str], Any]:
    """Parser for a numeric cell: pydantic lax parsing + constraints; message ends with the expectation."""
    if tp is float:
        constraints.setdefault("allow_inf_nan", False)
    adapter = TypeAdapter(Annotated[tp, Field(**constraints)])

    def parse(raw: str) -> Any:
        try:
            return adapter.validate_python(raw)
        except ValidationError as exc:
            _refuse_decimal_comma(raw)
            raise BadValue(f"{exc.errors()[0]['msg']}; expected {expected}") from None

    return parse


def _choice(values: tuple[int, ...], what: str) -> Callable[[str], int]:
    as_int = _number(int, f"one of {', '.join(map(str, values))}")

    def parse(raw: str) -> int:
        value = as_int(raw)
        if value not in values:
            raise BadValue(f"{what} {value} is not supported; expected one of {', '.join(map(str, values))}")
        return value

    return parse


_BOOL = TypeAdapter(bool)


def parse_bool(raw: str) -> bool:
    try:
        return _BOOL.validate_python(raw.lower())
    except ValidationError:
        raise BadValue("expected true/false (also yes/no, 1/0)") from None


def parse_loudness(raw: str) -> float:
    """A LUFS number in [-70, 0] or a profile name from ``spec.LOUDNESS_PROFILES``."""
    profile = LOUDNESS_PROFILES.get(raw.lower())
    if profile is not None:
        return profile
    try:
        value = float(raw)
    except ValueError:
        _refuse_decimal_comma(raw)
        hint = did_you_mean(raw.lower(), LOUDNESS_PROFILES)
        raise BadValue(
            f"unknown loudness profile{hint}; expected a LUFS number or one of {', '.join(LOUDNESS_PROFILES)}"
        ) from None
    if not -70.0 <= value <= 0.0:  # also rejects NaN
        raise BadValue("expected integrated loudness in LUFS between -70 and 0 (e.g. -23)")
    return value


def parse_fx(raw: str) -> str:
    """Check the fx chain with the dsp parser; the text itself is what PostParams carries."""
    from assetgen.dsp.fx import FxError, parse_fx_chain  # imported here: numpy only when fx is used

    try:
        parse_fx_chain(raw)
    except FxError as exc:
        raise BadValue(f"bad fx chain: {exc}") from None
    return raw


def parse_text(raw: str) -> str:
    """Free text: any characters but control, bidi and zero-width ones (``assetgen.names.text_problem``)."""
    problem = text_problem(raw)
    if problem:
        raise BadValue(f"text {problem}")
    return raw


def parse_tags(raw: str) -> tuple[str, ...]:
    """Tags separated by ``,`` or ``;``; each is free text with whitespace collapsed."""
    parse_text(raw)
    return tuple(" ".join(t.split()) for t in re.split(r"[;,]", raw) if t.strip())


def parse_qc(raw: str) -> str:
    """The quality gates a row runs (``assetgen.qc.parse_qc_text`` syntax), in canonical spelling."""
    from assetgen.qc import QcSyntaxError, canonical_qc

    try:
        return canonical_qc(raw)
    except QcSyntaxError as exc:
        raise BadValue(str(exc)) from None


def parse_loudness_mode(raw: str) -> str:
    mode = raw.lower().replace("_", "-")
    if mode not in LOUDNESS_MODES:
        hint = did_you_mean(raw, LOUDNESS_MODES)
        raise BadValue(f"unknown loudness mode{hint}; expected {', '.join(LOUDNESS_MODES)}")
    return mode


# --- names and free text -------------------------------------------------------------------------


def parse_name(raw: str) -> str:
    """A safe asset or layer name, in NFC."""
    name = nfc(raw)
    problem = name_problem(name)
    if problem:
        raise BadValue(f"name {problem}")
    return name


def parse_scene(raw: str) -> str:
    """A safe scene name (NFC) that is not one of the output root's own folders (ROOT/report/, ROOT/runs/)."""
    name = nfc(raw)
    if name.lower() in RESERVED_SCENES:
        raise BadValue(f"scene name {raw!r} is reserved (ROOT/{raw}/ holds {RESERVED_USE[name.lower()]}); "
                       "choose another")
    return parse_name(name)


def parse_continue_from(raw: str) -> str:
    """``scene/asset`` or ``asset`` (same scene), optionally pinned to a version ``@vN``; returned as
    ``scene/asset[@vN]`` with an empty scene for a bare asset (the row's scene is filled in later)."""
    ref, at, version = nfc(raw).partition("@")
    if at and not re.fullmatch(r"v[1-9][0-9]{0,8}", version):
        raise BadValue("expected scene/asset or scene/asset@vN (N a version number >= 1)")
    scene, slash, asset = ref.rpartition("/")
    if slash and not scene:
        raise BadValue("expected scene/asset or scene/asset@vN: the scene is empty")
    scene = parse_scene(scene) if scene else ""
    return f"{scene}/{parse_name(asset)}" + (f"@{version}" if at else "")


# --- models --------------------------------------------------------------------------------------


def parse_model(raw: str, base_dir: Path) -> str:
    """Alias, ``mix``, known hub id, or a checkpoint directory (returned as an absolute path).

    Relative directories are looked up next to the manifest first, then in the working directory.
    Whether the checkpoint can be loaded is the model registry's job, not checked here.
    """
    if raw in MODEL_ALIASES or raw in (MIX_MODEL, TTS_MODEL, FILE_MODEL) or raw in HUB_IDS:
        return raw
    path = Path(raw).expanduser()
    candidates = [path] if path.is_absolute() else [base_dir / path, Path.cwd() / path]
    for candidate in candidates:
        if candidate.is_dir():
            missing = [f for f in CHECKPOINT_FILES if not (candidate / f).is_file()]
            if missing:
                raise BadValue(
                    f"directory {candidate} is not a checkpoint directory: missing {', '.join(missing)}"
                )
            return str(candidate.resolve())
    hint = closest(raw, (*MODEL_ALIASES, MIX_MODEL, TTS_MODEL, FILE_MODEL, *HUB_IDS))
    raise BadValue(
        "unknown model"
        + (f" (did you mean '{hint}'?)" if hint else "")
        + f"; expected music, sfx, tts, file, mix, {', '.join(HUB_IDS)} or a directory with "
        + " and ".join(CHECKPOINT_FILES)
    )


def parse_source(raw: str, base_dir: Path):
    """A recording (``assetgen.sources.Recording``) at ``raw``, relative to the manifest's folder; the file is
    decoded whole here, so a missing, unreadable or corrupt one is a validation error naming its path."""
    from assetgen.sources import SourceError, probe

    parse_text(raw)
    path = Path(raw).expanduser()
    try:
        return probe(path if path.is_absolute() else base_dir / path)
    except SourceError as exc:
        raise BadValue(str(exc)) from None


def parse_melody(raw: str, base_dir: Path):
    """A melody: a recording (a path ending in an audio file extension, relative to the manifest's folder,
    checked as ``source`` is: an ``assetgen.sources.Recording``), else an asset of the run written as
    ``continue_from`` is (``scene/asset[@vN]``, or ``asset`` in the row's scene; returned as text)."""
    from assetgen.sources import FFMPEG_SUFFIXES, SOUNDFILE_SUFFIXES

    if Path(raw).suffix.lower() in SOUNDFILE_SUFFIXES | FFMPEG_SUFFIXES:
        return parse_source(raw, base_dir)
    try:
        return parse_continue_from(raw)
    except BadValue as exc:
        raise BadValue(f"{exc} (an asset of this run), or a recording's path ending in an audio file extension "
                       "such as .wav") from None


_VOICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_/-]{0,63}(\+[A-Za-z0-9_-]{1,32})?")


def parse_voice(raw: str) -> str:
    """An espeak-ng voice ``language[+variant]`` (``en-us``, ``en-gb+f3``); checked against the installed
    voices when espeak-ng is present (without it, the ``tts`` model itself is reported missing)."""
    if not _VOICE.fullmatch(raw):
        raise BadValue("expected an espeak-ng voice such as en-us, en-gb or en-us+f3 (language[+variant])")
    from assetgen.models.espeak_backend import voice_problem

    problem = voice_problem(raw)
    if problem:
        raise BadValue(problem)
    return raw


# --- the schema ----------------------------------------------------------------------------------

REQUIRED = ("scene", "asset", "model", "prompt", "duration_s")

# column -> (parser, may hold a sweep `a|b|c`)
PARSERS: dict[str, tuple[Callable[[str], Any], bool]] = {
    "scene": (parse_scene, False),
    "asset": (parse_name, False),
    "model": (parse_text, True),  # parsed by parse_model, which needs the manifest's folder
    "prompt": (parse_text, False),
    "duration_s": (_number(float, f"seconds, 0 < duration <= {MAX_DURATION_S:g}", gt=0, le=MAX_DURATION_S), True),
    "layer": (parse_name, False),
    "gain_db": (_number(float, "dB between -120 and 24", ge=-120, le=24), True),
    "start_s": (_number(float, "seconds between 0 and 600", ge=0, le=MAX_DURATION_S), True),
    "fade_in_s": (_number(float, "seconds between 0 and 600", ge=0, le=MAX_DURATION_S), True),
    "fade_out_s": (_number(float, "seconds between 0 and 600", ge=0, le=MAX_DURATION_S), True),
    "loop": (parse_bool, True),
    "bpm": (_number(float, "beats per minute between 20 and 400", ge=20, le=400), True),
    "bars": (_number(int, "a whole number of bars between 1 and 512", ge=1, le=512), True),
    "crossfade_s": (_number(float, "seconds between 0 and 30", ge=0, le=30), True),
    "loudness": (parse_loudness, True),
    "true_peak_db": (_number(float, "dBTP between -30 and 0", ge=-30, le=0), True),
    "channels": (_choice((1, 2), "channel count"), True),
    "sample_rate": (_choice(SAMPLE_RATES, "sample rate"), True),
    "bit_depth": (_choice(BIT_DEPTHS, "bit depth"), True),
    "fx": (parse_fx, True),
    "variants": (_number(int, "a whole number of takes between 1 and 1000", ge=1, le=1000), False),
    "seed": (_number(int, f"a whole number between 0 and {SEED_MAX}", ge=0, le=SEED_MAX), True),
    "temperature": (_number(float, "a number > 0 and <= 10", gt=0, le=10), True),
    "top_k": (_number(int, "a whole number between 0 and 10000", ge=0, le=10_000), True),
    "top_p": (_number(float, "a number between 0 and 1", ge=0, le=1), True),
    "cfg_coef": (_number(float, "a number between 0 and 30", ge=0, le=30), True),
    "category": (parse_text, False),
    "tags": (parse_tags, False),
    "highpass_hz": (_number(float, "Hz between 0 (off) and 1000", ge=0, le=1000), True),
    "max_limit_db": (_number(float, "dB of gain reduction between 0 and 60", ge=0, le=60), True),
    "loudness_mode": (parse_loudness_mode, True),
    "loop_tolerance_s": (_number(float, "seconds between 0 and 1", ge=0, le=1), True),
    "qc": (parse_qc, False),
    "loudness_tolerance_lu": (_number(float, "LU between 0 and 20", ge=0, le=20), True),
    "max_attempts": (_number(int, "a whole number of takes between 1 and 20", ge=1, le=20), True),
    "voice": (parse_voice, True),
    "rate": (_number(int, "words per minute between 80 and 450", ge=80, le=450), True),
    "duck_db": (_number(float, "dB of gain reduction between 0 and 60", ge=0, le=60), True),
    "duck_attack_s": (_number(float, "seconds between 0 and 10", ge=0, le=10), True),
    "duck_release_s": (_number(float, "seconds between 0 and 30", ge=0, le=30), True),
    "stem_set": (parse_name, False),
    "continue_from": (parse_continue_from, False),
    "prompt_s": (_number(float, "seconds of the base's end between 0.04 and 30", ge=0.04, le=30), False),
    "source": (parse_text, False),  # parsed by parse_source, which needs the manifest's folder
    "melody": (parse_text, False),  # parsed by parse_melody, which needs the manifest's folder
    "source_start_s": (_number(float, "seconds from the recording's start, >= 0", ge=0), True),
    "source_end_s": (_number(float, "seconds from the recording's start, > 0", gt=0), True),
}
KNOWN = frozenset(PARSERS)
TEXT_COLUMNS = frozenset(("scene", "asset", "model", "prompt", "layer", "fx", "category", "tags", "loudness_mode",
                          "qc", "voice", "source", "stem_set", "continue_from", "melody"))

# names people write for known columns (other tools' spellings, units in the name): column -> known column
ALIASES = {
    "true_peak": "true_peak_db", "truepeak": "true_peak_db", "true_peak_dbtp": "true_peak_db", "tp": "true_peak_db",
    "dbtp": "true_peak_db", "peak_db": "true_peak_db", "ceiling": "true_peak_db", "peak": "true_peak_db",
    "lufs": "loudness", "loudness_lufs": "loudness", "target_lufs": "loudness", "integrated": "loudness",
    "integrated_lufs": "loudness", "target_loudness": "loudness",
    "sample_rate_hz": "sample_rate", "samplerate": "sample_rate", "sr": "sample_rate",
    "sampling_rate": "sample_rate", "fs": "sample_rate",
    "bits": "bit_depth", "bitdepth": "bit_depth", "bits_per_sample": "bit_depth",
    "duration": "duration_s", "length": "duration_s", "length_s": "duration_s", "seconds": "duration_s",
    "duration_sec": "duration_s", "dur": "duration_s",
    "tempo": "bpm", "measures": "bars", "looped": "loop", "looping": "loop", "seamless": "loop",
    "name": "asset", "asset_name": "asset", "scene_name": "scene", "text": "prompt", "description": "prompt",
    "gain": "gain_db", "volume": "gain_db", "weight": "gain_db", "offset_s": "start_s", "start": "start_s",
    "fade_in": "fade_in_s", "fade_out": "fade_out_s", "crossfade": "crossfade_s", "xfade": "crossfade_s",
    "channel": "channels", "num_channels": "channels", "effects": "fx", "takes": "variants",
    "cfg": "cfg_coef", "guidance": "cfg_coef", "tag": "tags", "highpass": "highpass_hz", "hpf": "highpass_hz",
    "hpf_hz": "highpass_hz", "dc_highpass_hz": "highpass_hz", "max_limit": "max_limit_db",
    "limit_db": "max_limit_db", "max_gain_reduction_db": "max_limit_db", "loop_tolerance": "loop_tolerance_s",
    "tolerance_s": "loop_tolerance_s", "type": "model", "gates": "qc", "qc_gates": "qc", "checks": "qc",
    "attempts": "max_attempts", "rerolls": "max_attempts", "max_rerolls": "max_attempts", "retries": "max_attempts",
    "loudness_tolerance": "loudness_tolerance_lu", "lufs_tolerance": "loudness_tolerance_lu",
    "tolerance_lu": "loudness_tolerance_lu",
    "speaker": "voice", "tts_voice": "voice", "wpm": "rate", "speech_rate": "rate", "speed": "rate",
    "words_per_minute": "rate", "duck": "duck_db", "ducking": "duck_db", "ducking_db": "duck_db",
    "sidechain_db": "duck_db", "duck_attack": "duck_attack_s", "duck_release": "duck_release_s",
    "source_file": "source", "source_path": "source", "recording": "source", "audio_file": "source",
    "source_start": "source_start_s", "source_end": "source_end_s", "in_s": "source_start_s",
    "out_s": "source_end_s", "stems": "stem_set", "stem_group": "stem_set", "stem": "stem_set",
    "continue": "continue_from", "continuation_of": "continue_from", "continues": "continue_from",
    "prompt_seconds": "prompt_s", "prompt_duration_s": "prompt_s", "prompt_length_s": "prompt_s",
    "melody_file": "melody", "melody_path": "melody", "melody_wav": "melody", "chroma": "melody",
    "reference_melody": "melody", "melody_from": "melody", "tune": "melody",
}  # fmt: skip
_UNITS = ("_hz", "_db", "_dbtp", "_lufs", "_s", "_sec", "_seconds", "_ms")


def suggest_column(name: str) -> str | None:
    """The known column an unknown column name most likely means (alias, unit variant or typo), or None."""
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    if key in KNOWN:
        return key
    if key in ALIASES:
        return ALIASES[key]
    for unit in _UNITS:  # `highpass` vs `highpass_hz`, `sample_rate_hz` vs `sample_rate`
        if key.endswith(unit) and key[: -len(unit)] in KNOWN:
            return key[: -len(unit)]
        if key + unit in KNOWN:
            return key + unit
    return closest(key, KNOWN)
