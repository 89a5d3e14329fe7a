"""The report judges a loop seam by the DSP's own threshold (dsp.loop.SEAM_THRESHOLD), read from real rows."""

from __future__ import annotations

from assetgen.dsp.loop import SEAM_THRESHOLD
from assetgen.report.build import collect
from assetgen.report.checks import seam_threshold
from tests.test_report_helpers import add_asset


def test_seam_check_uses_the_dsp_threshold(tmp_path):
    assert seam_threshold() == SEAM_THRESHOLD
    below, above = 0.9 * SEAM_THRESHOLD, 1.1 * SEAM_THRESHOLD
    add_asset(tmp_path, "forest", "calm", loop_start=0, loop_end=16_000, seam_score=below)
    add_asset(tmp_path, "forest", "clicky", loop_start=0, loop_end=16_000, seam_score=above)
    cards, _ = collect(tmp_path)
    seam = {c.row["asset"]: next(k for k in c.checks if k.name == "Loop seam") for c in cards}
    assert seam["calm"].state == "pass" and seam["clicky"].state == "fail"
    assert seam["calm"].target == f"≤ {SEAM_THRESHOLD:g}"
