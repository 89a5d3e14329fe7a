"""Retired and orphaned assets: `assetgen retire` (by name, --orphans against manifests), export leaves retired
assets out in every mode, the report page marks orphaned and retired assets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from assetgen.report.build import build_report, lifecycle
from assetgen.report.export import MANIFEST_NAME, export_assets
from assetgen.store.index import Index
from tests.test_report_helpers import add_asset, tone


def run(*args):
    from assetgen.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    add_asset(root, "forest", "birds", tone(freq=300), status="approved")
    add_asset(root, "forest", "wind", tone(freq=200), status="approved")
    add_asset(root, "town", "bell", tone(freq=600), status="approved")
    Index(root).record_presence(["forest/birds", "forest/wind"], "run7")  # a render no longer naming town/bell
    return root


def manifest(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "m.csv"
    lines = [f"{r},sfx,a {r.replace(',', ' ')} sound,1\n" for r in rows]
    path.write_text("scene,asset,model,prompt,duration_s\n" + "".join(lines))
    return path


def test_retire_orphans_against_manifests_then_export_leaves_them_out(root, tmp_path):
    to = tmp_path / "engine"
    first = export_assets(root, to)
    assert sorted(first.copied) == ["forest_birds.wav", "forest_wind.wav", "town_bell.wav"]
    m = manifest(tmp_path, "forest,birds")
    result = run("retire", "--orphans", "--out", root, m, "--reason", "cut from the level")
    assert result.exit_code == 0, result.output
    assert "retired 2 asset(s): forest/wind, town/bell" in result.output
    retired = Index(root).retired()
    assert sorted(retired) == ["forest/wind", "town/bell"] and retired["town/bell"]["reason"] == "cut from the level"
    assert Index(root).orphans()["town/bell"]["since_run"] == "run7"  # kept: the render saw it first
    assert Index(root).orphans()["forest/wind"]["since_run"] is None  # found by retire --orphans
    for n, (mode, failing) in enumerate((("approved", False), ("all-latest", False), ("all-latest", True))):
        again = export_assets(root, to, mode=mode, include_failing=failing)
        assert again.delivered == 1 and again.retired == ["forest/wind", "town/bell"], (mode, failing)
        assert "left out 2 retired asset(s): forest/wind, town/bell" in str(again)
        # the first export after retiring no longer lists their files; they stay in the folder
        assert sorted(again.stale) == (["forest_wind.wav", "town_bell.wav"] if n == 0 else [])
        assert (to / "town_bell.wav").is_file()
        assert [line.split(",")[0] for line in (to / MANIFEST_NAME).read_text().splitlines()[1:]] == ["forest"]
    assert all((root / r["path"]).is_file() for r in Index(root).rows())  # files kept
    assert "no orphaned assets" in run("retire", "--orphans", "--out", root, manifest(
        tmp_path, "forest,birds", "forest,wind", "town,bell")).output


def test_retire_by_name_and_its_one_line_errors(root):
    ok = run("retire", "town/bell", "--out", root)
    assert ok.exit_code == 0 and "retired 1 asset(s): town/bell" in ok.output
    assert "note" not in ok.output  # the last render found it orphaned
    named = run("retire", "forest/wind", "town/bell", "--out", root)
    assert "retired 1 asset(s): forest/wind; already retired: town/bell" in named.output
    assert "note: no render has found forest/wind orphaned" in named.output
    for args, message in ((["town/nope"], "town/nope: no such asset in the index"),
                          (["town/bell@v1"], "'town/bell@v1': expected SCENE/ASSET"),
                          (["bell"], "'bell': expected SCENE/ASSET")):
        bad = run("retire", *args, "--out", root)
        assert bad.exit_code == 2 and message in bad.output and "Traceback" not in bad.output, bad.output
        assert len(bad.output.strip().splitlines()) == 1, bad.output
    unrelated = run("retire", "--orphans", "--out", root, manifest(root.parent, "t,other"))
    assert unrelated.exit_code == 2 and "these manifests name none of the 3 asset(s)" in unrelated.output
    assert len(unrelated.output.strip().splitlines()) == 1, unrelated.output
    missing = run("retire", "--orphans", "--out", root, root / "nope.csv")
    assert missing.exit_code == 2 and "manifest not found" in missing.output
    assert sorted(Index(root).retired()) == ["forest/wind", "town/bell"]


def test_report_page_marks_orphaned_and_retired(root):
    Index(root).retire(["forest/wind"], user="jo", reason="replaced")
    Index(root).record_presence(["forest/birds"], "run8")
    html = build_report(root).read_text()
    cards = dict(re.findall(r'data-asset="(\w+)"[^>]*data-lifecycle="(\w*)"', html, flags=re.S))
    assert cards == {"birds": "", "wind": "retired", "bell": "orphaned"}, cards
    assert "not in the manifest since run run7; kept and still exported until retired" in html
    assert re.search(r"retired by jo on \d{4}-\d\d-\d\d: replaced; export leaves it out "
                     r"\(not in the manifest since run run8\)", html)


def test_lifecycle_notes():
    assert lifecycle(None, None) == ("", "")
    assert lifecycle({"since_run": None}, None) == ("orphaned", "not in the manifests; kept and still exported "
                                                                 "until retired")
    assert lifecycle(None, {"retired_at": "2026-01-02T03:04:05Z", "user": None, "reason": None}) == \
        ("retired", "retired on 2026-01-02; export leaves it out")
