"""Child processes that start warm, hold a memory limit and never outlive their parent.

Training children (service/worker) and upload-ingest children (service/datasets/isolated.py)
are forked from a `forkserver` that imported the heavy libraries once. Each child puts itself in
a process group of its own (so a kill takes whatever it started), asks the kernel to kill it
when its parent dies, watches a pipe whose other end the parent holds, and sets RLIMIT_DATA.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import multiprocessing.context
import multiprocessing.forkserver
import multiprocessing.process
import os
import resource
import signal
import sys
import threading
from multiprocessing.connection import Connection
from typing import Any

PR_SET_PDEATHSIG = 1
#: The status a child exits with when its parent's end of the watchdog pipe closes.
ORPHANED_EXIT = 70


def forkserver_context(preload: list[str]) -> multiprocessing.context.ForkServerContext:
    """A forkserver context whose server imports `preload` once (started on first use)."""
    # Children need nothing from __main__ (the CLI, or pytest); without this, multiprocessing
    # re-executes the main module in every child, a third of a second each.
    main = sys.modules["__main__"]
    main.__spec__ = None
    if hasattr(main, "__file__"):
        del main.__file__
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["service.forkserver_boot", *preload])
    return context


def start_forkserver(context: multiprocessing.context.ForkServerContext) -> None:
    """Start the forkserver now (it imports its preload) by forking one child that does nothing."""
    probe = context.Process(target=os.getpid)
    probe.start()
    probe.join()


def stop_forkserver() -> None:
    """Kill this process's forkserver now, even in the middle of its preload, and forget it."""
    # multiprocessing keeps its forkserver's pid private, and offers no way to stop it early.
    server: Any = multiprocessing.forkserver._forkserver
    pid = server._forkserver_pid
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    server._stop()


def _die_with_parent() -> None:
    """Ask the kernel to SIGKILL us when our parent goes (Linux); the watchdog covers the rest."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def _watch(alive: Connection) -> None:
    """Exit at once when the parent's end of the pipe closes: a child never outlives it."""
    with contextlib.suppress(EOFError, OSError):
        alive.recv_bytes()
    os._exit(ORPHANED_EXIT)


def isolate(alive: Connection) -> None:
    """First thing in a child: its own process group, death with the parent, the watchdog."""
    os.setpgid(0, 0)
    _die_with_parent()
    threading.Thread(target=_watch, args=(alive,), daemon=True).start()


def limit_memory(limit_mb: int) -> None:
    """Cap the child's data segment (heap and anonymous mappings); 0 leaves it unlimited."""
    if limit_mb > 0:
        limit = limit_mb * (1 << 20)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def kill_group(process: multiprocessing.process.BaseProcess) -> None:
    """SIGKILL the child's process group (the child alone if the group is gone), then reap it."""
    if process.pid is None:
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        if process.is_alive():
            process.kill()
    process.join(timeout=5)
