"""End to end on a real S3-compatible server (SeaweedFS): datasets by reference on s3, the s3
blob store, `ridgeline blobs migrate` and `gc`, and the store going away mid-work."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import obstore
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from service.migrate import upgrade
from tests.conftest import (
    WORKER_ENV,
    Server,
    dispose_database_url,
    new_database_url,
    run_cli,
    start_server,
    start_worker,
    stop_process,
    wait_for,
    wait_for_job,
)
from tests.seaweed import SeaweedS3

pytestmark = pytest.mark.s3


def _table(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = (x[:, 0] - x[:, 1] + 0.3 * rng.normal(size=n) > 0).astype(np.int64)
    return pa.table({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "y": y})


def _put_parquet(store: Any, key: str, table: pa.Table) -> None:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    obstore.put(store, key, sink.getvalue())


def _keys(store: Any, prefix: str) -> list[str]:
    return sorted(meta["path"] for batch in obstore.list(store, prefix) for meta in batch)


def _wait_dataset(client: httpx.Client, dataset_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        dataset = client.get(f"/v1/datasets/{dataset_id}").json()
        return dataset if dataset["status"] != "importing" else None

    return wait_for(done, timeout=120, interval=0.1, message="the import to end")


@pytest.fixture(scope="module")
def s3_server(
    seaweed: SeaweedS3, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, str]]:
    """API and worker with the s3 blob store, allowed to import from s3://lake/ only."""
    work = tmp_path_factory.mktemp("s3-server")
    url = new_database_url("postgres", work)
    upgrade(url)
    store = f"s3://ridgeline/store-{uuid.uuid4().hex[:6]}"
    server = start_server(
        url,
        work,
        worker=True,
        RIDGELINE_DATA_DIR=str(work / "data"),
        RIDGELINE_BLOB_STORE=store,
        RIDGELINE_IMPORT_ALLOWED_S3_PREFIXES=json.dumps(["s3://lake/", "s3://private/"]),
        **seaweed.service_env(),
        **WORKER_ENV,
    )
    yield server, store
    stop_process(server.process)
    dispose_database_url(url)


def test_reference_prefix_trains_l1_and_mlp_predicts_and_downloads(
    seaweed: SeaweedS3, s3_server: tuple[Server, str]
) -> None:
    server, store_uri = s3_server
    lake = seaweed.admin_store("lake")
    prefix = f"ref-{uuid.uuid4().hex[:6]}"
    for i in range(3):
        _put_parquet(lake, f"{prefix}/part-{i:05d}.parquet", _table(300, i))
    obstore.put(lake, f"{prefix}/_SUCCESS", b"")
    key = server.new_key()
    with server.client(key) as client:
        response = client.post(
            "/v1/datasets", json={"uri": f"s3://lake/{prefix}/", "mode": "reference"}
        )
        assert response.status_code == 202, response.text
        dataset = _wait_dataset(client, response.json()["id"])
        assert dataset["status"] == "ready", dataset
        assert (dataset["n_rows"], dataset["uri"]) == (900, f"s3://lake/{prefix}/")
        jobs = {}
        for name, model in (("l1", {"kind": "linear"}), ("mlp", {"kind": "mlp", "epochs": 5})):
            spec = {
                "dataset_id": dataset["id"],
                "target": "y",
                "model": model,
                "regularization": {"penalty": "l1", "strength": 0.001},
            }
            jobs[name] = wait_for_job(client, client.post("/v1/jobs", json=spec).json()["id"])
            assert jobs[name]["status"] == "succeeded", jobs[name]
        predicted = client.post(
            f"/v1/jobs/{jobs['l1']['id']}/predict", json={"rows": [{"a": 1.0, "b": -1.0, "c": 0}]}
        )
        assert predicted.status_code == 200, predicted.text
        assert predicted.json()["predictions"] == [1]
        artifact = client.get(f"/v1/jobs/{jobs['mlp']['id']}/artifact")
        assert artifact.status_code == 200
        assert artifact.headers["X-Artifact-SHA256"] == jobs["mlp"]["artifact"]["sha256"]
    # The artifacts lie beside the datasets in the store, under the tenant's jobs/.
    own = seaweed.admin_store("ridgeline")
    stored = _keys(own, store_uri.removeprefix("s3://ridgeline/") + "/")
    assert any(f"/jobs/{jobs['mlp']['id']}/artifact." in k for k in stored), stored
    # Nothing of the referenced source was copied.
    assert not any("/datasets/" in k and dataset["id"] in k for k in stored)


def test_upload_to_the_s3_store_is_plain_parquet(
    seaweed: SeaweedS3, s3_server: tuple[Server, str]
) -> None:
    server, store_uri = s3_server
    sink = io.BytesIO()
    pa_csv.write_csv(_table(500, 7), sink)
    with server.client(server.new_key()) as client:
        response = client.post("/v1/datasets", files={"file": ("d.csv", sink.getvalue())})
        assert response.status_code == 201, response.text
        dataset = response.json()
        assert dataset["uri"].startswith(store_uri + "/") and dataset["uri"].endswith(
            f"/datasets/{dataset['id']}/"
        )
        preview = client.get(f"/v1/datasets/{dataset['id']}/preview?limit=3").json()["rows"]
    key = dataset["uri"].removeprefix("s3://ridgeline/") + "part-00000.parquet"
    data = bytes(obstore.get(seaweed.admin_store("ridgeline"), key).bytes())
    table = pq.read_table(pa.BufferReader(data))
    assert table.num_rows == 500 and table.column_names == ["a", "b", "c", "y"]
    assert table.slice(0, 3).to_pylist() == preview


def test_bad_s3_requests_are_4xx(seaweed: SeaweedS3, s3_server: tuple[Server, str]) -> None:
    server, store_uri = s3_server
    lake = seaweed.admin_store("lake")
    prefix = f"clash-{uuid.uuid4().hex[:6]}"
    _put_parquet(lake, f"{prefix}/p0.parquet", pa.table({"a": [1.0], "b": ["x"]}))
    _put_parquet(lake, f"{prefix}/p1.parquet", pa.table({"a": ["x"], "b": ["x"]}))
    _put_parquet(seaweed.admin_store("private"), "secret.parquet", _table(10, 0))
    obstore.put(lake, f"empty-{prefix}/_SUCCESS", b"")
    cases = [
        (f"s3://lake/nope-{prefix}.parquet", "nothing at"),
        ("s3://private/secret.parquet", "access denied"),
        (f"s3://lake/empty-{prefix}/", "holds no data"),
        (f"s3://lake/{prefix}/", "p1.parquet, column 'a'"),
        (f"s3://lake/{prefix}/*.parquet", "p1.parquet, column 'a'"),
        ("s3://elsewhere/data.parquet", "RIDGELINE_IMPORT_ALLOWED_S3_PREFIXES"),
        (f"{store_uri}/x/", "not under a location"),
        ("gs://lake/data.parquet", "neither s3://"),
        ("s3://lake/../private/secret.parquet", "'..' segment"),
    ]
    with server.client(server.new_key()) as client:
        for uri, expected in cases:
            response = client.post("/v1/datasets", json={"uri": uri})
            assert response.status_code == 422, (uri, response.text)
            assert expected in response.json()["detail"], (uri, response.json())
        assert client.get("/v1/datasets").json()["items"] == []


def test_migrate_to_s3_then_delete_removes_only_ridgelines_objects(
    seaweed: SeaweedS3, tmp_path: Path
) -> None:
    url = new_database_url("sqlite", tmp_path)
    upgrade(url)
    lake = seaweed.admin_store("lake")
    source_key = f"src-{uuid.uuid4().hex[:6]}/data.parquet"
    _put_parquet(lake, source_key, _table(200, 3))
    env: dict[str, Any] = {
        **seaweed.service_env(),
        **WORKER_ENV,
        "RIDGELINE_IMPORT_ALLOWED_S3_PREFIXES": '["s3://lake/"]',
        "RIDGELINE_DATA_DIR": str(tmp_path / "data"),
    }
    server = start_server(url, tmp_path, worker=True, **env)
    target = f"s3://ridgeline/mig-{uuid.uuid4().hex[:6]}"
    try:
        with server.client(server.new_key()) as client:
            sink = io.BytesIO()
            pa_csv.write_csv(_table(300, 5), sink)
            uploaded = client.post("/v1/datasets", files={"file": ("m.csv", sink.getvalue())})
            dataset = uploaded.json()
            assert dataset["uri"] is None  # the database store
            spec = {"dataset_id": dataset["id"], "target": "y"}
            job = wait_for_job(client, client.post("/v1/jobs", json=spec).json()["id"])
            assert job["status"] == "succeeded", job
            referenced = client.post(
                "/v1/datasets", json={"uri": f"s3://lake/{source_key}", "mode": "reference"}
            ).json()
            assert _wait_dataset(client, referenced["id"])["status"] == "ready"
            artifact = client.get(f"/v1/jobs/{job['id']}/artifact").content

            out = run_cli(url, "blobs", "migrate", "--to", target, **env)
            assert "moved 2 blob(s)" in out.stdout, out.stdout
            rerun = run_cli(url, "blobs", "migrate", "--to", target, **env)
            assert "moved 0 blob(s)" in rerun.stdout
            own = seaweed.admin_store("ridgeline")
            prefix = target.removeprefix("s3://ridgeline/") + "/"
            keys = _keys(own, prefix)
            assert len(keys) == 2 and any(k.endswith("part-00000.parquet") for k in keys)
            assert client.get(f"/v1/jobs/{job['id']}/artifact").content == artifact
            moved = client.get(f"/v1/datasets/{dataset['id']}").json()
            assert moved["uri"].startswith(target + "/")
            assert len(client.get(f"/v1/datasets/{dataset['id']}/preview").json()["rows"]) == 20

            assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204
            assert client.delete(f"/v1/datasets/{dataset['id']}").status_code == 204
            assert client.delete(f"/v1/datasets/{referenced['id']}").status_code == 204
            assert _keys(own, prefix) == []
            assert obstore.head(lake, source_key)["size"] > 0  # the referenced source is kept
    finally:
        stop_process(server.process)
        dispose_database_url(url)


def test_store_outage_is_503_or_failed_and_gc_cleans_up(seaweed: SeaweedS3, tmp_path: Path) -> None:
    """Stopped during an upload: 503 with Retry-After, no dataset row. Stopped before an import
    is claimed: the import fails with a reason. Started again, uploads work; gc removes strays."""
    url = new_database_url("sqlite", tmp_path)
    upgrade(url)
    store = f"s3://ridgeline/outage-{uuid.uuid4().hex[:6]}"
    env: dict[str, Any] = {
        **seaweed.service_env(),
        "RIDGELINE_BLOB_STORE": store,
        "RIDGELINE_IMPORT_ALLOWED_S3_PREFIXES": '["s3://lake/"]',
        "RIDGELINE_DATA_DIR": str(tmp_path / "data"),
    }
    _put_parquet(seaweed.admin_store("lake"), "outage/data.parquet", _table(100, 1))
    server = start_server(url, tmp_path, worker=False, **env)
    worker = None
    try:
        with server.client(server.new_key()) as client:
            queued = client.post("/v1/datasets", json={"uri": "s3://lake/outage/data.parquet"})
            assert queued.status_code == 202, queued.text
            seaweed.stop()
            sink = io.BytesIO()
            pa_csv.write_csv(_table(100, 2), sink)
            refused = client.post("/v1/datasets", files={"file": ("o.csv", sink.getvalue())})
            assert refused.status_code == 503, refused.text
            assert refused.headers["Retry-After"] == "5"
            assert "unreachable" in refused.json()["detail"]
            assert [d["id"] for d in client.get("/v1/datasets").json()["items"]] == [
                queued.json()["id"]
            ]
            worker_env = {k: v for k, v in env.items() if k != "RIDGELINE_DATA_DIR"}
            worker = start_worker(url, tmp_path / "w", tmp_path / "worker.log", **worker_env)
            failed = _wait_dataset(client, queued.json()["id"])
            assert failed["status"] == "failed"
            assert "unreachable" in failed["error"], failed
            seaweed.restart()
            again = client.post("/v1/datasets", files={"file": ("o.csv", sink.getvalue())})
            assert again.status_code == 201, again.text
        stray = f"{store.removeprefix('s3://ridgeline/')}/t/datasets/x/part-00000.parquet"
        obstore.put(seaweed.admin_store("ridgeline"), stray, b"half an upload")
        out = run_cli(url, "blobs", "gc", "--older-than", "0", **env)
        assert "removed 1 unclaimed object(s)" in out.stdout, out.stdout
        with pytest.raises(FileNotFoundError):
            obstore.head(seaweed.admin_store("ridgeline"), stray)
    finally:
        if seaweed.process is None:
            seaweed.restart()
        if worker is not None:
            stop_process(worker)
        stop_process(server.process)
        dispose_database_url(url)
