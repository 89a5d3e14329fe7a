"""Manifest loading: formats, schema mapping, templates, sweeps, variants, scene mixes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from assetgen.manifest import ManifestError, load_manifests
from assetgen.spec import LOUDNESS_PROFILES

REPO = Path(__file__).resolve().parents[1]
HEADER = "scene,asset,model,prompt,duration_s"


def write(tmp_path: Path, text: str, name: str = "m.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def by_ident(specs):
    return {s.ident: s for s in specs}


def test_minimal_row_maps_to_defaults(tmp_path):
    (spec,) = load_manifests([write(tmp_path, f"{HEADER}\nforest,amb,sfx,  birds   at dawn ,3\n")])
    assert (spec.scene, spec.asset, spec.model) == ("forest", "amb", "sfx")
    assert spec.prompt == "birds at dawn"  # whitespace-normalised
    assert spec.gen.duration_s == 3.0 and spec.gen.top_k == 250
    assert spec.post.sample_rate == 48_000 and spec.post.bit_depth == 24 and spec.post.channels == 2
    assert spec.post.loudness_lufs == -23.0 and not spec.post.loop
    assert str(spec.source).endswith("m.csv:2")
    # default seed: deterministic from scene/asset, different for another asset
    again = load_manifests([write(tmp_path, f"{HEADER}\nforest,amb,sfx,x,3\nforest,other,sfx,x,3\n", "n.csv")])
    assert again[0].seed == spec.seed and again[1].seed != spec.seed


def test_all_optional_columns_are_mapped(tmp_path):
    cols = (
        "layer,gain_db,start_s,fade_in_s,fade_out_s,loop,bpm,bars,crossfade_s,loudness,true_peak_db,channels,"
        "sample_rate,bit_depth,variants,seed,temperature,top_k,top_p,cfg_coef,category,tags"
    )
    row = "bed,-6,0.5,0.1,0.2,yes,,,0.25,aswg-mobile,-2,1,44100,16,1,42,0.7,100,0.9,4,music,a; b"
    specs = load_manifests([write(tmp_path, f"{HEADER},{cols}\nlevel,pad,music,pad,3,{row}\n")])
    pad = by_ident(specs)["level/pad"]
    assert pad.layer == "bed" and pad.seed == 42 and pad.category == "music" and pad.tags == ("a", "b")
    p = pad.post
    assert (p.gain_db, p.start_s, p.fade_in_s, p.fade_out_s) == (-6.0, 0.5, 0.1, 0.2)
    assert p.loop and p.crossfade_s == 0.25 and p.loudness_lufs == LOUDNESS_PROFILES["aswg-mobile"]
    assert (p.true_peak_db, p.channels, p.sample_rate, p.bit_depth) == (-2.0, 1, 44_100, 16)
    g = pad.gen
    assert (g.temperature, g.top_k, g.top_p, g.cfg_coef) == (0.7, 100, 0.9, 4.0)
    assert g.duration_s == pytest.approx(3.25)  # loop: target + crossfade
    assert pad.target_duration_s == pytest.approx(3.0)
    assert by_ident(specs)["level/mix"].layers == ("pad",)


def test_loop_length_from_bpm_and_bars(tmp_path):
    text = f"{HEADER},loop,bpm,bars,crossfade_s\nm,loop,music,drums,,true,90,4,0.5\n"
    (spec,) = load_manifests([write(tmp_path, text)])
    assert spec.target_duration_s == pytest.approx(4 * 4 * 60 / 90)
    assert spec.gen.duration_s == pytest.approx(4 * 4 * 60 / 90 + 0.5)


def test_loudness_number_and_profile(tmp_path):
    text = f"{HEADER},loudness\ns,a,sfx,x,2,-16.5\ns,b,sfx,x,2,EBU-R128\n"
    a, b = load_manifests([write(tmp_path, text)])
    assert a.post.loudness_lufs == -16.5 and b.post.loudness_lufs == -23.0


def test_template_sweep_and_variants(tmp_path):
    text = (
        f"{HEADER},mood,weather,variants,seed\n"
        'forest,amb,sfx,"{weather} forest, {mood} mood",3,calm|tense,rainy | clear,2,7\n'
    )
    specs = load_manifests([write(tmp_path, text)])
    names = [s.asset for s in specs]
    assert len(specs) == 8
    assert "amb__mood-calm__weather-rainy__v02" in names and "amb__mood-tense__weather-clear__v01" in names
    spec = by_ident(specs)["forest/amb__mood-tense__weather-clear__v01"]
    assert spec.prompt == "clear forest, tense mood"
    assert dict(spec.template_params) == {"mood": "tense", "weather": "clear"}
    seeds = {s.seed for s in specs}
    assert len(seeds) == 8 and 7 not in seeds  # variant seeds derived from row seed + identity


def test_sweep_on_generation_column(tmp_path):
    specs = load_manifests([write(tmp_path, f"{HEADER},temperature\ns,a,music,x,2,0.5|1.0\n")])
    assert [(s.asset, s.gen.temperature) for s in specs] == [("a__temperature-0.5", 0.5), ("a__temperature-1.0", 1.0)]


def test_swept_value_slugs_are_filesystem_safe(tmp_path):
    specs = load_manifests([write(tmp_path, f'{HEADER},inst\ns,a,music,"{{inst}}",2,Synthesizer Pads|strings/bows\n')])
    assert [s.asset for s in specs] == ["a__inst-synthesizer-pads", "a__inst-strings-bows"]


def test_long_expanded_names_are_shortened_stably(tmp_path):
    value = "x" * 150
    text = f'{HEADER},p\ns,a,music,"{{p}}",2,{value}|y\n'
    names = [s.asset for s in load_manifests([write(tmp_path, text)])]
    assert len(names[0]) <= 120 and "~" in names[0]
    assert names == [s.asset for s in load_manifests([write(tmp_path, text, "again.csv")])]


def test_scene_mix_default_and_explicit(tmp_path):
    text = (
        f"{HEADER},layer,start_s,loudness\n"
        "tavern,lute,music,lute,3,music,,\n"
        "tavern,crowd,sfx,crowd,2,ambience,1.5,\n"
        "cave,drip,sfx,drips,2,fx,,\n"
        "cave,bed,music,drone,4,music,,\n"
        "cave,scene_mix,mix,,,,,aswg-console\n"
    )
    specs = by_ident(load_manifests([write(tmp_path, text)]))
    mix = specs["tavern/mix"]
    assert mix.is_mix and mix.layers == ("crowd", "lute") and mix.prompt == ""
    assert mix.gen.duration_s == pytest.approx(3.5)  # longest layer end: 1.5 + 2
    cave = specs["cave/scene_mix"]
    assert cave.layers == ("bed", "drip") and cave.post.loudness_lufs == -24.0 and cave.gen.duration_s == 4.0
    assert "cave/mix" not in specs


def write_parquet(path: Path, columns: dict) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), path)
    return path


def test_parquet_manifest(tmp_path):
    import pyarrow as pa

    path = write_parquet(
        tmp_path / "m.parquet",
        {
            "scene": ["s", "s"],
            "asset": ["a", "b"],
            "model": ["sfx", "music"],
            "prompt": ["{mood} wind", "drums"],
            "duration_s": pa.array([2.0, 3.0]),
            "bars": pa.array([None, 4.0]),  # what pandas writes for an int column with gaps
            "bpm": pa.array([None, 120], pa.int64()),
            "loop": [False, True],
            "mood": ["calm|tense", ""],
        },
    )
    specs = by_ident(load_manifests([path]))
    assert set(specs) == {"s/a__mood-calm", "s/a__mood-tense", "s/b"}
    assert specs["s/b"].post.bars == 4 and specs["s/b"].post.loop and specs["s/b"].gen.duration_s == 8.5
    assert str(specs["s/b"].source).endswith("row 1")


def test_seed_json_scene_file(tmp_path):
    specs = by_ident(load_manifests([REPO / "manifests" / "scenes.json"]))
    music = specs["peaceful_forest_morning/background_music"]
    assert music.model == "music" and music.gen.temperature == 0.7 and music.layer == "background_music"
    assert music.post.gain_db == pytest.approx(20 * math.log10(0.6))
    assert specs["peaceful_forest_morning/forest_ambience"].model == "sfx"  # seed "audio" -> sfx
    assert specs["busy_city_cafe/mix"].layers == ("cafe_ambience", "jazz_music", "outside_traffic")
    assert specs["busy_city_cafe/mix"].post.loudness_lufs == -24.0
    assert specs["peaceful_forest_morning/mix"].source.row == "scenes[0].components[0]"


def test_several_manifests_in_one_run(tmp_path):
    a = write(tmp_path, f"{HEADER}\ns,a,sfx,x,2\n", "a.csv")
    b = write(tmp_path, f"{HEADER}\ns,b,sfx,y,2\n", "b.csv")
    assert [s.ident for s in load_manifests([a, b])] == ["s/a", "s/b"]


def test_model_hub_id_and_checkpoint_dir(tmp_path):
    ckpt = tmp_path / "models" / "mine"
    ckpt.mkdir(parents=True)
    for f in ("state_dict.bin", "compression_state_dict.bin"):
        (ckpt / f).write_bytes(b"")
    text = f"{HEADER}\ns,a,facebook/musicgen-melody,x,2\ns,b,models/mine,x,2\n"
    a, b = load_manifests([write(tmp_path, text)])
    assert a.model == "facebook/musicgen-melody"
    assert b.model == str(ckpt.resolve())


def test_shipped_manifests_are_valid_and_small():
    demo = load_manifests([REPO / "manifests" / "demo.csv"])
    assert 6 <= len(demo) <= 10
    assert all(2 <= s.target_duration_s <= 4 for s in demo)
    assert any(s.post.loop and s.post.bpm and s.post.bars for s in demo)
    assert any(s.model == "sfx" and not s.layer and not s.post.loop for s in demo)
    assert any(s.template_params and "__" in s.asset and "__v" not in s.asset for s in demo)
    assert sum("__v0" in s.asset for s in demo) == 2
    mixes = [s for s in demo if s.is_mix]
    layers = {s.asset: s.model for s in demo if s.layer and s.scene == mixes[0].scene}
    assert len(mixes) == 1 and sorted(layers.values()) == ["music", "sfx"]
    themes = sorted((REPO / "manifests" / "themes").glob("*.csv"))
    assert {p.stem for p in themes} >= {"forest", "ocean", "city", "space"}
    for path in themes:
        specs = load_manifests([path])
        assert 4 <= len(specs) <= 8, path
        assert all(2 <= s.target_duration_s <= 4 for s in specs), path
    everything = load_manifests([REPO / "manifests" / "demo.csv", REPO / "manifests" / "scenes.json", *themes])
    assert len({s.ident for s in everything}) == len(everything)


def test_error_lists_every_problem_across_files(tmp_path):
    a = write(tmp_path, f"{HEADER}\ns,a,sfx,x,abc\ns,b,sfx,x,-1\n", "a.csv")
    b = write(tmp_path, f"{HEADER}\ns,c,sfxx,x,2\n", "b.csv")
    with pytest.raises(ManifestError) as err:
        load_manifests([a, b])
    where = [(Path(i.file).name, i.row, i.column) for i in err.value.issues]
    assert where == [("a.csv", 2, "duration_s"), ("a.csv", 3, "duration_s"), ("b.csv", 2, "model")]
    text = str(err.value)
    assert text.startswith("3 problems") and "a.csv:line 2: column 'duration_s' = 'abc'" in text
    assert json.dumps([str(i) for i in err.value.issues])  # plain strings, no objects


def test_readme_examples_are_valid(tmp_path):
    import re

    blocks = re.findall(r"```csv\n(.*?)```", (REPO / "manifests" / "README.md").read_text(), re.S)
    assert len(blocks) >= 8
    models = tmp_path / "models" / "music"  # the custom-model example's ../models/music
    models.mkdir(parents=True)
    for f in ("state_dict.bin", "compression_state_dict.bin"):
        (models / f).write_bytes(b"")
    (tmp_path / "docs").mkdir()
    recordings = tmp_path / "docs" / "recordings"  # the recorded-sources example's files, synthesised
    recordings.mkdir()
    import numpy as np
    import soundfile as sf

    (tmp_path / "docs" / "stems").mkdir()
    files = [("door_slam.wav", 2.0), ("drum_take3.flac", 24.0), ("chime.ogg", 1.0), ("hummed_tune.wav", 8.0)]
    files += [(f"../stems/{name}.wav", 14.0) for name in ("drums", "bass", "pads")]
    for name, seconds in files:
        noise = np.random.default_rng(0).standard_normal((round(seconds * 44_100), 2)) * 0.1
        sf.write(recordings / name, noise.astype(np.float32), 44_100)
    for n, block in enumerate(blocks):
        specs = load_manifests([write(tmp_path / "docs", block, f"example{n}.csv")])
        assert specs, block


def test_looping_mix_gets_crossfade_material(tmp_path):
    text = f"{HEADER},layer,loop,crossfade_s\nz,a,sfx,rain,3,bed,,\nz,m,mix,,,,true,0.5\nz,n,sfx,wind,2,top,,\n"
    mix = by_ident(load_manifests([write(tmp_path, text)]))["z/m"]
    assert mix.post.loop and mix.target_duration_s == pytest.approx(3.0)
    assert mix.gen.duration_s == pytest.approx(3.5)
