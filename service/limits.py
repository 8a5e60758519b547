"""Request limits in front of the routes: a per-key rate limit, a body-size bound, a JSON depth
bound, and CORS when origins are configured.

- Rate limit (`rate_limit_per_minute`, 0 turns it off): a token bucket per API key on `/v1/*`,
  burst = the per-minute rate, keyed by the sha256 of the bearer token (the client address when
  there is none). It lives in each API process's memory: N API processes allow N times the
  rate. Sharing it through the database would cost a write per request, which is the very load
  a rate limit is there to keep off the database.
- Body bound (`max_request_bytes`): a `Content-Length` over it is a 413 at once; a body without
  one is counted as it streams and cut off at the limit. Dataset uploads (`POST /v1/datasets`)
  are left alone: they stream to disk and enforce `max_upload_bytes` themselves. A CSV sent to
  `POST /v1/jobs/{id}/predict` is a body like any other (at most `max_predict_rows` rows).
- JSON depth (`max_json_depth`): a JSON body on `/v1` nested deeper than this is a 422 before
  the app parses it, found by a linear scan of the brackets outside strings.
- CORS (`cors_origins`): a CORS middleware only when the list is not empty.

Every refusal is the service's own problem+json, built by `service.errors`.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.config import Settings
from service.errors import (
    InvalidInput,
    PayloadTooLarge,
    ServiceError,
    TooManyRequests,
)
from service.exception_handlers import problem_response

MiB = 1 << 20
DEFAULT_RATE_LIMIT_PER_MINUTE = 600
DEFAULT_MAX_REQUEST_BYTES = 32 * MiB
DEFAULT_MAX_JSON_DEPTH = 32

_UPLOAD_PATH = re.compile(r"^/v1/datasets/?$")


# --- Rate limit --------------------------------------------------------------------------------


class TokenBucketLimiter:
    """Token buckets per key, refilled continuously at `per_minute / 60` tokens a second.

    Memory is bounded: beyond `max_keys` buckets the least recently used are dropped (a dropped
    bucket comes back full, which only matters to someone cycling through that many keys within
    a minute, and they are answered 401 anyway). Runs on the event loop: no lock needed.
    """

    def __init__(
        self,
        per_minute: int,
        *,
        burst: int | None = None,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.per_minute = per_minute
        self.capacity = float(burst or per_minute)
        self.rate = per_minute / 60.0
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def wait(self, key: str) -> float:
        """Seconds until `key` has a token (0.0: it has one now), taking none."""
        now = self.clock()
        tokens, last = self._buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def acquire(self, key: str) -> float:
        """Take a token: 0.0 if allowed, else the seconds until the next token."""
        now = self.clock()
        tokens, last = self._buckets.pop(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            tokens -= 1.0
            wait = 0.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait

    def __len__(self) -> int:
        return len(self._buckets)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


SESSION_COOKIE = "ridgeline_session"  # service.auth.sessions.SESSION_COOKIE: the dashboard's


def client_key(scope: Scope) -> tuple[str, str]:
    """(bucket key, who it is in words): the sha256 of the bearer token, else of the dashboard's
    session cookie (which stands for an API key), else the client address."""
    authorization = _header(scope, b"authorization") or ""
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() == "bearer" and token:
        return "key:" + hashlib.sha256(token.encode()).hexdigest(), "this API key"
    cookies = _header(scope, b"cookie")
    if cookies:
        session = cookie_parser(cookies).get(SESSION_COOKIE)
        if session:
            return "session:" + hashlib.sha256(session.encode()).hexdigest(), "this session"
    client = scope.get("client")
    return "ip:" + (client[0] if client else "unknown"), "this address"


# --- JSON depth --------------------------------------------------------------------------------

_DEPTH_CHUNK = 1 << 20


def _depth_steps() -> Any:
    import numpy as np

    steps = np.zeros(256, dtype=np.int8)
    steps[[ord("["), ord("{")]] = 1
    steps[[ord("]"), ord("}")]] = -1
    return steps


def json_depth_exceeds(body: bytes, max_depth: int) -> bool:
    """True if the brackets outside strings nest deeper than `max_depth`.

    Linear and vectorised (numpy, a megabyte at a time, so memory stays small): escaped
    backslashes and escaped quotes are removed first, so every quote left opens or closes a
    string; a bracket counts only where the running number of quotes is even, and the running
    sum of +1 per opener and -1 per closer is the depth. Malformed JSON is left to the parser.
    About a quarter of what `json.loads` costs on the same bytes.
    """
    if body.count(b"[") + body.count(b"{") <= max_depth:
        return False  # the common case, at memchr speed
    import numpy as np

    if b"\\" in body:
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    table = _depth_steps()
    data = np.frombuffer(body, dtype=np.uint8)
    depth = 0
    in_string = 0
    for start in range(0, len(data), _DEPTH_CHUNK):
        chunk = data[start : start + _DEPTH_CHUNK]
        quotes = np.cumsum(chunk == ord('"'), dtype=np.uint8)  # wraps, parity kept
        steps = table[chunk]
        steps[((quotes + in_string) & 1).astype(bool)] = 0
        running = np.cumsum(steps, dtype=np.int64)
        if depth + int(running.max()) > max_depth:
            return True
        depth += int(running[-1])
        in_string = (in_string + int(quotes[-1])) & 1
    return False


def _is_json(content_type: str | None) -> bool:
    """What FastAPI parses as JSON: no content type at all, application/json, application/*+json."""
    if content_type is None:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


# --- The middleware ----------------------------------------------------------------------------


class _BodyTooLarge(Exception):
    """Raised into the app from `receive` when a streamed body passes the limit."""


async def _refuse(error: ServiceError, scope: Scope, receive: Receive, send: Send) -> None:
    response = problem_response(error.to_problem(), error.headers or None)
    await response(scope, receive, send)


class LimitsMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        rate_limit_per_minute: int = DEFAULT_RATE_LIMIT_PER_MINUTE,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        max_json_depth: int = DEFAULT_MAX_JSON_DEPTH,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.limiter = (
            TokenBucketLimiter(rate_limit_per_minute, clock=clock)
            if rate_limit_per_minute > 0
            else None
        )
        self.max_request_bytes = max_request_bytes
        self.max_json_depth = max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        root_path: str = scope.get("root_path", "")
        if root_path and path.startswith(root_path):
            path = path[len(root_path) :] or "/"
        method: str = scope.get("method", "GET")
        is_v1 = path == "/v1" or path.startswith("/v1/")

        if is_v1 and self.limiter is not None:
            key, who = client_key(scope)
            wait = self.limiter.acquire(key)
            if wait > 0:
                await _refuse(self._too_many(wait, who), scope, receive, send)
                return

        content_type = _header(scope, b"content-type")
        if method == "POST" and _UPLOAD_PATH.match(path) and _is_multipart(content_type):
            await self.app(scope, receive, send)  # streamed to disk, bounded by the route itself
            return

        length_header = _header(scope, b"content-length")
        content_length: int | None = None
        if length_header is not None:
            try:
                content_length = int(length_header)
            except ValueError:
                content_length = None
        if content_length is not None and content_length > self.max_request_bytes:
            await _refuse(self._too_large(), scope, receive, send)
            return
        has_body = bool(content_length) or _header(scope, b"transfer-encoding") is not None

        if not has_body:
            await self.app(scope, receive, send)  # nothing to count
        elif is_v1 and _is_json(content_type):
            await self._json(scope, receive, send)
        else:
            await self._streamed(scope, receive, send)

    def _too_many(self, wait: float, who: str) -> TooManyRequests:
        seconds = max(1, math.ceil(wait))
        assert self.limiter is not None
        at = (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%H:%M:%SZ")
        return TooManyRequests(
            f"more than {self.limiter.per_minute} requests a minute from {who}; retry in "
            f"{seconds} s (after {at}), or spread the requests out",
            headers={"Retry-After": str(seconds)},
        )

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"the request body is over {self.max_request_bytes} bytes; send less (datasets go "
            "to POST /v1/datasets as a multipart upload)"
        )

    async def _json(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read the (bounded) JSON body, check its depth, then hand the app the same bytes."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away: nobody to answer
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_request_bytes:
                await _refuse(self._too_large(), scope, receive, send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if json_depth_exceeds(body, self.max_json_depth):
            await _refuse(
                InvalidInput(
                    f"the JSON body nests deeper than {self.max_json_depth} levels; flatten it",
                    errors=[
                        {"field": "body", "message": f"nesting deeper than {self.max_json_depth}"}
                    ],
                ),
                scope,
                receive,
                send,
            )
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as usual

        await self.app(scope, replay, send)

    async def _streamed(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the body through, counting; past the limit, stop it and answer 413 instead of
        whatever the app makes of the cut-off body (as long as it has not started answering)."""
        size = 0
        rejected = False
        started = False

        async def counting_receive() -> Message:
            nonlocal size, rejected
            if rejected:
                raise _BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > self.max_request_bytes:
                    rejected = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if rejected and not started:
                return  # the app's answer to a body it never fully got
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not rejected or started:
                raise
        if rejected and not started:
            await _refuse(self._too_large(), scope, receive, send)


def _is_multipart(content_type: str | None) -> bool:
    return (content_type or "").lower().startswith("multipart/form-data")


CORS_ALLOW_HEADERS = [
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    "Last-Event-ID",
    "X-Request-ID",
]
CORS_EXPOSE_HEADERS = [
    "X-Request-ID",
    "Retry-After",
    "Location",
    "Content-Disposition",
    "X-Artifact-SHA256",
]


def install_limits(app: FastAPI, settings: Settings) -> None:
    """Add the limits (and CORS when `cors_origins` is set) as the innermost middlewares.

    Idempotent. CORS goes outside the limits so that preflights are never throttled and a 429 or
    413 still carries the CORS headers a browser needs to read it.
    """
    if getattr(app.state, "limits_installed", False):
        return
    if app.middleware_stack is not None:
        raise RuntimeError("install_limits must run before the app starts")
    app.state.limits_installed = True
    origins = list(settings.cors_origins)
    if origins:
        app.user_middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=origins,
                allow_methods=["*"],
                allow_headers=CORS_ALLOW_HEADERS,
                expose_headers=CORS_EXPOSE_HEADERS,
                allow_credentials=False,  # bearer keys, never cookies
                max_age=600,
            )
        )
    app.user_middleware.append(
        Middleware(
            LimitsMiddleware,
            rate_limit_per_minute=settings.rate_limit_per_minute,
            max_request_bytes=settings.max_request_bytes,
            max_json_depth=settings.max_json_depth,
        )
    )
