import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from assetgen import measure as M
from assetgen.dsp import loudness as L
from assetgen.store.wav import wav_bytes

from tests.test_dsp_signals import music, noise

SR = 48000


@pytest.fixture
def files(tmp_path):
    x = music(SR, 4.0)
    loop = tmp_path / "loop.wav"
    loop.write_bytes(wav_bytes(x, SR, 24, loop=(0, x.shape[1])))
    flac = tmp_path / "n.flac"
    sf.write(flac, (noise(44100, 2.0, amp=0.1) + 0.01).T, 44100)
    ogg = tmp_path / "n.ogg"
    sf.write(ogg, noise(SR, 1.0, amp=0.1).T, SR, format="OGG")
    return x, loop, flac, ogg


def test_measure_file_reads_the_render_meters_and_loop(files):
    x, loop, flac, ogg = files
    r = M.measure_file(loop)
    assert list(r) == list(M.KEYS)
    back, _ = sf.read(loop, dtype="float32", always_2d=True)
    m = L.measure(back.T, SR, cyclic=True)
    assert r["integrated_lufs"] == pytest.approx(m.lufs, abs=1e-9)
    assert r["true_peak_dbtp"] == pytest.approx(m.true_peak_dbtp, abs=1e-9)
    assert (r["loop_start"], r["loop_end"]) == (0, x.shape[1])
    assert r["duration_s"] == pytest.approx(4.0) and r["lra_lu"] is not None
    f = M.measure_file(flac)
    assert f["loop_start"] is None and f["dc_offset"] == pytest.approx(0.01, abs=2e-4)
    assert f["duration_s"] == pytest.approx(2.0) and f["max_short_term_lufs"] is not None
    assert M.measure_file(ogg)["integrated_lufs"] is not None


def test_main_json_and_table_without_torch_or_prefect(files, tmp_path):
    _, loop, flac, ogg = files
    code = ("import sys, json; from assetgen.measure import main; rc = main(sys.argv[1:]); "
            "bad = [m for m in ('torch', 'prefect') if m in sys.modules]; print('HEAVY', bad); sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code, str(loop), str(flac), str(ogg), "--json"],
                         capture_output=True, text=True, check=True).stdout
    body, heavy = out.rsplit("HEAVY", 1)
    assert heavy.strip() == "[]"
    rows = json.loads(body)
    assert [r["path"] for r in rows] == [str(loop), str(flac), str(ogg)]
    assert all(list(r) == list(M.KEYS) for r in rows)
    table = subprocess.run([sys.executable, "-m", "assetgen.measure", str(loop)], capture_output=True, text=True,
                           check=True).stdout
    assert "I LUFS" in table and "loop.wav" in table


def test_unreadable_file_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    assert M.main([str(bad), "--json"]) == 2
    err = capsys.readouterr()
    assert "bad.wav: cannot read audio" in err.err and json.loads(err.out) == []


def test_cli_measure_command_json_without_torch_or_prefect(files):
    _, loop, flac, _ = files
    code = ("import sys; from assetgen.cli import app\n"
            "try:\n    app(sys.argv[1:])\nexcept SystemExit as e:\n    rc = e.code\n"
            "print('HEAVY', [m for m in ('torch', 'prefect') if m in sys.modules]); sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code, "measure", str(loop), str(flac), "--json"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    body, heavy = out.stdout.rsplit("HEAVY", 1)
    assert heavy.strip() == "[]"
    rows = json.loads(body)
    assert [r["path"] for r in rows] == [str(loop), str(flac)] and rows[0]["loop_end"] == files[0].shape[1]
    missing = subprocess.run([sys.executable, "-c", code, "measure", str(loop.with_name("nope.wav"))],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "nope.wav" in missing.stderr
