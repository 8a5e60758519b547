"""Linear estimators built from the one penalty convention, via the echoed native parameters.

Building the estimator *from* native_params guarantees that what the job record echoes is what
was fitted, so a direct scikit-learn fit with the echoed parameters reproduces the model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.linear_model import ElasticNet, Lasso, LinearRegression, LogisticRegression, Ridge

from service.training.spec import Task, TrainingSpec, native_params

__all__ = ["LINEAR_ESTIMATORS", "build_linear_estimator", "estimator_from_native"]

LINEAR_ESTIMATORS: dict[str, type[BaseEstimator]] = {
    "LogisticRegression": LogisticRegression,
    "LinearRegression": LinearRegression,
    "Ridge": Ridge,
    "Lasso": Lasso,
    "ElasticNet": ElasticNet,
}


def estimator_from_native(native: dict[str, Any]) -> BaseEstimator:
    """The unfitted scikit-learn estimator that native_params describes (C None means C=inf)."""
    cls = LINEAR_ESTIMATORS[native["estimator"]]
    params = dict(native["params"])
    if cls is LogisticRegression and params.get("C") is None:
        params["C"] = np.inf
    return cls(**params)


def build_linear_estimator(
    spec: TrainingSpec, task: Task, n_train: int
) -> tuple[BaseEstimator, dict[str, Any]]:
    """The estimator for a linear spec and the JSON-safe parameters it was built from."""
    native = native_params(spec, task, n_train)
    return estimator_from_native(native), native
