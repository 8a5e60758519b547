"""Hear other processes' commits: Postgres LISTEN/NOTIFY, or SQLite's ``PRAGMA data_version``.

Idle workers use it to wake for new jobs; API processes use it to drop the model aliases they
cached when an alias moves. Each watcher is a daemon thread that calls ``on_change`` when it
hears something, and once on (re)connecting, since it may have missed something meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable

from sqlalchemy import make_url, text
from sqlalchemy.orm import Session

from service.config import Settings

logger = logging.getLogger("ridgeline.watch")

#: How often a SQLite watcher checks whether anything was committed (a shared-memory read).
SQLITE_WATCH_SECONDS = 0.02
#: How long a failed watcher waits before it connects again.
RETRY_SECONDS = 2.0

OnChange = Callable[[], None]


def notify(session: Session, channel: str) -> None:
    """Tell the listeners on `channel` when this transaction commits (Postgres; on SQLite the
    commit itself is what the watchers see)."""
    if session.get_bind().dialect.name != "sqlite":
        session.execute(text(f"NOTIFY {channel}"))


class PostgresListener(threading.Thread):
    """LISTENs on a channel on its own autocommit connection; ``on_change`` on each NOTIFY."""

    def __init__(
        self, database_url: str, channel: str, on_change: OnChange, stop: threading.Event
    ) -> None:
        super().__init__(name=f"pg-listen-{channel}", daemon=True)
        self.dsn = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
        self.channel = channel
        self.on_change = on_change
        self.stop = stop

    def run(self) -> None:
        import psycopg

        while not self.stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {self.channel}")
                    self.on_change()  # whatever happened while we were not listening
                    while not self.stop.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self.on_change()
            except Exception as exc:
                logger.warning("LISTEN %s failed (%s); trying again", self.channel, exc)
                self.stop.wait(RETRY_SECONDS)


class SqliteCommitWatcher(threading.Thread):
    """``on_change`` when another connection commits: SQLite's stand-in for NOTIFY.

    ``PRAGMA data_version`` changes whenever another connection has committed; reading it
    costs a look at the WAL index in shared memory, so checking often is cheap.
    """

    def __init__(self, database_url: str, on_change: OnChange, stop: threading.Event) -> None:
        super().__init__(name="sqlite-watch", daemon=True)
        self.path = make_url(database_url).database or ""
        self.on_change = on_change
        self.stop = stop

    def run(self) -> None:
        last = None
        while not self.stop.is_set():
            try:
                with contextlib.closing(sqlite3.connect(self.path, isolation_level=None)) as conn:
                    while not self.stop.is_set():
                        version = conn.execute("PRAGMA data_version").fetchone()[0]
                        if version != last:
                            last = version
                            self.on_change()
                        self.stop.wait(SQLITE_WATCH_SECONDS)
            except sqlite3.Error as exc:
                logger.warning("cannot watch the database for commits (%s); trying again", exc)
                self.stop.wait(RETRY_SECONDS)


def start_watcher(
    settings: Settings, channel: str, on_change: OnChange, stop: threading.Event
) -> threading.Thread:
    """The watcher for this database, started: NOTIFYs on ``channel``, or any SQLite commit."""
    watcher: threading.Thread
    if settings.is_sqlite:
        watcher = SqliteCommitWatcher(settings.database_url, on_change, stop)
    else:
        watcher = PostgresListener(settings.database_url, channel, on_change, stop)
    watcher.start()
    return watcher
