"""One training run: a table and a spec in, metrics and a self-contained artifact out."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from service.training import metrics as M
from service.training.artifacts import dump_mlp, dump_sklearn, sha256_hex, versions
from service.training.errors import Problem, SpecError, TrainingCancelled
from service.training.linear import build_linear_estimator
from service.training.preprocessing import (
    build_preprocessor,
    column_values,
    feature_names_out,
    frame_from_table,
    summarize_table,
)
from service.training.spec import (
    ColumnDtype,
    ColumnSummary,
    MLPModelSpec,
    ResolvedSpec,
    Task,
    TrainingSpec,
    ValidationSpec,
    effective_penalty,
    native_params,
    resolve_spec,
    split_sizes,
)

__all__ = ["Prepared", "SplitIndices", "TrainingResult", "prepare", "split_indices", "train"]


@dataclass
class SplitIndices:
    """Row positions (into the rows that have a target) of each split, sorted."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    stratified: bool


@dataclass
class Prepared:
    """A table made ready to fit: resolved spec, typed frame, encoded target and the split."""

    resolved: ResolvedSpec
    schema: dict[str, ColumnDtype]
    target_dtype: ColumnDtype
    frame: pd.DataFrame
    y: np.ndarray
    classes: list[Any] | None
    split: SplitIndices
    n_dropped: int
    ignored_columns: dict[str, str]


@dataclass
class TrainingResult:
    """Everything a job keeps from a run: JSON-ready metrics and the artifact bytes."""

    task: Task
    task_reason: str
    classes: list[Any] | None
    native_params: dict[str, Any]
    metrics: dict[str, Any]
    artifact: bytes
    artifact_sha256: str
    artifact_kind: Literal["skops", "mlp-zip"]
    versions: dict[str, Any]


def split_indices(
    n: int,
    validation: ValidationSpec,
    seed: int,
    *,
    stratify_labels: np.ndarray | None = None,
) -> SplitIndices:
    """The deterministic split train() uses: sizes from split_sizes, stratified when possible."""
    n_train, n_val, n_test = split_sizes(n, validation)
    rows = np.arange(n)
    stratified = stratify_labels is not None and validation.stratify

    def cut(
        pool: np.ndarray, size: int, labels: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(rest, held out) with `size` rows held out."""
        nonlocal stratified
        if size == 0:
            return pool, pool[:0]
        if stratified and labels is not None:
            try:
                rest, held = train_test_split(
                    pool, test_size=size, random_state=seed, stratify=labels[pool]
                )
                return rest, held
            except ValueError:
                stratified = False  # too few rows of some class: fall back to a plain shuffle
        rest, held = train_test_split(pool, test_size=size, random_state=seed)
        return rest, held

    labels = stratify_labels if stratified else None
    rest, test = cut(rows, n_test, labels)
    train, val = cut(rest, n_val, labels)
    assert len(train) == n_train
    return SplitIndices(np.sort(train), np.sort(val), np.sort(test), bool(stratified))


def _resolve(
    table: pa.Table, spec: TrainingSpec, max_classes: int
) -> tuple[ResolvedSpec, list[ColumnSummary], dict[str, str]]:
    """resolve_spec on the table's own column summaries, naming columns of unusable types."""
    summaries, unsupported = summarize_table(table)
    problems: list[Problem] = []
    skip_fields: set[str] = set()
    if spec.target in unsupported:
        skip_fields.add("target")
        problems.append(
            {
                "field": "target",
                "message": f"column '{spec.target}' has type {unsupported[spec.target]}, which "
                "cannot be a target; choose an integer, float, boolean or string column",
            }
        )
    for i, name in enumerate(spec.features or []):
        if name in unsupported:
            skip_fields.add(f"features[{i}]")
            problems.append(
                {
                    "field": f"features[{i}]",
                    "message": f"column '{name}' has type {unsupported[name]}, which cannot be a "
                    "feature; remove it (integer, float, boolean and string columns are supported)",
                }
            )
    try:
        resolved = resolve_spec(spec, summaries, max_classes=max_classes)
    except SpecError as exc:
        problems.extend(p for p in exc.problems if p["field"] not in skip_fields)
        raise SpecError(problems) from None
    if problems:
        raise SpecError(problems)
    return resolved, summaries, unsupported


def prepare(table: pa.Table, spec: TrainingSpec, *, max_classes: int = 100) -> Prepared:
    """Resolve the spec, drop rows without a target, encode the target and split the rows."""
    resolved, summaries, unsupported = _resolve(table, spec, max_classes)
    by_name = {s.name: s for s in summaries}
    schema: dict[str, ColumnDtype] = {f: by_name[f].dtype for f in resolved.features}
    target_dtype = by_name[spec.target].dtype

    target_values = column_values(table.column(spec.target), target_dtype)
    missing = pd.isna(target_values) if target_dtype == "categorical" else np.isnan(target_values)
    present = ~missing
    rows = np.flatnonzero(present)
    n_dropped = int(table.num_rows - len(rows))
    if n_dropped:
        table = table.take(pa.array(rows))
        target_values = target_values[rows]
    frame = frame_from_table(table, schema)

    classes: list[Any] | None = None
    if resolved.task == "classification":
        raw = _target_labels(table.column(spec.target), target_dtype)
        uniques = np.unique(raw)
        y = np.searchsorted(uniques, raw).astype(np.int64)
        classes = [M.json_safe(v.item() if hasattr(v, "item") else v) for v in uniques]
    else:
        y = target_values.astype(np.float64)

    n = len(y)
    n_train, n_val, n_test = split_sizes(n, spec.validation)
    if n_train < 2:
        raise SpecError(
            [
                {
                    "field": "validation.fraction",
                    "message": f"{n} rows have a target, leaving {n_train} to train on after "
                    f"{n_val} validation and {n_test} test rows; upload more rows or lower "
                    "validation.fraction and validation.test_fraction",
                }
            ]
        )
    split = split_indices(
        n,
        spec.validation,
        spec.seed,
        stratify_labels=y if resolved.task == "classification" else None,
    )
    if resolved.task == "classification" and len(np.unique(y[split.train])) < 2:
        raise SpecError(
            [
                {
                    "field": "target",
                    "message": "the training split holds a single class of the target; "
                    "classification needs at least 2 (upload more rows of the rare classes)",
                }
            ]
        )
    return Prepared(
        resolved=resolved,
        schema=schema,
        target_dtype=target_dtype,
        frame=frame,
        y=y,
        classes=classes,
        split=split,
        n_dropped=n_dropped,
        ignored_columns=unsupported,
    )


def _target_labels(column: pa.ChunkedArray, dtype: ColumnDtype) -> np.ndarray:
    """Non-null target values with their own type: int, bool, float or str."""
    if dtype == "categorical":
        return np.asarray(pc.cast(column, pa.string()).to_pylist(), dtype=object).astype(str)
    if dtype == "boolean":
        return column.to_numpy(zero_copy_only=False).astype(bool)
    if dtype == "integer":
        return pc.cast(column, pa.int64()).to_numpy(zero_copy_only=False)
    return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)


def _predict_scores(model: Any, X: np.ndarray, task: Task, n_classes: int) -> np.ndarray:
    """Class probabilities over all classes (a class unseen in training gets 0), or values."""
    if task == "regression":
        return np.asarray(model.predict(X), dtype=np.float64)
    proba = np.asarray(model.predict_proba(X), dtype=np.float64)
    if proba.shape[1] == n_classes:
        return proba
    full = np.zeros((proba.shape[0], n_classes))
    full[:, np.asarray(model.classes_, dtype=int)] = proba
    return full


def _split_metrics(y: np.ndarray, scores: np.ndarray, task: Task) -> dict[str, Any] | None:
    if task == "classification":
        return M.classification_metrics(y, scores)
    return M.regression_metrics(y, scores)


def _convergence(model: Any, native: dict[str, Any], caught: list[str]) -> dict[str, Any]:
    """Iterations used against the cap, and any convergence warning the solver raised."""
    n_iter = getattr(model, "n_iter_", None)
    n_iter_value = int(np.max(n_iter)) if n_iter is not None else None
    max_iter = native["params"].get("max_iter")
    converged = not caught and (n_iter_value is None or max_iter is None or n_iter_value < max_iter)
    return {
        "n_iter": n_iter_value,
        "max_iter": max_iter,
        "converged": converged,
        "warnings": caught,
    }


def train(
    table: pa.Table,
    spec: TrainingSpec,
    *,
    max_classes: int = 100,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    on_progress: Callable[[float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    device: str | None = None,
) -> TrainingResult:
    """Fit the spec on the table; the test split is held out from fitting and stopping alike."""

    def progress(fraction: float) -> None:
        if on_progress is not None:
            on_progress(float(min(max(fraction, 0.0), 1.0)))

    def check_stop(where: str) -> None:
        if should_stop is not None and should_stop():
            raise TrainingCancelled(f"training cancelled {where}")

    progress(0.0)
    prepared = prepare(table, spec, max_classes=max_classes)
    resolved, split = prepared.resolved, prepared.split
    task = resolved.task
    n_classes = len(prepared.classes) if prepared.classes is not None else 0
    check_stop("after loading the data")
    progress(0.05)

    frame, y = prepared.frame, prepared.y
    preprocessor = build_preprocessor(prepared.schema, spec.preprocessing)
    X_train = preprocessor.fit_transform(frame.iloc[split.train])
    X_val = preprocessor.transform(frame.iloc[split.validation]) if len(split.validation) else None
    X_test = preprocessor.transform(frame.iloc[split.test]) if len(split.test) else None
    y_train, y_val, y_test = y[split.train], y[split.validation], y[split.test]
    names = feature_names_out(preprocessor)
    n_train = len(split.train)
    check_stop("after preprocessing")
    progress(0.1)

    extra: dict[str, Any] = {}
    artifact_kind: Literal["skops", "mlp-zip"]
    started = time.perf_counter()
    if isinstance(spec.model, MLPModelSpec):
        from service.training.mlp import MLPEstimator  # torch loads only for MLP jobs

        model_spec = spec.model
        _, strength, l1_ratio = effective_penalty(spec.regularization)
        es = spec.regularization.early_stopping
        native = native_params(spec, task, n_train)

        def epoch_hook(record: dict[str, Any]) -> None:
            progress(min(0.1 + 0.8 * record["epoch"] / model_spec.epochs, 0.9))
            if on_epoch is not None:
                on_epoch(M.json_safe(record))

        model: Any = MLPEstimator(
            task=task,
            hidden_layers=model_spec.hidden_layers,
            activation=model_spec.activation,
            dropout=spec.regularization.dropout,
            input_dropout=spec.regularization.input_dropout,
            strength=strength,
            l1_ratio=l1_ratio,
            epochs=model_spec.epochs,
            batch_size=model_spec.batch_size,
            learning_rate=model_spec.learning_rate,
            optimizer=model_spec.optimizer,
            early_stopping=es is not None,
            patience=es.patience if es is not None else 10,
            min_delta=es.min_delta if es is not None else 0.0,
            class_weight=spec.class_weight,
            random_state=spec.seed,
            device=device or "auto",
        ).fit(
            X_train,
            y_train,
            X_val,
            y_val,
            classes=np.arange(n_classes) if task == "classification" else None,
            on_epoch=epoch_hook,
            should_stop=should_stop,
        )
        native["device"] = model.device_
        if task == "regression":
            native["target_standardization"] = {
                "mean": model.target_mean_,
                "scale": model.target_scale_,
                "note": "the net outputs mean + scale * out; the loss is half the MSE in the "
                "target's units, optimised divided by scale**2 with the penalty likewise",
            }
        weight_arrays = model.weight_arrays()
        extra["history"] = model.history_
        extra["best_epoch"] = model.best_epoch_
        extra["n_epochs"] = model.n_epochs_
        artifact_kind = "mlp-zip"
    else:
        model, native = build_linear_estimator(spec, task, n_train)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(X_train, y_train)
        messages = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
        coef = np.asarray(model.coef_)
        weight_arrays = [coef]
        extra["coefficients"] = M.coefficients(coef, names, prepared.classes)
        intercept = np.atleast_1d(np.asarray(model.intercept_, dtype=np.float64))
        intercept_classes: list[Any] = (
            [None]
            if prepared.classes is None
            else [prepared.classes[1]]
            if len(intercept) == 1
            else list(prepared.classes)
        )
        extra["intercepts"] = [
            {"class": c, "value": float(v)}
            for c, v in zip(intercept_classes, intercept, strict=True)
        ]
        extra["best_epoch"] = None
        extra["convergence"] = _convergence(model, native, messages)
        artifact_kind = "skops"
    fit_seconds = time.perf_counter() - started
    check_stop("after fitting")
    progress(0.9)

    final: dict[str, Any] = {
        "train": _split_metrics(y_train, _predict_scores(model, X_train, task, n_classes), task)
    }
    if X_val is not None:
        final["validation"] = _split_metrics(
            y_val, _predict_scores(model, X_val, task, n_classes), task
        )
    if X_test is not None:
        final["test"] = _split_metrics(
            y_test, _predict_scores(model, X_test, task, n_classes), task
        )
    metrics: dict[str, Any] = {
        "final": final,
        "generalization_gap": M.generalization_gap(task, final["train"], final.get("validation")),
        "weights": M.weights(weight_arrays),
        **extra,
        "fit_seconds": fit_seconds,
        "n_train": n_train,
        "n_validation": len(split.validation),
        "n_test": len(split.test),
        "n_rows_dropped_missing_target": prepared.n_dropped,
        "n_inputs": int(X_train.shape[1]),
        "split": {"stratified": split.stratified, "seed": spec.seed},
    }
    if prepared.ignored_columns and spec.features is None:
        metrics["ignored_columns"] = prepared.ignored_columns
    progress(0.95)

    version_info = versions()
    metadata = {
        "task": task,
        "target": spec.target,
        "target_dtype": prepared.target_dtype,
        "classes": prepared.classes,
        "feature_schema": prepared.schema,
        "feature_names_out": names,
        "spec": spec.model_dump(mode="json"),
        "native_params": native,
        "versions": version_info,
    }
    if artifact_kind == "skops":
        artifact = dump_sklearn(
            Pipeline([("preprocess", preprocessor), ("model", model)]), M.json_safe(metadata)
        )
    else:
        artifact = dump_mlp(model, preprocessor, M.json_safe(metadata))
    progress(1.0)
    return TrainingResult(
        task=task,
        task_reason=resolved.task_reason,
        classes=prepared.classes,
        native_params=M.json_safe(native),
        metrics=M.json_safe(metrics),
        artifact=artifact,
        artifact_sha256=sha256_hex(artifact),
        artifact_kind=artifact_kind,
        versions=version_info,
    )
