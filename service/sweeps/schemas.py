"""What the sweeps API accepts and returns."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.jobs.schemas import SpecOnDataset, example_config
from service.sweeps.models import Sweep
from service.training import metrics as M
from service.training.spec import Penalty, TrainingSpec

SweepStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class StrengthRange(BaseModel):
    """A grid of strengths between min and max, evenly spaced on a log or linear scale."""

    model_config = ConfigDict(extra="forbid")

    min: float = Field(gt=0, allow_inf_nan=False)
    max: float = Field(gt=0, allow_inf_nan=False)
    num: int = Field(10, ge=1, le=100)
    scale: Literal["log", "linear"] = "log"

    @model_validator(mode="after")
    def _ordered(self) -> StrengthRange:
        if self.max < self.min:
            raise ValueError("strength.max must be at least strength.min")
        return self


class SearchSpec(BaseModel):
    """The axes to search; they combine as a grid, each applied only where it fits."""

    model_config = ConfigDict(extra="forbid")

    penalty: list[Penalty] = Field(default_factory=lambda: ["l2"], min_length=1)  # type: ignore[arg-type]
    strength: StrengthRange | Annotated[list[float], Field(min_length=1, max_length=100)] = Field(
        default_factory=lambda: StrengthRange(min=1e-4, max=1.0, num=10),
        description="A range (min, max, num, scale) or an explicit list of strengths.",
    )
    l1_ratio: list[Annotated[float, Field(gt=0, lt=1)]] | None = Field(
        None, description="Elastic-net mixes; used only with penalty 'elasticnet' (default 0.5)."
    )
    dropout: list[Annotated[float, Field(ge=0, lt=1)]] | None = Field(
        None, description="Dropout values; used only for model kinds that take dropout."
    )
    mode: Literal["grid", "random"] = Field(
        "grid", description="'random' draws max_trials configurations from the grid."
    )
    max_trials: int | None = Field(None, ge=1, description="Configurations drawn in random mode.")


def _exactly_one_cv_field(schema: dict[str, Any]) -> None:
    """The documented shape is what validation accepts: exactly one of the two is a number."""
    schema["oneOf"] = [
        {"required": ["folds"], "properties": {"folds": {"type": "integer"}}},
        {
            "required": ["validation_fraction"],
            "properties": {"validation_fraction": {"type": "number"}},
        },
    ]


class CVSpec(BaseModel):
    """k-fold cross-validation (`folds`), or a single validation split (`validation_fraction`)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_exactly_one_cv_field)

    folds: int | None = Field(None, ge=2, le=20)
    validation_fraction: float | None = Field(None, gt=0, lt=1)

    @model_validator(mode="after")
    def _one_of(self) -> CVSpec:
        if (self.folds is None) == (self.validation_fraction is None):
            raise ValueError("give exactly one of cv.folds and cv.validation_fraction")
        return self


class SweepCreate(SpecOnDataset):
    """A base training spec plus the regularization settings to search over."""

    model_config = example_config(
        {
            "dataset_id": "00000000-0000-0000-0000-000000000000",
            "target": "label",
            "task": "auto",
            "search": {
                "penalty": ["l1", "l2", "elasticnet"],
                "strength": {"min": 1e-5, "max": 10, "num": 20, "scale": "log"},
                "l1_ratio": [0.2, 0.5, 0.8],
            },
            "cv": {"folds": 5},
            "metric": "auto",
            "refit": True,
            "seed": 0,
        }
    )

    search: SearchSpec = Field(default_factory=SearchSpec)
    cv: CVSpec = Field(default_factory=lambda: CVSpec(folds=5))
    metric: str = Field(
        "auto",
        description="'auto' is "
        + " or ".join(f"{name} ({task})" for task, name in M.SELECTION_METRIC.items())
        + "; any metric the task reports may be named: "
        + ", ".join(f"{m.name} ({' and '.join(sorted(m.tasks))})" for m in M.METRICS.values())
        + ".",
    )
    refit: bool = Field(True, description="Train the winner on the full training data.")
    max_seconds: int | None = Field(None, ge=1, description="Time limit of each trial job.")
    priority: int = Field(0, ge=-100, le=100)

    def base_spec(self) -> TrainingSpec:
        return TrainingSpec.model_validate(
            self.model_dump(
                exclude={
                    "dataset_id",
                    "name",
                    "tags",
                    "search",
                    "cv",
                    "metric",
                    "refit",
                    "max_seconds",
                    "priority",
                }
            )
        )


class LeaderboardRow(BaseModel):
    penalty: str
    strength: float
    l1_ratio: float | None
    dropout: float | None
    metric: str
    mean: float | None = Field(description="Mean validation metric across folds.")
    std: float | None
    train_mean: float | None = Field(description="Mean train metric, so the gap shows.")
    n_folds: int


class SweepRead(BaseModel):
    id: uuid.UUID
    name: str | None
    tags: dict[str, str] = Field(description="The labels given at submission; its refit has them.")
    dataset_id: uuid.UUID | None
    status: SweepStatus
    progress: float
    task: str
    metric: str
    greater_is_better: bool = Field(description="Whether a greater `metric` ranks higher.")
    lower_is_better: bool = Field(description="The opposite of greater_is_better.")
    n_configs: int
    n_jobs: int
    leaderboard: list[LeaderboardRow]
    best: dict[str, Any] | None = Field(
        description="The winning penalty, strength, l1_ratio, dropout, its CV and train scores, "
        "and its test score when a test split was held out."
    )
    failed_trials: list[dict[str, Any]]
    refit_job_id: uuid.UUID | None
    error: str | None
    spec: dict[str, Any]
    created_at: datetime
    finished_at: datetime | None


def sweep_read(
    sweep: Sweep,
    rows: list[dict[str, Any]],
    failed: list[dict[str, Any]],
    best: dict[str, Any] | None,
) -> SweepRead:
    """The response for a sweep, given its leaderboard and best trial."""
    return SweepRead(
        id=sweep.id,
        name=sweep.name,
        tags=sweep.tags or {},
        dataset_id=sweep.dataset_id,
        status=sweep.status,
        progress=sweep.progress,
        task=sweep.task,
        metric=sweep.metric,
        greater_is_better=M.metric(sweep.metric).greater_is_better,
        lower_is_better=not M.metric(sweep.metric).greater_is_better,
        n_configs=sweep.n_configs,
        n_jobs=sweep.n_jobs,
        leaderboard=[LeaderboardRow.model_validate(r) for r in rows],
        best=best,
        failed_trials=failed,
        refit_job_id=sweep.refit_job_id,
        error=sweep.error,
        spec=sweep.spec,
        created_at=sweep.created_at,
        finished_at=sweep.finished_at,
    )
