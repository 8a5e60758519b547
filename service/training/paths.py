"""Warm-started regularization paths for linear models: many strengths for little more than one.

The glmnet / H2O ``lambda_search`` technique: fit the strongest penalty first (few active
weights, fast), then each weaker one starting from the previous solution, so every fit begins
near its optimum. Binary classification and regression use glum's own path
(``GeneralizedLinearRegressor(alpha_search=True, alpha=[...])``, IRLS with coordinate descent).
glum fits one linear predictor only (no multinomial family), so multiclass classification falls
back to scikit-learn's LogisticRegression with ``warm_start=True``, refitted per strength.

Mapping the convention onto glum: glum minimises
``1/(2*sum(s)) * deviance(y, mu; s) + alpha*(l1_ratio*||w||_1 + (1-l1_ratio)/2*||w||_2^2)``
with ``s`` the sample weights. The binomial deviance is ``2 * sum(s_i * log_loss_i)`` and the
normal one ``sum(s_i * (y_i - mu_i)**2)``, so the data term is the (weighted) mean log-loss or half
the mean squared error: exactly our mean_loss. Hence ``alpha = strength`` and glum's l1_ratio is
ours. glum normalises ``s`` to sum to one; 'balanced' class weights sum to n_train, so the weighted
objective matches scikit-learn's ``C = 1/(strength*n_train)`` with class_weight too. The
intercept is never penalised. glum does not rescale our (already standardized) features:
``scale_predictors=False``.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
from glum import GeneralizedLinearRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.class_weight import compute_sample_weight

from service.training import metrics as M
from service.training.errors import Problem, SpecError
from service.training.kinds import registry
from service.training.kinds.glum_fit import glum_threads
from service.training.preprocessing import build_preprocessor, feature_names_out, fit_transform
from service.training.results import (
    Coefficient,
    FinalMetrics,
    GeneralizationGap,
    Intercept,
    PathPoint,
    SplitMetrics,
    WeightStats,
)
from service.training.spec import Penalty, Task, TrainingSpec
from service.training.train import GivenSplit, RunControl, predict_scores, prepare, split_metrics

__all__ = [
    "MAX_PATH_STRENGTHS",
    "PATH_GRADIENT_TOL",
    "PATH_MAX_ITER",
    "SKLEARN_PATH_TOL",
    "fit_path",
]

#: The most strengths one path may hold.
MAX_PATH_STRENGTHS = 200
#: glum's stopping tolerance on the (sub)gradient of the objective: a path point then matches an
#: independent converged scikit-learn fit to within 3e-4 relative on standardized data (1e-6
#: costs a third more IRLS work on 160k x 50 for no change in validation log-loss to 1e-5).
PATH_GRADIENT_TOL = 1e-4
#: glum's cap on IRLS iterations per strength.
PATH_MAX_ITER = 100
#: Solver tolerance of the multiclass scikit-learn fallback (tighter than train()'s saga 1e-4,
#: which stops up to ~1e-3 short of the optimum on correlated features; warm starts pay for it).
SKLEARN_PATH_TOL = 1e-6


class _ReportingRegressor(GeneralizedLinearRegressor):
    """glum's regressor that reports every strength of its path as it is solved.

    Overrides glum's internal per-alpha ``_solve`` (called once per alpha by its path loop) to
    time it, read ``n_iter_`` and check for cancellation. Should a later glum stop calling it,
    the path still comes out right; only the per-strength timings and progress go missing.
    """

    on_solved: Callable[[int, float], None] | None = None

    def _solve(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        coef = super()._solve(*args, **kwargs)
        if self.on_solved is not None:
            self.on_solved(int(self.n_iter_), time.perf_counter() - started)
        return coef


def _check_strengths(strengths: Sequence[float]) -> list[float]:
    """The strengths as floats, strongest first; SpecError for empty or invalid lists."""
    values = [float(s) for s in strengths]
    if not values or len(values) > MAX_PATH_STRENGTHS:
        raise SpecError(
            [
                {
                    "field": "strengths",
                    "message": f"a path needs 1 to {MAX_PATH_STRENGTHS} strengths "
                    f"(got {len(values)})",
                }
            ]
        )
    bad = [s for s in values if not math.isfinite(s) or s <= 0]
    if bad:
        raise SpecError(
            [
                {
                    "field": "strengths",
                    "message": f"path strengths must be finite and above 0; remove {bad[:5]} "
                    "(fit penalty 'none' as a job of its own: without a penalty the problem can "
                    "be singular, e.g. one-hot columns beside the intercept)",
                }
            ]
        )
    return sorted(values, reverse=True)


def _penalty(spec: TrainingSpec) -> tuple[Penalty, float]:
    """The spec's penalty and l1_ratio; a path needs a kind that fits paths, and a penalty."""
    problems: list[Problem] = []
    kind = registry.kind_of(spec)
    if not kind.supports_path:
        with_paths = ", ".join(f"'{k.name}'" for k in registry.kinds() if k.supports_path)
        problems.append(
            {
                "field": "model.kind",
                "message": f"a warm-started path is for model kinds {with_paths}; sweep a "
                f"'{kind.name}' model's strength with separate jobs",
            }
        )
    reg = spec.regularization
    if reg.penalty == "none":
        problems.append(
            {
                "field": "regularization.penalty",
                "message": "a path varies the penalty strength, so it needs penalty 'l1', 'l2' or "
                "'elasticnet'",
            }
        )
    if problems:
        raise SpecError(problems)
    l1_ratio = {"l1": 1.0, "l2": 0.0}.get(reg.penalty, reg.l1_ratio if reg.l1_ratio else 0.5)
    return reg.penalty, float(l1_ratio)


def _scores(eta: np.ndarray, task: Task) -> np.ndarray:
    """Predictions from linear predictors: the positive class's probabilities (n,), or values."""
    if task == "regression":
        return eta
    return 0.5 * (1.0 + np.tanh(0.5 * eta))  # the logistic function without overflow


def _split_metrics(y: np.ndarray, scores: np.ndarray, task: Task) -> SplitMetrics | None:
    """A split's metrics from class probabilities (n, k), binary ones as p1 (n,), or values."""
    if task == "classification" and scores.ndim == 1:
        return M.binary_classification_metrics(y, scores)
    return split_metrics(y, scores, task)


def fit_path(
    table: pa.Table,
    spec: TrainingSpec,
    strengths: Sequence[float],
    *,
    split: GivenSplit | None = None,
    on_progress: Callable[[float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    max_classes: int = 100,
    n_jobs: int = 1,
) -> list[dict[str, Any]]:
    """Fit the spec's linear model at every strength, warm-started from strongest to weakest.

    Returns one JSON-ready dict per strength, strongest first: strength, penalty, l1_ratio,
    final (train and validation metrics as train() reports them), weights, coefficients,
    intercepts, n_iter, converged, fit_seconds (that strength's solve), n_train and engine.
    ``split`` replaces the spec's validation split as in train(); the test rows stay unused.
    ``n_jobs`` threads score the points once the path is solved.
    """
    penalty, l1_ratio = _penalty(spec)
    path = _check_strengths(strengths)
    run = RunControl(on_progress, should_stop, what="path")
    run.progress(0.0)
    prepared = prepare(table, spec, max_classes=max_classes, split=split)
    task = prepared.resolved.task
    split_ = prepared.split
    run.check("after loading the data")
    run.progress(0.05)

    preprocessor = build_preprocessor(prepared.schema, spec.preprocessing)
    train_frame, val_frame = prepared.frames(split_.train, split_.validation)
    X_train = fit_transform(preprocessor, train_frame)
    X_val = preprocessor.transform(val_frame) if len(val_frame) else None
    y_train, y_val = prepared.y[split_.train], prepared.y[split_.validation]
    run.check("after preprocessing")
    run.progress(0.1)

    def solved(k: int) -> None:
        run.progress(0.1 + 0.8 * k / len(path))
        run.check(f"after {k} of {len(path)} strengths")

    inputs = _PathInputs(spec, task, X_train, y_train, X_val, path, solved)
    fits: list[_PathPoint]
    if task == "classification" and prepared.n_classes > 2:
        fits = _sklearn_path(inputs, prepared.n_classes)
        engine = "sklearn LogisticRegression warm_start (glum has no multinomial family)"
    else:
        fits = _glum_path(inputs, l1_ratio)
        engine = "glum GeneralizedLinearRegressor alpha_search"

    names = feature_names_out(preprocessor)

    def point(strength: float, fit: _PathPoint) -> PathPoint:
        how = (penalty, l1_ratio, engine)
        return _point(fit, strength, how, prepared.classes, names, (y_train, y_val), task)

    # Scoring is mostly numpy sorts, which release the GIL: n_jobs threads halve its time.
    with ThreadPoolExecutor(max(1, n_jobs), thread_name_prefix="path-scores") as pool:
        points = list(pool.map(point, path, fits))
    run.progress(1.0)
    return [point.to_json() for point in points]


def _point(
    fit: _PathPoint,
    strength: float,
    how: tuple[Penalty, float, str],
    classes: list[Any] | None,
    names: list[str],
    ys: tuple[np.ndarray, np.ndarray],
    task: Task,
) -> PathPoint:
    """One strength's report: scores per split, gap, weights, coefficients, solver effort."""
    penalty, l1_ratio, engine = how
    y_train, y_val = ys
    labels = None if classes is None else [classes[c] for c in fit.classes]
    final = FinalMetrics(train=_split_metrics(y_train, fit.train_scores, task))
    if fit.val_scores is not None:
        final.validation = _split_metrics(y_val, fit.val_scores, task)
    gap = M.generalization_gap(task, final.train, final.validation)
    return PathPoint(
        strength=strength,
        penalty=penalty,
        l1_ratio=l1_ratio,
        final=final,
        generalization_gap=GeneralizationGap(**gap) if gap is not None else None,
        weights=WeightStats(**M.weights([fit.coef])),
        coefficients=[Coefficient(**c) for c in M.coefficients(fit.coef, names, labels)],
        intercepts=[Intercept(**i) for i in M.intercepts(fit.intercept, labels)],
        n_iter=fit.n_iter,
        converged=fit.converged,
        fit_seconds=fit.seconds,
        n_train=len(y_train),
        engine=engine,
    )


@dataclass
class _PathPoint:
    """One strength's solution and its scores on the training and validation rows."""

    coef: np.ndarray
    intercept: np.ndarray
    classes: list[int]
    train_scores: np.ndarray
    val_scores: np.ndarray | None
    n_iter: int | None
    seconds: float | None
    converged: bool


class _PathInputs(NamedTuple):
    """What every path solver takes: the spec, the prepared training and validation matrices,
    the strengths (strongest first) and a callback per solved strength."""

    spec: TrainingSpec
    task: Task
    X: np.ndarray
    y: np.ndarray
    X_val: np.ndarray | None
    path: list[float]
    solved: Callable[[int], None]


def _glum_path(inputs: _PathInputs, l1_ratio: float) -> list[_PathPoint]:
    """glum's own warm-started path (binomial or normal family), one solve per strength."""
    spec, task, X, y, X_val, path, solved = inputs
    n_iters: list[int | None] = []
    seconds: list[float | None] = []

    def on_solved(n_iter: int, elapsed: float) -> None:
        n_iters.append(n_iter)
        seconds.append(elapsed)
        solved(len(n_iters))

    sample_weight = (
        compute_sample_weight(spec.class_weight, y)
        if task == "classification" and spec.class_weight is not None
        else None
    )
    model = _ReportingRegressor(
        alpha=path,
        alpha_search=True,
        l1_ratio=l1_ratio,
        family="binomial" if task == "classification" else "normal",
        fit_intercept=True,
        scale_predictors=False,
        gradient_tol=PATH_GRADIENT_TOL,
        max_iter=PATH_MAX_ITER,
        random_state=spec.seed,
    )
    model.on_solved = on_solved
    started = time.perf_counter()
    with warnings.catch_warnings(), glum_threads():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(np.asfortranarray(X), y.astype(np.float64), sample_weight=sample_weight)
    if len(n_iters) != len(path):  # glum no longer reports per strength: share the time out
        share = (time.perf_counter() - started) / len(path)
        n_iters = [None] * len(path)
        seconds = [share] * len(path)
    coef_path = np.asarray(model.coef_path_, dtype=np.float64)  # (n_strengths, n_features)
    intercept_path = np.asarray(model.intercept_path_, dtype=np.float64)
    eta_train = X @ coef_path.T + intercept_path
    eta_val = X_val @ coef_path.T + intercept_path if X_val is not None else None
    classes = [0, 1] if task == "classification" else []
    return [
        _PathPoint(
            coef=coef_path[i][None, :],
            intercept=intercept_path[i : i + 1],
            classes=classes,
            train_scores=_scores(eta_train[:, i], task),
            val_scores=_scores(eta_val[:, i], task) if eta_val is not None else None,
            n_iter=n_iters[i],
            seconds=seconds[i],
            converged=n_iters[i] is None or n_iters[i] < PATH_MAX_ITER,  # type: ignore[operator]
        )
        for i in range(len(path))
    ]


def _sklearn_path(inputs: _PathInputs, n_classes: int) -> list[_PathPoint]:
    """Multinomial logistic path: one LogisticRegression refitted per strength, warm-started."""
    spec, task, X, y, X_val, path, solved = inputs
    kind = registry.kind_of(spec)
    points: list[_PathPoint] = []
    model: Any = None
    for k, strength in enumerate(path, start=1):
        reg = spec.regularization.model_copy(update={"strength": strength})
        native = kind.native_params(spec.model_copy(update={"regularization": reg}), task, len(y))
        fresh = kind.estimator_from_native(native)
        if model is None:
            model = fresh
        else:
            model.set_params(**fresh.get_params())
        model.set_params(warm_start=True, tol=min(native["params"]["tol"], SKLEARN_PATH_TOL))
        started = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(X, y)
        elapsed = time.perf_counter() - started
        n_iter = int(np.max(model.n_iter_))
        points.append(
            _PathPoint(
                coef=np.array(model.coef_, dtype=np.float64),
                intercept=np.array(model.intercept_, dtype=np.float64),
                classes=[int(c) for c in model.classes_],
                train_scores=predict_scores(model, X, task, n_classes),
                val_scores=(
                    predict_scores(model, X_val, task, n_classes) if X_val is not None else None
                ),
                n_iter=n_iter,
                seconds=elapsed,
                converged=not any(issubclass(w.category, ConvergenceWarning) for w in caught)
                and n_iter < native["params"]["max_iter"],
            )
        )
        solved(k)
    return points
