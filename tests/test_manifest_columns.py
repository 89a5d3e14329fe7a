"""No silent columns: unknown columns are errors with hints, meta_* columns are kept, new delivery columns
are parsed into PostParams, questionable rows give warnings, foreign CSV dialects are explained."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from assetgen.manifest import ManifestError, ManifestWarning, ValidationIssue, load_manifests, print_warnings

HEADER = "scene,asset,model,prompt,duration_s"
REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str, name: str = "m.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path, **kw) -> list[ValidationIssue]:
    with pytest.raises(ManifestError) as err:
        load_manifests([path], **kw)
    return err.value.issues


@pytest.mark.parametrize(
    ("column", "meant"),
    [
        ("true_peak", "true_peak_db"),
        ("lufs", "loudness"),
        ("sample_rate_hz", "sample_rate"),
        ("LUFS", "loudness"),
        ("truepeak", "true_peak_db"),
        ("tempo", "bpm"),
        ("duration", "duration_s"),
        ("highpass", "highpass_hz"),
        ("loop_tolerance", "loop_tolerance_s"),
        ("bit_depht", "bit_depth"),  # plain typo
    ],
)
def test_unknown_column_is_an_error_with_did_you_mean(tmp_path, column, meant):
    path = write(tmp_path, f"{HEADER},{column}\ns,a,sfx,x,2,-1\n")
    [issue] = problems(path)
    assert (issue.file, issue.row, issue.column) == (str(path), 1, column)
    assert f"unknown column (did you mean '{meant}'?)" in issue.message and "meta_" in issue.message


def test_unrelated_unknown_column_is_an_error_without_hint(tmp_path):
    [issue] = problems(write(tmp_path, f"{HEADER},owner_notes\ns,a,sfx,x,2,ask Bob\n"))
    assert issue.column == "owner_notes" and "did you mean" not in issue.message and "unknown column" in issue.message


def test_template_parameter_and_meta_columns_are_accepted(tmp_path):
    text = f'{HEADER},mood,meta_owner,meta_ticket\ns,a,sfx,"{{mood}} wind",2,calm,Ana  Li,T-12\ns,b,sfx,y,2,,,\n'
    a, b = load_manifests([write(tmp_path, text)])
    assert a.prompt == "calm wind" and a.template_params == (("mood", "calm"),)
    assert a.meta == (("meta_owner", "Ana Li"), ("meta_ticket", "T-12"))
    assert b.meta == ()


def test_meta_columns_do_not_sweep_and_do_not_change_the_content_key(tmp_path):
    from assetgen.plan import content_key

    one = load_manifests([write(tmp_path, f"{HEADER},meta_note\ns,a,sfx,x,2,a|b\n", "one.csv")])
    two = load_manifests([write(tmp_path, f"{HEADER},meta_note\ns,a,sfx,x,2,other\n", "two.csv")])
    assert [s.ident for s in one] == ["s/a"] and one[0].meta == (("meta_note", "a|b"),)
    assert content_key(one[0], "fp") == content_key(two[0], "fp")


def test_unknown_columns_in_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"scene": ["s"], "asset": ["a"], "model": ["sfx"], "prompt": ["x"],
                             "duration_s": [2.0], "lufs": [-14.0], "meta_owner": ["Ana"]}), path)  # fmt: skip
    [issue] = problems(path)
    assert (issue.row, issue.column) == ("header", "lufs") and "did you mean 'loudness'" in issue.message


def test_unknown_keys_in_json_scene_files(tmp_path):
    comp = '{"name": "rain", "type": "audio", "prompt": "rain", "duration": 2, "true_peak": -1}'
    path = write(tmp_path, '[{"name": "Storm", "colour": "grey", "components": [' + comp + "]}]", "s.json")
    issues = problems(path)
    where = {(i.row, i.column) for i in issues}
    assert where == {("[0]", "colour")}  # scene keys are checked first
    path = write(tmp_path, '[{"name": "Storm", "componets": [' + comp + "]}]", "r.json")
    assert any(i.column == "componets" and "did you mean 'components'" in i.message for i in problems(path))
    path = write(tmp_path, '[{"name": "Storm", "components": [' + comp + "]}]", "t.json")
    [issue] = problems(path)
    assert (issue.row, issue.column) == ("[0].components[0]", "true_peak")
    assert "did you mean 'true_peak_db'" in issue.message
    meta = comp.replace('"true_peak": -1', '"meta_owner": "Ana"')
    [spec] = [s for s in load_manifests([write(tmp_path, '[{"name": "Storm", "components": [' + meta + "]}]",
                                               "u.json")]) if not s.is_mix]  # fmt: skip
    assert spec.meta == (("meta_owner", "Ana"),)


def test_delivery_columns_reach_post_params(tmp_path):
    text = (f"{HEADER},highpass_hz,max_limit_db,loudness_mode,loop_tolerance_s,loop\n"
            "s,a,sfx,x,2,0,6.5,short-term,0.02,true\n"
            "s,b,sfx,x,2,35,0,Momentary,,\n"
            "s,c,sfx,x,2,,,,,\n")  # fmt: skip
    a, b, c = load_manifests([write(tmp_path, text)])
    assert (a.post.highpass_hz, a.post.max_limit_db, a.post.loudness_mode, a.post.loop_tolerance_s) == (
        0.0, 6.5, "short-term", 0.02)  # fmt: skip
    assert (b.post.highpass_hz, b.post.max_limit_db, b.post.loudness_mode) == (35.0, 0.0, "momentary")
    default = type(c.post)()
    assert (c.post.highpass_hz, c.post.max_limit_db, c.post.loudness_mode, c.post.loop_tolerance_s) == (
        default.highpass_hz, default.max_limit_db, default.loudness_mode, default.loop_tolerance_s)  # fmt: skip


def test_loop_tolerance_shorter_than_loop(tmp_path):
    [issue] = problems(write(tmp_path, f"{HEADER},loop,crossfade_s,loop_tolerance_s\ns,a,sfx,x,0.5,true,0.1,0.9\n"))
    assert "loop_tolerance_s 0.9 must be shorter than the loop" in issue.message


def test_bpm_without_loop_is_a_warning(tmp_path):
    path = write(tmp_path, f"{HEADER},bpm,bars,loop\ns,a,music,x,,120,2,\ns,b,music,x,,120,2,true\n"
                           "s,c,music,x,3,,,false\n")  # fmt: skip
    found: list[ManifestWarning] = []
    specs = load_manifests([path], warnings=found)
    assert len(specs) == 3
    [w] = found
    assert (w.file, w.row, w.column, w.value) == (str(path), 2, "bpm", "120") and "loop=true" in w.message
    bars_only = write(tmp_path, f"{HEADER},bars\ns,a,music,x,3,4\n", "b.csv")
    found.clear()
    load_manifests([bars_only], warnings=found)
    assert [(w.row, w.column) for w in found] == [(2, "bars")]


def test_warnings_without_a_list_go_through_the_warnings_module(tmp_path):
    path = write(tmp_path, f"{HEADER},bpm,bars\ns,a,music,x,,120,2\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_manifests([path])
    assert [type(w.message) for w in caught] == [ManifestWarning]
    assert "bpm/bars without loop" in str(caught[0].message)


def test_print_warnings_and_validate_prints_them(tmp_path, capsys):
    path = write(tmp_path, f"{HEADER},bpm,bars\ns,a,music,x,,120,2\n")
    found: list[ManifestWarning] = []
    load_manifests([path], warnings=found)
    print_warnings(found)
    err = capsys.readouterr().err
    assert err.startswith(f"warning: {path}:line 2: column 'bpm' = '120': bpm/bars without loop")
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    cli = str(Path(sys.executable).parent / "assetgen")
    run = subprocess.run([cli, "validate", str(path)], capture_output=True,
                         text=True, env=env, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "bpm/bars without loop" in run.stderr


def test_semicolon_separated_csv_is_explained(tmp_path):
    path = write(tmp_path, "scene;asset;model;prompt;duration_s;loudness\ns;a;sfx;rain;2;-14,5\n")
    [issue] = problems(path)
    assert issue.row == 1 and "separated by semicolons, not commas" in issue.message
    assert "unknown column" not in issue.message


@pytest.mark.parametrize("column", ["loudness", "duration_s", "true_peak_db", "highpass_hz"])
def test_quoted_decimal_comma_is_explained(tmp_path, column):
    value = "-1,5" if column != "duration_s" else "2,5"
    extra = f",{column}" if column != "duration_s" else ""
    row = f's,a,sfx,x,"{value}"' if column == "duration_s" else f's,a,sfx,x,2,"{value}"'
    [issue] = problems(write(tmp_path, f"{HEADER}{extra}\n{row}\n"))
    assert (issue.row, issue.column, issue.value) == (2, column, value)
    assert f"decimal comma: write {value.replace(',', '.')}" in issue.message


def test_unquoted_decimal_comma_that_splits_the_row_is_explained(tmp_path):
    [issue] = problems(write(tmp_path, f"{HEADER},loudness\ns,a,sfx,x,2,-14,5\n"))
    assert issue.row == 2 and "7 cells but the header has 6" in issue.message
    assert "'-14,5' a number with a decimal comma" in issue.message
