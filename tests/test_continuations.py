"""Continuations (``continue_from`` / ``prompt_s``): manifest validation, dependency order, keys, batches, and
the AudioCraft backend's ``generate_continuation`` path on the tiny music checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from assetgen.manifest import ManifestError, load_manifests
from assetgen.plan import continuation_phases, make_batches, make_plan, plan_summary
from assetgen.spec import DEFAULT_PROMPT_S, GenParams, GenRequest

HEADER = "scene,asset,model,prompt,duration_s,continue_from,prompt_s"
ROWS = [
    "game,theme,music,heroic theme,4,,",
    "game,bridge,music,calm bridge,3,game/theme,1.5",
    "game,outro,music,slow outro,3,bridge,",  # bare asset: same scene
    "game,pinned,music,variation,3,game/theme@v1,",
    "game,wind,sfx,wind,2,,",
]
FP = {"music": "fp-music", "sfx": "fp-sfx"}


def load(tmp_path: Path, rows: list[str], name: str = "m.csv", header: str = HEADER):
    path = tmp_path / name
    path.write_text("\n".join([header, *rows]) + "\n")
    return load_manifests([path])


def keys(tmp_path: Path, rows: list[str]) -> dict[str, str]:
    return {i.spec.ident: i.key for i in make_plan(load(tmp_path, rows), {}, FP).items}


def errors(tmp_path: Path, rows: list[str], **kw) -> list[str]:
    with pytest.raises(ManifestError) as ei:
        load(tmp_path, rows, **kw)
    return [str(i) for i in ei.value.issues]


def test_columns_parse_with_defaults(tmp_path):
    specs = {s.ident: s for s in load(tmp_path, ROWS)}
    assert specs["game/bridge"].gen.continue_from == "game/theme"
    assert specs["game/bridge"].gen.prompt_s == 1.5
    assert specs["game/outro"].gen.continue_from == "game/bridge"
    assert specs["game/outro"].gen.prompt_s == DEFAULT_PROMPT_S
    assert specs["game/pinned"].gen.continue_from == "game/theme@v1"
    assert specs["game/theme"].gen.continue_from == "" and specs["game/theme"].gen.prompt_s == 0.0


def test_phases_put_each_base_first(tmp_path):
    plan = make_plan(load(tmp_path, ROWS), {}, FP)
    phases = continuation_phases(plan.pending)
    assert [[i.spec.ident for i in p] for p in phases] == [["game/bridge", "game/pinned"], ["game/outro"]]
    # the first phase's batches hold no continuation: they render once their bases are delivered
    assert {i.spec.ident for b in make_batches(plan.pending, 8) for i in b.items} == {"game/theme", "game/wind"}


def test_changed_base_changes_its_continuations_but_not_a_pinned_one(tmp_path):
    before = keys(tmp_path, ROWS)
    after = keys(tmp_path, [ROWS[0].replace("heroic theme", "sad theme"), *ROWS[1:]])
    assert after["game/theme"] != before["game/theme"]
    assert after["game/bridge"] != before["game/bridge"]
    assert after["game/outro"] != before["game/outro"]  # through its base, a continuation itself
    assert after["game/pinned"] == before["game/pinned"]  # version 1 of the theme does not change
    assert after["game/wind"] == before["game/wind"]
    longer = keys(tmp_path, [ROWS[0], ROWS[1].replace(",1.5", ",2.5"), *ROWS[2:]])
    assert longer["game/bridge"] != before["game/bridge"] and longer["game/theme"] == before["game/theme"]


def test_keys_of_rows_without_continuations_are_unchanged(tmp_path):
    from assetgen.plan import content_key

    spec = load(tmp_path, ROWS)[0]
    assert keys(tmp_path, ROWS)["game/theme"] == content_key(spec, "fp-music")
    plain = load(tmp_path, ["game,theme,music,heroic theme,4"], "plain.csv", "scene,asset,model,prompt,duration_s")
    assert content_key(plain[0], "fp-music") == content_key(spec, "fp-music")


def test_cycle_is_an_error_naming_the_chain(tmp_path):
    msgs = errors(tmp_path, ["s,a,music,x,2,s/c,", "s,b,music,y,2,s/a,", "s,c,music,z,2,b,"])
    assert len(msgs) == 1
    assert "m.csv:line 2: column 'continue_from' = 's/c'" in msgs[0]
    assert "cycle: s/a -> s/c -> s/b -> s/a" in msgs[0]
    assert "cycle: s/a -> s/a" in errors(tmp_path, ["s,a,music,x,2,a,"])[0]


@pytest.mark.parametrize(("row", "words"), [
    ("s,b,music,y,2,s/nope,", "no asset s/nope in this run"),
    ("s,b,music,y,2,s/the_base,", "did you mean s/the_bass"),
    ("s,b,sfx,y,2,s/the_bass,", "needs a MusicGen model"),
    ("s,b,facebook/audiogen-medium,y,2,s/the_bass,", "needs a MusicGen model"),
    ("s,b,tts,hello,2,s/the_bass,", "needs a MusicGen model"),
    ("s,b,music,y,2,s/the_bass@v0,", "expected scene/asset or scene/asset@vN"),
    ("s,b,music,y,2,s/mix,", "is a scene mix"),
    ("s,b,music,y,2,,2", "prompt_s applies only to a row with continue_from"),
])
def test_bad_continue_from_names_file_row_column_value(tmp_path, row, words):
    header = HEADER + ",layer"
    msgs = errors(tmp_path, ["s,the_bass,music,bass,2,,,bass", "s,pad,music,pad,2,,,pad", row + ","], header=header)
    assert len(msgs) == 1, msgs
    assert msgs[0].startswith(f"{tmp_path / 'm.csv'}:line 4: column '")
    assert words in msgs[0]


def test_base_in_a_manifest_outside_the_run_is_an_error(tmp_path):
    (tmp_path / "base.csv").write_text(HEADER + "\n" + ROWS[0] + "\n")
    msgs = errors(tmp_path, [ROWS[1]], name="cont.csv")
    assert "cont.csv:line 2: column 'continue_from' = 'game/theme'" in msgs[0]
    assert "pass its manifest too" in msgs[0]
    both = load_manifests([tmp_path / "base.csv", tmp_path / "cont.csv"])
    assert [s.ident for s in both] == ["game/theme", "game/bridge"]


def test_batches_group_continuations_by_prompt_length(tmp_path):
    rows = ["s,a,music,x,2,,", "s,b,music,y,2,,", "s,c1,music,z,3,a,", "s,c2,music,z,3,b,", "s,c3,music,z,3,b,1"]
    plan = make_plan(load(tmp_path, rows), {}, FP)
    conts = [i for i in plan.pending if i.spec.gen.continue_from]
    two = np.zeros((2, 96_000), np.float32)
    one = np.zeros((2, 48_000), np.float32)
    prompts = {"s/c1": (two, 48_000), "s/c2": (two, 48_000), "s/c3": (one, 48_000)}
    batches = make_batches(conts, 8, prompts)
    # c1 and c2 continue different bases with equal settings: one call; c3's shorter prompt needs its own
    assert [[i.spec.ident for i in b.items] for b in batches] == [["s/c3"], ["s/c1", "s/c2"]]
    requests = batches[1].requests()
    assert all(r.prompt_audio is two and r.prompt_sr == 48_000 and r.params.continue_from == "" for r in requests)
    assert make_batches(conts, 8) == []
    summary = plan_summary(plan, make_batches(plan.pending, 8))
    assert summary["continuations_to_render"] == 3 and summary["generate_audio_s"] == 2 + 2 + 3 * 3


@pytest.mark.slow
def test_backend_continues_the_prompt(tiny_models):
    from assetgen.models.audiocraft_backend import AudiocraftBackend
    from assetgen.models.registry import resolve

    backend = AudiocraftBackend(resolve("music", tiny_models))
    params = GenParams(duration_s=1.0)
    [base] = backend.generate([GenRequest("a", "drums", 1, params)])
    stereo_48k = np.repeat(np.interp(np.arange(96_000) * 2 / 3, np.arange(64_000), np.tile(base[0], 2)
                                     .astype(np.float64))[None].astype(np.float32), 2, axis=0)
    cont = GenRequest("b", "drums", 2, params, stereo_48k, 48_000)
    full = []  # what audiocraft returns: the decoded prompt, then the continuation
    real = backend.model.generate_continuation
    backend.model.generate_continuation = lambda *a, **k: full.append(real(*a, **k)) or full[-1]
    first, _ = backend.generate([cont, GenRequest("c", "bass", 3, params, stereo_48k, 48_000)])
    backend.model.generate_continuation = real
    hop = backend.sample_rate // 25
    # 2 s at 48 kHz is 50 whole frames at 32 kHz; 1 s asks for 25 frames more: the prompt's 50 are cut off
    assert full[0].shape == (2, 1, (50 + 25) * hop)
    np.testing.assert_array_equal(first, full[0][0, :, 50 * hop:].numpy())
    [plain] = backend.generate([GenRequest("b", "drums", 2, params)])
    assert first.shape == plain.shape == (1, 32_000)  # only the new part, its own duration at the model rate
    assert np.isfinite(first).all() and np.abs(first).max() > 0
    assert np.abs(first[:, :hop] - plain[:, :hop]).max() > 1e-3  # the prompt changed the opening
    [again] = backend.generate([cont])
    # per-request seeding holds for continuations too (same tokens; floats differ with the batch shape)
    np.testing.assert_allclose(again, first, atol=1e-5)
    with pytest.raises(ValueError, match="one length"):
        backend.generate([cont, GenRequest("d", "x", 4, params, stereo_48k[:, :48_000], 48_000)])


@pytest.mark.slow
def test_cli_renders_base_then_continuations_and_a_changed_base_rerenders_them(tmp_path, tiny_models):
    import json

    import soundfile as sf
    from typer.testing import CliRunner

    from assetgen.cli import app
    from assetgen.store.index import Index

    def render(manifest):
        result = CliRunner().invoke(app, [str(a) for a in ("render", manifest, "--out", tmp_path / "out",
                                    "--model-dir", tiny_models, "--no-progress", "--fail-on", "error")],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output, {r["asset"]: r for r in Index(tmp_path / "out").rows()}

    header = "scene,asset,model,prompt,duration_s,continue_from,prompt_s,qc\n"
    rows = ("game,theme,music,heroic theme,1,,,none\n"
            "game,bridge,music,calm bridge,1.5,theme,0.5,none\n"  # continues the theme
            "game,outro,music,slow outro,1,bridge,,none\n")  # continues the bridge: a second phase
    manifest = tmp_path / "m.csv"
    manifest.write_text(header + rows)
    plan = CliRunner().invoke(app, ["plan", str(manifest), "--out", str(tmp_path / "out"), "--model-dir",
                                    str(tiny_models)], catch_exceptions=False)
    assert plan.exit_code == 0, plan.output
    assert "continuations to render after their bases: 2" in " ".join(plan.output.split())  # rich wraps lines
    output, first = render(manifest)
    assert {a: r["version"] for a, r in first.items()} == {"theme": 1, "bridge": 1, "outro": 1}, output
    audio, sr = sf.read(tmp_path / "out" / first["bridge"]["path"], always_2d=True)
    assert sr == 48_000 and len(audio) == 72_000  # only the new part: the row's own 1.5 s
    assert np.abs(audio).max() > 0
    gen = json.loads(first["bridge"]["params"])["gen"]
    assert (gen["continue_from"], gen["prompt_s"]) == ("game/theme", 0.5)

    manifest.write_text(header + rows.replace("heroic theme", "sad theme"))
    output, second = render(manifest)
    assert {a: r["version"] for a, r in second.items()} == {"theme": 2, "bridge": 2, "outro": 2}, output
    again, third = render(manifest)
    assert {a: r["version"] for a, r in third.items()} == {"theme": 2, "bridge": 2, "outro": 2}, again


def test_prompt_is_the_end_of_the_delivered_take_and_blocked_bases_fail(tmp_path):
    from assetgen.continuation import prepare_phase
    from assetgen.plan import PlanItem
    from assetgen.spec import ProcessedAudio
    from assetgen.store import AssetStore

    store = AssetStore(tmp_path / "out")
    specs = {s.ident: s for s in load(tmp_path, ROWS)}
    ramp = np.tile(np.linspace(-0.5, 0.5, 48_000, dtype=np.float32), (2, 1))  # 1 s at 48 kHz
    for key, audio in (("k1", ramp), ("k2", -ramp)):
        store.commit(specs["game/theme"], key, ProcessedAudio(audio, 48_000, None, None), model_label="synthetic",
                     placeholder=True, run_id="r", params={})
    bridge, pinned = PlanItem(specs["game/bridge"], "kb", "new"), PlanItem(specs["game/pinned"], "kp", "new")
    phase = prepare_phase(store, [bridge, pinned], set(), {"game/theme": "k2"})
    assert phase.blocked == [] and [i.spec.ident for i in phase.ready] == ["game/bridge", "game/pinned"]
    audio, sr = phase.prompts["game/bridge"]
    assert sr == 48_000 and audio.shape == (2, 48_000)  # prompt_s 1.5 > the take: the whole take
    np.testing.assert_allclose(audio, -ramp, atol=1e-6)  # 24-bit WAV read back: the latest version
    pinned_audio, _ = phase.prompts["game/pinned"]
    np.testing.assert_allclose(pinned_audio, ramp, atol=1e-6)  # @v1
    short = prepare_phase(store, [PlanItem(specs["game/outro"].replace(
        gen=GenParams(1.0, continue_from="game/theme", prompt_s=0.25)), "ko", "new")],
        set(), {"game/theme": "k2"})
    np.testing.assert_allclose(short.prompts["game/outro"][0], -ramp[:, -12_000:], atol=1e-6)

    blocked = prepare_phase(store, [bridge], {"game/theme"}, {"game/theme": "k2"}).blocked
    assert [(i.spec.ident, f.text) for i, f in blocked] == [("game/bridge", "its base game/theme failed in this run")]
    stale = prepare_phase(store, [bridge], set(), {"game/theme": "k3"}).blocked
    assert "latest version 2 is not its current take" in stale[0][1].text
    v9 = PlanItem(specs["game/pinned"].replace(gen=GenParams(
        3.0, continue_from="game/theme@v9", prompt_s=2.0)), "k9", "new")
    assert prepare_phase(store, [v9], set(), {}).blocked[0][1].text == "game/theme has no delivered version 9"


@pytest.mark.slow
def test_stems_continued_from_the_first_stem_are_delivered_on_its_grid(tmp_path, tiny_models):
    """A generated stem set whose later stems continue the first: one length, one loop, and the set check of
    the run report (read back from the files with an independent RIFF reader) holds."""
    import json

    import soundfile as sf
    from typer.testing import CliRunner

    from assetgen.cli import app
    from assetgen.stems import Stem, check_stem_set
    from assetgen.store.index import Index
    from wavinfo import WavInfoReader

    manifest = tmp_path / "m.csv"
    manifest.write_text("scene,asset,model,prompt,duration_s,loop,bpm,bars,stem_set,continue_from,prompt_s\n"
                        "groove,drums,music,driving drums,3,true,120,1,groove,,\n"
                        "groove,bass,music,deep bass line,3,true,120,1,groove,drums,1\n"
                        "groove,pad,music,warm pad,3,true,120,1,groove,drums,1\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [str(a) for a in ("render", manifest, "--out", out, "--model-dir", tiny_models,
                                                       "--no-progress", "--fail-on", "error")],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = {r["asset"]: r for r in Index(out).rows()}
    assert {json.loads(rows[a]["params"])["gen"]["continue_from"] for a in ("bass", "pad")} == {"groove/drums"}
    stems = {}
    for asset, row in rows.items():
        audio, sr = sf.read(out / row["path"], dtype="float32", always_2d=True)
        assert sr == 48_000 and len(audio) == 96_000  # one bar at 120 BPM: 2 s
        [loop] = WavInfoReader(str(out / row["path"])).smpl.sample_loops
        assert (loop.start, loop.end) == (0, 95_999)  # smpl's end is inclusive
        stems[asset] = Stem(audio.T, sr, (int(row["loop_start"]), int(row["loop_end"])))
    assert check_stem_set(stems).passed
    report = json.loads((out / "runs" / "latest.json").read_text())
    assert not [r for e in report["assets"] for r in e.get("qc_reasons", []) if r.startswith("stem_set")]
