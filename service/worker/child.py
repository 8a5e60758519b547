"""Code that runs inside a training child process.

This module stays light so the worker itself never imports torch; the forkserver preloads
`service.worker.preload`, so the imports inside child_main find everything already loaded.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from service.childproc import isolate, limit_memory
from service.plugins import import_plugins
from service.worker.cache import read_cached
from service.worker.trainers import TRAINERS, Reporter

if TYPE_CHECKING:
    from threadpoolctl import ThreadpoolController

#: The native thread pools, found once by the forkserver's preload (see preload_threadpools).
_threadpools: ThreadpoolController | None = None


def preload_threadpools() -> None:
    """Find the loaded native thread pools (BLAS, OpenMP) once, in the forkserver, after its
    warm-up loaded every kind's libraries: each child then limits them without searching its
    shared libraries again (5 to 10 ms of CPU a job). A library that only a job loads, after
    this, is not limited."""
    from threadpoolctl import ThreadpoolController

    global _threadpools
    _threadpools = ThreadpoolController()


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


class PhaseClock:
    """Wall and CPU seconds of the child's phases, sent with its result for the worker's log."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        self._faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    def mark(self, name: str) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        self.phases[name] = round(wall - self._wall, 4)
        self.phases[f"{name}_cpu"] = round(cpu - self._cpu, 4)
        self._wall, self._cpu = wall, cpu

    def summary(self) -> dict[str, float]:
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - self._faults
        return {**self.phases, "minor_faults": faults}


def child_main(conn: Connection, alive: Connection, payload: dict[str, Any]) -> None:
    """Entry point of one attempt: isolate, limit, train, report, exit."""
    clock = PhaseClock()
    isolate(alive)
    import torch
    from threadpoolctl import ThreadpoolController

    threads = int(payload["threads"])
    torch.set_num_threads(threads)
    reporter = PipeReporter(conn)
    limit_mb = int(payload["memory_limit_mb"])
    try:
        limit_memory(limit_mb)
        import_plugins(payload.get("plugins", []))
        trainer = TRAINERS[payload["trainer"]]
        clock.mark("setup")
        with (_threadpools or ThreadpoolController()).limit(limits=threads):
            clock.mark("threads")
            table = read_cached(payload["data_path"]) if payload.get("data_path") else None
            clock.mark("load")
            outcome = trainer(payload, table, reporter)
            clock.mark("train")
        reporter.send(
            {
                "type": "result",
                "result": outcome.result,
                "has_artifact": bool(outcome.artifact),
                "phases": clock.summary(),
            },
            outcome.artifact or None,
        )
    except BaseException as exc:
        traceback.print_exc(file=sys.stderr)
        with contextlib.suppress(OSError, ValueError):
            reporter.send({"type": "error", "message": _readable(exc, limit_mb)})
        os._exit(1)
    finally:
        conn.close()
