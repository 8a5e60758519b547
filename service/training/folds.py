"""Explicit splits for sweeps: k folds or one validation split, never touching the test rows.

Indices are positions into the rows that have a target (rows with a missing target dropped, as
train() drops them), so each ``(train_idx, val_idx)`` can go straight to
``train(..., split=...)`` or ``fit_path(..., split=...)``. The test rows are the ones train()
holds out for the same spec and seed, whichever way the rest is split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from sklearn.model_selection import KFold, StratifiedKFold

from service.training.errors import SpecError
from service.training.resolve import split_sizes
from service.training.spec import TrainingSpec
from service.training.train import encode_target, held_out_test, split_indices

__all__ = ["MAX_FOLDS", "SweepSplits", "sweep_splits"]

#: The most folds a sweep may ask for.
MAX_FOLDS = 20


@dataclass
class SweepSplits:
    """The held-out test rows and the (train_idx, val_idx) pairs a sweep fits and scores."""

    test_idx: np.ndarray
    splits: list[tuple[np.ndarray, np.ndarray]]
    stratified: bool
    n_rows: int


def _problem(field: str, message: str) -> SpecError:
    return SpecError([{"field": field, "message": message}])


def sweep_splits(
    table: pa.Table,
    spec: TrainingSpec,
    *,
    folds: int | None,
    validation_fraction: float | None,
    max_classes: int = 100,
) -> SweepSplits:
    """K shuffled (stratified when possible) folds or one validation split of the non-test rows.

    ``validation_fraction`` is a share of all rows with a target, as validation.fraction is, so
    ``validation_fraction=spec.validation.fraction`` reproduces train()'s own split exactly.
    """
    if (folds is None) == (validation_fraction is None):
        raise _problem(
            "folds",
            "give exactly one of folds (k-fold cross-validation, e.g. 5) and "
            "validation_fraction (one validation split, e.g. 0.2)",
        )
    target = encode_target(table, spec, max_classes=max_classes)
    y = target.y
    n = len(y)
    classification = target.resolved.task == "classification"
    labels = y if classification and spec.validation.stratify else None

    if validation_fraction is not None:
        if not 0 < validation_fraction < 1:
            raise _problem(
                "validation_fraction",
                f"validation_fraction must lie strictly between 0 and 1 (got "
                f"{validation_fraction}); e.g. 0.2",
            )
        validation = spec.validation.model_copy(update={"fraction": float(validation_fraction)})
        n_train, n_val, n_test = split_sizes(n, validation)
        if n_train < 2 or n_val < 1:
            raise _problem(
                "validation_fraction",
                f"{n} rows have a target: {n_test} test and {n_val} validation rows leave "
                f"{n_train} to train on; lower validation_fraction or validation.test_fraction",
            )
        split = split_indices(
            n, validation, spec.seed, stratify_labels=y if classification else None
        )
        pairs = [(split.train, split.validation)]
        test, stratified = split.test, split.stratified
    else:
        assert folds is not None
        held = held_out_test(target, spec)
        test, pool = held.test, held.train
        if not 2 <= folds <= min(MAX_FOLDS, len(pool)):
            raise _problem(
                "folds",
                f"folds must be between 2 and {min(MAX_FOLDS, len(pool))} ({len(pool)} rows "
                f"outside the test split, at most {MAX_FOLDS} folds); got {folds}",
            )
        stratified = False
        if labels is not None:
            _, counts = np.unique(labels[pool], return_counts=True)
            stratified = bool(counts.min() >= folds)
        splitter = (
            StratifiedKFold(n_splits=folds, shuffle=True, random_state=spec.seed)
            if stratified
            else KFold(n_splits=folds, shuffle=True, random_state=spec.seed)
        )
        fold_labels = labels[pool] if stratified and labels is not None else None
        pairs = [
            (np.sort(pool[tr]), np.sort(pool[va])) for tr, va in splitter.split(pool, fold_labels)
        ]

    if classification:
        for i, (train_idx, _) in enumerate(pairs):
            if len(np.unique(y[train_idx])) < 2:
                raise _problem(
                    "target",
                    f"the training rows of split {i} hold a single class of the target; "
                    "classification needs at least 2 (use fewer folds or upload more rows of "
                    "the rare classes)",
                )
    return SweepSplits(test_idx=np.sort(test), splits=pairs, stratified=bool(stratified), n_rows=n)
