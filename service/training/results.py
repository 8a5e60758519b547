"""What a training run reports, typed: built by the core, stored as JSON, read back by the API.

The same models go from train() to the job's JSON column to the response schemas, so a figure is
named once. Reading is lenient (unknown keys are kept, every field may be missing), because a
row stored by any earlier version must still read back; writing (``to_json``) leaves out what was
never set, so the stored JSON holds exactly the figures a run produced.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "SUMMARY_FIELDS",
    "Baseline",
    "Calibration",
    "CalibrationSplits",
    "ClassLabel",
    "Coefficient",
    "Convergence",
    "Diagnosis",
    "EpochRecord",
    "Evidence",
    "FinalMetrics",
    "FoldResult",
    "GeneralizationGap",
    "Intercept",
    "JobMetrics",
    "LearningCurvePoint",
    "ModelReport",
    "PathMetrics",
    "PathPoint",
    "Record",
    "SplitInfo",
    "SplitMetrics",
    "Suggestion",
    "TrialMetrics",
    "Verdict",
    "WeightStats",
]

#: One split's scores: ``n`` (rows) and the task's metrics by name (service.training.metrics).
SplitMetrics = dict[str, float | int | None]
#: The diagnosis of a job (service.training.diagnosis).
Verdict = Literal["overfitting", "underfitting", "over-regularized", "good fit", "unknown"]
#: A class label as the target holds it (string, integer, float or boolean); None for regression.
ClassLabel = str | bool | int | float | None


class Record(BaseModel):
    """A reported block: unknown keys kept, aliases accepted by name, JSON without unset fields."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def to_json(self) -> dict[str, Any]:
        """The JSON stored and sent: only the fields that were set, by their public names."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)

    def set_fields(self) -> dict[str, Any]:
        """The fields that were set, as typed values (to copy them into another record)."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class FinalMetrics(Record):
    """Scores of the fitted model on each split it was given."""

    train: SplitMetrics | None = None
    validation: SplitMetrics | None = None
    test: SplitMetrics | None = None


class GeneralizationGap(Record):
    """Train minus validation score and validation minus train loss: positive means overfitting."""

    metric: str | None = None
    score: float | None = None
    loss: float | None = None


class Baseline(Record):
    """The no-skill model's training score and loss (majority class / shares, or the mean)."""

    metric: str | None = None
    score: float | None = None
    loss: float | None = None
    model: str | None = None


class Calibration(Record):
    """The slope of the target on the prediction and its standard error (1 is right)."""

    slope: float | None = None
    se: float | None = None


class CalibrationSplits(Record):
    train: Calibration | None = None
    validation: Calibration | None = None


class WeightStats(Record):
    """Size and sparsity of the penalised weights (biases and intercepts excluded)."""

    n_weights: int | None = None
    n_zero: int | None = None
    sparsity: float | None = None
    l1_norm: float | None = None
    l2_norm: float | None = None


class Coefficient(Record):
    """One weight of a linear model: its input (after preprocessing), its class and value."""

    feature: str | None = None
    class_: ClassLabel = Field(None, alias="class")
    value: float | None = None


class Intercept(Record):
    class_: ClassLabel = Field(None, alias="class")
    value: float | None = None


class Convergence(Record):
    """Solver iterations used against the cap, and any convergence warning it raised."""

    n_iter: int | None = None
    max_iter: int | None = None
    converged: bool | None = None
    warnings: list[str] = Field(default_factory=list)


class EpochRecord(Record):
    """One epoch's losses and score (accuracy or r2) on the training and validation rows."""

    epoch: int
    train_loss: float | None = None
    val_loss: float | None = None
    train_metric: float | None = None
    val_metric: float | None = None


class LearningCurvePoint(Record):
    """A refit on a share of the training split, scored on its rows and the whole validation."""

    size: float | None = None
    n_train: int | None = None
    train: SplitMetrics | None = None
    validation: SplitMetrics | None = None
    fit_seconds: float | None = None
    n_epochs: int | None = None
    best_epoch: int | None = None
    note: str | None = None


class SplitInfo(Record):
    stratified: bool | None = None
    seed: int | None = None
    given: bool | None = None


class Suggestion(Record):
    """A spec change to try: the field, the value to set and why."""

    field: str
    value: Any = None
    message: str = ""


class Evidence(Record):
    """The figures the verdict rests on (see service.training.diagnosis)."""

    metric: str | None = None
    train_score: float | None = None
    validation_score: float | None = None
    score_gap: float | None = None
    train_loss: float | None = None
    validation_loss: float | None = None
    loss_gap: float | None = None
    loss_ratio: float | None = None
    gap_measure: str | None = None
    gap: float | None = None
    gap_threshold: float | None = None
    baseline_score: float | None = None
    baseline_loss: float | None = None
    train_score_skill: float | None = None
    train_loss_skill: float | None = None
    train_calibration_slope: float | None = None
    validation_calibration_slope: float | None = None
    validation_calibration_slope_se: float | None = None
    val_loss_turned_up_after_epoch: int | None = None
    best_epoch: int | None = None
    sparsity: float | None = None


class Diagnosis(Record):
    """Overfitting, underfitting or a good fit, with the evidence and what to change."""

    verdict: Verdict
    evidence: Evidence = Field(default_factory=Evidence)
    reasons: list[str] = Field(default_factory=list)
    suggestions: list[Suggestion] = Field(default_factory=list)
    thresholds: dict[str, float] = Field(default_factory=dict)


class ModelReport(Record):
    """What a model kind reports of its own fit, beside the figures every kind shares."""

    coefficients: list[Coefficient] | None = None
    intercepts: list[Intercept] | None = None
    convergence: Convergence | None = None
    history: list[EpochRecord] | None = None
    best_epoch: int | None = None
    n_epochs: int | None = None


class JobMetrics(ModelReport):
    """Everything a training job reports (GET /v1/jobs/{id}/metrics reads it back)."""

    final: FinalMetrics | None = None
    generalization_gap: GeneralizationGap | None = None
    baseline: Baseline | None = None
    calibration: CalibrationSplits | None = None
    weights: WeightStats | None = None
    fit_seconds: float | None = None
    n_train: int | None = None
    n_validation: int | None = None
    n_test: int | None = None
    n_rows_dropped_missing_target: int | None = None
    n_inputs: int | None = None
    split: SplitInfo | None = None
    ignored_columns: dict[str, str] | None = None
    learning_curve: list[LearningCurvePoint] | None = None
    diagnosis: Diagnosis | None = None


#: The headline of a job's metrics: shown on the job and sent in its callback.
SUMMARY_FIELDS: tuple[str, ...] = (
    "final",
    "generalization_gap",
    "weights",
    "diagnosis",
    "fit_seconds",
    "best_epoch",
)


class FoldResult(Record):
    """One fold of a sweep trial: its scores and what it fitted."""

    fold: int | None = None
    final: FinalMetrics | None = None
    best_epoch: int | None = None
    weights: WeightStats | None = None


class TrialMetrics(Record):
    """A sweep trial job's metrics: one configuration, every fold."""

    folds: list[FoldResult] = Field(default_factory=list)


class PathPoint(Record):
    """One strength of a warm-started regularization path."""

    strength: float
    penalty: str | None = None
    l1_ratio: float | None = None
    final: FinalMetrics | None = None
    generalization_gap: GeneralizationGap | None = None
    weights: WeightStats | None = None
    coefficients: list[Coefficient] | None = None
    intercepts: list[Intercept] | None = None
    n_iter: int | None = None
    converged: bool | None = None
    fit_seconds: float | None = None
    n_train: int | None = None
    engine: str | None = None


class PathMetrics(Record):
    """A sweep path job's metrics: one fold, every strength of the path."""

    fold: int | None = None
    path: list[PathPoint] = Field(default_factory=list)
