"""``AssetStore``: versioned WAV files under ROOT plus their index rows, written crash-safely.

Layout: ``ROOT/<scene>/<asset>/<asset>_v001.wav``; a new version only when the content key changes; a
render never overwrites or deletes a delivered file.

Commit path (caller holds :meth:`AssetStore.lock`): encode the whole file in memory -> write it to
``.<asset>_vNNN.wav.tmp-<pid>`` in the asset folder (dot-prefixed: engine imports skip it) -> fsync file
-> hard-link to the final name (fails instead of overwriting) -> unlink the temp name -> fsync folder
(``store.atomic``) -> insert the index row in one transaction. Crash points: ``wav-half-written``,
``after-fsync``, ``after-rename``, ``after-index`` (see ``store.crash``).

:meth:`AssetStore.reconcile` (run at the start of every render, under the lock) repairs what a crash or a
user left behind:

- stale temp files (``store.atomic.TEMP_RE``) are removed (the plan renders those assets again);
- a finished WAV without an index row is adopted when its iXML provenance names exactly this path, the
  next contiguous version and a content key new for the asset, and its ``data`` matches the recorded
  ``audio_sha256``; otherwise it is moved to ``ROOT/.quarantine/``. An adopted version gets back the last
  review decision journaled for its content key and sha256 (``store.decisions``), and its asset its last
  journaled retirement (``store.lifecycle``), so deleting the index loses no approval and no retirement;
- an index row whose file is missing is marked ``file_state='missing'``; a row whose file no longer
  matches its sha256 gets the file moved to quarantine and is marked the same way. A missing *latest*
  version drops out of ``Index.latest_keys()``, so the plan renders it again, and :meth:`commit` restores
  it at the row's own path and version (its new sha256 recorded). Versions stay contiguous; nothing is
  overwritten. A missing older version stays reported until its content key is rendered again.

Remote roots (``store.root``): the same steps through ``AssetStore.files``; the file is published by one
conditional PUT (or temp key + copy) instead of temp file + link, with crash points ``before-upload`` and
``after-upload``; reconcile lists the bucket once; the hash of an uploaded object is recorded against its ETag.

Hashes are read once per file, not once per render: a file whose size, mtime, ctime and inode are those it had
when its hash was last verified (``store.verified``) is only stat'ed. Any write, ``touch`` or copy changes
ctime or inode, so it is hashed again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import hashlib
import io
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from assetgen.names import component_problem
from assetgen.spec import RESERVED_SCENES, AssetSpec, ProcessedAudio  # ROOT/report/, ROOT/runs/: assetgen's own
from assetgen.store import atomic as _atomic
from assetgen.store import wav
from assetgen.store import root as _root
from assetgen.store.crash import crashpoint
from assetgen.store.index import COLUMNS, Index, utc_now
from assetgen.store.lock import RootLocked, root_lock
from assetgen.store.verified import RACY_NS, still_verified  # noqa: F401 (RACY_NS: re-exported)

QUARANTINE = ".quarantine"
STAGING = ".staging"  # ROOT/.staging/<run_id>/: takes written by workers (AssetStore.stage), not yet published

_VERSION_RE = re.compile(r"^(?P<asset>.+)_v(?P<version>\d{3,})\.wav$")
_ROW_FROM_PROVENANCE = tuple(c for c in COLUMNS if c not in ("id", "sha256", "status", "file_state"))


def audio_status(processed: ProcessedAudio) -> str:
    """The index's ``audio_status``: the measurement status, except that a take failing a QC gate is never
    ``ok`` (``qc-failed``; its reasons are in ``qc_reasons``)."""
    if processed.qc == "fail" and processed.status == "ok":
        return "qc-failed"
    return processed.status


class StoreError(RuntimeError):
    """The store cannot write this asset (e.g. an unreconciled file already sits at the version's path)."""


class UnsafeNameError(ValueError):
    """A scene or asset name that would leave ROOT or hide the file (``..``, ``/``, leading dot, ...)."""


@dataclass
class ReconcileReport:
    """What :meth:`AssetStore.reconcile` found and did; paths relative to ROOT (posix)."""

    removed_temp: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)  # "<path> -> <quarantine path>: <reason>"
    missing: list[str] = field(default_factory=list)  # indexed files not on disk (marked file_state=missing)
    modified: list[str] = field(default_factory=list)  # indexed files whose sha256 changed (quarantined)
    recovered: list[str] = field(default_factory=list)  # missing files that are back with the right sha256
    decisions_restored: list[str] = field(default_factory=list)  # "<path>: <status>" from the decision journal

    def __bool__(self) -> bool:
        return any((self.removed_temp, self.adopted, self.quarantined, self.missing, self.modified,
                    self.recovered))

    def __str__(self) -> str:
        parts = [f"{len(v)} {k.replace('_', ' ')}" for k, v in vars(self).items() if v]
        return ", ".join(parts) if parts else "clean"


sha256_file = _root.sha256_file  # hex sha256 of a local file (the export compares its copies with it)


def version_name(asset: str, version: int) -> str:
    """``<asset>_v001.wav`` (three digits minimum)."""
    return f"{asset}_v{version:03d}.wav"


def check_name(kind: str, name: str) -> str:
    """One safe path component (``assetgen.names.component_problem``); raises UnsafeNameError."""
    problem = component_problem(name)
    if problem:
        raise UnsafeNameError(f"{kind} name {name!r} {problem}: must be one path component without '/', '\\', "
                              "leading '.' or surrounding spaces")
    return name


def _publish(files: "_root.Files", rel: str, data: bytes) -> "_root.Fingerprint | None":
    """Publish ``data`` at ROOT-relative ``rel`` through the root's files, never replacing an existing file."""
    try:
        return files.publish(rel, data)
    except _atomic.DestinationExists:
        raise StoreError(f"{rel} already exists; refusing to overwrite it (run reconcile)") from None


def qc_fields(processed: ProcessedAudio) -> dict:
    """The index columns that carry a take's QC verdict (``audio_status``, ``qc``, ``qc_reasons``)."""
    return {"audio_status": audio_status(processed), "qc": processed.qc,
            "qc_reasons": json.dumps(list(processed.qc_reasons)) if processed.qc else None}


def version_row(spec: AssetSpec, content_key: str, processed: ProcessedAudio, samples: wav.Samples, version: int,
                rel: str, *, model_label: str, placeholder: bool, run_id: str, params: dict) -> dict:
    """The index row of version ``version`` of ``spec`` at ``rel`` (without ``sha256``, known once the file is)."""
    loop = _loop(processed)
    duration = samples.frames / processed.sample_rate if processed.sample_rate else None
    return {
        "scene": spec.scene, "asset": spec.asset, "version": version, "path": rel,
        "content_key": content_key, "model": model_label, "placeholder": int(bool(placeholder)),
        "prompt": spec.prompt, "seed": int(spec.seed), "params": json.dumps(params, sort_keys=True, default=str),
        "sample_rate": int(processed.sample_rate), "channels": samples.channels,
        "bit_depth": samples.bit_depth, "duration_s": duration,
        "lufs": _num(processed.lufs), "true_peak_dbtp": _num(processed.true_peak_dbtp),
        "loudness_target": float(spec.post.loudness_lufs), "true_peak_target": float(spec.post.true_peak_db),
        "loop_start": loop[0] if loop else None, "loop_end": loop[1] if loop else None,
        "seam_score": _num(processed.seam_score),
        "category": spec.category, "tags": json.dumps(list(spec.tags)), "layer": spec.layer,
        "run_id": run_id, "created_at": utc_now(),
        "lra_lu": _num(processed.lra_lu), "max_momentary_lufs": _num(processed.max_momentary_lufs),
        "max_short_term_lufs": _num(processed.max_short_term_lufs),
        "sample_peak_dbfs": _num(processed.sample_peak_dbfs), "dc_offset": _num(processed.dc_offset),
        "loudness_shortfall_lu": _num(processed.loudness_shortfall_lu), "tempo_bpm": _num(processed.tempo_bpm),
        "tempo_source": processed.tempo_source,
        "meta": json.dumps(dict(spec.meta), sort_keys=True) if spec.meta else None,
        **qc_fields(processed),
    }


def file_bytes(row: dict, samples: wav.Samples, embedding: Sequence[float] | None = None) -> bytes:
    """The WAV for an index row: format from the row, provenance = the row's rebuildable columns and the
    raw take's QC embedding (``qc_embedding``, for near-duplicate checks of siblings rendered later)."""
    provenance = {k: row.get(k) for k in _ROW_FROM_PROVENANCE}
    if embedding is not None:
        provenance["qc_embedding"] = [round(float(v), 6) for v in embedding]
    loop = (row["loop_start"], row["loop_end"]) if row.get("loop_start") is not None else None
    when = _dt.datetime.fromisoformat(row["created_at"].replace("Z", "+00:00"))
    return wav.wav_bytes(samples, int(row["sample_rate"]), int(row["bit_depth"]), loop=loop,
                         description=row.get("prompt") or "", provenance=provenance, lufs=row.get("lufs"),
                         true_peak_dbtp=row.get("true_peak_dbtp"), when=when, scene=row["scene"],
                         take=f"v{int(row['version']):03d}")


def stage(files: "_root.Files", spec: AssetSpec, content_key: str, encoded: "Encoded", *, version: int | dict,
          model_label: str, placeholder: bool, run_id: str, params: dict, attempt: int = 1) -> "StagedTake":
    """Write a take's complete WAV under ``ROOT/.staging/<run_id>/`` of ``files``' root (whole or not at all)
    without touching the index, so any process may call it (a Dask worker, with ``store.root.files_at`` of the
    root's URL); only the index's writer :meth:`AssetStore.publish`-es it.

    ``version`` is the version the take becomes (decided by the render holding the root's lock: latest + 1),
    or the index row of a latest version whose missing file it restores (as :meth:`AssetStore.commit` would).
    """
    if spec.scene in RESERVED_SCENES:
        raise UnsafeNameError(f"scene name {spec.scene!r} is reserved (ROOT/{spec.scene} holds assetgen's own files)")
    scene, asset = check_name("scene", spec.scene), check_name("asset", spec.asset)
    as_processed = dataclasses.replace(encoded.info, audio=encoded.samples)
    if isinstance(version, dict):  # as _restore: the indexed row's own header, the new take's samples
        row, number = {k: version[k] for k in _ROW_FROM_PROVENANCE}, int(version["version"])
        data = file_bytes(row, _samples(as_processed, int(row["bit_depth"])))
    else:
        number = int(version)
        rel = f"{scene}/{asset}/{version_name(asset, number)}"
        samples = _samples(as_processed, spec.post.bit_depth)
        row = version_row(spec, content_key, encoded.info, samples, number, rel, model_label=model_label,
                          placeholder=placeholder, run_id=run_id, params=params)
        data = file_bytes(row, samples, encoded.info.embedding)
    row["sha256"] = hashlib.sha256(data).hexdigest()
    staged = f"{STAGING}/{check_name('run', run_id)}/{scene}/{asset}/{asset}_v{number:03d}-a{attempt}.wav"
    files.stage(staged, data)  # a retried task writes the same again
    return StagedTake(staged, row, encoded.info, restores=isinstance(version, dict))


class AssetStore:
    """Versioned asset files + index under one output root. Writers hold :meth:`lock`; readers need not.

    ``root`` is a local output root, or the working folder of a remote one (``store.root.writer_root``): the
    index lives there, the delivered files go through ``self.files`` (``store.root``) to the bucket.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.index = Index(self.root)
        self.files = _root.files_for(self.root)
        self._locked = False
        self._snapshot_at = 0.0

    def __repr__(self) -> str:
        return f"AssetStore({str(self.root)!r})"

    # -- paths ---------------------------------------------------------------------------------------
    def asset_dir(self, scene: str, asset: str) -> Path:
        """``ROOT/<scene>/<asset>`` after checking both names stay inside ROOT (not created here)."""
        if scene in RESERVED_SCENES:
            raise UnsafeNameError(f"scene name {scene!r} is reserved (ROOT/{scene} holds assetgen's own files)")
        path = self.root / check_name("scene", scene) / check_name("asset", asset)
        if self.files.remote:  # object keys: no symlinks to follow
            return path
        root = self.root.resolve()
        resolved = path.resolve()
        if resolved.parent.parent != root:  # second line of defence: symlinks pointing out of ROOT
            raise UnsafeNameError(f"{scene}/{asset}: resolves to {resolved}, outside the output root {root}")
        return path

    def _make_dirs(self, path: Path) -> None:
        """Create the asset folder (and scene folder), fsyncing each parent that got a new entry."""
        self.files.prepare_dir(path.relative_to(self.root).as_posix())

    def file_source(self, rel: str) -> Path | io.BytesIO:
        """A delivered file for soundfile / ``wav`` readers: its path locally, its bytes from a remote root."""
        if self.files.remote:
            return io.BytesIO(self.files.read_bytes(rel))
        return self.root / rel

    @contextlib.contextmanager
    def lock(self, wait: bool = True, on_wait: Callable[[], None] | None = None) -> Iterator[Path]:
        """Exclusive writer lock on ROOT (``ROOT/.assetgen.lock``); see ``store.lock.root_lock``.

        A remote root: the working folder's file lock (its index has one writer), then the root's lock object
        (``store.root.remote_lock``); the root's snapshot is fetched when it is not this folder's, and uploaded
        when the lock is released.
        """
        with root_lock(self.root, wait=wait, on_wait=on_wait) as path:
            if not self.files.remote:
                yield path
                return
            with _root.remote_lock(self.files, wait=wait, on_wait=on_wait, locked_error=RootLocked) as where:
                _root.fetch_snapshot(self.root, self.files)
                self._locked = True
                failed = True
                try:
                    yield Path(where)
                    failed = False
                finally:
                    self._locked = False
                    try:
                        _root.upload_snapshot(self.root, self.files)
                    except Exception:
                        if not failed:
                            raise
                        # the block's own error is the one to report; this folder's index stays the newer
                        # one (the root's snapshot is still the one it recorded) and goes up at the next release

    def snapshot(self, force: bool = False) -> None:
        """Upload the index snapshot of a remote root (at most every ``SNAPSHOT_EVERY_S`` unless ``force``);
        the lock's release always uploads one. No-op for a local root."""
        if not (self.files.remote and self._locked):
            return
        now = time.monotonic()
        if force or now - self._snapshot_at >= _root.SNAPSHOT_EVERY_S:
            _root.upload_snapshot(self.root, self.files)
            self._snapshot_at = now

    def _published(self, rel: str, sha256: str, fingerprint: tuple | None) -> None:
        """After an index write: a remote file's hash is vouched for by the ETag its upload returned (so the next
        reconcile need not download it), and the snapshot is uploaded when due."""
        if fingerprint is not None:
            self.index.record_verified([(rel, sha256, *fingerprint, time.time_ns())])
        self.snapshot()

    # -- commit --------------------------------------------------------------------------------------
    def commit(self, spec: AssetSpec, content_key: str, processed: ProcessedAudio, *, model_label: str,
               placeholder: bool, run_id: str, params: dict) -> dict:
        """Write one version atomically and index it; returns the row.

        When the latest version already has this content key, that row is returned and nothing is written
        (unless its file was found missing by reconcile: then the file is restored at its own path and
        version). A key that only an older version has (the manifest went back to earlier settings) becomes
        a new version, so "latest" always matches the manifest.
        """
        folder = self.asset_dir(spec.scene, spec.asset)
        existing = self.index.get(spec.scene, spec.asset)
        if existing is not None and existing["content_key"] == content_key:
            if existing["file_state"] == "missing":
                return self._restore(existing, processed)
            return existing
        version = existing["version"] + 1 if existing is not None else 1  # ``get`` is the highest version
        rel = f"{spec.scene}/{spec.asset}/{version_name(spec.asset, version)}"
        samples = _samples(processed, spec.post.bit_depth)
        row = version_row(spec, content_key, processed, samples, version, rel, model_label=model_label,
                          placeholder=placeholder, run_id=run_id, params=params)
        if self.files.exists(rel):
            raise StoreError(f"{rel} exists but is not in the index; run reconcile before rendering")
        self._make_dirs(folder)
        data = file_bytes(row, samples, processed.embedding)
        fingerprint = _publish(self.files, rel, data)
        row["sha256"] = hashlib.sha256(data).hexdigest()
        stored = self.index.add_version(row)
        crashpoint("after-index")
        self._published(rel, row["sha256"], fingerprint)
        return stored

    def _restore(self, row: dict, processed: ProcessedAudio) -> dict:
        """Re-create a missing file of an indexed version at its own path (never over an existing file)."""
        if self.files.exists(row["path"]):
            raise StoreError(f"{row['path']} exists but is marked missing; run reconcile before rendering")
        self._make_dirs((self.root / row["path"]).parent)
        data = file_bytes(row, _samples(processed, int(row["bit_depth"])))
        fingerprint = _publish(self.files, row["path"], data)
        sha = hashlib.sha256(data).hexdigest()
        restored = self.index.set_file_state(row["scene"], row["asset"], row["version"], "ok", sha256=sha)
        crashpoint("after-index")
        self._published(row["path"], sha, fingerprint)
        return restored

    def record_failure(self, spec: AssetSpec, content_key: str | None, stage: str, error: str,
                       run_id: str | None) -> dict:
        """Store a failed asset with its error (the render keeps going)."""
        failure = self.index.record_failure(run_id, spec.scene, spec.asset, content_key, stage, str(error))
        self.snapshot()
        return failure

    # -- delivery payload and reads ------------------------------------------------------------------
    def commit_encoded(self, spec: AssetSpec, content_key: str, encoded: "Encoded", *, model_label: str,
                       placeholder: bool, run_id: str, params: dict) -> dict:
        """:meth:`commit` of a clip :func:`encode_for_delivery` already encoded (the header is added here)."""
        processed = dataclasses.replace(encoded.info, audio=encoded.samples)
        return self.commit(spec, content_key, processed, model_label=model_label, placeholder=placeholder,
                           run_id=run_id, params=params)

    def read_latest(self, scene: str, asset: str) -> tuple[np.ndarray, int, dict] | None:
        """The latest version's delivered audio as float32 ``(channels, samples)``, its rate (Hz) and index
        row; None when the asset has no version."""
        import soundfile as sf

        row = self.index.get(scene, asset)
        if row is None:
            return None
        data, sr = sf.read(self.file_source(row["path"]), dtype="float32", always_2d=True)
        return np.ascontiguousarray(data.T), int(sr), row

    def latest_embedding(self, scene: str, asset: str) -> tuple[float, ...] | None:
        """The QC embedding of the raw take behind the latest version (from its WAV's provenance), or None
        (no version, an unreadable file, or a take delivered without one: a mix, a recording, older files)."""
        row = self.index.get(scene, asset)
        if row is None:
            return None
        try:
            source = self.file_source(row["path"])
            emb = wav.read_provenance(source.getvalue() if isinstance(source, io.BytesIO) else source).get(
                "qc_embedding")
        except (OSError, ValueError):  # wav.WavError is a ValueError
            return None
        return tuple(float(v) for v in emb) if isinstance(emb, list) and emb else None

    # -- staged takes: written where post-processing runs, published by the index's writer ----------------
    def stage(self, spec: AssetSpec, content_key: str, encoded: "Encoded", *, version: int | dict, model_label: str,
              placeholder: bool, run_id: str, params: dict, attempt: int = 1) -> "StagedTake":
        """:func:`stage` into this root, after the same name checks as a commit."""
        self.asset_dir(spec.scene, spec.asset)
        return stage(self.files, spec, content_key, encoded, version=version, model_label=model_label,
                     placeholder=placeholder, run_id=run_id, params=params, attempt=attempt)

    def publish(self, take: "StagedTake", info: ProcessedAudio | None = None) -> dict:
        """Put a staged take at its version's path and index it (the index's writer, under the lock); returns
        the row. Never replaces a file; mirrors :meth:`commit` when the latest version already has the key.

        ``info`` carries the take's final QC verdict (``TakeChooser``'s near-duplicate judgement); when that
        differs from the verdict the staged file records, the file is written again with the same samples.
        Otherwise the staged file itself becomes the version (``Files.promote``: a hard link locally, a
        server-side copy in an object store).
        """
        row = dict(take.row)
        scene, asset = row["scene"], row["asset"]
        folder = self.asset_dir(scene, asset)
        existing = self.index.get(scene, asset)
        if existing is not None and existing["content_key"] == row["content_key"] and not (
                take.restores and existing["file_state"] == "missing"):
            self.discard(take)
            return existing
        if take.restores:
            if existing is None or existing["version"] != row["version"] or existing["file_state"] != "missing":
                self.discard(take)
                raise StoreError(f"{row['path']}: staged to restore a missing latest version, which it no longer is")
        else:
            expected = existing["version"] + 1 if existing is not None else 1
            if int(row["version"]) != expected:
                self.discard(take)
                raise StoreError(f"{row['path']}: staged as version {row['version']}, but the next version "
                                 f"of {scene}/{asset} is {expected}")
            if info is not None:
                row.update(qc_fields(info))
        if self.files.exists(row["path"]):
            self.discard(take)
            raise StoreError(f"{row['path']} exists but is not in the index; run reconcile before rendering")
        self._make_dirs(folder)
        if row == take.row:
            try:
                fingerprint = self.files.promote(take.staged, row["path"])
            except _atomic.DestinationExists:
                raise StoreError(f"{row['path']} already exists; refusing to overwrite it (run reconcile)") from None
        else:  # the final verdict differs from the staged file's: the same samples under the final header
            data = wav.read_chunks(self.files.read_bytes(take.staged))[b"data"]
            frames = len(data) // (int(row["channels"]) * int(row["bit_depth"]) // 8)
            samples = wav.Samples(data, hashlib.sha256(data).hexdigest(), int(row["channels"]), frames,
                                  int(row["bit_depth"]))
            data = file_bytes(row, samples, take.info.embedding)
            fingerprint = _publish(self.files, row["path"], data)
            row["sha256"] = hashlib.sha256(data).hexdigest()
            self.discard(take)
        if take.restores:
            stored = self.index.set_file_state(scene, asset, row["version"], "ok", sha256=row["sha256"])
        else:
            stored = self.index.add_version(row)
        crashpoint("after-index")
        self._published(row["path"], row["sha256"], fingerprint)
        return stored

    def discard(self, take: "StagedTake") -> None:
        """Remove a staged take that will not be published (a re-rolled or rejected attempt)."""
        self.files.remove(take.staged)

    def clear_staging(self, run_id: str | None = None) -> list[str]:
        """Remove ``ROOT/.staging/<run_id>`` (every run's when None: at the start of a render, under the lock, what
        a killed render staged and never published); returns the removed files, relative to ROOT."""
        removed = self.files.remove_tree(f"{STAGING}/{check_name('run', run_id)}" if run_id is not None else STAGING)
        if not self.files.remote:
            with contextlib.suppress(OSError):  # another run's folder may still be in it
                (self.root / STAGING).rmdir()
        return removed

    # -- reconcile -----------------------------------------------------------------------------------
    def reconcile(self, verify_hashes: bool = True) -> ReconcileReport:
        """Repair the root after a crash or manual edits (see the module docstring); call under the lock.

        ``verify_hashes=False`` only checks that indexed files exist (fast for huge libraries).
        """
        report = ReconcileReport()
        if not self.files.remote and not self.root.is_dir():
            return report
        rows = {r["path"]: r for r in self.index.rows()}
        orphans: list[tuple[str, str, int, str]] = []
        for rel in self.files.asset_files():
            scene, asset, name = rel.split("/")
            if _atomic.TEMP_RE.match(name):
                self.files.remove(rel)
                report.removed_temp.append(rel)
                continue
            if rel in rows:
                continue
            m = _VERSION_RE.match(name)
            if m and m["asset"] == asset:
                orphans.append((scene, asset, int(m["version"]), rel))
        self.files.synced(report.removed_temp)
        adopted_rows = []
        for scene, asset, version, rel in sorted(orphans):
            blob = self.files.read_bytes(rel)
            reason = self._adoption_problem(scene, asset, version, rel, blob)
            if reason is None:
                adopted_rows.append(self._adopt(blob))
                report.adopted.append(rel)
            else:
                report.quarantined.append(self._quarantine(rel, reason))
        report.decisions_restored += [f"{r['path']}: {r['status']}"
                                      for r in self.index.restore_decisions(adopted_rows)]
        report.decisions_restored += [f"{i}: retired" for i in self.index.restore_retirements(
            f"{r['scene']}/{r['asset']}" for r in adopted_rows)]
        verified = self.index.verified_files() if verify_hashes else {}
        fingerprints = self.files.fingerprints(rows)
        fresh: list[tuple] = []
        for rel, row in rows.items():
            self._check_row(rel, row, verify_hashes, report, verified, fresh, fingerprints[rel])
        self.index.record_verified(fresh)
        return report

    def _asset_files(self) -> list[Path]:
        """Files in ``ROOT/<scene>/<asset>/`` (dot folders such as .quarantine are skipped)."""
        return [self.root / rel for rel in self.files.asset_files()]

    def _adoption_problem(self, scene: str, asset: str, version: int, rel: str, blob: bytes) -> str | None:
        """Why an unindexed file (``blob``, its bytes) cannot be adopted, or None when its provenance rebuilds a
        valid row."""
        if not wav.audio_intact(blob):
            return "unreadable or audio does not match its recorded audio_sha256"
        prov = wav.read_provenance(blob)
        if (prov.get("scene"), prov.get("asset"), prov.get("version"), prov.get("path")) != \
                (scene, asset, version, rel):
            return "provenance names another scene/asset/version/path"
        if not prov.get("content_key") or not prov.get("created_at"):
            return "provenance lacks content key or creation time"
        if version != self.index.next_version(scene, asset):
            return f"version {version} is not the next version ({self.index.next_version(scene, asset)})"
        latest = self.index.get(scene, asset)
        if latest is not None and latest["content_key"] == prov["content_key"]:
            return "its content key is already the asset's latest version"
        return None

    def _adopt(self, blob: bytes) -> dict:
        prov = wav.read_provenance(blob)
        row = {k: prov.get(k) for k in _ROW_FROM_PROVENANCE} | {"sha256": hashlib.sha256(blob).hexdigest()}
        return self.index.add_version(row)

    def _check_row(self, rel: str, row: dict, verify: bool, report: ReconcileReport, verified: dict,
                   fresh: list, fingerprint: tuple | None) -> None:
        """Check one indexed file (``fingerprint``: ``Files.fingerprints``, None when missing or not a regular
        file); a file unchanged since its hash was last verified is not read again."""
        scene, asset, version = row["scene"], row["asset"], row["version"]
        if fingerprint is None:
            if row["file_state"] == "ok":
                self.index.set_file_state(scene, asset, version, "missing")
            report.missing.append(rel)
            return
        if not verify and row["file_state"] == "ok":
            return
        if row["file_state"] == "ok" and still_verified(verified.get(rel), row["sha256"], fingerprint):
            return
        now = time.time_ns()
        if self.files.sha256(rel) == row["sha256"]:
            fresh.append((rel, row["sha256"], *fingerprint, now))
            if row["file_state"] != "ok":
                self.index.set_file_state(scene, asset, version, "ok")
                report.recovered.append(rel)
            return
        report.quarantined.append(self._quarantine(rel, "sha256 differs from its index row"))
        report.modified.append(rel)
        self.index.set_file_state(scene, asset, version, "missing")

    def _quarantine(self, rel: str, reason: str) -> str:
        """Move a file to ``ROOT/.quarantine/<same relative path>`` (suffix added rather than overwrite)."""
        target = PurePosixPath(QUARANTINE) / rel
        n = 1
        while self.files.exists(target.as_posix()):
            target = PurePosixPath(QUARANTINE) / PurePosixPath(rel).with_name(f"{PurePosixPath(rel).name}.{n}")
            n += 1
        self.files.move(rel, target.as_posix())
        self.files.synced([rel])
        return f"{rel} -> {target.as_posix()}: {reason}"


def _loop(processed: ProcessedAudio) -> tuple[int, int] | None:
    if processed.loop_start is None or processed.loop_end is None:
        return None
    return int(processed.loop_start), int(processed.loop_end)


def _samples(processed: ProcessedAudio, bit_depth: int) -> wav.Samples:
    """The delivered audio encoded at ``bit_depth``: as post-processing encoded it, or encoded here."""
    if isinstance(processed.audio, wav.Samples):
        if processed.audio.bit_depth != bit_depth:
            raise StoreError(f"audio was encoded at {processed.audio.bit_depth} bit, "
                             f"the asset asks for {bit_depth}")
        return processed.audio
    return wav.encode(np.asarray(processed.audio, dtype=np.float32), bit_depth)


def _num(value: Any) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


@dataclass
class Encoded:
    """A post-processed clip in the store's delivery form: ``samples`` encoded at the asset's bit depth, and
    ``info``, the clip's measurements (a ``ProcessedAudio`` whose ``audio`` is emptied to ``(channels, 0)``)."""

    samples: wav.Samples
    info: ProcessedAudio


def encode_for_delivery(processed: ProcessedAudio, bit_depth: int) -> Encoded:
    """Encode a post-processed clip for :meth:`AssetStore.commit_encoded` (16/24-bit PCM or 32-bit float).

    Runs wherever post-processing runs (the DSP process, a Dask worker): the samples then cross the process
    boundary at 3/4 of float32's size, and the writing process only adds the header chunks.
    """
    samples = wav.encode(processed.audio, bit_depth)
    empty = np.zeros((samples.channels, 0), dtype=np.float32)
    return Encoded(samples, dataclasses.replace(processed, audio=empty))


@dataclass
class StagedTake:
    """A take written complete and fsynced under ``ROOT/.staging/`` by the process that post-processed it
    (:meth:`AssetStore.stage`); what crosses back to the index's writer instead of the audio."""

    staged: str  # the staged file, relative to ROOT (posix)
    row: dict  # the index row its provenance records, with the sha256 of the whole file
    info: ProcessedAudio  # the take's measurements, QC gates and raw-take embedding; audio emptied
    restores: bool = False  # re-creates the missing file of an indexed latest version (``row`` is that row)
