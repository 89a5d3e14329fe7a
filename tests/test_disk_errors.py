"""Read-only and full disks (issue 16, item 8): one-line errors with exit code 2, never a traceback, and Prefect's
state outside the output root.

Running as root makes ``chmod`` ineffective: root's read-only root is made immutable (``chattr +i``, refused
with EPERM even for root) where the file system allows it, and simulated everywhere: every write under the root
fails with EROFS (``open``/``os.open`` for writing, ``mkdir``) and SQLite fails as it does when it cannot create
its WAL files there. A full disk is ENOSPC injected where file bytes are written.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import sqlite3
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from assetgen.store import atomic
from assetgen.store.index import Index
from tests.test_report_helpers import add_asset, tone

MANIFEST = "scene,asset,model,prompt,duration_s\nforest,birds,sfx,birdsong,1\nforest,wind,sfx,wind in trees,1\n"


def run(*args):
    from assetgen.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "OperationalError" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    for needle in needles:
        assert needle in lines[0], result.output


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "out"
    add_asset(root, "forest", "birds", tone(freq=300))
    add_asset(root, "forest", "wind", tone(freq=150))
    return root


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "m.csv"
    path.write_text(MANIFEST)
    return path


def make_read_only(monkeypatch, root: Path) -> None:
    """Every write under ``root`` fails as on a read-only mount (EROFS); SQLite opens files there read-only."""
    base = Path(root).resolve()

    def under(path) -> bool:
        if isinstance(path, int):
            return False
        try:
            return Path(os.fsdecode(path)).resolve().is_relative_to(base)
        except (TypeError, ValueError):
            return False

    def refuse(path):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))

    real_open, real_os_open, real_mkdir, real_connect = builtins.open, os.open, os.mkdir, sqlite3.connect

    def fake_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and under(file):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    def fake_os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and under(path):
            refuse(path)
        return real_os_open(path, flags, *args, **kwargs)

    def fake_mkdir(path, *args, **kwargs):
        if under(path):
            refuse(path)
        return real_mkdir(path, *args, **kwargs)

    def fake_connect(database, *args, **kwargs):
        if under(database):  # what SQLite says when it cannot create the WAL files beside the index
            raise sqlite3.OperationalError("attempt to write a readonly database")
        return real_connect(database, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)
    monkeypatch.setattr(os, "open", fake_os_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)
    monkeypatch.setattr(sqlite3, "connect", fake_connect)


def test_read_only_root_gives_one_line_errors(root, manifest, tiny_models, monkeypatch):
    make_read_only(monkeypatch, root)
    for args in (("plan", manifest, "--out", root, "--model-dir", tiny_models),
                 ("report", "--out", root),
                 ("render", manifest, "--out", root, "--model-dir", tiny_models, "--no-progress")):
        assert_one_line_error(run(*args), "read-only")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_root_by_permissions_gives_one_line_errors(root, manifest, tiny_models):
    paths = [root, *root.rglob("*")]
    for p in paths:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        for args in (("plan", manifest, "--out", root, "--model-dir", tiny_models),
                     ("report", "--out", root),
                     ("render", manifest, "--out", root, "--model-dir", tiny_models, "--no-progress")):
            result = run(*args)
            assert result.exit_code == 2, result.output
            assert "Traceback" not in result.output and "OperationalError" not in result.output, result.output
            assert len([line for line in result.output.splitlines() if line.startswith("error:")]) == 1
    finally:
        for p in paths:
            p.chmod(p.stat().st_mode | stat.S_IWUSR)


def test_immutable_root_gives_one_line_errors(root, manifest, tiny_models):
    import shutil
    import subprocess

    if shutil.which("chattr") is None or subprocess.run(["chattr", "-R", "+i", str(root)],
                                                        capture_output=True).returncode != 0:
        pytest.skip("chattr +i not available here")
    try:
        for args in (("plan", manifest, "--out", root, "--model-dir", tiny_models),
                     ("report", "--out", root),
                     ("render", manifest, "--out", root, "--model-dir", tiny_models, "--no-progress")):
            assert_one_line_error(run(*args), "cannot write", str(root))
    finally:
        subprocess.run(["chattr", "-R", "-i", str(root)], check=True)


def test_full_disk_while_writing_the_report_gives_one_line_error(root, monkeypatch):
    def full(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic, "_write_all", full)
    assert_one_line_error(run("report", "--out", root), "no space left on device")


def test_index_disk_errors_name_the_index_and_the_reason(tmp_path):
    from assetgen.store.disk import DiskProblem, describe

    index = Index(tmp_path)
    index.start_run("r1")  # creates the index
    con = sqlite3.connect(f"file:{index.path}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError) as raised:
        con.execute("INSERT INTO runs (run_id, started_at) VALUES ('r2', 'now')")
    assert describe(raised.value) == f"cannot write the index: read-only file system ({raised.value})"
    full = sqlite3.OperationalError("database or disk is full")
    assert "no space left on device" in describe(full)
    assert describe(sqlite3.OperationalError("no such table: x")) is None
    assert describe(ValueError("x")) is None
    problem = DiskProblem(errno.ENOSPC, "no space left on device (database or disk is full)", str(index.path))
    assert describe(problem) == f"cannot write {index.path}: no space left on device (database or disk is full)"
    assert describe(RuntimeError("wrapped")) is None
    try:
        try:
            raise OSError(errno.EROFS, "Read-only file system", "/x/y.wav")
        except OSError as exc:
            raise RuntimeError("commit failed") from exc
    except RuntimeError as exc:
        assert describe(exc) == "cannot write /x/y.wav: read-only file system"


def test_prefect_state_lives_in_the_cache_dir_not_the_output_root(tmp_path, monkeypatch):
    from assetgen.runtime import prefect_env

    monkeypatch.delenv("PREFECT_HOME", raising=False)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("ASSETGEN_PREFECT_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "studio" / "out"
    prefect_env(out)
    home = Path(os.environ["PREFECT_HOME"])
    assert home.parent == tmp_path / "cache" / "assetgen" / "prefect" and home.name.startswith("out-")
    assert home.is_dir() and not (out / ".prefect").exists()
    other = tmp_path / "elsewhere" / "out"  # another root: its own Prefect database
    monkeypatch.delenv("PREFECT_HOME")
    prefect_env(other)
    assert Path(os.environ["PREFECT_HOME"]) != home and Path(os.environ["PREFECT_HOME"]).parent == home.parent

    monkeypatch.delenv("PREFECT_HOME")
    monkeypatch.setenv("ASSETGEN_PREFECT_HOME", str(tmp_path / "mine"))
    prefect_env(out)
    assert Path(os.environ["PREFECT_HOME"]).parent == tmp_path / "mine"


@pytest.mark.slow
def test_full_disk_during_a_render_stops_it_with_one_line_and_keeps_what_landed(tmp_path, manifest, tiny_models,
                                                                               monkeypatch, capfd):
    out = tmp_path / "render"
    real = atomic._write_all
    calls = []

    def fills_up(fd, data):
        calls.append(len(data))
        if len(calls) > 2:  # the first WAV (two halves) lands, the second finds the disk full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd, data)

    monkeypatch.setattr(atomic, "_write_all", fills_up)
    result = run("render", manifest, "--out", out, "--model-dir", tiny_models, "--no-progress", "--batch-size", "1",
                 "--fail-on", "error")
    assert_one_line_error(result, "no space left on device")
    assert "Traceback" not in capfd.readouterr().err
    rows = Index(out).rows()
    assert [r["asset"] for r in rows] == ["birds"] and (out / rows[0]["path"]).is_file()
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]

    monkeypatch.setattr(atomic, "_write_all", real)  # space freed: the next render delivers the rest
    again = run("render", manifest, "--out", out, "--model-dir", tiny_models, "--no-progress", "--fail-on", "error")
    assert again.exit_code == 0, again.output
    assert sorted(r["asset"] for r in Index(out).rows()) == ["birds", "wind"]
