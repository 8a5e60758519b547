"""The per-process cache of resolved aliases: expiry, clearing, and a clear that lands while a
lookup is reading the database (what it read must not be kept)."""

from __future__ import annotations

import asyncio
import uuid

from service.registry.cache import ServedVersions
from service.registry.service import ServedVersion

KEY = ("tenant", "cancer", "champion")


def _served(version: int) -> ServedVersion:
    return ServedVersion("cancer", version, uuid.uuid4(), uuid.uuid4(), "0" * 64, "skops")


def _version(served: ServedVersion | None) -> int:
    assert served is not None
    return served.version


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_entries_expire_and_clear() -> None:
    clock = Clock()
    cache = ServedVersions(1.0, clock=clock)
    reads: list[int] = []

    async def load() -> ServedVersion:
        reads.append(1)
        return _served(len(reads))

    async def scenario() -> None:
        assert _version(await cache.resolve(KEY, load)) == 1
        clock.now += 0.9
        assert _version(await cache.resolve(KEY, load)) == 1  # still fresh: no read
        clock.now += 0.2
        assert _version(await cache.resolve(KEY, load)) == 2  # expired: read again
        cache.clear()
        assert _version(await cache.resolve(KEY, load)) == 3  # cleared: read again
        other = ("other-tenant", "cancer", "champion")
        assert _version(await cache.resolve(other, load)) == 4  # keys are per tenant

    asyncio.run(scenario())
    assert len(reads) == 4


def test_a_clear_during_a_read_keeps_nothing_of_that_read() -> None:
    cache = ServedVersions(3600.0)
    reading, may_finish = asyncio.Event(), asyncio.Event()
    versions = iter([1, 2])

    async def slow_load() -> ServedVersion:
        reading.set()
        await may_finish.wait()
        return _served(next(versions))

    async def scenario() -> None:
        first = asyncio.ensure_future(cache.resolve(KEY, slow_load))
        await reading.wait()
        cache.clear()  # an alias moved while the old value was being read
        may_finish.set()
        assert _version(await first) == 1  # that request still gets an answer
        assert cache.cached(KEY) is None  # but it is not kept
        assert _version(await cache.resolve(KEY, slow_load)) == 2

    asyncio.run(scenario())


def test_lookups_in_flight_are_shared_and_misses_are_not_cached() -> None:
    cache = ServedVersions(3600.0)
    calls: list[int] = []

    async def load() -> ServedVersion:
        calls.append(1)
        await asyncio.sleep(0)  # let the other lookups arrive while this one reads
        return _served(7)

    async def missing() -> None:
        calls.append(1)

    async def scenario() -> None:
        results = await asyncio.gather(*(cache.resolve(KEY, load) for _ in range(20)))
        assert {_version(r) for r in results} == {7}
        assert len(calls) == 1
        gone = ("tenant", "cancer", "nobody")
        assert await cache.resolve(gone, missing) is None
        assert await cache.resolve(gone, missing) is None
        assert len(calls) == 3

    asyncio.run(scenario())


def test_zero_seconds_reads_every_time() -> None:
    cache = ServedVersions(0.0)
    calls: list[int] = []

    async def load() -> ServedVersion:
        calls.append(1)
        return _served(len(calls))

    async def scenario() -> None:
        for expected in (1, 2, 3):
            assert _version(await cache.resolve(KEY, load)) == expected

    asyncio.run(scenario())
