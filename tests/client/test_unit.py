"""Client behaviour that needs no server: retries, SSE parsing and resuming, URL building.

Only these tests use an httpx MockTransport; everything else runs against the real server.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.client import (
    AsyncClient,
    ChecksumMismatch,
    Client,
    ConnectionFailed,
    NotFound,
    RateLimited,
    ServerError,
    SSEDecoder,
    Unavailable,
    ValidationFailed,
    _async,
    _sync,
)
from service.client import _ops as ops
from service.client._core import CHUNK_SIZE, MultipartFile, RetryPolicy
from service.client.errors import error_from_response, parse_retry_after

REPO = Path(__file__).resolve().parents[2]
HEAVY = ["torch", "sklearn", "sqlalchemy", "pyarrow", "numpy", "fastapi", "pandas", "matplotlib"]

JOB = {"id": "j1", "status": "queued", "spec": {}}


def problem(status: int, detail: str, **extra: Any) -> httpx.Response:
    body = {"type": "https://ridgeline.dev/problems/x", "title": "T", "status": status}
    return httpx.Response(
        status,
        json={**body, "detail": detail, **extra},
        headers={"content-type": "application/problem+json"},
    )


class FakeTime:
    """Stands in for the time module: records sleeps instead of sleeping."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []
        self.now = 0.0

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(_sync, "time", fake)
    return fake


def mock_client(handler: Callable[[httpx.Request], httpx.Response], **kwargs: Any) -> Client:
    return Client("http://rl.test", "k", transport=httpx.MockTransport(handler), **kwargs)


# --- import weight -----------------------------------------------------------------------------


@pytest.mark.parametrize("module", ["service.client", "service.client.cli"])
def test_import_is_light(module: str) -> None:
    code = (
        f"import {module}, sys; "
        f"bad = [m for m in {HEAVY!r} if m in sys.modules]; "
        "svc = [m for m in sys.modules if m.startswith('service.') and "
        "not m.startswith('service.client')]; "
        "assert not bad and not svc, (bad, svc)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_the_ridgeline_command_starts_without_the_heavy_libraries() -> None:
    """`ridgeline datasets list` and friends import the CLI module; no numpy, torch, or DB."""
    code = (
        "import service.cli, sys; "
        f"bad = [m for m in {HEAVY!r} if m in sys.modules]; "
        "assert not bad, bad"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


# --- retries -----------------------------------------------------------------------------------


def test_get_is_retried_on_503_honouring_retry_after(fake_time: FakeTime) -> None:
    answers = [
        problem(503, "warming up", **{}),
        httpx.Response(503, headers={"Retry-After": "7"}, text="busy"),
        httpx.Response(200, json=JOB),
    ]
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers[len(seen) - 1]

    with mock_client(handler, backoff_base=0.5) as rl:
        job = rl.get_job("j1")
    assert job.id == "j1" and len(seen) == 3
    assert 0.25 <= fake_time.sleeps[0] <= 0.5  # backoff with jitter
    assert fake_time.sleeps[1] == 7.0  # the server's Retry-After wins
    assert all(r.headers["authorization"] == "Bearer k" for r in seen)


def test_retries_give_up_with_the_typed_error(fake_time: FakeTime) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return problem(503, "database unreachable")

    with mock_client(handler, max_retries=2) as rl, pytest.raises(Unavailable) as info:
        rl.list_datasets()
    assert calls == 3 and len(fake_time.sleeps) == 2
    assert info.value.status == 503 and info.value.detail == "database unreachable"
    assert isinstance(info.value, ServerError)
    backoffs = fake_time.sleeps
    assert backoffs[1] > backoffs[0] / 2  # grows (each within its jittered band)


def test_429_is_rate_limited_with_retry_after(fake_time: FakeTime) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "3"}, json={"detail": "slow down"})

    with mock_client(handler, max_retries=1) as rl, pytest.raises(RateLimited) as info:
        rl.get_dataset("d")
    assert info.value.retry_after == 3.0 and fake_time.sleeps == [3.0]


def test_post_without_idempotency_is_not_retried(fake_time: FakeTime) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return problem(503, "busy")

    with mock_client(handler) as rl, pytest.raises(Unavailable):
        rl.cancel("j1")
    assert calls == 1 and fake_time.sleeps == []


def test_submit_retries_with_one_idempotency_key(fake_time: FakeTime) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            raise httpx.ReadError("connection reset", request=request)
        if len(seen) == 2:
            return problem(503, "busy")
        return httpx.Response(202, json=JOB)

    with mock_client(handler) as rl:
        job = rl.submit({"dataset_id": "d", "target": "y"})
        rl.submit({"target": "y"}, "mine", dataset_id="d2")
    assert job.status == "queued"
    keys = {r.headers["idempotency-key"] for r in seen[:3]}
    assert len(keys) == 1 and next(iter(keys)).startswith("rlc-")
    assert json.loads(seen[0].content) == {"dataset_id": "d", "target": "y"}
    assert seen[3].headers["idempotency-key"] == "mine"
    assert json.loads(seen[3].content) == {"target": "y", "dataset_id": "d2"}


def test_connection_errors_are_retried_then_reported(fake_time: FakeTime) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("refused", request=request)

    with mock_client(handler, max_retries=3) as rl, pytest.raises(ConnectionFailed) as info:
        rl.get_job("j1")
    assert calls == 4 and "cannot connect to http://rl.test" in info.value.detail
    assert info.value.status is None


def test_async_client_retries_too() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return problem(503, "busy") if calls == 1 else httpx.Response(200, json=JOB)

    async def main() -> str:
        async with AsyncClient(
            "http://rl.test", transport=httpx.MockTransport(handler), backoff_base=0.001
        ) as rl:
            return (await rl.get_job("j1")).status

    assert asyncio.run(main()) == "queued" and calls == 2


def test_retry_policy_backoff_is_bounded() -> None:
    policy = RetryPolicy(max_retries=10, backoff_base=1.0, backoff_max=8.0)
    for attempt in range(10):
        ceiling = min(8.0, 2.0**attempt)
        assert ceiling / 2 <= policy.backoff(attempt) <= ceiling
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("2.5") == 2.5 and parse_retry_after("soon") is None


# --- errors ------------------------------------------------------------------------------------


def test_problem_json_becomes_typed_errors() -> None:
    request = httpx.Request("GET", "http://rl.test/v1/jobs")
    errors = [{"field": "target", "message": "no such column"}]
    response = problem(422, "target: no such column", errors=errors)
    response.request = request
    exc = error_from_response(response)
    assert isinstance(exc, ValidationFailed)
    assert (exc.status, exc.title, exc.detail, exc.errors) == (
        422,
        "T",
        "target: no such column",
        errors,
    )
    assert exc.type == "https://ridgeline.dev/problems/x"
    html = httpx.Response(502, text="<html>bad gateway</html>", request=request)
    exc = error_from_response(html)
    assert isinstance(exc, ServerError) and exc.status == 502 and "bad gateway" in exc.detail
    assert isinstance(error_from_response(httpx.Response(404, request=request)), NotFound)


# --- streaming upload body ---------------------------------------------------------------------


def test_multipart_body_streams_the_file_in_chunks(tmp_path: Path) -> None:
    path = tmp_path / 'a "quoted".csv'
    data = b"x,y\n" + b"1,2\n" * CHUNK_SIZE  # about 4 chunks
    path.write_bytes(data)
    progress: list[tuple[int, int]] = []
    body = MultipartFile(
        path, fields={"name": "n", "delimiter": None}, progress=lambda s, t: progress.append((s, t))
    )
    chunks = body.iter_bytes()
    assert next(chunks) == body.head and next(chunks) == data[:CHUNK_SIZE]
    # Lazily read: only the first chunk has been taken from the file so far.
    assert progress == [(0, len(data)), (CHUNK_SIZE, len(data))] or progress == [(0, len(data))]
    rest = list(chunks)
    assert all(len(c) <= CHUNK_SIZE for c in rest) and rest[-1] == body.tail
    assert body.head + data + body.tail == b"".join([body.head, data[:CHUNK_SIZE], *rest])
    assert progress[-1] == (len(data), len(data))
    assert b'name="name"\r\n\r\nn\r\n' in body.head and b"delimiter" not in body.head
    assert b'filename="a %22quoted%22.csv"' in body.head

    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        request.read()
        return httpx.Response(201, json={"id": "d1", "name": "n"})

    with mock_client(handler) as rl:
        assert rl.upload(path, name="n").id == "d1"
    sent = seen[0]
    assert sent.headers["content-length"] == str(body.content_length)
    assert "transfer-encoding" not in sent.headers
    assert sent.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert len(sent.content) == body.content_length


# --- SSE ---------------------------------------------------------------------------------------


def sse(*events: tuple[int, str, dict[str, Any]]) -> bytes:
    return b"".join(
        f"id: {i}\nevent: {kind}\ndata: {json.dumps(data)}\n\n".encode() for i, kind, data in events
    )


def test_sse_decoder_follows_the_spec() -> None:
    decoder = SSEDecoder()
    lines = [
        ": keep-alive",
        "",
        "id: 4",
        "event: epoch",
        'data: {"attempt": 1,',
        'data:  "epoch": 2}',
        "",
    ]
    events = [e for e in (decoder.feed(line) for line in lines) if e is not None]
    assert len(events) == 1
    assert (events[0].id, events[0].event, events[0].data) == (
        4,
        "epoch",
        {"attempt": 1, "epoch": 2},
    )
    assert decoder.feed("data: plain") is None and decoder.feed("").data == {"raw": "plain"}  # type: ignore[union-attr]


class DroppingStream(httpx.SyncByteStream):
    """A response body that sends some bytes, then loses the connection."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __iter__(self) -> Iterator[bytes]:
        yield self.data
        raise httpx.ReadError("connection lost")


def test_events_resume_with_last_event_id(fake_time: FakeTime) -> None:
    first = sse(
        (1, "status", {"attempt": 0, "status": "queued"}),
        (2, "status", {"attempt": 1, "status": "running"}),
    )
    rest = sse(
        (3, "epoch", {"attempt": 1, "epoch": 1}),
        (4, "status", {"attempt": 1, "status": "succeeded"}),
    )
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/events"):
            if len(seen) == 1:
                return httpx.Response(200, stream=DroppingStream(first + b"id: 3\nevent: ep"))
            return httpx.Response(200, content=rest, headers={"content-type": "text/event-stream"})
        return httpx.Response(200, json={**JOB, "status": "succeeded"})

    events: list[Any] = []
    with mock_client(handler) as rl:
        job = rl.wait("j1", on_event=events.append)
    assert job.status == "succeeded"
    assert [e.id for e in events] == [1, 2, 3, 4]
    assert [e.status for e in events if e.event == "status"] == ["queued", "running", "succeeded"]
    assert "last-event-id" not in seen[0].headers and seen[1].headers["last-event-id"] == "2"
    assert seen[0].headers["accept"] == "text/event-stream"


def test_wait_falls_back_to_polling(fake_time: FakeTime) -> None:
    statuses = iter(["running", "running", "succeeded"])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return problem(500, "boom")
        return httpx.Response(200, json={**JOB, "status": next(statuses)})

    events: list[Any] = []
    with mock_client(handler, max_retries=0) as rl:
        job = rl.wait("j1", on_event=events.append, poll_interval=0.5)
    assert job.status == "succeeded"
    assert [e.status for e in events] == ["running", "succeeded"]
    assert fake_time.sleeps == [0.5, 0.5]


# --- sweeps and plots: URL and body building (the sweeps API may not exist yet) -----------------


def test_sweep_requests() -> None:
    seen: list[httpx.Request] = []
    sweep = {"id": "s1", "status": "running", "progress": 0.5, "leaderboard": []}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/v1/sweeps" and request.method == "GET":
            return httpx.Response(200, json={"items": [sweep], "next_cursor": None})
        if request.url.path.startswith("/v1/sweeps"):
            return httpx.Response(202 if request.method == "POST" else 200, json=sweep)
        return httpx.Response(200, content=b"<svg/>", headers={"content-type": "image/svg+xml"})

    spec = {
        "base": {"dataset_id": "d", "target": "y"},
        "grid": {"regularization.strength": [0.1, 1]},
    }
    with mock_client(handler) as rl:
        assert rl.submit_sweep(spec).id == "s1"
        rl.get_sweep("s1")
        assert [s.id for s in rl.iter_sweeps(page_size=5)] == ["s1"]
        rl.cancel_sweep("s/1")
        assert rl.plot("loss-curve", job_id="j1") == b"<svg/>"
        rl.plot("coefficients", job_id="j1", fmt="png")
        rl.plot("validation-curve", sweep_id="s1")
        rl.plot("regularization-path", sweep_id="s1", fmt="png")
        rl.plot("loss-curves", job_ids=["a", "b"])
    got = [(r.method, r.url.raw_path.decode().split("?")[0], dict(r.url.params)) for r in seen]
    assert got == [
        ("POST", "/v1/sweeps", {}),
        ("GET", "/v1/sweeps/s1", {}),
        ("GET", "/v1/sweeps", {"limit": "5"}),
        ("POST", "/v1/sweeps/s%2F1/cancel", {}),
        ("GET", "/v1/jobs/j1/plots/loss-curve", {"format": "svg"}),
        ("GET", "/v1/jobs/j1/plots/coefficients", {"format": "png"}),
        ("GET", "/v1/sweeps/s1/plots/validation-curve", {"format": "svg"}),
        ("GET", "/v1/sweeps/s1/plots/regularization-path", {"format": "png"}),
        ("GET", "/v1/plots/loss-curves", {"format": "svg", "jobs": "a,b"}),
    ]
    assert json.loads(seen[0].content) == spec
    assert "idempotency-key" not in seen[0].headers
    assert seen[5].headers["accept"] == "image/png"


def test_plot_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="job plot"):
        ops.plot("loss-curve", sweep_id="s")
    with pytest.raises(ValueError, match="sweep plot"):
        ops.plot("validation-curve", job_id="j")
    with pytest.raises(ValueError, match="unknown plot kind"):
        ops.plot("pie", job_id="j")
    with pytest.raises(ValueError, match="fmt"):
        ops.plot("loss-curve", job_id="j", fmt="gif")  # type: ignore[arg-type]


def test_wait_sweep_polls_until_done(fake_time: FakeTime) -> None:
    states = iter([("running", 0.3), ("running", 0.6), ("succeeded", 1.0)])

    def handler(request: httpx.Request) -> httpx.Response:
        status, progress = next(states)
        return httpx.Response(200, json={"id": "s1", "status": status, "progress": progress})

    updates: list[float | None] = []
    with mock_client(handler) as rl:
        sweep = rl.wait_sweep("s1", on_update=lambda s: updates.append(s.progress), poll_interval=2)
    assert sweep.status == "succeeded" and updates == [0.3, 0.6, 1.0]
    assert fake_time.sleeps == [2, 2]


def test_async_module_mirrors_sync_methods() -> None:
    public = {n for n in dir(Client) if not n.startswith("_")} - {"close"}
    apublic = {n for n in dir(AsyncClient) if not n.startswith("_")} - {"aclose"}
    assert public == apublic
    assert _async.AsyncClient is AsyncClient


def test_artifact_checksum_mismatch_leaves_nothing(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        headers = {
            "X-Artifact-SHA256": "0" * 64,
            "Content-Disposition": 'attachment; filename="../job-j1.skops"',
        }
        return httpx.Response(200, content=b"model bytes", headers=headers)

    with mock_client(handler) as rl, pytest.raises(ChecksumMismatch):
        rl.download_artifact("j1", tmp_path)
    assert list(tmp_path.iterdir()) == []

    def good(request: httpx.Request) -> httpx.Response:
        sha = hashlib.sha256(b"model bytes").hexdigest()
        return httpx.Response(
            200,
            content=b"model bytes",
            headers={"X-Artifact-SHA256": sha, "Content-Disposition": 'filename="../evil.skops"'},
        )

    with mock_client(good) as rl:
        path = rl.download_artifact("j1", tmp_path)
    assert path == tmp_path / "evil.skops" and path.read_bytes() == b"model bytes"
