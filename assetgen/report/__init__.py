"""Review report (static HTML page), local review server and engine export.

- :func:`build_report` (``assetgen report``): ROOT/report/index.html with cached media;
- :mod:`assetgen.report.review` (``assetgen review``): ``create_app(root)``, ``serve_review(root, host, port)``;
- :mod:`assetgen.report.export` (``assetgen export``): ``export_approved(root, to, pattern)``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["build_report"]


def build_report(root: Path, workers: int | None = None) -> Path:
    """Write ROOT/report/index.html (and any missing media); returns the page path."""
    from assetgen.report.build import build_report as _build

    return _build(root, workers=workers)
