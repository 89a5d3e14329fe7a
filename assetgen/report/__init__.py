"""Review report (static HTML page), local review server and engine export.

- :func:`build_report` (``assetgen report``): ROOT/report/index.html with cached media;
- :mod:`assetgen.report.review` (``assetgen review``): ``create_app(root, allowed_hosts=...)``,
  ``serve_review(root, host, port, allowed_hosts)``;
- :mod:`assetgen.report.export` (``assetgen export``): ``export_assets(root, to, pattern, mode=...)``;
- :mod:`assetgen.report.approval`: ``approval_blockers(row)``, ``set_status_checked`` (force + reason, journaled);
- :mod:`assetgen.report.verify`: ``file_problems(root, rows)``, files that no longer hold their indexed bytes.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["build_report"]


def build_report(root: Path, workers: int | None = None) -> Path:
    """Write ROOT/report/index.html (and any missing media); returns the page path."""
    from assetgen.report.build import build_report as _build

    return _build(root, workers=workers)
