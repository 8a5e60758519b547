"""Wakes an API process's event streams when job events commit, in any process, instead of each
stream waiting out its poll: a script that waits for its job or sweep hears the end at once. The
one Server-Sent Events loop both kinds of stream run is here too."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
from fastapi import Request
from fastapi.responses import StreamingResponse

from service.config import Settings
from service.deps import still_authorized
from service.jobs.queue import EVENTS_CHANNEL
from service.watch import start_watcher

#: A stream looks again this often when no commit wakes it (a missed notice costs no more).
EVENT_POLL_SECONDS = 0.25
KEEPALIVE_SECONDS = 15.0

#: Frames to send now, and whether the stream has said everything and closes.
Poll = Callable[[], Awaitable[tuple[list[str], bool]]]


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


def frame(kind: str, data: str, event_id: int | None = None) -> str:
    """One SSE event: its optional id, its kind and its JSON data."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {data}\n\n"


def event_stream(request: Request, poll: Poll) -> StreamingResponse:
    """`poll`'s frames as they come, until it says the end; keep-alives while nothing does, and
    the stream ends if the credential it was opened with is revoked or signed out."""
    signal: EventSignal = request.app.state.event_signal
    recheck = max(request.app.state.settings.key_cache_seconds, EVENT_POLL_SECONDS)

    async def stream() -> AsyncIterator[str]:
        idle = 0.0
        checked = time.monotonic()
        while not await request.is_disconnected():
            if time.monotonic() - checked >= recheck:  # the verifier's cadence
                if not await still_authorized(request):
                    yield ": the credential was revoked or signed out; the stream ends\n\n"
                    return
                checked = time.monotonic()
            seen = signal.generation
            frames, ended = await poll()
            for text in frames:
                yield text
            if ended:
                return
            if frames:
                idle = 0.0
            else:
                idle += EVENT_POLL_SECONDS
                if idle >= KEEPALIVE_SECONDS:
                    idle = 0.0
                    yield ": keep-alive\n\n"
            await signal.wait(seen, EVENT_POLL_SECONDS)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
