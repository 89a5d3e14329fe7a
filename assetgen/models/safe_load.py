"""Safe checkpoint loading: ``torch.load(weights_only=True)`` with a narrow, explicit allowlist.

audiocraft's loaders call ``torch.load`` without ``weights_only``; audiocraft PR #534 answers failures by passing
``weights_only=False``, which lets a crafted checkpoint run arbitrary code. Here every ``torch.load`` made while a
model loads is forced to ``weights_only=True`` and may only construct the plain-data classes that exported audiocraft
checkpoints (and older ones holding OmegaConf objects) contain. Anything else fails with a message naming the
global; only the explicit opt-in ``ASSETGEN_TRUSTED_GLOBALS=module.Name,...`` widens the list.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pickle
import re
import threading

TRUST_ENV = "ASSETGEN_TRUSTED_GLOBALS"
# Plain-data classes found in audiocraft checkpoints whose xp.cfg was saved as an OmegaConf object.
ALLOWLIST = (
    "omegaconf.dictconfig.DictConfig",
    "omegaconf.listconfig.ListConfig",
    "omegaconf.base.ContainerMetadata",
    "omegaconf.base.Metadata",
    "omegaconf.nodes.AnyNode",
    "omegaconf.nodes.StringNode",
    "omegaconf.nodes.IntegerNode",
    "omegaconf.nodes.FloatNode",
    "omegaconf.nodes.BooleanNode",
    "typing.Any",
    "collections.defaultdict",
    "builtins.dict",
    "builtins.list",
    "builtins.int",
    "builtins.float",
    "builtins.str",
    "builtins.bool",
)
_PATCH_LOCK = threading.RLock()


def _import_global(qualname: str):
    module, _, name = qualname.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(f"{TRUST_ENV}: cannot import {qualname!r}: {exc}") from None


def allowed_globals(extra: tuple[str, ...] = ()) -> list:
    """The allowlist, ``extra`` and the user's explicit opt-in globals."""
    names = list(ALLOWLIST) + list(extra)
    names += [n.strip() for n in os.environ.get(TRUST_ENV, "").split(",") if n.strip()]
    return [_import_global(n) for n in names]


def refused_global(exc: BaseException) -> str | None:
    """The global name torch's weights-only unpickler refused, if ``exc`` is such a refusal."""
    match = re.search(r"GLOBAL ([\w.]+)", str(exc)) or re.search(r"Unsupported global: ([\w.]+)", str(exc))
    return match.group(1) if match else None


@contextlib.contextmanager
def safe_torch_load(extra: tuple[str, ...] = ()):
    """Within this block every ``torch.load`` runs with ``weights_only=True`` and the allowlist (plus ``extra``
    globals, such as ``models.melody.SEPARATOR_GLOBALS`` while a melody checkpoint loads)."""
    import torch

    original = torch.load

    def load(*args, **kwargs):
        kwargs["weights_only"] = True
        try:
            return original(*args, **kwargs)
        except pickle.UnpicklingError as exc:
            name = refused_global(exc)
            if name is None:
                raise
            from assetgen.models.base import CheckpointRefused

            src = args[0] if args else kwargs.get("f", "?")
            raise CheckpointRefused(
                f"checkpoint {src} needs the pickled global {name!r}, which is not on assetgen's allowlist of "
                f"plain-data classes, so it was not loaded (it could run code). If you trust this file, opt in "
                f"with {TRUST_ENV}={name}"
            ) from None

    with _PATCH_LOCK, torch.serialization.safe_globals(allowed_globals(extra)):
        torch.load = load
        try:
            yield
        finally:
            torch.load = original
