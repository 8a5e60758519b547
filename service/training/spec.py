"""The ML part of a training request, its validation against a dataset, and the native mapping.

Every model minimises ``mean_loss + strength * (l1_ratio*||w||_1 + (1-l1_ratio)/2*||w||_2^2)``
over weights (never biases); mean_loss is the log-loss (classification) or half the mean squared
error (regression). This module turns that one convention into each family's native parameters.
"""

from __future__ import annotations

import itertools
import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.training.errors import Problem, SpecError

__all__ = [
    "AUTO_CLASSIFICATION_MAX_INTEGER_VALUES",
    "ColumnSummary",
    "EarlyStopping",
    "LearningCurveSpec",
    "LinearModelSpec",
    "MLPModelSpec",
    "ModelSpec",
    "Penalty",
    "PreprocessingSpec",
    "RegularizationSpec",
    "ResolvedSpec",
    "SpecError",
    "TrainingSpec",
    "ValidationSpec",
    "effective_penalty",
    "estimate_n_inputs",
    "mlp_parameter_count",
    "native_params",
    "resolve_spec",
    "split_sizes",
]

Penalty = Literal["none", "l1", "l2", "elasticnet"]
Task = Literal["classification", "regression"]
ColumnDtype = Literal["integer", "float", "boolean", "categorical"]

#: An integer target with at most this many distinct values is treated as classes by task "auto".
AUTO_CLASSIFICATION_MAX_INTEGER_VALUES = 20

# Solver settings, chosen so fits converge on standardized data; echoed in native_params.
LBFGS_MAX_ITER = 1000
LBFGS_TOL = 1e-6
SAGA_MAX_ITER = 5000
SAGA_TOL = 1e-4
CD_MAX_ITER = 10_000
CD_TOL = 1e-6

_STRICT = ConfigDict(extra="forbid")


class EarlyStopping(BaseModel):
    """Stop an MLP when the validation loss stops improving, and keep the best epoch's weights."""

    model_config = _STRICT

    patience: int = Field(
        default=10,
        ge=1,
        description="Epochs without an improvement of at least min_delta before stopping.",
    )
    min_delta: float = Field(
        default=0.0,
        ge=0,
        allow_inf_nan=False,
        description="Smallest decrease of the validation loss that counts as an improvement.",
    )


class RegularizationSpec(BaseModel):
    """The regularization block: one meaning of penalty and strength for every model family."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"penalty": "l2", "strength": 1e-3},
                {"penalty": "elasticnet", "strength": 1e-2, "l1_ratio": 0.5},
                {
                    "penalty": "l2",
                    "strength": 1e-4,
                    "dropout": 0.2,
                    "early_stopping": {"patience": 10},
                },
            ]
        },
    )

    penalty: Penalty = Field(
        default="l2",
        description=(
            "Weight penalty: 'l2' (ridge), 'l1' (lasso, gives exact zeros), 'elasticnet' "
            "(mix set by l1_ratio) or 'none'. Biases/intercepts are never penalised."
        ),
    )
    strength: float = Field(
        default=1e-4,
        ge=0,
        allow_inf_nan=False,
        description=(
            "Penalty strength lambda in mean_loss + lambda*(l1_ratio*||w||_1 + "
            "(1-l1_ratio)/2*||w||_2^2); mean_loss is the log-loss or half the MSE. "
            "Independent of the number of rows. Ignored when penalty is 'none'; 0 means no penalty."
        ),
    )
    l1_ratio: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="Share of L1 in the elastic net (0 < l1_ratio < 1); only with 'elasticnet'.",
    )
    dropout: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="MLP only: dropout probability after every hidden layer.",
    )
    input_dropout: float = Field(
        default=0.0, ge=0, lt=1, description="MLP only: dropout probability applied to the inputs."
    )
    early_stopping: EarlyStopping | None = Field(
        default=None,
        description=(
            "MLP only: stop on the validation loss and restore the best weights; "
            "needs validation.fraction > 0."
        ),
    )


class LinearModelSpec(BaseModel):
    """A generalized linear model: logistic regression or least squares, per the task."""

    model_config = _STRICT

    kind: Literal["linear"] = Field(default="linear", description="Linear model.")


class MLPModelSpec(BaseModel):
    """A multilayer perceptron trained in torch with the same penalty plus dropout."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"kind": "mlp", "hidden_layers": [64, 32], "epochs": 50}]},
    )

    kind: Literal["mlp"] = Field(description="Multilayer perceptron.")
    hidden_layers: list[Annotated[int, Field(ge=1, le=4096)]] = Field(
        default_factory=lambda: [128, 64],
        min_length=1,
        max_length=8,
        description="Widths of the hidden layers, input side first (1 to 8 layers, 1..4096 each).",
    )
    activation: Literal["relu", "tanh", "gelu"] = Field(
        default="relu", description="Activation after every hidden layer."
    )
    epochs: int = Field(
        default=100, ge=1, le=10_000, description="Maximum number of passes over the data."
    )
    batch_size: int = Field(default=64, ge=1, le=65_536, description="Rows per optimizer step.")
    learning_rate: float = Field(
        default=1e-3, gt=0, allow_inf_nan=False, description="Optimizer step size."
    )
    optimizer: Literal["adam", "sgd"] = Field(default="adam", description="Optimizer.")


ModelSpec = Annotated[LinearModelSpec | MLPModelSpec, Field(discriminator="kind")]


class PreprocessingSpec(BaseModel):
    """How raw columns become model inputs; fitted on the training split only."""

    model_config = _STRICT

    standardize: bool = Field(
        default=True,
        description=(
            "Scale numeric columns to mean 0 and variance 1 (so one strength penalises every "
            "feature alike); with polynomial_degree > 1 the expanded features are scaled too."
        ),
    )
    polynomial_degree: int = Field(
        default=1, ge=1, le=5, description="Add products of features up to this degree (1 = none)."
    )
    impute: Literal["median", "mean"] = Field(
        default="median",
        description="Fill missing numeric values with this statistic (categorical: most frequent).",
    )


class ValidationSpec(BaseModel):
    """How rows are split into training, validation and held-out test sets."""

    model_config = _STRICT

    fraction: float = Field(
        default=0.2,
        ge=0,
        lt=1,
        allow_inf_nan=False,
        description="Share of rows held out for validation (metrics, curves, early stopping).",
    )
    test_fraction: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        allow_inf_nan=False,
        description="Share of rows held out as a test set, never used for fitting or stopping.",
    )
    stratify: bool = Field(
        default=True,
        description="Keep class proportions in every split (classification, when possible).",
    )


class LearningCurveSpec(BaseModel):
    """Refit on growing shares of the training split to tell 'more data' from 'more penalty'."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"sizes": [0.1, 0.25, 0.5, 1.0]}]}
    )

    sizes: list[Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]] = Field(
        min_length=1,
        max_length=10,
        description=(
            "Shares of the training split to train on (0 < size <= 1, 1 to 10 values; sorted and "
            "deduplicated). Each point is scored on its own training rows and on the whole "
            "validation split."
        ),
    )

    @field_validator("sizes")
    @classmethod
    def _sorted_unique(cls, sizes: list[float]) -> list[float]:
        """Sorted and deduplicated, so points come out in order and each size is fitted once."""
        return sorted(set(sizes))


class TrainingSpec(BaseModel):
    """What to learn from a table and how to regularize it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "target": "churned",
                    "model": {"kind": "linear"},
                    "regularization": {"penalty": "elasticnet", "strength": 0.01, "l1_ratio": 0.5},
                },
                {
                    "target": "price",
                    "task": "regression",
                    "model": {"kind": "mlp", "hidden_layers": [64, 32], "epochs": 200},
                    "regularization": {
                        "penalty": "l2",
                        "strength": 1e-4,
                        "dropout": 0.1,
                        "early_stopping": {"patience": 10, "min_delta": 0.0},
                    },
                },
            ]
        },
    )

    target: str = Field(min_length=1, description="Column to predict.")
    task: Literal["auto", "classification", "regression"] = Field(
        default="auto",
        description=(
            "'auto' picks classification for a categorical or boolean target, or an integer "
            f"target with at most {AUTO_CLASSIFICATION_MAX_INTEGER_VALUES} distinct values, "
            "and regression otherwise."
        ),
    )
    features: list[str] | None = Field(
        default=None, description="Input columns; default: every column except the target."
    )
    class_weight: Literal["balanced"] | None = Field(
        default=None,
        description="Classification only: 'balanced' weighs classes inversely to frequency.",
    )

    @field_validator("target", "features")
    @classmethod
    def _nfc(cls, value: str | list[str] | None) -> str | list[str] | None:
        """Column names compare in Unicode NFC form, the form datasets store them in."""
        if isinstance(value, str):
            return unicodedata.normalize("NFC", value)
        return None if value is None else [unicodedata.normalize("NFC", v) for v in value]
    model: ModelSpec = Field(
        default_factory=LinearModelSpec, description="Model family and its options."
    )
    regularization: RegularizationSpec = Field(
        default_factory=RegularizationSpec, description="Penalty, dropout and early stopping."
    )
    preprocessing: PreprocessingSpec = Field(
        default_factory=PreprocessingSpec, description="Imputation, scaling, polynomial features."
    )
    validation: ValidationSpec = Field(
        default_factory=ValidationSpec, description="Validation and test split."
    )
    seed: int = Field(
        default=0, ge=0, le=2**32 - 1, description="Seed for splits, solvers and torch."
    )
    learning_curve: LearningCurveSpec | None = Field(
        default=None,
        description=(
            "Also refit on these shares of the training split and record train and validation "
            "scores per share (metrics.learning_curve); needs validation.fraction > 0."
        ),
    )


@dataclass(frozen=True)
class ColumnSummary:
    """What is known of a stored column without loading the data: enough to validate a spec."""

    name: str
    dtype: ColumnDtype
    #: Distinct non-missing values; None where not counted (a numeric input never needs it).
    n_unique: int | None
    n_missing: int


@dataclass
class ResolvedSpec:
    """The spec's decisions made concrete against a dataset (task, features, sizes)."""

    task: Task
    task_reason: str
    features: list[str]
    n_inputs: int
    n_parameters: int | None = None
    n_classes: int | None = None


def effective_penalty(reg: RegularizationSpec) -> tuple[Penalty, float, float]:
    """(penalty, strength, l1_ratio) after folding 'none' and strength 0 into one 'none'."""
    if reg.penalty == "none" or reg.strength == 0.0:
        return "none", 0.0, 0.0
    if reg.penalty == "l1":
        return "l1", reg.strength, 1.0
    if reg.penalty == "l2":
        return "l2", reg.strength, 0.0
    return "elasticnet", reg.strength, float(reg.l1_ratio if reg.l1_ratio is not None else 0.5)


def estimate_n_inputs(columns: Sequence[ColumnSummary], polynomial_degree: int = 1) -> int:
    """Model input width after one-hot and polynomial expansion (categories seen in all rows)."""
    base = 0
    for c in columns:
        base += max(c.n_unique or 0, 1) if c.dtype == "categorical" else 1
    if polynomial_degree <= 1:
        return base
    return math.comb(base + polynomial_degree, polynomial_degree) - 1


def mlp_parameter_count(n_inputs: int, hidden_layers: Sequence[int], n_outputs: int) -> int:
    """Weights plus biases of a dense MLP with these widths."""
    widths = [n_inputs, *hidden_layers, n_outputs]
    return sum(a * b + b for a, b in itertools.pairwise(widths))


def _fraction_ceil(n: int, fraction: float) -> int:
    """ceil(n * fraction), robust to float noise such as 100 * 0.2 = 20.000000000000004."""
    if fraction <= 0:
        return 0
    return min(n, math.ceil(round(n * fraction, 6)))


def split_sizes(n_rows_with_target: int, validation: ValidationSpec) -> tuple[int, int, int]:
    """(n_train, n_validation, n_test) exactly as train() splits; n_train may come out < 1."""
    n = int(n_rows_with_target)
    n_test = _fraction_ceil(n, validation.test_fraction)
    n_val = _fraction_ceil(n, validation.fraction)
    return n - n_val - n_test, n_val, n_test


def _problem(field: str, message: str) -> Problem:
    return {"field": field, "message": message}


def _check_options(spec: TrainingSpec) -> list[Problem]:
    """Problems of the spec alone: options that do not fit the model or each other."""
    problems: list[Problem] = []
    reg = spec.regularization
    if spec.model.kind == "linear":
        for name in ("dropout", "input_dropout"):
            if getattr(reg, name) != 0.0:
                problems.append(
                    _problem(
                        f"regularization.{name}",
                        f"{name} applies only to model.kind 'mlp'; remove it or set model.kind "
                        "to 'mlp'",
                    )
                )
        if reg.early_stopping is not None:
            problems.append(
                _problem(
                    "regularization.early_stopping",
                    "early_stopping applies only to model.kind 'mlp' (linear models are fitted to "
                    "convergence); remove it or set model.kind to 'mlp'",
                )
            )
    if reg.l1_ratio is not None and reg.penalty != "elasticnet":
        problems.append(
            _problem(
                "regularization.l1_ratio",
                f"l1_ratio applies only to penalty 'elasticnet' (penalty is '{reg.penalty}'); "
                "remove it or set regularization.penalty to 'elasticnet'",
            )
        )
    if reg.penalty == "elasticnet" and reg.l1_ratio is None:
        problems.append(
            _problem(
                "regularization.l1_ratio",
                "penalty 'elasticnet' needs l1_ratio strictly between 0 and 1 (e.g. 0.5); set "
                "regularization.l1_ratio, or use penalty 'l1' or 'l2'",
            )
        )
    val = spec.validation
    if reg.early_stopping is not None and val.fraction == 0:
        problems.append(
            _problem(
                "validation.fraction",
                "early stopping watches the validation loss, so it needs a validation split; set "
                "validation.fraction above 0 (e.g. 0.2) or remove regularization.early_stopping",
            )
        )
    if spec.learning_curve is not None and val.fraction == 0:
        problems.append(
            _problem(
                "validation.fraction",
                "a learning curve scores every share of the training split on the validation "
                "split, so it needs one; set validation.fraction above 0 (e.g. 0.2) or remove "
                "learning_curve",
            )
        )
    if val.fraction + val.test_fraction >= 1:
        problems.append(
            _problem(
                "validation.test_fraction",
                f"validation.fraction ({val.fraction}) + validation.test_fraction "
                f"({val.test_fraction}) is {val.fraction + val.test_fraction:g}, leaving no "
                "rows to train on; lower them so their sum is below 1 (e.g. 0.2 and 0.1)",
            )
        )
    return problems


def _resolve_task(
    spec: TrainingSpec, target: ColumnSummary, max_classes: int
) -> tuple[Task, str, list[Problem]]:
    """The task (auto or given), why, and problems of that task with this target."""
    problems: list[Problem] = []
    name, dtype, n_unique = target.name, target.dtype, target.n_unique
    if n_unique is None:
        raise ValueError(f"the distinct values of target '{name}' were not counted")
    task: Task
    if spec.task == "auto":
        if dtype in ("categorical", "boolean"):
            task = "classification"
            reason = f"target '{name}' is {dtype}, so task 'auto' chose classification"
        elif dtype == "integer" and n_unique <= AUTO_CLASSIFICATION_MAX_INTEGER_VALUES:
            task = "classification"
            reason = (
                f"target '{name}' is an integer column with {n_unique} distinct values "
                f"(at most {AUTO_CLASSIFICATION_MAX_INTEGER_VALUES}), so task 'auto' chose "
                "classification"
            )
        else:
            task = "regression"
            detail = (
                f"an integer column with {n_unique} distinct values (more than "
                f"{AUTO_CLASSIFICATION_MAX_INTEGER_VALUES})"
                if dtype == "integer"
                else "a float column"
            )
            reason = f"target '{name}' is {detail}, so task 'auto' chose regression"
    else:
        task = spec.task
        reason = f"task '{task}' was requested"

    if task == "classification":
        if n_unique > max_classes:
            problems.append(
                _problem(
                    "task",
                    f"target '{name}' has {n_unique} distinct values, more than the {max_classes} "
                    "classes allowed; set task to 'regression' (numeric target) or choose another "
                    "target",
                )
            )
        elif n_unique < 2:
            problems.append(
                _problem(
                    "target",
                    f"target '{name}' has {n_unique} distinct value(s); classification needs at "
                    "least 2 classes; choose another target",
                )
            )
    else:
        if dtype in ("categorical", "boolean"):
            problems.append(
                _problem(
                    "task",
                    f"regression needs a numeric target but '{name}' is {dtype}; set task to "
                    "'classification' or 'auto', or choose a numeric target",
                )
            )
        if spec.class_weight is not None:
            problems.append(
                _problem(
                    "class_weight",
                    "class_weight applies only to classification; remove it or set task to "
                    "'classification'",
                )
            )
    return task, reason, problems


def resolve_spec(
    spec: TrainingSpec,
    columns: Sequence[ColumnSummary],
    *,
    max_classes: int = 100,
    max_mlp_parameters: int = 50_000_000,
) -> ResolvedSpec:
    """Check the spec against the dataset's columns and settle task and features.

    Raises SpecError listing every problem at once, so a client can fix them in one go.
    """
    problems = _check_options(spec)
    by_name = {c.name: c for c in columns}
    target = by_name.get(spec.target)
    if target is None:
        known = ", ".join(repr(c.name) for c in columns[:20])
        problems.append(
            _problem(
                "target",
                f"target column '{spec.target}' is not in the dataset; choose one of: {known}",
            )
        )

    if spec.features is None:
        features = [c.name for c in columns if c.name != spec.target]
        if not features:
            problems.append(
                _problem(
                    "features",
                    "the dataset has no column besides the target to learn from; upload a dataset "
                    "with feature columns",
                )
            )
    else:
        features = list(spec.features)
        if not features:
            problems.append(
                _problem(
                    "features",
                    "features is empty; list at least one input column or omit it to use every "
                    "column except the target",
                )
            )
        seen: set[str] = set()
        for i, f in enumerate(features):
            if f == spec.target:
                problems.append(
                    _problem(
                        f"features[{i}]",
                        f"'{f}' is the target and cannot also be a feature; "
                        "remove it from features",
                    )
                )
            elif f not in by_name:
                problems.append(
                    _problem(
                        f"features[{i}]",
                        f"feature column '{f}' is not in the dataset; remove it or fix its name",
                    )
                )
            elif f in seen:
                problems.append(
                    _problem(f"features[{i}]", f"feature '{f}' is listed twice; list it once")
                )
            seen.add(f)

    task: Task = "classification"
    reason = ""
    n_classes: int | None = None
    if target is not None:
        task, reason, task_problems = _resolve_task(spec, target, max_classes)
        problems.extend(task_problems)
        if task == "classification":
            n_classes = target.n_unique

    feature_columns = [by_name[f] for f in dict.fromkeys(features) if f in by_name]
    feature_columns = [c for c in feature_columns if c.name != spec.target]
    n_inputs = estimate_n_inputs(feature_columns, spec.preprocessing.polynomial_degree)

    n_parameters: int | None = None
    if isinstance(spec.model, MLPModelSpec):
        n_outputs = max(n_classes or 0, 2) if task == "classification" else 1
        n_parameters = mlp_parameter_count(n_inputs, spec.model.hidden_layers, n_outputs)
        if n_parameters > max_mlp_parameters:
            problems.append(
                _problem(
                    "model.hidden_layers",
                    f"this MLP would have {n_parameters:,} parameters ({n_inputs:,} inputs after "
                    f"preprocessing), more than the limit of {max_mlp_parameters:,}; use fewer or "
                    "narrower hidden layers, fewer features or a lower polynomial_degree",
                )
            )

    if problems:
        raise SpecError(problems)
    return ResolvedSpec(
        task=task,
        task_reason=reason,
        features=features,
        n_inputs=n_inputs,
        n_parameters=n_parameters,
        n_classes=n_classes,
    )


def native_params(spec: TrainingSpec, task: Task, n_train: int) -> dict[str, Any]:
    """The family's own parameters that implement the spec's penalty (JSON-safe, no inf)."""
    if isinstance(spec.model, MLPModelSpec):
        return _mlp_native_params(spec, task, n_train)
    return _linear_native_params(spec, task, n_train)


def _linear_native_params(spec: TrainingSpec, task: Task, n_train: int) -> dict[str, Any]:
    """Map the convention onto scikit-learn's linear estimators (see ARCHITECTURE.md)."""
    penalty, strength, l1_ratio = effective_penalty(spec.regularization)
    n = max(int(n_train), 1)
    out: dict[str, Any] = {
        "family": "sklearn",
        "module": "sklearn.linear_model",
        "penalty": penalty,
        "strength": strength,
        "l1_ratio": l1_ratio,
        "n_train": n,
    }
    params: dict[str, Any]
    if task == "classification":
        solver = "saga" if penalty in ("l1", "elasticnet") else "lbfgs"
        params = {
            "C": None if penalty == "none" else 1.0 / (strength * n),
            "l1_ratio": l1_ratio,
            "solver": solver,
            "max_iter": SAGA_MAX_ITER if solver == "saga" else LBFGS_MAX_ITER,
            "tol": SAGA_TOL if solver == "saga" else LBFGS_TOL,
            "class_weight": spec.class_weight,
            "fit_intercept": True,
            "random_state": spec.seed,
        }
        out["estimator"] = "LogisticRegression"
        out["formula"] = "C = 1 / (strength * n_train)"
        if penalty == "none":
            out["note"] = "no penalty: C is infinite (pass C=numpy.inf); JSON has no infinity"
    elif penalty == "none":
        out["estimator"] = "LinearRegression"
        params = {"fit_intercept": True}
        out["note"] = "no penalty: ordinary least squares"
    elif penalty == "l2":
        out["estimator"] = "Ridge"
        out["formula"] = "alpha = strength * n_train"
        params = {
            "alpha": strength * n,
            "solver": "cholesky",
            "fit_intercept": True,
            "random_state": spec.seed,
        }
    else:
        out["estimator"] = "Lasso" if penalty == "l1" else "ElasticNet"
        out["formula"] = "alpha = strength"
        params = {
            "alpha": strength,
            "max_iter": CD_MAX_ITER,
            "tol": CD_TOL,
            "selection": "cyclic",
            "fit_intercept": True,
            "random_state": spec.seed,
        }
        if penalty == "elasticnet":
            params["l1_ratio"] = l1_ratio
    out["params"] = params
    return out


def _mlp_native_params(spec: TrainingSpec, task: Task, n_train: int) -> dict[str, Any]:
    """Describe the torch loss terms that implement the convention for the MLP."""
    assert isinstance(spec.model, MLPModelSpec)
    model = spec.model
    reg = spec.regularization
    penalty, strength, l1_ratio = effective_penalty(reg)
    es = reg.early_stopping
    return {
        "family": "torch",
        "estimator": "MLPEstimator",
        "penalty": penalty,
        "strength": strength,
        "l1_ratio": l1_ratio,
        "n_train": int(n_train),
        "loss": "cross_entropy" if task == "classification" else "half_mse",
        "l2_coefficient": strength * (1.0 - l1_ratio),
        "l2_term": "l2_coefficient / 2 * sum of squared weights, added to the mean batch loss",
        "l1_coefficient": strength * l1_ratio,
        "l1_method": (
            "proximal soft-threshold after each optimizer step: "
            "w <- sign(w) * max(|w| - t, 0) with t = learning_rate * l1_coefficient"
            + (
                " / (sqrt(v_hat) + eps), Adam's per-weight step size (the proximal step in "
                "Adam's metric)"
                if model.optimizer == "adam"
                else ""
            )
        ),
        "penalized": "weight matrices only (biases are not penalised)",
        "dropout": reg.dropout,
        "input_dropout": reg.input_dropout,
        "early_stopping": (
            {
                "monitor": "val_loss",
                "patience": es.patience,
                "min_delta": es.min_delta,
                "restore_best_weights": True,
            }
            if es is not None
            else None
        ),
        "hidden_layers": list(model.hidden_layers),
        "activation": model.activation,
        "optimizer": model.optimizer,
        "optimizer_params": (
            {"betas": [0.9, 0.999], "eps": 1e-8} if model.optimizer == "adam" else {"momentum": 0.9}
        ),
        "learning_rate": model.learning_rate,
        "batch_size": model.batch_size,
        "epochs": model.epochs,
        "class_weight": spec.class_weight,
        "random_state": spec.seed,
    }
