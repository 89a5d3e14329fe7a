"""Cell parsers, name rules, seeds and spelling hints for manifest columns.

Every parser takes the cell text (already stripped, never empty) and returns a value or raises
``BadValue(message)`` whose message says what was expected. Numeric cells go through pydantic
``TypeAdapter``s (lax string -> number parsing with range constraints); the few rules pydantic has no
type for (model references, loudness profiles, fx chains, file-name safety) are small functions here.
"""

from __future__ import annotations

import gc
import hashlib
import re
import unicodedata
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator

from pydantic import Field, TypeAdapter, ValidationError

from assetgen.models.registry import CHECKPOINT_FILES, HUB_IDS
from assetgen.spec import LOUDNESS_PROFILES, MIX_MODEL, MODEL_ALIASES

MAX_DURATION_S = 600.0
SAMPLE_RATES = (16_000, 22_050, 24_000, 32_000, 44_100, 48_000, 96_000)
BIT_DEPTHS = (16, 24, 32)
MAX_NAME_LEN = 120
SEED_MAX = 2**32 - 1


class BadValue(ValueError):
    """A cell's value is not acceptable; the message says what was expected."""


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
    return raw


def parse_tags(raw: str) -> tuple[str, ...]:
    """Tags separated by ``,`` or ``;``."""
    return tuple(t.strip() for t in re.split(r"[;,]", raw) if t.strip())


# --- names ---------------------------------------------------------------------------------------

_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {f"{p}{i}" for p in ("COM", "LPT") for i in range(1, 10)}
_FORBIDDEN_CHARS = set('<>:"|?*')
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be one path component on Linux, macOS and Windows, or None if it can."""
    if not name:
        return "is empty"
    if "/" in name or "\\" in name:  # also every absolute path (POSIX, UNC; drive letters hit ':' below)
        return "contains a path separator; expected a plain name such as forest_amb"
    if ".." in name or name == ".":
        return "contains '..'; expected a plain name such as forest_amb"
    if _CONTROL.search(name):
        return "contains control characters"
    bad = sorted(set(name) & _FORBIDDEN_CHARS)
    if bad:
        return f"contains {' '.join(bad)} (not allowed in Windows file names)"
    if name.split(".")[0].strip().upper() in _WINDOWS_RESERVED:
        return "is a reserved device name on Windows (CON, PRN, AUX, NUL, COM1-9, LPT1-9)"
    if name[0] == ".":
        return "starts with a dot (hidden files and folders are assetgen's own, e.g. .quarantine)"
    if name[-1] in ". " or name[0] == " ":
        return "starts or ends with a space or ends with a dot (Windows strips them)"
    if len(name) > MAX_NAME_LEN:
        return f"is longer than {MAX_NAME_LEN} characters"
    return None


def parse_name(raw: str) -> str:
    problem = name_problem(raw)
    if problem:
        raise BadValue(f"name {problem}")
    return raw


def parse_scene(raw: str) -> str:
    """A scene name: a safe name that is not one of the output root's own folders (ROOT/report/)."""
    from assetgen.spec import RESERVED_SCENES

    if raw.lower() in RESERVED_SCENES:
        raise BadValue(f"scene name {raw!r} is reserved (ROOT/{raw}/ holds the review report); choose another")
    return parse_name(raw)


_SLUG_DROP = re.compile(r"[^a-z0-9._-]+")


@lru_cache(maxsize=1 << 16)
def slug(value: str) -> str:
    """Readable, filesystem-safe form of a swept value: ``synthesizer pads`` -> ``synthesizer-pads``."""
    text = _SLUG_DROP.sub("-", unicodedata.normalize("NFKD", value).lower())
    text = re.sub(r"\.{2,}", ".", text).strip("-.")
    return text or "x" + hashlib.blake2b(value.encode(), digest_size=3).hexdigest()


def scene_slug(title: str) -> str:
    """JSON scene titles (``Peaceful Forest Morning``) -> ``peaceful_forest_morning``, as the seed's safe_name."""
    return re.sub(r"_+", "_", "".join(c if c.isalnum() else "_" for c in title.lower())).strip("_")


def shorten(name: str) -> str:
    """Keep expanded names within MAX_NAME_LEN: cut and append a hash of the full name."""
    if len(name) <= MAX_NAME_LEN:
        return name
    return name[: MAX_NAME_LEN - 10].rstrip("-_.") + "~" + hashlib.blake2b(name.encode(), digest_size=4).hexdigest()


# --- seeds ---------------------------------------------------------------------------------------


def derive_seed(*parts: object) -> int:
    """Deterministic 31-bit seed from the given parts (stable across runs, platforms and row order)."""
    text = "\x1f".join(map(str, parts)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big") & 0x7FFF_FFFF


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many acyclic objects (specs, plan items).

    CPython's collector otherwise re-scans every live spec on each full collection while 100k of them are
    created, which made planning grow faster than linearly; nothing built here forms reference cycles.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# --- spelling hints ------------------------------------------------------------------------------


def edit_distance(a: str, b: str) -> int:
    """Optimal-string-alignment distance (Levenshtein + adjacent swaps).

    Written by hand: difflib's ratio misses transpositions in short names (bpm/bmp) and no edit-distance
    library is among the project's dependencies.
    """
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[-1]


def closest(word: str, choices: Any) -> str | None:
    """The choice within typo distance of ``word`` (1 edit up to 4 letters, 2 beyond), case-insensitive."""
    limit = 1 if len(word) <= 4 else 2
    best = min(((edit_distance(word.lower(), c.lower()), c) for c in choices), default=None)
    return best[1] if best is not None and best[0] <= limit else None


def did_you_mean(word: str, choices: Any) -> str:
    match = closest(word, choices)
    return f" '{word}' (did you mean '{match}'?)" if match else f" '{word}'"


# --- models --------------------------------------------------------------------------------------


def parse_model(raw: str, base_dir: Path) -> str:
    """Alias, ``mix``, known hub id, or a checkpoint directory (returned as an absolute path).

    Relative directories are looked up next to the manifest first, then in the working directory.
    Whether the checkpoint can be loaded is the model registry's job, not checked here.
    """
    if raw in MODEL_ALIASES or raw == MIX_MODEL or raw in HUB_IDS:
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
    hint = closest(raw, (*MODEL_ALIASES, MIX_MODEL, *HUB_IDS))
    raise BadValue(
        "unknown model"
        + (f" (did you mean '{hint}'?)" if hint else "")
        + f"; expected music, sfx, mix, {', '.join(HUB_IDS)} or a directory with {' and '.join(CHECKPOINT_FILES)}"
    )


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
}
KNOWN = frozenset(PARSERS)
