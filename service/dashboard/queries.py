"""Read-only lookups the pages need beyond what the domain services offer (all tenant-scoped)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.datasets.models import Dataset
from service.jobs.models import Job
from service.registry.models import ModelVersion, RegisteredModel
from service.sweeps.models import Sweep

PAGE_SIZE = 100


def recent_jobs(
    session: Session, tenant_id: str, *, include_trials: bool, status: str | None = None
) -> list[Job]:
    """The newest jobs; a sweep's trial jobs only when asked for (a sweep makes dozens)."""
    query = select(Job).where(Job.tenant_id == tenant_id)
    if not include_trials:
        query = query.where(Job.sweep_id.is_(None))
    if status:
        query = query.where(Job.status == status)
    query = query.order_by(Job.created_at.desc(), Job.id.desc()).limit(PAGE_SIZE)
    return list(session.scalars(query))


def trial_count(session: Session, tenant_id: str) -> int:
    query = select(func.count()).where(Job.tenant_id == tenant_id, Job.sweep_id.is_not(None))
    return int(session.scalar(query) or 0)


def recent_datasets(session: Session, tenant_id: str) -> list[Dataset]:
    query = (
        select(Dataset)
        .where(Dataset.tenant_id == tenant_id)
        .order_by(Dataset.created_at.desc(), Dataset.id.desc())
        .limit(PAGE_SIZE)
    )
    return list(session.scalars(query))


def recent_sweeps(session: Session, tenant_id: str) -> list[Sweep]:
    query = (
        select(Sweep)
        .where(Sweep.tenant_id == tenant_id)
        .order_by(Sweep.created_at.desc(), Sweep.id.desc())
        .limit(PAGE_SIZE)
    )
    return list(session.scalars(query))


def dataset_names(
    session: Session, tenant_id: str, ids: Iterable[uuid.UUID | None]
) -> dict[uuid.UUID, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = session.execute(
        select(Dataset.id, Dataset.name).where(
            Dataset.tenant_id == tenant_id, Dataset.id.in_(wanted)
        )
    )
    return {row.id: row.name for row in rows}


def versions_of_job(session: Session, tenant_id: str, job_id: uuid.UUID) -> list[tuple[str, int]]:
    """(model name, version) of every registered version the job backs."""
    rows = session.execute(
        select(RegisteredModel.name, ModelVersion.version)
        .join(ModelVersion, ModelVersion.model_id == RegisteredModel.id)
        .where(RegisteredModel.tenant_id == tenant_id, ModelVersion.job_id == job_id)
        .order_by(RegisteredModel.name, ModelVersion.version)
    )
    return [(name, version) for name, version in rows]


def model_names(session: Session, tenant_id: str) -> list[str]:
    query = (
        select(RegisteredModel.name)
        .where(RegisteredModel.tenant_id == tenant_id)
        .order_by(RegisteredModel.name)
        .limit(PAGE_SIZE)
    )
    return list(session.scalars(query))
