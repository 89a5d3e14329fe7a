"""The nightly schedule (served) and the farm deployment (prefect.yaml) carry the cron and the parameters."""

from __future__ import annotations

import inspect

import yaml

from tests.conftest import REPO


def test_served_deployment_carries_cron_and_parameters():
    from flows.nightly import nightly_deployment

    dep = nightly_deployment(["manifests/demo.csv", "manifests/themes/forest.csv"], "/srv/out", cron="30 3 * * 1-5",
                             timezone="Europe/Paris", model_dir="/models", batch_size=12)
    (sched,) = dep.schedules
    assert sched.schedule.cron == "30 3 * * 1-5"
    assert sched.schedule.timezone == "Europe/Paris"
    assert sched.active
    assert dep.parameters == {"manifests": ["manifests/demo.csv", "manifests/themes/forest.csv"], "out": "/srv/out",
                              "model_dir": "/models", "batch_size": 12, "device": None,
                              "fail_on": "qc"}
    assert dep.flow_name == "assetgen-render"
    assert dep.entrypoint == "flows/render.py:render_flow"


def test_farm_deployment_matches_render_flow_signature():
    from flows.render import render_flow

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    (dep,) = [d for d in spec["deployments"] if d["name"] == "nightly-gpu"]
    assert dep["schedules"][0]["cron"] == "0 2 * * *"
    assert dep["work_pool"]["name"] == "gpu-pool"
    path, func = dep["entrypoint"].split(":")
    assert (REPO / path).is_file() and func == "render_flow"
    accepted = set(inspect.signature(render_flow.fn).parameters)
    assert set(dep["parameters"]) <= accepted, set(dep["parameters"]) - accepted
    for manifest in dep["parameters"]["manifests"]:
        assert (REPO / manifest).is_file(), manifest


def test_ephemeral_renders_skip_flow_heartbeats(monkeypatch):
    # nothing reads heartbeats of a server that dies with the process; with a real server they stay on
    from prefect.settings import get_current_settings

    from assetgen.runtime import ephemeral_run_settings

    default = get_current_settings().flows.heartbeat_frequency
    assert default is not None
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with ephemeral_run_settings():
        assert get_current_settings().flows.heartbeat_frequency is None
    assert get_current_settings().flows.heartbeat_frequency == default
    monkeypatch.setenv("PREFECT_API_URL", "http://prefect.example:4200/api")
    with ephemeral_run_settings():
        assert get_current_settings().flows.heartbeat_frequency == default
