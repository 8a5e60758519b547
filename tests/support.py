"""Helpers shared by the tests and the benchmarks: polling with a deadline, free ports, and
throwaway Postgres databases. Plain functions, no pytest: bench/ imports them too."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import create_engine, text

T = TypeVar("T")

PG_ADMIN_URL = os.environ.get(
    "RIDGELINE_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def wait_for(
    predicate: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.05,
    message: str = "condition",
) -> T:
    """Poll until predicate() is truthy; the deadline, not a sleep, is what synchronises."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {message}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def create_pg_database(prefix: str = "ridgeline_test") -> str:
    """A new empty database on the admin server; its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        raise RuntimeError(
            f"Postgres is required and is not reachable at {PG_ADMIN_URL}: {exc}. Start it: "
            "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
        ) from exc
    finally:
        admin.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_pg_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
