"""spec.bars_seconds / seconds_bars: the one home of the bars <-> seconds rule (4/4 unless told)."""

from __future__ import annotations

import pytest

from assetgen.dsp.loop import bars_length
from assetgen.spec import bars_seconds, seconds_bars


@pytest.mark.parametrize("bars,bpm,beats,seconds", [(8, 120, 4, 16.0), (1, 60, 4, 4.0), (2, 90, 3, 4.0),
                                                    (3, 100.0, 4, 7.2)])
def test_bars_seconds_and_its_inverse(bars, bpm, beats, seconds):
    assert bars_seconds(bars, bpm, beats) == pytest.approx(seconds, abs=1e-12)
    assert seconds_bars(seconds, bpm, beats) == pytest.approx(bars, abs=1e-12)


def test_loop_length_in_samples_follows_the_same_rule():
    assert bars_length(4, 128.0, 48_000) == round(bars_seconds(4, 128.0) * 48_000) == 360_000
