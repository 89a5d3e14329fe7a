"""Output roots: a local folder, or an object store through fsspec (``s3://bucket/prefix``; ``gs://`` and
``az://`` where gcsfs / adlfs are installed).

Every file operation the store makes on delivered files goes through a :class:`Files` object, one per root:

- :class:`LocalFiles` is the local folder with the POSIX guarantees of ``store.atomic`` (temp file, fsync,
  hard link that never replaces a file, fsync of the folder);
- :class:`RemoteFiles` is an fsspec filesystem. A file is published with one conditional ``PutObject``
  (``If-None-Match: *``: the object appears whole or not at all, and never replaces an existing one) on S3;
  on other filesystems it is uploaded under a dot-prefixed temp key (``store.atomic.TEMP_RE``) beside the final
  key, copied to the final key when that is free, and the temp key deleted. Strays are removed by the next
  render's reconcile, which lists the root once.

The index stays a single-writer SQLite database on local disk. For a remote root it lives in a *working folder*
(``--index PATH``'s folder; default :func:`default_work_dir`: ``$ASSETGEN_REMOTE_HOME`` or
``$XDG_CACHE_HOME/assetgen/remote/<bucket-prefix>-<hash>/``) whose ``.assetgen/remote.json`` names the root's URL,
so ``AssetStore(work folder)`` writes its files to the bucket. After commits (at most every
``SNAPSHOT_EVERY_S`` seconds) and when the writer lock is released, a consistent copy of the index (SQLite
backup), the review journals and the run reports are uploaded to the root (``ROOT/index.sqlite``,
``ROOT/.assetgen/``, ``ROOT/runs/``); a working folder without an index, or whose last snapshot is not the
root's, fetches the root's snapshot first.

Readers (report, review, export, ``index export``) work on a *mirror* (``<work folder>/read``): the snapshot,
and each delivered file whose ETag changed since it was last fetched; ``report`` uploads ``ROOT/report/``.

One writer per remote root: the lock object ``ROOT/.assetgen.lock`` is created with ``If-None-Match: *`` and
refreshed by its holder with ``If-Match`` every ``LOCK_REFRESH_S``; a lock whose holder died on this host (its
pid is gone) or that was not refreshed for ``LOCK_STALE_S`` is taken over (deleted with ``If-Match`` on its ETag,
so two waiters never both take it). Credentials and endpoints come from the standard environment and config
files of each filesystem (``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3``, ``AWS_PROFILE``, ...); a URL carrying
credentials is refused, so none reaches the index, the logs or a report.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import sqlite3
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path, PurePosixPath

from assetgen.spec import RESERVED_SCENES as _RESERVED  # ROOT/report/, ROOT/runs/: assetgen's own
from assetgen.store import atomic as _atomic
from assetgen.store.crash import crashpoint

MARKER = Path(".assetgen") / "remote.json"
SNAPSHOT_STATE = Path(".assetgen") / "snapshot.json"
INDEX_KEY = "index.sqlite"
JOURNAL_KEYS = (".assetgen/decisions.jsonl", ".assetgen/retirements.jsonl", ".assetgen/overrides.jsonl")
RUNS_DIR = "runs"
REPORT_DIR = "report"
LOCK_KEY = ".assetgen.lock"
SNAPSHOT_EVERY_S = 30.0  # a crash loses at most this much index history locally; reconcile re-adopts the files
LOCK_REFRESH_S = 10.0
LOCK_STALE_S = 60.0  # a lock object not refreshed for this long belongs to a dead or cut-off render
_URL_RE = re.compile(r"^(?P<proto>[a-zA-Z][a-zA-Z0-9+.-]*)://(?P<rest>.*)$")


class RemoteRootError(ValueError):
    """A remote ``--out`` that cannot be used (bad URL, credentials in it, filesystem not installed)."""


def is_url(out: str | os.PathLike) -> bool:
    """True for an fsspec URL other than ``file://`` (a local path stays a path)."""
    m = _URL_RE.match(str(out))
    return bool(m) and m["proto"].lower() not in ("file", "local")


def check_url(url: str) -> str:
    """``url`` normalised (no trailing slash); refuses credentials in the URL and a missing bucket."""
    m = _URL_RE.match(url)
    if not m:
        raise RemoteRootError(f"--out {url!r}: not a URL")
    rest = m["rest"].strip("/")
    if "@" in rest.split("/", 1)[0] or "?" in rest:
        raise RemoteRootError(f"--out {m['proto']}://...: credentials and options in the URL are not accepted; "
                              "use the environment (AWS_ACCESS_KEY_ID, AWS_PROFILE, AWS_ENDPOINT_URL, ...)")
    if not rest:
        raise RemoteRootError(f"--out {url!r}: name a bucket (s3://bucket/prefix)")
    return f"{m['proto'].lower()}://{rest}"


def cache_base() -> Path:
    """``$ASSETGEN_REMOTE_HOME``, else ``$XDG_CACHE_HOME/assetgen/remote`` (``~/.cache`` when unset)."""
    home = os.environ.get("ASSETGEN_REMOTE_HOME", "")
    if os.path.isabs(home):
        return Path(home)
    cache = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(cache) if os.path.isabs(cache) else Path.home() / ".cache") / "assetgen" / "remote"


def default_work_dir(url: str) -> Path:
    """The working folder of a remote root: ``<cache_base>/<bucket-prefix>-<hash of the URL>``."""
    url = check_url(url)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", url.split("://", 1)[1])[:60]
    return cache_base() / f"{name}-{hashlib.sha256(url.encode()).hexdigest()[:12]}"


def remote_url(root: str | os.PathLike) -> str | None:
    """The URL a working folder stands for (its ``.assetgen/remote.json``), or None for a local root."""
    try:
        return json.loads((Path(root) / MARKER).read_text(encoding="utf-8"))["url"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def writer_root(out: str | os.PathLike, index: str | os.PathLike | None = None) -> Path:
    """The local folder the store, plan and render work in for ``--out`` / ``--index``.

    Local ``out``: ``out`` itself (``--index`` may only name ``OUT/index.sqlite``). Remote: the working folder
    (``index``'s folder, which must be named ``index.sqlite``; else :func:`default_work_dir`), marked with the URL,
    holding the root's latest snapshot.
    """
    if not is_url(out):
        if index is not None and Path(index).resolve() != (Path(out) / INDEX_KEY).resolve():
            raise RemoteRootError(f"--index {index}: a local output root keeps its index at "
                                  f"{Path(out) / INDEX_KEY}; --index is for remote roots")
        return Path(out)
    url = check_url(str(out))
    if index is not None:
        if Path(index).name != INDEX_KEY:
            raise RemoteRootError(f"--index {index}: the index file must be named {INDEX_KEY}")
        work = Path(index).absolute().parent
    else:
        work = default_work_dir(url)
    marked = remote_url(work)
    if marked is not None and marked != url:
        raise RemoteRootError(f"--index {work / INDEX_KEY} is the index of {marked}, not {url}")
    files = RemoteFiles(url)
    if marked is None:
        _atomic.atomic_write(work / MARKER, json.dumps({"url": url}).encode())
    fetch_snapshot(work, files)
    return work


def reader_root(out: str | os.PathLike) -> Path:
    """A local folder holding what readers need of ``out``: ``out`` itself when local; for a remote root its
    mirror with the latest snapshot and every indexed file (only those whose ETag changed are downloaded)."""
    if not is_url(out):
        return Path(out)
    url = check_url(str(out))
    mirror = default_work_dir(url) / "read"
    files = RemoteFiles(url)
    fetch_snapshot(mirror, files, runs=True)
    files.mirror_into(mirror)
    return mirror


def files_for(root: str | os.PathLike) -> "Files":
    """The :class:`Files` of a local root or of a remote root's working folder."""
    url = remote_url(root)
    return RemoteFiles(url) if url else LocalFiles(Path(root))


def sha256_file(path: Path) -> str:
    """Hex sha256 of a local file's bytes."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# -- files ------------------------------------------------------------------------------------------------------
Fingerprint = tuple  # (size, mtime_ns, ctime_ns, inode) locally; (size, ETag digits, 0, 0) remotely


class Files:
    """Delivered files under one root, by ROOT-relative posix path."""

    remote = False
    url = ""

    def asset_files(self) -> list[str]: ...  # files in ROOT/<scene>/<asset>/ (dot folders and reserved skipped)
    def fingerprints(self, rels: Iterable[str]) -> dict[str, Fingerprint | None]: ...
    def read_bytes(self, rel: str) -> bytes: ...
    def exists(self, rel: str) -> bool: ...
    def publish(self, rel: str, data: bytes) -> Fingerprint | None: ...  # new file; never replaces one
    def remove(self, rel: str) -> None: ...
    def move(self, rel: str, dest: str) -> None: ...
    def synced(self, rels: Iterable[str]) -> None: ...  # make removals / moves of ``rels`` durable
    def prepare_dir(self, rel_dir: str) -> None: ...
    def stage(self, rel: str, data: bytes) -> None: ...  # whole or not at all; replaces an earlier attempt's
    def promote(self, rel: str, dest: str) -> Fingerprint | None: ...  # rel becomes dest; never replaces dest
    def remove_tree(self, rel_dir: str) -> list[str]: ...  # removes ROOT/rel_dir; returns the files it held

    def sha256(self, rel: str) -> str:
        return hashlib.sha256(self.read_bytes(rel)).hexdigest()


def files_at(target: str | os.PathLike) -> "Files":
    """The :class:`Files` of a root named by its own location (:attr:`Files.url`: a local folder or an fsspec URL),
    for a process that has no working folder of the root (a Dask worker writing staged takes)."""
    return RemoteFiles(str(target)) if is_url(target) else LocalFiles(Path(target))


class LocalFiles(Files):
    """A local folder with ``store.atomic``'s guarantees (fsync, rename, hard link)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.url = str(self.root)

    def asset_files(self) -> list[str]:
        if not self.root.is_dir():
            return []
        found = []
        for scene in _subdirs(self.root):
            if scene.name in _RESERVED:
                continue
            for asset in _subdirs(scene):
                found += [p.relative_to(self.root).as_posix() for p in asset.iterdir()
                          if p.is_file() and not p.is_symlink()]
        return sorted(found)

    def fingerprints(self, rels: Iterable[str]) -> dict[str, Fingerprint | None]:
        out = {}
        for rel in rels:
            try:
                st = (self.root / rel).stat()
            except OSError:
                out[rel] = None
                continue
            out[rel] = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino) if stat.S_ISREG(st.st_mode) else None
        return out

    def read_bytes(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()

    def sha256(self, rel: str) -> str:
        return sha256_file(self.root / rel)

    def exists(self, rel: str) -> bool:
        return (self.root / rel).exists()

    def publish(self, rel: str, data: bytes) -> None:
        _atomic.atomic_write(self.root / rel, data, overwrite=False, crash_points=True)
        return None

    def remove(self, rel: str) -> None:
        (self.root / rel).unlink(missing_ok=True)

    def move(self, rel: str, dest: str) -> None:
        (self.root / dest).parent.mkdir(parents=True, exist_ok=True)
        os.rename(self.root / rel, self.root / dest)
        _atomic.fsync_dir((self.root / dest).parent)

    def synced(self, rels: Iterable[str]) -> None:
        for folder in sorted({(self.root / rel).parent for rel in rels}):
            _atomic.fsync_dir(folder)

    def prepare_dir(self, rel_dir: str) -> None:
        """Create ``ROOT/rel_dir``, fsyncing each parent that got a new entry."""
        path = self.root / rel_dir
        created = []
        p = path
        while not p.exists():
            created.append(p)
            p = p.parent
        path.mkdir(parents=True, exist_ok=True)
        for new in created:
            _atomic.fsync_dir(new.parent)

    def stage(self, rel: str, data: bytes) -> None:
        _atomic.atomic_write(self.root / rel, data, overwrite=True)

    def promote(self, rel: str, dest: str) -> None:
        """Hard-link ``rel`` at ``dest`` (never over a file), drop ``rel``, fsync ``dest``'s folder; crash point
        ``after-rename`` once ``dest`` is final."""
        src, final = self.root / rel, self.root / dest
        _atomic._publish(src, final, overwrite=False)
        src.unlink(missing_ok=True)
        _atomic.fsync_dir(final.parent)
        crashpoint("after-rename")
        return None

    def remove_tree(self, rel_dir: str) -> list[str]:
        folder = self.root / rel_dir
        if not folder.is_dir():
            return []
        removed = sorted(p.relative_to(self.root).as_posix() for p in folder.rglob("*") if p.is_file())
        shutil.rmtree(folder, ignore_errors=True)
        return removed


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith("."))


class RemoteFiles(Files):
    """Files under an fsspec URL; see the module docstring for how a file is published."""

    remote = True

    def __init__(self, url: str, conditional: bool | None = None) -> None:
        import fsspec

        self.url = check_url(url)
        proto, _, path = self.url.partition("://")
        try:
            self.fs = fsspec.filesystem(proto)
        except (ImportError, ValueError) as exc:
            raise RemoteRootError(f"--out {self.url}: no filesystem for {proto}:// ({exc}); install its fsspec "
                                  "package (s3fs, gcsfs, adlfs)") from None
        self.base = path.strip("/")
        self.bucket, _, self.prefix = self.base.partition("/")
        # S3 conditional writes (If-None-Match / If-Match); elsewhere temp key + copy
        self.conditional = hasattr(self.fs, "call_s3") if conditional is None else conditional
        self._listing: dict[str, dict] | None = None

    def key(self, rel: str) -> str:
        return f"{self.base}/{rel}"

    def _s3_key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    # -- listing ----------------------------------------------------------------------------------------------
    def listing(self, refresh: bool = True) -> dict[str, dict]:
        """ROOT-relative path -> fsspec info of every object under the root (one paginated LIST)."""
        if refresh or self._listing is None:
            self.fs.invalidate_cache(self.base)
            try:
                found = self.fs.find(self.base, detail=True)
            except FileNotFoundError:
                found = {}
            n = len(self.base) + 1
            self._listing = {p[n:]: info for p, info in found.items()
                             if p.startswith(self.base + "/") and info.get("type", "file") == "file"}
        return self._listing

    def asset_files(self) -> list[str]:
        out = []
        for rel in self.listing():
            parts = PurePosixPath(rel).parts
            if len(parts) == 3 and parts[0] not in _RESERVED and not parts[0].startswith(".") \
                    and not parts[1].startswith("."):
                out.append(rel)
        return sorted(out)

    def fingerprints(self, rels: Iterable[str]) -> dict[str, Fingerprint | None]:
        listing = self.listing()
        return {rel: _fingerprint(listing[rel]) if rel in listing else None for rel in rels}

    def info(self, rel: str) -> dict | None:
        self.fs.invalidate_cache(self.key(rel))
        try:
            return self.fs.info(self.key(rel))
        except FileNotFoundError:
            return None

    def read_bytes(self, rel: str) -> bytes:
        self.fs.invalidate_cache(self.key(rel))
        return self.fs.cat_file(self.key(rel))

    def exists(self, rel: str) -> bool:
        return self.info(rel) is not None

    # -- writes -----------------------------------------------------------------------------------------------
    def publish(self, rel: str, data: bytes) -> Fingerprint:
        """Put ``data`` at ``rel`` whole or not at all, never over an existing object; returns its fingerprint.
        Crash points ``before-upload``, ``after-upload`` (the object is final), as the local ``after-fsync`` /
        ``after-rename``."""
        crashpoint("before-upload")
        if self.conditional:
            try:
                resp = self.fs.call_s3("put_object", Bucket=self.bucket, Key=self._s3_key(rel), Body=bytes(data),
                                       IfNoneMatch="*")
            except OSError as exc:
                if _precondition_failed(exc):
                    raise _atomic.DestinationExists(f"{self.key(rel)} already exists") from None
                raise
            etag = resp.get("ETag", "")
        else:
            final = PurePosixPath(rel)
            tmp = str(final.with_name(f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().int % 10**9}"))  # TEMP_RE
            self.fs.pipe_file(self.key(tmp), bytes(data))
            try:
                if self.exists(rel):
                    raise _atomic.DestinationExists(f"{self.key(rel)} already exists")
                self.fs.copy(self.key(tmp), self.key(rel))
            finally:
                self.fs.rm_file(self.key(tmp))
            etag = _version_tag(self.info(rel) or {})
        crashpoint("after-upload")
        return (len(data), _etag_number(etag), 0, 0)

    def put(self, rel: str, data: bytes) -> str:
        """Put ``data`` at ``rel``, replacing it (a single PUT: readers see the old or the new object);
        returns the ETag."""
        if self.conditional:
            return self.fs.call_s3("put_object", Bucket=self.bucket, Key=self._s3_key(rel),
                                   Body=bytes(data)).get("ETag", "")
        self.fs.pipe_file(self.key(rel), bytes(data))
        return _version_tag(self.info(rel) or {})

    def remove(self, rel: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.key(rel))

    def move(self, rel: str, dest: str) -> None:
        self.fs.copy(self.key(rel), self.key(dest))
        self.fs.rm_file(self.key(rel))

    def synced(self, rels: Iterable[str]) -> None:
        return None  # an object store's writes are durable when the request returns

    def stage(self, rel: str, data: bytes) -> None:
        self.put(rel, data)  # one PUT: the object is whole or absent

    def promote(self, rel: str, dest: str) -> Fingerprint:
        """Server-side copy of ``rel`` to ``dest``, then delete ``rel``. ``dest`` must be free: the render holding
        the root's lock object is the only writer of final keys, so the check cannot race another publisher.
        Crash point ``after-upload`` once ``dest`` is final."""
        if self.exists(dest):
            raise _atomic.DestinationExists(f"{self.key(dest)} already exists")
        self.fs.copy(self.key(rel), self.key(dest))
        crashpoint("after-upload")
        self.remove(rel)
        info = self.info(dest) or {}
        return (int(info.get("size", 0) or 0), _etag_number(info.get("ETag", "")), 0, 0)

    def remove_tree(self, rel_dir: str) -> list[str]:
        prefix = rel_dir.strip("/") + "/"
        removed = sorted(rel for rel in self.listing() if rel.startswith(prefix))
        for rel in removed:
            self.remove(rel)
        self._listing = None
        return removed

    def prepare_dir(self, rel_dir: str) -> None:
        return None  # no folders in an object store

    # -- mirror -----------------------------------------------------------------------------------------------
    def download(self, rel: str, dest: Path) -> None:
        """``rel`` to the local file ``dest``, atomically."""
        _atomic.atomic_write(dest, lambda tmp: self.fs.get_file(self.key(rel), str(tmp)), durable=False)

    def mirror_into(self, mirror: Path) -> int:
        """Download the indexed files of ``mirror``'s index whose ETag changed since their last download (the
        ETags in ``mirror/.assetgen/mirror.json``); remove mirrored files no longer in the root. Returns the
        number downloaded."""
        state_path = mirror / ".assetgen" / "mirror.json"
        try:
            state = json.loads(state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            state = {}
        listing = self.listing()
        wanted = set(_index_paths(mirror / INDEX_KEY))
        n = 0
        for rel in sorted(wanted):
            info = listing.get(rel)
            dest = mirror / rel
            if info is None:
                dest.unlink(missing_ok=True)
                state.pop(rel, None)
                continue
            etag = _version_tag(info)
            if state.get(rel) == etag and dest.is_file() and dest.stat().st_size == info.get("size"):
                continue
            self.download(rel, dest)
            state[rel] = etag
            n += 1
        _atomic.atomic_write(state_path, json.dumps(state, sort_keys=True).encode(), durable=False)
        return n

    def upload_tree(self, local: Path, rel_dir: str, *, changed_only: bool = True) -> int:
        """Upload the files of ``local`` to ``ROOT/rel_dir`` (those missing or of another size remotely)."""
        if not local.is_dir():
            return 0
        listing = self.listing()
        n = 0
        for path in sorted(p for p in local.rglob("*") if p.is_file() and not p.name.startswith(".")):
            rel = f"{rel_dir}/{path.relative_to(local).as_posix()}"
            info = listing.get(rel)
            if changed_only and info is not None and info.get("size") == path.stat().st_size \
                    and not path.name.startswith("latest") and path.suffix != ".html":
                continue
            self.put(rel, path.read_bytes())
            n += 1
        return n


def _version_tag(info: dict) -> str:
    """What changes whenever an object is written: S3's ETag; GCS's generation / md5Hash; Azure's etag; else the
    modification time fsspec reports."""
    for key in ("ETag", "etag", "generation", "md5Hash", "content_md5", "last_modified", "LastModified", "mtime",
                "updated"):
        if info.get(key):
            return str(info[key])
    return ""


def _fingerprint(info: dict) -> Fingerprint:
    """An object's fingerprint: size and version tag (any rewrite changes it); no clocks, so no racy window."""
    return (int(info.get("size") or 0), _etag_number(_version_tag(info)), 0, 0)


def _etag_number(etag: str) -> int:
    """An ETag as an integer that fits SQLite's INTEGER column (the verification cache's ``mtime_ns``)."""
    return int.from_bytes(hashlib.sha256(str(etag).strip('"').encode()).digest()[:7], "big")


def _precondition_failed(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "pre-condition" in text or "precondition" in text or "412" in text


def _index_paths(db: Path) -> list[str]:
    """ROOT-relative paths of the versions whose file the index at ``db`` holds as present."""
    from assetgen.store.index import Index

    if not db.is_file():
        return []
    return [r["path"] for r in Index(db.parent).rows() if r["file_state"] == "ok"]


# -- index snapshot ---------------------------------------------------------------------------------------------
def _snapshot_state(work: Path) -> dict:
    try:
        return json.loads((work / SNAPSHOT_STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def fetch_snapshot(work: Path, files: RemoteFiles, *, runs: bool = False) -> bool:
    """Make ``work``'s index the root's snapshot when it has none, or when the root's snapshot is not the one
    this folder last uploaded or fetched (another machine rendered since). Returns True when fetched."""
    info = files.info(INDEX_KEY)
    if info is None:
        return False
    etag = _version_tag(info)
    if (work / INDEX_KEY).is_file() and _snapshot_state(work).get("etag") == etag:
        return False
    work.mkdir(parents=True, exist_ok=True)
    tmp = work / f".{INDEX_KEY}.fetch-{os.getpid()}"
    try:
        files.fs.get_file(files.key(INDEX_KEY), str(tmp))
        for suffix in ("-wal", "-shm"):
            (work / f"{INDEX_KEY}{suffix}").unlink(missing_ok=True)
        os.replace(tmp, work / INDEX_KEY)
    finally:
        tmp.unlink(missing_ok=True)
    for rel in JOURNAL_KEYS:
        if files.exists(rel):
            files.download(rel, work / rel)
    if runs:
        for rel in files.listing():
            if rel.startswith(RUNS_DIR + "/") and rel.count("/") == 1:
                files.download(rel, work / rel)
    _atomic.atomic_write(work / SNAPSHOT_STATE, json.dumps({"etag": etag}).encode())
    return True


def upload_snapshot(work: Path, files: RemoteFiles) -> str | None:
    """Upload a consistent copy of ``work``'s index (SQLite online backup), its journals and new run reports to
    the root; returns the snapshot's ETag (None without an index)."""
    db = work / INDEX_KEY
    if not db.is_file():
        return None
    tmp = work / f".{INDEX_KEY}.snapshot-{os.getpid()}"
    try:
        src = sqlite3.connect(db)
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()
        data = tmp.read_bytes()
    finally:
        tmp.unlink(missing_ok=True)
    for rel in JOURNAL_KEYS:
        if (work / rel).is_file():
            files.put(rel, (work / rel).read_bytes())
    files.upload_tree(work / RUNS_DIR, RUNS_DIR)
    etag = files.put(INDEX_KEY, data)
    _atomic.atomic_write(work / SNAPSHOT_STATE, json.dumps({"etag": etag}).encode())
    return etag


# -- lock object ------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def remote_lock(files: RemoteFiles, *, wait: bool = True, on_wait: Callable[[], None] | None = None,
                locked_error: Callable[[str], Exception]) -> Iterator[str]:
    """Hold the lock object ``ROOT/.assetgen.lock`` for the block (see the module docstring)."""
    me = {"host": socket.gethostname(), "pid": os.getpid(), "token": uuid.uuid4().hex}
    where = files.key(LOCK_KEY)
    waited = False
    while True:
        etag = _try_create_lock(files, me)
        if etag:
            break
        holder, holder_etag, age = _read_lock(files)
        if holder_etag is not None and _stale(holder, age):
            _break_lock(files, holder_etag)
            continue
        if not wait:
            who = f"{holder.get('host', '?')} pid {holder.get('pid', '?')}" if holder else "another render"
            raise locked_error(f"{files.url} is in use by another assetgen process ({who}; lock object {where}); "
                               "wait for it to finish or render into another --out")
        if not waited and on_wait is not None:
            on_wait()
        waited = True
        time.sleep(1.0)
    state = {"etag": etag}
    stop = threading.Event()

    def refresh() -> None:
        while not stop.wait(LOCK_REFRESH_S):
            with contextlib.suppress(Exception):  # a failed refresh only shortens the lock's life
                state["etag"] = _put_lock(files, me, if_match=state["etag"])

    thread = threading.Thread(target=refresh, name="assetgen-lock-refresh", daemon=True)
    thread.start()
    try:
        yield where
    finally:
        stop.set()
        thread.join()
        _break_lock(files, state["etag"])


def _lock_body(me: dict) -> bytes:
    return json.dumps(me | {"time": time.time()}).encode()


def _put_lock(files: RemoteFiles, me: dict, *, if_match: str | None = None) -> str:
    kwargs = {"IfMatch": if_match} if if_match else {"IfNoneMatch": "*"}
    return files.fs.call_s3("put_object", Bucket=files.bucket, Key=files._s3_key(LOCK_KEY), Body=_lock_body(me),
                            **kwargs)["ETag"]


def _try_create_lock(files: RemoteFiles, me: dict) -> str | None:
    if files.conditional:
        try:
            return _put_lock(files, me)
        except OSError as exc:
            if _precondition_failed(exc):
                return None
            raise
    # without conditional writes: check, then write (a race of two starts in the same instant is not excluded)
    if files.exists(LOCK_KEY):
        return None
    return files.put(LOCK_KEY, _lock_body(me))


def _read_lock(files: RemoteFiles) -> tuple[dict, str | None, float]:
    info = files.info(LOCK_KEY)
    if info is None:
        return {}, None, 0.0
    try:
        holder = json.loads(files.read_bytes(LOCK_KEY))
    except (OSError, ValueError):
        holder = {}
    modified = info.get("LastModified")
    age = time.time() - modified.timestamp() if hasattr(modified, "timestamp") else 0.0
    return holder, info.get("ETag"), age


def _stale(holder: dict, age: float) -> bool:
    """The holder died on this host, or has not refreshed the lock for ``LOCK_STALE_S``."""
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        try:
            os.kill(holder["pid"], 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
    return age > LOCK_STALE_S


def _break_lock(files: RemoteFiles, etag: str) -> None:
    """Delete the lock object if it still is the one with ``etag``."""
    try:
        if files.conditional:
            files.fs.call_s3("delete_object", Bucket=files.bucket, Key=files._s3_key(LOCK_KEY), IfMatch=etag)
        else:
            files.remove(LOCK_KEY)
    except (OSError, FileNotFoundError) as exc:
        if not _precondition_failed(exc) and not isinstance(exc, FileNotFoundError):
            raise
    files.fs.invalidate_cache()
