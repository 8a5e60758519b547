"""A sweep: many trial jobs over regularization settings, one leaderboard, one winner."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, UTCDateTime, utcnow
from service.jobs.models import TenantRunOnDataset


class Sweep(TenantRunOnDataset, Base):
    __tablename__ = "sweeps"
    __table_args__ = (Index("ix_sweeps_tenant_created", "tenant_id", "created_at", "id"),)

    status: Mapped[str] = mapped_column(String(16), default="queued")
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    task: Mapped[str] = mapped_column(String(16))
    metric: Mapped[str] = mapped_column(String(32))
    lower_is_better: Mapped[bool] = mapped_column()
    n_configs: Mapped[int] = mapped_column(Integer)
    n_jobs: Mapped[int] = mapped_column(Integer)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    leaderboard: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    best: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    failed_trials: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    refit_job_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL", use_alter=True)
    )
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
