"""One training run: a table and a spec in, metrics and a self-contained artifact out.

A caller that picks the split itself (cross-validation, sweeps: see folds.py) passes
``split=(train_idx, val_idx)``; the test split is still the spec's own and still held out.
"""

from __future__ import annotations

import math
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
from service.training.diagnosis import diagnose
from service.training.errors import Problem, SpecError, TrainingCancelled
from service.training.linear import build_linear_estimator
from service.training.preprocessing import (
    build_preprocessor,
    column_values,
    feature_names_out,
    fit_transform,
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

__all__ = [
    "GivenSplit",
    "Prepared",
    "SplitIndices",
    "Target",
    "TrainingResult",
    "encode_target",
    "held_out_test",
    "predict_scores",
    "prepare",
    "split_indices",
    "split_metrics",
    "train",
]

#: A split chosen by the caller: (train rows, validation rows), positions into the rows that have
#: a target (the same positions as SplitIndices).
GivenSplit = tuple[np.ndarray, np.ndarray]


@dataclass
class SplitIndices:
    """Row positions (into the rows that have a target) of each split, sorted."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    stratified: bool
    given: bool = False


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
    artifact_sha256: str | None
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
    summaries, unsupported = summarize_table(table, target=spec.target)
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


@dataclass
class Target:
    """The encoded target of the rows that have one, before any feature is read."""

    resolved: ResolvedSpec
    schema: dict[str, ColumnDtype]
    target_dtype: ColumnDtype
    table: pa.Table
    y: np.ndarray
    classes: list[Any] | None
    n_dropped: int
    ignored_columns: dict[str, str]


def encode_target(table: pa.Table, spec: TrainingSpec, *, max_classes: int = 100) -> Target:
    """Resolve the spec, drop rows without a target and encode it (class indices or floats)."""
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

    classes: list[Any] | None = None
    if resolved.task == "classification":
        raw = _target_labels(table.column(spec.target), target_dtype)
        uniques = np.unique(raw)
        y = np.searchsorted(uniques, raw).astype(np.int64)
        classes = [M.json_safe(v.item() if hasattr(v, "item") else v) for v in uniques]
    else:
        y = target_values.astype(np.float64)
    return Target(resolved, schema, target_dtype, table, y, classes, n_dropped, unsupported)


def held_out_test(target: Target, spec: TrainingSpec) -> SplitIndices:
    """The spec's test split alone (everything else in train): identical to train()'s test rows.

    split_indices cuts the test rows first, from all rows, so they do not depend on
    validation.fraction.
    """
    test_only = spec.validation.model_copy(update={"fraction": 0.0})
    return split_indices(
        len(target.y),
        test_only,
        spec.seed,
        stratify_labels=target.y if target.resolved.task == "classification" else None,
    )


def _given_split(target: Target, spec: TrainingSpec, given: GivenSplit) -> SplitIndices:
    """A caller's (train, validation) rows checked against the spec's held-out test rows."""
    n = len(target.y)
    test_split = held_out_test(target, spec)
    parts: list[np.ndarray] = []
    for name, idx in zip(("train", "validation"), given, strict=True):
        arr = np.asarray(idx)
        if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(f"split {name} rows must be a 1-d array of integer positions")
        arr = arr.astype(np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= n):
            raise ValueError(f"split {name} rows must lie in [0, {n}), the rows with a target")
        if len(np.unique(arr)) != len(arr):
            raise ValueError(f"split {name} rows hold duplicates")
        if np.intersect1d(arr, test_split.test).size:
            raise ValueError(f"split {name} rows include held-out test rows; use sweep_splits()")
        parts.append(np.sort(arr))
    train_rows, val_rows = parts
    if np.intersect1d(train_rows, val_rows).size:
        raise ValueError("split train and validation rows overlap")
    if len(train_rows) < 2:
        raise ValueError(f"split train holds {len(train_rows)} rows; at least 2 are needed")
    return SplitIndices(train_rows, val_rows, test_split.test, test_split.stratified, given=True)


def prepare(
    table: pa.Table,
    spec: TrainingSpec,
    *,
    max_classes: int = 100,
    split: GivenSplit | None = None,
) -> Prepared:
    """Resolve the spec, drop rows without a target, encode the target and split the rows.

    With ``split`` the caller's (train, validation) rows replace the spec's validation split;
    the test rows are the spec's either way.
    """
    target = encode_target(table, spec, max_classes=max_classes)
    y = target.y
    n = len(y)
    if split is not None:
        split_ = _given_split(target, spec, split)
    else:
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
        split_ = split_indices(
            n,
            spec.validation,
            spec.seed,
            stratify_labels=y if target.resolved.task == "classification" else None,
        )
    if target.resolved.task == "classification" and len(np.unique(y[split_.train])) < 2:
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
        resolved=target.resolved,
        schema=target.schema,
        target_dtype=target.target_dtype,
        frame=frame_from_table(target.table, target.schema),
        y=y,
        classes=target.classes,
        split=split_,
        n_dropped=target.n_dropped,
        ignored_columns=target.ignored_columns,
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


def predict_scores(model: Any, X: np.ndarray, task: Task, n_classes: int) -> np.ndarray:
    """Class probabilities over all classes (a class unseen in training gets 0), or values."""
    if task == "regression":
        return np.asarray(model.predict(X), dtype=np.float64)
    proba = np.asarray(model.predict_proba(X), dtype=np.float64)
    if proba.shape[1] == n_classes:
        return proba
    full = np.zeros((proba.shape[0], n_classes))
    full[:, np.asarray(model.classes_, dtype=int)] = proba
    return full


def split_metrics(y: np.ndarray, scores: np.ndarray, task: Task) -> dict[str, Any] | None:
    """The task's metrics of one split (None when the split is empty)."""
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


@dataclass
class _Fitted:
    """A fitted model with what train() reports of it beyond the split metrics."""

    model: Any
    native: dict[str, Any]
    weight_arrays: list[np.ndarray]
    extra: dict[str, Any]
    kind: Literal["skops", "mlp-zip"]
    seconds: float


def _fit(
    spec: TrainingSpec,
    task: Task,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray | None,
    y_val: np.ndarray | None,
    *,
    classes: list[Any] | None,
    names: list[str],
    on_epoch: Callable[[dict[str, Any]], None] | None,
    should_stop: Callable[[], bool] | None,
    device: str | None,
) -> _Fitted:
    """Fit the spec's model on one training split (validation rows feed MLP curves/stopping)."""
    n_train = len(y_train)
    n_classes = len(classes) if classes is not None else 0
    extra: dict[str, Any] = {}
    started = time.perf_counter()
    if isinstance(spec.model, MLPModelSpec):
        from service.training.mlp import MLPEstimator  # torch loads only for MLP jobs

        model_spec = spec.model
        _, strength, l1_ratio = effective_penalty(spec.regularization)
        es = spec.regularization.early_stopping
        native = native_params(spec, task, n_train)
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
            on_epoch=on_epoch,
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
        return _Fitted(
            model, native, weight_arrays, extra, "mlp-zip", time.perf_counter() - started
        )

    model, native = build_linear_estimator(spec, task, n_train)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(X_train, y_train)
    messages = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
    coef = np.asarray(model.coef_)
    # Rows belong to the classes the training rows hold (a class absent from them has none).
    labels = None if classes is None else [classes[int(c)] for c in model.classes_]
    extra["coefficients"] = M.coefficients(coef, names, labels)
    intercept = np.atleast_1d(np.asarray(model.intercept_, dtype=np.float64))
    extra["intercepts"] = M.intercepts(intercept, labels)
    extra["best_epoch"] = None
    extra["convergence"] = _convergence(model, native, messages)
    return _Fitted(model, native, [coef], extra, "skops", time.perf_counter() - started)


def _baseline(y_train: np.ndarray, task: Task, n_classes: int) -> dict[str, Any]:
    """The no-skill model's training score and loss: majority class and class shares, or mean."""
    if task == "classification":
        shares = np.bincount(y_train, minlength=n_classes) / max(len(y_train), 1)
        present = shares[shares > 0]
        return {
            "metric": "accuracy",
            "score": float(shares.max()),
            "loss": float(-(present * np.log(present)).sum()),
            "model": "predict the majority class (probabilities: the class shares)",
        }
    return {
        "metric": "r2",
        "score": 0.0,
        "loss": float(0.5 * np.var(y_train)),
        "model": "predict the training mean",
    }


def _subsample(rows: np.ndarray, size: float, seed: int, labels: np.ndarray | None) -> np.ndarray:
    """That share of the rows (at least 2), stratified by labels when possible, sorted."""
    n_sub = max(2, min(len(rows), math.ceil(round(len(rows) * size, 6))))
    if n_sub >= len(rows):
        return rows
    if labels is not None:
        try:
            picked, _ = train_test_split(
                rows, train_size=n_sub, random_state=seed, stratify=labels[rows]
            )
            return np.sort(picked)
        except ValueError:
            pass  # too few rows of some class for a stratified cut: plain shuffle
    picked, _ = train_test_split(rows, train_size=n_sub, random_state=seed)
    return np.sort(picked)


def _learning_curve(
    spec: TrainingSpec,
    prepared: Prepared,
    full: tuple[_Fitted, dict[str, Any] | None, dict[str, Any] | None],
    *,
    progress: Callable[[float], None],
    check_stop: Callable[[str], None],
    should_stop: Callable[[], bool] | None,
    device: str | None,
    start: float,
    end: float,
) -> list[dict[str, Any]]:
    """Refit on shares of the training split; score each on its rows and the whole validation."""
    assert spec.learning_curve is not None
    task = prepared.resolved.task
    classes = prepared.classes
    n_classes = len(classes) if classes is not None else 0
    frame, y, split = prepared.frame, prepared.y, prepared.split
    labels = y if task == "classification" and spec.validation.stratify else None
    points: list[dict[str, Any]] = []
    sizes = spec.learning_curve.sizes
    for i, size in enumerate(sizes):
        check_stop(f"before learning-curve size {size:g}")
        rows = _subsample(split.train, size, spec.seed, labels)
        if len(rows) == len(split.train):
            fitted, train_m, val_m = full  # the full training split is the job's own fit
        elif task == "classification" and len(np.unique(y[rows])) < 2:
            points.append(
                {
                    "size": size,
                    "n_train": len(rows),
                    "train": None,
                    "validation": None,
                    "note": "this share of the training split holds a single class; skipped",
                }
            )
            continue
        else:
            preprocessor = build_preprocessor(prepared.schema, spec.preprocessing)
            X_sub = fit_transform(preprocessor, frame.iloc[rows])
            X_val = preprocessor.transform(frame.iloc[split.validation])
            fitted = _fit(
                spec,
                task,
                X_sub,
                y[rows],
                X_val,
                y[split.validation],
                classes=classes,
                names=feature_names_out(preprocessor),
                on_epoch=None,
                should_stop=should_stop,
                device=device,
            )
            train_m = split_metrics(
                y[rows], predict_scores(fitted.model, X_sub, task, n_classes), task
            )
            val_m = split_metrics(
                y[split.validation],
                predict_scores(fitted.model, X_val, task, n_classes),
                task,
            )
        point: dict[str, Any] = {
            "size": size,
            "n_train": len(rows),
            "train": train_m,
            "validation": val_m,
            "fit_seconds": fitted.seconds,
        }
        if "best_epoch" in fitted.extra and fitted.extra.get("n_epochs") is not None:
            point["n_epochs"] = fitted.extra["n_epochs"]
            point["best_epoch"] = fitted.extra["best_epoch"]
        points.append(point)
        progress(start + (end - start) * (i + 1) / len(sizes))
    return points


def train(
    table: pa.Table,
    spec: TrainingSpec,
    *,
    max_classes: int = 100,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    on_progress: Callable[[float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    device: str | None = None,
    split: GivenSplit | None = None,
    with_artifact: bool = True,
) -> TrainingResult:
    """Fit the spec on the table; the test split is held out from fitting and stopping alike.

    ``split=(train_idx, val_idx)`` (positions into the rows that have a target, e.g. from
    sweep_splits) replaces the spec's validation split; ``with_artifact=False`` skips the
    serialization (artifact b"", sha256 None) where only the metrics count, as in a sweep.
    """

    def progress(fraction: float) -> None:
        if on_progress is not None:
            on_progress(float(min(max(fraction, 0.0), 1.0)))

    def check_stop(where: str) -> None:
        if should_stop is not None and should_stop():
            raise TrainingCancelled(f"training cancelled {where}")

    progress(0.0)
    prepared = prepare(table, spec, max_classes=max_classes, split=split)
    resolved, split_ = prepared.resolved, prepared.split
    task = resolved.task
    n_classes = len(prepared.classes) if prepared.classes is not None else 0
    check_stop("after loading the data")
    progress(0.05)

    frame, y = prepared.frame, prepared.y
    preprocessor = build_preprocessor(prepared.schema, spec.preprocessing)
    X_train = fit_transform(preprocessor, frame.iloc[split_.train])
    X_val = (
        preprocessor.transform(frame.iloc[split_.validation]) if len(split_.validation) else None
    )
    X_test = preprocessor.transform(frame.iloc[split_.test]) if len(split_.test) else None
    y_train, y_val, y_test = y[split_.train], y[split_.validation], y[split_.test]
    names = feature_names_out(preprocessor)
    n_train = len(split_.train)
    check_stop("after preprocessing")
    progress(0.1)

    # With a learning curve the main fit takes the first half of the fitting progress.
    fit_end = 0.9 if spec.learning_curve is None else 0.5
    epochs = spec.model.epochs if isinstance(spec.model, MLPModelSpec) else 1

    def epoch_hook(record: dict[str, Any]) -> None:
        progress(min(0.1 + (fit_end - 0.1) * record["epoch"] / epochs, fit_end))
        if on_epoch is not None:
            on_epoch(M.json_safe(record))

    fitted = _fit(
        spec,
        task,
        X_train,
        y_train,
        X_val,
        y_val if X_val is not None else None,
        classes=prepared.classes,
        names=names,
        on_epoch=epoch_hook,
        should_stop=should_stop,
        device=device,
    )
    model, native = fitted.model, fitted.native
    check_stop("after fitting")
    progress(fit_end)

    train_scores = predict_scores(model, X_train, task, n_classes)
    final: dict[str, Any] = {"train": split_metrics(y_train, train_scores, task)}
    calibration = {"train": M.calibration(y_train, train_scores, task), "validation": None}
    if X_val is not None:
        val_scores = predict_scores(model, X_val, task, n_classes)
        final["validation"] = split_metrics(y_val, val_scores, task)
        calibration["validation"] = M.calibration(y_val, val_scores, task)
    if X_test is not None:
        final["test"] = split_metrics(y_test, predict_scores(model, X_test, task, n_classes), task)
    metrics: dict[str, Any] = {
        "final": final,
        "generalization_gap": M.generalization_gap(task, final["train"], final.get("validation")),
        "baseline": _baseline(y_train, task, n_classes),
        "calibration": calibration,
        "weights": M.weights(fitted.weight_arrays),
        **fitted.extra,
        "fit_seconds": fitted.seconds,
        "n_train": n_train,
        "n_validation": len(split_.validation),
        "n_test": len(split_.test),
        "n_rows_dropped_missing_target": prepared.n_dropped,
        "n_inputs": int(X_train.shape[1]),
        "split": {"stratified": split_.stratified, "seed": spec.seed, "given": split_.given},
    }
    if prepared.ignored_columns and spec.features is None:
        metrics["ignored_columns"] = prepared.ignored_columns
    if spec.learning_curve is not None and X_val is not None:
        metrics["learning_curve"] = _learning_curve(
            spec,
            prepared,
            (fitted, final["train"], final.get("validation")),
            progress=progress,
            check_stop=check_stop,
            should_stop=should_stop,
            device=device,
            start=fit_end,
            end=0.9,
        )
    metrics = M.json_safe(metrics)
    metrics["diagnosis"] = diagnose(metrics, spec, task)
    progress(0.95)

    version_info = versions()
    artifact = b""
    if with_artifact:
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
        if fitted.kind == "skops":
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
        metrics=metrics,
        artifact=artifact,
        artifact_sha256=sha256_hex(artifact) if with_artifact else None,
        artifact_kind=fitted.kind,
        versions=version_info,
    )
