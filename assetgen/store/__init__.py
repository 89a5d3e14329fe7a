"""Versioned asset store: atomic WAV files under ROOT/<scene>/<asset>/ plus the SQLite index.

``AssetStore`` (store.py) writes; ``Index`` (index.py) is the one-row-per-version table and the render log
(one module per concern: schema, db, versions, runs, verified, tabular, decisions); ``atomic.atomic_write`` is
the one way any file is put in place; ``wav`` writes and reads the engine chunks; ``crash.crashpoint`` names
crash points; ``lock.root_lock`` is the writer lock.
"""

from assetgen.store.index import Index, IndexConflictError, IndexLookupError, IndexSchemaError
from assetgen.store.lock import RootLocked
from assetgen.store.store import AssetStore, ReconcileReport, StoreError, UnsafeNameError

__all__ = ["AssetStore", "Index", "IndexConflictError", "IndexLookupError", "IndexSchemaError",
           "ReconcileReport", "RootLocked", "StoreError", "UnsafeNameError"]
