"""Convention fidelity for linear models: the echoed native parameters reproduce the fit exactly,
and the fit is the optimum of mean_loss + strength*(l1_ratio*|w|_1 + (1-l1_ratio)/2*|w|_2^2)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import sklearn.linear_model as sklm

from service.training.preprocessing import build_preprocessor
from service.training.spec import TrainingSpec
from service.training.train import TrainingResult, prepare, train
from tests.training.helpers import breast_cancer, diabetes, mixed_table, spec
from tests.training.test_glum_fit import direct_glum


def direct_fit(
    table: pa.Table, s: TrainingSpec, result: TrainingResult
) -> tuple[Any, np.ndarray, np.ndarray]:
    """Refit scikit-learn directly from the echoed params on the same preprocessed train split."""
    prepared = prepare(table, s)
    X = build_preprocessor(prepared.schema, s.preprocessing).fit_transform(
        prepared.frames(prepared.split.train)[0]
    )
    y = prepared.y[prepared.split.train]
    native = result.native_params
    assert native["n_train"] == len(y) == result.metrics["n_train"]
    if native["module"] == "glum":  # glum's own fit: see test_glum_fit.py
        return direct_glum(native, X, y), X, y
    params = dict(native["params"])
    if params.get("C", 0) is None:
        params["C"] = np.inf
    model = getattr(sklm, native["estimator"])(**params).fit(X, y)
    return model, X, y


def ours(result: TrainingResult) -> np.ndarray:
    return np.array([c["value"] for c in result.metrics["coefficients"]])


CLASSIFICATION = [
    ({"penalty": "l2", "strength": 1e-2}, "lbfgs"),
    ({"penalty": "l1", "strength": 2e-2}, "saga"),
    ({"penalty": "elasticnet", "strength": 2e-2, "l1_ratio": 0.5}, "saga"),
    ({"penalty": "none"}, "lbfgs"),
]


@pytest.mark.parametrize(("reg", "solver"), CLASSIFICATION)
def test_logistic_matches_direct_sklearn_fit(reg: dict[str, Any], solver: str) -> None:
    table = mixed_table()  # three classes, mixed column kinds
    s = spec(target="label", regularization=reg, seed=3)
    result = train(table, s)
    assert result.native_params["params"]["solver"] == solver
    model, _, _ = direct_fit(table, s, result)
    np.testing.assert_allclose(ours(result), model.coef_.ravel(), rtol=0, atol=1e-6)
    intercepts = [i["value"] for i in result.metrics["intercepts"]]
    np.testing.assert_allclose(intercepts, model.intercept_, rtol=0, atol=1e-6)
    assert [c["class"] for c in result.metrics["coefficients"][:: len(model.coef_[0])]] == [
        0,
        10,
        20,
    ]


REGRESSION = [
    ({"penalty": "none"}, "LinearRegression"),
    ({"penalty": "l2", "strength": 0.05}, "Ridge"),
    ({"penalty": "l1", "strength": 0.5}, "GeneralizedLinearRegressor"),  # stored as Lasso
    ({"penalty": "elasticnet", "strength": 0.5, "l1_ratio": 0.3}, "GeneralizedLinearRegressor"),
]


@pytest.mark.parametrize(("reg", "estimator"), REGRESSION)
def test_regression_matches_direct_sklearn_fit(reg: dict[str, Any], estimator: str) -> None:
    table = diabetes()
    s = spec(target="progression", regularization=reg, validation={"test_fraction": 0.1})
    result = train(table, s)
    assert result.native_params["estimator"] == estimator
    model, _, _ = direct_fit(table, s, result)
    np.testing.assert_allclose(ours(result), model.coef_.ravel(), rtol=0, atol=1e-6)
    assert [c["class"] for c in result.metrics["coefficients"]] == [None] * 10


def test_ridge_is_the_closed_form_optimum_of_the_convention() -> None:
    """min 1/(2n)|y - Xw - b|^2 + s/2 |w|^2  =>  (Xc'Xc/n + s I) w = Xc'yc/n."""
    table, strength = diabetes(), 0.1
    s = spec(target="progression", regularization={"penalty": "l2", "strength": strength})
    result = train(table, s)
    _, X, y = direct_fit(table, s, result)
    Xc, yc, n = X - X.mean(0), y - y.mean(), len(y)
    w = np.linalg.solve(Xc.T @ Xc / n + strength * np.eye(X.shape[1]), Xc.T @ yc / n)
    np.testing.assert_allclose(ours(result), w, rtol=1e-8, atol=1e-8)


def test_logistic_l2_is_a_stationary_point_of_the_convention() -> None:
    """Gradient of mean log-loss + s/2 |w|^2 vanishes at the fitted weights (binary)."""
    table, strength = breast_cancer(), 0.01
    s = spec(target="diagnosis", regularization={"penalty": "l2", "strength": strength})
    result = train(table, s)
    _, X, y = direct_fit(table, s, result)
    w = ours(result)
    b = result.metrics["intercepts"][0]["value"]
    p = 1 / (1 + np.exp(-(X @ w + b)))
    grad_w = X.T @ (p - y) / len(y) + strength * w
    grad_b = np.mean(p - y)
    assert np.max(np.abs(grad_w)) < 1e-5 and abs(grad_b) < 1e-5


def test_lasso_satisfies_the_l1_optimality_conditions() -> None:
    """|X'r/n| <= s where w = 0, and X'r/n = s*sign(w) elsewhere (r = y - Xw - b)."""
    table, strength = diabetes(), 1.0
    s = spec(target="progression", regularization={"penalty": "l1", "strength": strength})
    result = train(table, s)
    _, X, y = direct_fit(table, s, result)
    w = ours(result)
    assert (w == 0).any() and (w != 0).any()
    r = y - X @ w - np.mean(y - X @ w)
    corr = X.T @ r / len(y)
    assert np.all(np.abs(corr[w == 0]) <= strength + 1e-4)
    np.testing.assert_allclose(corr[w != 0], strength * np.sign(w[w != 0]), atol=1e-4)


def test_raising_l1_strength_raises_sparsity() -> None:
    table = breast_cancer(n_features=30)
    sparsity = []
    for strength in (1e-3, 1e-2, 1e-1):
        result = train(
            table, spec(target="diagnosis", regularization={"penalty": "l1", "strength": strength})
        )
        sparsity.append(result.metrics["weights"]["sparsity"])
        assert result.metrics["weights"]["n_zero"] == sum(
            c["value"] == 0.0 for c in result.metrics["coefficients"]
        )
    assert sparsity[0] < sparsity[1] < sparsity[2]
    assert sparsity[2] > 0.5


def test_zero_strength_is_no_penalty() -> None:
    table = diabetes()
    a = train(table, spec(target="progression", regularization={"penalty": "l1", "strength": 0}))
    b = train(table, spec(target="progression", regularization={"penalty": "none"}))
    assert a.native_params["estimator"] == b.native_params["estimator"] == "LinearRegression"
    assert ours(a).tolist() == ours(b).tolist()


def test_class_weight_balanced_reaches_the_estimator() -> None:
    result = train(mixed_table(), spec(target="label", class_weight="balanced"))
    assert result.native_params["params"]["class_weight"] == "balanced"
    plain = train(mixed_table(), spec(target="label"))
    assert ours(result).tolist() != ours(plain).tolist()
