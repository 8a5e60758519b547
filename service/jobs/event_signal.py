"""Wakes an API process's event streams when job events commit, in any process, instead of each
stream waiting out its poll: a script that waits for its job hears the end at once."""

from __future__ import annotations

import asyncio
import contextlib
import threading

import anyio

from service.config import Settings
from service.jobs.queue import EVENTS_CHANNEL
from service.watch import start_watcher


class EventSignal:
    """A generation counter bumped by a watcher thread; streams wait for it to move."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation = 0
        self._waiting: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._stop = threading.Event()

    def listen(self, settings: Settings) -> None:
        start_watcher(settings, EVENTS_CHANNEL, self._changed, self._stop)

    def close(self) -> None:
        self._stop.set()

    @property
    def generation(self) -> int:
        """Read before querying; `wait(seen)` then returns at once if anything committed since."""
        with self._lock:
            return self._generation

    def _changed(self) -> None:
        with self._lock:
            self._generation += 1
            waiting = list(self._waiting)
        for loop, event in waiting:
            with contextlib.suppress(RuntimeError):  # its loop has closed
                loop.call_soon_threadsafe(event.set)

    async def wait(self, seen: int, timeout: float) -> None:
        """Until a commit after generation `seen` was heard, or `timeout` seconds."""
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            if self._generation != seen:
                return
            self._waiting.add(entry)
        try:
            with anyio.move_on_after(timeout):
                await entry[1].wait()
        finally:
            with self._lock:
                self._waiting.discard(entry)
