"""The QC columns of a manifest: ``qc`` (gates and thresholds), ``loudness_tolerance_lu``, ``max_attempts``:
parsed into PostParams in one spelling, errors naming file/row/column/value, known to the unknown-column check."""

from __future__ import annotations

from pathlib import Path

import pytest

from assetgen.manifest import ManifestError, load_manifests
from assetgen.qc import asset_kind, gates_for

HEADER = "scene,asset,model,prompt,duration_s"


def write(tmp_path: Path, text: str, name: str = "m.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_qc_columns_parse_into_post_params(tmp_path):
    text = (f"{HEADER},loop,qc,loudness_tolerance_lu,max_attempts\n"
            's,a,sfx,x,2,,"Silence:-50, -near-dup;loudness:0.3",,5\n'
            "s,b,sfx,y,2,true,none,1.5,\n"
            "s,c,sfx,z,2,,,,\n")
    a, b, c = load_manifests([write(tmp_path, text)])
    assert a.post.qc == "loudness:0.3,silence:-50,-near_duplicate" and a.post.max_attempts == 5
    assert gates_for(a, asset_kind(a)) == {"silence": -50.0, "clipping": 2.0, "dc": 0.01, "loudness": 0.3,
                                           "true_peak": 0.05, "length": 0.0}
    assert b.post.qc == "none" and b.post.loudness_tolerance_lu == 1.5 and gates_for(b, "loop") == {}
    assert (c.post.qc, c.post.loudness_tolerance_lu, c.post.max_attempts) == ("", 0.5, 0)
    assert set(gates_for(c, "one-shot")) == {"silence", "clipping", "dc", "loudness", "true_peak", "length",
                                             "near_duplicate"}
    loop = c.replace(post=c.post.__class__(**{**c.post.__dict__, "loop": True}))
    assert "seam" in gates_for(loop, asset_kind(loop))


@pytest.mark.parametrize(("column", "value", "message"), [
    ("qc", "silense", "unknown gate 'silense' (did you mean 'silence'?)"),
    ("qc", "loudness:loud", "bad threshold in 'loudness:loud'"),
    ("qc", "-seam:1", "a removed gate takes no threshold"),
    ("qc", "dc:-1", "threshold of dc must be >= 0"),
    ("max_attempts", "0", "between 1 and 20"),
    ("loudness_tolerance_lu", "-1", "LU between 0 and 20"),
])
def test_bad_qc_cells_name_file_row_column_value(tmp_path, column, value, message):
    path = write(tmp_path, f'{HEADER},{column}\ns,a,sfx,x,2,"{value}"\n')
    with pytest.raises(ManifestError) as err:
        load_manifests([path])
    [issue] = err.value.issues
    assert (issue.file, issue.row, issue.column, issue.value) == (str(path), 2, column, value)
    assert message in issue.message


def test_loudness_tolerance_given_twice_is_an_error(tmp_path):
    path = write(tmp_path, f"{HEADER},qc,loudness_tolerance_lu\ns,a,sfx,x,2,loudness:0.3,1\n")
    with pytest.raises(ManifestError) as err:
        load_manifests([path])
    [issue] = err.value.issues
    assert (issue.row, issue.column, issue.value) == (2, "qc", "loudness:0.3")
    assert "give the loudness tolerance once" in issue.message


def test_max_attempts_on_a_mix_row_is_an_error(tmp_path):
    text = f"{HEADER},layer,max_attempts\ns,a,sfx,x,2,amb,\ns,mix,mix,,,,4\n"
    with pytest.raises(ManifestError) as err:
        load_manifests([write(tmp_path, text)])
    [issue] = err.value.issues
    assert issue.column == "max_attempts" and "has no effect on a mix row" in issue.message


@pytest.mark.parametrize(("column", "meant"), [("gates", "qc"), ("attempts", "max_attempts"),
                                                ("loudness_tolerance", "loudness_tolerance_lu")])
def test_qc_column_spellings_get_did_you_mean(tmp_path, column, meant):
    with pytest.raises(ManifestError) as err:
        load_manifests([write(tmp_path, f"{HEADER},{column}\ns,a,sfx,x,2,1\n")])
    assert f"did you mean '{meant}'" in str(err.value)
