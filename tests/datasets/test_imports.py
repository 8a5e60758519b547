"""Datasets registered by URI from a shared volume (file://), over HTTP against a real server
and worker: copy and reference, progress and events, data changed after registration, and
bad input refused with a 4xx that says what and where, with nothing stored."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from service.config import Settings
from service.datasets import imports
from service.errors import InvalidInput
from tests.conftest import (
    Server,
    start_server,
    stop_process,
    wait_for,
    wait_for_job,
)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lake")


@pytest.fixture(scope="module")
def import_server(
    server: Server,
    worker: subprocess.Popen[str],
    lake: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    """An API process allowed to import from `lake` only, on the shared database (the session
    worker runs the import jobs)."""
    srv = start_server(
        server.database_url,
        tmp_path_factory.mktemp("import-server"),
        RIDGELINE_IMPORT_ALLOWED_ROOTS=json.dumps([f"file://{lake}"]),
    )
    yield srv
    stop_process(srv.process)


# The file:// imports run on the embedded default's database alone, as they always have.
ON_SQLITE = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


@pytest.fixture
def client(import_server: Server) -> Iterator[httpx.Client]:
    with import_server.client(import_server.new_key()) as api:
        yield api


def _table(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    y = (x1 - x2 + 0.3 * rng.normal(size=n) > 0).astype(np.int64)
    return pa.table({"x1": x1, "x2": x2, "color": ["red", "blue"] * (n // 2), "y": y})


def _parts(folder: Path, kind: str, n_parts: int = 3, rows: int = 200) -> Path:
    folder.mkdir(parents=True)
    for i in range(n_parts):
        table = _table(rows, i)
        if kind == "parquet":
            pq.write_table(table, folder / f"part-{i:05d}.parquet")
        else:
            pa_csv.write_csv(table, folder / f"part-{i:05d}.csv")
    (folder / "_SUCCESS").write_bytes(b"")
    return folder


def _import(client: httpx.Client, **body: Any) -> httpx.Response:
    return client.post("/v1/datasets", json=body)


def _wait_dataset(client: httpx.Client, dataset_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        dataset = client.get(f"/v1/datasets/{dataset_id}").json()
        return dataset if dataset["status"] != "importing" else None

    return wait_for(done, timeout=120, interval=0.1, message="the import to end")


def _count(client: httpx.Client) -> int:
    return len(client.get("/v1/datasets").json()["items"])


@ON_SQLITE
def test_copy_import_of_csv_parts(client: httpx.Client, lake: Path) -> None:
    folder = _parts(lake / f"csv-{uuid.uuid4().hex[:6]}", "csv")
    response = _import(client, uri=f"file://{folder}", name="sales")
    assert response.status_code == 202, response.text
    dataset = response.json()
    assert response.headers["Location"] == f"/v1/datasets/{dataset['id']}"
    assert (dataset["status"], dataset["mode"], dataset["format"]) == ("importing", "copy", "csv")
    ready = _wait_dataset(client, dataset["id"])
    assert ready["status"] == "ready", ready
    assert (ready["n_rows"], ready["n_columns"]) == (600, 4)
    assert {c["name"]: c["dtype"] for c in ready["columns"]} == {
        "x1": "float",
        "x2": "float",
        "color": "categorical",
        "y": "integer",
    }
    rows = client.get(f"/v1/datasets/{dataset['id']}/preview?limit=2").json()["rows"]
    assert len(rows) == 2 and set(rows[0]) == {"x1", "x2", "color", "y"}
    job = client.get(f"/v1/jobs/{ready['import_job_id']}").json()
    assert (job["status"], job["progress"], job["task"]) == ("succeeded", 1.0, "import")
    with client.stream("GET", f"/v1/jobs/{ready['import_job_id']}/events") as events:
        text = "".join(events.iter_text())
    assert "event: progress" in text and '"status": "succeeded"' in text


@ON_SQLITE
def test_reference_import_trains_and_refuses_changed_data(client: httpx.Client, lake: Path) -> None:
    folder = _parts(lake / f"pq-{uuid.uuid4().hex[:6]}", "parquet")
    response = _import(client, uri=f"file://{folder}/", mode="reference")
    assert response.status_code == 202, response.text
    ready = _wait_dataset(client, response.json()["id"])
    assert ready["status"] == "ready", ready
    assert ready["mode"] == "reference" and ready["n_rows"] == 600
    assert ready["uri"] == f"file://{folder}/"
    assert ready["stored_bytes"] == 0
    spec = {
        "dataset_id": ready["id"],
        "target": "y",
        "regularization": {"penalty": "l1", "strength": 0.01},
    }
    job = wait_for_job(client, client.post("/v1/jobs", json=spec).json()["id"])
    assert job["status"] == "succeeded", job
    # The part is rewritten: same name, new content. A job must not train on it.
    pq.write_table(_table(200, 99), folder / "part-00001.parquet")
    failed = wait_for_job(client, client.post("/v1/jobs", json=spec).json()["id"])
    assert failed["status"] == "failed"
    assert "dataset changed since registration" in failed["error"]
    assert "part-00001.parquet" in failed["error"]
    assert failed["summary"] is None and failed["artifact"] is None
    assert client.get(f"/v1/jobs/{failed['id']}/metrics").json().get("final") is None
    # Deleting a referenced dataset never touches the data it refers to.
    assert client.delete(f"/v1/datasets/{ready['id']}").status_code == 204
    assert sorted(p.name for p in folder.glob("*.parquet")) == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]


@ON_SQLITE
def test_a_bad_row_is_named_by_part_and_row(client: httpx.Client, lake: Path) -> None:
    folder = _parts(lake / f"bad-{uuid.uuid4().hex[:6]}", "csv", n_parts=2, rows=4)
    with (folder / "part-00001.csv").open("a") as out:
        out.write("1.0,2.0\n")  # a row with 2 fields where the header has 4
    response = _import(client, uri=f"file://{folder}")
    assert response.status_code == 202, response.text
    failed = _wait_dataset(client, response.json()["id"])
    assert failed["status"] == "failed"
    assert "row 6 of part" in failed["error"] and "part-00001.csv" in failed["error"]
    assert "2 fields but the header has 4" in failed["error"]
    spec = {"dataset_id": failed["id"], "target": "y"}
    refused = client.post("/v1/jobs", json=spec)
    assert refused.status_code == 422 and "failed" in refused.json()["detail"]


@ON_SQLITE
def test_bad_requests_are_4xx_and_store_nothing(client: httpx.Client, lake: Path) -> None:
    clash = lake / f"clash-{uuid.uuid4().hex[:6]}"
    clash.mkdir()
    pq.write_table(pa.table({"a": [1, 2], "b": ["x", "y"]}), clash / "p0.parquet")
    pq.write_table(pa.table({"a": ["1", "2"], "b": ["x", "y"]}), clash / "p1.parquet")
    empty = lake / f"empty-{uuid.uuid4().hex[:6]}"
    empty.mkdir()
    (empty / "_SUCCESS").write_bytes(b"")
    before = _count(client)
    cases = [
        ({"uri": "http://example.com/data.csv"}, "neither s3://"),
        ({"uri": "file:///etc/passwd"}, "RIDGELINE_IMPORT_ALLOWED_ROOTS"),
        ({"uri": f"file://{lake}/../outside"}, "not under a location"),
        ({"uri": f"file://{lake}/missing.parquet"}, "nothing at"),
        ({"uri": f"file://{empty}"}, "holds no data"),
        ({"uri": f"file://{clash}"}, "p1.parquet, column 'a'"),
        ({"uri": f"file://{lake}", "mode": "move"}, "mode"),
    ]
    for body, expected in cases:
        response = _import(client, **body)
        assert response.status_code == 422, (body, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert expected in response.json()["detail"], (body, response.json())
    assert _count(client) == before


def test_the_blob_stores_own_prefix_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "store"
    settings = Settings(blob_store=f"file://{store}", import_allowed_roots=[f"file://{tmp_path}"])
    (store / "t").mkdir(parents=True)
    pq.write_table(pa.table({"a": [1]}), store / "t" / "x.parquet")
    for uri in (f"file://{store}/t/x.parquet", f"file://{tmp_path}"):
        with pytest.raises(InvalidInput, match="blob store's own prefix"):
            imports.resolve(settings, uri=uri, format="auto")
