"""Child processes that start warm, hold a memory limit and never outlive their parent.

Training children (service/worker) and upload-ingest children (service/datasets/isolated.py)
are forked from a `forkserver` that imported the heavy libraries once. Each child puts itself in
a process group of its own (so a kill takes whatever it started), asks the kernel to kill it
when its parent dies, watches a pipe whose other end the parent holds, and sets RLIMIT_DATA.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import multiprocessing
import multiprocessing.context
import multiprocessing.forkserver
import multiprocessing.process
import os
import resource
import signal
import sys
import threading
import time
from multiprocessing import popen_forkserver, reduction, spawn, util
from multiprocessing.connection import Connection
from multiprocessing.context import set_spawning_popen
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


#: The forkservers of this process started through WarmServer, by name (for their children's Popen).
_SERVERS: dict[str, WarmServer] = {}


class _ServerPopen(popen_forkserver.Popen):
    """multiprocessing's forkserver Popen, asking the server its process names (not the one)."""

    def _launch(self, process_obj: Any) -> None:
        # The standard library's _launch, with `server.connect_to_new_process` for the module's.
        server = _SERVERS[process_obj.server_name].server
        prep_data = spawn.get_preparation_data(process_obj._name)
        buf = io.BytesIO()
        set_spawning_popen(self)
        try:
            reduction.dump(prep_data, buf)
            reduction.dump(process_obj, buf)
        finally:
            set_spawning_popen(None)
        self.sentinel, w = server.connect_to_new_process(self._fds)  # type: ignore[attr-defined]
        _parent_w = os.dup(w)
        close_fds = util.close_fds  # type: ignore[attr-defined]
        self.finalizer = util.Finalize(self, close_fds, (_parent_w, self.sentinel))
        with open(w, "wb", closefd=True) as f:
            f.write(buf.getbuffer())
        self.pid = multiprocessing.forkserver.read_signed(self.sentinel)


class ServerProcess(multiprocessing.process.BaseProcess):
    """A child of a WarmServer; `server_name` says which."""

    _start_method = "forkserver"
    server_name = ""

    @staticmethod
    def _Popen(process_obj: Any) -> Any:
        return _ServerPopen(process_obj)


class WarmServer:
    """A forkserver of our own, so that one process can hold several (multiprocessing has one):
    each with its own preload, started without waiting, ready when its preload is done."""

    def __init__(self, name: str, preload: list[str]) -> None:
        forkserver_context([])  # children need nothing from __main__
        self.name = name
        self.server: Any = multiprocessing.forkserver.ForkServer()
        self.server.set_forkserver_preload(["service.forkserver_boot", *preload])
        self.ready = threading.Event()
        self.started_at = 0.0
        self.stopped = False
        _SERVERS[name] = self

    def start(self) -> None:
        """Launch the server; its preload runs while we go on."""
        self.started_at = time.monotonic()
        self.server.ensure_running()

    def wait(self) -> float:
        """Block until the preload is done (a child that does nothing is forked); its seconds."""
        probe = self.Process(target=os.getpid)
        probe.start()
        probe.join()
        self.ready.set()
        return time.monotonic() - self.started_at

    def Process(self, *, target: Any, args: tuple[Any, ...] = (), daemon: bool = False) -> Any:
        process = ServerProcess(target=target, args=args, daemon=daemon)
        process.server_name = self.name
        return process

    @staticmethod
    def Pipe(duplex: bool = True) -> tuple[Connection, Connection]:
        return multiprocessing.Pipe(duplex)

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server (its running children die with it); kill: even mid-preload."""
        pid = self.server._forkserver_pid
        if pid is None:
            return
        if kill:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.server._stop()
        self.stopped = True
        _SERVERS.pop(self.name, None)


def stop_forkservers() -> None:
    """Stop this process's WarmServers; one still in its preload is killed there."""
    for server in list(_SERVERS.values()):
        server.stop(kill=not server.ready.is_set())
