"""An idle SQLite worker wakes when another connection commits, not at its next poll."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from service.watch import SqliteCommitWatcher


def test_a_commit_elsewhere_wakes_the_worker(tmp_path: Path) -> None:
    path = tmp_path / "watch.db"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY)")
    wake, stop = threading.Event(), threading.Event()
    waker = SqliteCommitWatcher(f"sqlite:///{path}", "jobs", wake.set, stop)
    waker.start()
    try:
        assert wake.wait(5), "the first look sets the event (anything queued before it started)"
        wake.clear()
        assert not wake.wait(0.3), "nothing was committed, so nothing should wake the worker"
        writer.execute("INSERT INTO jobs DEFAULT VALUES")
        assert wake.wait(5), "a commit by another connection must wake the worker"
    finally:
        stop.set()
        waker.join(timeout=5)
        writer.close()
    assert not waker.is_alive()
