"""Request ids, JSON logs, Prometheus metrics (API and worker), and streaming through the
middleware; each against a real uvicorn server on a loopback port, run in a thread."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from prometheus_client.parser import text_string_to_metric_families

from service.auth.service import create_key
from service.config import Settings
from service.db import Database
from service.exception_handlers import install_error_handlers
from service.http_observability import install_observability
from service.jobs.gauges import read_job_gauges
from service.jobs.models import FAILED, QUEUED, RUNNING, SUCCEEDED, Job, JobAttempt
from service.limits import install_limits
from service.main import create_app
from service.migrate import upgrade
from service.observability import (
    configure_logging,
    job_context,
    observe_heartbeat,
    observe_job_finished,
    start_worker_metrics,
)
from tests.conftest import dispose_database_url, free_port, new_database_url, wait_for

# --- helpers shared with tests/test_limits.py --------------------------------------------------


@contextmanager
def serve_app(app: Any) -> Iterator[str]:
    """Run `app` under a real uvicorn in a thread; yield its base URL."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=free_port(),
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), timeout=20, message="uvicorn")
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def hardened_app(settings: Settings) -> FastAPI:
    """The real app with the hardening installed (a no-op once create_app installs it)."""
    app = create_app(settings)
    install_limits(app, settings)
    install_observability(app, settings)
    return app


def new_key(database_url: str) -> str:
    database = Database(Settings(database_url=database_url))
    try:
        with database.transaction() as session:
            _, key = create_key(session, name=f"k-{uuid.uuid4().hex[:10]}")
    finally:
        database.dispose()
    return key


def scrape(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text page, keyed by (name, labels)."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def labels(**kw: str) -> frozenset[tuple[str, str]]:
    return frozenset(kw.items())


@contextmanager
def captured_logs(json_logs: bool = True) -> Iterator[io.StringIO]:
    """configure_logging() into a buffer, then put the root logger back as it was."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    access = logging.getLogger("uvicorn.access")
    saved_access = (list(access.handlers), access.propagate)
    buffer = io.StringIO()
    try:
        configure_logging("INFO", json_logs, stream=buffer)
        yield buffer
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
        access.handlers, access.propagate = saved_access
        logging.captureWarnings(False)


def json_lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def migrated_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{(tmp_path_factory.mktemp('obs') / 'ridgeline.db').as_posix()}"
    upgrade(url)
    return url


# --- a tiny app for the middleware alone ------------------------------------------------------


def tiny_app(**settings: Any) -> tuple[FastAPI, threading.Event]:
    app = FastAPI()
    install_error_handlers(app)
    release = threading.Event()

    @app.get("/things/{thing_id}")
    def get_thing(thing_id: str) -> dict[str, str]:
        logging.getLogger("tests.handler").info("looking at %s", thing_id)
        return {"id": thing_id}

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("kaboom")

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> Any:
            import anyio

            yield b"first\n"
            # The second chunk waits until the client has the first: a middleware that
            # buffered the response would stall here until the timeout.
            for _ in range(200):
                if release.is_set():
                    break
                await anyio.sleep(0.05)
            yield b"second\n" if release.is_set() else b"timeout\n"

        return StreamingResponse(chunks(), media_type="text/event-stream")

    config = Settings(**settings)
    install_limits(app, config)
    install_observability(app, config)
    return app, release


def test_request_id_is_echoed_or_generated() -> None:
    app, _ = tiny_app()
    with serve_app(app) as base, httpx.Client(base_url=base) as client:
        given = client.get("/things/1", headers={"X-Request-ID": "req-abc.123"})
        assert given.headers["x-request-id"] == "req-abc.123"
        generated = client.get("/things/1")
        assert len(generated.headers["x-request-id"]) == 32
        int(generated.headers["x-request-id"], 16)
        assert client.get("/things/2").headers["x-request-id"] != generated.headers["x-request-id"]
        for insane in ("has space", "x" * 129, "line\tbreak", "<script>"):
            answer = client.get("/things/1", headers={"X-Request-ID": insane})
            assert answer.headers["x-request-id"] != insane
            assert len(answer.headers["x-request-id"]) == 32
        # a 404 without a route gets one too
        assert client.get("/nowhere").headers["x-request-id"]


def test_json_logs_carry_the_request_id_and_one_access_line_per_request() -> None:
    app, _ = tiny_app()
    with captured_logs() as buffer:
        with serve_app(app) as base, httpx.Client(base_url=base) as client:
            client.get("/things/7", headers={"X-Request-ID": "trace-7"})
            client.get("/things/8")
        with job_context("job-42"):
            logging.getLogger("tests.worker").warning("training")
    lines = json_lines(buffer)
    handler = [line for line in lines if line["logger"] == "tests.handler"]
    assert handler[0]["message"] == "looking at 7"
    assert handler[0]["request_id"] == "trace-7"
    access = [line for line in lines if line["logger"] == "ridgeline.access"]
    assert len(access) == 2
    first = access[0]
    assert first["request_id"] == "trace-7"
    assert (first["method"], first["path"], first["status"]) == ("GET", "/things/7", 200)
    assert first["route"] == "/things/{thing_id}"
    assert isinstance(first["duration_ms"], float)
    assert first["level"] == "INFO"
    assert datetime.fromisoformat(first["ts"].replace("Z", "+00:00")).tzinfo is not None
    assert access[1]["request_id"] != "trace-7"
    worker = [line for line in lines if line["logger"] == "tests.worker"]
    assert worker[0]["job_id"] == "job-42" and "request_id" not in worker[0]
    # uvicorn's own lines go through the same formatter; its access log is off
    assert not [line for line in lines if line["logger"] == "uvicorn.access"]


def test_text_logs_still_carry_the_ids() -> None:
    with captured_logs(json_logs=False) as buffer, job_context("job-9"):
        logging.getLogger("tests.text").info("hello")
    assert "[job_id=job-9]" in buffer.getvalue()
    assert "hello" in buffer.getvalue()


def test_a_500_carries_the_request_id_and_its_log_line_too() -> None:
    app, _ = tiny_app()
    with (
        captured_logs() as buffer,
        serve_app(app) as base,
        httpx.Client(base_url=base) as client,
    ):
        answer = client.get("/boom", headers={"X-Request-ID": "oops-1"})
    assert answer.status_code == 500
    assert answer.headers["x-request-id"] == "oops-1"
    assert answer.headers["content-type"] == "application/problem+json"
    lines = json_lines(buffer)
    errors = [line for line in lines if line["logger"] == "ridgeline.errors"]
    assert errors and errors[0]["request_id"] == "oops-1"
    assert "kaboom" in errors[0]["exception"]
    access = [line for line in lines if line["logger"] == "ridgeline.access"]
    assert access[0]["status"] == 500 and access[0]["request_id"] == "oops-1"


def test_metrics_label_route_templates_never_raw_paths() -> None:
    app, _ = tiny_app()
    with serve_app(app) as base, httpx.Client(base_url=base) as client:
        for thing in ("a", "b", "c"):
            client.get(f"/things/{thing}")
        client.get("/no/such/path")
        client.post("/things/a")  # 405: the route matched, the method did not
        page = client.get("/metrics")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/plain")
    samples = scrape(page.text)
    total = "ridgeline_http_requests_total"
    assert samples[(total, labels(method="GET", route="/things/{thing_id}", status="200"))] == 3
    assert samples[(total, labels(method="GET", route="unmatched", status="404"))] == 1
    assert samples[(total, labels(method="POST", route="/things/{thing_id}", status="405"))] == 1
    count = "ridgeline_http_request_duration_seconds_count"
    assert samples[(count, labels(method="GET", route="/things/{thing_id}"))] == 3
    routes = {dict(key[1]).get("route") for key in samples if key[0] == total}
    assert not [route for route in routes if route and "/things/a" in route]
    assert "/metrics" not in app.openapi()["paths"]


def test_metrics_token_guards_the_endpoint_when_set() -> None:
    app, _ = tiny_app(metrics_token="s3cret")
    with serve_app(app) as base, httpx.Client(base_url=base) as client:
        refused = client.get("/metrics")
        wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
        allowed = client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
    assert refused.status_code == 401 and wrong.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["status"] == 401
    assert allowed.status_code == 200
    assert "ridgeline_http_requests_total" in allowed.text


def test_metrics_need_the_token_when_the_server_binds_a_non_loopback_address() -> None:
    """Served on loopback binds only, unless a token is set; the refusal says what to set."""
    exposed, _ = tiny_app(host="0.0.0.0")
    guarded, _ = tiny_app(host="0.0.0.0", metrics_token="s3cret")
    local, _ = tiny_app(host="127.0.0.1")
    with serve_app(exposed) as base, httpx.Client(base_url=base) as client:
        refused = client.get("/metrics")
        anything = client.get("/metrics", headers={"Authorization": "Bearer guess"})
    assert refused.status_code == anything.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert "RIDGELINE_METRICS_TOKEN" in refused.json()["detail"]
    with serve_app(guarded) as base, httpx.Client(base_url=base) as client:
        assert client.get("/metrics").status_code == 401
        allowed = client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
        assert allowed.status_code == 200
    with serve_app(local) as base, httpx.Client(base_url=base) as client:
        assert client.get("/metrics").status_code == 200


def test_streaming_responses_stream_through_the_middlewares() -> None:
    app, release = tiny_app()
    with (
        serve_app(app) as base,
        httpx.Client(base_url=base, timeout=20) as client,
        client.stream("GET", "/stream") as response,
    ):
        assert response.headers["x-request-id"]
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = response.iter_raw()
        started = time.monotonic()
        first = next(chunks)
        assert first == b"first\n"
        release.set()
        rest = b"".join(chunks)
    assert rest == b"second\n", "the first chunk was held back until the stream ended"
    assert time.monotonic() - started < 5


# --- the real app: database gauges ------------------------------------------------------------


def _add_jobs(database: Database) -> None:
    now = datetime.now(UTC)
    common: dict[str, Any] = {
        "spec": {},
        "task": "classification",
        "task_reason": "test",
        "max_seconds": 60,
        "max_attempts": 3,
        "tenant_id": "metrics-test",
    }
    with database.transaction() as session:
        jobs = [
            Job(status=QUEUED, created_at=now - timedelta(seconds=90), **common),
            Job(status=QUEUED, **common),
            Job(status=RUNNING, attempt=2, lease_expires_at=now + timedelta(seconds=20), **common),
            Job(status=RUNNING, attempt=1, lease_expires_at=now - timedelta(seconds=5), **common),
            Job(status=SUCCEEDED, attempt=1, **common),
            Job(status=FAILED, attempt=3, **common),
        ]
        session.add_all(jobs)
        session.flush()
        for job in jobs[2:]:
            for attempt in range(1, job.attempt + 1):
                session.add(
                    JobAttempt(job_id=job.id, attempt=attempt, worker_id="w", started_at=now)
                )


def test_job_gauges_read_from_either_database(backend: str, tmp_path: Path) -> None:
    url = new_database_url(backend, tmp_path)
    try:
        upgrade(url)
        database = Database(Settings(database_url=url))
        try:
            empty = read_job_gauges(database, lease_seconds=30)
            assert empty.up and empty.jobs == dict.fromkeys(empty.jobs, 0)
            assert empty.heartbeat_age == 0 and empty.oldest_queued_age == 0
            _add_jobs(database)
            snap = read_job_gauges(database, lease_seconds=30)
        finally:
            database.dispose()
    finally:
        dispose_database_url(url)
    assert snap.jobs == {"queued": 2, "running": 2, "succeeded": 1, "failed": 1, "cancelled": 0}
    assert 85 <= snap.oldest_queued_age < 150
    # the stalest lease ran out 5 s ago: renewed about 35 s ago with 30 s leases
    assert 30 <= snap.heartbeat_age < 60
    assert snap.expired_leases == 1
    assert snap.retried_attempts == 1 + 2  # attempt 2 of one job, attempts 2 and 3 of another


def test_metrics_endpoint_after_a_dataset_call(migrated_url: str, tmp_path: Path) -> None:
    settings = Settings(database_url=migrated_url, data_dir=tmp_path)
    database = Database(Settings(database_url=migrated_url))
    try:
        _add_jobs(database)
    finally:
        database.dispose()
    key = new_key(migrated_url)
    with (
        serve_app(hardened_app(settings)) as base,
        httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as client,
    ):
        missing = client.get(f"/v1/datasets/{uuid.uuid4()}")
        assert missing.status_code == 404
        client.get("/v1/jobs")
        page = client.get("/metrics")
    assert page.status_code == 200
    samples = scrape(page.text)
    total = "ridgeline_http_requests_total"
    route = "/v1/datasets/{dataset_id}"
    assert samples[(total, labels(method="GET", route=route, status="404"))] == 1
    assert samples[(total, labels(method="GET", route="/v1/jobs", status="200"))] == 1
    assert not [k for k in samples if k[0] == total and "/v1/datasets/" in dict(k[1])["route"]
                and "{" not in dict(k[1])["route"]]  # fmt: skip
    assert samples[("ridgeline_database_up", labels())] == 1
    assert samples[("ridgeline_jobs", labels(status="queued"))] >= 2
    assert samples[("ridgeline_jobs", labels(status="cancelled"))] >= 0
    assert (
        samples[("ridgeline_queue_depth", labels())]
        == samples[("ridgeline_jobs", labels(status="queued"))]
    )
    assert samples[("ridgeline_job_attempts_retried", labels())] >= 3
    assert samples[("ridgeline_expired_leases", labels())] >= 1
    assert ("ridgeline_worker_heartbeat_age_seconds", labels()) in samples
    assert ("process_cpu_seconds_total", labels()) in samples


def test_worker_metrics_are_served_on_their_own_port() -> None:
    assert start_worker_metrics(Settings(worker_metrics_port=0)) is None
    observe_job_finished("succeeded", 12.5, attempt=1)
    observe_job_finished("failed", 3.0, attempt=2)
    observe_job_finished("weird", 1.0, attempt=1)
    observe_heartbeat()
    observe_heartbeat()
    port = free_port()
    assert start_worker_metrics(Settings(worker_metrics_port=port)) == port
    page = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    samples = scrape(page.text)
    count = "ridgeline_job_duration_seconds_count"
    assert samples[(count, labels(status="succeeded"))] >= 1
    assert samples[(count, labels(status="failed"))] >= 1
    assert samples[(count, labels(status="other"))] >= 1
    assert samples[("ridgeline_job_attempts_retried_total", labels())] >= 1
    assert samples[("ridgeline_worker_heartbeats_total", labels())] >= 2
