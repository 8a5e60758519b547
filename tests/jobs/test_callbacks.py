"""Job callbacks: a real worker POSTs the job's end, signed, to a real local HTTP receiver;
retries with backoff on 5xx, never follows a redirect, records the delivery on the job."""

from __future__ import annotations

import itertools
import json
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from service.config import Settings
from service.db import Database, utcnow
from service.errors import InvalidInput
from service.jobs import callbacks
from service.jobs.models import Job
from tests.conftest import (
    CALLBACK_ENV,
    CALLBACK_SECRET,
    Server,
    insert_job,
    start_server,
    stop_process,
    upload_tiny,
    wait_for,
    wait_for_job,
)

SECRET = CALLBACK_SECRET
BACKOFF = float(CALLBACK_ENV["RIDGELINE_CALLBACK_BACKOFF_SECONDS"])
MAX_ATTEMPTS = int(CALLBACK_ENV["RIDGELINE_CALLBACK_MAX_ATTEMPTS"])


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """A loopback HTTP server; each path answers a script of statuses, then 200."""

    port: int = 0
    requests: list[Received] = field(default_factory=list)
    scripts: dict[str, list[int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def to(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == path]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with state.lock:
                state.requests.append(Received(self.path, dict(self.headers), body, time.time()))
                script = state.scripts.get(self.path, [])
                status = script.pop(0) if script else 200
            self.send_response(status)
            if status in (301, 302, 307):
                self.send_header("Location", state.url("/ok"))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


@dataclass
class Stack:
    client: httpx.Client
    database: Database
    database_url: str
    tenant: str


@pytest.fixture(scope="module")
def stack(
    server: Server, worker: subprocess.Popen[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """An API process configured for callbacks to the loopback address, on the shared database
    (the session worker sends them)."""
    api = start_server(server.database_url, tmp_path_factory.mktemp("callbacks"), **CALLBACK_ENV)
    database = Database(Settings(database_url=server.database_url))
    key, tenant = api.new_tenant()
    try:
        with api.client(key) as client:
            yield Stack(client, database, server.database_url, tenant)
    finally:
        stop_process(api.process)
        database.dispose()


def _submit(stack: Stack, callback_url: str, **spec: Any) -> str:
    body = {"dataset_id": upload_tiny(stack.client), "target": "y", **spec}
    response = stack.client.post("/v1/jobs", json={**body, "callback_url": callback_url})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _delivery(stack: Stack, job_id: str, statuses: tuple[str, ...]) -> Job:
    def ended() -> Job | None:
        with stack.database.transaction(write=False) as session:
            job = session.get_one(Job, uuid.UUID(job_id))
            return job if job.callback_status in statuses else None

    return wait_for(ended, timeout=60, interval=0.1, message=f"callback of {job_id} to end")


def test_signed_delivery_on_success(stack: Stack, receiver: Receiver) -> None:
    path = f"/ok/{uuid.uuid4().hex}"
    job_id = _submit(stack, receiver.url(path))
    job = wait_for_job(stack.client, job_id)
    assert job["status"] == "succeeded"
    recorded = _delivery(stack, job_id, ("delivered",))
    assert recorded.callback_attempts == 1 and recorded.callback_last_error is None

    (request,) = receiver.to(path)
    timestamp = request.headers[callbacks.TIMESTAMP_HEADER]
    signature = request.headers[callbacks.SIGNATURE_HEADER]
    assert signature.startswith("sha256=")
    assert callbacks.verify(SECRET.encode(), timestamp, request.body, signature)
    assert not callbacks.verify(b"another secret", timestamp, request.body, signature)
    assert not callbacks.verify(SECRET.encode(), timestamp, request.body + b" ", signature)
    assert not callbacks.verify(  # a replay, ten minutes later
        SECRET.encode(), timestamp, request.body, signature, now=int(timestamp) + 600
    )
    body = json.loads(request.body)
    assert body["job_id"] == job_id and body["status"] == "succeeded"
    assert body["error"] is None and body["finished_at"]
    assert "final" in body["summary"]
    assert request.headers["Content-Type"] == "application/json"


def test_failed_job_is_reported_and_5xx_is_retried_with_backoff(
    stack: Stack, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = f"/flaky/{uuid.uuid4().hex}"
    receiver.scripts[path] = [500, 503]
    monkeypatch.setenv("RIDGELINE_CALLBACK_ALLOWED_HOSTS", '["127.0.0.1"]')
    monkeypatch.setenv("RIDGELINE_CALLBACK_SECRET", SECRET)
    monkeypatch.setenv("RIDGELINE_OUTBOUND_ALLOW_LOOPBACK", "true")
    job_id = insert_job(  # a trainer that raises: the job fails in the worker
        stack.database_url,
        tenant=stack.tenant,
        dataset_id=upload_tiny(stack.client),
        trainer="test-raise",
        callback_url=receiver.url(path),
    )
    recorded = _delivery(stack, job_id, ("delivered", "failed"))
    assert recorded.callback_status == "delivered"
    assert recorded.callback_attempts == 3
    tries = receiver.to(path)
    assert len(tries) == 3
    gaps = [b.at - a.at for a, b in itertools.pairwise(tries)]
    assert gaps[0] >= BACKOFF * 0.9 and gaps[1] >= 2 * BACKOFF * 0.9  # 1x, then 2x the base
    assert len({t.body for t in tries}) == 1  # the same body each try, freshly signed
    body = json.loads(tries[-1].body)
    assert body["status"] == "failed" and body["error"]


def test_redirects_are_not_followed_and_dead_hosts_give_up(
    stack: Stack, receiver: Receiver
) -> None:
    path = f"/moved/{uuid.uuid4().hex}"
    receiver.scripts[path] = [302]
    before = len(receiver.to("/ok"))
    moved = _submit(stack, receiver.url(path))
    recorded = _delivery(stack, moved, ("delivered", "failed"))
    assert recorded.callback_status == "failed" and recorded.callback_attempts == 1
    assert "redirect" in (recorded.callback_last_error or "")
    assert len(receiver.to("/ok")) == before  # never followed

    with socket.socket() as sock:  # a port with nobody listening
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    dead = _submit(stack, f"http://127.0.0.1:{dead_port}/hook")
    recorded = _delivery(stack, dead, ("delivered", "failed"))
    assert recorded.callback_status == "failed"
    assert recorded.callback_attempts == MAX_ATTEMPTS
    assert "Connect" in (recorded.callback_last_error or "")


def test_disallowed_hosts_and_bad_urls_are_422(stack: Stack) -> None:
    dataset_id = upload_tiny(stack.client)
    for url, words in [
        ("http://example.com/hook", "not among the allowed hosts"),
        ("ftp://127.0.0.1/hook", "http"),
        ("http://user:pw@127.0.0.1/hook", "credentials"),
        ("http://127.0.0.1:99999/hook", "valid URL"),
    ]:
        response = stack.client.post(
            "/v1/jobs", json={"dataset_id": dataset_id, "target": "y", "callback_url": url}
        )
        assert response.status_code == 422, (url, response.text)
        assert words in response.json()["detail"], (url, response.json())
        assert response.json()["errors"][0]["field"] == "callback_url"


def test_callbacks_are_refused_where_not_configured(api: httpx.Client) -> None:
    """The shared server has no allowed hosts: the 422 says which setting to configure."""
    response = api.post(
        "/v1/jobs",
        json={
            "dataset_id": upload_tiny(api),
            "target": "y",
            "callback_url": "http://127.0.0.1:9/hook",
        },
    )
    assert response.status_code == 422
    assert "RIDGELINE_CALLBACK_ALLOWED_HOSTS" in response.json()["detail"]


def test_a_try_is_claimed_once_even_when_two_workers_race(db: Database) -> None:
    """The conditional UPDATE: a second claim racing the first (blocked on its row lock on
    Postgres, on the write lock on SQLite) finds the try taken; a stale outcome is fenced."""
    job = _ended_job(db, "http://127.0.0.1:9/hook")
    second: list[list[callbacks.Delivery]] = []

    def race() -> None:
        with db.transaction() as session:
            second.append(callbacks.claim_due(session, lease_seconds=60, max_attempts=5))

    with db.transaction() as session:
        first = callbacks.claim_due(session, lease_seconds=60, max_attempts=5)
        racer = threading.Thread(target=race)
        racer.start()
        racer.join(0.5)
    racer.join(30)
    assert [d.job_id for d in first] == [job.id] and first[0].attempt == 1
    assert job.id not in [d.job_id for d in second[0]]

    with db.transaction() as session:
        assert callbacks.record(session, first[0], error="HTTP 500", retry_in=0.0)
    with db.transaction() as session:
        (retry,) = [
            d
            for d in callbacks.claim_due(session, lease_seconds=60, max_attempts=5)
            if d.job_id == job.id
        ]
    assert retry.attempt == 2
    with db.transaction() as session:
        assert not callbacks.record(session, first[0], error=None, retry_in=None)  # stale try
        assert callbacks.record(session, retry, error=None, retry_in=None)
        stored = session.get_one(Job, job.id)
        assert (stored.callback_status, stored.callback_attempts) == ("delivered", 2)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.\t1:9/tab", "http://127.0.0.1:9/a\r\nX-Injected: 1", "http://127.0.0.1:9/\n"],
)
def test_urls_with_control_characters_are_422_at_submit(stack: Stack, url: str) -> None:
    response = stack.client.post(
        "/v1/jobs",
        json={"dataset_id": upload_tiny(stack.client), "target": "y", "callback_url": url},
    )
    assert response.status_code == 422, response.text
    assert "(U+000" in response.json()["detail"]
    assert response.json()["errors"][0]["field"] == "callback_url"


def test_hosts_are_resolved_and_loopback_needs_the_explicit_setting() -> None:
    """The allow-list names hosts; what they resolve to is checked as well, so an allowed name
    that points at an internal address is refused."""
    settings = Settings(callback_allowed_hosts=["127.0.0.1", "localhost"], callback_secret=SECRET)
    for url in ("http://127.0.0.1:9/hook", "http://localhost:9/hook"):
        with pytest.raises(InvalidInput) as refused:
            callbacks.validate_callback_url(settings, url)
        assert "a loopback address" in refused.value.detail
    allowed = settings.model_copy(update={"outbound_allow_loopback": True})
    assert callbacks.validate_callback_url(allowed, "http://localhost:9/hook")


def test_a_stored_bad_url_fails_at_once_and_other_callbacks_still_go(
    stack: Stack, receiver: Receiver
) -> None:
    """A URL stored before submit refused control characters: the sender records the refusal
    on that job (no retry loop) and delivers the other jobs of the same batch."""
    path = f"/neighbour/{uuid.uuid4().hex}"
    bad = _ended_job(stack.database, f"http://127.0.0.\t1:{receiver.port}/tab", tenant=stack.tenant)
    good = _ended_job(stack.database, receiver.url(path), tenant=stack.tenant)
    recorded = _delivery(stack, str(bad.id), ("delivered", "failed"))
    assert recorded.callback_status == "failed" and recorded.callback_attempts == 1
    assert "a tab (U+0009)" in (recorded.callback_last_error or "")
    assert _delivery(stack, str(good.id), ("delivered", "failed")).callback_status == "delivered"
    assert len(receiver.to(path)) == 1


def _ended_job(
    database: Database, callback_url: str, *, tenant: str | None = None, **values: Any
) -> Job:
    """A finished job whose callback is due, written straight to the database."""
    job = Job(
        **{
            "tenant_id": tenant or f"t-{uuid.uuid4().hex[:12]}",
            "status": "succeeded",
            "spec": {},
            "task": "classification",
            "task_reason": "test",
            "max_seconds": 60,
            "max_attempts": 1,
            "finished_at": utcnow(),
            "callback_url": callback_url,
            "callback_status": "pending",
            **values,
        }
    )
    with database.transaction() as session:
        session.add(job)
    return job


def test_tries_used_up_without_an_outcome_end_failed(db: Database) -> None:
    """A sender that died after claiming the last try leaves it pending: the next claim
    marks it failed instead of trying again (and again)."""
    job = _ended_job(db, "http://127.0.0.1:9/hook", status="failed", callback_attempts=3)
    with db.transaction() as session:
        claimed = callbacks.claim_due(session, lease_seconds=60, max_attempts=3)
    assert job.id not in [d.job_id for d in claimed]
    with db.transaction(write=False) as session:
        stored = session.get_one(Job, job.id)
        assert stored.callback_status == "failed"
        assert "3 tries" in (stored.callback_last_error or "")
