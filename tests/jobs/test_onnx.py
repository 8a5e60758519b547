"""ONNX export: the exported graph, run by onnxruntime on the raw columns, predicts what the
service predicts (real server and worker, both databases); and the exporter's edge cases."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from tests.conftest import upload_tiny, wait_for_job

RTOL = 1e-4


def _frame(n: int, target: str, seed: int) -> pd.DataFrame:
    """Mixed columns with missing values: float, integer, boolean, categorical."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "item count": rng.integers(0, 10, size=n),  # not a C identifier: kept as is
            "flag": rng.random(n) < 0.4,
            "color": rng.choice(["red", "green", "blue"], size=n).astype(object),
        }
    )
    frame["x"] = frame["x"].where(rng.random(n) > 0.1)
    frame.loc[rng.random(n) < 0.1, "color"] = None
    z = frame["x"].fillna(0) * 2 + (frame["color"] == "red") * 1.5 - 0.3 * frame["item count"] + 1
    if target == "binary":
        frame["y"] = np.where(z + rng.normal(scale=0.5, size=n) > 0, "yes", "no")
    elif target == "multiclass":
        frame["y"] = np.digitize(z + rng.normal(scale=0.3, size=n), [-1.0, 0.8])
    else:
        frame["y"] = 3 * z + 100 + rng.normal(size=n)
    return frame


def _held_out(target: str) -> pd.DataFrame:
    rows = _frame(60, target, seed=99).drop(columns="y")
    rows.loc[0, "color"] = "purple"  # a category never seen in training: all one-hot zeros
    rows.loc[1, ["x", "color"]] = [np.nan, None]
    return rows


def _records(rows: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for record in rows.to_dict(orient="records"):
        out.append(
            {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in record.items()}
        )
    return out


def _feeds(session: ort.InferenceSession, rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """One [N, 1] tensor per column: double (NaN missing) or string ("" missing)."""
    feeds = {}
    for spec in session.get_inputs():
        column = rows[spec.name]
        if spec.type == "tensor(string)":
            values = column.where(column.notna(), "").to_numpy(dtype=object)
        else:
            values = column.astype(float).to_numpy(dtype=np.float64)
        feeds[spec.name] = values.reshape(-1, 1)
    return feeds


def _train(api: httpx.Client, frame: pd.DataFrame, **spec: Any) -> str:
    upload = api.post("/v1/datasets", files={"file": ("d.csv", frame.to_csv(index=False))})
    assert upload.status_code == 201, upload.text
    created = api.post("/v1/jobs", json={"dataset_id": upload.json()["id"], "target": "y", **spec})
    assert created.status_code == 202, created.text
    job = wait_for_job(api, created.json()["id"])
    assert job["status"] == "succeeded", job["error"]
    return str(job["id"])


def _onnx_session(api: httpx.Client, job_id: str) -> ort.InferenceSession:
    response = api.get(f"/v1/jobs/{job_id}/artifact", params={"format": "onnx"})
    assert response.status_code == 200, response.text
    assert response.headers["x-artifact-sha256"] == hashlib.sha256(response.content).hexdigest()
    assert response.headers["content-disposition"].endswith('.onnx"')
    again = api.get(f"/v1/jobs/{job_id}/artifact", params={"format": "onnx"})
    assert again.content == response.content  # cached, and the same bytes
    return ort.InferenceSession(response.content, providers=["CPUExecutionProvider"])


CASES = [
    ("binary", {"regularization": {"penalty": "l1", "strength": 0.01}}),
    (
        "multiclass",
        {
            "regularization": {"penalty": "elasticnet", "strength": 0.01, "l1_ratio": 0.5},
            "preprocessing": {"polynomial_degree": 2},
        },
    ),
    ("regression", {"regularization": {"penalty": "l2", "strength": 0.01}}),
    (
        "multiclass",
        {
            "model": {"kind": "mlp", "hidden_layers": [12, 6], "activation": "gelu", "epochs": 8},
            "regularization": {"penalty": "l2", "strength": 1e-4, "dropout": 0.2},
        },
    ),
    (
        "regression",
        {
            "model": {"kind": "mlp", "hidden_layers": [8], "epochs": 8},
            "regularization": {"penalty": "l1", "strength": 1e-3},
            "preprocessing": {"impute": "mean"},
        },
    ),
]


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize(
    ("target", "spec"),
    CASES,
    ids=[
        "linear-binary",
        "linear-multiclass-poly",
        "linear-regression",
        "mlp-multiclass",
        "mlp-regression",
    ],
)
def test_onnx_predicts_what_the_service_predicts(
    api: httpx.Client, target: str, spec: dict[str, Any]
) -> None:
    job_id = _train(api, _frame(300, target, seed=1), **spec)
    session = _onnx_session(api, job_id)
    assert sorted(i.name for i in session.get_inputs()) == ["color", "flag", "item count", "x"]
    assert all(i.shape[1] == 1 for i in session.get_inputs())

    rows = _held_out(target)
    served = api.post(f"/v1/jobs/{job_id}/predict", json={"rows": _records(rows)})
    assert served.status_code == 200, served.text
    expected = served.json()
    outputs = session.run(None, _feeds(session, rows))
    names = [o.name for o in session.get_outputs()]
    if target == "regression":
        assert names == ["variable"]
        np.testing.assert_allclose(outputs[0][:, 0], expected["predictions"], rtol=RTOL, atol=0)
        return
    assert names == ["label", "probabilities"]
    labels, probabilities = outputs
    assert labels.tolist() == expected["predictions"]
    keys = [str(c) for c in expected["classes"]]
    served_proba = np.array([[row[k] for k in keys] for row in expected["probabilities"]])
    np.testing.assert_allclose(probabilities, served_proba, rtol=RTOL, atol=0)


@pytest.mark.usefixtures("worker")
def test_onnx_needs_a_succeeded_job_and_a_known_format(api: httpx.Client) -> None:
    dataset_id = upload_tiny(api)
    job = api.post(
        "/v1/jobs",
        json={"dataset_id": dataset_id, "target": "y", "model": {"kind": "mlp", "epochs": 10_000}},
    ).json()
    early = api.get(f"/v1/jobs/{job['id']}/artifact", params={"format": "onnx"})
    assert early.status_code == 409 and "succeeded" in early.json()["detail"]
    api.post(f"/v1/jobs/{job['id']}/cancel")
    assert wait_for_job(api, job["id"], timeout=30)["status"] == "cancelled"
    assert api.get(f"/v1/jobs/{job['id']}/artifact", params={"format": "onnx"}).status_code == 409
    assert api.get(f"/v1/jobs/{job['id']}/artifact", params={"format": "pmml"}).status_code == 422


@pytest.mark.usefixtures("worker")
def test_native_stays_the_default_and_an_unexportable_model_is_a_422(api: httpx.Client) -> None:
    frame = _frame(120, "binary", seed=3).rename(columns={"x": "label"})
    job_id = _train(api, frame)
    native = api.get(f"/v1/jobs/{job_id}/artifact")
    assert native.status_code == 200 and native.content[:2] == b"PK"  # the skops zip
    refused = api.get(f"/v1/jobs/{job_id}/artifact", params={"format": "onnx"})
    assert refused.status_code == 422, refused.text
    assert "'label'" in refused.json()["detail"] and "format=native" in refused.json()["detail"]


# --- the exporter alone, on hand-made models -------------------------------------------------


def _loaded(estimator: Any, classes: list[Any] | None, frame: pd.DataFrame, y: np.ndarray) -> Any:
    from service.training.artifacts import LoadedModel
    from service.training.preprocessing import build_preprocessor
    from service.training.spec import ColumnDtype, PreprocessingSpec

    schema: dict[str, ColumnDtype] = {"x": "float", "color": "categorical"}
    preprocessor = build_preprocessor(schema, PreprocessingSpec())
    estimator.fit(preprocessor.fit_transform(frame), y)
    metadata = {
        "task": "classification" if classes is not None else "regression",
        "target": "y",
        "classes": classes,
        "feature_schema": schema,
    }
    return LoadedModel("skops", metadata, preprocessor, estimator)


def _small_frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {"x": rng.normal(size=80), "color": rng.choice(["a", "b"], size=80).astype(object)}
    )


def _run_export(model: Any, frame: pd.DataFrame) -> list[np.ndarray]:
    from service.training.onnx_export import export_onnx

    session = ort.InferenceSession(export_onnx(model), providers=["CPUExecutionProvider"])
    return session.run(None, _feeds(session, frame))


@pytest.mark.parametrize("labels", [[False, True], [1.5, 2.5, 4.0]], ids=["bool", "float"])
def test_labels_keep_their_type_and_unseen_classes_get_zero(labels: list[Any]) -> None:
    from sklearn.linear_model import LogisticRegression

    frame = _small_frame()
    y = (frame["x"] > 0).astype(int).to_numpy()  # class index 2 (if any) never seen
    model = _loaded(LogisticRegression(), labels, frame, y)
    label, probabilities = _run_export(model, frame)
    served = model.predict(_records(frame))
    assert label.tolist() == served.predictions
    assert probabilities.shape == (80, len(labels))
    expected = np.array([[row[str(c)] for c in labels] for row in served.probabilities or []])
    np.testing.assert_allclose(probabilities, expected, rtol=RTOL, atol=0)
    if len(labels) == 3:
        assert (probabilities[:, 2] == 0).all()


def test_an_estimator_without_converter_is_refused_with_its_name() -> None:
    from sklearn.linear_model import HuberRegressor

    from service.training.onnx_export import OnnxExportError, export_onnx

    frame = _small_frame()
    model = _loaded(HuberRegressor(), None, frame, frame["x"].to_numpy() * 2)
    with pytest.raises(OnnxExportError, match="HuberRegressor"):
        export_onnx(model)
