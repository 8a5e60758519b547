"""Plot endpoints over HTTP: valid SVG and PNG, right content types, 404/409 where no data."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from typing import Any

import httpx
import pytest
from sklearn.datasets import load_breast_cancer

from tests.conftest import wait_for, wait_for_job

pytestmark = pytest.mark.usefixtures("worker")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _valid(response: httpx.Response, fmt: str) -> None:
    assert response.status_code == 200, response.text
    if fmt == "svg":
        assert response.headers["content-type"] == "image/svg+xml"
        assert ET.fromstring(response.content).tag.endswith("svg")
    else:
        assert response.headers["content-type"] == "image/png"
        assert response.content.startswith(PNG_SIGNATURE)


@pytest.fixture(scope="module")
def api(module_api: httpx.Client) -> httpx.Client:
    """Here one tenant for the whole module: its tests read what it trained once."""
    return module_api


@pytest.fixture(scope="module")
def jobs_and_sweep(api: httpx.Client, worker: subprocess.Popen[str]) -> dict[str, Any]:
    """Two jobs and a sweep of the module's tenant, trained once for every plot below."""
    frame = load_breast_cancer(as_frame=True).frame
    dataset_id = api.post(
        "/v1/datasets", files={"file": ("c.csv", frame.to_csv(index=False).encode())}
    ).json()["id"]
    base = {"dataset_id": dataset_id, "target": "target"}
    linear = api.post(
        "/v1/jobs",
        json={
            **base,
            "learning_curve": {"sizes": [0.25, 0.5, 1.0]},
            "regularization": {"penalty": "l1", "strength": 0.01},
        },
    ).json()
    mlp = api.post(
        "/v1/jobs", json={**base, "model": {"kind": "mlp", "hidden_layers": [8], "epochs": 4}}
    ).json()
    sweep = api.post(
        "/v1/sweeps",
        json={
            **base,
            "search": {"penalty": ["l1", "l2"], "strength": {"min": 1e-3, "max": 1, "num": 3}},
            "cv": {"folds": 2},
            "refit": False,
        },
    ).json()
    for job in (linear, mlp):
        assert wait_for_job(api, job["id"])["status"] == "succeeded"
    wait_for(
        lambda: api.get(f"/v1/sweeps/{sweep['id']}").json()["status"] == "succeeded",
        timeout=120,
        message="the sweep",
    )
    return {"linear": linear["id"], "mlp": mlp["id"], "sweep": sweep["id"]}


@pytest.mark.parametrize("fmt", ["svg", "png"])
def test_every_plot_renders(api: httpx.Client, jobs_and_sweep: dict[str, Any], fmt: str) -> None:
    ids = jobs_and_sweep
    _valid(api.get(f"/v1/jobs/{ids['mlp']}/plots/loss-curve", params={"format": fmt}), fmt)
    _valid(api.get(f"/v1/jobs/{ids['linear']}/plots/coefficients", params={"format": fmt}), fmt)
    _valid(api.get(f"/v1/jobs/{ids['linear']}/plots/learning-curve", params={"format": fmt}), fmt)
    _valid(
        api.get(f"/v1/sweeps/{ids['sweep']}/plots/validation-curve", params={"format": fmt}), fmt
    )
    _valid(
        api.get(f"/v1/sweeps/{ids['sweep']}/plots/regularization-path", params={"format": fmt}), fmt
    )
    overlay = api.get(
        "/v1/plots/loss-curves", params={"jobs": f"{ids['mlp']},{ids['mlp']}", "format": fmt}
    )
    _valid(overlay, fmt)


def test_missing_data_is_404_or_409(api: httpx.Client, jobs_and_sweep: dict[str, Any]) -> None:
    ids = jobs_and_sweep
    assert api.get(f"/v1/jobs/{ids['linear']}/plots/loss-curve").status_code == 404
    assert api.get(f"/v1/jobs/{ids['mlp']}/plots/coefficients").status_code == 404
    assert api.get(f"/v1/jobs/{ids['mlp']}/plots/learning-curve").status_code == 404
    assert api.get("/v1/plots/loss-curves", params={"jobs": ids["linear"]}).status_code == 409
    assert api.get(f"/v1/jobs/{ids['mlp']}/plots/nonsense").status_code == 422
    queued = api.post(
        "/v1/jobs",
        json={
            "dataset_id": api.get(f"/v1/jobs/{ids['mlp']}").json()["dataset_id"],
            "target": "target",
            "model": {"kind": "mlp", "epochs": 10_000},
        },
    ).json()
    early = api.get(f"/v1/jobs/{queued['id']}/plots/coefficients")
    assert early.status_code == 409
    api.post(f"/v1/jobs/{queued['id']}/cancel")
    wait_for_job(api, queued["id"])


def test_repeated_calls_are_cached(api: httpx.Client, jobs_and_sweep: dict[str, Any]) -> None:
    url = f"/v1/jobs/{jobs_and_sweep['mlp']}/plots/loss-curve"
    assert api.get(url).content == api.get(url).content
