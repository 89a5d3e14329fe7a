"""The render's stage functions and decisions without Prefect: outcomes and failures against a real AssetStore,
partial-batch retries, exception classification, post-processing splits, mixes with failed layers, progress."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from assetgen import render
from assetgen.models.base import CheckpointRefused, GenerationError
from assetgen.models.registry import ModelUnavailable
from assetgen.plan import Batch, Plan, PlanItem
from assetgen.progress import RenderProgress
from assetgen.render import Failure, GenResult, ModelLoadError
from assetgen.seeds import attempt_seed
from assetgen.spec import AssetSpec, GenParams, PostParams, ProcessedAudio, Source
from assetgen.store import AssetStore, Index
from assetgen.store.store import Encoded, encode_for_delivery

SR = 16000


def item(asset: str, scene: str = "s", key: str | None = None, **post) -> PlanItem:
    spec = AssetSpec(scene=scene, asset=asset, model="sfx", prompt=f"{asset} sound", seed=len(asset),
                     gen=GenParams(duration_s=0.5), post=PostParams(**post))
    return PlanItem(spec, key or f"key-{scene}-{asset}", "new")


def mix_item(layers: tuple[str, ...], scene: str = "s") -> PlanItem:
    spec = AssetSpec(scene=scene, asset="mix", model="mix", prompt="", seed=0, gen=GenParams(duration_s=0.5),
                     layers=layers)
    return PlanItem(spec, f"key-{scene}-mix", "new")


def noise(seed: int, channels: int = 1, frames: int = 9000) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal((channels, frames))).astype(np.float32)


def gen_result(items, audio) -> GenResult:
    return GenResult(items=list(items), audio=list(audio), sample_rate=SR, model_label="sfx", placeholder=True)


def raised(exc: BaseException) -> BaseException:
    """``exc`` with a traceback (as a task's exception has one)."""
    try:
        raise exc
    except BaseException as caught:  # noqa: BLE001
        return caught


# -- failures --------------------------------------------------------------------------------------------------

def test_failure_keeps_stage_type_message_and_where():
    exc = raised(ValueError("bad fx"))
    f = Failure.from_exception("dsp", exc, location=False)
    assert (f.stage, f.error_type, f.message, f.where) == ("dsp", "ValueError", "bad fx", "")
    assert f.text == "dsp: ValueError: bad fx"
    g = Failure.from_exception("generate", exc)
    assert g.where.startswith(" (test_render_logic.py:") and g.text == f"ValueError: bad fx{g.where}"
    assert Failure.from_exception("store", RuntimeError("x")).text == "RuntimeError: x"  # no traceback: no where
    assert render.mix_blocked(["a", "c"]).text == "layer(s) failed: a, c"
    assert pickle.loads(pickle.dumps(g)) == g  # crosses process boundaries (DSP process, Dask)


def test_unloadable_checkpoint_reports_the_original_exception_and_is_not_retried():
    class BrokenCache:
        def get(self, ref, model_dir=None, device=None):
            raise EOFError("Ran out of input")

    batch = Batch(model="sfx", params=GenParams(duration_s=0.5), items=(item("a"),))
    with pytest.raises(ModelLoadError) as caught:
        render.generate_batch(batch, cache=BrokenCache())
    exc = pickle.loads(pickle.dumps(caught.value))  # as it comes back from a Dask worker
    assert not render.is_transient(exc)
    f = Failure.from_exception("generate", exc)
    assert (f.error_type, f.message) == ("EOFError", "loading model 'sfx': Ran out of input")
    assert f.where.startswith(" (test_render_logic.py:")  # the frame that raised the original error
    assert "UnfinishedRun" not in f.text and "ModelLoadError" not in f.text


def test_transient_classification():
    for permanent in (render.InvalidInput("x"), ModelUnavailable("x"), CheckpointRefused("x"),
                      ModelLoadError("m", "EOFError", "")):
        assert not render.is_transient(permanent), permanent
    for transient in (RuntimeError("worker lost"), GenerationError("out of memory generating a single request"),
                      OSError("connection reset")):
        assert render.is_transient(transient), transient


def test_per_request_failures_become_failures_of_their_items():
    class HalfBackend:
        sample_rate, name, placeholder = SR, "sfx", True

        def generate(self, requests):
            raise RuntimeError("device lost")

    class OneCache:
        def get(self, ref, model_dir=None, device=None):
            return HalfBackend()

    batch = Batch(model="sfx", params=GenParams(duration_s=0.5), items=(item("a"), item("b")))
    gen = render.generate_batch(batch, cache=OneCache())
    assert [f.text for f in gen.failures] == ["RuntimeError: device lost"] * 2


# -- partial-batch retry ---------------------------------------------------------------------------------------

def test_partly_failed_batch_is_retried_until_the_last_attempt():
    items = [item("a"), item("b"), item("c")]
    partial = gen_result(items, [noise(0), Failure("generate", "GenerationError", "out of memory"), noise(1)])
    assert render.retry_reason(partial, attempt=1, attempts=3) == \
        "1 of 3 requests failed, retrying: GenerationError: out of memory"
    assert render.retry_reason(partial, attempt=2, attempts=3) is not None
    assert render.retry_reason(partial, attempt=3, attempts=3) is None  # last attempt: deliver what worked
    whole = gen_result(items, [noise(0), noise(1), noise(2)])
    assert render.retry_reason(whole, attempt=1, attempts=3) is None


@pytest.mark.parametrize("index,n_batches,n_items,isolated,parts", [
    (2, 3, 16, True, 2),  # the last batch of a local render: half in the DSP process, half in the flow
    (0, 3, 16, True, 1),  # earlier batches: the flow process's core generates
    (0, 1, 1, True, 1),  # one item cannot be split
    (2, 3, 16, False, 1),  # Dask: each worker post-processes its own batch
])
def test_postprocess_parts(index, n_batches, n_items, isolated, parts):
    assert render.postprocess_parts(index, n_batches, n_items, isolated) == parts


# -- outcomes against a real store -----------------------------------------------------------------------------

def test_outcomes_commit_or_record_each_failure_with_its_stage(tmp_path):
    store = AssetStore(tmp_path)
    ok, dsp_bad, gen_bad = item("ok", loop=False), item("dsp_bad"), item("gen_bad")
    gen = gen_result([ok, dsp_bad, gen_bad],
                     [noise(0), np.zeros((2, 3, 4), np.float32), Failure("generate", "GenerationError", "oom")])
    processed = render.postprocess_batch(gen)
    assert isinstance(processed[0][1], Encoded) and processed[0][1].info.audio.shape == (2, 0)
    assert isinstance(processed[1][1], Failure) and processed[1][1].stage == "dsp"
    with store.lock():
        outcomes = [render.record_outcome(store, it, result, model_label="sfx", placeholder=True, run_id="r1")
                    for it, result in processed]
    assert [o.ok for o in outcomes] == [True, False, False]
    assert [o.stage for o in outcomes] == [None, "dsp", "generate"]
    row = outcomes[0].row
    path = tmp_path / row["path"]
    assert row["path"] == "s/ok/ok_v001.wav" and hashlib.sha256(path.read_bytes()).hexdigest() == row["sha256"]
    data, sr = sf.read(path, dtype="float32", always_2d=True)
    assert sr == 48000 and data.shape[1] == 2 and info_matches(row, processed[0][1])
    failures = Index(tmp_path).failures("r1")
    assert [(f["asset"], f["stage"], f["error"]) for f in failures] == [
        ("dsp_bad", "dsp", outcomes[1].error), ("gen_bad", "generate", "GenerationError: oom")]
    assert outcomes[1].error.startswith("dsp: ") and outcomes[1].failure.error_type != ""


def info_matches(row: dict, encoded: Encoded) -> bool:
    return row["lufs"] == pytest.approx(encoded.info.lufs) and row["channels"] == encoded.samples.channels


def test_a_failed_commit_fails_its_asset_at_stage_store(tmp_path):
    store = AssetStore(tmp_path)
    it = item("taken")
    (tmp_path / "s" / "taken").mkdir(parents=True)
    (tmp_path / "s" / "taken" / "taken_v001.wav").write_bytes(b"a file the index does not know")
    encoded = encode_for_delivery(ProcessedAudio(noise(3, 2), 48000, -23.0, -2.0), 24)
    with store.lock():
        outcome = render.record_outcome(store, it, encoded, model_label="sfx", placeholder=True, run_id="r2")
    assert not outcome.ok and outcome.stage == "store" and outcome.failure.error_type == "StoreError"
    (failure,) = Index(tmp_path).failures("r2")
    assert failure["stage"] == "store" and failure["error"] == outcome.error and "run reconcile" in outcome.error


def test_encoded_commit_equals_float_commit(tmp_path):
    """The store encodes; encoding in the DSP process or at commit gives the same file bytes."""
    processed = ProcessedAudio(noise(4, 2), 48000, -23.0, -2.0, loop_start=0, loop_end=9000, seam_score=0.1)
    rows = []
    for name, payload in (("a", processed), ("b", encode_for_delivery(processed, 24))):
        store = AssetStore(tmp_path / name)
        with store.lock():
            rows.append(render.commit(store, item("x", key="k"), payload, model_label="m", placeholder=False,
                                      run_id="r"))
    a, b = (tmp_path / n / r["path"] for n, r in zip("ab", rows))
    np.testing.assert_array_equal(sf.read(a, dtype="int32")[0], sf.read(b, dtype="int32")[0])
    same = [c for c in rows[0] if c not in ("id", "sha256", "created_at", "path")]
    assert {c: rows[0][c] for c in same} == {c: rows[1][c] for c in same}


def test_batch_failure_fails_every_item_of_its_part(tmp_path):
    store = AssetStore(tmp_path)
    items = [item("a"), item("b")]
    with store.lock():
        outcomes = render.record_batch_failure(store, items, "generate", raised(EOFError("truncated")), "r3")
    assert [o.ident for o in outcomes] == ["s/a", "s/b"]
    assert all(o.failure.error_type == "EOFError" and o.failure.message == "truncated" for o in outcomes)
    assert [f["stage"] for f in Index(tmp_path).failures("r3")] == ["generate", "generate"]


# -- mixes -----------------------------------------------------------------------------------------------------

def test_mix_with_a_failed_layer_fails_and_names_it(tmp_path):
    store = AssetStore(tmp_path)
    mix = mix_item(("wind", "rain", "birds"))
    failed = {"s/rain", "other/wind"}
    assert render.mix_blockers(mix.spec, failed) == ["rain"]
    assert render.mix_blockers(mix.spec, {"other/wind"}) == []
    with store.lock():
        outcome = render.record_failure(store, mix, render.mix_blocked(["rain"]), "r4")
    assert (outcome.stage, outcome.error) == ("mix", "layer(s) failed: rain")
    (row,) = Index(tmp_path).failures("r4")
    assert (row["asset"], row["stage"], row["error"]) == ("mix", "mix", "layer(s) failed: rain")


def test_mix_reads_its_layers_latest_versions_through_the_store(tmp_path):
    store = AssetStore(tmp_path)
    wind, rain = item("wind"), item("rain", gain_db=-6.0)
    with store.lock():
        for it, seed in ((wind, 5), (rain, 6)):
            render.commit(store, it, ProcessedAudio(noise(seed, 2, 24000), 48000, -23.0, -3.0),
                          model_label="sfx", placeholder=True, run_id="r5")
        newer = ProcessedAudio(noise(7, 2, 24000), 48000, -23.0, -3.0)
        render.commit(store, item("wind", key="key-wind-2"), newer, model_label="sfx", placeholder=True,
                      run_id="r5")
    audio, sr, row = store.read_latest("s", "wind")
    assert (sr, row["version"], audio.dtype, audio.shape) == (48000, 2, np.float32, (2, 24000))
    np.testing.assert_allclose(audio, newer.audio, atol=2.0 ** -22)  # 24-bit quantisation
    assert store.read_latest("s", "nothing") is None
    layer_specs = {"s/wind": wind.spec, "s/rain": rain.spec}
    paths = render.mix_layer_paths(store, mix_item(("wind", "rain")).spec)
    assert paths == {"wind": "s/wind/wind_v002.wav", "rain": "s/rain/rain_v001.wav"}
    layers = render.mix_layers_audio(store.files, mix_item(("wind", "rain")).spec, layer_specs, paths)
    assert [layer[2].gain_db for layer in layers] == [0.0, -6.0]
    np.testing.assert_array_equal(layers[0][0], audio)
    out = render.render_mix(store.files, mix_item(("wind", "rain")), layer_specs, paths)
    assert out.audio.dtype == np.float32 and out.audio.shape[0] == 2 and out.sample_rate == 48000
    with pytest.raises(RuntimeError, match="layer s/gone has no rendered version"):
        render.mix_layer_paths(store, mix_item(("gone",)).spec)


def test_mix_label_lists_layer_models_and_placeholder():
    class Model:
        def __init__(self, label, placeholder):
            self.label, self.placeholder = label, placeholder

    a = item("a").spec.replace(model="music")
    b = item("b").spec
    specs = {"s/a": a, "s/b": b}
    models = {"music": Model("musicgen", False), "sfx": Model("PLACEHOLDER audiogen", True)}
    assert render.mix_label(mix_item(("b", "a")).spec, specs, models) == ("mix of PLACEHOLDER audiogen, musicgen",
                                                                         True)
    assert render.mix_label(mix_item(("a",)).spec, specs, models) == ("mix of musicgen", False)


# -- summary and progress --------------------------------------------------------------------------------------

def test_summary_counts_versions_and_failures():
    class Plan:
        def counts(self):
            return {"new": 2}

    class Model:
        placeholder = False

    prepared = render.Prepared(specs=[], plan=Plan(), batches=[], mixes=[], models={"m": Model()}, fingerprints={})
    outcomes = [render.Outcome("s/a", "k", row={"scene": "s", "asset": "a", "version": 1, "path": "p", "extra": 1},
                               notes=("tempo 121.40 BPM (beat-tracked)",)),
                render.Outcome("s/b", "k2", failure=Failure("dsp", "ValueError", "bad"))]
    out = render.summary(prepared, outcomes, "run")
    assert out["rendered"] == 1 and out["plan"] == {"new": 2} and out["placeholder"] is False
    assert out["failed"] == [{"asset": "s/b", "stage": "dsp", "error": "dsp: ValueError: bad"}]
    assert out["versions"][0]["path"] == "p" and "extra" not in out["versions"][0]
    assert out["versions"][0]["notes"] == ["tempo 121.40 BPM (beat-tracked)"]  # logged by the flow


def test_summary_separates_repairs_from_new_versions_and_a_failed_repair_fails_the_run():
    from types import SimpleNamespace

    from assetgen.plan import Plan, PlanItem
    from assetgen.runreport import exit_code

    def planned(ident, state):
        return PlanItem(SimpleNamespace(ident=ident), "k-" + ident, state)

    plan = Plan([planned("s/a", "repair"), planned("s/b", "repair"), planned("s/c", "new")])
    prepared = render.Prepared(specs=[], plan=plan, batches=[], mixes=[], models={}, fingerprints={})
    row = {"scene": "s", "version": 1, "path": "p"}
    outcomes = [render.Outcome("s/a", "k-s/a", row={**row, "asset": "a"}),
                render.Outcome("s/b", "k-s/b", failure=Failure("generate", "RuntimeError", "boom")),
                render.Outcome("s/c", "k-s/c", row={**row, "asset": "c"})]
    out = render.summary(prepared, outcomes, "run")
    assert out["plan"] == {"new": 1, "changed": 0, "up-to-date": 0, "repair": 2, "orphaned": 0}
    assert out["rendered"] == 1 and out["repaired"] == ["s/a"] and len(out["versions"]) == 2
    assert [f["asset"] for f in out["failed"]] == ["s/b"]
    assert exit_code(len(out["failed"]), 0, "error") == 1


def test_progress_bars_count_and_disabled_bars_do_nothing():
    class Prepared:
        batches = [Batch("sfx", GenParams(duration_s=2.0), (item("a"), item("b")))]
        mixes = [mix_item(("a",))]
        plan = Plan([item("a"), item("b")])  # no continuations: every generation is in ``batches``

    off = RenderProgress(False)
    off.start(Prepared())
    off.advance("generate", 2)
    off.stop()
    on = RenderProgress(True)
    on.start(Prepared())
    try:
        on.advance("generate", 2, 1.0)
        on.advance("write", 1)
        gen_task, write_task = on._bar.tasks
        assert (gen_task.completed, gen_task.total, gen_task.fields["extra"]) == (2, 2, "1/1 audio-s")
        assert (write_task.completed, write_task.total) == (1, 3)
    finally:
        on.stop()
    on.advance("write", 1)  # after stop: no bar, no error


def test_version_lines_list_what_needs_a_look_or_everything():
    summary = {"versions": [
        {"scene": "m", "asset": "theme", "version": 2, "lufs": -14.0, "true_peak_dbtp": -1.02, "tempo_bpm": 121.4,
         "audio_status": "ok", "notes": ["tempo 121.40 BPM (beat-tracked)"]},
        {"scene": "m", "asset": "whale", "version": 1, "lufs": -15.71, "true_peak_dbtp": -1.0, "tempo_bpm": None,
         "audio_status": "loudness-unreachable", "notes": ["limited: up to 12.0 dB of gain reduction"]}]}
    assert render.version_lines(summary) == [
        "m/whale v1: -15.7 LUFS, -1.0 dBTP, loudness-unreachable (limited: up to 12.0 dB of gain reduction)"]
    assert render.version_lines(summary, everything=True)[0] == \
        "m/theme v2: -14.0 LUFS, -1.0 dBTP, 121.40 BPM (tempo 121.40 BPM (beat-tracked))"


# -- QC: re-rolls and the delivered take -------------------------------------------------------------------------

def recording(name: str, seconds: float = 0.5) -> np.ndarray:
    """A freedesktop recording (tests/data) at SR, looped or cut to ``seconds``: a real take."""
    import librosa

    x, sr = sf.read(f"{Path(__file__).parent}/data/{name}.oga", dtype="float32", always_2d=True)
    y = librosa.resample(np.ascontiguousarray(x.T), orig_sr=sr, target_sr=SR)
    n = round(seconds * SR)
    return np.ascontiguousarray(np.tile(y, (1, -(-n // y.shape[1])))[:, :n])


def sibling(asset: str, row: int = 2, **post) -> PlanItem:
    it = item(asset, **post)
    return dataclasses.replace(it, spec=it.spec.replace(source=Source("m.csv", row)))


def takes(items, audio) -> list:
    """Post-process generated ``audio`` for ``items`` (the real DSP chain and gates)."""
    return render.postprocess_batch(gen_result(items, audio))


def test_a_silent_take_is_generated_again_with_the_next_attempt_seed_and_the_passing_take_delivered(tmp_path):
    it = item("boom")
    chooser = render.TakeChooser([it])
    [(_, first)] = takes([it], [1e-6 * recording("complete")])  # -120 dBFS: near silence
    assert [g.name for g in first.info.gates if g.rerolls] == ["silence"]
    chooser.add(it, first, "sfx", True)
    [again] = chooser.rerolls()
    assert (again.attempt, again.seed) == (2, attempt_seed(it.spec.seed, 2)) and again.seed != it.spec.seed
    assert chooser.settled() == [] and chooser.pending == ["s/boom"]
    [(_, second)] = takes([again], [recording("complete")])
    chooser.add(again, second, "sfx", True)
    [settled] = chooser.settled()
    assert settled.item.attempt == 2 and chooser.rerolls() == [] and chooser.pending == []
    assert [(a["attempt"], a["passed"], a["chosen"]) for a in settled.attempts] == [(1, False, False), (2, True, True)]
    store = AssetStore(tmp_path)
    with store.lock():
        outcome = render.record_settled(store, settled, "r1")
    row = Index(tmp_path).get("s", "boom")
    assert outcome.attempts == 2 and row["qc"] == "pass" and json.loads(row["qc_reasons"]) == []
    assert row["seed"] == again.seed and row["audio_status"] == "ok"
    assert json.loads(row["params"])["attempt"] == 2 and json.loads(row["params"])["asset_seed"] == it.spec.seed
    stored = Index(tmp_path).attempts("s", "boom")
    assert [(a["attempt"], a["seed"], a["passed"], a["chosen"], a["run_id"]) for a in stored] == [
        (1, it.spec.seed, 0, 0, "r1"), (2, again.seed, 1, 1, "r1")]
    assert {g["name"] for g in stored[0]["gates"] if not g["passed"]} == {"silence", "loudness"}  # too quiet to meter


def test_out_of_attempts_delivers_the_best_take_with_qc_failed_and_its_reasons(tmp_path):
    it = item("hiss", max_attempts=2)
    chooser = render.TakeChooser([it])
    [(_, first)] = takes([it], [np.zeros((1, 8000), np.float32)])  # digital silence
    chooser.add(it, first)
    [again] = chooser.rerolls()
    # clipped: fails a re-roll gate too, but only that one (silence could not be metered either)
    [(_, second)] = takes([again], [np.clip(8.0 * recording("complete"), -1.0, 1.0)])
    chooser.add(again, second)
    assert chooser.rerolls() == []
    [settled] = chooser.settled()
    info = settled.payload.info
    assert settled.item.attempt == 2 and info.qc == "fail"
    assert [r.split(":")[0] for r in info.qc_reasons] == ["clipping"] and "clipped" in info.qc_reasons[0]
    store = AssetStore(tmp_path)
    with store.lock():
        render.record_settled(store, settled, "r2")
    row = Index(tmp_path).get("s", "hiss")
    assert row["qc"] == "fail" and row["audio_status"] != "ok"
    assert json.loads(row["qc_reasons"]) == list(info.qc_reasons)
    assert [a["chosen"] for a in Index(tmp_path).attempts("s", "hiss")] == [0, 1]


def test_failing_only_a_delivery_gate_is_not_generated_again():
    it = item("loud", loudness_lufs=-3.0, max_limit_db=0.0)  # unreachable: a delivery matter, not the seed's
    chooser = render.TakeChooser([it])
    [(_, take)] = takes([it], [recording("complete")])
    chooser.add(it, take)
    assert chooser.rerolls() == []
    [settled] = chooser.settled()
    info = settled.payload.info
    assert info.qc == "fail" and any("loudness-unreachable" in r for r in info.qc_reasons)
    assert [a["attempt"] for a in settled.attempts] == [1]


def test_near_duplicate_siblings_are_judged_in_ident_order_whatever_finishes_first():
    a, b, other = sibling("a"), sibling("b"), sibling("c", row=3)
    bell, copy = recording("bell"), 0.5 * recording("bell")
    for order in ("ab", "ba"):
        chooser = render.TakeChooser([a, b, other])
        results = dict(zip("abc", (r for _, r in takes([a, b, other], [bell, copy, copy]))))
        for name in order:
            chooser.add({"a": a, "b": b}[name], results[name])
        chooser.add(other, results["c"])  # another row: never compared with a or b
        settled = {s.item.spec.asset: s for s in chooser.settled()}
        assert set(settled) == {"a", "c"}  # b is a copy of a: generated again, a and c delivered
        [again] = chooser.rerolls()
        assert again.spec.asset == "b" and again.attempt == 2
        [(_, fresh)] = takes([again], [recording("complete")])
        chooser.add(again, fresh)
        [b_settled] = chooser.settled()
        dup = [g for g in b_settled.payload.info.gates if g.name == "near_duplicate"]
        assert b_settled.payload.info.qc == "pass" and dup[0].passed and dup[0].value > 0.09
        first_dup = [g for g in b_settled.attempts[0]["gates"] if g["name"] == "near_duplicate"]
        assert not first_dup[0]["passed"] and "near-duplicate of s/a" in first_dup[0]["reason"]


def test_delivered_siblings_count_only_before_the_asset_and_come_from_the_stored_raw_embedding(tmp_path):
    """A new sibling is compared with the delivered siblings that sort before it (as a render of the whole row
    would compare it), using the raw take's embedding stored in each delivered WAV."""
    from assetgen.plan import PlanItem

    a, c = sibling("a"), sibling("c")
    store = AssetStore(tmp_path)
    with store.lock():
        for it, audio in ((a, recording("bell")), (c, recording("complete"))):
            [(_, take)] = takes([it], [audio])
            render.record_settled(store, render.Settled(it, take, "sfx", True, None, []), "r1")
    up = [PlanItem(x.spec, x.key, "up-to-date") for x in (a, c)]
    b = sibling("b")
    external = render.delivered_siblings(store, [*up, b])
    [(group, stored)] = external.items()
    assert [i for i, _ in stored] == ["s/a", "s/c"]
    [(_, bell)] = takes([a], [recording("bell")])
    assert stored[0][1] == pytest.approx(bell.info.embedding, abs=1e-5)  # the raw take's, not the file's
    # b is a copy of c (after it) and not of a (before it): delivered as it is
    chooser = render.TakeChooser([b], external=external)
    [(_, copy_of_c)] = takes([b], [0.5 * recording("complete")])
    chooser.add(b, copy_of_c)
    assert chooser.rerolls() == []
    [settled] = chooser.settled()
    dup = next(g for g in settled.payload.info.gates if g.name == "near_duplicate")
    assert dup.passed and dup.value > 0.09
    # a copy of a is a near-duplicate of the delivered a: generated again
    chooser = render.TakeChooser([b], external=external)
    [(_, copy_of_a)] = takes([b], [0.5 * recording("bell")])
    chooser.add(b, copy_of_a)
    [again] = chooser.rerolls()
    assert again.attempt == 2
    assert render.delivered_siblings(store, [*up]) == {}  # nothing generated: nothing read


def test_a_waived_row_runs_no_gates_and_is_never_generated_again():
    it = item("free", qc="none")
    chooser = render.TakeChooser([it])
    [(_, take)] = takes([it], [np.zeros((1, 8000), np.float32)])
    assert take.info.gates == () and take.info.qc == "waived"
    chooser.add(it, take)
    [settled] = chooser.settled()
    assert settled.payload.info.qc == "waived" and chooser.rerolls() == []


def test_a_generation_failure_settles_as_a_failure_and_keeps_earlier_takes():
    it = item("flaky")
    chooser = render.TakeChooser([it])
    chooser.add(it, Failure("generate", "GenerationError", "oom"))
    [settled] = chooser.settled()
    assert settled.failure.message == "oom" and settled.payload is None
    chooser = render.TakeChooser([it])
    [(_, silent)] = takes([it], [np.zeros((1, 8000), np.float32)])
    chooser.add(it, silent)
    [again] = chooser.rerolls()
    chooser.add(again, Failure("generate", "GenerationError", "oom"))
    [settled] = chooser.settled()
    assert settled.failure is None and settled.payload.info.qc == "fail" and settled.item.attempt == 1


def test_max_attempts_default_fills_rows_without_one_and_reroll_batches_group_them():
    specs = [item("a").spec, item("b", max_attempts=5).spec]
    filled = render.with_max_attempts(specs, 4)
    assert [s.post.max_attempts for s in filled] == [4, 5]
    with pytest.raises(render.InvalidInput):
        render.with_max_attempts(specs, 0)
    rerolls = [dataclasses.replace(item(n), attempt=2) for n in "abc"]
    [batch] = render.reroll_batches(rerolls, 8)
    assert [r.seed for r in batch.requests()] == [attempt_seed(i.spec.seed, 2) for i in rerolls]


def test_artifact_rows_carry_qc_verdict_reasons_and_attempts():
    summary = {"versions": [{"scene": "s", "asset": "a", "qc": "fail", "qc_reasons": ["silent: x", "dc: y"],
                             "attempts": 3, "notes": []}]}
    assert render.artifact_rows(summary) == [{"scene": "s", "asset": "a", "qc": "fail",
                                              "qc_reasons": "silent: x; dc: y", "attempts": 3, "notes": ""}]
