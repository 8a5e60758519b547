"""The client against a real server and worker (uvicorn + worker processes, SQLite)."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import math
from pathlib import Path
from typing import Any

import pytest

from service.client import (
    AsyncClient,
    Client,
    Conflict,
    Event,
    NotFound,
    Unauthorized,
    ValidationFailed,
)
from tests.conftest import Server

pytestmark = pytest.mark.usefixtures("worker")

LINEAR = {"target": "target", "regularization": {"penalty": "l1", "strength": 0.05}}
MLP = {
    "target": "target",
    "model": {"kind": "mlp", "hidden_layers": [8], "epochs": 5, "batch_size": 128},
    "regularization": {"penalty": "l2", "strength": 1e-4, "dropout": 0.1},
}


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


def _features(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k != "target"} for row in rows]


def test_datasets_upload_list_preview_download(
    client: Client, cancer_csv: Path, tmp_path: Path
) -> None:
    progress: list[tuple[int, int]] = []
    dataset = client.upload(
        cancer_csv, name="cancer", progress=lambda sent, total: progress.append((sent, total))
    )
    size = cancer_csv.stat().st_size
    assert (dataset.name, dataset.n_rows, dataset.n_columns) == ("cancer", 569, 31)
    assert dataset.size_bytes == size
    assert dataset.sha256 == hashlib.sha256(cancer_csv.read_bytes()).hexdigest()
    assert progress[-1] == (size, size) and len(progress) >= 3  # streamed in chunks
    assert [s for s, _ in progress] == sorted(s for s, _ in progress)

    small = tmp_path / "small.csv"
    small.write_text("a;b\n1;x\n2;y\n")
    others = [client.upload(small, name=f"s{i}", delimiter=";") for i in range(2)]
    assert others[0].delimiter == ";" and others[0].n_columns == 2

    page = client.list_datasets(limit=2)
    assert [d.id for d in page.items] == [others[1].id, others[0].id] and page.next_cursor
    rest = client.list_datasets(limit=2, cursor=page.next_cursor)
    assert [d.id for d in rest.items] == [dataset.id] and rest.next_cursor is None
    assert [d.id for d in client.iter_datasets(page_size=1)] == [
        others[1].id,
        others[0].id,
        dataset.id,
    ]

    assert client.get_dataset(dataset.id).columns[0].name == "mean radius"
    preview = client.preview(dataset.id, limit=3)
    assert len(preview.rows) == 3 and preview.columns[-1] == "target"

    # Round trip: the CSV that comes back holds the same table.
    out = client.download(dataset.id, tmp_path / "back.csv")
    header, rows = _read_csv(out)
    orig_header, orig_rows = _read_csv(cancer_csv)
    assert header == orig_header and len(rows) == len(orig_rows)
    for got, want in zip(rows[:50], orig_rows[:50], strict=True):
        assert all(math.isclose(float(a), float(b)) for a, b in zip(got, want, strict=True))
    parquet = client.download(dataset.id, tmp_path, format="parquet")
    assert parquet.parent == tmp_path and parquet.read_bytes()[:4] == b"PAR1"
    assert not list(tmp_path.glob(".*.part"))

    client.delete_dataset(others[0].id)
    with pytest.raises(NotFound):
        client.get_dataset(others[0].id)


def test_linear_job_end_to_end(client: Client, cancer_csv: Path, tmp_path: Path) -> None:
    dataset = client.upload(cancer_csv)
    job = client.submit({**LINEAR, "dataset_id": dataset.id, "name": "l1"})
    assert job.status == "queued" and job.name == "l1"
    events: list[Event] = []
    done = client.wait(job.id, timeout=120, on_event=events.append)

    assert done.status == "succeeded" and done.artifact is not None
    statuses = [e.status for e in events if e.event == "status"]
    assert statuses == ["queued", "running", "succeeded"]
    ids = [e.id for e in events if e.id is not None]
    assert len(ids) == len(events) and ids == sorted(set(ids))
    assert all(e.attempt is not None for e in events)
    assert any(e.event == "progress" for e in events)

    # Resuming after an event id gives only what followed it.
    later = list(client.events(job.id, last_event_id=events[1].id))
    assert [e.id for e in later] == ids[2:]

    metrics = client.metrics(job.id)
    assert metrics.final is not None and {"train", "validation"} <= set(metrics.final)
    assert metrics.generalization_gap is not None
    assert metrics.generalization_gap["metric"] == "accuracy"
    assert metrics.weights is not None and metrics.weights["n_zero"] > 0  # L1 zeros weights

    rows = _features(client.preview(dataset.id, limit=4).rows)
    prediction = client.predict(job.id, rows)
    assert len(prediction.predictions) == 4 and prediction.probabilities is not None
    assert set(prediction.probabilities[0]) == {str(c) for c in prediction.classes or []}
    from_csv = client.predict_csv(job.id, cancer_csv)
    assert len(from_csv.predictions) == 569

    artifact = client.download_artifact(job.id, tmp_path)
    assert hashlib.sha256(artifact.read_bytes()).hexdigest() == done.artifact.sha256
    assert artifact.suffix == ".skops"

    assert job.id in {j.id for j in client.list_jobs(status="succeeded").items}
    assert [j.id for j in client.list_jobs(dataset_id=dataset.id).items] == [job.id]
    assert [j.id for j in client.iter_jobs(page_size=1)] == [job.id]
    with pytest.raises(Conflict) as ended:
        client.cancel(job.id)
    assert ended.value.status == 409 and "already ended" in ended.value.detail

    # The same idempotency key gives the same job back.
    again = client.submit({**LINEAR, "dataset_id": dataset.id}, "key-1")
    assert client.submit({**LINEAR, "dataset_id": dataset.id}, "key-1").id == again.id
    with contextlib.suppress(Conflict):  # it may have finished already
        client.cancel(again.id)
    assert client.wait(again.id, timeout=60).status in ("cancelled", "succeeded")
    client.delete_job(again.id)
    with pytest.raises(NotFound):
        client.get_job(again.id)


def test_mlp_job_streams_every_epoch(client: Client, cancer_csv: Path) -> None:
    dataset = client.upload(cancer_csv)
    job = client.submit(MLP, dataset_id=dataset.id)
    epochs: list[Event] = []
    done = client.wait(
        job.id, timeout=120, on_event=lambda e: epochs.append(e) if e.event == "epoch" else None
    )
    assert done.status == "succeeded", done.error
    assert [e.data["epoch"] for e in epochs] == [1, 2, 3, 4, 5]
    assert all(isinstance(e.data["train_loss"], float) for e in epochs)
    assert all(isinstance(e.data["val_loss"], float) for e in epochs)
    metrics = client.metrics(job.id)
    assert [h.epoch for h in metrics.history] == [1, 2, 3, 4, 5]
    assert metrics.history[-1].val_loss == epochs[-1].data["val_loss"]


def test_typed_errors(client: Client, server: Server, cancer_csv: Path) -> None:
    with pytest.raises(NotFound) as missing:
        client.get_job("00000000-0000-0000-0000-000000000000")
    assert missing.value.status == 404 and "no job" in missing.value.detail

    dataset = client.upload(cancer_csv)
    with pytest.raises(ValidationFailed) as invalid:
        client.submit({"dataset_id": dataset.id, "target": "nope", "model": {"kind": "linear"}})
    assert invalid.value.status == 422
    assert [e["field"] for e in invalid.value.errors] == ["target"]
    assert "nope" in invalid.value.errors[0]["message"]

    with Client(server.base_url, "rl_not-a-key") as stranger, pytest.raises(Unauthorized) as no:
        stranger.list_datasets()
    assert no.value.status == 401 and no.value.detail
    with Client(server.base_url) as anonymous, pytest.raises(Unauthorized):
        anonymous.get_dataset(dataset.id)

    # Other tenants' ids are 404 too.
    with Client(server.base_url, server.new_key()) as other, pytest.raises(NotFound):
        other.get_dataset(dataset.id)


def test_from_env(server: Server, key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RIDGELINE_URL", server.base_url)
    monkeypatch.setenv("RIDGELINE_API_KEY", key)
    with Client.from_env() as rl:
        assert rl.base_url == server.base_url
        assert rl.list_datasets().items == []
    monkeypatch.delenv("RIDGELINE_URL")
    assert Client.from_env().base_url == "http://127.0.0.1:8000"


def test_async_client_upload_submit_wait(server: Server, key: str, cancer_csv: Path) -> None:
    async def main() -> tuple[Any, list[Event], Any]:
        events: list[Event] = []

        async def on_event(event: Event) -> None:
            events.append(event)

        async with AsyncClient(server.base_url, key) as rl:
            sent: list[int] = []
            dataset = await rl.upload(cancer_csv, progress=lambda s, t: sent.append(s))
            assert sent[-1] == cancer_csv.stat().st_size
            job = await rl.submit({**LINEAR, "dataset_id": dataset.id})
            done = await rl.wait(job.id, timeout=120, on_event=on_event)
            metrics = await rl.metrics(job.id)
            listed = [d.id async for d in rl.iter_datasets()]
            assert listed == [dataset.id]
            return done, events, metrics

    done, events, metrics = asyncio.run(main())
    assert done.status == "succeeded"
    assert [e.status for e in events if e.event == "status"] == ["queued", "running", "succeeded"]
    assert metrics.final is not None


SWEEP = {
    "target": "target",
    "search": {"penalty": ["l1", "l2"], "strength": [0.01, 1.0]},
    "cv": {"folds": 2},
    "validation": {"test_fraction": 0.2},
}


def test_sweep_submit_wait_and_refit(client: Client, cancer_csv: Path) -> None:
    dataset = client.upload(cancer_csv)
    sweep = client.submit_sweep({**SWEEP, "dataset_id": dataset.id, "name": "s"})
    assert sweep.status in ("queued", "running") and sweep.n_configs == 4 and sweep.n_jobs == 4
    seen: list[str] = []
    done = client.wait_sweep(
        sweep.id,
        timeout=120,
        poll_interval=0.2,
        include_refit=True,
        on_update=lambda s: seen.append(s.status),
    )
    assert done.status == "succeeded" and seen[-1] == "succeeded", done.error
    assert done.metric == "log_loss" and done.lower_is_better is True
    means = [row["mean"] for row in done.leaderboard]
    assert len(means) == 4 and means == sorted(means)
    assert done.best is not None and done.best["strength"] == done.leaderboard[0]["strength"]
    assert done.refit_job_id and client.get_job(done.refit_job_id).status == "succeeded"
    assert done.best["refit_status"] == "succeeded" and done.best["test"] is not None
    assert [s.id for s in client.iter_sweeps()] == [sweep.id]
    with pytest.raises(NotFound):
        client.get_sweep("00000000-0000-0000-0000-000000000000")
