"""Artifacts: predict round trips through the bytes, input checking, integrity and trust."""

from __future__ import annotations

import io
import json
import os
import zipfile
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import skops.io as sio
from sklearn.metrics import log_loss
from sklearn.preprocessing import FunctionTransformer

from service.training.artifacts import LoadedModel, load_artifact, load_model, sha256_hex
from service.training.errors import (
    ArtifactError,
    ArtifactIntegrityError,
    PredictionInputError,
    UntrustedArtifactError,
)
from service.training.preprocessing import frame_from_rows
from service.training.train import TrainingResult, prepare, train
from tests.training.helpers import diabetes, mixed_table, spec

LINEAR = spec(target="label", validation={"fraction": 0.25})
MLP = spec(
    target="label",
    model={"kind": "mlp", "hidden_layers": [16], "epochs": 10},
    validation={"fraction": 0.25},
)


@pytest.fixture(scope="module")
def linear_result() -> TrainingResult:
    return train(mixed_table(), LINEAR)


@pytest.fixture(scope="module")
def mlp_result() -> TrainingResult:
    return train(mixed_table(), MLP, device="cpu")


def validation_rows(s: Any) -> tuple[pa.Table, np.ndarray]:
    """The validation split's feature rows and labels, as train() split them."""
    table = mixed_table()
    prepared = prepare(table, s)
    rows = table.take(pa.array(prepared.split.validation)).drop_columns(["label"])
    return rows, table.column("label").to_numpy()[prepared.split.validation]


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_loaded_model_reproduces_in_process_metrics(
    kind: str, linear_result: TrainingResult, mlp_result: TrainingResult
) -> None:
    result, s = (linear_result, LINEAR) if kind == "linear" else (mlp_result, MLP)
    model = load_artifact(result.artifact, sha256=result.artifact_sha256)
    assert model.kind == ("skops" if kind == "linear" else "mlp-zip") == result.artifact_kind
    rows, labels = validation_rows(s)
    out = model.predict(rows)
    assert out.classes == [0, 10, 20] == result.classes
    assert all(type(p) is int for p in out.predictions), "int labels stay ints"
    assert out.probabilities is not None and set(out.probabilities[0]) == {"0", "10", "20"}
    proba = np.array([[p[k] for k in ("0", "10", "20")] for p in out.probabilities])
    final = result.metrics["final"]["validation"]
    assert np.mean(np.array(out.predictions) == labels) == pytest.approx(final["accuracy"])
    tol = 1e-9 if kind == "linear" else 1e-6
    assert log_loss(labels, proba, labels=[0, 10, 20]) == pytest.approx(final["log_loss"], rel=tol)
    # list[dict] rows predict the same as the Arrow table.
    again = model.predict(rows.to_pylist())
    assert again.predictions == out.predictions
    np.testing.assert_allclose(
        [[p[k] for k in ("0", "10", "20")] for p in again.probabilities or []], proba, atol=1e-12
    )


def test_regression_round_trip_and_metadata() -> None:
    table = diabetes()
    result = train(table, spec(target="progression", validation={"fraction": 0.0}))
    model = load_artifact(result.artifact, sha256=result.artifact_sha256)
    out = model.predict(table.drop_columns(["progression"]).slice(0, 50))
    assert out.classes is None and out.probabilities is None
    rmse = np.sqrt(
        np.mean((np.array(out.predictions) - table.column("progression").to_numpy()[:50]) ** 2)
    )
    assert rmse < 70 and all(isinstance(p, float) for p in out.predictions)
    meta = model.metadata
    assert meta["feature_schema"] == {name: "float" for name in table.column_names[:-1]}
    assert set(meta["versions"]) >= {"python", "sklearn", "torch", "numpy"}
    assert meta["spec"]["target"] == "progression" and meta["task"] == "regression"
    assert "final" not in meta  # metrics live in the job record, not the artifact


def test_mlp_zip_members_and_architecture(mlp_result: TrainingResult) -> None:
    with zipfile.ZipFile(io.BytesIO(mlp_result.artifact)) as zf:
        assert set(zf.namelist()) == {
            "weights.safetensors",
            "architecture.json",
            "preprocessing.skops",
        }
        record = json.loads(zf.read("architecture.json"))
    assert record["architecture"]["hidden_layers"] == [16]
    assert record["classes"] == [0, 10, 20]
    assert record["feature_schema"] == {
        "x": "float",
        "k": "integer",
        "b": "boolean",
        "color": "categorical",
    }
    assert record["versions"]["torch"]


def test_input_problems_name_columns_rows_and_types(linear_result: TrainingResult) -> None:
    model = load_artifact(linear_result.artifact)
    with pytest.raises(PredictionInputError) as info:
        model.predict([{"x": 1.0, "k": 2, "b": True, "colour": "red"}])
    fields = {p["field"]: p["message"] for p in info.value.problems}
    assert "missing" in fields["color"] and "not a feature" in fields["colour"]

    with pytest.raises(PredictionInputError) as info:
        model.predict(
            [
                {"x": 1.0, "k": 2, "b": True, "color": "red"},
                {"x": "high", "k": 2.5, "b": "yes", "color": 3},
            ]
        )
    fields = {p["field"]: p["message"] for p in info.value.problems}
    assert set(fields) == {"rows[1].x", "rows[1].k", "rows[1].b", "rows[1].color"}
    assert "row 1, column 'x'" in fields["rows[1].x"] and "str 'high'" in fields["rows[1].x"]

    table = pa.table({"x": ["1.0", None], "k": [1, 2], "b": [True, False], "color": ["red", "red"]})
    with pytest.raises(PredictionInputError) as info:
        model.predict(table)
    assert [p["field"] for p in info.value.problems] == ["rows[0].x"]


def test_target_column_in_prediction_rows_is_ignored(linear_result: TrainingResult) -> None:
    model = load_artifact(linear_result.artifact)
    row = {"x": 0.5, "k": 1, "b": False, "color": "blue"}
    assert model.predict([{**row, "label": 10}]).predictions == model.predict([row]).predictions


def test_unseen_category_encodes_as_no_known_category(linear_result: TrainingResult) -> None:
    model = load_artifact(linear_result.artifact)
    row = {"x": 0.5, "k": 1, "b": False, "color": "purple"}
    encoded = model.preprocessor.transform(frame_from_rows([row], model.feature_schema))
    names = model.metadata["feature_names_out"]
    onehot = [i for i, n in enumerate(names) if n.startswith("color=")]
    assert len(onehot) == 3 and not encoded[0, onehot].any()
    out = model.predict([row])
    assert out.predictions[0] in (0, 10, 20)


def test_missing_values_are_imputed_from_the_training_split(linear_result: TrainingResult) -> None:
    model: LoadedModel = load_artifact(linear_result.artifact)
    columns = model.preprocessor.named_steps["columns"]
    num = columns.named_transformers_["num"].named_steps["impute"]
    cat = columns.named_transformers_["cat"].named_steps["impute"]
    median_x, median_k, median_b = num.statistics_
    most_frequent = cat.statistics_[0]
    with_missing = model.predict([{"x": None, "k": None, "b": None, "color": None}])
    explicit = model.predict(
        [
            {
                "x": float(median_x),
                "k": int(median_k),
                "b": bool(median_b),
                "color": str(most_frequent),
            }
        ]
    )
    assert with_missing.predictions == explicit.predictions
    assert with_missing.probabilities is not None and explicit.probabilities is not None
    assert with_missing.probabilities[0] == pytest.approx(explicit.probabilities[0])


def test_sha256_mismatch_is_refused(linear_result: TrainingResult) -> None:
    data = linear_result.artifact
    assert sha256_hex(data) == linear_result.artifact_sha256
    with pytest.raises(ArtifactIntegrityError):
        load_artifact(data, sha256="0" * 64)
    tampered = bytearray(data)
    tampered[len(tampered) // 2] ^= 0xFF
    with pytest.raises(ArtifactIntegrityError):
        load_artifact(bytes(tampered), sha256=linear_result.artifact_sha256)


def test_mlp_member_checksums_are_verified(mlp_result: TrainingResult) -> None:
    src = zipfile.ZipFile(io.BytesIO(mlp_result.artifact))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as dst:
        for name in src.namelist():
            blob = src.read(name)
            if name == "weights.safetensors":
                assert blob[-4:] != b"\x00\x00\x00\x40"
                blob = blob[:-4] + b"\x00\x00\x00\x40"  # the last float becomes 2.0
            dst.writestr(name, blob)
    with pytest.raises(ArtifactIntegrityError):
        load_artifact(buffer.getvalue())


def test_untrusted_skops_types_are_refused() -> None:
    evil = sio.dumps({"metadata_json": "{}", "pipeline": FunctionTransformer(func=os.system)})
    with pytest.raises(UntrustedArtifactError) as info:
        load_artifact(evil, sha256=sha256_hex(evil))
    assert any("system" in t for t in info.value.untrusted)


def test_untrusted_types_inside_an_mlp_zip_are_refused(mlp_result: TrainingResult) -> None:
    src = zipfile.ZipFile(io.BytesIO(mlp_result.artifact))
    record = json.loads(src.read("architecture.json"))
    evil = sio.dumps(FunctionTransformer(func=os.system))
    record["members"]["preprocessing.skops"] = sha256_hex(evil)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as dst:
        dst.writestr("architecture.json", json.dumps(record))
        dst.writestr("weights.safetensors", src.read("weights.safetensors"))
        dst.writestr("preprocessing.skops", evil)
    with pytest.raises(UntrustedArtifactError):
        load_artifact(buffer.getvalue())


def test_garbage_bytes_are_an_artifact_error() -> None:
    with pytest.raises(ArtifactError):
        load_artifact(b"not a model at all")


def test_empty_prediction_input(linear_result: TrainingResult) -> None:
    model = load_artifact(linear_result.artifact)
    empty = pa.table(
        {
            "x": pa.array([], pa.float64()),
            "k": pa.array([], pa.int64()),
            "b": pa.array([], pa.bool_()),
            "color": pa.array([], pa.string()),
        }
    )
    out = model.predict(empty)
    assert out.predictions == [] and out.probabilities == []


def test_boolean_labels_round_trip_as_bools() -> None:
    table = mixed_table(n=120)
    result = train(table, spec(target="b"))
    assert result.classes == [False, True]
    model = load_artifact(result.artifact)
    out = model.predict(table.drop_columns(["b"]).slice(0, 5))
    assert all(type(p) is bool for p in out.predictions)
    assert out.probabilities is not None and set(out.probabilities[0]) == {"False", "True"}
    assert model.predict([]).predictions == []


# -- the loader people call on a downloaded file -------------------------------------------------


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_load_model_predicts_like_scikit_learn_on_raw_columns(
    kind: str, linear_result: TrainingResult, mlp_result: TrainingResult, tmp_path: Any
) -> None:
    result, s = (linear_result, LINEAR) if kind == "linear" else (mlp_result, MLP)
    path = tmp_path / f"model.{'skops' if kind == 'linear' else 'zip'}"
    path.write_bytes(result.artifact)
    model = load_model(path, sha256=result.artifact_sha256)
    rows, labels = validation_rows(s)
    service = load_artifact(result.artifact).predict(rows)
    proba = model.predict_proba(rows.to_pandas())
    assert model.classes_ is not None and list(model.classes_) == service.classes
    assert proba.shape == (rows.num_rows, len(service.classes or []))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    expected = [[p[str(c)] for c in service.classes or []] for p in service.probabilities or []]
    np.testing.assert_allclose(proba, expected)
    # The same answer from a DataFrame, a pyarrow Table and a list of row dicts.
    for given in (rows.to_pandas(), rows, rows.to_pylist()):
        assert list(model.predict(given)) == service.predictions
    assert list(model.feature_names_in_) == list(load_artifact(result.artifact).feature_schema)
    assert set(model.predict(rows)) <= set(labels.tolist()) | set(service.classes or [])


def test_load_model_checks_the_sha256_and_says_what_a_regressor_lacks(tmp_path: Any) -> None:
    result = train(diabetes(), spec(target="progression"))
    path = tmp_path / "model.skops"
    path.write_bytes(result.artifact)
    with pytest.raises(ArtifactIntegrityError):
        load_model(path, sha256="0" * 64)
    model = load_model(path)
    rows = diabetes().drop_columns(["progression"]).slice(0, 5)
    assert model.classes_ is None and model.predict(rows).shape == (5,)
    with pytest.raises(AttributeError, match="no predict_proba"):
        model.predict_proba(rows)
    with pytest.raises(PredictionInputError, match="missing"):
        model.predict([{"age": 0.1}])
    with pytest.raises(TypeError, match="list of rows"):
        model.predict({"age": 0.1})
