"""Large manifests take bulk paths (pyarrow's CSV parser, rows validated by groups); they must give exactly what the
row-by-row path gives: the same specs in the same order, the same issues and warnings, word for word."""

from __future__ import annotations

import csv
import unicodedata
from pathlib import Path

import pytest

import assetgen.manifest as manifest_mod
import assetgen.manifest._read as read_mod
from assetgen.manifest import ManifestError, load_manifests
from assetgen.manifest._read import _cell, read_table
from assetgen.plan import make_plan

COLUMNS = ["scene", "asset", "model", "prompt", "duration_s", "mood", "temperature", "variants", "loop", "bpm",
           "bars", "layer", "gain_db", "category", "tags", "meta_note", "seed"]
MOODS = ["calm", "tense", "epic", "sad", "warm", "cold", "dark", "bright", "odd", "lush"]
FP = {"music": "fp-music", "sfx": "fp-sfx", "tts": "fp-tts"}


def rows(n: int, messy: bool) -> list[dict[str, str]]:
    """``n`` rows using sweeps, variants, loops, layers with their mix, tts, seeds, metadata, non-ASCII names;
    ``messy`` adds bad cells, unknown placeholders, duplicates and warnings spread over the file."""
    out = []
    for i in range(n):
        r = dict.fromkeys(COLUMNS, "")
        r.update(scene=f"s{i % 150}", asset=f"a{i}", model="music" if i % 2 else "sfx", prompt=f"{{mood}} cue {i}",
                 duration_s=str(2 + i % 3), mood=MOODS[i % 10], category=f"cat{i % 5}", tags="x;y" if i % 7 else "",
                 meta_note=f"note   {i}" if i % 3 else "")  # fmt: skip
        if i % 40 == 0:
            r["mood"] = "calm|tense"
        if i % 60 == 0:
            r["temperature"] = "0.7|1.0"
        if i % 75 == 0:
            r["variants"] = "2"
        if i % 33 == 0:
            r["seed"] = str(i)
        if i % 50 == 3:
            r.update(loop="true", bpm="120", bars="2", duration_s="")
        if i % 97 == 0:
            r.update(model="tts", prompt=f"line number {i}", mood="", temperature="", variants="", seed="", loop="",
                     bpm="", bars="", duration_s="2")  # fmt: skip
        if i == 200:
            r["scene"] = unicodedata.normalize("NFD", "café")  # parsed to NFC
        if i == 210:
            r["prompt"] = "literal {{braces}} and {mood}"  # escaped braces: the template parser decides
        if 2000 <= i < 2012:  # layers of one scene: its default mix
            r.update(scene="tavern", layer=f"l{i}", gain_db="-3", mood="warm")
        if messy:
            bad = {100: ("scene", "report"), 300: ("scene", "con"), 400: ("scene", "bad/scene"),
                   500: ("asset", "a..b"), 600: ("asset", "x" * 130), 155: ("asset", "a5"),
                   250: ("model", "bogus"), 307: ("prompt", "{wether} cue"), 910: ("prompt", ""),
                   1000: ("duration_s", "abc"), 1001: ("duration_s", "1,5"), 1002: ("duration_s", "0"),
                   1200: ("mood", "calm|calm"), 1210: ("mood", ""), 1300: ("temperature", "99"),
                   1304: ("bpm", "100"), 1500: ("layer", "x"), 1600: ("meta_note", "bad\x07note"),
                   1700: ("category", "cat\u200b"), 1800: ("asset", "")}  # fmt: skip
            if i in bad:
                r[bad[i][0]] = bad[i][1]
        out.append(r)
    return out


def write(path: Path, table: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, COLUMNS)
        w.writeheader()
        w.writerows(table)
    return path


def load(path: Path, bulk: bool, monkeypatch) -> tuple[list, list, list]:
    """(specs, issues, warnings) of ``path`` on the bulk paths or row by row."""
    monkeypatch.setattr(manifest_mod, "BULK_ROWS", 0 if bulk else 10**12)
    monkeypatch.setattr(read_mod, "BULK_CSV_BYTES", 0 if bulk else 10**15)
    found: list = []
    try:
        specs = load_manifests([path], max_assets=100_000, warnings=found)
    except ManifestError as exc:
        return [], [(i.file, i.row, i.column, i.value, i.message) for i in exc.issues], [str(w) for w in found]
    return specs, [], [str(w) for w in found]


def test_a_clean_manifest_expands_to_the_same_specs_and_keys(tmp_path, monkeypatch):
    path = write(tmp_path / "clean.csv", rows(3000, messy=False))
    bulk, reference = load(path, True, monkeypatch), load(path, False, monkeypatch)
    specs, issues, warnings = reference
    assert not issues and len(specs) > 3000
    assert bulk == reference
    keys = [i.key for i in make_plan(bulk[0], {}, FP).items]
    assert keys == [i.key for i in make_plan(specs, {}, FP).items]


def test_a_messy_manifest_gives_the_same_issues_and_warnings(tmp_path, monkeypatch):
    path = write(tmp_path / "messy.csv", rows(3000, messy=True))
    bulk, reference = load(path, True, monkeypatch), load(path, False, monkeypatch)
    issues, warnings = reference[1], reference[2]
    assert len(issues) >= 15 and warnings
    assert {i[1] for i in issues} >= {102, 302, 402, 502, 602, 252, 309, 1002, 1003, 1004, 1302, 1802}
    assert bulk == reference


@pytest.mark.parametrize("text", [
    "a,b\n1,2\n\n3,4\n",  # blank line: later rows keep their line numbers
    "a,b\n1,2\n , \n3,4\n",  # a line of empty cells is blank too
    "a,b\n\"x\ny\",2\n3,4\n",  # a record spanning two lines
    "\ufeffa,b\r\n 1 ,\t2\r\n3,4\r\n",  # BOM, CRLF, cells stripped
    "a,b\n\x1c1,2\x1f\n3,4\n",  # str.strip's whitespace beyond Unicode's
    "a,b\n1,2,3\n3,4\n",  # a row of another width
    "a,b\n1,\"2\"x\n\"3\"\"\",4\n",  # quotes as the csv module reads them
    "a,b\n1,2\x003\n",  # NUL
    "a;b;c\n1;2;3\n",  # another separator
    "a,a\n1,2\n",  # a column twice
])
def test_bulk_csv_reading_equals_the_csv_module(tmp_path, monkeypatch, text):
    path = tmp_path / "t.csv"
    path.write_bytes(text.encode("utf-8"))

    def read(bulk: bool):
        monkeypatch.setattr(read_mod, "BULK_CSV_BYTES", 0 if bulk else 10**15)
        try:
            table = read_table(path)
        except read_mod.ReadError as exc:
            return [(i.row, i.column, i.value, i.message) for i in exc.issues]
        return table.columns, table.rows, table.header_row

    assert read(True) == read(False)


def test_parquet_cells_are_each_value_as_text(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    columns = {
        "scene": pa.array(["s", " s", None, "s"] * 3),
        "asset": pa.array([f"a{i}" for i in range(12)]).dictionary_encode(),
        "duration_s": pa.array([1.5, -0.0, 0.0, float("nan")] * 3),
        "bars": pa.array([1, None, 3, 1] * 3, pa.int64()),
        "loop": pa.array([True, False, None, True] * 3),
    }
    pq.write_table(pa.table(columns), tmp_path / "t.parquet")
    table = read_table(tmp_path / "t.parquet")
    assert table.labels[:2] == ["row 0", "row 1"] and len(table) == 12
    for name, values in columns.items():
        expected = [_cell(v) for v in (values.dictionary_decode() if name == "asset" else values).to_pylist()]
        assert table.data[name].cells() == expected, name
