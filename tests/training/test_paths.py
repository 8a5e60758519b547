"""fit_path(): a warm-started path lands on the same optima as independent fits, and reports them
as train() does."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from service.training.errors import SpecError, TrainingCancelled
from service.training.folds import sweep_splits
from service.training.kinds import registry
from service.training.paths import fit_path
from service.training.preprocessing import build_preprocessor
from service.training.spec import TrainingSpec
from service.training.train import GivenSplit, prepare, train
from tests.training.helpers import breast_cancer, diabetes, mixed_table, spec

#: Solver tolerance of the reference fits: native_params' own (saga 1e-4) stops up to a few
#: 1e-3 short of the optimum on these correlated features, and the reference must be the optimum.
REFERENCE_TOL = 1e-9


def reference_coef(
    table: pa.Table, s: TrainingSpec, strength: float, split: GivenSplit | None = None
) -> np.ndarray:
    """An independent scikit-learn fit with native_params for this strength, same preprocessing."""
    s = s.model_copy(
        update={"regularization": s.regularization.model_copy(update={"strength": strength})}
    )
    prepared = prepare(table, s, split=split)
    rows = prepared.split.train
    X = build_preprocessor(prepared.schema, s.preprocessing).fit_transform(prepared.frames(rows)[0])
    kind = registry.kind_of(s)
    native = kind.native_params(s, prepared.resolved.task, len(rows))
    model = kind.estimator_from_native(native)
    assert native["n_train"] == len(rows)
    if "tol" in native["params"]:
        model.set_params(tol=REFERENCE_TOL, max_iter=100_000)
    model.fit(X, prepared.y[rows])
    return np.asarray(model.coef_, dtype=np.float64).ravel()


def values(point: dict[str, Any]) -> np.ndarray:
    return np.array([c["value"] for c in point["coefficients"]], dtype=np.float64)


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b)) / max(float(np.linalg.norm(b)), 1e-12)


CASES = [
    ("diagnosis", {"penalty": "l1"}, [0.1, 0.03, 0.01]),
    ("diagnosis", {"penalty": "l2"}, [1.0, 0.1, 0.01, 0.001]),
    ("diagnosis", {"penalty": "elasticnet", "l1_ratio": 0.5}, [0.1, 0.01, 0.003]),
    ("progression", {"penalty": "l1"}, [10.0, 1.0, 0.1, 0.01]),
    ("progression", {"penalty": "l2"}, [10.0, 1.0, 0.1, 0.01]),
    ("progression", {"penalty": "elasticnet", "l1_ratio": 0.3}, [10.0, 1.0, 0.1, 0.01]),
]


@pytest.mark.parametrize(("target", "reg", "strengths"), CASES)
def test_path_matches_independent_sklearn_fits(
    target: str, reg: dict[str, Any], strengths: list[float]
) -> None:
    table = breast_cancer() if target == "diagnosis" else diabetes()
    s = spec(target=target, regularization=reg)
    path = fit_path(table, s, list(reversed(strengths)))  # any order in, strongest first out
    assert [p["strength"] for p in path] == strengths
    for point in path:
        ref = reference_coef(table, s, point["strength"])
        assert relative_error(values(point), ref) < 1e-3, point["strength"]
        assert point["penalty"] == reg["penalty"] and point["converged"]
        assert point["engine"].startswith("glum")


def test_multiclass_path_falls_back_to_warm_started_sklearn() -> None:
    table = mixed_table()  # three classes: glum has no multinomial family
    s = spec(target="label", regularization={"penalty": "l1"})
    path = fit_path(table, s, [0.1, 0.01, 0.003])
    for point in path:
        assert point["engine"].startswith("sklearn")
        ref = reference_coef(table, s, point["strength"])
        assert relative_error(values(point), ref) < 1e-3
        assert {c["class"] for c in point["coefficients"]} == {0, 10, 20}
        assert set(point["final"]["validation"]) >= {"accuracy", "log_loss", "loss"}


def test_path_points_report_what_train_reports() -> None:
    table = breast_cancer()
    reg = {"penalty": "l1", "strength": 0.02}
    s = spec(target="diagnosis", regularization=reg, validation={"test_fraction": 0.1})
    point = fit_path(table, s, [0.02])[0]
    result = train(table, s)
    m = result.metrics
    assert set(point["final"]) == {"train", "validation"}  # the test rows stay unused
    for part in ("train", "validation"):
        assert point["final"][part].keys() == m["final"][part].keys()
        for key, value in m["final"][part].items():
            assert point["final"][part][key] == pytest.approx(value, rel=2e-3, abs=2e-3), key
    assert [c["feature"] for c in point["coefficients"]] == [
        c["feature"] for c in m["coefficients"]
    ]
    assert [c["class"] for c in point["coefficients"]] == [c["class"] for c in m["coefficients"]]
    assert point["intercepts"][0]["class"] == m["intercepts"][0]["class"] == "malignant"
    assert point["weights"].keys() == m["weights"].keys()
    assert point["n_train"] == m["n_train"] and point["n_iter"] >= 1 and point["fit_seconds"] > 0


def test_l1_path_satisfies_the_optimality_conditions_and_grows_denser() -> None:
    """Logistic L1: |grad_j| <= s where w_j = 0 and grad_j = -s*sign(w_j) elsewhere."""
    table = breast_cancer(n_features=30)
    s = spec(target="diagnosis", regularization={"penalty": "l1"})
    strengths = list(np.logspace(-1, -3, 6))
    path = fit_path(table, s, strengths)
    prepared = prepare(table, s)
    rows = prepared.split.train
    X = build_preprocessor(prepared.schema, s.preprocessing).fit_transform(prepared.frames(rows)[0])
    y = prepared.y[rows]
    for point in path:
        w, b, strength = values(point), point["intercepts"][0]["value"], point["strength"]
        p = 1 / (1 + np.exp(-(X @ w + b)))
        grad = X.T @ (p - y) / len(y)
        assert abs(np.mean(p - y)) < 1e-5
        assert np.all(np.abs(grad[w == 0]) <= strength + 1e-5)
        np.testing.assert_allclose(grad[w != 0], -strength * np.sign(w[w != 0]), atol=1e-5)
    n_zero = [p["weights"]["n_zero"] for p in path]
    assert n_zero == sorted(n_zero, reverse=True) and n_zero[0] > n_zero[-1]


def test_path_on_a_given_split_and_balanced_classes() -> None:
    table = breast_cancer()
    s = spec(target="diagnosis", regularization={"penalty": "l2"}, class_weight="balanced")
    split = sweep_splits(table, s, folds=3, validation_fraction=None).splits[2]
    path = fit_path(table, s, [0.05, 0.005], split=split)
    assert path[0]["n_train"] == len(split[0])
    assert path[0]["final"]["validation"]["n"] == len(split[1])
    for point in path:
        ref = reference_coef(table, s, point["strength"], split=split)
        assert relative_error(values(point), ref) < 1e-3


def test_progress_and_cancellation() -> None:
    table = diabetes()
    s = spec(target="progression", regularization={"penalty": "l1"})
    seen: list[float] = []
    fit_path(table, s, [1.0, 0.1, 0.01], on_progress=seen.append)
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen) and len(seen) >= 6
    calls = iter(range(100))
    with pytest.raises(TrainingCancelled, match="after 2 of 3"):
        fit_path(table, s, [1.0, 0.1, 0.01], should_stop=lambda: next(calls) >= 3)


def test_path_problems() -> None:
    table = diabetes()
    with pytest.raises(SpecError) as info:
        fit_path(table, spec(target="progression", regularization={"penalty": "none"}), [0.1])
    assert info.value.problems[0]["field"] == "regularization.penalty"
    mlp = spec(target="progression", model={"kind": "mlp"})
    with pytest.raises(SpecError) as info:
        fit_path(table, mlp, [0.1])
    assert info.value.problems[0]["field"] == "model.kind"
    for bad in ([], [-1.0], [0.0], [float("nan")]):
        with pytest.raises(SpecError) as info:
            fit_path(table, spec(target="progression"), bad)
        assert info.value.problems[0]["field"] == "strengths"
