"""Per-layer effects from a strict text syntax, rendered with pedalboard.

Syntax: ``effect(param=number, ...); effect(...)`` -- e.g.
``reverb(room_size=0.7, wet_level=0.3); highpass(cutoff_frequency_hz=120)``. The empty string means no
effects. Each call is parsed with :mod:`ast` (never ``eval``); only keyword arguments whose values are
numbers or booleans are accepted. Allowed parameters are the pedalboard plugin's real constructor
parameters, read from its signature; values are range-checked by constructing the plugin (pedalboard
raises on out-of-range values) plus a few checks pedalboard does not make (finite, frequencies > 0).
pedalboard is imported lazily (about 0.6 s) and only when the chain is not empty.
"""

from __future__ import annotations

import ast
import difflib
import functools
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

# effect name in manifests -> pedalboard class. Left out on purpose: plugins that need files or
# non-numeric arguments (Convolution, IIRFilter, VST3Plugin, ExternalPlugin), containers (Chain, Mix,
# Pedalboard), rate/codec changers (Resample, MP3Compressor, GSMFullRateCompressor).
EFFECTS: dict[str, str] = {
    "bitcrush": "Bitcrush",
    "brickwall_limiter": "BrickwallLimiter",
    "chorus": "Chorus",
    "clipping": "Clipping",
    "compressor": "Compressor",
    "delay": "Delay",
    "distortion": "Distortion",
    "gain": "Gain",
    "highpass": "HighpassFilter",
    "highshelf": "HighShelfFilter",
    "invert": "Invert",
    "ladder": "LadderFilter",
    "limiter": "Limiter",
    "lowpass": "LowpassFilter",
    "lowshelf": "LowShelfFilter",
    "noise_gate": "NoiseGate",
    "peak": "PeakFilter",
    "phaser": "Phaser",
    "pitch_shift": "PitchShift",
    "reverb": "Reverb",
}

_PARAM_RE = re.compile(r"(\w+): (float|int|bool)(?: = [^,)]+)?")


class FxError(ValueError):
    """An fx chain that cannot be parsed or names an unknown effect/parameter or a bad value."""


@dataclass(frozen=True)
class FxSpec:
    """One parsed effect: manifest name and its keyword parameters (numbers/bools), in written order."""

    name: str
    params: tuple[tuple[str, float | bool], ...] = ()

    def plugin(self) -> Any:
        """A fresh pedalboard plugin for this effect."""
        import pedalboard

        return getattr(pedalboard, EFFECTS[self.name])(**dict(self.params))

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params)
        return f"{self.name}({args})"


@functools.cache
def effect_params(name: str) -> dict[str, str]:
    """Numeric/bool constructor parameters of effect ``name`` -> type name, read from pedalboard's signature."""
    import pedalboard

    doc = getattr(pedalboard, EFFECTS[name]).__init__.__doc__ or ""
    sig = doc.strip().splitlines()[0] if doc.strip() else ""
    return dict(_PARAM_RE.findall(sig))


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _value(node: ast.expr, where: str) -> float | bool:
    """A literal number (optionally signed) or bool (``True``/``true``); anything else is an FxError."""
    if isinstance(node, ast.Name) and node.id.lower() in ("true", "false"):
        return node.id.lower() == "true"
    sign = 1.0
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        sign = -1.0 if isinstance(node.op, ast.USub) else 1.0
        node = node.operand
    if isinstance(node, ast.Constant) and isinstance(node.value, bool) and sign == 1.0:
        return node.value
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        val = sign * float(node.value)
        if not math.isfinite(val):
            raise FxError(f"{where}: value must be finite, got {val}")
        return val
    raise FxError(f"{where}: value must be a number or true/false, got {ast.unparse(node)!r}")


def _parse_one(text: str) -> FxSpec:
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        raise FxError(f"cannot parse effect {text.strip()!r}: expected name(param=value, ...)") from None
    call = tree.body
    if isinstance(call, ast.Name):  # bare effect name with defaults, e.g. "invert"
        call = ast.Call(func=call, args=[], keywords=[])
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)):
        raise FxError(f"cannot parse effect {text.strip()!r}: expected name(param=value, ...)")
    name = call.func.id
    if name not in EFFECTS:
        raise FxError(f"unknown effect {name!r}{_suggest(name, list(EFFECTS))}; known: {', '.join(EFFECTS)}")
    if call.args:
        raise FxError(f"{name}: parameters must be named, e.g. {name}(param=value)")
    allowed = effect_params(name)
    params: dict[str, float | bool] = {}
    for kw in call.keywords:
        if kw.arg is None or kw.arg not in allowed:
            shown = kw.arg or "**"
            hint = _suggest(shown, list(allowed))
            raise FxError(f"{name}: unknown parameter {shown!r}{hint}; allowed: {', '.join(allowed) or 'none'}")
        if kw.arg in params:
            raise FxError(f"{name}: parameter {kw.arg!r} given twice")
        val = _value(kw.value, f"{name}.{kw.arg}")
        if allowed[kw.arg] == "bool" and not isinstance(val, bool):
            if val not in (0.0, 1.0):
                raise FxError(f"{name}.{kw.arg}: expected true/false, got {val}")
            val = bool(val)
        if kw.arg.endswith("_hz") and not val > 0:
            raise FxError(f"{name}.{kw.arg}: frequency must be > 0 Hz, got {val}")
        params[kw.arg] = val
    spec = FxSpec(name, tuple(params.items()))
    try:  # pedalboard's own range checks
        spec.plugin()
    except (ValueError, TypeError) as exc:
        raise FxError(f"{name}: {exc}") from None
    return spec


def parse_fx_chain(text: str) -> list[FxSpec]:
    """Parse ``"reverb(room_size=0.7); highpass(cutoff_frequency_hz=120)"``; ``""`` -> ``[]``.

    Raises :class:`FxError` naming the bad effect or parameter (with a did-you-mean suggestion).
    """
    if not text or not text.strip():
        return []
    # the grammar has no strings, so ';' can only separate effects
    parts = [p for p in text.split(";") if p.strip()]
    return [_parse_one(p) for p in parts]


def apply_fx(audio: np.ndarray, sr: int, chain: list[FxSpec] | str) -> np.ndarray:
    """Render ``chain`` over ``audio`` (channels, samples) at ``sr`` Hz; same shape, float32."""
    specs = parse_fx_chain(chain) if isinstance(chain, str) else chain
    if not specs:
        return audio
    import pedalboard

    board = pedalboard.Pedalboard([s.plugin() for s in specs])
    out = board(np.ascontiguousarray(audio, dtype=np.float32), float(sr))
    return out.astype(np.float32, copy=False)


def apply_fx_cyclic(audio: np.ndarray, sr: int, chain: list[FxSpec] | str, tail_s: float = 8.0) -> np.ndarray:
    """Render ``chain`` over a loop so tails (and look-ahead) wrap around the seam.

    The loop is played back to back with at least ``tail_s`` seconds of itself before the kept cycle and one
    cycle after it: the kept cycle starts in the effect's steady state (the tail of the cycles before) and
    its end was processed with the next cycle following, so it loops without a seam for tails up to
    ``tail_s`` (reverbs and delays decay well within 8 s at the parameter ranges pedalboard allows).
    """
    specs = parse_fx_chain(chain) if isinstance(chain, str) else chain
    if not specs:
        return audio
    n = audio.shape[-1]
    before = max(1, -(-round(tail_s * sr) // n))
    out = apply_fx(np.tile(audio, (1, before + 2)), sr, specs)
    return out[:, before * n : (before + 1) * n]
