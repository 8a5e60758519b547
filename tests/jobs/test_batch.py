"""Batch scoring: POST /predict with a dataset_id streams a CSV of the dataset's rows with
predictions, read batch by batch from the stored Parquet (real server and worker)."""

from __future__ import annotations

import io
import uuid
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.conftest import Server, upload_tiny, wait_for_job

pytestmark = pytest.mark.usefixtures("worker")

N_SCORED = 20_000  # over max_predict_rows (10 000) and over one scoring batch (16 384)


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=n).round(4),
            "color": rng.choice(["red", "green", "blue"], size=n).astype(object),
        }
    )
    frame.loc[rng.random(n) < 0.05, "x"] = np.nan
    z = frame["x"].fillna(0) + (frame["color"] == "red") * 1.0
    frame["y"] = np.digitize(z + rng.normal(scale=0.3, size=n), [-0.5, 0.7])
    return frame


def _upload(api: httpx.Client, frame: pd.DataFrame) -> str:
    response = api.post("/v1/datasets", files={"file": ("d.csv", frame.to_csv(index=False))})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _train(api: httpx.Client, dataset_id: str, **spec: Any) -> str:
    created = api.post("/v1/jobs", json={"dataset_id": dataset_id, "target": "y", **spec})
    assert created.status_code == 202, created.text
    job = wait_for_job(api, created.json()["id"])
    assert job["status"] == "succeeded", job["error"]
    return str(job["id"])


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
        for row in frame.to_dict(orient="records")
    ]


@pytest.fixture
def scored(api: httpx.Client) -> tuple[str, pd.DataFrame]:
    """A big dataset to score, with the target and a column the model never saw."""
    frame = _frame(N_SCORED, seed=7).assign(note=lambda f: [f"row {i}" for i in range(len(f))])
    return _upload(api, frame), frame


def test_classifier_streams_every_row_in_order(
    api: httpx.Client, scored: tuple[str, pd.DataFrame]
) -> None:
    job_id = _train(api, _upload(api, _frame(300, seed=1)))
    dataset_id, frame = scored
    with api.stream("POST", f"/v1/jobs/{job_id}/predict", json={"dataset_id": dataset_id}) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/csv")
        body = r.read()
    out = pd.read_csv(io.BytesIO(body))
    classes = ["0", "1", "2"]
    assert list(out.columns) == [
        "x",
        "color",
        "y",
        "note",
        "prediction",
        *[f"proba_{c}" for c in classes],
    ]
    assert len(out) == N_SCORED
    assert out["note"].tolist() == frame["note"].tolist()  # the dataset's rows, in order
    np.testing.assert_allclose(out[[f"proba_{c}" for c in classes]].sum(axis=1), 1.0)

    # The same rows through the JSON route (at most 10 000 a request): the same answers.
    for start in (0, 16_380, N_SCORED - 50):
        rows = frame.iloc[start : start + 50]
        served = api.post(
            f"/v1/jobs/{job_id}/predict", json={"rows": _records(rows.drop(columns=["y", "note"]))}
        ).json()
        assert out["prediction"].iloc[start : start + 50].tolist() == served["predictions"]
        expected = [[p[c] for c in classes] for p in served["probabilities"]]
        np.testing.assert_allclose(
            out[[f"proba_{c}" for c in classes]].iloc[start : start + 50], expected, rtol=1e-12
        )


def test_regressor_and_a_rescored_output(api: httpx.Client) -> None:
    train = _frame(300, seed=2).assign(y=lambda f: f["x"].fillna(0) * 3 + 1)
    job_id = _train(
        api, _upload(api, train), model={"kind": "mlp", "hidden_layers": [4], "epochs": 3}
    )
    rows = _frame(40, seed=3).drop(columns="y").assign(prediction="stale")
    response = api.post(f"/v1/jobs/{job_id}/predict", json={"dataset_id": _upload(api, rows)})
    assert response.status_code == 200, response.text
    out = pd.read_csv(io.StringIO(response.text))
    assert list(out.columns) == ["x", "color", "prediction"]  # the stale column is replaced
    served = api.post(
        f"/v1/jobs/{job_id}/predict", json={"rows": _records(rows.drop(columns="prediction"))}
    ).json()
    np.testing.assert_allclose(out["prediction"], served["predictions"], rtol=1e-12)


def test_batches_are_read_and_sent_one_at_a_time(
    server: Server, api: httpx.Client, scored: tuple[str, pd.DataFrame]
) -> None:
    from service.config import Settings
    from service.db import Database
    from service.jobs import service
    from service.jobs.models import Job

    job_id = _train(api, _upload(api, _frame(200, seed=4)))
    dataset_id, _ = scored
    database = Database(Settings(database_url=server.database_url))
    try:
        with database.transaction(write=False) as session:
            job = session.get_one(Job, uuid.UUID(job_id))
            tenant = job.tenant_id
        chunks = [
            bytes(chunk)
            for chunk in service.score_dataset(
                database,
                service.ModelCache(),
                job,
                tenant_id=tenant,
                dataset_id=uuid.UUID(dataset_id),
                escape_formulas=False,
            )
        ]
    finally:
        database.dispose()
    header, *scored_chunks = chunks
    assert header.count(b"\n") == 1
    assert len(scored_chunks) >= -(-N_SCORED // service.SCORE_BATCH_ROWS) >= 2
    assert max(chunk.count(b"\n") for chunk in scored_chunks) <= service.SCORE_BATCH_ROWS
    assert sum(chunk.count(b"\n") for chunk in chunks) == N_SCORED + 1  # one header


def test_dataset_scoring_errors(server: Server, api: httpx.Client) -> None:
    job_id = _train(api, _upload(api, _frame(200, seed=5)))
    url = f"/v1/jobs/{job_id}/predict"

    unknown = api.post(url, json={"dataset_id": str(uuid.uuid4())})
    assert unknown.status_code == 422 and "dataset_id" in unknown.text
    with server.client(server.new_key()) as other:
        foreign = _upload(other, _frame(20, seed=6))
    assert api.post(url, json={"dataset_id": foreign}).status_code == 422

    lacking = _upload(api, _frame(20, seed=6).drop(columns="color"))
    missing = api.post(url, json={"dataset_id": lacking})
    assert missing.status_code == 422 and "'color'" in missing.json()["detail"]

    both = api.post(url, json={"dataset_id": lacking, "rows": [{"x": 1, "color": "red"}]})
    assert both.status_code == 422

    queued = api.post(
        "/v1/jobs",
        json={
            "dataset_id": upload_tiny(api),
            "target": "y",
            "model": {"kind": "mlp", "epochs": 10_000},
        },
    ).json()
    try:
        early = api.post(f"/v1/jobs/{queued['id']}/predict", json={"dataset_id": lacking})
        assert early.status_code == 409
    finally:
        api.post(f"/v1/jobs/{queued['id']}/cancel")
        wait_for_job(api, queued["id"], timeout=30)


def test_scored_csv_escapes_formulas_unless_asked_not_to(api: httpx.Client) -> None:
    job_id = _train(api, _upload(api, _frame(200, seed=8)))
    formulas = ["=1+1", "+2", "-3-3", "@A1", "plain"]
    rows = _frame(len(formulas), seed=9).drop(columns="y").assign(note=formulas)
    dataset_id = _upload(api, rows)
    url = f"/v1/jobs/{job_id}/predict"
    escaped = pd.read_csv(io.StringIO(api.post(url, json={"dataset_id": dataset_id}).text))
    assert escaped["note"].tolist() == ["'=1+1", "'+2", "'-3-3", "'@A1", "plain"]
    assert escaped["x"].tolist() == pytest.approx(rows["x"].tolist(), nan_ok=True)
    exact = api.post(url, params={"escape_formulas": "false"}, json={"dataset_id": dataset_id})
    assert pd.read_csv(io.StringIO(exact.text))["note"].tolist() == formulas
