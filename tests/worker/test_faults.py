"""The worker under faults: crashes, OOM, time limits, cancel, lost workers, many workers, SIGTERM.

Fault trainers (tests/worker/fault_trainers.py) are registered in test workers only and jobs
that use them are inserted the way the API inserts jobs; none is reachable over HTTP.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from service.config import Settings
from service.db import Database
from service.jobs.models import Job, JobAttempt
from service.migrate import upgrade
from tests.conftest import (
    BACKENDS,
    Server,
    dispose_database_url,
    insert_job,
    new_database_url,
    start_server,
    start_worker,
    stop_process,
    upload_tiny,
    wait_for,
    wait_for_job,
)


@pytest.fixture
def tenant_client(
    server: Server, worker: subprocess.Popen[str]
) -> Iterator[tuple[httpx.Client, str, str]]:
    key, tenant = server.new_tenant()
    with server.client(key) as client:
        yield client, tenant, upload_tiny(client)


def _insert(server: Server, tenant: str, dataset_id: str, trainer: str, **spec: Any) -> str:
    return insert_job(
        server.database_url, tenant=tenant, dataset_id=dataset_id, trainer=trainer, **spec
    )


def _then_a_real_job_succeeds(client: httpx.Client, dataset_id: str) -> None:
    job = client.post("/v1/jobs", json={"dataset_id": dataset_id, "target": "y"}).json()
    assert wait_for_job(client, job["id"], timeout=60)["status"] == "succeeded"


@pytest.mark.parametrize(
    ("trainer", "says"),
    [
        ("test-segfault", "segmentation fault"),
        ("test-oom", "out of memory"),
        ("test-raise", "raised on purpose"),
    ],
)
def test_a_failing_child_fails_the_attempt_not_the_worker(
    server: Server, tenant_client: tuple[httpx.Client, str, str], trainer: str, says: str
) -> None:
    client, tenant, dataset_id = tenant_client
    job_id = _insert(server, tenant, dataset_id, trainer)
    job = wait_for_job(client, job_id, timeout=60)
    assert job["status"] == "failed"
    assert says in job["error"]
    assert job["attempts"][-1]["outcome"] == "failed"
    _then_a_real_job_succeeds(client, dataset_id)


def test_time_limit(server: Server, tenant_client: tuple[httpx.Client, str, str]) -> None:
    client, tenant, dataset_id = tenant_client
    job_id = _insert(server, tenant, dataset_id, "test-sleep", seed=60, max_seconds=1)
    job = wait_for_job(client, job_id, timeout=30)
    assert job["status"] == "failed"
    assert "time limit exceeded" in job["error"]
    _then_a_real_job_succeeds(client, dataset_id)


def test_cancel_kills_the_child_quickly(
    server: Server, tenant_client: tuple[httpx.Client, str, str]
) -> None:
    client, tenant, dataset_id = tenant_client
    job_id = _insert(server, tenant, dataset_id, "test-sleep", seed=60)
    wait_for(
        lambda: client.get(f"/v1/jobs/{job_id}/metrics").json()["history"],
        timeout=30,
        message="the first epoch",
    )
    client.post(f"/v1/jobs/{job_id}/cancel")
    job = wait_for_job(client, job_id, timeout=2.5)
    assert job["status"] == "cancelled"
    _then_a_real_job_succeeds(client, dataset_id)


def _read_sse(client: httpx.Client, job_id: str) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    kind = "message"
    with client.stream("GET", f"/v1/jobs/{job_id}/events", timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((kind, json.loads(line.removeprefix("data: "))))
    return events


def test_events_stream_in_order_until_the_end(
    server: Server, tenant_client: tuple[httpx.Client, str, str]
) -> None:
    client, tenant, dataset_id = tenant_client
    job_id = _insert(server, tenant, dataset_id, "test-sleep", seed=1)
    events = _read_sse(client, job_id)
    statuses = [data["status"] for kind, data in events if kind == "status"]
    assert statuses == ["queued", "running", "succeeded"]
    epochs = [data["epoch"] for kind, data in events if kind == "epoch"]
    assert epochs and epochs == sorted(epochs) and epochs[0] == 1
    kinds = [kind for kind, _ in events]
    assert kinds.index("epoch") > kinds.index("status") and kinds[-1] == "status"
    # A finished job replays its whole story and closes.
    assert [k for k, _ in _read_sse(client, job_id)] == kinds


# --- slow: each test has its own database, server and workers --------------------------------


@pytest.fixture(params=BACKENDS)
def isolated(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    url = new_database_url(request.param, tmp_path)
    upgrade(url)
    server = start_server(url, tmp_path)
    yield server
    stop_process(server.process)
    dispose_database_url(url)


def _attempt_rows(database_url: str) -> list[tuple[str, int, str | None]]:
    database = Database(Settings(database_url=database_url))
    try:
        with database.transaction(write=False) as session:
            rows = session.execute(
                select(JobAttempt.job_id, JobAttempt.attempt, JobAttempt.outcome)
            ).all()
            return [(str(j), a, o) for j, a, o in rows]
    finally:
        database.dispose()


def _count_jobs(database_url: str, status: str) -> int:
    database = Database(Settings(database_url=database_url))
    try:
        with database.transaction(write=False) as session:
            return session.scalar(select(func.count()).where(Job.status == status)) or 0
    finally:
        database.dispose()


@pytest.mark.slow
def test_killed_worker_job_finishes_on_attempt_two(isolated: Server, tmp_path: Path) -> None:
    from sklearn.datasets import load_breast_cancer

    key, _ = isolated.new_tenant()
    client = isolated.client(key)
    frame = load_breast_cancer(as_frame=True).frame
    dataset = client.post(
        "/v1/datasets", files={"file": ("c.csv", frame.to_csv(index=False).encode())}
    ).json()
    job = client.post(
        "/v1/jobs",
        json={
            "dataset_id": dataset["id"],
            "target": "target",
            "model": {"kind": "mlp", "hidden_layers": [32], "epochs": 120, "batch_size": 8},
        },
    ).json()
    first = start_worker(isolated.database_url, tmp_path / "w1", tmp_path / "w1.log")
    try:
        wait_for(
            lambda: len(client.get(f"/v1/jobs/{job['id']}/metrics").json()["history"]) >= 3,
            timeout=60,
            message="a few epochs on the first worker",
        )
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        stop_process(first)
    second = start_worker(isolated.database_url, tmp_path / "w2", tmp_path / "w2.log")
    try:
        done = wait_for_job(client, job["id"], timeout=180)
    finally:
        stop_process(second)
    assert done["status"] == "succeeded", done["error"]
    assert done["attempt"] == 2
    assert [a["outcome"] for a in done["attempts"]] == ["lost", "succeeded"]
    history = client.get(f"/v1/jobs/{job['id']}/metrics").json()["history"]
    assert [row["epoch"] for row in history] == list(range(1, len(history) + 1))
    assert len(history) == 120


def _many_jobs(server: Server, n_workers: int, n_jobs: int, tmp_path: Path) -> None:
    key, tenant = server.new_tenant()
    client = server.client(key)
    dataset_id = upload_tiny(client)
    for _ in range(n_jobs):
        _insert(server, tenant, dataset_id, "test-noop")
    workers = [
        start_worker(server.database_url, tmp_path / f"w{i}", tmp_path / f"w{i}.log")
        for i in range(n_workers)
    ]
    try:
        wait_for(
            lambda: _count_jobs(server.database_url, "succeeded") == n_jobs,
            timeout=300,
            interval=0.5,
            message=f"{n_jobs} jobs to succeed",
        )
    finally:
        for process in workers:
            stop_process(process)
    rows = _attempt_rows(server.database_url)
    assert len(rows) == n_jobs, "some job was attempted more than once"
    assert {attempt for _, attempt, _ in rows} == {1}
    assert {outcome for *_, outcome in rows} == {"succeeded"}
    logs = "".join((tmp_path / f"w{i}.log").read_text() for i in range(n_workers))
    assert "lost its worker" not in logs


@pytest.mark.slow
def test_many_workers_run_every_job_exactly_once(isolated: Server, tmp_path: Path) -> None:
    n_workers = 2 if isolated.database_url.startswith("sqlite") else 4
    _many_jobs(isolated, n_workers, 200, tmp_path)


@pytest.mark.slow
def test_sigterm_finishes_within_grace_then_releases(isolated: Server, tmp_path: Path) -> None:
    key, tenant = isolated.new_tenant()
    client = isolated.client(key)
    dataset_id = upload_tiny(client)
    short = _insert(isolated, tenant, dataset_id, "test-sleep", seed=1)
    worker = start_worker(
        isolated.database_url,
        tmp_path / "w",
        tmp_path / "w.log",
        RIDGELINE_SHUTDOWN_GRACE_SECONDS="20",
    )
    wait_for_job(client, short, statuses=("running",), timeout=60)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    assert client.get(f"/v1/jobs/{short}").json()["status"] == "succeeded"

    long = _insert(isolated, tenant, dataset_id, "test-sleep", seed=120)
    worker = start_worker(
        isolated.database_url,
        tmp_path / "w",
        tmp_path / "w.log",
        RIDGELINE_SHUTDOWN_GRACE_SECONDS="1",
    )
    wait_for_job(client, long, statuses=("running",), timeout=60)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    job = client.get(f"/v1/jobs/{long}").json()
    assert job["status"] == "queued"
    assert job["attempts"][-1]["outcome"] == "released"
    stop_process(worker)
