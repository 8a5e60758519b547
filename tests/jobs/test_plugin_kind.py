"""A model kind defined in the test suite alone reaches every process through RIDGELINE_PLUGINS:
the API validates its specs, the worker (its forkserver and children) trains it, and its jobs
predict, report metrics and sweep over HTTP like the built-in kinds."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import (
    TEST_PLUGINS,
    Server,
    start_server,
    stop_process,
    upload_tiny,
    wait_for,
    wait_for_job,
)

CONSTANT = {"kind": "constant"}


@pytest.fixture(scope="module")
def plugin_server(
    server: Server, worker: subprocess.Popen[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """An API process with the toy kind plugged in, on the shared database: the session worker
    (its forkserver and children) has it plugged in through the same setting."""
    srv = start_server(
        server.database_url, tmp_path_factory.mktemp("plugin"), RIDGELINE_PLUGINS=TEST_PLUGINS
    )
    yield srv
    stop_process(srv.process)


def _sweep_done(api: httpx.Client, sweep_id: str) -> dict[str, Any] | None:
    sweep: dict[str, Any] = api.get(f"/v1/sweeps/{sweep_id}").json()
    return sweep if sweep["status"] in ("succeeded", "failed", "cancelled") else None


def test_a_plugin_kind_trains_predicts_reports_and_sweeps(plugin_server: Server) -> None:
    with plugin_server.client(plugin_server.new_key()) as api:
        dataset_id = upload_tiny(api)
        body = {"dataset_id": dataset_id, "target": "y", "model": CONSTANT}
        created = api.post("/v1/jobs", json=body)
        assert created.status_code == 202, created.text
        job = wait_for_job(api, created.json()["id"])
        assert job["status"] == "succeeded", job["error"]
        assert job["artifact"]["kind"] == "constant-zip"
        assert job["native_params"]["estimator"] == "ConstantPredictor"

        metrics = api.get(f"/v1/jobs/{job['id']}/metrics").json()
        validation = metrics["final"]["validation"]
        assert validation["n"] == 8 and 0 < validation["accuracy"] <= 1
        assert metrics["metric_info"]["log_loss"]["greater_is_better"] is False
        assert metrics["weights"]["n_weights"] == 0 and metrics["diagnosis"]["verdict"]

        predicted = api.post(f"/v1/jobs/{job['id']}/predict", json={"rows": [{"x": 3}, {"x": 30}]})
        assert predicted.status_code == 200, predicted.text
        shares = predicted.json()["probabilities"]
        assert shares[0] == shares[1] and sum(shares[0].values()) == pytest.approx(1.0)
        artifact = api.get(f"/v1/jobs/{job['id']}/artifact")
        assert artifact.headers["content-type"] == "application/zip"
        assert artifact.headers["content-disposition"].endswith('.zip"')
        onnx = api.get(f"/v1/jobs/{job['id']}/artifact", params={"format": "onnx"})
        assert onnx.status_code == 422 and "no ONNX export" in onnx.json()["detail"]

        sweep = api.post(
            "/v1/sweeps",
            json={
                **body,
                "search": {"penalty": ["l2"], "strength": [0.1, 1.0]},
                "cv": {"folds": 2},
            },
        )
        assert sweep.status_code == 202, sweep.text
        assert sweep.json()["n_jobs"] == 2  # one trial job per configuration: no path to fit
        done = wait_for(
            lambda: _sweep_done(api, sweep.json()["id"]), timeout=180, message="the sweep"
        )
        assert done["status"] == "succeeded", done["error"]
        assert done["greater_is_better"] is False and done["metric"] == "log_loss"
        assert [row["n_folds"] for row in done["leaderboard"]] == [2, 2]
        refit = wait_for_job(api, done["refit_job_id"])
        assert refit["status"] == "succeeded" and refit["spec"]["model"] == CONSTANT


def test_a_server_without_the_plugin_refuses_the_kind(api: httpx.Client) -> None:
    dataset_id = upload_tiny(api)
    refused = api.post(
        "/v1/jobs", json={"dataset_id": dataset_id, "target": "y", "model": CONSTANT}
    )
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "model"
    assert "'linear', 'mlp'" in refused.json()["errors"][0]["message"]
