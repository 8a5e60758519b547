"""Database.read, the status poll's path: no snapshot outlives a read, a failure starts afresh."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest
from sqlalchemy import Connection, delete, text

from service.auth.models import ApiKey
from service.auth.service import create_key
from service.db import Database


def read(db: Database, work):  # type: ignore[no-untyped-def]
    return asyncio.run(db.read(work))


def test_each_read_sees_what_was_committed_before_it(db: Database) -> None:
    name = f"read-{uuid.uuid4().hex[:8]}"
    count = text("SELECT count(*) FROM api_keys WHERE name = :name").bindparams(name=name)
    assert read(db, lambda c: c.execute(count).scalar()) == 0
    with db.transaction() as session:
        create_key(session, name=name)
    try:
        assert read(db, lambda c: c.execute(count).scalar()) == 1
    finally:
        with db.transaction() as session:
            session.execute(delete(ApiKey).where(ApiKey.name == name))


def test_sqlite_reads_reuse_one_connection_and_leave_no_transaction_open(db: Database) -> None:
    if not db.settings.is_sqlite:
        pytest.skip("Postgres reads go to a worker thread on a pooled connection")
    seen: list[Connection] = []

    def remember(connection: Connection) -> int:
        seen.append(connection)
        return int(connection.execute(text("SELECT 1")).scalar_one())

    async def twice() -> list[int]:
        return [await db.read(remember), await db.read(remember)]

    assert asyncio.run(twice()) == [1, 1]
    assert seen[0] is seen[1]
    assert not seen[1].in_transaction()


def test_postgres_reads_run_off_the_event_loop(db: Database) -> None:
    if db.settings.is_sqlite:
        pytest.skip("SQLite reads run on the event loop")
    loop_thread = threading.get_ident()
    ran_on = read(db, lambda c: (c.execute(text("SELECT 1")), threading.get_ident())[1])
    assert ran_on != loop_thread


def test_a_failed_read_closes_its_connection_and_the_next_one_works(db: Database) -> None:
    used: list[Connection] = []

    def broken(connection: Connection) -> None:
        used.append(connection)
        connection.execute(text("SELECT * FROM no_such_table"))

    with pytest.raises(Exception, match="no_such_table"):
        read(db, broken)
    assert read(db, lambda c: c.execute(text("SELECT 2")).scalar_one()) == 2
    if db.settings.is_sqlite:
        assert used[0].closed
