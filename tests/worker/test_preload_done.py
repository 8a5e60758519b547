"""What a worker's forkserver settles last is what its children start with."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from multiprocessing.connection import Connection

import pytest

from service.childproc import WarmServer


def report_settled(conn: Connection) -> None:
    """In the child: whether the thread pools were found for it and the heap frozen."""
    from service.worker import child

    conn.send((child._threadpools is not None, gc.get_freeze_count()))
    conn.close()


@pytest.fixture
def settled_server() -> Iterator[WarmServer]:
    server = WarmServer("settled-test", ["service.worker.preload_done"])
    server.start()
    server.wait()
    yield server
    server.stop()


def test_children_find_the_thread_pools_found_and_the_heap_frozen(
    settled_server: WarmServer,
) -> None:
    receive, send = settled_server.Pipe(duplex=False)
    process = settled_server.Process(target=report_settled, args=(send,))
    process.start()
    send.close()
    found, frozen = receive.recv()
    process.join(timeout=30)
    assert process.exitcode == 0
    assert found, "the child would search its shared libraries again"
    assert frozen > 10_000, "the forkserver's objects would be walked by the child's collections"
