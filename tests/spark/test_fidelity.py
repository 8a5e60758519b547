"""The Spark fit against converged reference fits of the same objective, and its artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.datasets import load_digits, make_classification, make_regression
from sklearn.metrics import log_loss

from service.training.artifacts import load_artifact
from service.training.engines.spark_linear import (
    SPARK_MAX_ITER,
    SPARK_TOL,
    fit_on_spark,
    split_of,
)
from service.training.preprocessing import frames_from_table
from service.training.spec import TrainingSpec
from service.training.train import train as train_locally

pytestmark = pytest.mark.spark

N_ROWS = 3000
N_FEATURES = 6


def _standardized(X: np.ndarray) -> np.ndarray:
    return (X - X.mean(axis=0)) / X.std(axis=0)


def _parquet(tmp_path: Path, frame: pd.DataFrame, name: str) -> str:
    path = tmp_path / f"{name}.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    return path.as_uri()


def _spec(target: str, regularization: dict[str, Any], **extra: Any) -> TrainingSpec:
    return TrainingSpec.model_validate(
        {
            "target": target,
            "regularization": regularization,
            "validation": {"fraction": 0.0},
            "preprocessing": {"standardize": False},
            **extra,
        }
    )


def _frame(X: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    frame["y"] = y
    return frame


def _reference_logistic(X: np.ndarray, y: np.ndarray, strength: float, l1_ratio: float) -> Any:
    """glum's binomial GLM minimises mean half-deviance (= mean log-loss) plus the same penalty."""
    from glum import GeneralizedLinearRegressor

    return GeneralizedLinearRegressor(
        family="binomial",
        alpha=strength,
        l1_ratio=l1_ratio,
        gradient_tol=1e-12,
        max_iter=10_000,
    ).fit(X, y)


@pytest.mark.parametrize(("penalty", "l1_ratio"), [("l1", 1.0), ("l2", 0.0), ("elasticnet", 0.5)])
def test_binary_logistic_equals_reference(
    spark: Any, tmp_path: Path, penalty: str, l1_ratio: float
) -> None:
    # No redundant features: a well-conditioned optimum, so coefficients are well determined.
    X, y = make_classification(
        n_samples=N_ROWS, n_features=N_FEATURES, n_informative=4, n_redundant=0, random_state=0
    )
    X = _standardized(X)
    reg: dict[str, Any] = {"penalty": penalty, "strength": 0.01}
    if penalty == "elasticnet":
        reg["l1_ratio"] = l1_ratio
    fit = fit_on_spark(spark, _parquet(tmp_path, _frame(X, y), "bin"), _spec("y", reg))
    native = fit.result.native_params
    assert native["estimator"] == "LogisticRegression"
    assert native["params"]["tol"] == SPARK_TOL == 1e-10
    assert native["params"]["maxIter"] == SPARK_MAX_ITER >= 1000
    assert native["params"]["regParam"] == 0.01
    assert native["params"]["elasticNetParam"] == l1_ratio
    reference = _reference_logistic(X, y, 0.01, l1_ratio)
    model = fit.pipeline[-1]
    np.testing.assert_allclose(model.coef_[0], reference.coef_, atol=1e-4)
    np.testing.assert_allclose(model.intercept_[0], reference.intercept_, atol=1e-4)
    if penalty == "l1":
        assert (model.coef_ == 0).sum() == (np.abs(reference.coef_) < 1e-8).sum()


def test_multinomial_logistic_equals_reference(spark: Any, tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    X, y = make_classification(
        n_samples=N_ROWS,
        n_features=N_FEATURES,
        n_informative=4,
        n_redundant=0,
        n_classes=3,
        random_state=1,
    )
    X = _standardized(X)
    strength = 0.01
    fit = fit_on_spark(
        spark,
        _parquet(tmp_path, _frame(X, y), "multi"),
        _spec("y", {"penalty": "l2", "strength": strength}),
    )
    assert fit.result.native_params["params"]["family"] == "multinomial"
    reference = LogisticRegression(C=1 / (strength * len(y)), tol=1e-12, max_iter=10_000).fit(X, y)
    model = fit.pipeline[-1]
    # Softmax is unchanged by a shift shared by all classes: compare centred intercepts.
    np.testing.assert_allclose(model.coef_, reference.coef_, atol=1e-4)
    np.testing.assert_allclose(
        model.intercept_ - model.intercept_.mean(),
        reference.intercept_ - reference.intercept_.mean(),
        atol=1e-4,
    )


@pytest.mark.parametrize(("penalty", "l1_ratio"), [("l1", 1.0), ("l2", 0.0), ("elasticnet", 0.3)])
def test_linear_regression_equals_reference(
    spark: Any, tmp_path: Path, penalty: str, l1_ratio: float
) -> None:
    """The sigma_y mapping: Spark divides its penalty by the label's std; the mapping undoes it."""
    from sklearn.linear_model import ElasticNet, Lasso, Ridge

    X, y = make_regression(
        n_samples=N_ROWS, n_features=N_FEATURES, noise=20.0, random_state=2, bias=3.0
    )
    X = _standardized(X)
    strength = 0.5
    reg: dict[str, Any] = {"penalty": penalty, "strength": strength}
    if penalty == "elasticnet":
        reg["l1_ratio"] = l1_ratio
    fit = fit_on_spark(spark, _parquet(tmp_path, _frame(X, y), "reg"), _spec("y", reg))
    native = fit.result.native_params
    sigma = float(np.std(y, ddof=1))
    assert native["estimator"] == "LinearRegression"
    assert native["sigma_y"] == pytest.approx(sigma, rel=1e-9)
    reg_param = strength * (l1_ratio + (1 - l1_ratio) * sigma)
    assert native["params"]["regParam"] == pytest.approx(reg_param, rel=1e-9)
    assert native["params"]["elasticNetParam"] == pytest.approx(
        strength * l1_ratio / reg_param, rel=1e-9
    )
    if penalty == "l2":
        reference: Any = Ridge(alpha=strength * len(y), solver="cholesky")
    elif penalty == "l1":
        reference = Lasso(alpha=strength, tol=1e-12, max_iter=100_000)
    else:
        reference = ElasticNet(alpha=strength, l1_ratio=l1_ratio, tol=1e-12, max_iter=100_000)
    reference.fit(X, y)
    model = fit.pipeline[-1]
    np.testing.assert_allclose(model.coef_, reference.coef_, atol=1e-4)
    np.testing.assert_allclose(model.intercept_, reference.intercept_, atol=1e-4)


def _mixed_frame(n: int = 4000) -> pd.DataFrame:
    """Numeric, integer and categorical inputs with missing values in each."""
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "a": rng.normal(5, 2, n),
            "b": rng.integers(0, 50, n).astype(float),
            "color": rng.choice(["red", "green", "blue", "teal"], n).astype(object),
        }
    )
    logit = 0.4 * (frame["a"] - 5) - 0.05 * (frame["b"] - 25) + (frame["color"] == "red") * 1.5
    frame["label"] = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no")
    frame["amount"] = 3 * frame["a"] + 0.2 * frame["b"] + rng.normal(0, 1, n)
    frame.loc[rng.random(n) < 0.05, "a"] = np.nan
    frame.loc[rng.random(n) < 0.05, "color"] = None
    return frame


@pytest.mark.parametrize("target", ["label", "amount"])
def test_rebuilt_pipeline_predicts_as_spark(spark: Any, tmp_path: Path, target: str) -> None:
    """The stored scikit-learn pipeline (Spark's statistics copied) predicts as Spark does."""
    frame = _mixed_frame()
    features = ["a", "b", "color"]
    uri = _parquet(tmp_path, frame[[*features, target]], f"mixed-{target}")
    spec = TrainingSpec.model_validate(
        {
            "target": target,
            "regularization": {"penalty": "elasticnet", "strength": 0.01, "l1_ratio": 0.5},
            "validation": {"fraction": 0.25, "test_fraction": 0.1},
            "seed": 7,
        }
    )
    fit = fit_on_spark(spark, uri, spec)
    result = fit.result
    final = result.report.final
    assert final is not None and final.validation is not None and final.test is not None
    assert (result.report.n_validation or 0) > 0 and (result.report.n_test or 0) > 0
    assert result.report.to_json()["objective_history"]
    names = [c.feature for c in result.report.coefficients or []]
    assert {"color=red", "color=blue", "color=green", "color=teal"} <= set(names)

    # The validation rows as Spark scored them, with their inputs (a test reads them back).
    from pyspark.sql import functions as F

    scored = fit.spark_model.transform(fit.featurized).where(F.col("_rl_split") == 1)
    spark_out = scored.select(
        "_rl_label", "prediction", *(["probability"] if target == "label" else [])
    )
    rows = spark_out.collect()
    inputs = _validation_inputs(spark, uri, spec, features)
    loaded = load_artifact(result.artifact)
    table = pa.Table.from_pandas(inputs)
    (X,) = frames_from_table(table, loaded.feature_schema, [np.arange(table.num_rows)])
    pipeline = fit.pipeline
    truth = np.array([r["_rl_label"] for r in rows])
    if target == "label":
        ours = pipeline.predict_proba(X)
        theirs = np.array([r["probability"].toArray() for r in rows])
        # The validation figures Spark computed are those of its own predictions.
        assert final.validation["log_loss"] == pytest.approx(log_loss(truth, theirs), rel=1e-9)
        assert final.validation["accuracy"] == pytest.approx(
            np.mean([r["prediction"] for r in rows] == truth), rel=1e-12
        )
    else:
        ours = pipeline.predict(X)
        theirs = np.array([r["prediction"] for r in rows])
        rmse = float(np.sqrt(np.mean((theirs - truth) ** 2)))
        assert final.validation["rmse"] == pytest.approx(rmse, rel=1e-9)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-12)
    # The artifact holds the same pipeline as the one compared.
    np.testing.assert_allclose(
        loaded.preprocessor.transform(X), pipeline[0].transform(X), rtol=1e-12
    )
    assert loaded.metadata["native_params"]["family"] == "spark"


def _validation_inputs(
    spark: Any, uri: str, spec: TrainingSpec, features: list[str]
) -> pd.DataFrame:
    """The raw input columns of the validation rows, in Spark's order (the same split rule)."""
    from pyspark.sql import functions as F

    df = spark.read.parquet(uri).where(F.col(spec.target).isNotNull())
    picked = df.withColumn("_split", split_of(spec)).where(F.col("_split") == 1)
    return picked.select(*features).toPandas()


def test_l1_sparsity_on_digits_matches_the_local_engine(spark: Any, tmp_path: Path) -> None:
    """Strength 0.03 zeroes about 87% of the weights; both solvers converge in fewer steps than at
    0.01 (Spark 101 iterations against 118)."""
    digits = load_digits(as_frame=True).frame
    uri = _parquet(tmp_path, digits, "digits")
    spec = TrainingSpec.model_validate(
        {
            "target": "target",
            "regularization": {"penalty": "l1", "strength": 0.03},
            "validation": {"fraction": 0.0},
        }
    )
    spark_fit = fit_on_spark(spark, uri, spec)
    local = train_locally(pq.read_table(tmp_path / "digits.parquet"), spec)
    spark_sparsity = (
        spark_fit.result.report.weights.sparsity if spark_fit.result.report.weights else None
    )
    local_sparsity = local.report.weights.sparsity if local.report.weights else None
    assert spark_sparsity is not None and local_sparsity is not None
    assert abs(spark_sparsity - local_sparsity) <= 0.01, (spark_sparsity, local_sparsity)
