"""Per API process: which version ``name@alias`` (or ``name`` version n) serves, cached.

An entry lives at most ``RIDGELINE_ALIAS_CACHE_SECONDS`` and is dropped at once when any
process moves an alias: a watcher thread (Postgres LISTEN, SQLite ``data_version``) calls
:meth:`ServedVersions.clear`. A lookup that was already reading the database when the clear
came does not store what it read (a generation number says so), so an answer is never older
than the last clear this process heard of, and never older than the expiry.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable

from service.config import Settings
from service.registry.service import NOTIFY_CHANNEL, ServedVersion
from service.watch import start_watcher

#: (tenant, model name, alias or version number)
Key = tuple[str, str, str | int]
MAX_ENTRIES = 10_000


class ServedVersions:
    """The resolved versions of one API process, shared by its requests."""

    def __init__(self, max_age: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age = max_age
        self._clock = clock
        self._entries: dict[Key, tuple[float, ServedVersion]] = {}
        self._generation = 0
        self._lock = threading.Lock()
        self._in_flight: dict[Key, asyncio.Future[ServedVersion | None]] = {}
        self._stop = threading.Event()

    def clear(self) -> None:
        """Forget every entry (another process moved an alias or deleted a version)."""
        with self._lock:
            self._generation += 1
            self._entries.clear()

    def cached(self, key: Key) -> ServedVersion | None:
        with self._lock:
            hit = self._entries.get(key)
        if hit is not None and self._clock() - hit[0] < self.max_age:
            return hit[1]
        return None

    async def resolve(
        self, key: Key, load: Callable[[], Awaitable[ServedVersion | None]]
    ) -> ServedVersion | None:
        """Cached, else one `load` per key at a time (event loop only); None is not cached."""
        hit = self.cached(key)
        if hit is not None:
            return hit
        pending = self._in_flight.get(key)
        if pending is None:
            pending = self._in_flight[key] = asyncio.ensure_future(self._load(key, load))
            pending.add_done_callback(lambda _: self._in_flight.pop(key, None))
        return await asyncio.shield(pending)  # a caller that goes away leaves it to the others

    async def _load(
        self, key: Key, load: Callable[[], Awaitable[ServedVersion | None]]
    ) -> ServedVersion | None:
        with self._lock:
            generation, stamped = self._generation, self._clock()
        value = await load()
        if value is not None and self.max_age > 0:
            with self._lock:
                if generation == self._generation:  # no clear since the read began
                    if len(self._entries) >= MAX_ENTRIES:
                        self._entries.clear()
                    self._entries[key] = (stamped, value)
        return value

    def listen(self, settings: Settings) -> None:
        """Clear on every move any process makes, heard by a watcher thread of our own."""
        start_watcher(settings, NOTIFY_CHANNEL, self.clear, self._stop)

    def close(self) -> None:
        self._stop.set()
