"""sweep_splits() and train(split=...): test rows stay train()'s own, folds partition the rest."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from service.training.errors import SpecError
from service.training.folds import sweep_splits
from service.training.train import prepare, train
from tests.training.helpers import breast_cancer, diabetes, mixed_table, spec


def with_missing_targets(table: pa.Table, target: str, rows: list[int]) -> pa.Table:
    values = table.column(target).to_pylist()
    for i in rows:
        values[i] = None
    index = table.schema.get_field_index(target)
    return table.set_column(index, target, pa.array(values, table.schema.field(target).type))


@pytest.mark.parametrize(
    ("table", "target"),
    [
        (with_missing_targets(breast_cancer(), "diagnosis", [0, 5, 17]), "diagnosis"),
        (diabetes(), "progression"),
        (mixed_table(), "label"),
    ],
)
def test_folds_partition_the_non_test_rows_and_keep_train_s_test_rows(
    table: pa.Table, target: str
) -> None:
    s = spec(target=target, validation={"fraction": 0.2, "test_fraction": 0.15}, seed=4)
    splits = sweep_splits(table, s, folds=5, validation_fraction=None)
    prepared = prepare(table, s)
    n = len(prepared.y)
    assert splits.n_rows == n
    np.testing.assert_array_equal(splits.test_idx, prepared.split.test)
    assert len(splits.splits) == 5
    pool = np.setdiff1d(np.arange(n), splits.test_idx)
    vals = np.concatenate([va for _, va in splits.splits])
    np.testing.assert_array_equal(np.sort(vals), pool)  # every non-test row validates once
    for train_idx, val_idx in splits.splits:
        assert not np.intersect1d(train_idx, splits.test_idx).size
        assert not np.intersect1d(train_idx, val_idx).size
        np.testing.assert_array_equal(np.union1d(train_idx, val_idx), pool)
    again = sweep_splits(table, s, folds=5, validation_fraction=None)
    for (a, b), (c, d) in zip(splits.splits, again.splits, strict=True):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)


def test_classification_folds_are_stratified_and_seeded() -> None:
    table = breast_cancer()
    s = spec(target="diagnosis", validation={"test_fraction": 0.1})
    splits = sweep_splits(table, s, folds=4, validation_fraction=None)
    assert splits.stratified
    y = prepare(table, s).y
    share = y.mean()
    for _, val_idx in splits.splits:
        assert abs(y[val_idx].mean() - share) < 0.02
    other = sweep_splits(table, s.model_copy(update={"seed": 9}), folds=4, validation_fraction=None)
    assert not np.array_equal(splits.splits[0][1], other.splits[0][1])
    np.testing.assert_array_equal(  # the seed moves the test rows as train() moves them
        other.test_idx, prepare(table, s.model_copy(update={"seed": 9})).split.test
    )


def test_validation_fraction_reproduces_train_s_own_split() -> None:
    table = mixed_table()
    s = spec(target="label", validation={"fraction": 0.25, "test_fraction": 0.1}, seed=2)
    splits = sweep_splits(table, s, folds=None, validation_fraction=0.25)
    split = prepare(table, s).split
    assert len(splits.splits) == 1
    train_idx, val_idx = splits.splits[0]
    np.testing.assert_array_equal(train_idx, split.train)
    np.testing.assert_array_equal(val_idx, split.validation)
    np.testing.assert_array_equal(splits.test_idx, split.test)
    # Another fraction moves rows between train and validation, never the test rows.
    other = sweep_splits(table, s, folds=None, validation_fraction=0.4)
    np.testing.assert_array_equal(other.test_idx, split.test)
    assert len(other.splits[0][1]) == 96


def test_sweep_split_problems() -> None:
    table = diabetes()
    s = spec(target="progression")
    for folds, fraction, field in [
        (None, None, "folds"),
        (5, 0.2, "folds"),
        (1, None, "folds"),
        (10_000, None, "folds"),
        (None, 1.0, "validation_fraction"),
        (None, 0.0, "validation_fraction"),
    ]:
        with pytest.raises(SpecError) as info:
            sweep_splits(table, s, folds=folds, validation_fraction=fraction)
        assert info.value.problems[0]["field"] == field


def test_train_with_a_given_split_holds_out_the_same_test_rows() -> None:
    table = with_missing_targets(diabetes(), "progression", [3, 4])
    s = spec(target="progression", validation={"test_fraction": 0.2})
    splits = sweep_splits(table, s, folds=3, validation_fraction=None)
    train_idx, val_idx = splits.splits[1]
    result = train(table, s, split=(train_idx, val_idx), with_artifact=False)
    m = result.metrics
    assert (m["n_train"], m["n_validation"]) == (len(train_idx), len(val_idx))
    assert m["n_test"] == len(splits.test_idx) and m["split"]["given"] is True
    assert result.native_params["n_train"] == len(train_idx)
    assert result.artifact == b"" and result.artifact_sha256 is None
    plain = train(table, s)
    assert m["final"]["test"]["n"] == plain.metrics["final"]["test"]["n"]
    assert plain.artifact_sha256 is not None and plain.metrics["split"]["given"] is False
    # The same rows as the spec's own split give the same model and metrics, artifact or not.
    own = prepare(table, s).split
    same = train(table, s, split=(own.train, own.validation), with_artifact=False)
    assert same.metrics["final"] == plain.metrics["final"]
    assert same.metrics["coefficients"] == plain.metrics["coefficients"]


def test_a_given_split_must_not_touch_the_test_rows() -> None:
    table = diabetes()
    s = spec(target="progression", validation={"test_fraction": 0.2})
    test_rows = prepare(table, s).split.test
    rest = np.setdiff1d(np.arange(442), test_rows)
    with pytest.raises(ValueError, match="test rows"):
        train(table, s, split=(np.r_[rest[:100], test_rows[:1]], rest[100:]))
    with pytest.raises(ValueError, match="overlap"):
        train(table, s, split=(rest[:100], rest[99:]))
    with pytest.raises(ValueError, match=r"\[0, 442\)"):
        train(table, s, split=(rest[:100], np.array([10_000])))
