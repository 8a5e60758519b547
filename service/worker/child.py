"""Code that runs inside a training child process.

This module stays light so the worker itself never imports torch; the forkserver preloads
`service.worker.preload`, so the imports inside child_main find everything already loaded.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import signal
import sys
import threading
import traceback
from multiprocessing.connection import Connection
from typing import Any

from service.plugins import import_plugins
from service.worker.trainers import TRAINERS, Reporter

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Ask the kernel to SIGKILL us when our parent goes (Linux); the watchdog covers the rest."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def _watch(alive: Connection) -> None:
    """Exit at once when the worker's end of the pipe closes: a child never outlives it."""
    with contextlib.suppress(EOFError, OSError):
        alive.recv_bytes()
    os._exit(70)


def _limit_memory(limit_mb: int) -> None:
    if limit_mb > 0:
        limit = limit_mb * (1 << 20)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


class PipeReporter(Reporter):
    """Sends progress and epochs to the worker as JSON messages."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any], payload: bytes | None = None) -> None:
        with self._lock:
            self.conn.send_bytes(json.dumps(message).encode())
            if payload is not None:
                self.conn.send_bytes(payload)

    def epoch(self, row: dict[str, Any]) -> None:
        self.send({"type": "epoch", "epoch": row})

    def progress(self, value: float) -> None:
        self.send({"type": "progress", "value": float(value)})


def _readable(exc: BaseException, limit_mb: int) -> str:
    # A ServiceError (a bad part of an import) already says what to change.
    text = getattr(exc, "detail", None) or f"{type(exc).__name__}: {exc}"
    out_of_memory = isinstance(exc, MemoryError) or (
        isinstance(exc, RuntimeError) and "allocate" in str(exc).lower()
    )
    if out_of_memory:
        return (
            f"out of memory: the training needed more than the per-job limit of {limit_mb} MiB "
            "(RIDGELINE_CHILD_MEMORY_MB); use fewer rows, features or a smaller model"
        )
    return text[:2000]


def child_main(conn: Connection, alive: Connection, payload: dict[str, Any]) -> None:
    """Entry point of one attempt: isolate, limit, train, report, exit."""
    os.setpgid(0, 0)
    _die_with_parent()
    threading.Thread(target=_watch, args=(alive,), daemon=True).start()
    import pyarrow.parquet as pq
    import torch
    from threadpoolctl import threadpool_limits

    threads = int(payload["threads"])
    torch.set_num_threads(threads)
    reporter = PipeReporter(conn)
    limit_mb = int(payload["memory_limit_mb"])
    try:
        _limit_memory(limit_mb)
        import_plugins(payload.get("plugins", []))
        trainer = TRAINERS[payload["trainer"]]
        with threadpool_limits(limits=threads):
            table = pq.read_table(payload["data_path"]) if payload.get("data_path") else None
            outcome = trainer(payload, table, reporter)
        reporter.send(
            {"type": "result", "result": outcome.result, "has_artifact": bool(outcome.artifact)},
            outcome.artifact or None,
        )
    except BaseException as exc:
        traceback.print_exc(file=sys.stderr)
        with contextlib.suppress(OSError, ValueError):
            reporter.send({"type": "error", "message": _readable(exc, limit_mb)})
        os._exit(1)
    finally:
        conn.close()
