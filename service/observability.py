"""Request and job ids in every log line, structured JSON logs, and the worker's metrics.

Log lines carry the id of the request or job they were written for (context variables set by
service/http_observability.py's middleware and by the worker). A worker's counters and
histograms (`observe_job_finished`, `observe_heartbeat`) are served by
`start_worker_metrics(settings)` on a port of its own. Nothing here imports the web framework:
the worker loads this module.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)

from service.config import Settings

logger = logging.getLogger("ridgeline.observability")

REQUEST_ID_HEADER = "X-Request-ID"

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
    """Stamp the log lines written inside with a request id (the HTTP middleware, tests)."""
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
    # pandas' numexpr announces its thread count at INFO in every process that imports it.
    logging.getLogger("numexpr.utils").setLevel(logging.WARNING)
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


def start_worker_metrics(settings: Settings) -> int | None:
    """Serve the worker's metrics on `worker_metrics_port` (0: off). Returns the port, or None.

    Binds `worker_metrics_host` (default 127.0.0.1). A port already in use is logged and
    skipped: metrics must never stop a worker from working.
    """
    global _worker_server_started
    port = settings.worker_metrics_port
    if port <= 0:
        return None
    host = settings.worker_metrics_host
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
