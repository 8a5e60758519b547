"""Metrics a client can compare across jobs: scores per split, the overfitting gap, weight sparsity.

Each split reports a ``loss`` in the units of the training objective's data term: the log-loss
(classification) or half the mean squared error (regression), both unweighted. The generalization
gap and the MLP curves use that same loss, so all three agree.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
)

__all__ = [
    "PRIMARY_METRIC",
    "classification_metrics",
    "coefficients",
    "generalization_gap",
    "json_safe",
    "regression_metrics",
    "weights",
]

#: The score the generalization gap compares, per task (higher is better for both).
PRIMARY_METRIC = {"classification": "accuracy", "regression": "r2"}


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


def classification_metrics(y: np.ndarray, proba: np.ndarray) -> dict[str, Any] | None:
    """Scores of class-index labels y against probabilities (n, n_classes); None if empty."""
    y = np.asarray(y)
    if len(y) == 0:
        return None
    proba = np.asarray(proba, dtype=np.float64)
    n_classes = proba.shape[1]
    pred = proba.argmax(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out: dict[str, Any] = {
            "n": len(y),
            "accuracy": _finite(accuracy_score(y, pred)),
            "balanced_accuracy": _finite(balanced_accuracy_score(y, pred)),
            "f1_macro": _finite(f1_score(y, pred, average="macro", zero_division=0)),
            "log_loss": _finite(log_loss(y, proba, labels=np.arange(n_classes))),
            "roc_auc": None,
        }
        if n_classes == 2 and len(np.unique(y)) == 2:
            out["roc_auc"] = _finite(roc_auc_score(y, proba[:, 1]))
    out["loss"] = out["log_loss"]
    return out


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, Any] | None:
    """rmse, mae, r2 and the half-MSE loss; None if empty (r2 None with under 2 rows)."""
    y = np.asarray(y, dtype=np.float64)
    if len(y) == 0:
        return None
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
