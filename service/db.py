"""Engine, session factories and short reads; the request boundary lives in service/deps.py."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio
from pydantic_core import from_json
from sqlalchemy import Connection, CursorResult, DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.engine import Dialect, Result
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from service.config import Settings

T = TypeVar("T")

logger = logging.getLogger("ridgeline.db")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Execution option that makes a SQLite transaction take the write lock at BEGIN, so a
# read-then-write transaction never fails on lock upgrade (busy_timeout cannot retry that).
WRITE = {"sqlite_begin": "IMMEDIATE"}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes on both backends (SQLite stores them naive, in UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a timezone-aware column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE matched (typed `Result` hides the cursor's count)."""
    assert isinstance(result, CursorResult)
    return result.rowcount


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> uuid.UUID:
    return uuid.uuid4()


#: Page size of a new SQLite file: blob chunks span a quarter of the overflow pages they do at
#: SQLite's 4 KiB default (a 93 MB dataset stores in 0.39 s instead of 0.72-0.87 s).
SQLITE_PAGE_SIZE = 16384


def ensure_sqlite_file(url: str) -> None:
    """Create a SQLite file and its folder so a first start needs no set-up.

    The page size can only be chosen before the first table, so a new file is made here, in
    WAL mode, before the migrations or an engine touch it; an existing file keeps its own.
    """
    path = url.split("///", 1)[1] if url.startswith("sqlite") and "///" in url else ""
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    file = Path(path.split("?", 1)[0])
    file.parent.mkdir(parents=True, exist_ok=True)
    if file.exists():
        return
    connection = sqlite3.connect(file)
    try:
        connection.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")
        connection.execute("PRAGMA journal_mode=WAL")
    finally:
        connection.close()


def make_engine(settings: Settings) -> Engine:
    """One engine per process; SQLite gets WAL, foreign keys, a busy timeout and explicit BEGINs.

    JSON columns are parsed by pydantic-core: three times faster than `json.loads`, same values.
    """
    url = settings.database_url
    if settings.is_sqlite:
        ensure_sqlite_file(url)
        engine = create_engine(
            url,
            json_deserializer=from_json,
            connect_args={
                "check_same_thread": False,
                "timeout": settings.sqlite_busy_timeout_ms / 1000,
            },
            # As many as the threadpool runs at once (40), so connections are reused, not churned.
            pool_size=40,
            max_overflow=8,
        )
        _configure_sqlite(engine, settings.sqlite_busy_timeout_ms)
        return engine
    return create_engine(
        url,
        json_deserializer=from_json,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=20,
        pool_timeout=10,
        connect_args={"connect_timeout": 5},
    )


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        # Turn off pysqlite's own implicit BEGIN so ours (below) is the only one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA wal_autocheckpoint=0")  # the WalCheckpointer's thread does it
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "")
        conn.exec_driver_sql(f"BEGIN {mode}".strip())


#: How long the checkpointer lets commits gather before it copies them into the database file.
CHECKPOINT_DELAY_SECONDS = 0.25


class WalCheckpointer:
    """Copies a SQLite file's WAL into the database file in a thread of its own, after commits.

    SQLite's automatic checkpoint runs inside the commit that crosses 1000 pages and waits for
    two fsyncs there: 0.3 s of a 110 MB upload's blob writes, and a stall in whichever request
    or heartbeat happened to commit. Here commits only wake this thread; its PASSIVE checkpoint
    never blocks a reader or a writer.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def committed(self) -> None:
        """A commit left frames in the WAL; checkpoint them soon."""
        if self._thread is None or self._pid != os.getpid():  # a forked child has no thread
            with self._lock:
                if self._thread is None or self._pid != os.getpid():
                    self._pid = os.getpid()
                    self._thread = threading.Thread(
                        target=self._run, name="sqlite-checkpoint", daemon=True
                    )
                    self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        while not self._stop.is_set():
            self._wake.wait()
            self._stop.wait(CHECKPOINT_DELAY_SECONDS)
            self._wake.clear()
            try:
                connection = connection or sqlite3.connect(self.path, isolation_level=None)
                connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as exc:
                logger.warning("checkpointing the SQLite WAL failed (%s); trying again", exc)
                if connection is not None:
                    connection.close()
                    connection = None
                self._wake.set()
                self._stop.wait(1.0)
        if connection is not None:
            connection.close()

    def close(self) -> None:
        """Stop the thread once it has copied what was committed before."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._pid == os.getpid():
            self._thread.join(timeout=10)
        self._thread = None


class Database:
    """The process's engine and session factories: one for reads, one that writes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = make_engine(settings)
        # Sessions carry the settings, for what runs after their commit (removing blobs).
        info = {"settings": settings}
        self.read_sessions = sessionmaker(self.engine, expire_on_commit=False, info=info)
        self.write_sessions = sessionmaker(
            self.engine.execution_options(**WRITE), expire_on_commit=False, info=info
        )
        self._reader = threading.local()
        self._readers: list[Connection] = []
        self.checkpointer: WalCheckpointer | None = None
        if settings.is_sqlite and self.engine.url.database not in (None, "", ":memory:"):
            checkpointer = self.checkpointer = WalCheckpointer(self.engine.url.database)

            @event.listens_for(self.engine, "commit")
            def _on_commit(conn: Any) -> None:
                checkpointer.committed()

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Session]:
        """A short unit of work, committed on success: the worker's and the CLI's boundary."""
        factory = self.write_sessions if write else self.read_sessions
        with factory() as session, session.begin():
            yield session

    async def read(self, work: Callable[[Connection], T]) -> T:
        """Run a short read-only unit: on SQLite right here on the event loop, else in a thread.

        A SQLite point read takes about 0.1 ms and WAL never makes a reader wait for a writer,
        so a trip to a worker thread costs more than the read, and under load each trip's GIL
        hand-offs make the event loop wait behind busy threads. Postgres reads wait on the
        network, so they go to a worker thread.
        """
        if self.settings.is_sqlite:
            return self._read_on_own_connection(work)
        return await anyio.to_thread.run_sync(self._read_pooled, work)

    def _read_pooled(self, work: Callable[[Connection], T]) -> T:
        with self.engine.connect() as connection:
            return work(connection)

    def _read_on_own_connection(self, work: Callable[[Connection], T]) -> T:
        """The calling thread keeps one connection for its reads (a pool round costs a third of
        a point read); each read ends in a rollback, so no snapshot outlives it."""
        connection: Connection | None = getattr(self._reader, "connection", None)
        if connection is None:
            connection = self._reader.connection = self.engine.connect()
            self._readers.append(connection)
        try:
            result = work(connection)
        except BaseException:
            self._reader.connection = None
            self._readers.remove(connection)
            connection.close()  # whatever went wrong, the next read starts afresh
            raise
        connection.rollback()
        return result

    def dispose(self) -> None:
        for connection in list(self._readers):
            connection.close()
        self._readers.clear()
        self.engine.dispose()
        if self.checkpointer is not None:
            self.checkpointer.close()
