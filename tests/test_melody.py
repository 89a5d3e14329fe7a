"""Melody conditioning (``melody``): the tiny melody checkpoint through audiocraft's own loader, the backend's
batched ``generate_with_chroma``, manifest validation, content keys, dependency phases and batches, and renders
of recordings, assets of the run and a stem set's first stem taken as melodies."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from assetgen.manifest import ManifestError, load_manifests
from assetgen.plan import continuation_phases, make_batches, make_plan, plan_summary
from assetgen.spec import GenParams, GenRequest

HEADER = "scene,asset,model,prompt,duration_s,melody,continue_from"
FP = {"music": "fp-music", "sfx": "fp-sfx", "melody": "fp-melody", "tts": "fp-tts"}


def tune(path: Path, hz: tuple[float, ...] = (440.0, 660.0), sr: int = 44_100, seconds: float = 2.0) -> Path:
    """A mono sine tune stepping through ``hz`` (equal parts), 24-bit WAV."""
    t = np.arange(round(sr * seconds)) / sr
    f = np.asarray(hz)[np.minimum((t / seconds * len(hz)).astype(int), len(hz) - 1)]
    sf.write(path, (0.3 * np.sin(2 * np.pi * np.cumsum(f) / sr)).astype(np.float32), sr, subtype="PCM_24")
    return path


def load(tmp_path: Path, rows: list[str], name: str = "m.csv", header: str = HEADER):
    path = tmp_path / name
    path.write_text("\n".join([header, *rows]) + "\n")
    return load_manifests([path])


def errors(tmp_path: Path, rows: list[str], **kw) -> list[str]:
    with pytest.raises(ManifestError) as ei:
        load(tmp_path, rows, **kw)
    return [str(i) for i in ei.value.issues]


def keys(tmp_path: Path, rows: list[str]) -> dict[str, str]:
    return {i.spec.ident: i.key for i in make_plan(load(tmp_path, rows), {}, FP).items}


def test_column_parses_recordings_and_assets(tmp_path):
    tune(tmp_path / "tune.wav")
    specs = {s.ident: s for s in load(tmp_path, [
        "g,theme,music,theme,2,,",
        "g,lead,melody,lead,2,tune.wav,",
        "g,pad,facebook/musicgen-melody,pad,2,theme,",  # a bare asset: the row's scene
        "g,old,melody,old,2,g/theme@v1,",
    ])}
    lead = specs["g/lead"].gen
    assert lead.melody == str((tmp_path / "tune.wav").resolve())
    assert lead.melody_sha256 == hashlib.sha256((tmp_path / "tune.wav").read_bytes()).hexdigest()
    assert lead.base == ""  # a recording needs no asset of the run
    assert (specs["g/pad"].gen.melody, specs["g/pad"].gen.melody_sha256, specs["g/pad"].gen.base) == \
        ("g/theme", "", "g/theme")
    assert specs["g/old"].gen.base == "g/theme@v1"
    assert specs["g/theme"].gen.melody == ""


@pytest.mark.parametrize(("row", "column", "value", "words"), [
    ("g,b,music,y,2,tune.wav,", "melody", "{tune}", "needs a model with a chroma conditioner"),
    ("g,b,sfx,y,2,theme,", "melody", "g/theme", "not sfx"),
    ("g,b,facebook/musicgen-small,y,2,tune.wav,", "melody", "{tune}", "not facebook/musicgen-small"),
    ("g,b,tts,hello,2,theme,", "melody", "g/theme", "not tts"),
    ("g,b,{music_dir},y,2,tune.wav,", "melody", "{tune}", "melody checkpoint directory"),
    ("g,b,melody,y,2,theme,theme", "melody", "g/theme", "cannot be combined"),
    ("g,b,melody,y,2,missing.wav,", "melody", "missing.wav", "file not found"),
    ("g,b,melody,y,2,g/nope,", "melody", "g/nope", "no asset g/nope in this run"),
    ("g,b,melody,y,2,g/mix,", "melody", "g/mix", "take the melody of one of its layers"),
    ("g,b,melody,y,2,a/b/c,", "melody", "a/b/c", "a recording's path ending in an audio file extension"),
])
def test_bad_melody_names_file_row_column_value(tmp_path, row, column, value, words):
    """A melody on a model without a chroma conditioner (the real music model's directory included) and every
    other bad melody is one validation error naming the file, the row, the column and the value."""
    music_dir = tmp_path / "ckpt"  # a music checkpoint directory, marked as make-tiny marks its music model
    music_dir.mkdir()
    for name in ("state_dict.bin", "compression_state_dict.bin"):
        (music_dir / name).write_bytes(b"")
    (music_dir / "assetgen.json").write_text('{"kind": "music", "chroma": false}')
    tune(tmp_path / "tune.wav")
    header = HEADER + ",layer"
    row = row.format(music_dir=music_dir)
    msgs = errors(tmp_path, ["g,theme,music,theme,2,,,t", "g,pad,music,pad,2,,,p", row + ","], header=header)
    assert len(msgs) == 1, msgs
    shown = value.format(tune=(tmp_path / "tune.wav").resolve())
    assert msgs[0].startswith(f"{tmp_path / 'm.csv'}:line 4: column '{column}' = '{shown}'"), msgs[0]
    assert words in msgs[0]


def test_melody_on_file_and_mix_rows_is_an_error(tmp_path):
    tune(tmp_path / "tune.wav")
    header = "scene,asset,model,prompt,duration_s,melody,source,layer"
    msgs = errors(tmp_path, ["g,rec,file,,,tune.wav,tune.wav,", "g,a,music,x,2,,,a", "g,mix,mix,,,tune.wav,,"],
                  header=header)
    assert any("line 2: column 'melody'" in m and "no effect on a file row" in m for m in msgs), msgs
    assert any("line 4: column 'melody'" in m and "no effect on a mix row" in m for m in msgs), msgs


def test_cycles_are_errors_naming_the_chain(tmp_path):
    msgs = errors(tmp_path, ["s,a,melody,x,2,s/b,", "s,b,melody,y,2,a,"])
    assert len(msgs) == 1
    assert "m.csv:line 2: column 'melody' = 's/b'" in msgs[0]
    assert "melody cycle: s/a -> s/b -> s/a" in msgs[0]
    # a chain through a continuation and a melody is one cycle too
    mixed = errors(tmp_path, ["s,a,music,x,2,,s/b", "s,b,melody,y,2,a,"])
    assert len(mixed) == 1 and "cycle: s/a -> s/b -> s/a" in mixed[0] and "column 'continue_from'" in mixed[0]
    assert "melody cycle: s/a -> s/a" in errors(tmp_path, ["s,a,melody,x,2,a,"])[0]


def test_key_follows_the_recording_bytes_not_its_name(tmp_path):
    tune(tmp_path / "tune.wav")
    rows = ["g,lead,melody,lead,2,tune.wav,", "g,plain,melody,lead,2,,"]
    before = keys(tmp_path, rows)
    assert before["g/lead"] != before["g/plain"]  # a melody changes the key
    (tmp_path / "copy.wav").write_bytes((tmp_path / "tune.wav").read_bytes())
    assert keys(tmp_path, [rows[0].replace("tune.wav", "copy.wav"), rows[1]]) == before  # same bytes elsewhere
    tune(tmp_path / "tune.wav", hz=(440.0, 550.0))
    after = keys(tmp_path, rows)
    assert after["g/lead"] != before["g/lead"] and after["g/plain"] == before["g/plain"]


def test_keys_of_rows_without_a_melody_are_unchanged(tmp_path):
    from assetgen.plan import content_key

    spec = load(tmp_path, ["g,theme,music,theme,2,,"])[0]
    plain = load(tmp_path, ["g,theme,music,theme,2"], "plain.csv", "scene,asset,model,prompt,duration_s")[0]
    assert content_key(spec, "fp") == content_key(plain, "fp")


def test_asset_melodies_are_keyed_on_their_base_and_phased_after_it(tmp_path):
    rows = ["g,theme,music,heroic,2,,", "g,pad,melody,pad,2,theme,", "g,pinned,melody,pad,2,g/theme@v1,",
            "g,echo,melody,echo,2,pad,"]
    before = keys(tmp_path, rows)
    after = keys(tmp_path, [rows[0].replace("heroic", "sad"), *rows[1:]])
    assert after["g/pad"] != before["g/pad"]  # the base's key is in the melody row's key
    assert after["g/echo"] != before["g/echo"]  # through its base, itself a melody row
    assert after["g/pinned"] == before["g/pinned"]  # version 1 never changes
    plan = make_plan(load(tmp_path, rows), {}, FP)
    phases = continuation_phases(plan.pending)
    assert [[i.spec.ident for i in p] for p in phases] == [["g/pad", "g/pinned"], ["g/echo"]]
    assert {i.spec.ident for b in make_batches(plan.pending, 8) for i in b.items} == {"g/theme"}
    summary = plan_summary(plan, make_batches(plan.pending, 8))
    assert summary["melodies_to_render"] == 3 and summary["continuations_to_render"] == 0
    assert summary["generate_audio_s"] == 8


def test_melodies_batch_by_length_and_ride_on_their_requests(tmp_path):
    """Each request carries its own melody; melodies of one length and rate share a batch (audiocraft pads a
    batch's melodies to the longest, which would change a shorter one's chroma)."""
    tune(tmp_path / "a.wav")
    tune(tmp_path / "b.wav", hz=(330.0,))  # another tune, the same length
    tune(tmp_path / "c.wav", seconds=3.0)
    rows = ["g,theme,music,t,2,,", "g,x,melody,x,2,a.wav,", "g,y,melody,y,2,b.wav,", "g,w,melody,w,2,c.wav,",
            "g,z,melody,z,2,,", "g,p,melody,p,2,theme,", "g,q,melody,q,2,theme,", "g,r,melody,r,2,theme,"]
    plan = make_plan(load(tmp_path, rows), {}, FP)
    first = [b for b in make_batches(plan.pending, 8) if b.model == "melody"]
    assert sorted([i.spec.ident for i in b.items] for b in first) == [["g/w"], ["g/x", "g/y"], ["g/z"]]
    [pair] = [b for b in first if len(b.items) == 2]
    x, y = pair.requests()
    assert x.melody_file == str((tmp_path / "a.wav").resolve()) and x.melody_sha256 == hashlib.sha256(
        (tmp_path / "a.wav").read_bytes()).hexdigest()
    assert y.melody_file.endswith("b.wav") and x.melody_audio is None and x.prompt_audio is None
    assert all(r.params.melody == "" and r.params.melody_sha256 == "" for r in (x, y))
    [phase] = continuation_phases(plan.pending)
    long, short = np.zeros((2, 96_000), np.float32), np.ones((2, 96_000), np.float32)
    batches = make_batches(phase, 8, {"g/p": (long, 48_000), "g/q": (short[:, :24_000], 48_000),
                                      "g/r": (short, 48_000)})
    assert [[i.spec.ident for i in b.items] for b in batches] == [["g/q"], ["g/p", "g/r"]]
    p, r = batches[1].requests()
    assert p.melody_audio is long and r.melody_audio is short and p.melody_sr == 48_000
    assert p.prompt_audio is None and p.params.melody == ""


def test_prepared_phase_takes_the_whole_delivered_take_as_melody(tmp_path):
    from assetgen.continuation import prepare_phase
    from assetgen.plan import PlanItem
    from assetgen.spec import ProcessedAudio
    from assetgen.store import AssetStore

    store = AssetStore(tmp_path / "out")
    specs = {s.ident: s for s in load(tmp_path, ["g,theme,music,t,2,,", "g,pad,melody,p,2,theme,"])}
    ramp = np.tile(np.linspace(-0.5, 0.5, 72_000, dtype=np.float32), (2, 1))  # 1.5 s at 48 kHz
    store.commit(specs["g/theme"], "k1", ProcessedAudio(ramp, 48_000, None, None), model_label="synthetic",
                 placeholder=True, run_id="r", params={})
    phase = prepare_phase(store, [PlanItem(specs["g/pad"], "kp", "new")], set(), {"g/theme": "k1"})
    audio, sr = phase.prompts["g/pad"]
    assert sr == 48_000 and audio.shape == (2, 72_000)  # the whole take, not a continuation's tail
    np.testing.assert_allclose(audio, ramp, atol=1e-6)
    failed = prepare_phase(store, [PlanItem(specs["g/pad"], "kp", "new")], {"g/theme"}, {"g/theme": "k1"})
    assert failed.blocked[0][1].text == "its base g/theme failed in this run"


def test_make_tiny_writes_a_melody_checkpoint_with_its_separator_repository(tiny_models, tmp_path):
    import json

    from assetgen.models.melody import SEPARATOR_DIR, model_takes_melody
    from assetgen.models.registry import fingerprint, resolve

    melody = tiny_models / "melody"
    repo = melody / SEPARATOR_DIR
    [package] = repo.glob("*.th")
    sig, checksum = package.stem.rsplit("-", 1)
    assert hashlib.sha256(package.read_bytes()).hexdigest()[:8] == checksum  # what demucs' LocalRepo verifies
    assert (repo / "htdemucs.yaml").read_text().split() == ["models:", "-", sig]
    assert json.loads((melody / "assetgen.json").read_text())["chroma"] is True
    assert model_takes_melody(str(melody)) and not model_takes_melody(str(tiny_models / "music"))
    for name in ("melody", "music"):  # without the marker, the LM's own config says whether it has a chroma conditioner
        bare = tmp_path / name
        bare.mkdir()
        (bare / "state_dict.bin").write_bytes((tiny_models / name / "state_dict.bin").read_bytes())
        assert model_takes_melody(str(bare)) is (name == "melody")
    resolved = resolve("melody", tiny_models)
    assert (resolved.kind, resolved.checkpoint_dir) == ("music", melody.resolve())
    assert fingerprint("melody", tiny_models) != fingerprint("music", tiny_models)


@pytest.mark.slow
def test_tiny_melody_checkpoint_loads_through_audiocraft_and_generates_batched(tiny_models, tmp_path):
    """The real loader (``MusicGen.get_pretrained(dir)``) builds the chroma conditioner with the directory's own
    separator; the backend's batches mix melodies of any length with text-only requests, each request's take
    independent of its neighbours."""
    import torch
    from audiocraft.models import MusicGen
    from audiocraft.modules.conditioners import ChromaStemConditioner
    from demucs.states import load_model

    from assetgen.models.audiocraft_backend import AudiocraftBackend
    from assetgen.models.base import RequestRefused
    from assetgen.models.melody import SEPARATOR_DIR, SEPARATOR_GLOBALS, local_separator
    from assetgen.models.registry import resolve
    from assetgen.models.safe_load import safe_torch_load

    melody_dir = tiny_models / "melody"
    with safe_torch_load(SEPARATOR_GLOBALS), local_separator(melody_dir):
        model = MusicGen.get_pretrained(str(melody_dir), device="cpu")
    cond = model.lm.condition_provider.conditioners["self_wav"]
    assert isinstance(cond, ChromaStemConditioner)
    [stored] = (melody_dir / SEPARATOR_DIR).glob("*.th")
    expected = load_model(torch.load(stored, weights_only=False))
    [loaded] = cond.demucs.models  # the bag demucs built from the directory's repository
    for (name, a), (_, b) in zip(loaded.state_dict().items(), expected.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)

    # the separated melody stems keep the tune's pitch class: the chroma follows the melody
    sr = model.sample_rate
    t = np.arange(2 * sr) / sr
    for hz, pitch_class in ((440.0, 9), (196.0, 7), (311.1, 3)):  # A4, G3, D#4 (chroma bin 0 is C)
        wav = torch.from_numpy(0.3 * np.sin(2 * np.pi * hz * t).astype(np.float32))[None, None]
        chroma = cond._extract_chroma(cond._get_stemmed_wav(wav, sr))
        assert set(chroma[0].argmax(-1).tolist()) == {pitch_class}, hz

    backend = AudiocraftBackend(resolve("melody", tiny_models))
    assert backend.takes_melody
    params = GenParams(duration_s=1.0)
    a, b = tune(tmp_path / "a.wav"), tune(tmp_path / "b.wav", hz=(196.0, 247.0, 294.0))
    sha = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (a, b)}
    reqs = [GenRequest("a", "lead", 5, params, melody_file=str(a), melody_sha256=sha[a]),
            GenRequest("b", "lead", 5, params, melody_file=str(b), melody_sha256=sha[b]),
            GenRequest("n", "lead", 5, params)]
    out = backend.generate(reqs)
    assert [o.shape for o in out] == [(1, 32_000)] * 3
    assert all(np.isfinite(o).all() and np.abs(o).max() > 0 for o in out)
    # same prompt and seed: only the melody differs, and it changes the take
    assert np.abs(out[0] - out[1]).max() > 1e-3 and np.abs(out[0] - out[2]).max() > 1e-3
    [alone] = backend.generate([reqs[0]])
    np.testing.assert_allclose(alone, out[0], atol=1e-4)  # its neighbours do not change a request's take
    [text_only] = backend.generate([reqs[2]])
    np.testing.assert_allclose(text_only, out[2], atol=1e-4)
    # an asset's delivered take (48 kHz stereo) as melody: the same tune as a.wav gives a.wav's take (the chroma
    # is the tune's, whatever its rate and channels)
    audio_a, sr_a = sf.read(a, dtype="float32", always_2d=True)
    from assetgen.dsp.resample import resample

    take = np.repeat(resample(audio_a.T, sr_a, 48_000), 2, axis=0).astype(np.float32)
    [from_take] = backend.generate([GenRequest("t", "lead", 5, params, melody_audio=take, melody_sr=48_000)])
    np.testing.assert_allclose(from_take, out[0], atol=1e-4)
    with pytest.raises(ValueError, match="one length"):
        backend.generate([reqs[0], GenRequest("t", "lead", 5, params, melody_audio=take[:, :24_000],
                                              melody_sr=48_000)])
    tune(b, hz=(220.0,))  # changed since validation: refused alone, the others still generated
    changed = backend.generate(reqs[:2])
    assert isinstance(changed[1], RequestRefused) and "changed since the manifest was validated" in str(changed[1])
    np.testing.assert_allclose(changed[0], out[0], atol=1e-4)

    music = AudiocraftBackend(resolve("music", tiny_models))
    refused = music.generate([reqs[0], reqs[2]])
    assert isinstance(refused[0], RequestRefused) and "no chroma conditioner" in str(refused[0])
    assert refused[1].shape == (1, 32_000)


@pytest.mark.slow
def test_cli_renders_melodies_after_their_bases_and_a_changed_base_rerenders_them(tmp_path, tiny_models):
    """A recording, an asset of the run and a stem set's first stem as melodies: one render delivers them all
    (the stems on one grid), a changed base re-renders what takes its melody and nothing else."""
    import json

    from typer.testing import CliRunner

    from assetgen.cli import app
    from assetgen.stems import Stem, check_stem_set
    from assetgen.store.index import Index
    from assetgen.store.wav import read_loop

    def render(manifest):
        result = CliRunner().invoke(app, [str(a) for a in ("render", manifest, "--out", tmp_path / "out",
                                    "--model-dir", tiny_models, "--no-progress", "--fail-on", "error")],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output, {r["asset"]: r for r in Index(tmp_path / "out").rows(latest_only=True)}

    tune(tmp_path / "tune.wav")
    header = "scene,asset,model,prompt,duration_s,melody,loop,bpm,bars,stem_set,qc\n"
    rows = ("game,theme,music,heroic theme,1,,,,,,none\n"
            "game,lead,melody,bright lead,1,tune.wav,,,,,none\n"
            "game,harmony,melody,warm pads,1.5,theme,,,,,none\n"
            "loops,bass,music,bass groove,,,true,120,1,groove,none\n"
            "loops,keys,melody,keys,,bass,true,120,1,groove,none\n")  # the set's first stem as its melody
    manifest = tmp_path / "m.csv"
    manifest.write_text(header + rows)
    output, first = render(manifest)
    assert {a: r["version"] for a, r in first.items()} == dict.fromkeys(
        ("theme", "lead", "harmony", "bass", "keys"), 1), output
    gen = {a: json.loads(r["params"])["gen"] for a, r in first.items()}
    assert gen["harmony"]["melody"] == "game/theme" and gen["keys"]["melody"] == "loops/bass"
    assert gen["lead"]["melody_sha256"] == hashlib.sha256((tmp_path / "tune.wav").read_bytes()).hexdigest()
    audio, sr = sf.read(tmp_path / "out" / first["harmony"]["path"], always_2d=True)
    assert sr == 48_000 and len(audio) == 72_000 and np.abs(audio).max() > 0
    stems = {a: tmp_path / "out" / first[a]["path"] for a in ("bass", "keys")}
    assert {a: sf.info(p).frames for a, p in stems.items()} == {"bass": 96_000, "keys": 96_000}  # 1 bar at 120
    assert read_loop(stems["bass"]) == read_loop(stems["keys"]) == (0, 96_000)
    check = check_stem_set({a: Stem(sf.read(p, dtype="float32", always_2d=True)[0].T, 48_000, read_loop(p))
                            for a, p in stems.items()})
    assert check.passed, check.reasons  # the sum of the stems loops too
    report = json.loads((tmp_path / "out" / "runs" / "latest.json").read_text())
    assert not [r for e in report["assets"] for r in e.get("qc_reasons", []) if r.startswith("stem_set")]
    assert "melody" in first["keys"]["model"] and "melody" in first["harmony"]["model"]

    manifest.write_text(header + rows.replace("heroic theme", "sad theme"))
    output, second = render(manifest)
    assert {a: r["version"] for a, r in second.items()} == {
        "theme": 2, "harmony": 2, "lead": 1, "bass": 1, "keys": 1}, output
    tune(tmp_path / "tune.wav", hz=(523.0, 392.0))
    again, third = render(manifest)
    assert {a: r["version"] for a, r in third.items()} == {
        "theme": 2, "harmony": 2, "lead": 2, "bass": 1, "keys": 1}, again
