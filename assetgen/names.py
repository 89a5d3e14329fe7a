"""Name and text rules: what may be a scene or asset name, and what free text may contain.

One home for these rules: the manifest validates names with ``name_problem`` / ``scene_problem`` before
anything runs, the store re-checks every path component with ``component_problem`` (a weaker rule the
manifest's implies) before it creates a folder. Names are compared and stored in Unicode NFC, so that
``café`` typed on macOS (NFD) and on Windows (NFC) is one name.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from functools import lru_cache

MAX_NAME_LEN = 120
RESERVED_USE = {"report": "the review report", "runs": "the run reports"}  # ROOT/<name>/ holds assetgen's own files
RESERVED_SCENES = tuple(RESERVED_USE)

_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {f"{p}{i}" for p in ("COM", "LPT") for i in range(1, 10)}
_FORBIDDEN_CHARS = set('<>:"|?*')
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# bidi embeddings/overrides (U+202A-202E), isolates (U+2066-2069), marks (U+200E/200F, U+061C) and
# zero-width characters: they make a name or a prompt read differently from what it is
_INVISIBLE_CHARS = "\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c\u200b-\u200d\u2060\ufeff"
_INVISIBLE = re.compile(f"[{_INVISIBLE_CHARS}]")
_BAD_IN_TEXT = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f{_INVISIBLE_CHARS}]")  # tab, LF, CR allowed


def nfc(text: str) -> str:
    """``text`` in Unicode normalisation form C (composed), the one spelling names are kept in."""
    return unicodedata.normalize("NFC", text)


def _describe(char: str) -> str:
    return f"U+{ord(char):04X} {unicodedata.name(char, 'control character')}"


def text_problem(text: str) -> str | None:
    """Why ``text`` (a prompt, tag, description, metadata value) is not acceptable, or None.

    Tabs and line breaks are allowed (prompts collapse whitespace); other control characters (NUL, ESC, ...),
    bidi controls and zero-width characters are not: they break the iXML chunk or hide what the text says.
    """
    bad = _BAD_IN_TEXT.search(text)
    if bad:
        return f"contains {_describe(bad.group())} at position {bad.start() + 1}; remove it"
    return None


def component_problem(name: object) -> str | None:
    """Why ``name`` cannot be one path component inside a folder (the store's rule), or None if it can."""
    if not isinstance(name, str) or not name:
        return "is empty"
    if name in (".", "..") or name.startswith("."):
        return "starts with a dot"
    if "/" in name or "\\" in name or "\0" in name:
        return "contains a path separator or NUL"
    if name != name.strip():
        return "starts or ends with whitespace"
    return None


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a scene/asset name on Linux, macOS and Windows, or None if it can.

    Implies ``component_problem``; expects NFC text (see ``nfc``).
    """
    if not name:
        return "is empty"
    if "/" in name or "\\" in name:  # also every absolute path (POSIX, UNC; drive letters hit ':' below)
        return "contains a path separator; expected a plain name such as forest_amb"
    if ".." in name or name == ".":
        return "contains '..'; expected a plain name such as forest_amb"
    bad = _CONTROL.search(name) or _INVISIBLE.search(name)
    if bad:
        return f"contains {_describe(bad.group())} (control, bidi and zero-width characters are not allowed)"
    bad_chars = sorted(set(name) & _FORBIDDEN_CHARS)
    if bad_chars:
        return f"contains {' '.join(bad_chars)} (not allowed in Windows file names)"
    if name.split(".")[0].strip().upper() in _WINDOWS_RESERVED:
        return "is a reserved device name on Windows (CON, PRN, AUX, NUL, COM1-9, LPT1-9)"
    if name[0] == ".":
        return "starts with a dot (hidden files and folders are assetgen's own, e.g. .quarantine)"
    if name[-1] in ". " or name[0] == " ":
        return "starts or ends with a space or ends with a dot (Windows strips them)"
    if len(name) > MAX_NAME_LEN:
        return f"is longer than {MAX_NAME_LEN} characters"
    return component_problem(name)


def scene_problem(name: str) -> str | None:
    """``name_problem`` plus the output root's own folders (``RESERVED_SCENES``)."""
    if name.lower() in RESERVED_SCENES:
        return f"is reserved (ROOT/{name}/ holds {RESERVED_USE[name.lower()]}); choose another"
    return name_problem(name)


_SLUG_DROP = re.compile(r"[^a-z0-9._-]+")


@lru_cache(maxsize=1 << 16)
def slug(value: str) -> str:
    """Readable, filesystem-safe form of a swept value: ``synthesizer pads`` -> ``synthesizer-pads``."""
    text = _SLUG_DROP.sub("-", unicodedata.normalize("NFKD", value).lower())
    text = re.sub(r"\.{2,}", ".", text).strip("-.")
    return text or "x" + hashlib.blake2b(value.encode(), digest_size=3).hexdigest()


def scene_slug(title: str) -> str:
    """JSON scene titles (``Peaceful Forest Morning``) -> ``peaceful_forest_morning``, as the seed's safe_name."""
    return re.sub(r"_+", "_", "".join(c if c.isalnum() else "_" for c in nfc(title).lower())).strip("_")


def shorten(name: str) -> str:
    """Keep expanded names within MAX_NAME_LEN: cut and append a hash of the full name."""
    if len(name) <= MAX_NAME_LEN:
        return name
    return name[: MAX_NAME_LEN - 10].rstrip("-_.") + "~" + hashlib.blake2b(name.encode(), digest_size=4).hexdigest()
