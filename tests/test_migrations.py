"""Migrations on both backends: up, down, up again, and models that match them exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from service.migrate import downgrade, head_revision, upgrade
from service.models import metadata
from tests.conftest import BACKENDS, dispose_database_url, new_database_url


@pytest.fixture(params=BACKENDS)
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path):
    url = new_database_url(request.param, tmp_path)
    yield url
    dispose_database_url(url)


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(fresh_url: str) -> None:
    upgrade(fresh_url)
    assert _tables(fresh_url) == set(metadata.tables)
    downgrade(fresh_url, "base")
    assert _tables(fresh_url) == set()
    upgrade(fresh_url)
    assert _tables(fresh_url) == set(metadata.tables)
    engine = create_engine(fresh_url)
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == head_revision(fresh_url)
    engine.dispose()


def test_models_match_migrations(fresh_url: str) -> None:
    upgrade(fresh_url)
    engine = create_engine(fresh_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, metadata)
    engine.dispose()
    assert diff == []


def test_a_new_sqlite_file_gets_large_pages_and_an_old_one_keeps_its_own(tmp_path: Path) -> None:
    import sqlite3

    from service.db import SQLITE_PAGE_SIZE

    def page_size(path: Path) -> int:
        connection = sqlite3.connect(path)
        try:
            return int(connection.execute("PRAGMA page_size").fetchone()[0])
        finally:
            connection.close()

    new = tmp_path / "nested" / "new.db"
    upgrade(f"sqlite:///{new}")
    assert page_size(new) == SQLITE_PAGE_SIZE

    old = tmp_path / "old.db"
    sqlite3.connect(old).execute("CREATE TABLE made_before (id INTEGER)").connection.close()
    upgrade(f"sqlite:///{old}")
    assert page_size(old) == 4096
    assert "made_before" in _tables(f"sqlite:///{old}")


def test_sqlite_commits_leave_the_checkpoint_to_a_thread_of_its_own(tmp_path: Path) -> None:
    """No commit copies the WAL into the file itself (two fsyncs inside a request); the
    checkpointer's thread does, soon after."""
    import sqlite3

    from sqlalchemy import text

    from service.config import Settings
    from service.db import Database
    from tests.support import wait_for

    path = tmp_path / "checkpoint.db"
    db = Database(Settings(database_url=f"sqlite:///{path}", data_dir=tmp_path / "data"))
    try:
        with db.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
        with db.transaction() as session:
            session.execute(text("CREATE TABLE payload (data BLOB)"))
        before = path.stat().st_size
        for _ in range(4):  # 8 MiB: SQLite's own checkpoint would have run at 1000 pages
            with db.transaction() as session:
                session.execute(text("INSERT INTO payload VALUES (:d)"), {"d": bytes(2 << 20)})
        wait_for(
            lambda: path.stat().st_size >= before + (8 << 20),
            timeout=30,
            message="the WAL to be copied into the database file",
        )
        reader = sqlite3.connect(path)
        try:
            assert reader.execute("SELECT count(*) FROM payload").fetchone()[0] == 4
        finally:
            reader.close()
    finally:
        db.dispose()
