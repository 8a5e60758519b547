"""One training run: a table and a spec in, metrics and a self-contained artifact out.

A caller that picks the split itself (cross-validation, sweeps: see folds.py) passes
``split=(train_idx, val_idx)``; the test split is still the spec's own and still held out.
What is fitted, how it is stored and what it reports beyond the shared figures is the model
kind's (service.training.kinds); this module runs the steps every kind shares.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from service.training import metrics as M
from service.training.artifacts import sha256_hex, versions
from service.training.diagnosis import diagnose
from service.training.errors import Problem, SpecError, TrainingCancelled
from service.training.kinds import registry
from service.training.kinds.base import FitData, FitHooks, Fitted
from service.training.preprocessing import (
    build_preprocessor,
    column_values,
    feature_names_out,
    fit_transform,
    frames_from_table,
    summarize_table,
)
from service.training.resolve import resolve_spec, split_sizes
from service.training.results import (
    Baseline,
    Calibration,
    CalibrationSplits,
    FinalMetrics,
    GeneralizationGap,
    JobMetrics,
    LearningCurvePoint,
    SplitInfo,
    SplitMetrics,
    WeightStats,
)
from service.training.spec import (
    ColumnDtype,
    ColumnSummary,
    ResolvedSpec,
    Task,
    TrainingSpec,
    ValidationSpec,
)

__all__ = [
    "GivenSplit",
    "Prepared",
    "RunControl",
    "SplitIndices",
    "Target",
    "TrainingResult",
    "baseline_of",
    "dump_artifact",
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
    """A table made ready to fit: resolved spec, the rows with a target, encoded target, split."""

    resolved: ResolvedSpec
    schema: dict[str, ColumnDtype]
    target_dtype: ColumnDtype
    table: pa.Table
    y: np.ndarray
    classes: list[Any] | None
    split: SplitIndices
    n_dropped: int
    ignored_columns: dict[str, str]

    @property
    def n_classes(self) -> int:
        return len(self.classes) if self.classes is not None else 0

    def frames(self, *row_sets: np.ndarray) -> list[pd.DataFrame]:
        """The feature frames of these rows (of `y`'s numbering), each built from the table."""
        return frames_from_table(self.table, self.schema, row_sets)


@dataclass
class TrainingResult:
    """Everything a job keeps from a run: the typed report, native parameters and artifact."""

    task: Task
    task_reason: str
    classes: list[Any] | None
    native_params: dict[str, Any]
    report: JobMetrics
    artifact: bytes
    artifact_sha256: str | None
    artifact_kind: str
    versions: dict[str, Any]

    @property
    def metrics(self) -> dict[str, Any]:
        """The report as the JSON the job stores and the API returns."""
        return self.report.to_json()


@dataclass
class RunControl:
    """A run's progress callback (clamped to [0, 1]) and its cancellation check."""

    on_progress: Callable[[float], None] | None = None
    should_stop: Callable[[], bool] | None = None
    what: str = "training"

    def progress(self, fraction: float) -> None:
        if self.on_progress is not None:
            self.on_progress(float(min(max(fraction, 0.0), 1.0)))

    def check(self, where: str) -> None:
        """Raise TrainingCancelled if the caller asked to stop."""
        if self.should_stop is not None and self.should_stop():
            raise TrainingCancelled(f"{self.what} cancelled {where}")


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
    is_test = np.zeros(n, dtype=bool)
    is_test[test_split.test] = True
    used = np.zeros(n, dtype=bool)  # rows of the parts checked so far (O(n), no sorting)
    parts: list[np.ndarray] = []
    for name, idx in zip(("train", "validation"), given, strict=True):
        arr = np.asarray(idx)
        if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(f"split {name} rows must be a 1-d array of integer positions")
        arr = arr.astype(np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= n):
            raise ValueError(f"split {name} rows must lie in [0, {n}), the rows with a target")
        if np.bincount(arr, minlength=n).max(initial=0) > 1:
            raise ValueError(f"split {name} rows hold duplicates")
        if is_test[arr].any():
            raise ValueError(f"split {name} rows include held-out test rows; use sweep_splits()")
        if used[arr].any():
            raise ValueError("split train and validation rows overlap")
        used[arr] = True
        parts.append(np.sort(arr))
    train_rows, val_rows = parts
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
        table=target.table,
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


def split_metrics(y: np.ndarray, scores: np.ndarray, task: Task) -> SplitMetrics | None:
    """The task's metrics of one split (None when the split is empty)."""
    if task == "classification":
        return M.classification_metrics(y, scores)
    return M.regression_metrics(y, scores)


def _baseline(y_train: np.ndarray, task: Task, n_classes: int) -> Baseline:
    """The no-skill model's training score and loss: majority class and class shares, or mean."""
    if task == "classification":
        return baseline_of(task, counts=np.bincount(y_train, minlength=n_classes))
    return baseline_of(task, variance=float(np.var(y_train)))


def baseline_of(
    task: Task, *, counts: np.ndarray | None = None, variance: float | None = None
) -> Baseline:
    """The no-skill baseline from the training split's class counts or its target's variance."""
    metric = M.PRIMARY_METRIC[task]
    if task == "classification":
        assert counts is not None
        shares = counts / max(int(counts.sum()), 1)
        present = shares[shares > 0]
        return Baseline(
            metric=metric,
            score=float(shares.max()),
            loss=float(-(present * np.log(present)).sum()),
            model="predict the majority class (probabilities: the class shares)",
        )
    return Baseline(
        metric=metric,
        score=0.0,
        loss=float(0.5 * (variance or 0.0)),
        model="predict the training mean",
    )


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


def _refit_share(
    spec: TrainingSpec, prepared: Prepared, rows: np.ndarray, hooks: FitHooks
) -> tuple[Fitted, SplitMetrics | None, SplitMetrics | None]:
    """Preprocess and fit on these training rows; score them and the whole validation split."""
    task, y, val = prepared.resolved.task, prepared.y, prepared.split.validation
    preprocessor = build_preprocessor(prepared.schema, spec.preprocessing)
    frame_sub, frame_val = prepared.frames(rows, val)
    X_sub = fit_transform(preprocessor, frame_sub)
    X_val = preprocessor.transform(frame_val)
    names = feature_names_out(preprocessor)
    fitted = _fit(
        spec, FitData(task, X_sub, y[rows], X_val, y[val], prepared.classes, names), hooks
    )
    n_classes = prepared.n_classes
    train_m = split_metrics(y[rows], predict_scores(fitted.model, X_sub, task, n_classes), task)
    val_m = split_metrics(y[val], predict_scores(fitted.model, X_val, task, n_classes), task)
    return fitted, train_m, val_m


def _curve_point(
    spec: TrainingSpec,
    prepared: Prepared,
    size: float,
    full: tuple[Fitted, FinalMetrics],
    hooks: FitHooks,
) -> LearningCurvePoint:
    """One share of the training split, fitted (the full split is the job's own fit) and scored."""
    task, y, train_rows = prepared.resolved.task, prepared.y, prepared.split.train
    labels = y if task == "classification" and spec.validation.stratify else None
    rows = _subsample(train_rows, size, spec.seed, labels)
    if len(rows) == len(train_rows):
        fitted, final = full
        train_m, val_m = final.train, final.validation
    elif task == "classification" and len(np.unique(y[rows])) < 2:
        return LearningCurvePoint(
            size=size,
            n_train=len(rows),
            train=None,
            validation=None,
            note="this share of the training split holds a single class; skipped",
        )
    else:
        fitted, train_m, val_m = _refit_share(spec, prepared, rows, hooks)
    point = LearningCurvePoint(
        size=size, n_train=len(rows), train=train_m, validation=val_m, fit_seconds=fitted.seconds
    )
    if fitted.report.n_epochs is not None:
        point.n_epochs = fitted.report.n_epochs
        point.best_epoch = fitted.report.best_epoch
    return point


def _learning_curve(
    spec: TrainingSpec,
    prepared: Prepared,
    full: tuple[Fitted, FinalMetrics],
    run: RunControl,
    hooks: FitHooks,
    *,
    span: tuple[float, float],
) -> list[LearningCurvePoint]:
    """Refit on shares of the training split; score each on its rows and the whole validation."""
    assert spec.learning_curve is not None
    sizes = spec.learning_curve.sizes
    start, end = span
    points: list[LearningCurvePoint] = []
    for i, size in enumerate(sizes):
        run.check(f"before learning-curve size {size:g}")
        points.append(_curve_point(spec, prepared, size, full, hooks))
        run.progress(start + (end - start) * (i + 1) / len(sizes))
    return points


def _fit(spec: TrainingSpec, data: FitData, hooks: FitHooks) -> Fitted:
    """Fit the spec's model kind on one training split."""
    return registry.kind_of(spec).fit(spec, data, hooks)


@dataclass
class _Matrices:
    """The preprocessed splits of one run, and the fitted preprocessor that made them."""

    preprocessor: Pipeline
    names: list[str]
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray | None
    y_val: np.ndarray
    X_test: np.ndarray | None
    y_test: np.ndarray = field(repr=False)


def _matrices(prepared: Prepared, spec: TrainingSpec) -> _Matrices:
    """Fit the preprocessing on the training rows only and transform every split with it."""
    y, split = prepared.y, prepared.split
    preprocessor = build_preprocessor(prepared.schema, spec.preprocessing)
    train_frame, val_frame, test_frame = prepared.frames(split.train, split.validation, split.test)
    X_train = fit_transform(preprocessor, train_frame)

    def transformed(frame: pd.DataFrame) -> np.ndarray | None:
        return preprocessor.transform(frame) if len(frame) else None

    return _Matrices(
        preprocessor=preprocessor,
        names=feature_names_out(preprocessor),
        X_train=X_train,
        y_train=y[split.train],
        X_val=transformed(val_frame),
        y_val=y[split.validation],
        X_test=transformed(test_frame),
        y_test=y[split.test],
    )


def _scored(
    model: Any, m: _Matrices, task: Task, n_classes: int
) -> tuple[FinalMetrics, CalibrationSplits]:
    """Every split's metrics, and the calibration of the training and validation predictions."""
    train_scores = predict_scores(model, m.X_train, task, n_classes)
    final = FinalMetrics(train=split_metrics(m.y_train, train_scores, task))
    calibration = CalibrationSplits(
        train=_calibration(m.y_train, train_scores, task), validation=None
    )
    if m.X_val is not None:
        val_scores = predict_scores(model, m.X_val, task, n_classes)
        final.validation = split_metrics(m.y_val, val_scores, task)
        calibration.validation = _calibration(m.y_val, val_scores, task)
    if m.X_test is not None:
        final.test = split_metrics(m.y_test, predict_scores(model, m.X_test, task, n_classes), task)
    return final, calibration


def _calibration(y: np.ndarray, scores: np.ndarray, task: Task) -> Calibration | None:
    found = M.calibration(y, scores, task)
    return Calibration(**found) if found is not None else None


def _gap(task: Task, final: FinalMetrics) -> GeneralizationGap | None:
    gap = M.generalization_gap(task, final.train, final.validation)
    return GeneralizationGap(**gap) if gap is not None else None


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
    run = RunControl(on_progress, should_stop)
    run.progress(0.0)
    prepared = prepare(table, spec, max_classes=max_classes, split=split)
    task = prepared.resolved.task
    run.check("after loading the data")
    run.progress(0.05)
    m = _matrices(prepared, spec)
    run.check("after preprocessing")
    run.progress(0.1)

    kind = registry.kind_of(spec)
    # With a learning curve the main fit takes the first half of the fitting progress.
    fit_end = 0.9 if spec.learning_curve is None else 0.5
    epochs = kind.epochs(spec.model) or 1

    def epoch_hook(record: dict[str, Any]) -> None:
        run.progress(min(0.1 + (fit_end - 0.1) * record["epoch"] / epochs, fit_end))
        if on_epoch is not None:
            on_epoch(M.json_safe(record))

    data = FitData(task, m.X_train, m.y_train, m.X_val, m.y_val, prepared.classes, m.names)
    fitted = kind.fit(spec, data, FitHooks(epoch_hook, should_stop, device))
    run.check("after fitting")
    run.progress(fit_end)

    final, calibration = _scored(fitted.model, m, task, prepared.n_classes)
    report = _report(spec, prepared, m, fitted, (final, calibration))
    if spec.learning_curve is not None and m.X_val is not None:
        report.learning_curve = _learning_curve(
            spec, prepared, (fitted, final), run, FitHooks(None, should_stop, device),
            span=(fit_end, 0.9),
        )  # fmt: skip
    report.diagnosis = diagnose(report, spec, task)
    run.progress(0.95)

    version_info = versions()
    artifact = _artifact(spec, prepared, m, fitted, version_info) if with_artifact else b""
    run.progress(1.0)
    return TrainingResult(
        task=task,
        task_reason=prepared.resolved.task_reason,
        classes=prepared.classes,
        native_params=M.json_safe(fitted.native),
        report=report,
        artifact=artifact,
        artifact_sha256=sha256_hex(artifact) if with_artifact else None,
        artifact_kind=kind.artifact.name,
        versions=version_info,
    )


def _report(
    spec: TrainingSpec,
    prepared: Prepared,
    m: _Matrices,
    fitted: Fitted,
    scored: tuple[FinalMetrics, CalibrationSplits],
) -> JobMetrics:
    """The shared figures of a fit, with what its kind reports of it."""
    task, split = prepared.resolved.task, prepared.split
    final, calibration = scored
    report = JobMetrics(
        final=final,
        generalization_gap=_gap(task, final),
        baseline=_baseline(m.y_train, task, prepared.n_classes),
        calibration=calibration,
        weights=WeightStats(**M.weights(fitted.weight_arrays)),
        **fitted.report.set_fields(),
        fit_seconds=fitted.seconds,
        n_train=len(split.train),
        n_validation=len(split.validation),
        n_test=len(split.test),
        n_rows_dropped_missing_target=prepared.n_dropped,
        n_inputs=int(m.X_train.shape[1]),
        split=SplitInfo(stratified=split.stratified, seed=spec.seed, given=split.given),
    )
    if prepared.ignored_columns and spec.features is None:
        report.ignored_columns = prepared.ignored_columns
    return report


def _artifact(
    spec: TrainingSpec,
    prepared: Prepared,
    m: _Matrices,
    fitted: Fitted,
    version_info: dict[str, Any],
) -> bytes:
    """The kind's artifact of the fitted model with its preprocessing and what it was fitted on."""
    return dump_artifact(
        spec,
        prepared.resolved.task,
        (prepared.target_dtype, prepared.classes, prepared.schema, m.names),
        fitted,
        m.preprocessor,
        version_info,
    )


def dump_artifact(
    spec: TrainingSpec,
    task: Task,
    columns: tuple[ColumnDtype, list[Any] | None, dict[str, ColumnDtype], list[str]],
    fitted: Fitted,
    preprocessor: Pipeline,
    version_info: dict[str, Any],
) -> bytes:
    """The artifact of a fitted model: columns are (target dtype, classes, schema, names out)."""
    target_dtype, classes, schema, names = columns
    metadata = {
        "task": task,
        "target": spec.target,
        "target_dtype": target_dtype,
        "classes": classes,
        "feature_schema": schema,
        "feature_names_out": names,
        "spec": spec.model_dump(mode="json"),
        "native_params": fitted.native,
        "versions": version_info,
    }
    return registry.kind_of(spec).dump(fitted.model, preprocessor, M.json_safe(metadata))
