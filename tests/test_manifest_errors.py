"""Bad manifests: every problem is reported at once, located (file, row, column, value) and explained."""

from __future__ import annotations

from pathlib import Path

import pytest

from assetgen.manifest import ManifestError, ValidationIssue, load_manifests

HEADER = "scene,asset,model,prompt,duration_s"


def problems(tmp_path: Path, content: str | bytes, name: str = "m.csv", **kw) -> list[ValidationIssue]:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ManifestError) as err:
        load_manifests([path], **kw)
    issues = err.value.issues
    assert issues and all(i.file == str(path) for i in issues)
    return issues


def only(issues: list[ValidationIssue]) -> ValidationIssue:
    assert len(issues) == 1, [str(i) for i in issues]
    return issues[0]


def test_empty_file(tmp_path):
    issue = only(problems(tmp_path, ""))
    assert "empty" in issue.message and "scene, asset, model, prompt, duration_s" in issue.message


def test_header_only(tmp_path):
    issue = only(problems(tmp_path, HEADER + "\n"))
    assert issue.row == 1 and "no data rows" in issue.message


def test_missing_required_column_names_the_likely_typo(tmp_path):
    issues = problems(tmp_path, "scene,asset,model,promt\ns,a,sfx,x\n")
    by_col = {i.column: i for i in issues}
    assert set(by_col) == {"prompt", "duration_s", "promt"}
    assert "'promt' a misspelling" in by_col["prompt"].message
    assert all(i.row == 1 for i in issues)


def test_typo_column_is_an_error_unless_a_template_uses_it(tmp_path):
    issues = problems(tmp_path, f"{HEADER},duraton_s,tempreature,bmp\ns,a,sfx,x,zero,3,,\n")
    assert [(i.row, i.column) for i in issues] == [(1, "duraton_s"), (1, "tempreature"), (1, "bmp"), (2, "duration_s")]
    assert "did you mean 'duration_s'" in issues[0].message and "did you mean 'bpm'" in issues[2].message
    # the same name used as a placeholder is a template parameter
    specs = load_manifests([_write(tmp_path, f'{HEADER},seeds\ns,a,sfx,"{{seeds}} falling",2,apple\n')])
    assert specs[0].prompt == "apple falling"


def _write(tmp_path, text, name="ok.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("cell", "expect"),
    [
        ("abc", "valid number"),
        ("nan", "finite"),
        ("NaN", "finite"),
        ("0", "greater than 0"),
        ("-2", "greater than 0"),
        ("601", "less than or equal to 600"),
        ("1e9", "less than or equal to 600"),
        ("", "required"),
    ],
)
def test_bad_durations(tmp_path, cell, expect):
    issue = only(problems(tmp_path, f"{HEADER}\ns,a,sfx,x,{cell}\n"))
    assert (issue.row, issue.column, issue.value) == (2, "duration_s", cell)
    assert expect in issue.message and "seconds" in issue.message or cell == ""


def test_loop_longer_than_600_s_after_bars(tmp_path):
    issue = only(problems(tmp_path, f"{HEADER},loop,bpm,bars\ns,a,music,x,,true,20,100\n"))
    assert "would generate 1200.5 s" in issue.message and issue.row == 2


def test_crossfade_not_shorter_than_loop(tmp_path):
    issue = only(problems(tmp_path, f"{HEADER},loop,crossfade_s\ns,a,music,x,1,true,2\n"))
    assert "shorter than the loop" in issue.message


@pytest.mark.parametrize(
    ("column", "cell", "expect"),
    [
        ("top_k", "2.5", "valid integer"),
        ("temperature", "hot", "valid number"),
        ("loop", "maybe", "true/false"),
        ("channels", "6", "expected one of 1, 2"),
        ("sample_rate", "12345", "expected one of 16000"),
        ("bit_depth", "8", "16, 24, 32"),
        ("variants", "0", "greater than or equal to 1"),
        ("seed", "-1", "greater than or equal to 0"),
        ("top_p", "1.5", "less than or equal to 1"),
        ("gain_db", "+99", "less than or equal to 24"),
        ("highpass_hz", "-1", "greater than or equal to 0"),
        ("highpass_hz", "hz", "valid number"),
        ("max_limit_db", "-3", "greater than or equal to 0"),
        ("loudness_mode", "integrate", "did you mean 'integrated'"),
        ("loop_tolerance_s", "-0.1", "greater than or equal to 0"),
    ],
)
def test_wrong_types_and_ranges(tmp_path, column, cell, expect):
    issue = only(problems(tmp_path, f"{HEADER},{column}\ns,a,sfx,x,2,{cell}\n"))
    assert (issue.row, issue.column, issue.value) == (2, column, cell)
    assert expect in issue.message


def test_unknown_model_with_suggestion(tmp_path):
    issue = only(problems(tmp_path, f"{HEADER}\ns,a,facebook/musicgen-smal,x,2\n"))
    assert issue.column == "model" and "did you mean 'facebook/musicgen-small'" in issue.message
    issue = only(problems(tmp_path, f"{HEADER}\ns,a,musik,x,2\n"))
    assert "unknown model (did you mean 'music'?)" in issue.message


def test_model_directory_without_checkpoints(tmp_path):
    (tmp_path / "empty_model").mkdir()
    issue = only(problems(tmp_path, f"{HEADER}\ns,a,empty_model,x,2\n"))
    assert "missing state_dict.bin, compression_state_dict.bin" in issue.message


@pytest.mark.parametrize(
    ("prompt", "expect"),
    [
        ('"{weather forest"', "bad template"),
        ('"weather} forest"', "bad template"),
        ('"{} forest"', "bad placeholder"),
        ('"{weather!r} forest"', "bad placeholder"),
        ('"{wether} forest"', "unknown placeholder {wether} (did you mean {weather}?)"),
    ],
)
def test_template_errors(tmp_path, prompt, expect):
    issue = only(problems(tmp_path, f"{HEADER},weather\ns,a,sfx,{prompt},2,rainy\n"))
    assert issue.column == "prompt" and expect in issue.message and issue.row == 2


def test_literal_braces_are_allowed(tmp_path):
    (spec,) = load_manifests([_write(tmp_path, f'{HEADER}\ns,a,sfx,"{{{{curly}}}} wind",2\n')])
    assert spec.prompt == "{curly} wind"


def test_placeholder_with_empty_cell(tmp_path):
    issue = only(problems(tmp_path, f'{HEADER},weather\ns,a,sfx,"{{weather}} forest",2,\n'))
    assert issue.column == "weather" and "uses {weather}" in issue.message


def test_duplicate_after_expansion_and_case_collisions(tmp_path):
    text = f"{HEADER},mood\ns,a__mood-calm,sfx,x,2,\ns,a,sfx,{{mood}},2,calm|tense\ns,B,sfx,x,2,\ns,b,sfx,x,2,\n"
    issues = problems(tmp_path, text)
    assert [(i.row, i.value) for i in issues] == [(3, "a__mood-calm"), (5, "b")]
    assert "first defined at" in issues[0].message and "line" not in issues[0].message.split("at")[0]
    assert "differ only in case" in issues[1].message


def test_sweep_values_that_slug_alike_collide(tmp_path):
    issue = only(problems(tmp_path, f'{HEADER},mood\ns,a,sfx,"{{mood}}",2,dark blue|dark-blue\n'))
    assert issue.value == "a__mood-dark-blue" and "duplicate" in issue.message


@pytest.mark.parametrize(
    "name",
    ["a/b", "a\\b", "..", "x..y", "/abs", "C:\\x", "CON", "nul.wav", "com1", "LPT9", "tab\there", "bell\x07", "end.", "a?b"],
)
def test_unsafe_names(tmp_path, name):
    quoted = '"' + name.replace('"', '""') + '"'
    for column, row in (("scene", f"{quoted},a"), ("asset", f"s,{quoted}")):
        issue = only(problems(tmp_path, f"{HEADER}\n{row},sfx,x,2\n"))
        assert issue.column == column and issue.value == name and issue.message.startswith("name ")


def test_unsafe_layer_name(tmp_path):
    issue = only(problems(tmp_path, f"{HEADER},layer\ns,a,sfx,x,2,../up\n"))
    assert issue.column == "layer"


def test_unknown_loudness_profile(tmp_path):
    issue = only(problems(tmp_path, f"{HEADER},loudness\ns,a,sfx,x,2,ebu-r129\n"))
    assert "did you mean 'ebu-r128'" in issue.message and "aswg-mobile" in issue.message
    issue = only(problems(tmp_path, f"{HEADER},loudness\ns,a,sfx,x,2,-99\n"))
    assert "between -70 and 0" in issue.message


def test_bad_fx_chain(tmp_path):
    issues = problems(tmp_path, f'{HEADER},fx\ns,a,sfx,x,2,"reverb(room_size="\ns,b,sfx,x,2,reverbb()|gain(gain_db=3)\n')
    assert [(i.row, i.column, i.value) for i in issues] == [(2, "fx", "reverb(room_size="), (3, "fx", "reverbb()")]
    assert issues[0].message.startswith("bad fx chain") and "did you mean 'reverb'" in issues[1].message
    (spec,) = load_manifests([_write(tmp_path, f'{HEADER},fx\ns,a,sfx,x,2,"reverb(room_size=0.7); highpass(cutoff_frequency_hz=120)"\n')])
    assert spec.post.fx == "reverb(room_size=0.7); highpass(cutoff_frequency_hz=120)"


def test_non_utf8_csv(tmp_path):
    issue = only(problems(tmp_path, f"{HEADER}\ns,a,sfx,caf\xe9 noise,2\n".encode("latin-1")))
    assert issue.row == 2 and issue.value == "0xe9" and "UTF-8" in issue.message


def test_ragged_row_and_blank_lines_keep_line_numbers(tmp_path):
    issues = problems(tmp_path, f'{HEADER}\n\ns,a,sfx,"multi\nline",2\ns,b,sfx,x\ns,c,sfx,x,zz\n')
    assert [(i.row, i.column) for i in issues] == [(5, None)]  # ragged rows stop the file before cells
    issues = problems(tmp_path, f'{HEADER}\n\ns,a,sfx,"multi\nline",2\ns,c,sfx,x,zz\n')
    assert [(i.row, i.column) for i in issues] == [(5, "duration_s")]


def test_duplicate_header_column(tmp_path):
    issue = only(problems(tmp_path, f"{HEADER},seed,seed\ns,a,sfx,x,2,1,2\n"))
    assert issue.column == "seed" and "twice" in issue.message


def test_sweep_explosion_is_counted_before_expanding(tmp_path):
    ten = "|".join(f"v{i}" for i in range(10))
    text = f'{HEADER},p,q,r,s2,t,variants\ns,a,sfx,"{{p}}{{q}}{{r}}{{s2}}{{t}}",2,{ten},{ten},{ten},{ten},{ten},1000\n'
    issue = only(problems(tmp_path, text))
    assert "would make 100000000 assets" in issue.message and "cap is 10000" in issue.message
    issue = only(problems(tmp_path, f'{HEADER},p\ns,a,sfx,"{{p}}",2,{ten}\n', max_assets=5))
    assert "would make 10 assets" in issue.message and "--max-assets" in issue.message


def test_bad_sweep_syntax(tmp_path):
    issues = problems(tmp_path, f'{HEADER},p,temperature\ns,a,sfx,"{{p}}",2,calm||epic,0.5|x\n')
    assert [(i.column, i.value) for i in issues] == [("p", "calm||epic"), ("temperature", "x")]
    assert "empty option" in issues[0].message


def test_layer_rows_cannot_be_swept_and_mix_rows_take_no_generation_settings(tmp_path):
    text = (
        f"{HEADER},layer,variants,temperature\n"
        "s,a,sfx,x,2,bed,2,\n"
        "s,m,mix,hello,,,,0.5\n"
        "t,m,mix,,,,,\n"
    )
    issues = problems(tmp_path, text)
    assert [(i.row, i.column) for i in issues] == [(2, "layer"), (3, "temperature"), (3, "prompt")]
    issue = only(problems(tmp_path, f"{HEADER},layer\nt,m,mix,,,\nu,a,sfx,x,2,bed\n"))
    assert "has no rows with a layer value" in issue.message


def test_parquet_wrong_dtypes(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "m.parquet"
    pq.write_table(
        pa.table(
            {
                "scene": ["s"],
                "asset": [1],
                "model": ["sfx"],
                "prompt": ["x"],
                "duration_s": [True],
                "tags": pa.array([["a", "b"]]),
            }
        ),
        path,
    )
    with pytest.raises(ManifestError) as err:
        load_manifests([path])
    assert [(i.column, i.value) for i in err.value.issues] == [
        ("asset", "int64"),
        ("duration_s", "bool"),
        ("tags", "list<element: string>"),
    ]
    assert "Parquet column has dtype bool; expected numbers or text" in str(err.value)


def test_parquet_bad_values_name_the_row_index(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "m.parquet"
    cols = {"scene": ["s", "s"], "asset": ["a", "b"], "model": ["sfx", "sfx"], "prompt": ["x", "y"]}
    pq.write_table(pa.table({**cols, "duration_s": [2.0, float("nan")]}), path)
    with pytest.raises(ManifestError) as err:
        load_manifests([path])
    (issue,) = err.value.issues
    assert (issue.row, issue.column, issue.value) == ("row 1", "duration_s", "nan")


def test_json_errors(tmp_path):
    issue = only(problems(tmp_path, '{"scenes": [', "s.json"))
    assert "invalid JSON" in issue.message and issue.row == 1
    issues = problems(
        tmp_path,
        '[{"name": "A", "components": [{"type": "music", "prompt": "p", "duration": 2, "weight": 0}]},'
        ' {"components": []}]',
        "s.json",
    )
    assert [(i.row, i.column) for i in issues] == [("[0].components[0]", "weight"), ("[1]", "name")]
    issue = only(problems(tmp_path, '[{"name": "A", "components": [{"type": "music", "prompt": "p"}]}]', "s.json"))
    assert (issue.row, issue.column) == ("[0].components[0]", "duration")  # named as the user wrote it


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(ManifestError) as err:
        load_manifests([tmp_path / "nope.csv", _write(tmp_path, "x", "m.txt")])
    assert [i.message.split(";")[0] for i in err.value.issues] == ["file not found", "unsupported manifest type"]


def test_cell_errors_and_duplicates_are_reported_together(tmp_path):
    issues = problems(tmp_path, f"{HEADER},layer\ns,a,sfx,x,oops,\ns,b,sfx,x,2,\ns,b,sfx,y,2,\nt,m,mix,,,\nt,l,sfx,z,-1,bed\n")
    assert [(i.row, i.column) for i in issues] == [(2, "duration_s"), (6, "duration_s"), (4, "asset")]


def test_json_errors_use_the_files_own_key_names(tmp_path):
    text = '[{"name": "A", "components": [{"model": "music", "prompt": "p", "duration_s": -1, "gain_db": 0}]}]'
    issue = only(problems(tmp_path, text, "s.json"))
    assert (issue.row, issue.column, issue.value) == ("[0].components[0]", "duration_s", "-1")


def test_two_mix_rows_and_default_mix_name_collision(tmp_path):
    issues = problems(tmp_path, f"{HEADER},layer\ns,a,sfx,x,2,bed\ns,m1,mix,,,\ns,m2,mix,,,\n")
    assert [(i.row, i.value) for i in issues] == [(4, "mix")] and "already has a mix row" in issues[0].message
    issue = only(problems(tmp_path, f"{HEADER},layer\nt,mix,sfx,x,2,\nt,a,sfx,y,2,bed\n"))
    assert issue.value == "mix" and "duplicate default mix asset 't/mix'" in issue.message
