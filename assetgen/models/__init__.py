"""Model backends. Import-light: torch/audiocraft load only when a backend is created."""

from assetgen.models.registry import ModelUnavailable, ResolvedModel, fingerprint, resolve

__all__ = ["ModelUnavailable", "ResolvedModel", "fingerprint", "resolve"]
