"""The torch MLP: the penalty convention, dropout, early stopping, sparsity and determinism."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer, make_regression
from sklearn.metrics import log_loss
from sklearn.preprocessing import StandardScaler

from service.training.errors import TrainingCancelled
from service.training.kinds.mlp_estimator import MLPEstimator
from service.training.train import train
from tests.training.helpers import noisy_classification, spec


@pytest.fixture(scope="module")
def cancer() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    return X[:400], y[:400], X[400:], y[400:]


def mlp_gap(reg: dict[str, Any]) -> dict[str, Any]:
    s = spec(
        target="label",
        model={
            "kind": "mlp",
            "hidden_layers": [64, 64],
            "epochs": 120,
            "batch_size": 32,
            "learning_rate": 3e-3,
        },
        regularization=reg,
        validation={"fraction": 0.3},
    )
    metrics = train(noisy_classification(n=240), s).metrics
    return metrics


def test_dropout_and_l2_each_shrink_the_generalization_gap() -> None:
    plain = mlp_gap({"penalty": "none"})
    dropout = mlp_gap({"penalty": "none", "dropout": 0.7})
    l2 = mlp_gap({"penalty": "l2", "strength": 0.1})
    # The unregularized net memorises the noisy labels.
    assert plain["final"]["train"]["accuracy"] == 1.0
    assert plain["generalization_gap"]["loss"] > 2.0
    assert dropout["generalization_gap"]["loss"] < 0.6 * plain["generalization_gap"]["loss"]
    assert l2["generalization_gap"]["loss"] < 0.3 * plain["generalization_gap"]["loss"]
    assert l2["generalization_gap"]["score"] < plain["generalization_gap"]["score"] - 0.05
    assert dropout["final"]["train"]["loss"] > plain["final"]["train"]["loss"]
    assert l2["weights"]["l2_norm"] < plain["weights"]["l2_norm"]


def test_history_records_eval_mode_curves_for_every_epoch(cancer: Any) -> None:
    X, y, Xv, yv = cancer
    seen: list[dict[str, Any]] = []
    est = MLPEstimator(hidden_layers=(16,), epochs=4, dropout=0.5, device="cpu").fit(
        X, y, Xv, yv, on_epoch=seen.append
    )
    assert [r["epoch"] for r in seen] == [1, 2, 3, 4] and seen == est.history_
    assert set(seen[0]) == {"epoch", "train_loss", "val_loss", "train_metric", "val_metric"}
    # Train figures come from eval mode (no dropout) at the epoch's end: they match a fresh pass.
    last = seen[-1]
    assert last["train_loss"] == pytest.approx(log_loss(y, est.predict_proba(X)), rel=1e-5)
    assert last["val_metric"] == pytest.approx(np.mean(est.predict(Xv) == yv), rel=1e-6)
    assert est.best_epoch_ is None
    no_val = MLPEstimator(hidden_layers=(4,), epochs=1, device="cpu").fit(X, y)
    assert no_val.history_[0]["val_loss"] is None and no_val.history_[0]["val_metric"] is None


def test_early_stopping_sets_best_epoch_and_restores_its_weights(cancer: Any) -> None:
    X, y, Xv, yv = cancer
    est = MLPEstimator(
        hidden_layers=(64, 64),
        epochs=300,
        learning_rate=1e-2,
        early_stopping=True,
        patience=5,
        device="cpu",
    ).fit(X, y, Xv, yv)
    losses = [r["val_loss"] for r in est.history_]
    assert est.n_epochs_ < 300, "it stopped early"
    assert est.best_epoch_ == int(np.argmin(losses)) + 1
    assert est.n_epochs_ == est.best_epoch_ + 5
    assert losses[-1] > losses[est.best_epoch_ - 1]
    restored = log_loss(yv, est.predict_proba(Xv))
    assert restored == pytest.approx(losses[est.best_epoch_ - 1], rel=1e-5)


def test_min_delta_demands_a_real_improvement(cancer: Any) -> None:
    X, y, Xv, yv = cancer
    kwargs = dict(hidden_layers=(16,), epochs=200, early_stopping=True, patience=3, device="cpu")
    loose = MLPEstimator(min_delta=0.0, **kwargs).fit(X, y, Xv, yv)  # type: ignore[arg-type]
    strict = MLPEstimator(min_delta=0.05, **kwargs).fit(X, y, Xv, yv)  # type: ignore[arg-type]
    assert strict.n_epochs_ < loose.n_epochs_


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_l1_gives_exact_zeros(cancer: Any, optimizer: str) -> None:
    X, y, Xv, yv = cancer
    lr = 1e-2 if optimizer == "sgd" else 1e-3
    kwargs = dict(
        hidden_layers=(32,), epochs=30, optimizer=optimizer, learning_rate=lr, device="cpu"
    )
    l1 = MLPEstimator(strength=0.03, l1_ratio=1.0, **kwargs).fit(X, y, Xv, yv)  # type: ignore[arg-type]
    dense = MLPEstimator(strength=0.0, **kwargs).fit(X, y, Xv, yv)  # type: ignore[arg-type]
    zeros = sum(int((w == 0).sum()) for w in l1.weight_arrays())
    total = sum(w.size for w in l1.weight_arrays())
    assert zeros / total > 0.3
    assert sum(int((w == 0).sum()) for w in dense.weight_arrays()) == 0
    assert np.mean(l1.predict(Xv) == yv) > 0.9, "still a useful model"
    # Biases are never penalised.
    assert all(
        torch.count_nonzero(layer.bias) == layer.bias.numel() for layer in l1.module_.layers()
    )


def test_l2_is_on_weights_not_biases(cancer: Any) -> None:
    """With a huge L2 strength the weights vanish, but the unpenalised output bias still learns
    the class frequencies (weight decay on biases would pull it to 50/50)."""
    X, y, _, _ = cancer
    est = MLPEstimator(
        hidden_layers=(8,), epochs=60, strength=10.0, learning_rate=1e-2, device="cpu"
    ).fit(X, y)
    assert max(float(np.abs(w).max()) for w in est.weight_arrays()) < 1e-2
    np.testing.assert_allclose(est.predict_proba(X[:5])[:, 1], np.full(5, y.mean()), atol=0.01)


def test_regression_reports_half_mse_and_r2(cancer: Any) -> None:
    X, y = make_regression(n_samples=300, n_features=5, noise=5.0, random_state=1)
    y = 1000 + 50 * y  # large units: the net still learns (fixed output scaling)
    est = MLPEstimator(task="regression", hidden_layers=(32,), epochs=40, device="cpu").fit(
        X[:240], y[:240], X[240:], y[240:]
    )
    last = est.history_[-1]
    pred = est.predict(X[240:])
    assert last["val_loss"] == pytest.approx(0.5 * np.mean((y[240:] - pred) ** 2), rel=1e-4)
    assert last["val_metric"] > 0.9


def test_same_seed_same_model_other_seed_other_model() -> None:
    table = noisy_classification(n=200)
    s = spec(
        target="label",
        model={"kind": "mlp", "hidden_layers": [16], "epochs": 5},
        regularization={"dropout": 0.2},
        seed=11,
    )
    a, b = train(table, s), train(table, s)
    assert json.dumps(a.metrics["history"]) == json.dumps(b.metrics["history"])
    assert a.metrics["final"] == b.metrics["final"]
    c = train(table, s.model_copy(update={"seed": 12}))
    assert c.metrics["history"] != a.metrics["history"]


def test_fit_leaves_the_global_torch_rng_alone(cancer: Any) -> None:
    X, y, _, _ = cancer
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    MLPEstimator(hidden_layers=(4,), epochs=1, dropout=0.5, device="cpu").fit(X, y)
    assert torch.equal(torch.rand(3), expected)


def test_should_stop_cancels_between_epochs(cancer: Any) -> None:
    X, y, Xv, yv = cancer
    calls: list[int] = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) > 2

    seen: list[dict[str, Any]] = []
    with pytest.raises(TrainingCancelled):
        MLPEstimator(hidden_layers=(4,), epochs=50, device="cpu").fit(
            X, y, Xv, yv, on_epoch=seen.append, should_stop=should_stop
        )
    assert len(seen) == 2


def test_class_weight_balanced_weighs_the_rare_class() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    y = (X[:, 0] + rng.normal(scale=1.0, size=400) > 1.6).astype(int)  # about 10% positives
    kwargs = dict(hidden_layers=(8,), epochs=30, device="cpu")
    plain = MLPEstimator(**kwargs).fit(X, y)  # type: ignore[arg-type]
    balanced = MLPEstimator(class_weight="balanced", **kwargs).fit(X, y)  # type: ignore[arg-type]
    assert (balanced.predict(X) == 1).sum() > 2 * (plain.predict(X) == 1).sum()


def test_train_echoes_mlp_terms_and_json_safe_history() -> None:
    s = spec(
        target="label",
        model={"kind": "mlp", "hidden_layers": [8], "epochs": 3},
        regularization={
            "penalty": "elasticnet",
            "strength": 1e-3,
            "l1_ratio": 0.5,
            "input_dropout": 0.1,
            "early_stopping": {"patience": 2},
        },
    )
    epochs: list[dict[str, Any]] = []
    progress: list[float] = []
    result = train(
        noisy_classification(n=120),
        s,
        on_epoch=epochs.append,
        on_progress=progress.append,
        device="cpu",
    )
    assert result.artifact_kind == "mlp-zip"
    assert result.native_params["l1_coefficient"] == pytest.approx(5e-4)
    assert result.native_params["device"] == "cpu"
    assert len(epochs) == len(result.metrics["history"]) and epochs[0]["epoch"] == 1
    assert result.metrics["best_epoch"] is not None
    assert progress[0] == 0.0 and progress[-1] == 1.0 and progress == sorted(progress)
    json.dumps(result.metrics, allow_nan=False)
