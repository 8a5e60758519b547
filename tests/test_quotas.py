"""Per-tenant limits: queued jobs, epochs, stored bytes; each a clear 4xx."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from service.migrate import upgrade
from tests.conftest import TINY_CSV, Server, start_server, stop_process


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("limited")
    url = f"sqlite:///{tmp}/limited.db"
    upgrade(url)
    server = start_server(
        url,
        tmp,
        RIDGELINE_MAX_QUEUED_JOBS_PER_TENANT="2",
        RIDGELINE_MAX_EPOCHS="5",
        RIDGELINE_TENANT_QUOTA_BYTES="1500",
    )
    yield server
    stop_process(server.process)


def _upload(client: httpx.Client) -> httpx.Response:
    return client.post("/v1/datasets", files={"file": ("tiny.csv", TINY_CSV)})


def test_queued_jobs_per_tenant(limited: Server) -> None:
    with limited.client(limited.new_key()) as client, limited.client(limited.new_key()) as other:
        dataset_id = _upload(client).json()["id"]
        spec = {"dataset_id": dataset_id, "target": "y"}
        assert [client.post("/v1/jobs", json=spec).status_code for _ in range(2)] == [202, 202]
        refused = client.post("/v1/jobs", json=spec)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] and "limit is 2" in refused.json()["detail"]
        other_dataset = _upload(other).json()["id"]
        assert other.post("/v1/jobs", json={**spec, "dataset_id": other_dataset}).status_code == 202


def test_epochs_limit(limited: Server) -> None:
    with limited.client(limited.new_key()) as client:
        dataset_id = _upload(client).json()["id"]
        response = client.post(
            "/v1/jobs",
            json={"dataset_id": dataset_id, "target": "y", "model": {"kind": "mlp", "epochs": 6}},
        )
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "model.epochs"


def test_stored_bytes_quota(limited: Server) -> None:
    with limited.client(limited.new_key()) as client:
        first = _upload(client)
        assert first.status_code == 201 and 750 < first.json()["stored_bytes"] <= 1500
        refused = _upload(client)
        assert refused.status_code == 413
        assert "quota" in refused.json()["detail"]
        assert len(client.get("/v1/datasets").json()["items"]) == 1
