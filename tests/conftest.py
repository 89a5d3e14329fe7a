"""Shared fixtures: tiny placeholder checkpoints written once per session, quiet local Prefect."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def prefect_state(tmp_path_factory):
    """Prefect's state for the session's renders in the session's temp folder, not in the user's cache."""
    if os.environ.get("ASSETGEN_PREFECT_HOME"):
        yield
        return
    os.environ["ASSETGEN_PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect-state"))
    try:
        yield
    finally:
        os.environ.pop("ASSETGEN_PREFECT_HOME", None)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> Path:
    """A model dir with tiny random-weight ``music`` and ``sfx`` checkpoints (placeholder audio)."""
    from assetgen.models.tiny import make_tiny

    root = tmp_path_factory.mktemp("tiny-models")
    make_tiny(root)
    return root
