"""The spec: pydantic shape, resolve_spec's catalogue of problems, split sizes, native mapping."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import pytest
from pydantic import ValidationError

from service.training.kinds import registry
from service.training.resolve import resolve_spec, split_sizes
from service.training.spec import (
    ColumnSummary,
    ResolvedSpec,
    SpecError,
    Task,
    TrainingSpec,
    ValidationSpec,
)
from tests.training.helpers import spec


def native_params(s: TrainingSpec, task: Task, n_train: int) -> dict[str, Any]:
    """The spec's kind's native parameters (each kind maps the convention itself)."""
    return registry.kind_of(s).native_params(s, task, n_train)


COLUMNS = [
    ColumnSummary("age", "integer", 60, 0),
    ColumnSummary("income", "float", 500, 3),
    ColumnSummary("member", "boolean", 2, 0),
    ColumnSummary("city", "categorical", 7, 1),
    ColumnSummary("churned", "boolean", 2, 0),
    ColumnSummary("plan", "categorical", 3, 0),
    ColumnSummary("visits", "integer", 12, 0),
    ColumnSummary("user_id", "integer", 1000, 0),
    ColumnSummary("constant", "categorical", 1, 0),
    ColumnSummary("many", "categorical", 150, 0),
]


def problems(s: TrainingSpec, **kwargs: object) -> dict[str, str]:
    """{field: message} of the SpecError that resolve_spec must raise."""
    with pytest.raises(SpecError) as info:
        resolve_spec(s, COLUMNS, **kwargs)  # type: ignore[arg-type]
    found = {p["field"]: p["message"] for p in info.value.problems}
    assert len(found) == len(info.value.problems), "one problem per field here"
    return found


def test_defaults_resolve_to_linear_l2_classification_on_a_boolean_target() -> None:
    resolved = resolve_spec(spec(target="churned"), COLUMNS)
    assert isinstance(resolved, ResolvedSpec)
    assert resolved.task == "classification"
    assert "boolean" in resolved.task_reason
    assert "churned" not in resolved.features and len(resolved.features) == len(COLUMNS) - 1
    assert resolved.n_parameters is None


@pytest.mark.parametrize(
    ("target", "task", "reason_part"),
    [
        ("plan", "classification", "categorical"),
        ("visits", "classification", "12 distinct values"),
        ("user_id", "regression", "1000 distinct values"),
        ("income", "regression", "float"),
    ],
)
def test_auto_task_rule_and_reason(target: str, task: str, reason_part: str) -> None:
    resolved = resolve_spec(spec(target=target, features=["age"]), COLUMNS)
    assert resolved.task == task
    assert reason_part in resolved.task_reason


def test_extra_fields_are_rejected_so_typos_are_422s() -> None:
    with pytest.raises(ValidationError):
        spec(target="y", regularisation={"penalty": "l1"})
    with pytest.raises(ValidationError):
        spec(target="y", regularization={"penalty": "l1", "stregth": 1.0})
    with pytest.raises(ValidationError):
        spec(target="y", model={"kind": "mlp", "hidden": [3]})


@pytest.mark.parametrize(
    "bad",
    [
        {"regularization": {"strength": -1}},
        {"regularization": {"strength": math.inf}},
        {"regularization": {"penalty": "elasticnet", "l1_ratio": 1.0}},
        {"regularization": {"dropout": 1.0}},
        {"model": {"kind": "mlp", "hidden_layers": []}},
        {"model": {"kind": "mlp", "hidden_layers": [5000]}},
        {"model": {"kind": "mlp", "hidden_layers": [8] * 9}},
        {"model": {"kind": "tree"}},
        {"validation": {"fraction": 1.0}},
        {"preprocessing": {"polynomial_degree": 6}},
        {"seed": -1},
    ],
)
def test_field_bounds(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        spec(target="y", **bad)


def test_mlp_options_on_a_linear_model_are_each_named() -> None:
    found = problems(
        spec(
            target="churned",
            regularization={"dropout": 0.2, "input_dropout": 0.1, "early_stopping": {}},
        )
    )
    assert set(found) == {
        "regularization.dropout",
        "regularization.input_dropout",
        "regularization.early_stopping",
    }
    assert "model.kind to 'mlp'" in found["regularization.dropout"]


def test_l1_ratio_needs_elasticnet_and_elasticnet_needs_l1_ratio() -> None:
    found = problems(spec(target="churned", regularization={"penalty": "l1", "l1_ratio": 0.5}))
    assert "penalty to 'elasticnet'" in found["regularization.l1_ratio"]
    found = problems(spec(target="churned", regularization={"penalty": "elasticnet"}))
    assert "needs l1_ratio" in found["regularization.l1_ratio"]


def test_unknown_target_and_features_and_target_as_feature() -> None:
    found = problems(spec(target="nope", features=["age", "ghost", "churned"]))
    assert "'nope' is not in the dataset" in found["target"]
    assert "'ghost'" in found["features[1]"]
    found = problems(spec(target="churned", features=["age", "churned"]))
    assert "is the target" in found["features[1]"]


def test_an_unknown_target_lists_the_columns_and_counts_those_left_out() -> None:
    wide = [ColumnSummary(f"c{i:02d}", "float", 100, 0) for i in range(31)]
    with pytest.raises(SpecError) as info:
        resolve_spec(spec(target="diagnosis"), wide)
    (message,) = [p["message"] for p in info.value.problems if p["field"] == "target"]
    assert "'c00', 'c01'" in message and "'c19' and 11 more" in message
    assert "'c20'" not in message
    with pytest.raises(SpecError) as info:
        resolve_spec(spec(target="diagnosis"), COLUMNS)
    assert "'many'" in info.value.problems[0]["message"] and "more" not in str(info.value)


def test_empty_feature_list() -> None:
    assert "features" in problems(spec(target="churned", features=[]))


def test_split_fractions() -> None:
    found = problems(
        spec(
            target="churned",
            model={"kind": "mlp"},
            regularization={"early_stopping": {"patience": 3}},
            validation={"fraction": 0.0},
        )
    )
    assert "validation.fraction above 0" in found["validation.fraction"]
    found = problems(spec(target="churned", validation={"fraction": 0.6, "test_fraction": 0.4}))
    assert "below 1" in found["validation.test_fraction"]


def test_task_target_mismatches() -> None:
    found = problems(spec(target="many", features=["age"], task="classification"))
    assert "150 distinct values" in found["task"] and "100" in found["task"]
    found = problems(spec(target="constant", features=["age"]))
    assert "at least 2 classes" in found["target"]
    found = problems(spec(target="plan", features=["age"], task="regression"))
    assert "numeric target" in found["task"]
    found = problems(spec(target="income", features=["age"], class_weight="balanced"))
    assert "class_weight" in found


def test_max_classes_is_a_parameter() -> None:
    found = problems(spec(target="visits", features=["age"]), max_classes=5)
    assert "12 distinct values" in found["task"] and "5 classes" in found["task"]


def test_mlp_parameter_limit_names_count_and_limit() -> None:
    s = spec(target="churned", model={"kind": "mlp", "hidden_layers": [4096, 4096, 4096]})
    found = problems(s, max_mlp_parameters=1_000_000)
    assert "1,000,000" in found["model.hidden_layers"]
    resolved = resolve_spec(
        spec(target="churned", model={"kind": "mlp", "hidden_layers": [8]}), COLUMNS
    )
    # age, income, member, city(7), plan(3), visits, user_id, constant(1), many(150)
    n_in = 1 + 1 + 1 + 7 + 3 + 1 + 1 + 1 + 150
    assert resolved.n_inputs == n_in
    assert resolved.n_parameters == n_in * 8 + 8 + 8 * 2 + 2


def test_all_problems_are_listed_at_once() -> None:
    with pytest.raises(SpecError) as info:
        resolve_spec(
            spec(
                target="plan",
                task="regression",
                features=["ghost"],
                class_weight="balanced",
                regularization={"penalty": "l2", "l1_ratio": 0.3, "dropout": 0.5},
            ),
            COLUMNS,
        )
    fields = [p["field"] for p in info.value.problems]
    assert set(fields) >= {
        "regularization.dropout",
        "regularization.l1_ratio",
        "features[0]",
        "task",
        "class_weight",
    }
    assert all(set(p) == {"field", "message"} for p in info.value.problems)


def test_polynomial_width_estimate() -> None:
    resolved = resolve_spec(
        spec(
            target="churned",
            features=["age", "income", "plan"],
            preprocessing={"polynomial_degree": 2},
        ),
        COLUMNS,
    )
    assert resolved.n_inputs == math.comb(5 + 2, 2) - 1  # 5 base columns -> 20 terms


@pytest.mark.parametrize(
    ("n", "fraction", "test_fraction", "expected"),
    [
        (100, 0.2, 0.0, (80, 20, 0)),
        (100, 0.2, 0.1, (70, 20, 10)),
        (10, 0.25, 0.0, (7, 3, 0)),
        (5, 0.0, 0.0, (5, 0, 0)),
    ],
)
def test_split_sizes(
    n: int, fraction: float, test_fraction: float, expected: tuple[int, int, int]
) -> None:
    got = split_sizes(n, ValidationSpec(fraction=fraction, test_fraction=test_fraction))
    assert got == expected


@pytest.mark.parametrize(
    ("task", "reg", "estimator", "expected"),
    [
        (
            "classification",
            {"penalty": "l2", "strength": 0.01},
            "LogisticRegression",
            {"C": 1 / (0.01 * 200), "l1_ratio": 0.0, "solver": "lbfgs"},
        ),
        (
            "classification",
            {"penalty": "l1", "strength": 0.01},
            "LogisticRegression",
            {"C": 1 / (0.01 * 200), "l1_ratio": 1.0, "solver": "saga"},
        ),
        (
            "classification",
            {"penalty": "elasticnet", "strength": 0.01, "l1_ratio": 0.3},
            "LogisticRegression",
            {"C": 1 / (0.01 * 200), "l1_ratio": 0.3, "solver": "saga"},
        ),
        (
            "classification",
            {"penalty": "none", "strength": 5.0},
            "LogisticRegression",
            {"C": None, "solver": "lbfgs"},
        ),
        (
            "classification",
            {"penalty": "l1", "strength": 0.0},
            "LogisticRegression",
            {"C": None, "solver": "lbfgs"},
        ),
        ("regression", {"penalty": "none"}, "LinearRegression", {"fit_intercept": True}),
        ("regression", {"penalty": "l2", "strength": 0.5}, "Ridge", {"alpha": 0.5 * 200}),
        ("regression", {"penalty": "l1", "strength": 0.5}, "Lasso", {"alpha": 0.5}),
        (
            "regression",
            {"penalty": "elasticnet", "strength": 0.5, "l1_ratio": 0.2},
            "ElasticNet",
            {"alpha": 0.5, "l1_ratio": 0.2},
        ),
        ("regression", {"penalty": "l2", "strength": 0.0}, "LinearRegression", {}),
    ],
)
def test_native_params_mapping(
    task: str, reg: dict[str, object], estimator: str, expected: dict[str, object]
) -> None:
    native = native_params(spec(target="y", regularization=reg, seed=7), task, 200)  # type: ignore[arg-type]
    assert native["estimator"] == estimator
    for key, value in expected.items():
        got = native["params"][key]
        assert got == pytest.approx(value) if isinstance(value, float) else got == value
    assert "penalty" not in native["params"]  # deprecated in scikit-learn 1.8+
    json.dumps(native, allow_nan=False)  # JSON-safe: no infinity for C
    if native["params"].get("C", 1.0) is None:
        assert "no penalty" in native["note"]


def test_mlp_native_params_split_strength_into_l1_and_l2() -> None:
    s = spec(
        target="y",
        model={"kind": "mlp"},
        regularization={"penalty": "elasticnet", "strength": 0.1, "l1_ratio": 0.25, "dropout": 0.3},
    )
    native = native_params(s, "classification", 100)
    assert native["l1_coefficient"] == pytest.approx(0.025)
    assert native["l2_coefficient"] == pytest.approx(0.075)
    assert native["dropout"] == 0.3 and native["loss"] == "cross_entropy"
    json.dumps(native, allow_nan=False)


def test_spec_import_stays_light() -> None:
    """The API validates specs without paying for torch, scikit-learn or pandas."""
    code = (
        "import sys; import service.training; from service.training import TrainingSpec, "
        "resolve_spec, SpecError; heavy = [m for m in ('torch', 'sklearn', 'pandas') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
