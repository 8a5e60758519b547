"""A tenant with a dataset and three succeeded jobs on the shared server, per backend, shared by
the registry modules."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sklearn.datasets import load_breast_cancer

from tests.conftest import Server, wait_for_job

# Three L1/L2 logistic regressions of different strength: three distinguishable models.
REGULARIZATIONS = [
    {"penalty": "l1", "strength": 0.05},
    {"penalty": "l2", "strength": 0.5},
    {"penalty": "l1", "strength": 0.005},
]


@dataclass
class Trained:
    """One tenant's key, its cancer dataset and succeeded jobs (one per regularization)."""

    key: str
    tenant: str
    dataset_id: str
    dataset_sha256: str
    jobs: list[dict[str, Any]]
    rows: list[dict[str, Any]]

    def client(self, server: Server) -> httpx.Client:
        return server.client(self.key)


def train_jobs(client: httpx.Client, dataset_id: str, **extra: Any) -> list[dict[str, Any]]:
    submitted = []
    for number, regularization in enumerate(REGULARIZATIONS):
        body = {
            "dataset_id": dataset_id,
            "target": "target",
            "regularization": regularization,
            "name": f"cancer-{number}",
            **extra,
        }
        response = client.post("/v1/jobs", json=body)
        assert response.status_code == 202, response.text
        submitted.append(response.json()["id"])
    jobs = [wait_for_job(client, job_id) for job_id in submitted]
    assert all(job["status"] == "succeeded" for job in jobs), jobs
    return jobs


@pytest.fixture(scope="session")
def trained(server: Server, worker: Any) -> Iterator[Trained]:
    """Trained once per backend for every registry module: each test names models of its own."""
    key, tenant = server.new_tenant()
    frame = load_breast_cancer(as_frame=True).frame
    with server.client(key) as client:
        upload = client.post(
            "/v1/datasets", files={"file": ("cancer.csv", frame.to_csv(index=False).encode())}
        )
        assert upload.status_code == 201, upload.text
        dataset = upload.json()
        jobs = train_jobs(client, dataset["id"], tags={"suite": "registry"})
    rows = frame.drop(columns="target").head(5).to_dict(orient="records")
    yield Trained(key, tenant, dataset["id"], dataset["sha256"], jobs, rows)


def unique(prefix: str) -> str:
    """A model name no other test uses (the tenant is shared by the registry tests)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
