"""Hear commits: other processes' by Postgres LISTEN/NOTIFY or SQLite's ``PRAGMA data_version``,
this process's own as soon as they commit.

Idle workers use it to wake for new jobs; API processes use it to drop the model aliases they
cached when an alias moves. Each watcher is a daemon thread that calls ``on_change`` when it
hears something, and once on (re)connecting, since it may have missed something meanwhile. A
transaction of this process that notifies a channel also calls that channel's ``on_change``
right after its commit, before its request answers: a client that moved an alias reads the
move back at once from the same process instead of racing the watcher's next look.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable

from sqlalchemy import event, make_url, text
from sqlalchemy.orm import Session, SessionTransaction

from service.config import Settings

logger = logging.getLogger("ridgeline.watch")

#: How often a SQLite watcher checks whether anything was committed (a shared-memory read).
SQLITE_WATCH_SECONDS = 0.02
#: How long a failed watcher waits before it connects again.
RETRY_SECONDS = 2.0

OnChange = Callable[[], None]
#: Session.info key: the channels this transaction notifies.
PENDING = "ridgeline.notify"

_local: dict[str, list[OnChange]] = {}
_local_lock = threading.Lock()


def notify(session: Session, channel: str) -> None:
    """Tell the listeners on `channel` when this transaction commits: this process's at once,
    other processes' by a NOTIFY (Postgres) or by the commit itself (SQLite's watchers)."""
    if session.get_bind().dialect.name != "sqlite":
        session.execute(text(f"NOTIFY {channel}"))
    else:
        session.connection()  # begun, so that a rollback of it forgets the notice
    session.info.setdefault(PENDING, set()).add(channel)


@event.listens_for(Session, "after_commit")
def _tell_this_process(session: Session) -> None:
    for channel in session.info.pop(PENDING, ()):
        with _local_lock:
            listeners = list(_local.get(channel, ()))
        for on_change in listeners:
            on_change()


@event.listens_for(Session, "after_soft_rollback")
def _forget_notices(session: Session, previous_transaction: SessionTransaction) -> None:
    if not previous_transaction.nested:
        session.info.pop(PENDING, None)


class Watcher(threading.Thread):
    """A daemon thread that hears other processes' commits; while it runs, this process's own
    commits that notify its channel reach ``on_change`` too."""

    def __init__(self, name: str, channel: str, on_change: OnChange, stop: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self.channel = channel
        self.on_change = on_change
        self.stop = stop

    def run(self) -> None:
        with _local_lock:
            _local.setdefault(self.channel, []).append(self.on_change)
        try:
            self.watch()
        finally:
            with _local_lock:
                _local[self.channel].remove(self.on_change)

    def watch(self) -> None:
        raise NotImplementedError


class PostgresListener(Watcher):
    """LISTENs on a channel on its own autocommit connection; ``on_change`` on each NOTIFY."""

    def __init__(
        self, database_url: str, channel: str, on_change: OnChange, stop: threading.Event
    ) -> None:
        super().__init__(f"pg-listen-{channel}", channel, on_change, stop)
        self.dsn = database_url.replace("postgresql+psycopg://", "postgresql://", 1)

    def watch(self) -> None:
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


class SqliteCommitWatcher(Watcher):
    """``on_change`` when another connection commits: SQLite's stand-in for NOTIFY.

    ``PRAGMA data_version`` changes whenever another connection has committed; reading it
    costs a look at the WAL index in shared memory, so checking often is cheap.
    """

    def __init__(
        self, database_url: str, channel: str, on_change: OnChange, stop: threading.Event
    ) -> None:
        super().__init__(f"sqlite-watch-{channel}", channel, on_change, stop)
        self.path = make_url(database_url).database or ""

    def watch(self) -> None:
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
    """The watcher for this database, started: NOTIFYs on ``channel``, or any SQLite commit;
    this process's own commits that notify ``channel`` too, until ``stop`` is set."""
    watcher: Watcher
    if settings.is_sqlite:
        watcher = SqliteCommitWatcher(settings.database_url, channel, on_change, stop)
    else:
        watcher = PostgresListener(settings.database_url, channel, on_change, stop)
    watcher.start()
    return watcher
