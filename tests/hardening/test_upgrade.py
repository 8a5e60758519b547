"""Upgrades keep data: for every revision, on both backends, a database at that revision is
filled with representative rows, upgraded to head, and must still hold every row and value,
readable by the app.

Rows are written with SQL Core against tables reflected from the live database (the models of
today may have columns an old revision lacks). Revisions are discovered from the migrations
folder, so a new migration is covered without touching this file; a new table gets a generic
row (and a factory below when the app is to read it meaningfully).
"""

from __future__ import annotations

import hashlib
import uuid
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Engine,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    Uuid,
    create_engine,
    insert,
    select,
)

from service.config import Settings
from service.datasets.ingest import ingest
from service.datasets.service import get_dataset
from service.db import Database
from service.main import create_app
from service.migrate import alembic_config, upgrade
from tests.conftest import BACKENDS, TINY_CSV, dispose_database_url, new_database_url

with warnings.catch_warnings():  # starlette's notice that it prefers httpx2: not ours to act on
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient  # runs the app's lifespan, unlike ASGITransport


def _revisions() -> list[str]:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert len(script.get_heads()) == 1, f"more than one head: {script.get_heads()}"
    return [rev.revision for rev in reversed(list(script.walk_revisions("base", "heads")))]


REVISIONS = _revisions()

TENANT = "t-upgrade"
KEY = "rl_upgrade-test-key-not-a-secret"
T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


class Ids:
    """Stable ids for the rows of one test, so the app can be asked for them by id."""

    def __init__(self) -> None:
        self.key = uuid.uuid4()
        self.data_blob = uuid.uuid4()
        self.artifact_blob = uuid.uuid4()
        self.dataset = uuid.uuid4()
        self.job = uuid.uuid4()
        self.sweep = uuid.uuid4()
        self.model = uuid.uuid4()
        self.version = uuid.uuid4()


def _tiny_parquet(tmp_path: Path) -> tuple[bytes, list[dict[str, Any]]]:
    src = tmp_path / "tiny.csv"
    src.write_bytes(TINY_CSV)
    dest = tmp_path / "tiny.parquet"
    result = ingest(src, dest, filename="tiny.csv")
    return dest.read_bytes(), [column.to_dict() for column in result.columns]


MODEL = "upgrade-model"
ARTIFACT = b"not a real model: only its bytes and sha256 must survive" * 10


def _factories(ids: Ids, parquet: bytes, columns: list[dict[str, Any]]) -> dict[str, Any]:
    """Representative rows per table, as the service writes them (values for columns an old
    revision lacks are simply dropped)."""
    half = len(parquet) // 2 + 1
    spec = {
        "target": "y",
        "task": "auto",
        "model": {"kind": "linear"},
        "regularization": {"penalty": "l2", "strength": 0.1},
        "seed": 0,
    }
    final = {"train": {"accuracy": 0.6}, "validation": {"accuracy": 0.5}}
    return {
        "api_keys": [
            {
                "id": ids.key,
                "name": "upgrade-key",
                "tenant_id": TENANT,
                "key_hash": hashlib.sha256(KEY.encode()).hexdigest(),
                "prefix": KEY[:8],
                "created_at": T0,
                "revoked_at": None,
            }
        ],
        "blobs": [
            {
                "id": ids.data_blob,
                "tenant_id": TENANT,
                "size_bytes": len(parquet),
                "sha256": hashlib.sha256(parquet).hexdigest(),
                "chunk_bytes": half,
                "n_chunks": 2,
                "complete": True,
                "created_at": T0,
            },
            {
                "id": ids.artifact_blob,
                "tenant_id": TENANT,
                "size_bytes": len(ARTIFACT),
                "sha256": hashlib.sha256(ARTIFACT).hexdigest(),
                "chunk_bytes": 1 << 20,
                "n_chunks": 1,
                "complete": True,
                "created_at": T0,
            },
        ],
        "blob_chunks": [
            {"blob_id": ids.data_blob, "seq": 0, "data": parquet[:half]},
            {"blob_id": ids.data_blob, "seq": 1, "data": parquet[half:]},
            {"blob_id": ids.artifact_blob, "seq": 0, "data": ARTIFACT},
        ],
        "datasets": [
            {
                "id": ids.dataset,
                "tenant_id": TENANT,
                "name": "tiny.csv",
                "format": "csv",
                "size_bytes": len(TINY_CSV),
                "sha256": hashlib.sha256(TINY_CSV).hexdigest(),
                "n_rows": 40,
                "n_columns": 2,
                "columns": columns,
                "delimiter": ",",
                "blob_id": ids.data_blob,
                "stored_bytes": len(parquet),
                "created_at": T0,
            }
        ],
        "sweeps": [
            {
                "id": ids.sweep,
                "tenant_id": TENANT,
                "name": "upgrade-sweep",
                "dataset_id": ids.dataset,
                "status": "succeeded",
                "spec": {"dataset_id": str(ids.dataset), **spec},
                "task": "classification",
                "metric": "accuracy",
                "lower_is_better": False,
                "n_configs": 1,
                "n_jobs": 2,
                "progress": 1.0,
                "leaderboard": [
                    {
                        "penalty": "l2",
                        "strength": 0.1,
                        "l1_ratio": None,
                        "dropout": None,
                        "metric": "accuracy",
                        "mean": 0.5,
                        "std": 0.0,
                        "train_mean": 0.6,
                        "n_folds": 2,
                    }
                ],
                "best": {"penalty": "l2", "strength": 0.1, "mean": 0.5},
                "failed_trials": [],
                "refit_job_id": None,
                "error": None,
                "created_at": T0,
                "finished_at": T0 + timedelta(seconds=5),
            }
        ],
        "jobs": [
            {
                "id": ids.job,
                "tenant_id": TENANT,
                "name": "upgrade-job",
                "dataset_id": ids.dataset,
                "status": "succeeded",
                "priority": 0,
                "spec": {"dataset_id": str(ids.dataset), **spec},
                "trainer": "default",
                "task": "classification",
                "task_reason": "the target has 2 integer values",
                "native_params": {"estimator": "LogisticRegression", "C": 0.5},
                "max_seconds": 3600,
                "attempt": 1,
                "max_attempts": 3,
                "progress": 1.0,
                "error": None,
                "cancel_requested": False,
                "lease_owner": None,
                "lease_expires_at": None,
                "metrics": {"final": final, "generalization_gap": {"accuracy": 0.1}},
                "versions": {"scikit-learn": "1.x"},
                "artifact_blob_id": ids.artifact_blob,
                "artifact_sha256": hashlib.sha256(ARTIFACT).hexdigest(),
                "artifact_kind": "skops",
                "created_at": T0,
                "started_at": T0 + timedelta(seconds=1),
                "finished_at": T0 + timedelta(seconds=2),
            }
        ],
        "job_attempts": [
            {
                "job_id": ids.job,
                "attempt": 1,
                "worker_id": "host:1:abc",
                "started_at": T0 + timedelta(seconds=1),
                "finished_at": T0 + timedelta(seconds=2),
                "outcome": "succeeded",
                "error": None,
            }
        ],
        "job_epochs": [
            {
                "job_id": ids.job,
                "attempt": 1,
                "epoch": epoch,
                "train_loss": 1.0 / epoch,
                "val_loss": 1.5 / epoch,
                "train_metric": 0.5,
                "val_metric": 0.4,
                "created_at": T0,
            }
            for epoch in (1, 2, 3)
        ],
        "job_events": [
            {
                "job_id": ids.job,
                "attempt": attempt,
                "kind": "status",
                "data": {"status": status},
                "created_at": T0,
            }
            for attempt, status in ((0, "queued"), (1, "running"), (1, "succeeded"))
        ],
        "idempotency_keys": [
            {
                "tenant_id": TENANT,
                "key": "idem-1",
                "request_hash": "0" * 64,
                "job_id": ids.job,
                "created_at": T0,
            }
        ],
        "job_metrics": [
            {
                "job_id": ids.job,
                "tenant_id": TENANT,
                "split": split,
                "name": "accuracy",
                "value": figures["accuracy"],
            }
            for split, figures in final.items()
        ],
        "registered_models": [
            {
                "id": ids.model,
                "tenant_id": TENANT,
                "name": MODEL,
                "description": "kept across upgrades",
                "tags": {"team": "upgrade"},
                "last_version": 1,
                "created_at": T0,
                "updated_at": T0,
            }
        ],
        "model_versions": [
            {
                "id": ids.version,
                "model_id": ids.model,
                "version": 1,
                "job_id": ids.job,
                "description": None,
                "artifact_sha256": hashlib.sha256(ARTIFACT).hexdigest(),
                "artifact_kind": "skops",
                "dataset": {"id": str(ids.dataset), "name": "tiny.csv", "n_rows": 40},
                "spec": {"dataset_id": str(ids.dataset), **spec},
                "task": "classification",
                "native_params": {"estimator": "LogisticRegression", "C": 0.5},
                "metrics": {"final": final},
                "library_versions": {"sklearn": "1.x"},
                "created_by": "upgrade-key",
                "created_at": T0,
            }
        ],
        "model_aliases": [
            {
                "model_id": ids.model,
                "alias": "champion",
                "version": 1,
                "updated_at": T0,
                "updated_by": "upgrade-key",
            }
        ],
        "model_alias_events": [
            {
                "model_id": ids.model,
                "alias": "champion",
                "from_version": None,
                "to_version": 1,
                "key_name": "upgrade-key",
                "created_at": T0,
            }
        ],
    }


def _generic_value(column: Any, row_number: int) -> Any:
    """A plain value for a NOT NULL column no factory knows (a column or table added later)."""
    kind = column.type
    if isinstance(kind, Uuid) or "uuid" in str(kind).lower():
        return uuid.uuid4()
    if isinstance(kind, Boolean):
        return False
    if isinstance(kind, (Integer, BigInteger)):
        return row_number
    if isinstance(kind, (Float, Numeric)):
        return 0.5
    if isinstance(kind, (DateTime, Date)):
        return T0
    if isinstance(kind, JSON):
        return {}
    if isinstance(kind, LargeBinary):
        return b"\x00\x01"
    if isinstance(kind, (String, Text)):
        length = getattr(kind, "length", None) or 32
        return f"v{row_number}"[:length]
    raise AssertionError(f"no generic value for {column.table.name}.{column.name} ({kind})")


def _to_storage(dialect: str, column: Any, value: Any) -> Any:
    """What the service's own types store, written through a reflected (plain) column."""
    if value is None:
        return None
    if dialect == "sqlite":
        if isinstance(value, uuid.UUID):
            return value.hex  # sa.Uuid on SQLite: CHAR(32), no dashes
        if isinstance(value, datetime):
            return value.astimezone(UTC).replace(tzinfo=None)  # UTCDateTime: naive UTC
    return value


def _fill(engine: Engine, factories: dict[str, Any]) -> dict[str, Table]:
    """Insert the factory rows (and a generic row into tables no factory knows) into the
    tables that exist now; returns the reflected tables."""
    metadata = MetaData()
    metadata.reflect(engine)
    tables = {name: t for name, t in metadata.tables.items() if name != "alembic_version"}
    order = [name for name in factories if name in tables]
    order += sorted(set(tables) - set(order))
    dialect = engine.dialect.name
    with engine.begin() as conn:
        for name in order:
            table = tables[name]
            rows = factories.get(name) or [{}]
            for number, values in enumerate(rows, start=1):
                row = {k: v for k, v in values.items() if k in table.c}
                for column in table.columns:
                    needs_value = (
                        column.name not in row
                        and not column.nullable
                        and column.server_default is None
                        and not (column.primary_key and column.autoincrement is True)
                        and not (
                            column.primary_key
                            and isinstance(column.type, Integer)
                            and len(table.primary_key.columns) == 1
                        )
                    )
                    if needs_value:
                        row[column.name] = _generic_value(column, number)
                row = {k: _to_storage(dialect, table.c[k], v) for k, v in row.items()}
                conn.execute(insert(table).values(**row))
    return tables


def _snapshot(engine: Engine, columns: dict[str, list[str]]) -> dict[str, set[tuple[str, ...]]]:
    """Every row of the given tables over the given columns, read from the live database."""
    metadata = MetaData()
    metadata.reflect(engine)
    out: dict[str, set[tuple[str, ...]]] = {}
    with engine.connect() as conn:
        for name, names in columns.items():
            table = metadata.tables[name]
            rows = conn.execute(select(*[table.c[c] for c in names])).all()
            out[name] = {tuple(repr(v) for v in row) for row in rows}
    return out


@pytest.fixture(params=BACKENDS)
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    url = new_database_url(request.param, tmp_path)
    yield url
    dispose_database_url(url)


def test_revisions_are_discovered() -> None:
    assert REVISIONS[0] == "0001" and len(REVISIONS) >= 4, REVISIONS


@pytest.mark.parametrize("revision", REVISIONS)
def test_upgrade_from_revision_keeps_data(fresh_url: str, revision: str, tmp_path: Path) -> None:
    upgrade(fresh_url, revision)
    parquet, columns = _tiny_parquet(tmp_path)
    ids = Ids()
    engine = create_engine(fresh_url)
    try:
        tables = _fill(engine, _factories(ids, parquet, columns))
        existing = {name: sorted(c.name for c in table.columns) for name, table in tables.items()}
        before = _snapshot(engine, existing)
        upgrade(fresh_url, "head")
        # The same columns, read back from the upgraded tables: every row, every value.
        after = _snapshot(engine, existing)
    finally:
        engine.dispose()
    assert set(after) == set(before)
    for name in before:
        assert len(after[name]) == len(before[name]), (name, revision)
        assert after[name] == before[name], (name, revision, before[name] ^ after[name])
    _the_app_reads_it(fresh_url, ids, parquet, set(tables), tmp_path)


def _the_app_reads_it(url: str, ids: Ids, parquet: bytes, existed: set[str], tmp: Path) -> None:
    settings = Settings(database_url=url, data_dir=tmp / "data")
    database = Database(settings)
    try:
        with database.transaction(write=False) as session:
            dataset = get_dataset(session, tenant_id=TENANT, dataset_id=ids.dataset)
            assert (dataset.n_rows, dataset.blob_id) == (40, ids.data_blob)
    finally:
        database.dispose()
    checks: list[tuple[str, Callable[[Any], None]]] = [
        ("/v1/datasets", lambda r: _ids_in(r, ids.dataset)),
        (f"/v1/datasets/{ids.dataset}", lambda r: _eq(r.json()["name"], "tiny.csv")),
        (f"/v1/datasets/{ids.dataset}/preview?limit=3", lambda r: _preview(r)),
        (f"/v1/datasets/{ids.dataset}/download?format=parquet", lambda r: _eq(r.content, parquet)),
    ]
    if "jobs" in existed:
        checks += [
            ("/v1/jobs", lambda r: _ids_in(r, ids.job)),
            (f"/v1/jobs/{ids.job}", lambda r: _job(r)),
            (f"/v1/jobs/{ids.job}/metrics", lambda r: _eq(len(r.json()["history"]), 3)),
            (f"/v1/jobs/{ids.job}/artifact", lambda r: _eq(r.content, ARTIFACT)),
        ]
    if "sweeps" in existed:
        checks += [
            ("/v1/sweeps", lambda r: _ids_in(r, ids.sweep)),
            (f"/v1/sweeps/{ids.sweep}", lambda r: _eq(r.json()["status"], "succeeded")),
        ]
    if "jobs" in existed:
        # Written by the upgrade from the job's metrics when job_metrics came after the job.
        checks.append(("/v1/jobs?order_by=validation.accuracy", lambda r: _ids_in(r, ids.job)))
    if "registered_models" in existed:
        checks += [
            ("/v1/models?tag=team:upgrade", lambda r: _eq(r.json()["items"][0]["name"], MODEL)),
            (f"/v1/models/{MODEL}/versions/1", lambda r: _eq(r.json()["job_id"], str(ids.job))),
            (f"/v1/models/{MODEL}/aliases", lambda r: _eq(len(r.json()["history"]), 1)),
            (f"/v1/models/{MODEL}@champion/artifact", lambda r: _eq(r.content, ARTIFACT)),
        ]
    with TestClient(create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {KEY}"
        for path, check in checks:
            response = client.get(path)
            assert response.status_code == 200, (path, response.text[:500])
            check(response)


def _eq(actual: Any, expected: Any) -> None:
    assert actual == expected, (actual, expected)


def _ids_in(response: Any, wanted: uuid.UUID) -> None:
    assert str(wanted) in [item["id"] for item in response.json()["items"]], response.text[:500]


def _preview(response: Any) -> None:
    assert response.json()["rows"] == [{"x": 0, "y": 0}, {"x": 1, "y": 1}, {"x": 2, "y": 0}]


def _job(response: Any) -> None:
    job = response.json()
    assert job["status"] == "succeeded", job
    assert [a["attempt"] for a in job["attempts"]] == [1], job
    assert job["artifact"]["sha256"] == hashlib.sha256(ARTIFACT).hexdigest(), job
