"""Nightly renders: serve the render flow on a cron schedule from one machine.

A render farm uses the deployment in ``prefect.yaml`` instead (a GPU work pool; see README "Nightly renders").
Run on one machine:  python -m flows.nightly --cron "0 2 * * *" --manifest manifests/demo.csv --out outputs
"""

from __future__ import annotations

import argparse
import os
from typing import Sequence

NIGHTLY_CRON = "0 2 * * *"  # 02:00 every night
DEPLOYMENT_NAME = "assetgen-nightly"


def nightly_parameters(manifests: Sequence[str], out: str, model_dir: str | None = None,
                       batch_size: int = 8, device: str | None = None, fail_on: str = "qc") -> dict:
    """Parameters of the scheduled render (same names as ``render_flow``'s); by default a night whose assets
    fail QC ends Failed in Prefect, as ``assetgen render`` exits 1."""
    return {"manifests": list(manifests), "out": out, "model_dir": model_dir, "batch_size": batch_size,
            "device": device, "fail_on": fail_on}


def nightly_deployment(manifests: Sequence[str], out: str, *, cron: str = NIGHTLY_CRON, timezone: str = "UTC",
                       **params):
    """A served deployment of ``render_flow`` on ``cron`` (not started; pass it to ``prefect.serve``)."""
    from prefect.schedules import Cron

    from flows.render import render_flow

    return render_flow.to_deployment(
        name=DEPLOYMENT_NAME, schedule=Cron(cron, timezone=timezone),
        parameters=nightly_parameters(manifests, out, **params), tags=["assetgen", "nightly"],
        description="Nightly re-render of changed assets (only new and changed content keys are generated).")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", action="append", required=True, help="manifest file (repeatable)")
    parser.add_argument("--out", default="outputs")
    parser.add_argument("--model-dir", default=os.environ.get("ASSETGEN_MODEL_DIR"))
    parser.add_argument("--cron", default=NIGHTLY_CRON)
    parser.add_argument("--timezone", default="UTC")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default=None)
    parser.add_argument("--fail-on", default="qc", choices=("error", "qc", "never"),
                        help="when the night's flow run ends Failed (as assetgen render --fail-on)")
    args = parser.parse_args(argv)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect import serve

    serve(nightly_deployment(args.manifest, args.out, cron=args.cron, timezone=args.timezone,
                             model_dir=args.model_dir, batch_size=args.batch_size, device=args.device,
                             fail_on=args.fail_on))


if __name__ == "__main__":
    main()
