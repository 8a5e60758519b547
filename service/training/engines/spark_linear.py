"""The linear kind fitted by Spark MLlib on a Parquet URI; the data never passes through Python.

The convention maps exactly (ARCHITECTURE.md): LogisticRegression takes ``regParam = strength``
and ``elasticNetParam = l1_ratio``; LinearRegression divides its penalty by the label's standard
deviation sigma_y (weighted, n-1), so ``regParam = s*(r + (1-r)*sigma_y)`` and
``elasticNetParam = s*r/regParam``. Features are imputed, standardized (n-1 standard deviation,
as Spark computes it) and one-hot encoded (``dropLast=false``) by Spark on the training split;
the estimator runs with ``standardization=false`` so the penalty applies to those features.
The artifact is the linear kind's scikit-learn pipeline rebuilt from Spark's fitted statistics
(not refitted), so predict and ONNX export do not care which engine trained it.

Splits are drawn per row from ``rand(seed)``: deterministic for a seed and a dataset, but not
the local engine's rows, and never stratified.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from service.training import metrics as M
from service.training.artifacts import sha256_hex, versions
from service.training.diagnosis import diagnose
from service.training.errors import SpecError
from service.training.kinds import registry
from service.training.kinds.base import Fitted
from service.training.preprocessing import NUMERIC_DTYPES, build_preprocessor
from service.training.resolve import resolve_spec
from service.training.results import (
    Coefficient,
    Convergence,
    FinalMetrics,
    GeneralizationGap,
    Intercept,
    JobMetrics,
    ModelReport,
    SplitInfo,
    SplitMetrics,
    WeightStats,
)
from service.training.spec import (
    ColumnDtype,
    ColumnSummary,
    Task,
    TrainingSpec,
    effective_penalty,
)
from service.training.train import RunControl, TrainingResult, baseline_of, dump_artifact

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from sklearn.pipeline import Pipeline

__all__ = [
    "SPARK_MAX_ITER",
    "SPARK_TOL",
    "SparkFit",
    "fit_on_spark",
    "spark_native_params",
    "split_of",
]

# Solver settings of the Spark fit (echoed): tight, so it reaches the same optimum as the local fit.
SPARK_MAX_ITER = 1000
SPARK_TOL = 1e-10

LABEL, WEIGHT, SPLIT, FEATURES = "_rl_label", "_rl_weight", "_rl_split", "_rl_features"
TRAIN, VALIDATION, TEST = 0, 1, 2


def _dtype(spark_type: Any) -> ColumnDtype | None:
    """Our column kinds from a Spark SQL type; None for types we do not learn from."""
    from pyspark.sql import types as T

    if isinstance(spark_type, T.BooleanType):
        return "boolean"
    if isinstance(spark_type, T.IntegralType):
        return "integer"
    if isinstance(spark_type, T.FractionalType):
        return "float"
    if isinstance(spark_type, T.StringType):
        return "categorical"
    return None


def _value(name: str, dtype: ColumnDtype) -> Column:
    """A column as the model sees it: numbers as doubles (NaN and infinities null), text as is."""
    from pyspark.sql import functions as F

    column = F.col(f"`{name}`")
    if dtype == "categorical":
        return column.cast("string")
    as_double = column.cast("double")
    if dtype == "float":
        finite = ~F.isnan(as_double) & (F.abs(as_double) != float("inf"))
        return F.when(finite, as_double)
    return as_double


def _summaries(df: DataFrame, target: str) -> list[ColumnSummary]:
    """Column summaries in one pass: missing values of each, distinct values where a spec needs."""
    from pyspark.sql import functions as F

    kinds = {f.name: _dtype(f.dataType) for f in df.schema.fields}
    typed = {name: dtype for name, dtype in kinds.items() if dtype is not None}
    aggs: list[Column] = []
    for name, dtype in typed.items():
        value = _value(name, dtype)
        aggs.append(F.sum(value.isNull().cast("long")).alias(f"m{len(aggs)}"))
        if name == target or dtype == "categorical":
            aggs.append(F.countDistinct(value).alias(f"u{len(aggs)}"))
    row = df.agg(*aggs).collect()[0]
    values = list(row)
    out: list[ColumnSummary] = []
    i = 0
    for name, dtype in typed.items():
        missing = int(values[i] or 0)
        i += 1
        n_unique = None
        if name == target or dtype == "categorical":
            n_unique = int(values[i] or 0)
            i += 1
        out.append(ColumnSummary(name, dtype, n_unique, missing))
    return out


def spark_native_params(
    spec: TrainingSpec, task: Task, n_train: int, n_classes: int, sigma_y: float | None
) -> dict[str, Any]:
    """The Spark estimator and its parameters for the spec's penalty (see the module docstring)."""
    penalty, strength, l1_ratio = effective_penalty(spec.regularization)
    params: dict[str, Any] = {
        "maxIter": SPARK_MAX_ITER,
        "tol": SPARK_TOL,
        "fitIntercept": True,
        "standardization": False,
    }
    notes: dict[str, Any]
    if task == "classification":
        estimator, module = "LogisticRegression", "pyspark.ml.classification"
        params["family"] = "binomial" if n_classes == 2 else "multinomial"
        params["regParam"] = strength
        params["elasticNetParam"] = l1_ratio
        notes = {"formula": "regParam = strength, elasticNetParam = l1_ratio"}
        if spec.class_weight == "balanced":
            params["weightCol"] = "n_train / (n_classes * n_class)"
    else:
        estimator, module = "LinearRegression", "pyspark.ml.regression"
        sigma = float(sigma_y or 0.0)
        reg = strength * (l1_ratio + (1 - l1_ratio) * sigma) if penalty != "none" else 0.0
        params["regParam"] = reg
        params["elasticNetParam"] = strength * l1_ratio / reg if reg > 0 else 0.0
        # Always L-BFGS: the normal-equation solver divides by the population (n) sigma_y instead.
        params["solver"] = "l-bfgs"
        notes = {
            "formula": "regParam = strength*(l1_ratio + (1-l1_ratio)*sigma_y), "
            "elasticNetParam = strength*l1_ratio/regParam (Spark divides its penalty by sigma_y)",
            "sigma_y": sigma,
        }
    return {
        "family": "spark",
        "engine": "spark",
        "module": module,
        "penalty": penalty,
        "strength": strength,
        "l1_ratio": l1_ratio,
        "n_train": n_train,
        "estimator": estimator,
        **notes,
        "params": params,
    }


@dataclass
class _Columns:
    """The resolved inputs: schema, numeric and categorical names, and the target's kind."""

    schema: dict[str, ColumnDtype]
    target_dtype: ColumnDtype
    task: Task
    task_reason: str
    classes: list[Any] | None

    @property
    def numeric(self) -> list[str]:
        return [n for n, d in self.schema.items() if d in NUMERIC_DTYPES]

    @property
    def categorical(self) -> list[str]:
        return [n for n, d in self.schema.items() if d == "categorical"]


@dataclass
class _Statistics:
    """What the preprocessing learned on the training split (copied into scikit-learn)."""

    fill: list[float] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    modes: list[str] = field(default_factory=list)
    categories: list[list[str]] = field(default_factory=list)


@dataclass
class SparkFit:
    """A Spark fit's result and what a test compares: the fitted Spark model and the data."""

    result: TrainingResult
    spark_model: Any
    featurized: DataFrame
    pipeline: Pipeline


def _resolve(df: DataFrame, spec: TrainingSpec, max_classes: int) -> _Columns:
    summaries = _summaries(df, spec.target)
    resolved = resolve_spec(spec, summaries, max_classes=max_classes)
    by_name = {s.name: s for s in summaries}
    schema = {f: by_name[f].dtype for f in resolved.features}
    return _Columns(schema, by_name[spec.target].dtype, resolved.task, resolved.task_reason, None)


def _labelled(df: DataFrame, spec: TrainingSpec, cols: _Columns) -> DataFrame:
    """Rows with a target, the label encoded (class index by sorted label, or a double)."""
    from pyspark.sql import functions as F

    target = _value(spec.target, cols.target_dtype)
    if cols.task == "classification" and cols.target_dtype in ("boolean", "integer"):
        # Labels keep their own type (1, not 1.0; true, not 1.0), as the local engine's.
        column = F.col(f"`{spec.target}`")
        target = column if cols.target_dtype == "boolean" else column.cast("long")
    df = df.where(target.isNotNull())
    if cols.task == "classification":
        labels = sorted(r[0] for r in df.select(target.alias("t")).distinct().collect())
        cols.classes = [M.json_safe(v) for v in labels]
        mapping = F.create_map(*[F.lit(x) for i, v in enumerate(labels) for x in (v, float(i))])
        label = mapping[target]
    else:
        label = target
    inputs = [_value(n, d).alias(n) for n, d in cols.schema.items()]
    return df.select(*inputs, label.cast("double").alias(LABEL), split_of(spec).alias(SPLIT))


def split_of(spec: TrainingSpec) -> Column:
    """Each row's split (0 train, 1 validation, 2 test) from rand(seed), over the rows that have
    a target in the file's order."""
    from pyspark.sql import functions as F

    u = F.rand(spec.seed)
    test_f, val_f = spec.validation.test_fraction, spec.validation.fraction
    return F.when(u < test_f, TEST).when(u < test_f + val_f, VALIDATION).otherwise(TRAIN)


def _with_weights(df: DataFrame, cols: _Columns, spec: TrainingSpec) -> DataFrame:
    """Balanced class weights n/(k*n_c) from the training split, as scikit-learn's."""
    from pyspark.sql import functions as F

    if cols.task != "classification" or spec.class_weight != "balanced":
        return df
    counts: dict[float, int] = dict(
        df.where(F.col(SPLIT) == TRAIN).groupBy(LABEL).count().collect()
    )
    n, k = sum(counts.values()), len(counts)
    weights = F.create_map(*[F.lit(x) for c, m in counts.items() for x in (c, n / (k * m))])
    return df.withColumn(WEIGHT, F.coalesce(weights[F.col(LABEL)], F.lit(0.0)))


def _featurizer(df: DataFrame, cols: _Columns, spec: TrainingSpec) -> tuple[Any, _Statistics]:
    """The Spark ML preprocessing fitted on the training rows, and its statistics."""
    from pyspark.ml import Pipeline as SparkPipeline
    from pyspark.ml.feature import (
        Imputer,
        OneHotEncoder,
        StandardScaler,
        StringIndexer,
        VectorAssembler,
    )
    from pyspark.sql import functions as F

    train = df.where(F.col(SPLIT) == TRAIN)
    stages: list[Any] = []
    parts: list[str] = []
    stats = _Statistics()
    numeric, categorical = cols.numeric, cols.categorical
    if numeric:
        filled = [f"_rl_fill_{i}" for i in range(len(numeric))]
        stages.append(
            Imputer(strategy=spec.preprocessing.impute, inputCols=numeric, outputCols=filled)
        )
        stages.append(VectorAssembler(inputCols=filled, outputCol="_rl_num"))
        parts.append("_rl_num")
        if spec.preprocessing.standardize:
            stages.append(
                StandardScaler(
                    inputCol="_rl_num", outputCol="_rl_scaled", withMean=True, withStd=True
                )
            )
            parts[-1] = "_rl_scaled"
    if categorical:
        stats.modes = [_mode(train, name) for name in categorical]
        indexed = [f"_rl_idx_{i}" for i in range(len(categorical))]
        onehot = [f"_rl_oh_{i}" for i in range(len(categorical))]
        stages.append(
            StringIndexer(
                inputCols=[f"_rl_cat_{i}" for i in range(len(categorical))],
                outputCols=indexed,
                stringOrderType="alphabetAsc",
                handleInvalid="keep",
            )
        )
        stages.append(OneHotEncoder(inputCols=indexed, outputCols=onehot, dropLast=False))
        parts.extend(onehot)
    stages.append(VectorAssembler(inputCols=parts, outputCol="_rl_assembled"))
    fitted = SparkPipeline(stages=stages).fit(_filled(train, categorical, stats.modes))
    stage: Any
    for stage in fitted.stages:
        name = type(stage).__name__
        if name == "ImputerModel":
            row = stage.surrogateDF.collect()[0]
            stats.fill = [float(row[c]) for c in numeric]
        elif name == "StandardScalerModel":
            stats.mean = [float(v) for v in stage.mean.toArray()]
            stats.std = [float(v) for v in stage.std.toArray()]
        elif name == "StringIndexerModel":
            stats.categories = [list(labels) for labels in stage.labelsArray]
    return fitted, stats


def _mode(train: DataFrame, name: str) -> str:
    """The most frequent value (the smallest among ties), as SimpleImputer's most_frequent."""
    from pyspark.sql import functions as F

    top = (
        train.where(F.col(f"`{name}`").isNotNull())
        .groupBy(f"`{name}`")
        .count()
        .orderBy(F.desc("count"), F.asc(f"`{name}`"))
        .first()
    )
    return "" if top is None else str(top[0])


def _filled(df: DataFrame, categorical: list[str], modes: list[str]) -> DataFrame:
    """Categorical inputs with missing values replaced by the training split's mode."""
    from pyspark.sql import functions as F

    for i, (name, mode) in enumerate(zip(categorical, modes, strict=True)):
        df = df.withColumn(f"_rl_cat_{i}", F.coalesce(F.col(f"`{name}`"), F.lit(mode)))
    return df


def _real_slots(cols: _Columns, stats: _Statistics) -> list[int]:
    """Positions of the assembled vector without the one-hot slot of unseen categories
    (StringIndexer's handleInvalid='keep' gives it; scikit-learn encodes them as zeros)."""
    keep = list(range(len(cols.numeric)))
    position = len(keep)
    for labels in stats.categories:
        keep.extend(range(position, position + len(labels)))
        position += len(labels) + 1
    return keep


def _names(cols: _Columns, stats: _Statistics) -> list[str]:
    names = list(cols.numeric)
    for name, labels in zip(cols.categorical, stats.categories, strict=True):
        names.extend(f"{name}={label}" for label in labels)
    return names


def _featurize(df: DataFrame, cols: _Columns, spec: TrainingSpec) -> tuple[DataFrame, _Statistics]:
    """Every split as (features, label, weight, split), the preprocessing fitted on train only."""
    from pyspark.ml.feature import VectorSlicer

    fitted, stats = _featurizer(df, cols, spec)
    assembled = fitted.transform(_filled(df, cols.categorical, stats.modes))
    slicer = VectorSlicer(
        inputCol="_rl_assembled", outputCol=FEATURES, indices=_real_slots(cols, stats)
    )
    extra = [WEIGHT] if WEIGHT in df.columns else []
    return slicer.transform(assembled).select(FEATURES, LABEL, SPLIT, *extra), stats


def _estimator(native: dict[str, Any], weighted: bool) -> Any:
    """The Spark estimator native_params describe, reading this module's column names."""
    params = {k: v for k, v in native["params"].items() if k != "weightCol"}
    common = {"featuresCol": FEATURES, "labelCol": LABEL, **params}
    if weighted:
        common["weightCol"] = WEIGHT
    if native["estimator"] == "LogisticRegression":
        from pyspark.ml.classification import LogisticRegression

        return LogisticRegression(**common)
    from pyspark.ml.regression import LinearRegression

    return LinearRegression(**common)


def _coefficients(model: Any, task: Task) -> tuple[np.ndarray, np.ndarray]:
    """(coef (k or 1, p), intercept (k or 1,)) in scikit-learn's shapes."""
    if task == "regression":
        return np.asarray(model.coefficients.toArray())[None, :], np.array([model.intercept])
    if model.numClasses == 2 and model.getFamily() != "multinomial":
        return np.asarray(model.coefficients.toArray())[None, :], np.array([model.intercept])
    return np.asarray(model.coefficientMatrix.toArray()), np.asarray(model.interceptVector)


def _sklearn_estimator(coef: np.ndarray, intercept: np.ndarray, task: Task, n_iter: int) -> Any:
    """A fitted scikit-learn estimator holding Spark's coefficients (what predict and ONNX use)."""
    from sklearn.linear_model import LinearRegression, LogisticRegression

    if task == "regression":
        reg = LinearRegression()
        reg.coef_, reg.intercept_ = coef[0].copy(), float(intercept[0])
        reg.n_features_in_, reg.rank_ = coef.shape[1], coef.shape[1]
        return reg
    clf = LogisticRegression()
    n_classes = 2 if coef.shape[0] == 1 else coef.shape[0]
    clf.classes_ = np.arange(n_classes)
    clf.coef_, clf.intercept_ = coef.copy(), intercept.astype(np.float64).copy()
    clf.n_features_in_ = coef.shape[1]
    clf.n_iter_ = np.array([n_iter], dtype=np.int32)
    return clf


def _preprocessor(cols: _Columns, stats: _Statistics, spec: TrainingSpec, n_train: int) -> Any:
    """The local engine's preprocessing Pipeline holding Spark's fitted statistics (no refit)."""
    import pandas as pd

    preprocessor = build_preprocessor(cols.schema, spec.preprocessing)
    if cols.categorical:
        preprocessor.set_params(
            columns__cat__onehot__categories=[
                np.array(labels, dtype=object) for labels in stats.categories
            ]
        )
    # A frame of any values fits the shapes; every statistic is then replaced by Spark's.
    n = max([2, *(len(labels) for labels in stats.categories)])
    frame = pd.DataFrame(
        {
            name: (
                pd.Series(
                    [labels[i % len(labels)] if labels else "" for i in range(n)], dtype=object
                )
                if name in cols.categorical
                else pd.Series(np.arange(n, dtype=np.float64))
            )
            for name, labels in zip(cols.schema, _labels_by_column(cols, stats), strict=True)
        }
    )
    preprocessor.fit(frame)
    fitted = preprocessor.named_steps["columns"].named_transformers_
    if cols.numeric:
        num = fitted["num"]
        num.named_steps["impute"].statistics_ = np.asarray(stats.fill, dtype=np.float64)
        if spec.preprocessing.standardize:
            scaler = num.named_steps["scale"]
            std = np.asarray(stats.std, dtype=np.float64)
            scaler.mean_ = np.asarray(stats.mean, dtype=np.float64)
            scaler.var_ = std**2
            # A constant column: Spark outputs 0 for it, scikit-learn x - mean; its weight is 0.
            scaler.scale_ = np.where(std > 0, std, 1.0)
            scaler.n_samples_seen_ = n_train
    if cols.categorical:
        fitted["cat"].named_steps["impute"].statistics_ = np.asarray(stats.modes, dtype=object)
    return preprocessor


def _labels_by_column(cols: _Columns, stats: _Statistics) -> list[list[str]]:
    by_name = dict(zip(cols.categorical, stats.categories, strict=True))
    return [by_name.get(name, []) for name in cols.schema]


def _classification_scores(scored: DataFrame, n_classes: int) -> dict[int, SplitMetrics | None]:
    """Each split's classification metrics, computed by Spark (confusion matrix, log-loss, AUC)."""
    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    eps = float(np.finfo(np.float64).eps)
    p_true = F.element_at(vector_to_array(F.col("probability")), F.col(LABEL).cast("int") + 1)
    clipped = F.least(F.greatest(p_true, F.lit(eps)), F.lit(1 - eps))
    # One pass: each confusion-matrix cell with the summed log-loss of its rows.
    cells = (
        scored.groupBy(SPLIT, LABEL, "prediction")
        .agg(F.count(F.lit(1)), F.sum(-F.log(clipped)))
        .collect()
    )
    out: dict[int, SplitMetrics | None] = {}
    for split in (TRAIN, VALIDATION, TEST):
        cm = np.zeros((n_classes, n_classes), dtype=np.int64)
        loss_sum = 0.0
        for row in cells:
            if row[0] == split:
                cm[int(row[1]), int(row[2])] = row[3]
                loss_sum += float(row[4])
        auc = None
        if n_classes == 2 and (cm.sum(axis=1) > 0).all():
            evaluator = BinaryClassificationEvaluator(
                rawPredictionCol="probability", labelCol=LABEL, metricName="areaUnderROC"
            )
            auc = evaluator.evaluate(scored.where(F.col(SPLIT) == split))
        mean_loss = loss_sum / cm.sum() if cm.sum() else 0.0
        out[split] = M.confusion_metrics(cm, mean_loss, auc)
    return out


def _regression_scores(scored: DataFrame) -> dict[int, SplitMetrics | None]:
    """Each split's rmse, mae, r2 and half-MSE, from sums Spark computes."""
    from pyspark.sql import functions as F

    err = F.col("prediction") - F.col(LABEL)
    rows = scored.groupBy(SPLIT).agg(
        F.count(F.lit(1)), F.avg(err * err), F.avg(F.abs(err)), F.var_pop(LABEL)
    )
    by_split = {r[0]: r for r in rows.collect()}
    out: dict[int, SplitMetrics | None] = {}
    for split in (TRAIN, VALIDATION, TEST):
        row = by_split.get(split)
        if row is None:
            out[split] = None
            continue
        n, mse, mae, var = int(row[1]), float(row[2]), float(row[3]), float(row[4] or 0.0)
        r2 = 1 - mse / var if n >= 2 and var > 0 else None
        out[split] = {
            "n": n,
            "rmse": math.sqrt(mse),
            "mae": mae,
            "r2": r2,
            "loss": 0.5 * mse,
        }
    return out


def _report(
    spec: TrainingSpec,
    cols: _Columns,
    fitted: Fitted,
    scores: dict[int, SplitMetrics | None],
    counts: tuple[dict[float, int], float],
) -> JobMetrics:
    """The shared figures of a Spark fit, as the local engine reports them."""
    task = cols.task
    label_counts, variance = counts
    final = FinalMetrics(train=scores[TRAIN])
    if scores[VALIDATION] is not None:
        final.validation = scores[VALIDATION]
    if scores[TEST] is not None:
        final.test = scores[TEST]
    gap = M.generalization_gap(task, final.train, final.validation)
    n_classes = len(cols.classes or [])
    if task == "classification":
        class_counts = np.array([label_counts.get(float(i), 0) for i in range(n_classes)])
        baseline = baseline_of(task, counts=class_counts)
    else:
        baseline = baseline_of(task, variance=variance)
    report = JobMetrics(
        final=final,
        generalization_gap=GeneralizationGap(**gap) if gap is not None else None,
        baseline=baseline,
        weights=WeightStats(**M.weights(fitted.weight_arrays)),
        **fitted.report.set_fields(),
        fit_seconds=fitted.seconds,
        n_train=(scores[TRAIN] or {}).get("n", 0),
        n_validation=(scores[VALIDATION] or {}).get("n", 0),
        n_test=(scores[TEST] or {}).get("n", 0),
        n_inputs=int(fitted.weight_arrays[0].shape[1]),
        split=SplitInfo(stratified=False, seed=spec.seed, given=False),
    )
    report.diagnosis = diagnose(report, spec, task)
    return report


def _fitted(
    spark_model: Any, cols: _Columns, stats: _Statistics, native: dict[str, Any], seconds: float
) -> tuple[Fitted, list[float]]:
    """The Spark model as the linear kind's Fitted (a scikit-learn estimator holding its
    coefficients, and the report), and its objective history."""
    summary = spark_model.summary
    n_iter = int(summary.totalIterations)
    coef, intercept = _coefficients(spark_model, cols.task)
    labels = cols.classes if cols.task == "classification" else None
    names = _names(cols, stats)
    report = ModelReport(
        coefficients=[Coefficient(**c) for c in M.coefficients(coef, names, labels)],
        intercepts=[Intercept(**i) for i in M.intercepts(intercept, labels)],
        best_epoch=None,
        convergence=Convergence(
            n_iter=n_iter, max_iter=SPARK_MAX_ITER, converged=n_iter < SPARK_MAX_ITER, warnings=[]
        ),
    )
    estimator = _sklearn_estimator(coef, intercept, cols.task, n_iter)
    history = [float(v) for v in summary.objectiveHistory]
    return Fitted(estimator, native, [coef], report, seconds), history


def fit_on_spark(
    spark: SparkSession,
    uri: str,
    spec: TrainingSpec,
    *,
    max_classes: int = 100,
    run: RunControl | None = None,
) -> SparkFit:
    """Fit the spec's linear model on Spark from the Parquet at ``uri``; see the module doc."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    run = run or RunControl()
    if "spark" not in registry.kind_of(spec).engines:
        message = f"model kind {spec.model.kind!r} has no Spark engine; use engine 'local'"
        raise SpecError([{"field": "model.kind", "message": message}])
    run.progress(0.0)
    df = spark.read.parquet(uri)
    cols = _resolve(df, spec, max_classes)
    labelled = _labelled(df, spec, cols)
    labelled = _with_weights(labelled, cols, spec)
    featurized, stats = _featurize(labelled, cols, spec)
    featurized = featurized.persist(StorageLevel.MEMORY_AND_DISK)
    train = featurized.where(F.col(SPLIT) == TRAIN)
    # One pass over the training rows: class counts, or the label's moments (sigma_y).
    counts: dict[float, int] = {}
    sigma_y, variance = None, 0.0
    if cols.task == "classification":
        counts = dict(train.groupBy(LABEL).count().collect())
        n_train = sum(counts.values())
    else:
        moments = train.agg(F.count(F.lit(1)), F.stddev_samp(LABEL), F.var_pop(LABEL)).collect()[0]
        n_train, sigma_y, variance = int(moments[0]), moments[1], float(moments[2] or 0.0)
    if n_train < 2 or (cols.task == "classification" and len(counts) < 2):
        raise SpecError(
            [
                {
                    "field": "validation.fraction",
                    "message": f"the training split holds {n_train} rows and {len(counts)} "
                    "classes; upload more rows or lower validation.fraction",
                }
            ]
        )
    run.check("after preprocessing")
    run.progress(0.2)
    n_classes = len(cols.classes or [])
    native = spark_native_params(spec, cols.task, n_train, n_classes, sigma_y)
    began = time.perf_counter()
    spark_model = _estimator(native, WEIGHT in featurized.columns).fit(train)
    seconds = time.perf_counter() - began
    run.check("after fitting")
    run.progress(0.8)
    fitted, history = _fitted(spark_model, cols, stats, native, seconds)
    names = _names(cols, stats)
    scored = spark_model.transform(featurized)
    scores = (
        _classification_scores(scored, n_classes)
        if cols.task == "classification"
        else _regression_scores(scored)
    )
    job_metrics = _report(spec, cols, fitted, scores, (counts, variance))
    job_metrics.objective_history = history  # type: ignore[attr-defined]
    run.progress(0.95)
    preprocessor = _preprocessor(cols, stats, spec, n_train)
    version_info = {**versions(), "pyspark": spark.version}
    artifact = dump_artifact(
        spec,
        cols.task,
        (cols.target_dtype, cols.classes, cols.schema, names),
        fitted,
        preprocessor,
        version_info,
    )
    run.progress(1.0)
    result = TrainingResult(
        task=cols.task,
        task_reason=cols.task_reason,
        classes=cols.classes,
        native_params=M.json_safe(native),
        report=job_metrics,
        artifact=artifact,
        artifact_sha256=sha256_hex(artifact),
        artifact_kind=registry.kind_of(spec).artifact.name,
        versions=version_info,
    )
    from sklearn.pipeline import Pipeline

    pipeline = Pipeline([("preprocess", preprocessor), ("model", fitted.model)])
    return SparkFit(result, spark_model, featurized, pipeline)
