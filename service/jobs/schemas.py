"""What the jobs API accepts and returns."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.jobs.models import AttemptRow, JobRow, summary_of
from service.tags import Tags
from service.training.kinds import registry
from service.training.metrics import METRICS, Metric
from service.training.results import (
    Coefficient,
    Diagnosis,
    FinalMetrics,
    GeneralizationGap,
    JobMetrics,
    LearningCurvePoint,
    WeightStats,
)
from service.training.spec import TrainingSpec

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


def example_config(example: dict[str, Any]) -> ConfigDict:
    """Unknown fields refused; Swagger UI's "Try it out" starts from `example`."""
    return ConfigDict(extra="forbid", json_schema_extra={"examples": [example]})


class SpecOnDataset(TrainingSpec):
    """A training spec on one stored dataset, named and tagged for people."""

    dataset_id: uuid.UUID = Field(description="A dataset from POST /v1/datasets.")
    name: str | None = Field(None, max_length=255, description="A label for people.")
    tags: Tags = Field(default_factory=dict)


class JobCreate(SpecOnDataset):
    """A training spec plus where its data is and how the queue should treat it."""

    model_config = example_config(
        {
            "name": "digits-l1",
            "tags": {"team": "risk"},
            "dataset_id": "00000000-0000-0000-0000-000000000000",
            "target": "label",
            "task": "auto",
            "regularization": {"penalty": "l1", "strength": 0.05},
            "preprocessing": {"standardize": True, "polynomial_degree": 1},
            "validation": {"fraction": 0.2, "test_fraction": 0.0, "stratify": True},
            "seed": 0,
            "max_seconds": 3600,
        }
    )
    max_seconds: int | None = Field(
        None, ge=1, description="Time limit of one attempt; the server default when omitted."
    )
    priority: int = Field(0, ge=-100, le=100, description="Higher runs first.")
    callback_url: str | None = Field(
        None,
        max_length=2048,
        description="An http(s) URL on a host the server allows (RIDGELINE_CALLBACK_ALLOWED_HOSTS)"
        ": once the job ends, a worker POSTs its outcome there, signed (X-Ridgeline-Signature).",
    )
    engine: Literal["local", "spark", "auto"] = Field(
        "auto",
        description="Where it trains: 'local' (a worker's child process), 'spark' (the "
        "worker's Spark driver; needs RIDGELINE_SPARK_MASTER, linear models only) or 'auto' "
        "(Spark when a master is set and the data's estimated in-memory size exceeds "
        "RIDGELINE_SPARK_THRESHOLD_BYTES or the child memory limit). The job says which ran.",
    )

    def training_spec(self) -> TrainingSpec:
        return TrainingSpec.model_validate(
            self.model_dump(
                exclude={
                    "dataset_id",
                    "name",
                    "tags",
                    "max_seconds",
                    "priority",
                    "callback_url",
                    "engine",
                }
            )
        )


class AttemptRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    attempt: int
    worker_id: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str | None = Field(description="succeeded, failed, cancelled, lost or released.")
    error: str | None


class ArtifactInfo(BaseModel):
    kind: str = Field(
        description="The artifact's format: "
        + "; ".join(f"'{k.artifact.name}' ({k.artifact.description})" for k in registry.kinds())
        + "."
    )
    sha256: str
    url: str


class CallbackRead(BaseModel):
    url: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int = Field(description="Deliveries tried so far.")
    next_at: datetime | None = Field(description="When the next try is due (pending).")
    last_error: str | None


class JobRead(BaseModel):
    id: uuid.UUID
    name: str | None
    tags: dict[str, str] = Field(description="The labels given at submission.")
    dataset_id: uuid.UUID | None = Field(description="Null once the dataset was deleted.")
    status: JobStatus
    priority: int
    progress: float = Field(ge=0, le=1)
    attempt: int
    max_attempts: int
    cancel_requested: bool
    error: str | None
    task: str
    task_reason: str
    engine: Literal["local", "spark"] = Field(description="The engine that trains the job.")
    engine_reason: str | None = Field(description="Why that engine (asked for, or auto's reason).")
    spec: dict[str, Any]
    native_params: dict[str, Any] | None = Field(
        description="The estimator and the parameters the spec's penalty mapped to, to reproduce "
        "the fit (native_params.params are the estimator's arguments); null until the job has "
        "trained, as they are computed once, from the real training split."
    )
    summary: dict[str, Any] | None = Field(
        description="Final metrics, generalization gap and weight statistics once succeeded."
    )
    artifact: ArtifactInfo | None
    versions: dict[str, Any] | None
    attempts: list[AttemptRead]
    max_seconds: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    callback: CallbackRead | None = Field(
        None, description="Delivery of the job's callback, when it has a callback_url."
    )


class EpochRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    epoch: int
    train_loss: float | None
    val_loss: float | None
    train_metric: float | None
    val_metric: float | None


class MetricInfo(BaseModel):
    """What a reported metric means and which way is better (the server's metric registry)."""

    greater_is_better: bool
    needs_probabilities: bool = Field(
        description="Classification: computed from predicted probabilities, not only classes."
    )
    description: str

    @classmethod
    def of(cls, metric: Metric) -> MetricInfo:
        return cls(
            greater_is_better=metric.greater_is_better,
            needs_probabilities=metric.needs_probabilities,
            description=metric.description,
        )


def metric_info(names: Iterable[str]) -> dict[str, MetricInfo]:
    """The registry's entry of every registered metric among these names."""
    return {name: MetricInfo.of(METRICS[name]) for name in dict.fromkeys(names) if name in METRICS}


class JobMetricsRead(BaseModel):
    job_id: uuid.UUID
    status: JobStatus
    attempt: int
    task: str
    final: FinalMetrics | None = Field(
        None, description="train, validation and (with a test split) test metrics."
    )
    metric_info: dict[str, MetricInfo] = Field(
        default_factory=dict,
        description="Per metric in `final`: whether greater is better, and what it means.",
    )
    generalization_gap: GeneralizationGap | None = Field(
        None, description="score: train minus validation; loss: validation minus train."
    )
    weights: WeightStats | None = None
    coefficients: list[Coefficient] | None = None
    history: list[EpochRead] = Field(
        default_factory=list,
        description="Per-epoch curves (kinds that train by epochs) of the latest attempt.",
    )
    best_epoch: int | None = None
    fit_seconds: float | None = None
    diagnosis: Diagnosis | None = Field(
        None,
        description="Verdict (overfitting, underfitting, over-regularized, good fit, unknown), "
        "evidence, suggestions.",
    )
    learning_curve: list[LearningCurvePoint] | None = Field(
        None, description="Train and validation score against training-set size, if asked for."
    )
    extra: dict[str, Any] = Field(default_factory=dict, description="Other recorded figures.")

    @classmethod
    def of(
        cls,
        *,
        job_id: uuid.UUID,
        status: str,
        attempt: int,
        task: str,
        metrics: JobMetrics,
        history: list[EpochRead],
    ) -> JobMetricsRead:
        """The job's metrics as sent: the fields this schema names, the rest under ``extra``."""
        shown = {
            name: getattr(metrics, name)
            for name in cls.model_fields
            if name in JobMetrics.model_fields
        }
        stored = metrics.to_json()
        final = metrics.final
        splits = [final.train, final.validation, final.test] if final is not None else []
        return cls(
            job_id=job_id,
            status=status,
            attempt=attempt,
            task=task,
            **{**shown, "history": history},
            metric_info=metric_info(name for split in splits if split for name in split),
            extra={k: v for k, v in stored.items() if k not in cls.model_fields},
        )


class PredictRequest(BaseModel):
    """Rows to score in the response, or a stored dataset to score as a streamed CSV."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"rows": [{"x1": 0.5, "color": "red"}]},
                {"dataset_id": "00000000-0000-0000-0000-000000000000"},
            ]
        },
    )

    rows: list[dict[str, Any]] | None = Field(
        None, min_length=1, description="One record per row to score."
    )
    dataset_id: uuid.UUID | None = Field(
        None,
        description="Score every row of this dataset instead: the answer is a streamed CSV "
        "(text/csv) of its rows with `prediction` and, for classifiers, `proba_<label>` columns.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> PredictRequest:
        if (self.rows is None) == (self.dataset_id is None):
            raise ValueError("send either rows or dataset_id")
        return self


class PredictResponse(BaseModel):
    job_id: uuid.UUID
    predictions: list[Any]
    probabilities: list[dict[str, float]] | None = Field(
        None, description="Per row, each class's probability keyed by its label (classifiers)."
    )
    classes: list[Any] | None = None


def callback_read(job: JobRow) -> CallbackRead | None:
    """How the job's callback delivery stands, for GET /v1/jobs/{id}."""
    if job.callback_url is None or job.callback_status is None:
        return None
    return CallbackRead(
        url=job.callback_url,
        status=job.callback_status,
        attempts=job.callback_attempts,
        next_at=job.callback_next_at,
        last_error=job.callback_last_error,
    )


def job_read(job: JobRow, attempts: Sequence[AttemptRow]) -> JobRead:
    """The response for a job, from an ORM job or a Core row (same attribute names)."""
    artifact = None
    if job.artifact_sha256 and job.artifact_kind:
        artifact = ArtifactInfo(
            kind=job.artifact_kind,
            sha256=job.artifact_sha256,
            url=f"/v1/jobs/{job.id}/artifact",
        )
    return JobRead(
        id=job.id,
        name=job.name,
        tags=job.tags or {},
        dataset_id=job.dataset_id,
        status=job.status,
        priority=job.priority,
        progress=job.progress,
        attempt=job.attempt,
        max_attempts=job.max_attempts,
        cancel_requested=job.cancel_requested,
        error=job.error,
        task=job.task,
        task_reason=job.task_reason,
        engine=job.engine,
        engine_reason=job.engine_reason,
        spec=job.spec,
        native_params=job.native_params,
        summary=summary_of(job.metrics),
        artifact=artifact,
        versions=job.versions,
        attempts=[AttemptRead.model_validate(a) for a in attempts],
        callback=callback_read(job),
        max_seconds=job.max_seconds,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )
