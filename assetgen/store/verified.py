"""Reconcile's cache of verified file hashes (table ``verified_files``), so an unchanged file is hashed once.

An entry is ``path -> (sha256, size, mtime_ns, ctime_ns, inode, verified_ns)``: the hash reconcile read and
the ``os.stat`` fingerprint the file had then. A file whose fingerprint is unchanged has not been written
since (any write, ``touch`` or copy changes ctime or inode, and users cannot set ctime), so its hash need not
be read again. A missing or stale entry only means the file is hashed.
"""

from __future__ import annotations

from collections.abc import Sequence

from assetgen.store.db import Database

RACY_NS = 2_000_000_000  # a file changed this close before its verification is verified again (coarse clocks)


def still_verified(entry: tuple | None, sha256: str, fingerprint: tuple) -> bool:
    """True when ``entry`` (see :meth:`VerifiedFiles.verified_files`) vouches for a file with this fingerprint.

    ``fingerprint`` is ``(size, mtime_ns, ctime_ns, inode)``. As git does for its index: an entry taken within
    ``RACY_NS`` of the file's last change does not count, since a write in the same clock tick right after the
    hash would leave size, mtime and ctime as they were.
    """
    if entry is None or entry[0] != sha256 or tuple(entry[1:5]) != fingerprint:
        return False
    return entry[5] - fingerprint[2] >= RACY_NS


class VerifiedFiles(Database):
    """Reads and writes of the ``verified_files`` table."""

    def verified_files(self) -> dict[str, tuple]:
        """path -> (sha256, size, mtime_ns, ctime_ns, inode, verified_ns) of files whose hash reconcile checked.

        A cache only: a file whose ``os.stat`` still gives that size, mtime, ctime and inode has not been
        written since (a write or ``touch`` changes ctime, which users cannot set), so its hash need not be
        read again. A missing or stale entry only means the file is hashed.
        """
        return {r["path"]: (r["sha256"], r["size"], r["mtime_ns"], r["ctime_ns"], r["inode"], r["verified_ns"])
                for r in self._select("SELECT * FROM verified_files")}

    def record_verified(self, entries: Sequence[tuple]) -> None:
        """Store ``(path, sha256, size, mtime_ns, ctime_ns, inode, verified_ns)`` rows in one transaction."""
        if not entries:
            return
        with self._write() as con:
            con.executemany("INSERT OR REPLACE INTO verified_files VALUES (?, ?, ?, ?, ?, ?, ?)", entries)
