"""Single L1 and elastic-net fits through glum: the echoed glum parameters reproduce the job, the
job is the optimum scikit-learn reaches on the same objective, and scikit-learn is what is stored.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import sklearn.linear_model as sklm
from glum import GeneralizedLinearRegressor
from sklearn.utils.class_weight import compute_sample_weight
from threadpoolctl import threadpool_info, threadpool_limits

from service.training.artifacts import load_artifact
from service.training.kinds.glum_fit import GLUM_GRADIENT_TOL, GLUM_THREADS, glum_threads
from service.training.preprocessing import build_preprocessor
from service.training.spec import TrainingSpec
from service.training.train import TrainingResult, prepare, train
from tests.training.helpers import breast_cancer, diabetes, mixed_table, spec

#: Tolerances of the converged scikit-learn references (their own defaults stop short).
REFERENCE_TOL = 1e-10


def train_split(table: pa.Table, s: TrainingSpec) -> tuple[np.ndarray, np.ndarray]:
    prepared = prepare(table, s)
    X = build_preprocessor(prepared.schema, s.preprocessing).fit_transform(
        prepared.frames(prepared.split.train)[0]
    )
    return X, prepared.y[prepared.split.train]


def ours(result: TrainingResult) -> tuple[np.ndarray, float]:
    coef = np.array([c["value"] for c in result.metrics["coefficients"]])
    return coef, result.metrics["intercepts"][0]["value"]


def direct_glum(native: dict[str, Any], X: np.ndarray, y: np.ndarray) -> GeneralizedLinearRegressor:
    """GeneralizedLinearRegressor(**params) fitted as native_params say (target, sample weights)."""
    target = (y == 1).astype(float) if native["params"]["family"] == "binomial" else y
    weight = native["sample_weight"]
    sample_weight = compute_sample_weight(weight, y) if weight is not None else None
    model = GeneralizedLinearRegressor(**native["params"])
    return model.fit(X, target, sample_weight=sample_weight)


def converged_sklearn(native: dict[str, Any], X: np.ndarray, y: np.ndarray) -> Any:
    """The scikit-learn estimator of the same objective (stored_as), fitted to a tight tolerance."""
    stored = native["stored_as"]
    params = {**stored["params"], "tol": REFERENCE_TOL, "max_iter": 1_000_000}
    return getattr(sklm, stored["estimator"])(**params).fit(X, y)


CASES = [
    ("diagnosis", {"penalty": "l1", "strength": 0.02}, None, "LogisticRegression"),
    ("diagnosis", {"penalty": "elasticnet", "strength": 0.02, "l1_ratio": 0.4}, None,
     "LogisticRegression"),
    ("diagnosis", {"penalty": "l1", "strength": 0.01}, "balanced", "LogisticRegression"),
    ("progression", {"penalty": "l1", "strength": 0.5}, None, "Lasso"),
    ("progression", {"penalty": "elasticnet", "strength": 0.5, "l1_ratio": 0.3}, None,
     "ElasticNet"),
]  # fmt: skip


@pytest.mark.parametrize(("target", "reg", "class_weight", "stored"), CASES)
def test_glum_fit_echoes_itself_and_equals_converged_sklearn(
    target: str, reg: dict[str, Any], class_weight: str | None, stored: str
) -> None:
    table = breast_cancer() if target == "diagnosis" else diabetes()
    s = spec(target=target, regularization=reg, class_weight=class_weight, seed=5)
    result = train(table, s)
    native = result.native_params
    assert native["module"] == "glum" and native["estimator"] == "GeneralizedLinearRegressor"
    assert native["params"]["alpha"] == reg["strength"]
    assert native["params"]["scale_predictors"] is False
    assert native["params"]["gradient_tol"] == GLUM_GRADIENT_TOL
    assert native["stored_as"]["estimator"] == stored
    assert native["sample_weight"] == class_weight
    coef, intercept = ours(result)
    if reg["penalty"] == "l1":
        assert (coef == 0).any(), "an L1 fit at this strength zeroes some weights"
    assert result.metrics["convergence"]["converged"]

    X, y = train_split(table, s)
    assert native["n_train"] == len(y)
    direct = direct_glum(native, X, y)
    np.testing.assert_allclose(coef, direct.coef_, rtol=0, atol=1e-6)
    assert intercept == pytest.approx(direct.intercept_, abs=1e-6)

    reference = converged_sklearn(native, X, y)
    scale = max(1.0, float(np.max(np.abs(reference.coef_))))
    np.testing.assert_allclose(coef, np.ravel(reference.coef_), rtol=0, atol=1e-4 * scale)
    assert intercept == pytest.approx(float(np.ravel(reference.intercept_)[0]), abs=1e-4 * scale)


def test_the_stored_model_is_scikit_learn_and_predicts_as_the_job_scored() -> None:
    s = spec(target="diagnosis", regularization={"penalty": "l1", "strength": 0.02})
    table = breast_cancer()
    result = train(table, s)
    model = load_artifact(result.artifact, sha256=result.artifact_sha256)
    assert isinstance(model.estimator, sklm.LogisticRegression)
    prepared = prepare(table, s)
    rows = table.take(pa.array(prepared.split.validation)).drop_columns(["diagnosis"])
    out = model.predict(rows)
    assert out.probabilities is not None
    truth = prepared.y[prepared.split.validation]
    classes = result.classes or []
    p_true = [p[classes[int(t)]] for p, t in zip(out.probabilities, truth, strict=True)]
    log_loss = float(-np.mean(np.log(p_true)))
    assert log_loss == pytest.approx(result.metrics["final"]["validation"]["log_loss"], rel=1e-9)


@pytest.mark.parametrize(
    ("table", "target", "reg", "engine"),
    [
        (mixed_table(), "label", {"penalty": "l1", "strength": 0.01}, "LogisticRegression"),
        (breast_cancer(), "diagnosis", {"penalty": "l2", "strength": 0.01}, "LogisticRegression"),
        (diabetes(), "progression", {"penalty": "l2", "strength": 0.01}, "Ridge"),
    ],
    ids=["multiclass-l1", "binary-l2", "regression-l2"],
)
def test_multiclass_and_l2_fits_stay_on_scikit_learn(
    table: pa.Table, target: str, reg: dict[str, Any], engine: str
) -> None:
    native = train(table, spec(target=target, regularization=reg)).native_params
    assert native["module"] == "sklearn.linear_model" and native["estimator"] == engine


def test_glum_runs_on_its_own_thread_count_and_gives_the_job_its_threads_back() -> None:
    with threadpool_limits(limits=2):
        with glum_threads():
            inside = {pool["filepath"]: pool["num_threads"] for pool in threadpool_info()}
        after = {pool["filepath"]: pool["num_threads"] for pool in threadpool_info()}
    assert inside and set(inside.values()) == {GLUM_THREADS}
    assert set(after.values()) == {2}
