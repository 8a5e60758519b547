"""The client's own view of the service's answers.

These models are deliberately lenient: unknown fields are kept (``model_extra``) and most
fields are optional, so a newer server never breaks an older client.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "TERMINAL_STATUSES",
    "Alias",
    "AliasEvent",
    "Aliases",
    "ArtifactInfo",
    "Attempt",
    "Column",
    "Dataset",
    "Epoch",
    "Event",
    "Job",
    "MetricInfo",
    "Metrics",
    "ModelVersion",
    "Page",
    "Prediction",
    "Preview",
    "RegisteredModel",
    "Sweep",
]

#: A job or sweep in one of these states will not change any more.
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})

T = TypeVar("T")


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())


class Page(_Model, Generic[T]):
    """One page of a list; pass ``next_cursor`` as ``cursor`` for the next (None: last page)."""

    items: list[T]
    next_cursor: str | None = None


class Column(_Model):
    name: str
    dtype: str = Field(description="integer, float, boolean or categorical.")
    n_missing: int = 0
    n_unique: int | None = None
    n_unique_exact: bool | None = None
    min: float | None = None
    max: float | None = None
    mean: float | None = None


class Dataset(_Model):
    id: str
    name: str
    format: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    n_rows: int | None = None
    n_columns: int | None = None
    columns: list[Column] = Field(default_factory=list)
    delimiter: str | None = None
    stored_bytes: int | None = None
    created_at: datetime | None = None


class Preview(_Model):
    dataset_id: str
    columns: list[str] = Field(default_factory=list)
    rows: list[dict[str, Any]] = Field(default_factory=list)


class ArtifactInfo(_Model):
    kind: str
    sha256: str
    url: str


class Attempt(_Model):
    attempt: int
    worker_id: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    outcome: str | None = None
    error: str | None = None


class Job(_Model):
    id: str
    status: str = Field(description="queued, running, succeeded, failed or cancelled.")
    name: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    dataset_id: str | None = None
    priority: int = 0
    progress: float = 0.0
    attempt: int = 0
    max_attempts: int | None = None
    cancel_requested: bool = False
    error: str | None = None
    task: str | None = None
    task_reason: str | None = None
    engine: str | None = Field(None, description="local or spark: the engine that trains it.")
    engine_reason: str | None = None
    spec: dict[str, Any] = Field(default_factory=dict)
    native_params: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    artifact: ArtifactInfo | None = None
    versions: dict[str, Any] | None = None
    attempts: list[Attempt] = Field(default_factory=list)
    max_seconds: int | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def done(self) -> bool:
        """True once the job has ended (succeeded, failed or cancelled)."""
        return self.status in TERMINAL_STATUSES


class Epoch(_Model):
    epoch: int
    train_loss: float | None = None
    val_loss: float | None = None
    train_metric: float | None = None
    val_metric: float | None = None


class MetricInfo(_Model):
    """The server's word on a metric: which way is better, and what it means."""

    greater_is_better: bool | None = None
    needs_probabilities: bool | None = None
    description: str | None = None


class Metrics(_Model):
    job_id: str
    status: str
    attempt: int = 0
    task: str | None = None
    final: dict[str, Any] | None = Field(
        None, description="{'train': {...}, 'validation': {...}, 'test': {...}}"
    )
    generalization_gap: dict[str, Any] | None = Field(
        None, description="{'metric': name, 'score': train - validation, 'loss': val - train}"
    )
    weights: dict[str, Any] | None = None
    coefficients: list[dict[str, Any]] | None = None
    history: list[Epoch] = Field(default_factory=list)
    best_epoch: int | None = None
    fit_seconds: float | None = None
    metric_info: dict[str, MetricInfo] = Field(
        default_factory=dict,
        description="Per metric in `final`, from the server: greater_is_better and a description.",
    )
    extra: dict[str, Any] = Field(default_factory=dict)

    def greater_is_better(self, metric: str) -> bool | None:
        """Whether a greater value of the metric is better, as the server says (None: unknown)."""
        info = self.metric_info.get(metric)
        return info.greater_is_better if info is not None else None

    @property
    def diagnosis(self) -> dict[str, Any] | None:
        """The server's overfitting verdict and suggestions, when it sends one."""
        value = (self.model_extra or {}).get("diagnosis", self.extra.get("diagnosis"))
        if isinstance(value, str):
            return {"verdict": value}
        return value if isinstance(value, dict) else None


class Prediction(_Model):
    job_id: str
    predictions: list[Any]
    probabilities: list[dict[str, float]] | None = None
    classes: list[Any] | None = None
    model_version: int | None = Field(
        None, description="The version that answered, when predicting by model name."
    )


class Event(_Model):
    """One Server-Sent Event of a job: ``event`` is status, progress or epoch."""

    id: int | None = None
    event: str = "message"
    data: dict[str, Any] = Field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.event

    @property
    def attempt(self) -> int | None:
        value = self.data.get("attempt")
        return value if isinstance(value, int) else None

    @property
    def status(self) -> str | None:
        """The job status a ``status`` event announces (None for other kinds)."""
        value = self.data.get("status") if self.event == "status" else None
        return value if isinstance(value, str) else None

    @property
    def terminal(self) -> bool:
        """A status event that ends the job."""
        return self.status in TERMINAL_STATUSES


class Sweep(_Model):
    """A regularization search: its trials ranked by the cross-validated metric."""

    id: str
    status: str
    name: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    dataset_id: str | None = None
    progress: float | None = None
    task: str | None = None
    metric: str | None = None
    greater_is_better: bool | None = Field(
        None, description="Whether a greater metric ranks higher, as the server says."
    )
    lower_is_better: bool | None = None
    n_configs: int | None = None
    n_jobs: int | None = None
    leaderboard: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Per configuration (penalty, strength, l1_ratio, dropout): mean and std of "
        "the metric across folds, train_mean, n_folds; best first.",
    )
    best: dict[str, Any] | None = None
    failed_trials: list[dict[str, Any]] = Field(default_factory=list)
    refit_job_id: str | None = None
    error: str | None = None
    spec: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def ranks_greater_first(self) -> bool | None:
        """The server's ranking direction (None when it sent neither direction field)."""
        if self.greater_is_better is not None:
            return self.greater_is_better
        return None if self.lower_is_better is None else not self.lower_is_better


class RegisteredModel(_Model):
    """A name other services call; its versions are succeeded jobs, its aliases point at them."""

    name: str
    description: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    latest_version: int | None = None
    aliases: dict[str, int] = Field(default_factory=dict, description="alias -> version")
    created_at: datetime | None = None
    updated_at: datetime | None = None


class ModelVersion(_Model):
    """One registered version: its job, artifact, data, spec and metrics summary."""

    model: str
    version: int
    job_id: str
    description: str | None = None
    aliases: list[str] = Field(default_factory=list)
    artifact: ArtifactInfo | None = None
    dataset: dict[str, Any] | None = None
    task: str | None = None
    spec: dict[str, Any] = Field(default_factory=dict)
    native_params: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    library_versions: dict[str, Any] | None = None
    card_url: str | None = None
    created_by: str | None = None
    created_at: datetime | None = None


class Alias(_Model):
    alias: str
    version: int
    updated_at: datetime | None = None
    updated_by: str | None = None


class AliasEvent(_Model):
    """One move of an alias (from_version None: created; to_version None: removed)."""

    alias: str
    from_version: int | None = None
    to_version: int | None = None
    by: str | None = None
    at: datetime | None = None


class Aliases(_Model):
    model: str
    aliases: list[Alias] = Field(default_factory=list)
    history: list[AliasEvent] = Field(default_factory=list, description="Newest first.")
