"""Request ids, structured JSON logs and Prometheus metrics, for the API and the worker.

API process: `install_observability(app, settings)` wraps the whole application (outside even the
error middleware, so a 500 carries the request id too) in a pure ASGI middleware that
- gives every request an id (a sane incoming `X-Request-ID`, else 32 random hex digits), echoes
  it in the `X-Request-ID` response header and keeps it in a context variable that every log
  line of the request carries;
- counts requests and times them by route *template* (`/v1/jobs/{job_id}`, never the raw path);
- writes one access log line per request (uvicorn's own access log is turned off).
It never buffers: response messages pass straight through, so SSE and downloads still stream.

`GET /metrics` serves the app's own registry (`app.state.metrics_registry`, one per app instance),
to which create_app adds the domains' collectors (the job gauges of service/jobs/gauges.py).

Worker process: counters and histograms live in the worker (`observe_job_finished`,
`observe_heartbeat`) and are served by `start_worker_metrics(settings)` on a port of its own.
"""

from __future__ import annotations

import hmac
import json
import logging
import random
import re
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

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
    start_http_server,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import problem
from service.exception_handlers import problem_response

logger = logging.getLogger("ridgeline.observability")
access_logger = logging.getLogger("ridgeline.access")

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_RAW = REQUEST_ID_HEADER.lower().encode("latin-1")
# Letters, digits and a few separators (uuids, ULIDs, base64, W3C trace ids); nothing that could
# forge a log line or a header.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+/=~-]{0,127}")

_request_id: ContextVar[str | None] = ContextVar("ridgeline_request_id", default=None)
_job_id: ContextVar[str | None] = ContextVar("ridgeline_job_id", default=None)


def get_request_id() -> str | None:
    """The id of the request being handled (None outside a request)."""
    return _request_id.get()


def get_job_id() -> str | None:
    """The job whose attempt this thread is running (None outside `job_context`)."""
    return _job_id.get()


@contextmanager
def job_context(job_id: object) -> Iterator[None]:
    """Stamp every log line written inside with `job_id`.

    Context variables do not cross into new threads: enter it inside the thread that logs
    (the attempt runner's and the heartbeat's `run()`).
    """
    token = _job_id.set(str(job_id))
    try:
        yield
    finally:
        _job_id.reset(token)


@contextmanager
def request_context(request_id: str) -> Iterator[None]:
    """Stamp log lines with a request id outside the HTTP middleware (tests, scripts)."""
    token = _request_id.set(request_id)
    try:
        yield
    finally:
        _request_id.reset(token)


# --- Structured logs ---------------------------------------------------------------------------

# Attributes every LogRecord has; anything else on a record came from `extra=` and is emitted.
_RECORD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys()
    | {"message", "asctime", "request_id", "job_id", "taskName", "color_message", "ids"}
)


def _utc_iso(created: float) -> str:
    return (
        datetime.fromtimestamp(created, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, request_id, job_id, exception and
    whatever the call passed in `extra=`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _utc_iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or _request_id.get()
        if request_id:
            entry["request_id"] = request_id
        job_id = getattr(record, "job_id", None) or _job_id.get()
        if job_id:
            entry["job_id"] = str(job_id)
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRS and not key.startswith("_") and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Plain text for people at a terminal, still with the request and job ids."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(ids)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        ids = []
        request_id = getattr(record, "request_id", None) or _request_id.get()
        if request_id:
            ids.append(f"request_id={request_id}")
        job_id = getattr(record, "job_id", None) or _job_id.get()
        if job_id:
            ids.append(f"job_id={job_id}")
        record.ids = f" [{' '.join(ids)}]" if ids else ""
        return super().format(record)


_HANDLER_MARK = "_ridgeline_handler"


def configure_logging(
    level: str = "INFO", json_logs: bool = True, *, stream: TextIO | None = None
) -> logging.Handler:
    """Send every log record, uvicorn's included, through one handler on the root logger.

    Call it before `uvicorn.run(app, log_config=None, access_log=False)`: with `log_config=None`
    uvicorn leaves this configuration alone, and its access log is replaced by the one line per
    request the observability middleware writes (logger `ridgeline.access`).
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if json_logs else TextFormatter())
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.asgi"):
        uv = logging.getLogger(name)
        uv.handlers = []
        uv.propagate = True
    access = logging.getLogger("uvicorn.access")
    access.handlers = []
    access.propagate = False
    logging.captureWarnings(True)
    return handler


def uvicorn_log_config(level: str = "INFO", json_logs: bool = True) -> dict[str, Any]:
    """The same set-up as a `logging.config.dictConfig` dict, for `uvicorn.run(log_config=...)`."""
    formatter = "json" if json_logs else "text"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {"()": f"{__name__}.JsonFormatter"},
            "text": {"()": f"{__name__}.TextFormatter"},
        },
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": formatter,
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["default"], "level": level.upper()},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": False},
        },
    }


LOG_CONFIG = uvicorn_log_config()


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
        token = _request_id.set(request_id)

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [h for h in message.get("headers", ()) if h[0].lower() != _REQUEST_ID_RAW]
                message = {**message, "headers": [*headers, header]}
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self.metrics.in_flight.dec()
            try:
                self._record(scope, status, time.perf_counter() - started)
            except Exception:  # observability must never break a request
                logger.exception("could not record the request's metrics")
            finally:
                _request_id.reset(token)

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


def _setting(settings: Any, name: str, default: Any) -> Any:
    value = getattr(settings, name, default)
    return default if value is None else value


def _secret(value: Any) -> str:
    getter = getattr(value, "get_secret_value", None)
    return str(getter() if callable(getter) else value or "")


def install_observability(app: FastAPI, settings: Any) -> None:
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

    token = _secret(_setting(settings, "metrics_token", ""))

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics(request: Request) -> Response:
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


# --- Worker metrics (the worker process's own registry and port) --------------------------------

WORKER_REGISTRY = CollectorRegistry()
JOB_DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0,
                        21600.0, 86400.0)  # fmt: skip
_FINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled", "released", "lost"})

JOB_DURATION = Histogram(
    "ridgeline_job_duration_seconds",
    "Wall time of one attempt in this worker, from claim to outcome, by outcome.",
    ["status"],
    buckets=JOB_DURATION_BUCKETS,
    registry=WORKER_REGISTRY,
)
JOB_ATTEMPTS_RETRIED = Counter(
    "ridgeline_job_attempts_retried",
    "Attempts this worker finished that were retries (attempt > 1).",
    registry=WORKER_REGISTRY,
)
WORKER_HEARTBEATS = Counter(
    "ridgeline_worker_heartbeats",
    "Lease renewals this worker made.",
    registry=WORKER_REGISTRY,
)
_worker_server_lock = threading.Lock()
_worker_server_started = False


def observe_job_finished(status: str, seconds: float, attempt: int) -> None:
    """Call once per attempt the worker ends (succeeded, failed, cancelled, released...)."""
    JOB_DURATION.labels(status if status in _FINAL_STATUSES else "other").observe(max(0.0, seconds))
    if attempt > 1:
        JOB_ATTEMPTS_RETRIED.inc()


def observe_heartbeat() -> None:
    """Call after each successful lease renewal."""
    WORKER_HEARTBEATS.inc()


def start_worker_metrics(settings: Any) -> int | None:
    """Serve the worker's metrics on `worker_metrics_port` (0: off). Returns the port, or None.

    Binds `worker_metrics_host` (default 127.0.0.1). A port already in use is logged and
    skipped: metrics must never stop a worker from working.
    """
    global _worker_server_started
    port = int(_setting(settings, "worker_metrics_port", 0))
    if port <= 0:
        return None
    host = str(_setting(settings, "worker_metrics_host", "127.0.0.1"))
    with _worker_server_lock:
        if _worker_server_started:
            return port
        disable_created_metrics()
        try:
            start_http_server(port, addr=host, registry=WORKER_REGISTRY)
        except OSError as exc:
            logger.warning("worker metrics not served on %s:%d: %s", host, port, exc)
            return None
        ProcessCollector(registry=WORKER_REGISTRY)
        _worker_server_started = True
    logger.info("worker metrics on http://%s:%d/metrics", host, port)
    return port
