"""Fixtures for the client tests: a real server and worker (SQLite), a client of a fresh tenant."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sklearn.datasets import load_breast_cancer
from typer.testing import CliRunner

from service.client import Client
from service.client.cli import app
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


@pytest.fixture
def run(server: Server, key: str) -> Callable[..., Any]:
    """Run the CLI in-process against the server, as the key's owner."""
    runner = CliRunner()
    env = {"RIDGELINE_URL": server.base_url, "RIDGELINE_API_KEY": key, "COLUMNS": "200"}

    def invoke(*args: str) -> Any:
        return runner.invoke(app, list(args), env=env)

    return invoke
