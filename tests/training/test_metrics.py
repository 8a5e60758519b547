"""Numpy metrics match scikit-learn's definitions; calibration slopes mean what they say."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    log_loss,
    roc_auc_score,
)

from service.training.metrics import (
    binary_classification_metrics,
    calibration,
    classification_metrics,
)


def test_classification_metrics_match_sklearn_on_awkward_inputs() -> None:
    rng = np.random.default_rng(0)
    for trial in range(80):
        k = int(rng.integers(2, 5))
        n = int(rng.integers(1, 60))
        # Some trials miss classes in y; some have ties, some zero probabilities.
        y = rng.integers(0, k if trial % 3 else max(1, k - 1), n)
        p = rng.random((n, k))
        if trial % 4 == 0:
            p = np.round(p, 1) + 1e-9
        if trial % 5 == 0:
            p[:, 0] = 0.0
        p /= p.sum(axis=1, keepdims=True)
        pred = p.argmax(axis=1)
        got = classification_metrics(y, p)
        assert got is not None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = {
                "accuracy": accuracy_score(y, pred),
                "balanced_accuracy": balanced_accuracy_score(y, pred),
                "f1_macro": f1_score(y, pred, average="macro", zero_division=0),
                "log_loss": log_loss(y, p, labels=np.arange(k)),
                "roc_auc": (
                    roc_auc_score(y, p[:, 1]) if k == 2 and len(np.unique(y)) == 2 else None
                ),
            }
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, abs=1e-12), (trial, key)
        assert got["loss"] == got["log_loss"] and got["n"] == n
    assert classification_metrics(np.zeros(0, dtype=int), np.zeros((0, 2))) is None


def test_binary_metrics_from_p1_equal_the_two_column_ones() -> None:
    """A path's shortcut: the same numbers, to the bit, as from [1 - p1, p1]."""
    rng = np.random.default_rng(1)
    for trial in range(60):
        n = int(rng.integers(1, 3000))
        y = rng.integers(0, 2 if trial % 7 else 1, n)  # some trials hold one class only
        p1 = 0.5 * (1.0 + np.tanh(0.5 * rng.normal(0, 3, n)))
        if trial % 3 == 0:
            p1 = np.round(p1, 2)  # ties, and exact 0.5s (the first column wins them)
        if trial % 5 == 0:
            p1[: n // 2] = 1.0  # certain predictions, clipped in the log-loss
        got = binary_classification_metrics(y, p1)
        assert got == classification_metrics(y, np.column_stack([1.0 - p1, p1])), trial
    assert binary_classification_metrics(np.zeros(0, dtype=int), np.zeros(0)) is None


def test_calibration_slope_of_shrunk_and_stretched_predictions() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=4000)
    y = 2 * x + rng.normal(size=4000)
    exact = calibration(y, 2 * x, "regression")
    assert exact is not None and exact["slope"] == pytest.approx(1.0, abs=3 * exact["se"])
    shrunk = calibration(y, 0.5 * x, "regression")  # a heavy penalty: predictions too timid
    assert shrunk is not None and shrunk["slope"] == pytest.approx(4.0, rel=0.05)
    logit = 1.5 * x
    labels = (rng.random(4000) < 1 / (1 + np.exp(-logit))).astype(int)

    def proba(z: np.ndarray) -> np.ndarray:
        p1 = 1 / (1 + np.exp(-z))
        return np.column_stack([1 - p1, p1])

    right = calibration(labels, proba(logit), "classification")
    assert right is not None and abs(right["slope"] - 1.0) < 3 * right["se"]
    stretched = calibration(labels, proba(3 * logit), "classification")  # overconfident
    assert stretched is not None and stretched["slope"] == pytest.approx(
        1 / 3, abs=3 * stretched["se"]
    )
    separable = (x > 0).astype(int)
    assert calibration(separable, proba(logit), "classification") is None
    assert calibration(labels, np.full((4000, 2), 0.5), "classification") is None
    assert calibration(labels[:, None] * 0, proba(logit), "classification") is None
