"""Ingest an upload in a child process under a memory limit, so no file can swell the API.

A small compressed file can decompress to gigabytes (a Parquet "bomb"), and parsing a footer
of 100,000 columns costs hundreds of MiB before any check can run. `ingest.py` refuses what
its limits can see from the footer and reads in bounded batches; this module makes the
remaining cases (a crafted page or dictionary that still expands) the child's problem: it runs
`ingest.ingest` in a child forked from a forkserver that has pyarrow, pandas and numpy imported
(about 10 ms a child), with RLIMIT_DATA at `ingest_memory_mb`, in a process group of its own,
dying with the API process. The child answers with JSON only, never a pickle: a result, a
ServiceError to re-raise, or word that memory ran out.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import threading
import traceback
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext
from pathlib import Path
from typing import Any

import pyarrow as pa

from service.childproc import (
    forkserver_context,
    isolate,
    kill_group,
    limit_memory,
    start_forkserver,
)
from service.datasets.ingest import IngestResult, SizeLimits, ingest, is_out_of_memory
from service.errors import InvalidInput, PayloadTooLarge, ServiceError, UnsupportedMediaType

logger = logging.getLogger("ridgeline.ingest")

PRELOAD = ["service.datasets.ingest"]
#: The errors ingest raises for a bad file, re-raised in the API by name.
FILE_ERRORS: dict[str, type[ServiceError]] = {
    cls.__name__: cls for cls in (InvalidInput, PayloadTooLarge, UnsupportedMediaType)
}
#: Deaths that mean the allocator gave up (the kernel's OOM killer, an abort on bad_alloc).
OUT_OF_MEMORY_SIGNALS = frozenset({signal.SIGKILL, signal.SIGABRT})
POLL_SECONDS = 0.5
MAX_THREADS = 8

_context: ForkServerContext | None = None
_context_lock = threading.Lock()


def _warm_context() -> ForkServerContext:
    """The process's forkserver for ingest children, made on first use."""
    global _context
    with _context_lock:
        if _context is None:
            _context = forkserver_context(PRELOAD)
        return _context


def prewarm() -> None:
    """Start the forkserver now (it imports pyarrow and pandas, about a second), in a thread,
    so that the first upload does not wait for it."""

    threading.Thread(
        target=lambda: start_forkserver(_warm_context()), name="ingest-forkserver", daemon=True
    ).start()


def ingest_in_child(src: Path, dest: Path, *, memory_limit_mb: int, **options: Any) -> IngestResult:
    """`ingest.ingest(src, dest, **options)` in a memory-limited child; its IngestResult."""
    sizes = options.pop("sizes", None) or SizeLimits()
    payload = {
        "src": str(src),
        "dest": str(dest),
        "memory_limit_mb": memory_limit_mb,
        "options": {**options, "sizes": dataclasses.asdict(sizes)},
    }
    context = _warm_context()
    receive, send = context.Pipe(duplex=False)
    alive_r, alive_w = context.Pipe(duplex=False)
    process = context.Process(target=child_main, args=(send, alive_r, payload), daemon=False)
    process.start()
    send.close()
    alive_r.close()
    try:
        message = _receive(receive, process)
    finally:
        alive_w.close()
        receive.close()
        process.join(timeout=5)
        if process.is_alive():
            kill_group(process)
    if message is None:
        raise _death(process.exitcode, memory_limit_mb)
    if message["type"] == "result":
        return IngestResult.from_dict(message["result"])
    raise _error(message, memory_limit_mb)


def _receive(receive: Connection, process: Any) -> dict[str, Any] | None:
    """The child's one message, or None if it died without sending one."""
    while not receive.poll(POLL_SECONDS):
        if not process.is_alive() and not receive.poll(0):
            return None
    try:
        message: dict[str, Any] = json.loads(receive.recv_bytes())
    except (EOFError, OSError):
        return None
    return message


def _out_of_memory(limit_mb: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"reading the file needs more than the {limit_mb} MiB of memory one upload may use "
        "(RIDGELINE_INGEST_MEMORY_MB); split the file, shorten long text values, or write a "
        "Parquet file with smaller row groups"
    )


def _death(exitcode: int | None, limit_mb: int) -> ServiceError:
    """What a child that died without a word means for the upload."""
    if exitcode is not None and exitcode < 0:
        sig = signal.Signals(-exitcode)
        if sig in OUT_OF_MEMORY_SIGNALS:
            return _out_of_memory(limit_mb)
        return InvalidInput(
            f"the file could not be read: the reader crashed ({sig.name}); the file is probably "
            "corrupt, write it again and re-upload"
        )
    raise RuntimeError(f"the ingest process exited with status {exitcode} without a result")


def _error(message: dict[str, Any], limit_mb: int) -> ServiceError:
    """The child's refusal as the same ServiceError, raised here at the request boundary."""
    if message["type"] == "memory":
        return _out_of_memory(limit_mb)
    cls = FILE_ERRORS.get(message.get("kind", ""))
    if message["type"] == "error" and cls is not None:
        return cls(message["detail"], errors=message.get("errors"))
    raise RuntimeError(f"the ingest process failed:\n{message.get('traceback', message)}")


def child_main(conn: Connection, alive: Connection, payload: dict[str, Any]) -> None:
    """Entry point of the child: isolate, limit, ingest, answer in JSON, exit."""
    isolate(alive)
    message: dict[str, Any]
    try:
        pa.set_cpu_count(min(pa.cpu_count(), MAX_THREADS))  # each thread's stack counts too
        limit_memory(int(payload["memory_limit_mb"]))
        options = dict(payload["options"])
        options["sizes"] = SizeLimits(**options["sizes"])
        result = ingest(Path(payload["src"]), Path(payload["dest"]), **options)
        message = {"type": "result", "result": result.to_dict()}
    except ServiceError as exc:
        message = {
            "type": "error",
            "kind": type(exc).__name__,
            "detail": exc.detail,
            "errors": exc.errors,
        }
    except BaseException as exc:
        if is_out_of_memory(exc):
            message = {"type": "memory"}
        else:
            message = {"type": "crash", "traceback": traceback.format_exc()[-4000:]}
    try:
        conn.send_bytes(json.dumps(message).encode())
        conn.close()
    finally:
        os._exit(0)
