"""Rate limit, body-size bound, JSON depth bound and CORS: units, then the real app over HTTP."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

import service.limits as limits
from service.config import Settings
from service.http_observability import install_observability
from service.limits import TokenBucketLimiter, install_limits, json_depth_exceeds
from tests.test_observability import (
    hardened_app,
    migrated_url,  # noqa: F401  (the fixture)
    new_key,
    serve_app,
)

PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert body["type"].startswith("https://ridgeline.dev/problems/")
    assert body["title"] and body["detail"]
    return dict(body)


# --- token bucket ------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_a_burst_then_refills_at_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucketLimiter(60, clock=clock)  # one a second, burst 60
    assert all(bucket.acquire("a") == 0 for _ in range(60))
    wait = bucket.acquire("a")
    assert 0.99 < wait <= 1.0
    assert bucket.acquire("b") == 0, "another key has a bucket of its own"
    clock.now += 0.5
    assert 0.49 < bucket.acquire("a") <= 0.5, "a refused request takes no token"
    clock.now += 0.5
    assert bucket.acquire("a") == 0
    clock.now += 3600
    assert all(bucket.acquire("a") == 0 for _ in range(60)), "refills to the burst, no more"
    assert bucket.acquire("a") > 0


def test_token_bucket_memory_is_bounded() -> None:
    bucket = TokenBucketLimiter(10, max_keys=100, clock=Clock())
    for i in range(1000):
        bucket.acquire(f"key-{i}")
    assert len(bucket) == 100


def test_buckets_are_keyed_by_key_then_session_then_address() -> None:
    from service.auth.sessions import SESSION_COOKIE

    assert limits.SESSION_COOKIE == SESSION_COOKIE

    def scope(*headers: tuple[bytes, bytes]) -> dict[str, Any]:
        return {"headers": list(headers), "client": ("10.0.0.7", 5555)}

    bearer, who = limits.client_key(scope((b"authorization", b"Bearer rl_secret")))
    assert who == "this API key" and "rl_secret" not in bearer and bearer.startswith("key:")
    assert bearer != limits.client_key(scope((b"authorization", b"Bearer rl_other")))[0]
    cookie = (b"cookie", f"a=b; {SESSION_COOKIE}=tok123".encode())
    session, who = limits.client_key(scope(cookie))
    assert who == "this session" and session.startswith("session:") and "tok123" not in session
    assert limits.client_key(scope()) == ("ip:10.0.0.7", "this address")


def test_rate_limit_zero_turns_it_off() -> None:
    middleware = limits.LimitsMiddleware(FastAPI(), rate_limit_per_minute=0)
    assert middleware.limiter is None


# --- JSON depth --------------------------------------------------------------------------------


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _random_json(depth: int, rng: random.Random) -> Any:
    if depth <= 0 or rng.random() < 0.2:
        return "".join(rng.choice('[]{}"\\a, ') for _ in range(rng.randint(0, 6)))
    if rng.random() < 0.5:
        return [_random_json(depth - 1, rng) for _ in range(rng.randint(0, 3))]
    return {_random_json(0, rng): _random_json(depth - 1, rng) for _ in range(rng.randint(0, 3))}


def test_json_depth_counts_brackets_outside_strings_only() -> None:
    assert not json_depth_exceeds(b'{"a": [1, 2, {"b": null}]}', 3)
    assert json_depth_exceeds(b'{"a": [1, 2, {"b": null}]}', 2)
    assert not json_depth_exceeds(json.dumps({"s": "[[[[{{{{" * 100}).encode(), 1)
    assert not json_depth_exceeds(json.dumps({"s": '\\"[[[[[[[["'}).encode(), 1)
    assert json_depth_exceeds(b"[" * 33 + b"]" * 33, 32)
    assert not json_depth_exceeds(b"[" * 32 + b"]" * 32, 32)
    assert json_depth_exceeds(b"[" * 100_000, 32), "unclosed brackets still count"


def test_json_depth_matches_a_parser_across_chunk_boundaries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(limits, "_DEPTH_CHUNK", 7)  # carry state across many tiny chunks
    rng = random.Random(7)
    for _ in range(3000):
        value = _random_json(rng.randint(0, 10), rng)
        body = json.dumps(value).encode()
        max_depth = rng.randint(0, 8)
        assert json_depth_exceeds(body, max_depth) == (_depth(value) > max_depth), body


# --- the real app over HTTP ------------------------------------------------------------------


@pytest.fixture
def settings(migrated_url: str, tmp_path: Path) -> Settings:  # noqa: F811
    return Settings(
        database_url=migrated_url,
        data_dir=tmp_path,
        max_request_bytes=4096,
        max_json_depth=8,
    )


@pytest.fixture
def base_url(settings: Settings) -> Iterator[str]:
    with serve_app(hardened_app(settings)) as base:
        yield base


def _client(base_url: str, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=base_url, headers=headers, timeout=30)


@pytest.fixture
def throttled_url(settings: Settings) -> Iterator[str]:
    with serve_app(hardened_app(settings.model_copy(update={"rate_limit_per_minute": 3}))) as base:
        yield base


def test_rate_limit_answers_429_with_retry_after_per_key(
    throttled_url: str, settings: Settings
) -> None:
    base_url = throttled_url
    first, second = new_key(settings.database_url), new_key(settings.database_url)
    with _client(base_url, first) as client:
        assert [client.get("/v1/jobs").status_code for _ in range(3)] == [200, 200, 200]
        refused = client.get("/v1/jobs")
        body = assert_problem(refused, 429)
        assert body["type"].endswith("/rate-limited")
        retry_after = int(refused.headers["retry-after"])
        assert 1 <= retry_after <= 20
        assert f"retry in {retry_after} s" in body["detail"]
        assert refused.headers["x-request-id"], "refusals are seen by the observability layer"
        assert client.get("/healthz").status_code == 200, "only /v1 is rate limited"
        assert all(client.get("/healthz").status_code == 200 for _ in range(10))
    with _client(base_url, second) as other:
        assert other.get("/v1/jobs").status_code == 200, "another key is not throttled"
    with _client(base_url, first) as client:
        assert client.get("/v1/jobs").status_code == 429, "still throttled"
        page = client.get("/metrics").text
    assert 'route="/v1/jobs",status="429"' in page


def test_an_oversized_json_body_is_413(base_url: str, settings: Settings) -> None:
    big = {"dataset_id": str(uuid.uuid4()), "target": "y", "name": "x" * 5000}
    with _client(base_url, new_key(settings.database_url)) as client:
        declared = client.post("/v1/jobs", json=big)
        assert_problem(declared, 413)
        assert "4096 bytes" in declared.json()["detail"]

        def chunked() -> Iterator[bytes]:  # no Content-Length: counted while it streams
            data = json.dumps(big).encode()
            for i in range(0, len(data), 1000):
                yield data[i : i + 1000]

        streamed = client.post(
            "/v1/jobs", content=chunked(), headers={"Content-Type": "application/json"}
        )
        assert_problem(streamed, 413)
        raw = client.post(
            "/v1/sweeps",
            content=chunked(),
            headers={"Content-Type": "application/octet-stream"},
        )
        assert_problem(raw, 413)
        # within the bound the app answers as before
        small = client.post("/v1/jobs", json={"dataset_id": str(uuid.uuid4()), "target": "y"})
        assert small.status_code in (404, 422), small.text


def test_dataset_uploads_are_left_to_their_own_limit_predict_files_are_not(
    base_url: str, settings: Settings
) -> None:
    csv = b"x,y\n" + b"".join(f"{i},{i % 2}\n".encode() for i in range(2000))
    assert len(csv) > settings.max_request_bytes
    with _client(base_url, new_key(settings.database_url)) as client:
        uploaded = client.post("/v1/datasets", files={"file": ("big.csv", csv)})
        assert uploaded.status_code == 201, uploaded.text
        dataset_id = uploaded.json()["id"]
        predict = client.post(f"/v1/jobs/{uuid.uuid4()}/predict", files={"file": ("p.csv", csv)})
        assert_problem(predict, 413)
        as_json = client.post(f"/v1/jobs/{dataset_id}/predict", json={"rows": [{"x": 1}] * 1000})
        assert_problem(as_json, 413)


def test_json_nested_too_deep_is_refused_before_parsing(base_url: str, settings: Settings) -> None:
    def nested(depth: int) -> Any:
        value: Any = 1
        for _ in range(depth):
            value = [value]
        return value

    with _client(base_url, new_key(settings.database_url)) as client:
        deep = client.post("/v1/jobs", json={"dataset_id": "x", "target": nested(20)})
        body = assert_problem(deep, 422)
        assert "deeper than 8" in body["detail"]
        assert body["errors"][0]["field"] == "body"
        no_type = client.post("/v1/jobs", content=json.dumps(nested(20)).encode())
        assert "deeper than 8" in assert_problem(no_type, 422)["detail"]
        shallow = client.post("/v1/jobs", json={"dataset_id": "x", "target": nested(5)})
        assert shallow.status_code == 422
        assert "deeper" not in shallow.json()["detail"], "the app's own validation answered"


# --- CORS ---------------------------------------------------------------------------------------


def _cors_app(origins: list[str]) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/ping")
    def ping() -> dict[str, str]:
        return {"ok": "yes"}

    config = Settings(cors_origins=origins, rate_limit_per_minute=1)
    install_limits(app, config)
    install_observability(app, config)
    return app


def test_cors_only_when_origins_are_configured() -> None:
    origin = "https://ui.example"
    preflight = {"Origin": origin, "Access-Control-Request-Method": "POST"}
    with serve_app(_cors_app([origin])) as base, httpx.Client(base_url=base) as client:
        allowed = client.options("/v1/ping", headers=preflight)
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == origin
        assert client.get("/v1/ping", headers={"Origin": origin}).status_code == 200
        throttled = client.get("/v1/ping", headers={"Origin": origin})
        assert throttled.status_code == 429
        assert throttled.headers["access-control-allow-origin"] == origin
        assert "retry-after" in throttled.headers["access-control-expose-headers"].lower()
        # preflights are not throttled
        assert client.options("/v1/ping", headers=preflight).status_code == 200
    with serve_app(_cors_app([])) as base, httpx.Client(base_url=base) as client:
        plain = client.get("/v1/ping", headers={"Origin": origin})
        assert "access-control-allow-origin" not in plain.headers


def test_failed_authentications_are_limited_per_client_address(
    settings: Settings,
) -> None:
    """Random bearer tokens each get a rate-limit bucket of their own, so the per-key limit
    never sees them; failed authentications are counted per client address instead."""
    guarded = settings.model_copy(update={"auth_failures_per_minute": 5, "key_cache_seconds": 600})
    good = new_key(settings.database_url)
    with serve_app(hardened_app(guarded)) as base:
        with _client(base, good) as verified:
            assert verified.get("/v1/jobs").status_code == 200  # verified before the attack
        with httpx.Client(base_url=base, timeout=30) as attacker:
            statuses = [
                attacker.get(
                    "/v1/jobs", headers={"Authorization": f"Bearer rl_{uuid.uuid4().hex}"}
                ).status_code
                for _ in range(40)
            ]
            assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}, statuses
            refused = attacker.get("/v1/jobs", headers={"Authorization": "Bearer rl_guess"})
            body = assert_problem(refused, 429)
            assert "failed authentications a minute from this address" in body["detail"]
            assert 1 <= int(refused.headers["retry-after"]) <= 20
            with httpx.Client(base_url=base, cookies={"ridgeline_session": "forged"}) as browser:
                assert browser.get("/v1/jobs").status_code == 429
            signin = attacker.post("/signin", data={"key": "rl_another_guess"})
            assert signin.status_code == 429
        with _client(base, good) as verified:
            assert verified.get("/v1/jobs").status_code == 200  # a key verified lately still works
        other_address = httpx.HTTPTransport(local_address="127.0.0.2")
        with httpx.Client(base_url=base, transport=other_address, timeout=30) as neighbour:
            wrong = neighbour.get("/v1/jobs", headers={"Authorization": "Bearer rl_typo"})
            assert wrong.status_code == 401, "another address has its own count"
