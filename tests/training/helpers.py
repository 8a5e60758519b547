"""Small tables for the training tests, built in memory from scikit-learn's bundled datasets."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
from sklearn.datasets import load_breast_cancer, load_diabetes, make_classification

from service.training.spec import TrainingSpec


def spec(**kwargs: Any) -> TrainingSpec:
    """A TrainingSpec from plain dicts, as the API would parse it."""
    return TrainingSpec.model_validate(kwargs)


def breast_cancer(n_features: int = 10) -> pa.Table:
    """Binary classification, string labels, plus a categorical and a boolean column."""
    data = load_breast_cancer()
    rng = np.random.default_rng(0)
    columns: dict[str, Any] = {
        name.replace(" ", "_"): data.data[:, i]
        for i, name in enumerate(data.feature_names[:n_features])
    }
    n = len(data.target)
    columns["site"] = rng.choice(["north", "south", "east"], size=n).tolist()
    columns["flag"] = (rng.random(n) < 0.3).tolist()
    columns["diagnosis"] = np.where(data.target == 1, "benign", "malignant").tolist()
    return pa.table(columns)


def diabetes() -> pa.Table:
    """Regression on a float target with ten numeric features."""
    data = load_diabetes()
    columns = {name: data.data[:, i] for i, name in enumerate(data.feature_names)}
    columns["progression"] = data.target.astype(np.float64)
    return pa.table(columns)


def noisy_classification(n: int = 300, seed: int = 0) -> pa.Table:
    """Few informative features and 25% flipped labels: an unregularized MLP memorises it."""
    X, y = make_classification(
        n_samples=n,
        n_features=20,
        n_informative=4,
        n_redundant=0,
        flip_y=0.25,
        class_sep=0.8,
        random_state=seed,
    )
    columns: dict[str, Any] = {f"x{i}": X[:, i] for i in range(X.shape[1])}
    columns["label"] = y.astype(np.int64)
    return pa.table(columns)


def mixed_table(n: int = 240, seed: int = 0) -> pa.Table:
    """Integer labels, with a float, an integer, a boolean and a categorical feature."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    k = rng.integers(0, 5, size=n)
    b = rng.random(n) < 0.5
    color = rng.choice(["red", "green", "blue"], size=n)
    score = 1.5 * x + 0.5 * k - 1.0 * b + np.where(color == "red", 1.0, 0.0)
    label = np.digitize(score + rng.normal(scale=0.5, size=n), [0.0, 2.0])  # classes 0, 1, 2
    return pa.table(
        {
            "x": pa.array(x, pa.float64()),
            "k": pa.array(k, pa.int64()),
            "b": pa.array(b, pa.bool_()),
            "color": pa.array(color.tolist(), pa.string()),
            "label": pa.array(label.astype(np.int64) * 10, pa.int64()),  # labels 0, 10, 20
        }
    )
