"""Fixtures for the client tests: a real server and worker (SQLite), a client of a fresh tenant."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sklearn.datasets import load_breast_cancer

from service.client import Client
from tests.conftest import Server


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The client only speaks HTTP, so its live tests run against the SQLite server alone (the
    server's own tests cover Postgres): drop the Postgres variants before any server starts."""
    here = Path(__file__).parent
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if item.path.is_relative_to(here) and params.get("backend", "sqlite") != "sqlite":
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def cancer_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("client-data") / "cancer.csv"
    load_breast_cancer(as_frame=True).frame.to_csv(path, index=False)
    return path


@pytest.fixture
def key(server: Server) -> str:
    return server.new_key()


@pytest.fixture
def client(server: Server, key: str) -> Iterator[Client]:
    with Client(server.base_url, key, max_retries=2, backoff_base=0.05) as rl:
        yield rl
