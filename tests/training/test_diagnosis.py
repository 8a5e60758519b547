"""diagnose(): overfitting, underfitting and a good fit on constructed cases, with suggestions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from service.training.diagnosis import THRESHOLDS
from service.training.diagnosis import diagnose as diagnose_metrics
from service.training.results import JobMetrics
from service.training.spec import TrainingSpec
from service.training.train import train
from tests.training.helpers import breast_cancer, spec


def curved(n: int, seed: int = 0) -> pa.Table:
    """y = sin(2a) + b + noise; c is pure noise. A cubic fits it; degree 5 on few rows memorises."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, 3))
    y = np.sin(2 * X[:, 0]) + X[:, 1] + rng.normal(scale=0.3, size=n)
    return pa.table({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "y": y})


def diagnose(metrics: dict[str, Any], s: TrainingSpec, task: str) -> dict[str, Any]:
    """The diagnosis of metrics given as the JSON a job stores, as the JSON it stores."""
    return diagnose_metrics(JobMetrics.model_validate(metrics), s, task).to_json()


def fields(diagnosis: dict[str, Any]) -> dict[str, Any]:
    return {s["field"]: s["value"] for s in diagnosis["suggestions"]}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_high_degree_polynomial_on_few_noisy_rows_overfits(seed: int) -> None:
    s = spec(
        target="y",
        regularization={"penalty": "none"},
        preprocessing={"polynomial_degree": 5},  # 55 inputs, 30 training rows
        validation={"fraction": 0.5},
        seed=seed,
    )
    d = train(curved(60, seed), s).metrics["diagnosis"]
    assert d["verdict"] == "overfitting"
    e = d["evidence"]
    assert e["train_score"] == pytest.approx(1.0) and e["gap"] > e["gap_threshold"]
    suggested = fields(d)
    assert suggested["regularization"] == {"penalty": "l2", "strength": 1e-3}
    assert suggested["preprocessing.polynomial_degree"] == 4
    assert any("from 5 to 4" in s["message"] for s in d["suggestions"])


def test_a_penalty_that_zeroes_every_weight_underfits() -> None:
    reg = {"penalty": "l1", "strength": 3.0}
    s = spec(target="y", regularization=reg, preprocessing={"polynomial_degree": 3})
    metrics = train(curved(600), s).metrics
    d = metrics["diagnosis"]
    assert d["verdict"] == "underfitting", d["reasons"]
    assert fields(d)["regularization.strength"] == pytest.approx(0.3)
    assert fields(d)["preprocessing.polynomial_degree"] == 4
    # Every weight is zero: no better than the training mean.
    assert metrics["weights"]["sparsity"] == 1.0
    assert d["evidence"]["train_score_skill"] == pytest.approx(0.0, abs=1e-9)


def test_a_penalty_that_only_shrinks_the_predictions_is_over_regularized() -> None:
    """Ridge still explains ~14%, but its predictions are visibly too timid: say so plainly."""
    s = spec(
        target="y",
        regularization={"penalty": "l2", "strength": 30.0},
        preprocessing={"polynomial_degree": 3},
    )
    d = train(curved(600), s).metrics["diagnosis"]
    assert d["verdict"] == "over-regularized", d["reasons"]
    assert d["evidence"]["validation_calibration_slope"] > 5
    assert "predictions are too timid" in d["reasons"][0]
    assert fields(d) == {"regularization.strength": pytest.approx(3.0)}


def test_well_regularized_model_is_a_good_fit() -> None:
    s = spec(
        target="y",
        regularization={"penalty": "l2", "strength": 1e-3},
        preprocessing={"polynomial_degree": 3},
    )
    d = train(curved(600), s).metrics["diagnosis"]
    assert d["verdict"] == "good fit", d["reasons"]
    assert d["suggestions"] == [] and d["thresholds"] == THRESHOLDS
    assert abs(d["evidence"]["validation_calibration_slope"] - 1) < 0.25


def test_classification_verdicts_follow_the_strength() -> None:
    table = breast_cancer()
    verdicts = {
        strength: train(
            table, spec(target="diagnosis", regularization={"penalty": "l2", "strength": strength})
        ).metrics["diagnosis"]["verdict"]
        for strength in (1.0, 1e-2, 1e-4)
    }
    assert verdicts == {1.0: "over-regularized", 1e-2: "good fit", 1e-4: "overfitting"}


def test_without_validation_the_verdict_is_unknown() -> None:
    d = train(curved(100), spec(target="y", validation={"fraction": 0.0})).metrics["diagnosis"]
    assert d["verdict"] == "unknown"
    assert fields(d) == {"validation.fraction": 0.2}


def mlp_metrics(history: list[tuple[float, float]], best_epoch: int | None) -> dict[str, Any]:
    """Metrics of an MLP classification job with this (train_loss, val_loss) history; the final
    figures are the best epoch's when early stopping restored it, else the last epoch's."""
    train_loss, val_loss = history[(best_epoch or len(history)) - 1]
    return {
        "final": {
            "train": {"n": 400, "accuracy": 0.90, "loss": train_loss},
            "validation": {"n": 100, "accuracy": 0.88, "loss": val_loss},
        },
        "baseline": {"metric": "accuracy", "score": 0.5, "loss": 0.693},
        "history": [
            {"epoch": i + 1, "train_loss": t, "val_loss": v} for i, (t, v) in enumerate(history)
        ],
        "best_epoch": best_epoch,
    }


def test_mlp_validation_loss_turning_up_is_overfitting_with_mlp_suggestions() -> None:
    history = [(0.6, 0.6), (0.45, 0.42), (0.35, 0.36), (0.3, 0.37), (0.26, 0.4), (0.22, 0.44)]
    s = spec(
        target="label",
        model={"kind": "mlp", "hidden_layers": [64, 32]},
        regularization={"penalty": "l2", "strength": 1e-4},
    )
    d = diagnose(mlp_metrics(history, None), s, "classification")
    assert d["verdict"] == "overfitting"
    assert d["evidence"]["val_loss_turned_up_after_epoch"] == 3
    assert any("after epoch 3" in r for r in d["reasons"])
    suggested = fields(d)
    assert suggested["regularization.strength"] == pytest.approx(1e-3)
    assert suggested["regularization.dropout"] == 0.2
    assert suggested["regularization.early_stopping"] == {"patience": 10}
    assert suggested["model.hidden_layers"] == [32, 16]
    # With early stopping the best weights were restored: the turn is evidence, not a verdict.
    restored = diagnose(mlp_metrics(history, 3), s, "classification")
    assert restored["evidence"]["val_loss_turned_up_after_epoch"] == 3
    assert restored["verdict"] == "good fit"


def test_underfitting_mlp_suggestions_loosen_everything() -> None:
    history = [(0.69, 0.69), (0.68, 0.68), (0.68, 0.68)]
    metrics = mlp_metrics(history, None)
    metrics["final"]["train"]["accuracy"] = metrics["final"]["validation"]["accuracy"] = 0.52
    s = spec(
        target="label",
        model={"kind": "mlp", "hidden_layers": [8], "epochs": 3},
        regularization={"penalty": "l2", "strength": 0.1, "dropout": 0.5},
    )
    d = diagnose(metrics, s, "classification")
    assert d["verdict"] == "underfitting"
    assert fields(d) == {
        "regularization.strength": pytest.approx(0.01),
        "regularization.dropout": 0.0,
        "model.hidden_layers": [16],
        "model.epochs": 6,
        "preprocessing.polynomial_degree": 2,
    }


def test_every_job_carries_a_diagnosis() -> None:
    metrics = train(breast_cancer(), spec(target="diagnosis")).metrics
    d = metrics["diagnosis"]
    assert d["verdict"] in {"overfitting", "underfitting", "good fit"}
    assert metrics["baseline"]["score"] == pytest.approx(d["evidence"]["baseline_score"])
    assert set(metrics["calibration"]) == {"train", "validation"}
