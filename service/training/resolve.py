"""A spec checked against a dataset's columns: task, features, sizes, and every problem at once.

Only the column summaries are read (no data), so the API can answer a bad spec with a 422 before
anything is queued; train() runs the same checks on the table it loads. Kind-specific rules come
from the model's kind (service.training.kinds), never from branches on its name here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from service.training.errors import Problem, SpecError
from service.training.kinds import registry
from service.training.spec import (
    AUTO_CLASSIFICATION_MAX_INTEGER_VALUES,
    ColumnSummary,
    RegularizationSpec,
    ResolvedSpec,
    Task,
    TrainingSpec,
    ValidationSpec,
)

__all__ = ["KIND_OPTIONS", "estimate_n_inputs", "resolve_spec", "split_sizes"]

#: Regularization fields that only some kinds honour (penalty, strength and l1_ratio mean the same
#: thing to every kind); a kind lists the ones it honours in ``options``.
KIND_OPTIONS: tuple[str, ...] = tuple(
    name
    for name in RegularizationSpec.model_fields
    if name not in ("penalty", "strength", "l1_ratio")
)


def estimate_n_inputs(columns: Sequence[ColumnSummary], polynomial_degree: int = 1) -> int:
    """Model input width after one-hot and polynomial expansion (categories seen in all rows)."""
    base = 0
    for c in columns:
        base += max(c.n_unique or 0, 1) if c.dtype == "categorical" else 1
    if polynomial_degree <= 1:
        return base
    return math.comb(base + polynomial_degree, polynomial_degree) - 1


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


def _kind_option_problems(spec: TrainingSpec) -> list[Problem]:
    """Regularization options set for a kind that does not honour them."""
    kind = registry.kind_of(spec)
    problems: list[Problem] = []
    for name in KIND_OPTIONS:
        default = RegularizationSpec.model_fields[name].get_default(call_default_factory=True)
        if name in kind.options or getattr(spec.regularization, name) == default:
            continue
        honouring = registry.honouring(name)
        where = " or ".join(f"'{k}'" for k in honouring) or "no registered kind"
        note = kind.option_notes.get(name)
        problems.append(
            _problem(
                f"regularization.{name}",
                f"{name} applies only to model.kind {where}"
                + (f" ({note})" if note else "")
                + (f"; remove it or set model.kind to '{honouring[0]}'" if honouring else ""),
            )
        )
    return problems


def _check_options(spec: TrainingSpec) -> list[Problem]:
    """Problems of the spec alone: options that do not fit the model or each other."""
    problems = _kind_option_problems(spec) + registry.kind_of(spec).check(spec)
    reg = spec.regularization
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
    return problems + _split_problems(spec)


def _split_problems(spec: TrainingSpec) -> list[Problem]:
    """Options that need a validation split without one, and splits that leave no training rows."""
    problems: list[Problem] = []
    val = spec.validation
    if spec.regularization.early_stopping is not None and val.fraction == 0:
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


def _auto_task(target: ColumnSummary, n_unique: int) -> tuple[Task, str]:
    """Task 'auto': classes for a categorical, boolean or few-valued integer target."""
    name, dtype = target.name, target.dtype
    if dtype in ("categorical", "boolean"):
        return "classification", f"target '{name}' is {dtype}, so task 'auto' chose classification"
    if dtype == "integer" and n_unique <= AUTO_CLASSIFICATION_MAX_INTEGER_VALUES:
        return "classification", (
            f"target '{name}' is an integer column with {n_unique} distinct values "
            f"(at most {AUTO_CLASSIFICATION_MAX_INTEGER_VALUES}), so task 'auto' chose "
            "classification"
        )
    detail = (
        f"an integer column with {n_unique} distinct values (more than "
        f"{AUTO_CLASSIFICATION_MAX_INTEGER_VALUES})"
        if dtype == "integer"
        else "a float column"
    )
    return "regression", f"target '{name}' is {detail}, so task 'auto' chose regression"


def _task_problems(
    spec: TrainingSpec, target: ColumnSummary, task: Task, n_unique: int, max_classes: int
) -> list[Problem]:
    """What is wrong with this task on this target."""
    name, dtype = target.name, target.dtype
    problems: list[Problem] = []
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
        return problems
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
    return problems


def _resolve_task(
    spec: TrainingSpec, target: ColumnSummary, max_classes: int
) -> tuple[Task, str, list[Problem]]:
    """The task (auto or given), why, and problems of that task with this target."""
    n_unique = target.n_unique
    if n_unique is None:
        raise ValueError(f"the distinct values of target '{target.name}' were not counted")
    task: Task
    if spec.task == "auto":
        task, reason = _auto_task(target, n_unique)
    else:
        task, reason = spec.task, f"task '{spec.task}' was requested"
    return task, reason, _task_problems(spec, target, task, n_unique, max_classes)


def _listed_feature_problems(spec: TrainingSpec, known: set[str]) -> list[Problem]:
    """Each listed feature must exist, differ from the target and be listed once."""
    problems: list[Problem] = []
    seen: set[str] = set()
    for i, f in enumerate(spec.features or []):
        if f == spec.target:
            message = f"'{f}' is the target and cannot also be a feature; remove it from features"
        elif f not in known:
            message = f"feature column '{f}' is not in the dataset; remove it or fix its name"
        elif f in seen:
            message = f"feature '{f}' is listed twice; list it once"
        else:
            message = ""
        if message:
            problems.append(_problem(f"features[{i}]", message))
        seen.add(f)
    return problems


def _features(
    spec: TrainingSpec, columns: Sequence[ColumnSummary]
) -> tuple[list[str], list[Problem]]:
    """The input columns (listed, or all but the target) and what is wrong with them."""
    if spec.features is None:
        features = [c.name for c in columns if c.name != spec.target]
        if features:
            return features, []
        return features, [
            _problem(
                "features",
                "the dataset has no column besides the target to learn from; upload a dataset "
                "with feature columns",
            )
        ]
    features = list(spec.features)
    problems = _listed_feature_problems(spec, {c.name for c in columns})
    if not features:
        problems.append(
            _problem(
                "features",
                "features is empty; list at least one input column or omit it to use every "
                "column except the target",
            )
        )
    return features, problems


def _size(
    spec: TrainingSpec, n_inputs: int, n_outputs: int, max_parameters: int
) -> tuple[int | None, list[Problem]]:
    """The kind's parameter count (None where it has none to bound) and whether it is too big."""
    kind = registry.kind_of(spec)
    n_parameters = kind.parameter_count(spec.model, n_inputs, n_outputs)
    if n_parameters is None or n_parameters <= max_parameters:
        return n_parameters, []
    return n_parameters, [kind.size_problem(spec.model, n_inputs, n_parameters, max_parameters)]


#: Names listed at most in a message; the rest are counted.
MAX_LISTED_NAMES = 20


def _listed(names: Sequence[str]) -> str:
    """'a', 'b', 'c' … and 11 more: a list a person can read, that says when it was cut."""
    shown = ", ".join(repr(name) for name in names[:MAX_LISTED_NAMES])
    more = len(names) - MAX_LISTED_NAMES
    return f"{shown} and {more} more" if more > 0 else shown


def resolve_spec(
    spec: TrainingSpec,
    columns: Sequence[ColumnSummary],
    *,
    max_classes: int = 100,
    max_mlp_parameters: int = 50_000_000,
) -> ResolvedSpec:
    """Check the spec against the dataset's columns and settle task and features.

    ``max_mlp_parameters`` (RIDGELINE_MAX_MLP_PARAMETERS) bounds every kind that counts its
    parameters. Raises SpecError listing every problem at once, so a client can fix them in one go.
    """
    problems = _check_options(spec)
    by_name = {c.name: c for c in columns}
    target = by_name.get(spec.target)
    if target is None:
        known = _listed([c.name for c in columns])
        problems.append(
            _problem(
                "target",
                f"target column '{spec.target}' is not in the dataset; choose one of: {known}",
            )
        )
    features, feature_problems = _features(spec, columns)
    problems.extend(feature_problems)

    task: Task = "classification"
    reason = ""
    n_classes: int | None = None
    if target is not None:
        task, reason, task_problems = _resolve_task(spec, target, max_classes)
        problems.extend(task_problems)
        n_classes = target.n_unique if task == "classification" else None

    feature_columns = [
        by_name[f] for f in dict.fromkeys(features) if f in by_name and f != spec.target
    ]
    n_inputs = estimate_n_inputs(feature_columns, spec.preprocessing.polynomial_degree)
    n_outputs = max(n_classes or 0, 2) if task == "classification" else 1
    n_parameters, size_problems = _size(spec, n_inputs, n_outputs, max_mlp_parameters)
    problems.extend(size_problems)
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
