"""Training jobs end to end: the real server and a real worker, over HTTP, on both databases."""

from __future__ import annotations

import hashlib
import io
import uuid
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes

from service.training.metrics import METRICS
from tests.conftest import Server, wait_for, wait_for_job

pytestmark = pytest.mark.usefixtures("worker")


def _upload_frame(client: httpx.Client, frame: pd.DataFrame, name: str = "d") -> str:
    response = client.post(
        "/v1/datasets",
        files={"file": (f"{name}.csv", frame.to_csv(index=False).encode())},
        data={"name": name},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.fixture
def cancer(api: httpx.Client) -> tuple[str, pd.DataFrame]:
    frame = load_breast_cancer(as_frame=True).frame
    return _upload_frame(api, frame, "cancer"), frame


@pytest.fixture
def diabetes(api: httpx.Client) -> tuple[str, pd.DataFrame]:
    frame = load_diabetes(as_frame=True).frame
    return _upload_frame(api, frame, "diabetes"), frame


def _submit(client: httpx.Client, **spec: Any) -> dict[str, Any]:
    response = client.post("/v1/jobs", json=spec)
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/v1/jobs/{response.json()['id']}"
    assert response.json()["status"] == "queued"
    # Computed once, by the worker, from the real training split: none while queued.
    assert response.json()["native_params"] is None
    return response.json()


def _train(client: httpx.Client, **spec: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    job = wait_for_job(client, _submit(client, **spec)["id"])
    assert job["status"] == "succeeded", job["error"]
    metrics = client.get(f"/v1/jobs/{job['id']}/metrics").json()
    return job, metrics


@pytest.mark.parametrize("penalty", ["l1", "l2", "elasticnet", "none"])
def test_linear_classification(
    api: httpx.Client, cancer: tuple[str, pd.DataFrame], penalty: str
) -> None:
    dataset_id, frame = cancer
    regularization: dict[str, Any] = {"penalty": penalty, "strength": 0.02}
    if penalty == "elasticnet":
        regularization["l1_ratio"] = 0.5
    job, metrics = _train(
        api, dataset_id=dataset_id, target="target", regularization=regularization
    )
    assert job["task"] == "classification" and job["attempt"] == 1
    native = job["native_params"]
    # Binary L1 and elastic-net fits run on glum and are stored as the same objective's
    # scikit-learn estimator; the rest fit scikit-learn's directly.
    assert native.get("stored_as", native)["estimator"] == "LogisticRegression"
    assert native["estimator"] == (
        "GeneralizedLinearRegressor" if penalty in ("l1", "elasticnet") else "LogisticRegression"
    )
    assert job["versions"]["sklearn"]
    assert [a["outcome"] for a in job["attempts"]] == ["succeeded"]
    final = metrics["final"]
    for split in ("train", "validation"):
        assert set(final[split]) >= {
            "accuracy",
            "balanced_accuracy",
            "f1_macro",
            "log_loss",
            "roc_auc",
        }
        assert final[split]["accuracy"] > 0.85
    gap = metrics["generalization_gap"]
    assert gap["score"] == pytest.approx(
        final["train"]["accuracy"] - final["validation"]["accuracy"]
    )
    # Every reported metric comes with its direction, from the server's one registry.
    assert set(metrics["metric_info"]) == set(final["train"]) - {"n"}
    for name, info in metrics["metric_info"].items():
        assert info["greater_is_better"] is METRICS[name].greater_is_better, name
    assert len(metrics["coefficients"]) == 30
    if penalty == "l1":
        assert metrics["weights"]["n_zero"] > 0

    artifact = api.get(f"/v1/jobs/{job['id']}/artifact")
    assert artifact.status_code == 200
    assert hashlib.sha256(artifact.content).hexdigest() == artifact.headers["x-artifact-sha256"]

    rows = frame.drop(columns="target").head(5).to_dict(orient="records")
    predicted = api.post(f"/v1/jobs/{job['id']}/predict", json={"rows": rows}).json()
    assert len(predicted["predictions"]) == 5
    assert set(predicted["probabilities"][0]) == {"0", "1"}
    assert sum(predicted["probabilities"][0].values()) == pytest.approx(1.0)

    csv = frame.drop(columns="target").head(5).to_csv(index=False).encode()
    from_csv = api.post(f"/v1/jobs/{job['id']}/predict", files={"file": ("rows.csv", csv)}).json()
    assert from_csv["predictions"] == predicted["predictions"]


def test_l1_strength_raises_sparsity(api: httpx.Client, cancer: tuple[str, pd.DataFrame]) -> None:
    dataset_id, _ = cancer
    sparsity = []
    for strength in (0.001, 0.05):
        _, metrics = _train(
            api,
            dataset_id=dataset_id,
            target="target",
            regularization={"penalty": "l1", "strength": strength},
        )
        sparsity.append(metrics["weights"]["sparsity"])
    assert sparsity[1] > sparsity[0]


@pytest.mark.parametrize("penalty", ["l1", "l2", "elasticnet", "none"])
def test_linear_regression(
    api: httpx.Client, diabetes: tuple[str, pd.DataFrame], penalty: str
) -> None:
    dataset_id, frame = diabetes
    regularization: dict[str, Any] = {"penalty": penalty, "strength": 0.01}
    if penalty == "elasticnet":
        regularization["l1_ratio"] = 0.3
    job, metrics = _train(
        api,
        dataset_id=dataset_id,
        target="target",
        regularization=regularization,
        validation={"fraction": 0.2, "test_fraction": 0.1},
    )
    assert job["task"] == "regression"
    expected = {
        "none": "LinearRegression",
        "l1": "Lasso",
        "l2": "Ridge",
        "elasticnet": "ElasticNet",
    }
    native = job["native_params"]
    # L1 parts are fitted by glum and stored as the scikit-learn estimator it names.
    assert (native["module"] == "glum") == (penalty in ("l1", "elasticnet"))
    assert native.get("stored_as", native)["estimator"] == expected[penalty]
    assert set(metrics["final"]) == {"train", "validation", "test"}
    assert set(metrics["final"]["validation"]) >= {"rmse", "mae", "r2"}
    rows = frame.drop(columns="target").head(3).to_dict(orient="records")
    predicted = api.post(f"/v1/jobs/{job['id']}/predict", json={"rows": rows}).json()
    assert len(predicted["predictions"]) == 3 and predicted["probabilities"] is None


def test_mlp_classification_with_dropout_and_early_stopping(
    api: httpx.Client, cancer: tuple[str, pd.DataFrame]
) -> None:
    dataset_id, frame = cancer
    job, metrics = _train(
        api,
        dataset_id=dataset_id,
        target="target",
        model={"kind": "mlp", "hidden_layers": [16], "epochs": 60, "batch_size": 32},
        regularization={
            "penalty": "l2",
            "strength": 1e-4,
            "dropout": 0.2,
            "early_stopping": {"patience": 3},
        },
    )
    history = metrics["history"]
    assert history and [row["epoch"] for row in history] == list(range(1, len(history) + 1))
    assert all(row["val_loss"] is not None for row in history)
    assert metrics["best_epoch"] is not None and metrics["best_epoch"] <= len(history)
    assert metrics["final"]["validation"]["accuracy"] > 0.85
    artifact = api.get(f"/v1/jobs/{job['id']}/artifact")
    assert artifact.headers["content-type"] == "application/zip"
    rows = frame.drop(columns="target").head(4).to_dict(orient="records")
    predicted = api.post(f"/v1/jobs/{job['id']}/predict", json={"rows": rows}).json()
    assert len(predicted["predictions"]) == 4


def test_mlp_regression(api: httpx.Client, diabetes: tuple[str, pd.DataFrame]) -> None:
    dataset_id, _ = diabetes
    _, metrics = _train(
        api,
        dataset_id=dataset_id,
        target="target",
        model={"kind": "mlp", "hidden_layers": [16], "epochs": 15},
        regularization={"penalty": "l1", "strength": 1e-3},
    )
    assert len(metrics["history"]) == 15
    assert metrics["weights"]["n_weights"] > 0


SPEC_PROBLEMS = [
    ({"regularization": {"penalty": "l2", "dropout": 0.5}}, "regularization.dropout"),
    (
        {"regularization": {"penalty": "l2", "early_stopping": {"patience": 2}}},
        "regularization.early_stopping",
    ),
    ({"regularization": {"penalty": "l1", "l1_ratio": 0.5}}, "regularization.l1_ratio"),
    ({"model": {"kind": "mlp"}, "regularization": {"dropout": 1.0}}, "regularization.dropout"),
    ({"regularization": {"strength": -1}}, "regularization.strength"),
    ({"target": "nope"}, "target"),
    ({"features": ["mean radius", "ghost"]}, "features"),
    ({"target": "mean radius", "task": "classification"}, "task"),
    ({"model": {"kind": "mlp", "hidden_layers": [4096, 4096, 4096]}}, "model"),
    (
        {
            "model": {"kind": "mlp"},
            "validation": {"fraction": 0},
            "regularization": {"early_stopping": {"patience": 2}},
        },
        "validation.fraction",
    ),
    ({"regularization": {"penalty": "lasso"}}, "regularization.penalty"),
]


@pytest.mark.parametrize(
    ("change", "field"), SPEC_PROBLEMS, ids=[p[1] + str(i) for i, p in enumerate(SPEC_PROBLEMS)]
)
def test_inconsistent_specs_are_422_naming_the_field(
    api: httpx.Client, cancer: tuple[str, pd.DataFrame], change: dict[str, Any], field: str
) -> None:
    spec = {"dataset_id": cancer[0], "target": "target", **change}
    response = api.post("/v1/jobs", json=spec)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["errors"], problem
    assert any(e["field"].startswith(field) for e in problem["errors"]), problem
    assert api.get("/v1/jobs", params={"dataset_id": cancer[0]}).json()["items"] == []


def test_regression_on_text_target_is_422(api: httpx.Client) -> None:
    dataset_id = _upload_frame(api, pd.DataFrame({"x": range(30), "y": ["a", "b", "c"] * 10}))
    response = api.post(
        "/v1/jobs", json={"dataset_id": dataset_id, "target": "y", "task": "regression"}
    )
    assert response.status_code == 422
    assert "target" in response.json()["detail"]


def test_idempotency_key(api: httpx.Client, cancer: tuple[str, pd.DataFrame]) -> None:
    spec = {"dataset_id": cancer[0], "target": "target"}
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = api.post("/v1/jobs", json=spec, headers=key)
    again = api.post("/v1/jobs", json=spec, headers=key)
    assert first.status_code == 202 and again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    other = api.post("/v1/jobs", json={**spec, "seed": 7}, headers=key)
    assert other.status_code == 409


def _long_job(client: httpx.Client, dataset_id: str) -> dict[str, Any]:
    return _submit(
        client,
        dataset_id=dataset_id,
        target="target",
        model={"kind": "mlp", "hidden_layers": [64], "epochs": 10_000, "batch_size": 8},
    )


def test_cancel_queued_running_and_finished(
    api: httpx.Client, cancer: tuple[str, pd.DataFrame]
) -> None:
    dataset_id, _ = cancer
    running = _long_job(api, dataset_id)
    wait_for_job(api, running["id"], statuses=("running",), timeout=60)
    queued = _submit(api, dataset_id=dataset_id, target="target")

    response = api.post(f"/v1/jobs/{queued['id']}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert api.post(f"/v1/jobs/{queued['id']}/cancel").status_code == 409
    assert api.post(f"/v1/jobs/{queued['id']}/predict", json={"rows": [{}]}).status_code == 409

    assert api.delete(f"/v1/jobs/{running['id']}").status_code == 409
    assert api.delete(f"/v1/datasets/{dataset_id}").status_code == 409
    assert api.post(f"/v1/jobs/{running['id']}/cancel").json()["cancel_requested"] is True
    ended = wait_for_job(api, running["id"], timeout=10)
    assert ended["status"] == "cancelled"
    assert ended["attempts"][-1]["outcome"] == "cancelled"

    assert api.delete(f"/v1/jobs/{running['id']}").status_code == 204
    assert api.get(f"/v1/jobs/{running['id']}").status_code == 404


def test_running_mlp_shows_epochs_so_far(
    api: httpx.Client, cancer: tuple[str, pd.DataFrame]
) -> None:
    job = _long_job(api, cancer[0])

    def some_epochs() -> list[dict[str, Any]] | None:
        history = api.get(f"/v1/jobs/{job['id']}/metrics").json()["history"]
        return history if len(history) >= 2 else None

    history = wait_for(some_epochs, timeout=60, message="epochs of a running job")
    assert history[0]["epoch"] == 1
    assert api.get(f"/v1/jobs/{job['id']}").json()["progress"] > 0
    api.post(f"/v1/jobs/{job['id']}/cancel")
    assert wait_for_job(api, job["id"], timeout=10)["status"] == "cancelled"


def test_predict_input_problems(api: httpx.Client, cancer: tuple[str, pd.DataFrame]) -> None:
    dataset_id, frame = cancer
    job, _ = _train(api, dataset_id=dataset_id, target="target")
    row = frame.drop(columns="target").iloc[0].to_dict()
    url = f"/v1/jobs/{job['id']}/predict"
    missing = api.post(url, json={"rows": [{k: v for k, v in row.items() if k != "mean radius"}]})
    assert missing.status_code == 422 and "mean radius" in missing.text
    extra = api.post(url, json={"rows": [{**row, "surprise": 1}]})
    assert extra.status_code == 422 and "surprise" in extra.text
    wrong = api.post(url, json={"rows": [{**row, "mean radius": "big"}]})
    assert wrong.status_code == 422 and "mean radius" in wrong.text
    imputed = api.post(url, json={"rows": [{**row, "mean radius": None}]})
    assert imputed.status_code == 200


def test_jobs_list_filters(api: httpx.Client, cancer: tuple[str, pd.DataFrame]) -> None:
    job, _ = _train(api, dataset_id=cancer[0], target="target")
    listed = api.get("/v1/jobs", params={"status": "succeeded", "dataset_id": cancer[0]}).json()
    assert job["id"] in {j["id"] for j in listed["items"]}
    assert (
        api.get("/v1/jobs", params={"status": "queued", "dataset_id": cancer[0]}).json()["items"]
        == []
    )


def test_other_tenants_jobs_are_invisible(
    server: Server, api: httpx.Client, cancer: tuple[str, pd.DataFrame]
) -> None:
    job, _ = _train(api, dataset_id=cancer[0], target="target")
    with server.client(server.new_key()) as other:
        assert other.get("/v1/jobs").json()["items"] == []
        requests: list[tuple[str, str, dict[str, Any]]] = [
            ("GET", f"/v1/jobs/{job['id']}", {}),
            ("GET", f"/v1/jobs/{job['id']}/metrics", {}),
            ("GET", f"/v1/jobs/{job['id']}/artifact", {}),
            ("POST", f"/v1/jobs/{job['id']}/predict", {"json": {"rows": [{"a": 1}]}}),
            ("POST", f"/v1/jobs/{job['id']}/cancel", {}),
            ("DELETE", f"/v1/jobs/{job['id']}", {}),
        ]
        for method, path, kwargs in requests:
            assert other.request(method, path, **kwargs).status_code == 404, path
        foreign = other.post("/v1/jobs", json={"dataset_id": cancer[0], "target": "target"})
        assert foreign.status_code == 422 and "dataset_id" in foreign.text
    assert api.get(f"/v1/jobs/{job['id']}").status_code == 200


def test_predictions_match_a_local_load_of_the_artifact(
    api: httpx.Client, cancer: tuple[str, pd.DataFrame]
) -> None:
    from service.training.artifacts import load_artifact

    dataset_id, frame = cancer
    job, _ = _train(
        api,
        dataset_id=dataset_id,
        target="target",
        regularization={"penalty": "l2", "strength": 0.01},
    )
    artifact = api.get(f"/v1/jobs/{job['id']}/artifact")
    model = load_artifact(artifact.content, sha256=artifact.headers["x-artifact-sha256"])
    rows = frame.drop(columns="target").sample(20, random_state=1).to_dict(orient="records")
    local = model.predict(rows)
    served = api.post(f"/v1/jobs/{job['id']}/predict", json={"rows": rows}).json()
    assert served["predictions"] == local.predictions
    assert local.probabilities is not None
    np.testing.assert_allclose(
        [p["1"] for p in served["probabilities"]], [p["1"] for p in local.probabilities], rtol=1e-12
    )
    assert io.BytesIO(artifact.content).getbuffer().nbytes > 0
