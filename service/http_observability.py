"""The API's request observability: request ids, access log lines, HTTP metrics, `GET /metrics`.

`install_observability(app, settings)` wraps the whole application (outside even the error
middleware, so a 500 carries the request id too) in a pure ASGI middleware that
- gives every request an id (a sane incoming `X-Request-ID`, else 32 random hex digits), echoes
  it in the `X-Request-ID` response header and keeps it in a context variable that every log
  line of the request carries;
- counts requests and times them by route *template* (`/v1/jobs/{job_id}`, never the raw path);
- writes one access log line per request (uvicorn's own access log is turned off).
It never buffers: response messages pass straight through, so SSE and downloads still stream.

`GET /metrics` serves the app's own registry (`app.state.metrics_registry`, one per app instance),
to which create_app adds the domains' collectors (the job gauges of service/jobs/gauges.py). With
`metrics_token` set it needs `Authorization: Bearer <token>`; without one it is open only when
the API binds a loopback address, and refused (403) on any other.
"""

from __future__ import annotations

import hmac
import logging
import random
import re
import time
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.config import Settings, is_loopback
from service.errors import problem
from service.exception_handlers import problem_response
from service.observability import REQUEST_ID_HEADER, request_context

logger = logging.getLogger("ridgeline.observability")
access_logger = logging.getLogger("ridgeline.access")

_REQUEST_ID_RAW = REQUEST_ID_HEADER.lower().encode("latin-1")
# Letters, digits and a few separators (uuids, ULIDs, base64, W3C trace ids); nothing that could
# forge a log line or a header.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+/=~-]{0,127}")

# --- HTTP metrics and the middleware -----------------------------------------------------------

HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"
# Probes and scrapes that answer well are logged at DEBUG, so they do not drown the access log.
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "ridgeline_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "ridgeline_http_request_duration_seconds",
            "Time from the request's arrival to the end of its response body (a stream's whole "
            "length for SSE and downloads), by method and route template.",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "ridgeline_http_requests_in_flight",
            "Requests being handled now (open SSE streams included).",
            registry=registry,
        )
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in _METHODS else "other"
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:  # labels() validates and locks: once per label set, not per request
            children = self._children[key] = (
                self.requests.labels(method, route, str(status)),
                self.duration.labels(method, route),
            )
        children[0].inc()
        children[1].observe(seconds)


class RouteTemplates:
    """The route template a request belongs to, for metric labels and log lines."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._table: list[tuple[re.Pattern[str], str]] | None = None

    def _build(self) -> list[tuple[re.Pattern[str], str]]:
        try:  # FastAPI >= 0.160 keeps included routers unflattened; this walks them.
            from fastapi.routing import iter_route_contexts

            routes: Iterable[Any] = list(iter_route_contexts(self.app.routes))
        except ImportError:  # pragma: no cover - older FastAPI flattens app.routes itself
            routes = self.app.routes
        table = []
        for route in routes:
            regex = getattr(route, "path_regex", None)
            template = getattr(route, "path_format", None)
            if isinstance(regex, re.Pattern) and isinstance(template, str):
                table.append((regex, template))
        return table

    def __call__(self, scope: Scope) -> str:
        fastapi_scope = scope.get("fastapi")
        if isinstance(fastapi_scope, dict):
            context = fastapi_scope.get("effective_route_context")
            template = getattr(context, "path_format", None)
            if isinstance(template, str):
                return template
        route = scope.get("route")
        template = getattr(route, "path_format", None)
        if isinstance(template, str):
            return template
        # Not routed: answered by a middleware (429, 413) or by no route at all (404).
        if self._table is None:
            self._table = self._build()
        path = scope.get("path", "")
        root_path = scope.get("root_path", "")
        if root_path and path.startswith(root_path):
            path = path[len(root_path) :] or "/"
        for regex, template in self._table:
            if regex.match(path):
                return template
        return UNMATCHED


def incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == _REQUEST_ID_RAW:
            candidate = value.decode("latin-1").strip()
            return candidate if _SANE_REQUEST_ID.fullmatch(candidate) else None
    return None


def new_request_id() -> str:
    """No syscall: uuid4's getrandom() drops the GIL, and under load the loop waits to regain it."""
    return f"{random.getrandbits(128):032x}"


class ObservabilityMiddleware:
    """Request id, access log and HTTP metrics; a pure ASGI middleware that never buffers."""

    def __init__(self, app: ASGIApp, *, metrics: HttpMetrics, routes: RouteTemplates) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = incoming_request_id(scope) or new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        header = (_REQUEST_ID_RAW, request_id.encode("latin-1"))
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [h for h in message.get("headers", ()) if h[0].lower() != _REQUEST_ID_RAW]
                message = {**message, "headers": [*headers, header]}
            await send(message)

        with request_context(request_id):
            self.metrics.in_flight.inc()
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                self.metrics.in_flight.dec()
                try:
                    self._record(scope, status, time.perf_counter() - started)
                except Exception:  # observability must never break a request
                    logger.exception("could not record the request's metrics")

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        method = scope.get("method", "")
        path = scope.get("path", "")
        route = self.routes(scope)
        self.metrics.observe(method, route, status, seconds)
        duration_ms = round(seconds * 1000, 1)
        level = logging.DEBUG if path in _QUIET_PATHS and status < 400 else logging.INFO
        client = scope.get("client")
        access_logger.log(
            level,
            "%s %s %d %.1fms",
            method,
            path,
            status,
            duration_ms,
            extra={
                "method": method,
                "path": path,
                "route": route,
                "status": status,
                "duration_ms": duration_ms,
                "client": client[0] if client else None,
            },
        )


def install_observability(app: FastAPI, settings: Settings) -> None:
    """Request ids, access log, HTTP metrics and `GET /metrics` (see the module docstring).

    Idempotent. The middleware goes around the whole stack (outside the error middleware), so
    it sees every response, the 500s and the limits' 429/413 included, whatever the order in
    which this and `install_limits` are called.
    """
    if getattr(app.state, "observability_installed", False):
        return
    if app.middleware_stack is not None:
        raise RuntimeError("install_observability must run before the app starts")
    app.state.observability_installed = True
    disable_created_metrics()  # no `_created` twin of every counter and histogram

    registry = CollectorRegistry()
    metrics = HttpMetrics(registry)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    app.state.metrics_registry = registry
    app.state.http_metrics = metrics
    routes = RouteTemplates(app)

    build = app.build_middleware_stack

    def build_with_observability() -> ASGIApp:
        return ObservabilityMiddleware(build(), metrics=metrics, routes=routes)

    app.build_middleware_stack = build_with_observability  # type: ignore[method-assign]

    token = settings.metrics_token
    host = settings.host
    closed = not token and not is_loopback(host)
    if closed:
        logger.warning(
            "GET /metrics is refused: the API binds %s, not a loopback address, and "
            "RIDGELINE_METRICS_TOKEN is not set",
            host,
        )

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics(request: Request) -> Response:
        if closed:
            return problem_response(
                problem(
                    403,
                    "Forbidden",
                    "this server binds a non-loopback address, where /metrics needs a token: "
                    "set RIDGELINE_METRICS_TOKEN and send it as 'Authorization: Bearer <token>'",
                    "forbidden",
                )
            )
        if token:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), token.encode()
            ):
                return problem_response(
                    problem(
                        401,
                        "Unauthorized",
                        "send the metrics token (RIDGELINE_METRICS_TOKEN) as "
                        "'Authorization: Bearer <token>'",
                        "unauthorized",
                    ),
                    {"WWW-Authenticate": "Bearer"},
                )
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
