"""Sweeps end to end over HTTP with a real worker: trials, leaderboard, best, refit."""

from __future__ import annotations

import json
import statistics
from typing import Any

import httpx
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from tests.conftest import Server, wait_for, wait_for_job

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture
def cancer(api: httpx.Client) -> tuple[str, pd.DataFrame]:
    frame = load_breast_cancer(as_frame=True).frame
    response = api.post(
        "/v1/datasets", files={"file": ("cancer.csv", frame.to_csv(index=False).encode())}
    )
    assert response.status_code == 201
    return str(response.json()["id"]), frame


def _wait_sweep(client: httpx.Client, sweep_id: str, timeout: float = 240) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        sweep = client.get(f"/v1/sweeps/{sweep_id}").json()
        return sweep if sweep["status"] in ("succeeded", "failed", "cancelled") else None

    return wait_for(done, timeout=timeout, interval=0.2, message=f"sweep {sweep_id}")


def _events(client: httpx.Client, path: str) -> list[tuple[str, dict[str, Any]]]:
    """Every (kind, data) of a job's or sweep's stream, which closes after the terminal status."""
    events, kind = [], ""
    with client.stream("GET", path, timeout=240) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            kind = line.removeprefix("event: ") if line.startswith("event: ") else kind
            if line.startswith("data: "):
                events.append((kind, json.loads(line.removeprefix("data: "))))
    return events


def test_a_script_follows_a_sweep_on_its_event_stream(
    api: httpx.Client, cancer: tuple[str, pd.DataFrame]
) -> None:
    dataset_id, _ = cancer
    created = api.post(
        "/v1/sweeps",
        json={
            "dataset_id": dataset_id,
            "target": "target",
            "search": {"penalty": ["l1", "l2"], "strength": {"min": 1e-3, "max": 1.0, "num": 3}},
            "cv": {"folds": 2},
            "refit": False,
        },
    ).json()

    events = _events(api, f"/v1/sweeps/{created['id']}/events")

    kinds = [kind for kind, _ in events]
    assert kinds[0] == "status" and events[0][1]["status"] in ("queued", "running")
    assert kinds[-1] == "status" and set(kinds) <= {"status", "progress"}
    progress = [data["progress"] for _, data in events]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert all(data["trials"] == created["n_jobs"] == 4 for _, data in events)
    last = events[-1][1]
    assert last["status"] == "succeeded" and last["trials_done"] == 4
    sweep = api.get(f"/v1/sweeps/{created['id']}").json()
    assert last["best"] == sweep["best"] and last["refit_job_id"] is None and last["error"] is None
    assert "best" not in events[0][1]  # only the terminal event carries the outcome
    assert api.get("/v1/sweeps/not-a-uuid/events").status_code == 404


def test_linear_sweep_ranks_paths_and_refits(
    api: httpx.Client, cancer: tuple[str, pd.DataFrame]
) -> None:
    dataset_id, frame = cancer
    response = api.post(
        "/v1/sweeps",
        json={
            "dataset_id": dataset_id,
            "target": "target",
            "search": {
                "penalty": ["l1", "l2", "elasticnet"],
                "strength": {"min": 1e-3, "max": 1.0, "num": 4},
                "l1_ratio": [0.5],
                "dropout": [0.1, 0.2],
            },
            "cv": {"folds": 3},
            "validation": {"test_fraction": 0.2},
        },
    )
    assert response.status_code == 202, response.text
    created = response.json()
    assert created["n_configs"] == 12  # dropout does not apply to a linear model
    assert created["n_jobs"] == 9  # one path per (penalty, fold)
    sweep = _wait_sweep(api, created["id"])
    assert sweep["status"] == "succeeded", sweep
    assert sweep["metric"] == "log_loss" and sweep["lower_is_better"]
    assert sweep["greater_is_better"] is False
    board = sweep["leaderboard"]
    assert len(board) == 12 and all(row["n_folds"] == 3 for row in board)
    means = [row["mean"] for row in board]
    assert means == sorted(means)
    best = sweep["best"]
    assert (best["penalty"], best["strength"]) == (board[0]["penalty"], board[0]["strength"])

    # Trial jobs are listed only when asked for; the leaderboard agrees with their own metrics.
    listed = api.get("/v1/jobs", params={"dataset_id": dataset_id}).json()["items"]
    assert [j["id"] for j in listed] == [sweep["refit_job_id"]]
    jobs = api.get(
        "/v1/jobs", params={"dataset_id": dataset_id, "limit": 200, "include_trials": True}
    ).json()["items"]
    assert len(jobs) == 1 + created["n_jobs"]
    trial = next(
        j
        for j in jobs
        if j["spec"]["regularization"]["penalty"] == best["penalty"] and j["name"].endswith("trial")
    )
    assert trial["status"] == "succeeded"
    events = _events(api, f"/v1/jobs/{trial['id']}/events")
    statuses = [data["status"] for kind, data in events if kind == "status"]
    assert statuses[:2] == ["queued", "running"], statuses  # a trial tells its story like a job
    values = []
    for job in jobs:
        if (
            job["name"].endswith("trial")
            and job["spec"]["regularization"]["penalty"] == best["penalty"]
        ):
            path = api.get(f"/v1/jobs/{job['id']}/metrics").json()["extra"]["path"]
            point = next(p for p in path if p["strength"] == pytest.approx(best["strength"]))
            values.append(point["final"]["validation"]["log_loss"])
    assert statistics.fmean(values) == pytest.approx(best["cv_mean"])

    refit = wait_for_job(api, sweep["refit_job_id"])
    assert refit["status"] == "succeeded"
    assert refit["spec"]["regularization"]["penalty"] == best["penalty"]
    rows = frame.drop(columns="target").head(3).to_dict(orient="records")
    assert (
        len(api.post(f"/v1/jobs/{refit['id']}/predict", json={"rows": rows}).json()["predictions"])
        == 3
    )
    assert "test" in api.get(f"/v1/sweeps/{created['id']}").json()["best"]


def test_mlp_sweep_with_a_validation_split(
    api: httpx.Client, cancer: tuple[str, pd.DataFrame]
) -> None:
    dataset_id, _ = cancer
    created = api.post(
        "/v1/sweeps",
        json={
            "dataset_id": dataset_id,
            "target": "target",
            "model": {"kind": "mlp", "hidden_layers": [8], "epochs": 5},
            "search": {"penalty": ["l2"], "strength": [1e-4, 1e-2], "dropout": [0.0, 0.3]},
            "cv": {"validation_fraction": 0.25},
            "metric": "accuracy",
            "refit": False,
        },
    ).json()
    assert created["n_configs"] == 4 and created["n_jobs"] == 4
    sweep = _wait_sweep(api, created["id"])
    assert sweep["status"] == "succeeded"
    assert not sweep["lower_is_better"] and sweep["greater_is_better"] is True
    means = [row["mean"] for row in sweep["leaderboard"]]
    assert means == sorted(means, reverse=True)
    assert sweep["refit_job_id"] is None
    assert {row["dropout"] for row in sweep["leaderboard"]} == {0.0, 0.3}


def test_cancel_and_isolation(
    server: Server, api: httpx.Client, cancer: tuple[str, pd.DataFrame]
) -> None:
    dataset_id, _ = cancer
    created = api.post(
        "/v1/sweeps",
        json={
            "dataset_id": dataset_id,
            "target": "target",
            "model": {"kind": "mlp", "hidden_layers": [8], "epochs": 300},
            "search": {"penalty": ["l2"], "strength": [1e-4, 1e-3, 1e-2]},
            "cv": {"folds": 3},
        },
    ).json()
    with server.client(server.new_key()) as other:
        assert other.get(f"/v1/sweeps/{created['id']}").status_code == 404
        assert other.post(f"/v1/sweeps/{created['id']}/cancel").status_code == 404
        assert other.get(f"/v1/sweeps/{created['id']}/events").status_code == 404
        assert other.get("/v1/sweeps").json()["items"] == []
    cancelled = api.post(f"/v1/sweeps/{created['id']}/cancel").json()
    assert cancelled["status"] == "cancelled"
    # An ended sweep's stream says so at once, and closes.
    (ended,) = _events(api, f"/v1/sweeps/{created['id']}/events")
    assert ended[0] == "status" and ended[1]["status"] == "cancelled"
    assert api.post(f"/v1/sweeps/{created['id']}/cancel").status_code == 409

    def trials_ended() -> bool:
        jobs = api.get("/v1/jobs", params={"dataset_id": dataset_id}).json()["items"]
        return all(j["status"] in ("cancelled", "succeeded", "failed") for j in jobs)

    wait_for(trials_ended, timeout=30, message="every trial to end")


def test_bad_sweeps_are_422(api: httpx.Client, cancer: tuple[str, pd.DataFrame]) -> None:
    dataset_id, _ = cancer
    base = {"dataset_id": dataset_id, "target": "target"}
    for body, field in [
        ({**base, "cv": {"folds": 3, "validation_fraction": 0.2}}, "cv"),
        ({**base, "metric": "r2"}, "metric"),
        ({**base, "search": {"strength": {"min": 1, "max": 0.1}}}, "search"),
        ({**base, "search": {"mode": "random"}}, "search.max_trials"),
        ({**base, "target": "ghost"}, "target"),
    ]:
        response = api.post("/v1/sweeps", json=body)
        assert response.status_code == 422, (body, response.text)
        assert field in response.text
