"""Learning curves: refits on shares of the training split, scored on the whole validation split."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from service.training.resolve import resolve_spec
from service.training.spec import ColumnSummary, LearningCurveSpec, SpecError
from service.training.train import train
from tests.training.helpers import breast_cancer, diabetes, spec


def test_sizes_are_sorted_unique_and_bounded() -> None:
    assert LearningCurveSpec(sizes=[1.0, 0.25, 0.5, 0.25]).sizes == [0.25, 0.5, 1.0]
    for bad in ([], [0.0], [1.5], [-0.1], [float("nan")], [i / 20 for i in range(1, 12)]):
        with pytest.raises(ValidationError):
            LearningCurveSpec(sizes=bad)


def test_a_learning_curve_needs_a_validation_split() -> None:
    columns = [ColumnSummary("x", "float", 50, 0), ColumnSummary("y", "float", 50, 0)]
    s = spec(target="y", learning_curve={"sizes": [0.5, 1.0]}, validation={"fraction": 0.0})
    with pytest.raises(SpecError) as info:
        resolve_spec(s, columns)
    assert info.value.problems == [
        {"field": "validation.fraction", "message": info.value.problems[0]["message"]}
    ]
    assert "learning_curve" in info.value.problems[0]["message"]


def test_linear_learning_curve_points() -> None:
    table = breast_cancer()
    s = spec(target="diagnosis", learning_curve={"sizes": [0.1, 0.5, 1.0]}, seed=1)
    seen: list[float] = []
    metrics = train(table, s, on_progress=seen.append).metrics
    points = metrics["learning_curve"]
    assert [p["size"] for p in points] == [0.1, 0.5, 1.0]
    n_train = metrics["n_train"]
    assert [p["n_train"] for p in points] == [
        int(np.ceil(n_train * 0.1)),
        int(np.ceil(n_train * 0.5)),
        n_train,
    ]
    for p in points:
        assert p["train"]["n"] == p["n_train"]
        assert p["validation"]["n"] == metrics["n_validation"]
    assert points[-1]["train"] == metrics["final"]["train"]  # the full share is the job's fit
    assert points[-1]["validation"] == metrics["final"]["validation"]
    # Stratified: the smallest share keeps the class balance of the training split.
    assert points[0]["train"]["accuracy"] > 0.5
    assert seen == sorted(seen) and seen[-1] == 1.0
    # Fewer rows fit the training rows more easily than they generalise.
    assert points[0]["train"]["loss"] <= points[-1]["train"]["loss"] + 0.05
    assert points[0]["validation"]["loss"] > points[-1]["validation"]["loss"]


def test_mlp_learning_curve_keeps_the_epochs() -> None:
    s = spec(
        target="progression",
        model={"kind": "mlp", "hidden_layers": [8], "epochs": 3, "batch_size": 64},
        learning_curve={"sizes": [0.3, 0.6]},
    )
    result = train(diabetes(), s, device="cpu")
    points = result.metrics["learning_curve"]
    assert [p["n_epochs"] for p in points] == [3, 3]
    assert len(result.metrics["history"]) == 3  # curve refits stream no epochs of their own
    assert all(p["validation"]["n"] == result.metrics["n_validation"] for p in points)
