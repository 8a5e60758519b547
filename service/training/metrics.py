"""Metrics a client can compare across jobs: one registry of their names, and how to compute them.

Each split reports a ``loss`` in the units of the training objective's data term: the log-loss
(classification) or half the mean squared error (regression), both unweighted. The generalization
gap and the per-epoch curves use that same loss, so all three agree.

``METRICS`` is the one place a metric is named, in the manner of scikit-learn's scorers
(``sklearn/metrics/_scorer.py``): the task that reports it, whether a greater value is better,
and whether it reads predicted probabilities. Sweeps, plots, the diagnosis and the API (which
sends each metric's direction to clients) read it; nothing else keeps its own list.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

__all__ = [
    "METRICS",
    "PRIMARY_METRIC",
    "SELECTION_METRIC",
    "Metric",
    "calibration",
    "classification_metrics",
    "coefficients",
    "generalization_gap",
    "intercepts",
    "json_safe",
    "metric",
    "metrics_for",
    "regression_metrics",
    "weights",
]

Task = Literal["classification", "regression"]
_CLASSIFICATION: frozenset[Task] = frozenset({"classification"})
_REGRESSION: frozenset[Task] = frozenset({"regression"})


@dataclass(frozen=True)
class Metric:
    """A reported score: which tasks report it, which way is better, what it reads."""

    name: str
    tasks: frozenset[Task]
    greater_is_better: bool
    #: Classification: computed from the predicted probabilities, not only the predicted class.
    needs_probabilities: bool
    description: str


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("accuracy", _CLASSIFICATION, True, False, "share of rows whose class is right"),
        Metric(
            "balanced_accuracy",
            _CLASSIFICATION,
            True,
            False,
            "recall averaged over the classes present",
        ),
        Metric("f1_macro", _CLASSIFICATION, True, False, "F1 score averaged over the classes"),
        Metric(
            "log_loss",
            _CLASSIFICATION,
            False,
            True,
            "mean negative log-probability of the true class",
        ),
        Metric("roc_auc", _CLASSIFICATION, True, True, "area under the ROC curve (binary targets)"),
        Metric("rmse", _REGRESSION, False, False, "root mean squared error"),
        Metric("mae", _REGRESSION, False, False, "mean absolute error"),
        Metric("r2", _REGRESSION, True, False, "coefficient of determination"),
        Metric(
            "loss",
            _CLASSIFICATION | _REGRESSION,
            False,
            True,
            "the training objective's data term: log-loss, or half the mean squared error",
        ),
    )
}

#: The score the generalization gap, the learning curve and the diagnosis compare, per task.
PRIMARY_METRIC: dict[str, str] = {"classification": "accuracy", "regression": "r2"}
#: The metric a sweep ranks by when it asks for "auto".
SELECTION_METRIC: dict[str, str] = {"classification": "log_loss", "regression": "rmse"}


def metric(name: str) -> Metric:
    """The registered metric of that name; KeyError names the known ones."""
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"no metric {name!r}; known: {', '.join(sorted(METRICS))}") from None


def metrics_for(task: str) -> list[Metric]:
    """The metrics a split of this task reports, in registry order."""
    return [m for m in METRICS.values() if task in m.tasks]


def json_safe(value: Any) -> Any:
    """The value with numpy scalars made Python and NaN/inf made None, recursively."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return [json_safe(v) for v in value.tolist()]
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        f = float(value)
        return f if math.isfinite(f) else None
    return value


def _finite(value: float) -> float | None:
    f = float(value)
    return f if math.isfinite(f) else None


def _binary_roc_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve as the Mann-Whitney statistic, ties counted half (= sklearn's).

    Each positive counts the negatives scored below it, and half those scored equal: two sorts
    and a merge by search, twice as fast as ranking all the scores (a path scores 40 models);
    the equal ones are searched for only when some score is shared.
    """
    pos = np.sort(score[positive])
    neg = np.sort(score[~positive])
    below = np.searchsorted(neg, pos, "left")
    ties = 0
    if np.any(neg[np.minimum(below, len(neg) - 1)] == pos):  # rare with continuous scores
        ties = int((np.searchsorted(neg, pos, "right") - below).sum())
    return float((2 * int(below.sum()) + ties) / 2.0 / (len(pos) * len(neg)))


def classification_metrics(y: np.ndarray, proba: np.ndarray) -> dict[str, Any] | None:
    """Scores of class-index labels y against probabilities (n, n_classes); None if empty.

    Computed in numpy from one confusion matrix (a regularization path scores dozens of models
    on the same rows, where scikit-learn's per-call input checks dominated); the definitions are
    scikit-learn's: balanced accuracy averages recall over the classes present in y, f1_macro
    averages over the classes in y or the predictions (zero_division=0), log_loss clips
    probabilities to [eps, 1-eps], roc_auc (binary only) counts ties half.
    """
    y = np.asarray(y).astype(np.int64, copy=False)
    n = len(y)
    if n == 0:
        return None
    proba = np.asarray(proba, dtype=np.float64)
    k = proba.shape[1]
    pred = proba.argmax(axis=1)
    cm = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)  # rows: truth, cols: predicted
    return _scored(y, cm, proba[np.arange(n), y], proba[:, 1] if k == 2 else None)


def binary_classification_metrics(y: np.ndarray, p1: np.ndarray) -> dict[str, Any] | None:
    """classification_metrics of labels 0/1 against probabilities ``[1 - p1, p1]``, without
    building that (n, 2) array and reducing it row by row: a path scores 40 binary models."""
    y = np.asarray(y).astype(np.int64, copy=False)
    if len(y) == 0:
        return None
    p1 = np.asarray(p1, dtype=np.float64)
    p0 = 1.0 - p1
    predicted = p1 > p0  # argmax's choice: the first column wins a tie
    cm = np.bincount(y * 2 + predicted, minlength=4).reshape(2, 2)
    return _scored(y, cm, np.where(y == 1, p1, p0), p1)


def _scored(
    y: np.ndarray, cm: np.ndarray, p_true: np.ndarray, p1: np.ndarray | None
) -> dict[str, Any] | None:
    """The metrics from the confusion matrix, each row's probability of its true class, and
    (binary) the positive class's: log-loss clipped to [eps, 1-eps], AUC when both classes occur."""
    eps = np.finfo(np.float64).eps
    log_loss = float(-np.log(np.clip(p_true, eps, 1 - eps)).mean())
    auc = None
    if p1 is not None and (cm.sum(axis=1) > 0).all():
        auc = _binary_roc_auc(y == 1, p1)
    return confusion_metrics(cm, log_loss, auc)


def confusion_metrics(
    cm: np.ndarray, log_loss: float, roc_auc: float | None
) -> dict[str, Any] | None:
    """classification_metrics from a confusion matrix (rows truth), the log-loss and the AUC,
    as an engine that scores elsewhere (Spark) computes them."""
    k = cm.shape[0]
    n = int(cm.sum())
    if n == 0:
        return None
    tp = np.diag(cm).astype(np.float64)
    actual, predicted = cm.sum(axis=1), cm.sum(axis=0)
    in_y = actual > 0
    seen = in_y | (predicted > 0)
    f1_den = actual + predicted  # 2tp + fn + fp
    f1 = np.divide(2 * tp, f1_den, out=np.zeros(k), where=f1_den > 0)
    out: dict[str, Any] = {
        "n": n,
        "accuracy": _finite(tp.sum() / n),
        "balanced_accuracy": _finite(np.mean(tp[in_y] / actual[in_y])),
        "f1_macro": _finite(f1[seen].mean()),
        "log_loss": _finite(log_loss),
        "roc_auc": None if roc_auc is None else _finite(roc_auc),
    }
    out["loss"] = out["log_loss"]
    return out


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, Any] | None:
    """rmse, mae, r2 and the half-MSE loss; None if empty (r2 None with under 2 rows)."""
    y = np.asarray(y, dtype=np.float64)
    if len(y) == 0:
        return None
    from sklearn.metrics import mean_absolute_error, r2_score  # keeps the registry light

    pred = np.asarray(pred, dtype=np.float64)
    mse = float(np.mean((y - pred) ** 2))
    r2: float | None = None
    if len(y) >= 2 and np.ptp(y) > 0:
        r2 = _finite(r2_score(y, pred))
    return {
        "n": len(y),
        "rmse": _finite(math.sqrt(mse)),
        "mae": _finite(mean_absolute_error(y, pred)),
        "r2": r2,
        "loss": _finite(0.5 * mse),
    }


def generalization_gap(
    task: str, train: dict[str, Any] | None, validation: dict[str, Any] | None
) -> dict[str, Any] | None:
    """Train minus validation score and validation minus train loss: positive means overfitting."""
    if train is None or validation is None:
        return None
    key = PRIMARY_METRIC[task]

    def diff(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else _finite(a - b)

    return {
        "metric": key,
        "score": diff(train.get(key), validation.get(key)),
        "loss": diff(validation.get("loss"), train.get("loss")),
    }


def weights(arrays: Sequence[np.ndarray]) -> dict[str, Any]:
    """Size and sparsity of the penalised weights (biases and intercepts excluded)."""
    flat = (
        np.concatenate([np.ravel(np.asarray(a, dtype=np.float64)) for a in arrays])
        if arrays
        else np.zeros(0)
    )
    n = int(flat.size)
    n_zero = int(np.count_nonzero(flat == 0.0))
    return {
        "n_weights": n,
        "n_zero": n_zero,
        "sparsity": n_zero / n if n else None,
        "l1_norm": _finite(np.abs(flat).sum()),
        "l2_norm": _finite(math.sqrt(float(np.dot(flat, flat)))),
    }


def coefficients(
    coef: np.ndarray, feature_names: Sequence[str], classes: Sequence[Any] | None
) -> list[dict[str, Any]]:
    """One row per (class, feature) weight of a linear model, named after preprocessing.

    Binary logistic regression has a single row of weights: it belongs to the second class.
    """
    coef = np.atleast_2d(np.asarray(coef, dtype=np.float64))
    if classes is None:
        row_classes: list[Any] = [None] * coef.shape[0]
    elif coef.shape[0] == 1 and len(classes) == 2:
        row_classes = [classes[1]]
    else:
        row_classes = list(classes)
    return [
        {"feature": name, "class": json_safe(label), "value": _finite(value)}
        for label, row in zip(row_classes, coef, strict=True)
        for name, value in zip(feature_names, row, strict=True)
    ]


def intercepts(intercept: np.ndarray, classes: Sequence[Any] | None) -> list[dict[str, Any]]:
    """One row per intercept, named by class like coefficients() (binary: the second class)."""
    values = np.atleast_1d(np.asarray(intercept, dtype=np.float64))
    if classes is None:
        labels: list[Any] = [None] * len(values)
    elif len(values) == 1 and len(classes) == 2:
        labels = [classes[1]]
    else:
        labels = list(classes)
    return [
        {"class": json_safe(c), "value": _finite(v)} for c, v in zip(labels, values, strict=True)
    ]


def calibration(y: np.ndarray, scores: np.ndarray, task: str) -> dict[str, float] | None:
    """Calibration slope and its standard error: 1 is right, > 1 too timid, < 1 too extreme.

    The slope of the target on the prediction. Regression: ordinary least squares of y on pred.
    Binary classification: b in the one-feature logistic regression P(y) = sigmoid(a + b *
    logit(p)), standard error from its Fisher information. On the training rows an unpenalised
    fit has slope exactly 1 and a penalised one above 1; on validation rows a slope significantly
    above 1 says a weaker penalty would predict new rows better (underfitting), below 1 the
    classic sign of overfitting. None for multiclass, constant predictions or separable rows.
    """
    y = np.asarray(y)
    n = len(y)
    if n < 3:
        return None
    if task == "regression":
        pred = np.asarray(scores, dtype=np.float64)
        yc, pc = y - y.mean(), pred - pred.mean()
        sxx = float(pc @ pc)
        if not sxx > 1e-12 * max(float(yc @ yc), 1e-300):
            return None
        slope = float(pc @ yc) / sxx
        resid = yc - slope * pc
        se = math.sqrt(float(resid @ resid) / (n - 2) / sxx)
        return _pair(slope, se)
    proba = np.asarray(scores, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[1] != 2 or len(np.unique(y)) < 2:
        return None
    p1 = np.clip(proba[:, 1], 1e-12, 1 - 1e-12)
    z = np.log(p1) - np.log1p(-p1)
    if np.ptp(z) == 0:
        return None
    X = np.column_stack([np.ones_like(z), z])

    def loglik(b: np.ndarray) -> float:
        eta = X @ b
        return float(y @ eta - np.logaddexp(0.0, eta).sum())

    beta = np.array([0.0, 1.0])
    current = loglik(beta)
    for _ in range(100):  # Newton with step halving on the concave two-parameter log-likelihood
        mu = 0.5 * (1.0 + np.tanh(0.5 * (X @ beta)))
        info = (X * np.maximum(mu * (1 - mu), 1e-12)[:, None]).T @ X
        try:
            step = np.linalg.solve(info, X.T @ (y - mu))
        except np.linalg.LinAlgError:
            return None
        for _ in range(30):
            candidate = beta + step
            value = loglik(candidate)
            if value >= current - 1e-12 * abs(current):
                break
            step = step / 2
        beta, current = candidate, value
        if not np.all(np.isfinite(beta)) or abs(beta[1]) > 1e6:
            return None  # separable rows: the slope runs off to infinity
        if np.max(np.abs(step)) < 1e-10:
            mu = 0.5 * (1.0 + np.tanh(0.5 * (X @ beta)))
            info = (X * np.maximum(mu * (1 - mu), 1e-12)[:, None]).T @ X
            try:
                var = float(np.linalg.inv(info)[1, 1])
            except np.linalg.LinAlgError:
                return None
            return _pair(float(beta[1]), math.sqrt(max(var, 0.0)))
    return None


def _pair(slope: float, se: float) -> dict[str, float] | None:
    if not (math.isfinite(slope) and math.isfinite(se)):
        return None
    return {"slope": slope, "se": se}
