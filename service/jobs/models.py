"""Jobs are the queue: one row per job, leased by a worker per attempt."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.engine import Row
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, UTCDateTime, new_id, utcnow
from service.training.results import SUMMARY_FIELDS

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = (
    "queued",
    "running",
    "succeeded",
    "failed",
    "cancelled",
)
TERMINAL = (SUCCEEDED, FAILED, CANCELLED)
ACTIVE = (QUEUED, RUNNING)
# Delivery of a job's callback: pending until delivered, or failed for good.
CALLBACK_PENDING, CALLBACK_DELIVERED, CALLBACK_FAILED = "pending", "delivered", "failed"


def summary_of(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    """The headline of the metrics: shown on the job and sent in its callback."""
    metrics = metrics or {}
    return {k: metrics[k] for k in SUMMARY_FIELDS if k in metrics} or None


class TenantRunOnDataset:
    """What a job and a sweep both are: a tenant's named, tagged run on one dataset."""

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(255))
    tags: Mapped[dict[str, str] | None] = mapped_column(JSON)
    dataset_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="SET NULL"), index=True
    )


class Job(TenantRunOnDataset, Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_claim", "status", "priority", "created_at"),
        Index("ix_jobs_tenant_created", "tenant_id", "created_at", "id"),
        Index("ix_jobs_status_tenant", "status", "tenant_id"),
        Index("ix_jobs_callback_due", "callback_status", "callback_next_at"),
    )

    status: Mapped[str] = mapped_column(String(16), default=QUEUED)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Internal: which registered trainer runs the attempt; never settable over HTTP.
    trainer: Mapped[str] = mapped_column(String(64), default="default")
    sweep_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("sweeps.id", ondelete="CASCADE"), index=True
    )
    # What a sweep's trial needs beyond the spec: strengths of a path, folds.
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    task: Mapped[str] = mapped_column(String(16))
    task_reason: Mapped[str] = mapped_column(Text)
    native_params: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Which engine trains it ('local' or 'spark') and why, decided at submission.
    engine: Mapped[str] = mapped_column(String(8), default="local", server_default="local")
    engine_reason: Mapped[str | None] = mapped_column(Text)
    max_seconds: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    versions: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    artifact_blob_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("blobs.id", ondelete="SET NULL")
    )
    artifact_sha256: Mapped[str | None] = mapped_column(String(64))
    artifact_kind: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def summary(self) -> dict[str, Any] | None:
        return summary_of(self.metrics)

    # Where a worker POSTs the job's end, signed; and how that delivery stands.
    callback_url: Mapped[str | None] = mapped_column(Text)
    callback_status: Mapped[str | None] = mapped_column(String(16))
    callback_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    callback_next_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    callback_last_error: Mapped[str | None] = mapped_column(Text)


class JobAttempt(Base):
    """One try at a job: who ran it, when, and how it ended."""

    __tablename__ = "job_attempts"

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    worker_id: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str | None] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)


class JobEpoch(Base):
    """Per-epoch metrics, kept per attempt so a retried job shows only its latest attempt."""

    __tablename__ = "job_epochs"

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    train_loss: Mapped[float | None] = mapped_column(Float)
    val_loss: Mapped[float | None] = mapped_column(Float)
    train_metric: Mapped[float | None] = mapped_column(Float)
    val_metric: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class IdempotencyKey(Base):
    """A retried POST with the same key returns the same job (per tenant, for 24 hours)."""

    __tablename__ = "idempotency_keys"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class JobEvent(Base):
    """An append-only log of what happened to a job; the SSE stream tails it across processes."""

    __tablename__ = "job_events"
    __table_args__ = (Index("ix_job_events_job_seq", "job_id", "id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class JobMetric(Base):
    """One final figure of a succeeded job (split, metric, value), so jobs sort by it.

    Copied from the job's metrics when it succeeds; the index serves
    ``?order_by=validation.log_loss`` within a tenant on both databases.
    """

    __tablename__ = "job_metrics"
    __table_args__ = (
        Index("ix_job_metrics_order", "tenant_id", "split", "name", "value", "job_id"),
    )

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    split: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)


# An ORM job or a Core row of the jobs table: what a JobRead is made from (same attribute names).
JobRow = Job | Row[Any]
AttemptRow = JobAttempt | dict[str, Any]
