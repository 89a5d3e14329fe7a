"""Device selection: CUDA when present, else CPU; ``--device`` overrides."""

from __future__ import annotations

import re


class DeviceUnavailable(ValueError):
    """The requested device does not exist on this machine (CLI exit code 2)."""


def pick_device(requested: str | None = None) -> str:
    """Return a torch device string: ``requested`` checked, or 'cuda' if available else 'cpu'."""
    import torch

    if requested in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cpu":
        return "cpu"
    match = re.fullmatch(r"cuda(?::(\d+))?", requested)
    if match:
        if not torch.cuda.is_available():
            raise DeviceUnavailable(f"--device {requested}: CUDA is not available on this machine (use cpu)")
        index = int(match.group(1) or 0)
        if index >= torch.cuda.device_count():
            raise DeviceUnavailable(
                f"--device {requested}: only {torch.cuda.device_count()} CUDA device(s) present")
        return requested
    if requested == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceUnavailable("--device mps: Apple MPS is not available on this machine")
        return "mps"
    raise DeviceUnavailable(f"--device {requested!r}: expected auto, cpu, cuda, cuda:N or mps")


def reserve_core_for_postprocessing(device: str | None) -> None:
    """On CPU renders, give torch all cores but one: post-processing of the previous batch runs on the other
    one while the next batch generates (on a GPU the device is separate and nothing changes)."""
    import os

    import torch

    if pick_device(device) == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - 1))
