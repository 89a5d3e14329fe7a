"""Commands that do not generate must not import torch, audiocraft, Prefect or pandas (their imports take seconds)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

PROBE = r"""
import sys
from typer.testing import CliRunner
from assetgen.cli import app
from assetgen.models.tiny import KINDS  # noqa: F401  (module import must stay light too)
import assetgen.render, assetgen.runtime, assetgen.progress, assetgen.runreport  # noqa: E401,F401  (as light)
r = CliRunner()
for args in (["--help"], ["validate", "manifests/demo.csv", "manifests/scenes.json"], ["render", "--help"],
             ["plan", "manifests/demo.csv", "--out", sys.argv[1], "--model-dir", sys.argv[2]],
             ["retire", "--orphans", "manifests/demo.csv", "--out", sys.argv[1]]):
    res = r.invoke(app, args, catch_exceptions=False)
    assert res.exit_code in (0, 2), (args, res.output)
heavy = sorted(m for m in ("torch", "audiocraft", "prefect", "pandas") if m in sys.modules)
print("HEAVY", heavy)
"""


def test_non_generating_commands_stay_light(tmp_path):
    models = tmp_path / "models"
    for kind in ("music", "sfx"):  # fake checkpoint files: plan only hashes them
        (models / kind).mkdir(parents=True)
        (models / kind / "state_dict.bin").write_bytes(kind.encode())
        (models / kind / "compression_state_dict.bin").write_bytes(b"c")
    out = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "out"), str(models)], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout, out.stdout
    assert not (tmp_path / "out").exists()  # plan writes nothing
