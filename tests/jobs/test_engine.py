"""Which engine a job runs on: the rules of choose_engine, and the 422 over HTTP."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from service.blobs.models import Blob
from service.config import Settings
from service.datasets.models import Dataset
from service.errors import InvalidInput
from service.jobs.engine import choose_engine, estimated_bytes, spark_uri
from service.training.spec import TrainingSpec
from tests.conftest import upload_tiny

MASTER: dict[str, Any] = {"spark_master": "local[2]"}


def _settings(**values: Any) -> Settings:
    return Settings.model_validate(values)


def _dataset(n_rows: int = 1000, store: str = "file:///data/blobs") -> Dataset:
    dataset = Dataset(
        id=uuid.uuid4(),
        n_rows=n_rows,
        columns=[
            {"name": "x", "dtype": "float", "n_unique": None, "n_missing": 0},
            {"name": "color", "dtype": "categorical", "n_unique": 4, "n_missing": 0},
            {"name": "y", "dtype": "integer", "n_unique": 2, "n_missing": 0},
        ],
    )
    dataset.blob = Blob(id=uuid.uuid4(), store=store, key="t/datasets/d/part-00000.parquet")
    return dataset


def _spec(**extra: Any) -> TrainingSpec:
    return TrainingSpec.model_validate({"target": "y", **extra})


def test_estimated_size_counts_one_hot_columns() -> None:
    # x (1) + color (4 categories) = 5 float64 values per row
    assert estimated_bytes(_dataset(1000), _spec()) == 1000 * 5 * 8
    assert estimated_bytes(_dataset(1000), _spec(features=["x"])) == 1000 * 8


def test_spark_uri_of_each_store() -> None:
    assert spark_uri(_dataset()) == "file:///data/blobs/t/datasets/d/part-00000.parquet"
    assert (spark_uri(_dataset(store="s3://bucket/pre")) or "").startswith("s3a://bucket/pre/t/")
    assert spark_uri(_dataset(store="database")) is None


def test_auto_runs_on_spark_only_over_the_threshold() -> None:
    low = _settings(**MASTER, spark_threshold_bytes=1000)
    decision = choose_engine(low, "auto", _spec(), _dataset())
    assert decision.engine == "spark"
    assert "RIDGELINE_SPARK_THRESHOLD_BYTES" in decision.reason
    high = _settings(**MASTER, spark_threshold_bytes=10**9)
    assert choose_engine(high, "auto", _spec(), _dataset()).engine == "local"
    # The child memory limit counts too when it is the lower one.
    tight = _settings(**MASTER, spark_threshold_bytes=10**12, child_memory_mb=1)
    over = choose_engine(tight, "auto", _spec(), _dataset(n_rows=100_000))
    assert over.engine == "spark" and "RIDGELINE_CHILD_MEMORY_MB" in over.reason


def test_auto_stays_local_and_says_why() -> None:
    no_master = choose_engine(_settings(spark_threshold_bytes=0), "auto", _spec(), _dataset())
    assert no_master.engine == "local" and "RIDGELINE_SPARK_MASTER" in no_master.reason
    in_db = choose_engine(
        _settings(**MASTER, spark_threshold_bytes=0), "auto", _spec(), _dataset(store="database")
    )
    assert in_db.engine == "local" and "database" in in_db.reason


@pytest.mark.parametrize(
    ("settings", "extra", "says"),
    [
        ({}, {}, "RIDGELINE_SPARK_MASTER"),
        (MASTER, {"model": {"kind": "mlp"}}, "'mlp' has no Spark engine"),
        (MASTER, {"preprocessing": {"polynomial_degree": 2}}, "polynomial_degree"),
    ],
)
def test_spark_that_cannot_run_is_refused(
    settings: dict[str, Any], extra: dict[str, Any], says: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        choose_engine(_settings(**settings), "spark", _spec(**extra), _dataset())
    assert says in caught.value.detail
    assert (caught.value.errors or [{}])[0].get("field") == "engine"


def test_local_is_always_local() -> None:
    decision = choose_engine(
        _settings(**MASTER, spark_threshold_bytes=0), "local", _spec(), _dataset()
    )
    assert decision.engine == "local" and "requested" in decision.reason


@pytest.mark.usefixtures("worker")
def test_spark_without_a_master_is_a_422_and_jobs_say_their_engine(api: httpx.Client) -> None:
    dataset_id = upload_tiny(api)
    refused = api.post(
        "/v1/jobs", json={"dataset_id": dataset_id, "target": "y", "engine": "spark"}
    )
    assert refused.status_code == 422, refused.text
    assert "RIDGELINE_SPARK_MASTER" in refused.json()["detail"]
    assert api.get("/v1/jobs").json()["items"] == []  # nothing half-stored
    queued = api.post("/v1/jobs", json={"dataset_id": dataset_id, "target": "y"})
    assert queued.status_code == 202, queued.text
    job = queued.json()
    assert job["engine"] == "local"
    assert "auto" in job["engine_reason"] and "RIDGELINE_SPARK_MASTER" in job["engine_reason"]
    bad = api.post("/v1/jobs", json={"dataset_id": dataset_id, "target": "y", "engine": "gpu"})
    assert bad.status_code == 422
