import re

import numpy as np
import pytest

from assetgen.dsp.fx import FxError, apply_fx, apply_fx_cyclic, parse_fx_chain
from assetgen.dsp.loop import make_loop

from tests.test_dsp_signals import noise


def test_parse_chain_in_order():
    chain = parse_fx_chain("reverb(room_size=0.7, wet_level=0.3); highpass(cutoff_frequency_hz=120)")
    assert [s.name for s in chain] == ["reverb", "highpass"]
    assert dict(chain[0].params) == {"room_size": 0.7, "wet_level": 0.3}
    assert chain[1].plugin().cutoff_frequency_hz == pytest.approx(120)


@pytest.mark.parametrize("text", ["", "   ", ";"])
def test_empty_is_no_effects(text):
    assert parse_fx_chain(text) == []


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("reverbb(room_size=0.5)", "did you mean 'reverb'"),
        ("reverb(room_sise=0.5)", "did you mean 'room_size'"),
        ("reverb(room_size=2)", "reverb"),  # pedalboard's range check
        ("reverb(0.5)", "named"),
        ("reverb(room_size=__import__('os'))", "reverb.room_size"),
        ("reverb(room_size='big')", "reverb.room_size"),
        ("highpass(cutoff_frequency_hz=-5)", "highpass.cutoff_frequency_hz"),
        ("gain(gain_db=1e999)", "finite"),
        ("reverb(room_size=0.5", "cannot parse"),
        ("os.system(x=1)", "cannot parse"),
        ("reverb(room_size=0.1, room_size=0.2)", "twice"),
    ],
)
def test_bad_chains_name_the_problem(text, fragment):
    with pytest.raises(FxError, match=re.escape(fragment)):
        parse_fx_chain(text)


def test_apply_fx_changes_audio_and_keeps_shape():
    x = noise(48000, 1.0)
    y = apply_fx(x, 48000, "lowpass(cutoff_frequency_hz=500)")
    assert y.shape == x.shape and y.dtype == np.float32
    # a 500 Hz low-pass removes most of white noise's energy
    assert np.mean(y**2) < 0.2 * np.mean(x**2)


def test_cyclic_reverb_keeps_the_seam():
    sr = 48000
    lp = make_loop(noise(sr, 2.6, seed=3), sr, 2 * sr, sr // 2)
    wet = apply_fx_cyclic(lp.audio, sr, "reverb(room_size=0.9, wet_level=0.8, dry_level=0.2)")
    twice = np.concatenate([wet, wet], axis=1).mean(axis=0)
    steps = np.abs(np.diff(twice[: wet.shape[1]]))
    seam_step = abs(twice[wet.shape[1]] - twice[wet.shape[1] - 1])
    assert seam_step <= np.percentile(steps, 99)
    # the tail wrapped: the loop's first 100 ms is not quieter than the rest (no reverb build-up)
    head = np.mean(wet[:, : sr // 10] ** 2)
    assert head > 0.5 * np.mean(wet**2)
