"""train(): splits, the held-out test set, missing targets, column types, JSON-ready results."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from service.training.errors import SpecError, TrainingCancelled
from service.training.preprocessing import column_values, frames_from_table, summarize_table
from service.training.train import prepare, split_indices, train
from tests.training.helpers import breast_cancer, diabetes, mixed_table, spec


def test_result_shape_and_json_safety() -> None:
    result = train(
        breast_cancer(),
        spec(
            target="diagnosis",
            regularization={"penalty": "none"},
            validation={"fraction": 0.2, "test_fraction": 0.1},
        ),
    )
    m = result.metrics
    assert result.task == "classification" and result.classes == ["benign", "malignant"]
    assert set(m["final"]) == {"train", "validation", "test"}
    assert set(m["final"]["train"]) >= {
        "accuracy",
        "balanced_accuracy",
        "f1_macro",
        "log_loss",
        "roc_auc",
        "loss",
    }
    assert m["n_train"] + m["n_validation"] + m["n_test"] == 569
    assert (m["n_validation"], m["n_test"]) == (114, 57)
    assert m["best_epoch"] is None and m["fit_seconds"] >= 0
    gap = m["generalization_gap"]
    assert gap["score"] == pytest.approx(
        m["final"]["train"]["accuracy"] - m["final"]["validation"]["accuracy"]
    )
    assert gap["loss"] == pytest.approx(
        m["final"]["validation"]["log_loss"] - m["final"]["train"]["log_loss"]
    )
    json.dumps(m, allow_nan=False)
    json.dumps(result.native_params, allow_nan=False)
    assert result.native_params["params"]["C"] is None
    assert result.artifact_sha256 is not None and len(result.artifact_sha256) == 64
    assert result.artifact_kind == "skops"


def test_no_validation_means_no_gap_and_no_validation_metrics() -> None:
    result = train(diabetes(), spec(target="progression", validation={"fraction": 0.0}))
    assert "validation" not in result.metrics["final"]
    assert result.metrics["generalization_gap"] is None
    assert set(result.metrics["final"]["train"]) == {"n", "rmse", "mae", "r2", "loss"}


def test_test_split_never_influences_the_fit() -> None:
    """Scrambled test-row targets change test metrics only (linear, early-stopped MLP)."""
    table = diabetes()
    for model in (
        {"kind": "linear"},
        {"kind": "mlp", "hidden_layers": [8], "epochs": 30, "batch_size": 32},
    ):
        reg: dict[str, Any] = {"penalty": "l2", "strength": 1e-3}
        if model["kind"] == "mlp":
            reg["early_stopping"] = {"patience": 3}
        s = spec(
            target="progression",
            model=model,
            regularization=reg,
            validation={"fraction": 0.2, "test_fraction": 0.2, "stratify": False},
        )
        test_rows = prepare(table, s).split.test
        y = table.column("progression").to_numpy().copy()
        y[test_rows] = np.random.default_rng(0).permutation(y[test_rows]) * 3.0
        scrambled = table.set_column(
            table.schema.get_field_index("progression"), "progression", pa.array(y)
        )
        a, b = train(table, s, device="cpu"), train(scrambled, s, device="cpu")
        assert a.metrics["final"]["train"] == b.metrics["final"]["train"]
        assert a.metrics["final"]["validation"] == b.metrics["final"]["validation"]
        assert a.metrics["final"]["test"] != b.metrics["final"]["test"]
        if model["kind"] == "mlp":
            assert a.metrics["history"] == b.metrics["history"]


def test_rows_without_a_target_are_dropped() -> None:
    table = mixed_table(n=100)
    labels = table.column("label").to_pylist()
    labels[:7] = [None] * 7
    table = table.set_column(4, "label", pa.array(labels, pa.int64()))
    result = train(table, spec(target="label", validation={"fraction": 0.2}))
    assert result.metrics["n_rows_dropped_missing_target"] == 7
    assert result.metrics["n_train"] + result.metrics["n_validation"] == 93


def test_split_is_deterministic_and_stratified() -> None:
    labels = np.array([0] * 80 + [1] * 20)
    a = split_indices(100, spec(target="t").validation, seed=5, stratify_labels=labels)
    b = split_indices(100, spec(target="t").validation, seed=5, stratify_labels=labels)
    assert a.stratified and np.array_equal(a.validation, b.validation)
    assert labels[a.validation].sum() == 4  # 20% of the 20 positives
    c = split_indices(100, spec(target="t").validation, seed=6, stratify_labels=labels)
    assert not np.array_equal(a.validation, c.validation)
    lonely = np.array([0] * 99 + [1])  # one row of class 1 cannot be stratified
    assert not split_indices(100, spec(target="t").validation, 0, stratify_labels=lonely).stratified


def test_spec_errors_come_from_train_too() -> None:
    table = mixed_table(n=50)
    with pytest.raises(SpecError) as info:
        train(table, spec(target="label", regularization={"dropout": 0.5}, features=["x", "zz"]))
    assert {p["field"] for p in info.value.problems} == {"regularization.dropout", "features[1]"}


def test_unsupported_column_types() -> None:
    table = mixed_table(n=60).append_column(
        "when", pa.array(pd.date_range("2024-01-01", periods=60).to_numpy())
    )
    summaries, unsupported = summarize_table(table)
    assert "when" in unsupported and "when" not in [c.name for c in summaries]
    result = train(table, spec(target="label"))  # default features skip it, and say so
    assert "when" in result.metrics["ignored_columns"]
    with pytest.raises(SpecError) as info:
        train(table, spec(target="label", features=["x", "when"]))
    assert info.value.problems[0]["field"] == "features[1]"
    assert "timestamp" in info.value.problems[0]["message"]


def test_string_columns_from_pandas_3_and_dictionaries() -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "city": rng.choice(["a", "b", "c"], 120),  # pandas 3: the 'str' dtype
            "v": rng.normal(size=120),
        }
    )
    frame["y"] = (frame["v"] + (frame["city"] == "a") > 0.5).map({True: "yes", False: "no"})
    table = pa.Table.from_pandas(frame, preserve_index=False)
    as_dict = table.set_column(0, "city", table.column("city").dictionary_encode())
    for t in (table, as_dict):
        summaries, _ = summarize_table(t)
        assert {c.name: c.dtype for c in summaries} == {
            "city": "categorical",
            "v": "float",
            "y": "categorical",
        }
        result = train(t, spec(target="y"))
        names = [c["feature"] for c in result.metrics["coefficients"]]
        assert names == ["v", "city=a", "city=b", "city=c"]


def test_polynomial_features_are_named_and_counted() -> None:
    table = mixed_table(n=80).select(["x", "k", "label"])
    result = train(table, spec(target="label", preprocessing={"polynomial_degree": 2}))
    names = [c["feature"] for c in result.metrics["coefficients"] if c["class"] == 0]
    assert names == ["x", "k", "x^2", "x k", "k^2"]
    assert result.metrics["n_inputs"] == 5


def test_too_few_rows_is_a_spec_error() -> None:
    table = mixed_table(n=3)
    with pytest.raises(SpecError) as info:
        train(table, spec(target="x", validation={"fraction": 0.5}))
    assert info.value.problems[0]["field"] == "validation.fraction"


def test_should_stop_cancels_a_linear_fit() -> None:
    with pytest.raises(TrainingCancelled):
        train(diabetes(), spec(target="progression"), should_stop=lambda: True)


def test_regression_task_and_metrics_units() -> None:
    result = train(diabetes(), spec(target="progression", regularization={"strength": 1e-3}))
    assert result.task == "regression" and "float" in result.task_reason
    train_m = result.metrics["final"]["train"]
    assert train_m["loss"] == pytest.approx(0.5 * train_m["rmse"] ** 2)
    assert result.native_params["estimator"] == "Ridge"


@pytest.mark.parametrize("with_categorical", [False, True])
def test_split_frames_hold_each_columns_values_at_their_rows(with_categorical: bool) -> None:
    table = mixed_table(300)
    x = table.column("x").to_numpy().copy()
    x[[3, 50]] = [np.nan, np.inf]
    table = table.set_column(0, "x", pa.array(x)).set_column(
        1, "k", pa.chunked_array([table.column("k")[:100], [None] * 1, table.column("k")[101:]])
    )
    schema: dict[str, Any] = {"x": "float", "k": "integer", "b": "boolean"}
    if with_categorical:
        schema["color"] = "categorical"
    rows = [np.array([299, 0, 3, 50, 100]), np.arange(0, 300, 7), np.array([], dtype=np.int64)]

    frames = frames_from_table(table, schema, rows)

    columns = {name: column_values(table.column(name), dtype) for name, dtype in schema.items()}
    for frame, picked in zip(frames, rows, strict=True):
        assert list(frame.columns) == list(schema) and len(frame) == len(picked)
        for name, values in columns.items():
            expected = pd.Series(values[picked], name=name, dtype=frame[name].dtype)
            pd.testing.assert_series_equal(frame[name], expected)
    first = frames[0]
    assert np.isnan(first["x"].iloc[2]) and np.isnan(first["x"].iloc[3])  # NaN and inf: missing
    assert np.isnan(first["k"].iloc[4])  # the null in the second chunk
    assert first["k"].iloc[0] == table.column("k")[299].as_py()
    if with_categorical:
        assert first["color"].tolist() == [table.column("color")[i].as_py() for i in rows[0]]
