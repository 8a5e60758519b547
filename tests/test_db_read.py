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


def read(db: Database, work):
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


def test_sqlite_reads_stay_on_the_loop_and_postgres_reads_leave_it(db: Database) -> None:
    """SQLite: the loop's own connection, reused, no transaction left open; Postgres: a thread."""
    seen: list[tuple[Connection, int]] = []

    def remember(connection: Connection) -> int:
        seen.append((connection, threading.get_ident()))
        return int(connection.execute(text("SELECT 1")).scalar_one())

    async def twice() -> list[int]:
        return [await db.read(remember), await db.read(remember)]

    assert asyncio.run(twice()) == [1, 1]
    loop_thread = threading.get_ident()  # asyncio.run runs the loop in this thread
    if db.settings.is_sqlite:
        assert [thread for _, thread in seen] == [loop_thread, loop_thread]
        assert seen[0][0] is seen[1][0]
        assert not seen[1][0].in_transaction()
    else:
        assert loop_thread not in [thread for _, thread in seen]


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
