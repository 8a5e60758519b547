"""Alembic, driven from code: upgrade to head, and tell whether a database is at head."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from service.db import ensure_sqlite_file

if TYPE_CHECKING:
    from service.db import Database

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database_url: str) -> Config:
    if not (MIGRATIONS_DIR / "env.py").exists():
        raise RuntimeError(
            f"migrations not found at {MIGRATIONS_DIR}; install Ridgeline from its source tree "
            "(pip install -e .)"
        )
    config = Config()
    config.set_main_option("script_location", MIGRATIONS_DIR.as_posix())
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    ensure_sqlite_file(database_url)
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)


def head_revision(database_url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def schema_status(engine: Engine, database_url: str) -> tuple[str | None, str | None]:
    """(current, head): the schema is ready when they are equal."""
    return current_revision(engine), head_revision(database_url)


class SchemaNotAtHead(RuntimeError):
    """The database schema is behind the code; `ridgeline migrate` brings it to head."""


def check_schema(db: Database) -> None:
    """Refuse to serve or work on a schema other than this code's head."""
    current, head = schema_status(db.engine, db.settings.database_url)
    if current != head:
        raise SchemaNotAtHead(
            f"the database schema is at {current or 'nothing'} but this Ridgeline needs {head}; "
            "run `ridgeline migrate` first"
        )
