"""store.atomic.atomic_write: the one atomic-write helper (store WAVs, review media, pages, exports)."""

from __future__ import annotations

import os

import pytest

from assetgen.store.atomic import TEMP_RE, DestinationExists, atomic_write


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if TEMP_RE.match(p.name))


def test_bytes_and_callable_content_land_whole(tmp_path):
    dest = tmp_path / "deep" / "a.bin"
    assert atomic_write(dest, b"abc") == dest and dest.read_bytes() == b"abc"
    atomic_write(dest, lambda tmp: tmp.write_bytes(b"replaced"))
    assert dest.read_bytes() == b"replaced" and leftovers(dest.parent) == []
    assert dest.stat().st_mode & 0o777 == 0o644 & ~_umask()


def test_no_overwrite_refuses_and_keeps_the_existing_file(tmp_path):
    dest = tmp_path / "a.wav"
    dest.write_bytes(b"delivered")
    with pytest.raises(DestinationExists, match="refusing to overwrite"):
        atomic_write(dest, b"new take", overwrite=False)
    assert dest.read_bytes() == b"delivered" and leftovers(tmp_path) == []


def test_a_failing_writer_leaves_neither_temp_nor_destination(tmp_path):
    dest = tmp_path / "page.html"

    def broken(tmp):
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(dest, broken)
    assert not dest.exists() and list(tmp_path.iterdir()) == []


def test_a_taken_temp_name_is_skipped_and_left_alone(tmp_path):
    dest = tmp_path / "a.png"
    stale = tmp_path / f".a.png.tmp-{os.getpid()}"  # e.g. another thread of this process mid-write
    stale.write_bytes(b"other writer")
    atomic_write(dest, b"png")
    assert dest.read_bytes() == b"png" and stale.read_bytes() == b"other writer"
    assert leftovers(tmp_path) == [stale.name]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
