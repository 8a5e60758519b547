"""End to end over HTTP with a worker whose Spark master is local[2]: an engine 'spark' job,
predict and ONNX export on its model, auto routing, cancel, and kill -9 of the worker."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from service.migrate import upgrade
from tests.conftest import (
    Server,
    new_database_url,
    start_server,
    start_worker,
    stop_process,
    wait_for,
    wait_for_job,
)
from tests.spark.conftest import TEST_SPARK_CONF

pytestmark = pytest.mark.spark


#: Engine 'auto' estimates rows x (numeric + one-hot columns) x 8 bytes: _table(100, 3) is 4800,
#: _table(500, 3) is 24000.
AUTO_THRESHOLD_BYTES = 10_000


@dataclass
class SparkSite:
    server: Server
    env: dict[str, Any]
    work: Path
    worker: subprocess.Popen[str]
    worker_log: Path

    def start_worker(self, name: str) -> tuple[subprocess.Popen[str], Path]:
        log = self.work / f"{name}.log"
        return start_worker(self.server.database_url, self.work / name, log, **self.env), log


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkSite]:
    """A server and a worker on SQLite, blobs on the file store, Spark local[2], and a threshold
    low enough that engine 'auto' sends a 500-row table to Spark and keeps a 100-row one local."""
    pytest.importorskip("pyspark")
    work = tmp_path_factory.mktemp("spark-site")
    url = new_database_url("sqlite", work)
    upgrade(url)
    env: dict[str, Any] = {
        "RIDGELINE_BLOB_STORE": (work / "blobs").as_uri(),
        "RIDGELINE_SPARK_MASTER": "local[2]",
        "RIDGELINE_SPARK_CONF": json.dumps(TEST_SPARK_CONF),
        "RIDGELINE_SPARK_THRESHOLD_BYTES": str(AUTO_THRESHOLD_BYTES),
        "RIDGELINE_MAX_UPLOAD_BYTES": str(64 << 20),
        # The driver's start (its JVM's pid) and a cancel's confirmation are logged at INFO.
        "RIDGELINE_LOG_LEVEL": "INFO",
    }
    (work / "blobs").mkdir()
    server = start_server(url, work, **env)
    worker_log = work / "worker.log"
    worker = start_worker(url, work / "worker", worker_log, **env)
    site = SparkSite(server, env, work, worker, worker_log)
    yield site
    stop_process(site.worker)  # the one running now: the kill test replaces it
    stop_process(server.process)


@pytest.fixture(scope="module")
def api(site: SparkSite) -> Iterator[httpx.Client]:
    """One tenant for the module: the cancel and kill tests share one uploaded table."""
    with site.server.client(site.server.new_key()) as client:
        yield client


def _upload(api: httpx.Client, table: pa.Table, name: str) -> str:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    response = api.post("/v1/datasets", files={"file": (f"{name}.parquet", sink.getvalue())})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _table(n: int, p: int, seed: int = 0, classes: int = 2) -> pa.Table:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    logits = X[:, :classes] * 2 + rng.normal(size=(n, classes))
    columns: dict[str, Any] = {f"x{i}": X[:, i] for i in range(p)}
    columns["color"] = rng.choice(["red", "green", "blue"], n)
    columns["y"] = logits.argmax(axis=1).astype(np.int64)
    return pa.table(columns)


def test_spark_job_predict_and_onnx(api: httpx.Client, site: SparkSite) -> None:
    table = _table(2000, 5)
    dataset_id = _upload(api, table, "small")
    created = api.post(
        "/v1/jobs",
        json={
            "dataset_id": dataset_id,
            "target": "y",
            "engine": "spark",
            "regularization": {"penalty": "l1", "strength": 0.01},
        },
    )
    assert created.status_code == 202, created.text
    assert created.json()["engine"] == "spark"
    job = wait_for_job(api, created.json()["id"], timeout=240)
    assert job["status"] == "succeeded", job["error"]
    assert job["native_params"]["family"] == "spark"
    assert job["native_params"]["params"]["regParam"] == 0.01
    metrics = api.get(f"/v1/jobs/{job['id']}/metrics").json()
    assert metrics["final"]["validation"]["accuracy"] > 0.7
    assert metrics["weights"]["n_weights"] == 5 + 3
    assert metrics["extra"]["objective_history"]
    assert metrics["diagnosis"]["verdict"]

    rows = table.slice(0, 20).drop_columns(["y"]).to_pylist()
    served = api.post(f"/v1/jobs/{job['id']}/predict", json={"rows": rows})
    assert served.status_code == 200, served.text
    onnx = api.get(f"/v1/jobs/{job['id']}/artifact", params={"format": "onnx"})
    assert onnx.status_code == 200, onnx.text
    session = ort.InferenceSession(onnx.content, providers=["CPUExecutionProvider"])
    feeds = {}
    for spec in session.get_inputs():
        values = np.array([r[spec.name] for r in rows], dtype=object)
        feeds[spec.name] = (
            values.reshape(-1, 1)
            if spec.type == "tensor(string)"
            else values.astype(np.float64).reshape(-1, 1)
        )
    labels, probabilities = session.run(None, feeds)
    assert labels.tolist() == served.json()["predictions"]
    served_proba = np.array([[p[k] for k in ("0", "1")] for p in served.json()["probabilities"]])
    np.testing.assert_allclose(probabilities, served_proba, rtol=1e-6)


def test_auto_routes_by_the_threshold(api: httpx.Client) -> None:
    """Above RIDGELINE_SPARK_THRESHOLD_BYTES a job goes to Spark; under it, it stays local."""
    larger = {"dataset_id": _upload(api, _table(500, 3), "auto-spark"), "target": "y"}
    smaller = {"dataset_id": _upload(api, _table(100, 3), "auto-local"), "target": "y"}
    routed = api.post("/v1/jobs", json=larger).json()
    assert routed["engine"] == "spark", routed
    assert "exceeds RIDGELINE_SPARK_THRESHOLD_BYTES" in routed["engine_reason"]
    kept = api.post("/v1/jobs", json=smaller).json()
    assert kept["engine"] == "local", kept
    assert "fits under RIDGELINE_SPARK_THRESHOLD_BYTES" in kept["engine_reason"]
    done = wait_for_job(api, routed["id"], timeout=240)
    assert done["status"] == "succeeded", done["error"]
    assert done["native_params"]["family"] == "spark"
    local = wait_for_job(api, kept["id"], timeout=120)
    assert local["status"] == "succeeded" and local["native_params"]["family"] == "sklearn"


def test_mlp_on_spark_is_a_422(api: httpx.Client) -> None:
    dataset_id = _upload(api, _table(100, 2), "mlp")
    response = api.post(
        "/v1/jobs",
        json={"dataset_id": dataset_id, "target": "y", "engine": "spark", "model": {"kind": "mlp"}},
    )
    assert response.status_code == 422
    assert "'mlp' has no Spark engine" in response.json()["detail"]


#: A nearly unpenalised 10-class fit on BUSY_ROWS x BUSY_COLUMNS runs all its 1000 solver
#: iterations (about one Spark job each; measured: over 90 s on 5000 rows, a loaded 2-core machine).
BUSY_ROWS, BUSY_COLUMNS = 5000, 20
#: The kill test's L2 fit on the same table: some dozens of iterations, seconds long (the kill
#: lands inside it), and attempt 2 trains it again.
KILL_STRENGTH = 1e-4
SLOW_SPEC = {
    "target": "y",
    "engine": "spark",
    "regularization": {"penalty": "elasticnet", "strength": 1e-5, "l1_ratio": 0.5},
}


@pytest.fixture(scope="module")
def busy_dataset(api: httpx.Client) -> str:
    """A 10-class table that keeps Spark busy for SLOW_SPEC yet is cheap to upload and prepare."""
    return _upload(api, _table(BUSY_ROWS, BUSY_COLUMNS, seed=5, classes=10), "busy")


def _wait_fitting(api: httpx.Client, job_id: str) -> dict[str, Any]:
    """Until the job is inside its Spark fit (progress past data preparation)."""

    def fitting() -> dict[str, Any] | None:
        job = api.get(f"/v1/jobs/{job_id}").json()
        assert job["status"] in ("queued", "running"), job
        return job if job["status"] == "running" and job["progress"] >= 0.2 else None

    return wait_for(fitting, timeout=240, interval=0.2, message="the Spark fit to start")


def test_cancel_stops_its_spark_jobs_within_5_s(
    api: httpx.Client, site: SparkSite, busy_dataset: str
) -> None:
    job_id = api.post("/v1/jobs", json={"dataset_id": busy_dataset, **SLOW_SPEC}).json()["id"]
    _wait_fitting(api, job_id)
    assert api.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
    job = wait_for_job(api, job_id, timeout=5)
    assert job["status"] == "cancelled"
    group = f"ridgeline-{job_id}-1"
    wait_for(
        lambda: (
            f"spark job group {group} cancelled; its Spark jobs ended"
            in site.worker_log.read_text()
        ),
        timeout=5,
        message="the worker to confirm the job group ended",
    )


def _jvm_pid(log: Path) -> int:
    found = re.findall(r"spark driver ready on \S+: pid \d+, JVM pid (\d+)", log.read_text())
    assert found, log.read_text()[-3000:]
    return int(found[-1])


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie is gone too (its parent, killed, cannot reap it until init does).
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" in status.read_text()


@pytest.mark.timeout(600)  # the worker that takes over starts a JVM, and the job trains twice
def test_kill_9_of_the_worker_leaves_no_driver_and_attempt_2_succeeds(
    api: httpx.Client, site: SparkSite, busy_dataset: str
) -> None:
    """The module's worker (its driver already up) dies during the fit; a new one takes over."""
    spec = {**SLOW_SPEC, "regularization": {"penalty": "l2", "strength": KILL_STRENGTH}}
    job_id = api.post("/v1/jobs", json={"dataset_id": busy_dataset, **spec}).json()["id"]
    _wait_fitting(api, job_id)
    doomed = site.worker
    jvm = _jvm_pid(site.worker_log)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    wait_for(lambda: _gone(jvm), timeout=30, message="the driver's JVM to exit")
    site.worker, site.worker_log = site.start_worker("second")
    job = wait_for_job(api, job_id, timeout=480)
    assert job["status"] == "succeeded", job["error"]
    assert job["attempt"] == 2
    assert [a["outcome"] for a in job["attempts"]] == ["lost", "succeeded"]
    assert _jvm_pid(site.worker_log) != jvm
