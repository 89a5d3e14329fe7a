"""Index rows as a table file (``assetgen index --export``): CSV or Parquet through pandas, written atomically."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from assetgen.store.atomic import atomic_write
from assetgen.store.schema import COLUMNS

FORMATS = ("csv", "parquet")


def export_rows(rows: Sequence[dict], path: str | os.PathLike, fmt: str = "csv") -> Path:
    """Write ``rows`` (one per version, ``COLUMNS`` order) to ``path`` as ``csv`` or ``parquet``."""
    import pandas as pd

    if fmt not in FORMATS:
        raise ValueError(f"export format {fmt!r}: expected csv or parquet")
    path = Path(path)
    frame = pd.DataFrame(list(rows), columns=list(COLUMNS))
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))
    return atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False, engine="pyarrow"))
