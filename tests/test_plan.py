"""Content keys (what changes audio and what does not), the diff against the index, batches, summary."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

import assetgen.plan as plan_mod
from assetgen.manifest import load_manifests
from assetgen.plan import content_key, make_batches, make_plan, plan_summary

HEADER = "scene,asset,model,prompt,duration_s,layer,gain_db,loudness,temperature,seed,category,tags,mood,meta_notes"
ROWS = [
    "forest,amb,sfx,{mood} forest at dawn,3,,,,,,ambience,a,calm,first",
    "forest,wind,sfx,wind in trees,2,,,,,5,ambience,b,,",
    "tavern,lute,music,lute tune,3,music,-4,,0.7,,music,,,",
    "tavern,crowd,sfx,crowd chatter,3,ambience,-2,,,,ambience,,,",
    "ui,click,sfx,click,2,,,aswg-mobile,,,ui,,,",
]
FP = {"music": "fp-music", "sfx": "fp-sfx"}


def load(tmp_path: Path, rows: list[str], name: str = "m.csv"):
    path = tmp_path / name
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return load_manifests([path])


def keys(tmp_path: Path, rows: list[str], name: str = "m.csv", fingerprints=FP) -> dict[str, str]:
    return {i.spec.ident: i.key for i in make_plan(load(tmp_path, rows, name), {}, fingerprints).items}


def edit(rows: list[str], index: int, column: str, value: str) -> list[str]:
    cells = rows[index].split(",")
    cells[HEADER.split(",").index(column)] = value
    return [*rows[:index], ",".join(cells), *rows[index + 1 :]]


def test_keys_ignore_order_whitespace_names_and_unrelated_columns(tmp_path):
    base = keys(tmp_path, ROWS)
    assert len(set(base.values())) == len(base) == 6  # 5 assets + the tavern mix
    shuffled = ROWS[:]
    random.Random(1).shuffle(shuffled)
    assert keys(tmp_path, shuffled, "other_file.csv") == base
    noisy = edit(ROWS, 1, "prompt", "  wind   in\ttrees ")
    noisy = edit(noisy, 1, "category", "other")
    noisy = edit(noisy, 1, "tags", "x;y")
    noisy = edit(noisy, 0, "meta_notes", "unrelated metadata column")
    assert keys(tmp_path, noisy) == base


@pytest.mark.parametrize(
    ("row", "column", "value"),
    [
        (1, "prompt", "wind in pines"),
        (1, "seed", "6"),
        (1, "duration_s", "2.5"),
        (1, "temperature", "0.9"),
        (1, "loudness", "-16"),
        (1, "loudness", "aswg-console"),
        (0, "mood", "tense"),  # changes the prompt after templating
    ],
)
def test_what_changes_audio_changes_the_key(tmp_path, row, column, value):
    base = keys(tmp_path, ROWS)
    changed = keys(tmp_path, edit(ROWS, row, column, value))
    ident = ["forest/amb", "forest/wind"][row]
    assert changed[ident] != base[ident]
    assert {k: v for k, v in changed.items() if k != ident} == {k: v for k, v in base.items() if k != ident}


def test_model_fingerprint_and_postprocess_version_change_keys(tmp_path, monkeypatch):
    base = keys(tmp_path, ROWS)
    other = keys(tmp_path, ROWS, fingerprints={**FP, "sfx": "fp-sfx-v2"})
    assert other["tavern/lute"] == base["tavern/lute"] and other["forest/wind"] != base["forest/wind"]
    monkeypatch.setattr(plan_mod, "POSTPROCESS_VERSION", plan_mod.POSTPROCESS_VERSION + 1)
    bumped = keys(tmp_path, ROWS)
    assert not set(bumped.values()) & set(base.values())


def test_mix_key_follows_layers_and_placement(tmp_path):
    base = keys(tmp_path, ROWS)
    gain = keys(tmp_path, edit(ROWS, 2, "gain_db", "-8"))
    assert gain["tavern/lute"] == base["tavern/lute"]  # placement does not change the layer's own file
    assert gain["tavern/mix"] != base["tavern/mix"]
    prompt = keys(tmp_path, edit(ROWS, 3, "prompt", "quiet crowd"))
    assert prompt["tavern/crowd"] != base["tavern/crowd"] and prompt["tavern/mix"] != base["tavern/mix"]
    assert prompt["tavern/lute"] == base["tavern/lute"]


def test_content_key_is_hex_sha256(tmp_path):
    spec = load(tmp_path, ROWS)[1]
    key = content_key(spec, "fp")
    assert re.fullmatch(r"[0-9a-f]{64}", key), key
    assert key == content_key(spec, "fp") != content_key(spec, "fp2")


def test_postprocess_version_enters_every_content_key(tmp_path, monkeypatch):
    """Bumping dsp.POSTPROCESS_VERSION (the DSP's output changed) renders every asset again."""
    before = keys(tmp_path, ROWS)
    monkeypatch.setattr(plan_mod, "POSTPROCESS_VERSION", plan_mod.POSTPROCESS_VERSION + 1)
    after = keys(tmp_path, ROWS)
    assert before.keys() == after.keys() and all(before[k] != after[k] for k in before)


def test_plan_states_and_orphans(tmp_path):
    specs = load(tmp_path, ROWS)
    current = {i.spec.ident: i.key for i in make_plan(specs, {}, FP).items}
    index = dict(current)
    del index["forest/amb"]  # new
    index["forest/wind"] = "0" * 64  # changed
    index["old/gone"] = "1" * 64  # orphaned
    plan = make_plan(specs, index, FP)
    states = {i.spec.ident: i.state for i in plan.items}
    assert states["forest/amb"] == "new" and states["forest/wind"] == "changed"
    assert states["tavern/mix"] == "up-to-date"
    assert plan.counts() == {"new": 1, "changed": 1, "up-to-date": 4, "repair": 0, "orphaned": 1}
    assert plan.orphaned == ["old/gone"]
    assert {i.spec.ident for i in plan.pending} == {"forest/amb", "forest/wind"}


def test_missing_or_damaged_latest_file_is_repaired_unless_its_key_changed(tmp_path):
    specs = load(tmp_path, ROWS)
    current = {i.spec.ident: i.key for i in make_plan(specs, {}, FP).items}
    index = {k: v for k, v in current.items() if k not in ("forest/wind", "tavern/mix", "forest/amb")}
    damaged = {"forest/wind": current["forest/wind"], "tavern/mix": current["tavern/mix"],
               "forest/amb": "0" * 64, "old/gone": "1" * 64}  # amb: damaged, and its settings changed since
    plan = make_plan(specs, index, FP, damaged)
    states = {i.spec.ident: i.state for i in plan.items}
    assert states["forest/wind"] == "repair" and states["tavern/mix"] == "repair"
    assert states["forest/amb"] == "changed" and states["tavern/lute"] == "up-to-date"
    assert plan.counts() == {"new": 0, "changed": 1, "up-to-date": 3, "repair": 2, "orphaned": 1}
    assert plan.orphaned == ["old/gone"]  # still indexed, whatever became of its file
    assert {i.spec.ident for i in plan.pending} == {"forest/wind", "tavern/mix", "forest/amb"}


def test_changed_layer_makes_mix_changed(tmp_path):
    specs = load(tmp_path, ROWS)
    index = {i.spec.ident: i.key for i in make_plan(specs, {}, FP).items}
    plan = make_plan(load(tmp_path, edit(ROWS, 2, "prompt", "harp tune")), index, FP)
    changed = {i.spec.ident for i in plan.items if i.state == "changed"}
    assert changed == {"tavern/lute", "tavern/mix"}


def test_missing_fingerprint_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no model fingerprint for: sfx"):
        make_plan(load(tmp_path, ROWS), {}, {"music": "x"})


def test_batches_group_by_model_and_params_deterministically(tmp_path):
    rows = [f"s,a{i},sfx,p{i} {{mood}},2,,,,,,,,m," for i in range(5)]  # every column is used or known
    rows += [f"s,b{i},sfx,p{i} {{mood}},3,,,,,,,,m," for i in range(2)]
    rows += [f"s,c{i},music,p{i} {{mood}},2,,,,0.7,,,,m," for i in range(3)]
    rows += ["t,l1,music,x {mood},2,bed,,,,,,,m,", "t,l2,sfx,y {mood},2,fx,,,,,,,m,"]
    items = make_plan(load(tmp_path, rows), {}, FP).items
    batches = make_batches(items, batch_size=2)
    layout = [(b.model, b.params.duration_s, b.params.temperature, [i.spec.asset for i in b.items]) for b in batches]
    assert layout == [
        ("music", 2.0, 0.7, ["c0", "c1"]),
        ("music", 2.0, 0.7, ["c2"]),
        ("music", 2.0, 1.0, ["l1"]),
        ("sfx", 2.0, 1.0, ["a0", "a1"]),
        ("sfx", 2.0, 1.0, ["a2", "a3"]),
        ("sfx", 2.0, 1.0, ["a4", "l2"]),
        ("sfx", 3.0, 1.0, ["b0", "b1"]),
    ]
    assert all(not i.spec.is_mix for b in batches for i in b.items)
    shuffled = list(items)
    random.Random(3).shuffle(shuffled)
    assert make_batches(shuffled, 2) == batches
    reqs = batches[0].requests()
    assert [r.key for r in reqs] == [i.key for i in batches[0].items] and reqs[0].params == batches[0].params
    with pytest.raises(ValueError, match="batch_size"):
        make_batches(items, 0)


def test_plan_summary(tmp_path):
    specs = load(tmp_path, ROWS)
    index = {"forest/wind": make_plan(specs, {}, FP).items[1].key, "old/x": "k"}
    plan = make_plan(specs, index, FP)
    batches = make_batches(plan.pending, 8)
    summary = plan_summary(plan, batches)
    assert summary["counts"] == {"new": 5, "changed": 0, "up-to-date": 1, "repair": 0, "orphaned": 1}
    assert summary["assets"] == 6 and summary["orphaned"] == ["old/x"] and summary["mixes_to_render"] == 1
    assert summary["generate_audio_s"] == 3 + 3 + 3 + 2  # amb, lute, crowd, click
    assert sum(b["size"] for b in summary["batches"]) == 4
    assert {b["model"] for b in summary["batches"]} == {"music", "sfx"}


@pytest.mark.parametrize(("field", "value"), [("highpass_hz", 0.0), ("max_limit_db", 6.0),
                                              ("loudness_mode", "short-term"), ("loop_tolerance_s", 0.02),
                                              ("qc", "none"), ("loudness_tolerance_lu", 1.0), ("max_attempts", 5)])
def test_delivery_spec_columns_enter_the_key(tmp_path, field, value):
    [spec] = [s for s in load(tmp_path, ROWS) if s.ident == "forest/wind"]
    spec = spec.replace(post=spec.post.__class__(**{**spec.post.__dict__, "loop": True}))
    changed = spec.replace(post=spec.post.__class__(**{**spec.post.__dict__, field: value}))
    assert content_key(changed, "fp") != content_key(spec, "fp")


# Keys of a manifest using every column family (sweeps, variants, loops on a beat grid, delivery settings, fx,
# quality gates, layers and their mix, ducking, stem sets, continuations, tts), as assetgen computed them before
# planning was reworked for catalogue scale: a key that changes re-renders its asset, so these must never move
# unless KEY_SCHEMA or POSTPROCESS_VERSION is bumped on purpose.
PINNED_HEADER = 'scene,asset,model,prompt,duration_s,mood,temperature,seed,variants,loop,bpm,bars,crossfade_s,loudness,true_peak_db,sample_rate,bit_depth,channels,fx,qc,layer,gain_db,start_s,fade_in_s,duck_db,stem_set,continue_from,prompt_s,category,tags,meta_notes'
PINNED_ROWS = [
    'forest,amb,sfx,{mood} forest at dawn,3,calm|tense,,,,,,,,,,,,,,,,,,,,,,,ambience,a;b,note',
    'forest,wind,sfx,wind   in trees,2.5,,0.7,5,,,,,,aswg-mobile,-2,44100,16,1,,,,,,,,,,,ambience,,',
    'game,theme,music,heroic theme,8,,1.0|1.2,,2,,,,,,,,,,,,,,,,,,,,music,,',
    'game,loop,music,steady loop,,,,,,true,120,4,0.25,-16,,,,,highpass(cutoff_frequency_hz=120),,,,,,,,,,music,,',
    'game,bridge,music,bridge section,6,,,,,,,,,,,,,,,,,,,,,,game/theme__temperature-1.0__v01,3,music,,',
    'game,pinned,music,pinned continuation,6,,,,,,,,,,,,,,,,,,,,,,game/loop@v1,,music,,',
    'tavern,lute,music,lute tune,3,,,,,,,,,,,,,,,silence;clipping,music,-4,0.5,0.2,,,,,music,,',
    'tavern,crowd,sfx,crowd chatter,3,,,,,,,,,,,,,,,,ambience,-2,,,6,,,,ambience,,',
    'band,drums,music,drum stem,,,,,,true,100,2,,,,,,,,,,,,,,groove,,,music,,',
    'band,bass,music,bass stem,,,,,,true,100,2,,,,,,,,,,,,,,groove,,,music,,',
    'ui,line,tts,Welcome   back hero,2,,,,,,,,,,,,,,,,,,,,,,,,voice,,',
]
PINNED_POSTPROCESS_VERSION = 3  # the version the keys below were computed with
PINNED_KEYS = {
    "forest/amb__mood-calm": "3441a10436813941c3e161774ca15fd1fb3bfca7dee5182684d19db03c6cbb27",
    "forest/amb__mood-tense": "f6850f3cd39fcc26b189bc59909db38f63ca96a0c9b5a677b6eb3077cd1209be",
    "forest/wind": "86ad3530924b1a558eeebc3267c1bca896e1ef3fe91853dfb49ee7cd8a634b70",
    "game/theme__temperature-1.0__v01": "3cf20bfcc3a31de4f1645b44b37d078e6de9a7cf66fcd157985e1271bd5ccfe2",
    "game/theme__temperature-1.0__v02": "c61aaa61316ac01149ecab378332605d87384a1e702be224034bb9480d088189",
    "game/theme__temperature-1.2__v01": "b9b342f46e678d3e214d2f0bc5641cddbea06afc49bac33700e7c72667503fc1",
    "game/theme__temperature-1.2__v02": "d7b41c0e2bb332b580cf452a084a99d63bb7a111a7239af8e27ca069bddb7711",
    "game/loop": "72bc7e7adf341165fbbafe56dc89796e9ba5d53cb698edf7fa3389b723774cd5",
    "game/bridge": "a8476fbba30f7b8b68a992cb6ec6272d220a87bdeaee4fcac6174b28e7388240",
    "game/pinned": "ec12c63a519a0ffd5d4052384988e90e7f93303ede46216f328fe3d9f63693c6",
    "tavern/lute": "e9c480b83fb5256a247f2946d5341cd87a89006b48c2fe6bff00e4d81cf4b3bd",
    "tavern/crowd": "e6f6ef24a70a8263a34397501ebaa144a1f3635dbb50de66efdc6b1983cb9d62",
    "band/drums": "110c727c3fe9b7859408410d9662d9862067b30c89fd0c3e3bdc1bdebd56ed10",
    "band/bass": "1427261ed7f72fd380fcbe0dea91fb4278282728d0f2ea1857f7dca0c2619afd",
    "ui/line": "81af6b7e8f79b83679f12c4b0bda00a8f5b8c6a346a3814a6bed1d02e02d7971",
    "tavern/mix": "e42f221e9122d2e5da12e59f7113a7ae13754fb4cccaafcb01e7fa6c13f01177",
}


def test_content_keys_are_pinned(tmp_path, monkeypatch):
    monkeypatch.setattr(plan_mod, "POSTPROCESS_VERSION", PINNED_POSTPROCESS_VERSION)
    path = tmp_path / "pinned.csv"
    path.write_text("\n".join([PINNED_HEADER, *PINNED_ROWS]) + "\n")
    specs = load_manifests([path], warnings=[])
    plan = make_plan(specs, {}, {**FP, "tts": "fp-tts"})
    assert {i.spec.ident: i.key for i in plan.items} == PINNED_KEYS
