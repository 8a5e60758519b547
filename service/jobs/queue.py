"""The jobs table as a queue: atomic claim, leases on the database clock, fenced writes, reaping.

Every function takes the caller's session and never commits: the worker boundary does.
On Postgres the claim is `FOR UPDATE SKIP LOCKED`; on SQLite the caller's transaction began
with `BEGIN IMMEDIATE`, so the single `UPDATE … RETURNING` is atomic by holding the write lock.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, literal_column, select, text, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from service import watch
from service.db import rowcount
from service.jobs.models import (
    CANCELLED,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    Job,
    JobAttempt,
    JobEpoch,
    JobEvent,
    JobMetric,
)

NOTIFY_CHANNEL = "ridgeline_jobs"
#: What a transaction that adds job events notifies: the API's event streams listen.
EVENTS_CHANNEL = "ridgeline_job_events"

# Within a priority, the tenant with the fewest running jobs goes first, then the oldest job:
# one tenant's burst queues behind its own running work, not ahead of other tenants.
_ORDER = """
    ORDER BY j.priority DESC,
             (SELECT count(*) FROM jobs r WHERE r.tenant_id = j.tenant_id AND r.status = 'running'),
             j.created_at, j.id
    LIMIT 1
"""

# A tenant at its limit of running jobs (0: none) waits; other tenants' jobs go ahead.
_ELIGIBLE = """
    j.status = 'queued' AND (:max_running = 0 OR
      (SELECT count(*) FROM jobs r WHERE r.tenant_id = j.tenant_id AND r.status = 'running')
      < :max_running)
"""

_CLAIM_POSTGRES = f"""
UPDATE jobs SET status = 'running', attempt = jobs.attempt + 1, lease_owner = :worker,
       lease_expires_at = clock_timestamp() + make_interval(secs => :lease),
       started_at = COALESCE(jobs.started_at, clock_timestamp()), progress = 0, error = NULL
WHERE jobs.id = (SELECT j.id FROM jobs j WHERE {_ELIGIBLE} {_ORDER} FOR UPDATE SKIP LOCKED)
RETURNING jobs.id, jobs.attempt
"""

_SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f000', 'now')"
_SQLITE_NOW_PLUS = "strftime('%Y-%m-%d %H:%M:%f000', 'now', '+' || :lease || ' seconds')"

_CLAIM_SQLITE = f"""
UPDATE jobs SET status = 'running', attempt = attempt + 1, lease_owner = :worker,
       lease_expires_at = {_SQLITE_NOW_PLUS},
       started_at = COALESCE(started_at, {_SQLITE_NOW}), progress = 0, error = NULL
WHERE id = (SELECT j.id FROM jobs j WHERE {_ELIGIBLE} {_ORDER})
RETURNING id, attempt
"""


@dataclass(frozen=True)
class Claim:
    job_id: uuid.UUID
    attempt: int


def _is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def db_now(session: Session) -> ColumnElement[Any]:
    """The database's clock, so leases never depend on a worker's wall clock."""
    if _is_sqlite(session):
        return literal_column(_SQLITE_NOW)
    return func.clock_timestamp()


def db_now_plus(session: Session, seconds: float) -> ColumnElement[Any]:
    if _is_sqlite(session):
        return literal_column(
            f"strftime('%Y-%m-%d %H:%M:%f000', 'now', '+{float(seconds):.3f} seconds')"
        )
    return func.clock_timestamp() + func.make_interval(0, 0, 0, 0, 0, 0, seconds)


def add_event(session: Session, job_id: uuid.UUID, attempt: int, kind: str, /, **data: Any) -> None:
    """Add a job event; the API's event streams hear of it when this transaction commits."""
    session.execute(insert(JobEvent).values(job_id=job_id, attempt=attempt, kind=kind, data=data))
    watch.notify(session, EVENTS_CHANNEL)


def notify(session: Session) -> None:
    """Wake idle workers when this transaction commits."""
    watch.notify(session, NOTIFY_CHANNEL)


def enqueue(session: Session, job: Job) -> uuid.UUID:
    """Add a queued job with its first status event; idle workers wake when this commits."""
    session.add(job)
    session.flush()
    add_event(session, job.id, 0, "status", status=QUEUED)
    notify(session)
    return job.id


def claim(
    session: Session, *, worker_id: str, lease_seconds: float, max_running_per_tenant: int = 0
) -> Claim | None:
    sql = _CLAIM_SQLITE if _is_sqlite(session) else _CLAIM_POSTGRES
    row = session.execute(
        text(sql),
        {"worker": worker_id, "lease": lease_seconds, "max_running": max_running_per_tenant},
    ).first()
    if row is None:
        return None
    job_id = row[0] if isinstance(row[0], uuid.UUID) else uuid.UUID(str(row[0]))
    attempt = int(row[1])
    session.execute(
        insert(JobAttempt).values(
            job_id=job_id, attempt=attempt, worker_id=worker_id, started_at=db_now(session)
        )
    )
    add_event(session, job_id, attempt, "status", status=RUNNING, attempt=attempt)
    return Claim(job_id, attempt)


def _fenced(job_id: uuid.UUID, attempt: int) -> list[ColumnElement[bool]]:
    return [Job.id == job_id, Job.attempt == attempt, Job.status == RUNNING]


def renew_lease(session: Session, claim: Claim, *, worker_id: str, lease_seconds: float) -> bool:
    """Extend our lease; False means it is no longer ours (reaped, finished or cancelled)."""
    result = session.execute(
        update(Job)
        .where(*_fenced(claim.job_id, claim.attempt), Job.lease_owner == worker_id)
        .values(lease_expires_at=db_now_plus(session, lease_seconds))
        .execution_options(synchronize_session=False)
    )
    return bool(rowcount(result))


def cancel_requested(session: Session, claim: Claim) -> bool:
    return bool(session.scalar(select(Job.cancel_requested).where(Job.id == claim.job_id)))


def record_progress(
    session: Session, claim: Claim, *, progress: float | None, epochs: list[dict[str, Any]]
) -> bool:
    """Store progress and new epochs if the attempt is still current."""
    values: dict[str, Any] = {}
    if progress is not None:
        values["progress"] = max(0.0, min(1.0, progress))
    result = session.execute(
        update(Job)
        .where(*_fenced(claim.job_id, claim.attempt))
        .values(**(values or {"progress": Job.progress}))
        .execution_options(synchronize_session=False)
    )
    if not rowcount(result):
        return False
    for epoch in epochs:
        session.execute(
            insert(JobEpoch).values(
                job_id=claim.job_id,
                attempt=claim.attempt,
                epoch=epoch["epoch"],
                train_loss=epoch.get("train_loss"),
                val_loss=epoch.get("val_loss"),
                train_metric=epoch.get("train_metric"),
                val_metric=epoch.get("val_metric"),
            )
        )
        add_event(session, claim.job_id, claim.attempt, "epoch", **epoch)
    if progress is not None:
        add_event(session, claim.job_id, claim.attempt, "progress", progress=values["progress"])
    return True


def finish(
    session: Session,
    claim: Claim,
    *,
    status: str,
    error: str | None = None,
    outcome: str | None = None,
    metrics: dict[str, Any] | None = None,
    native_params: dict[str, Any] | None = None,
    versions: dict[str, Any] | None = None,
    task: str | None = None,
    task_reason: str | None = None,
    artifact_blob_id: uuid.UUID | None = None,
    artifact_sha256: str | None = None,
    artifact_kind: str | None = None,
) -> bool:
    """End an attempt, fenced by its number: a stale attempt's result is never written.

    What a succeeded attempt reports is written where given (None leaves the column alone):
    ``native_params`` are the only ones the job stores (submission computes none, as they depend
    on the real training split); ``task`` and ``task_reason`` replace the submission's, which
    were resolved from the dataset's column summaries, with those the fit resolved on the data.
    """
    reported = {
        "metrics": metrics,
        "native_params": native_params,
        "versions": versions,
        "task": task,
        "task_reason": task_reason,
        "artifact_blob_id": artifact_blob_id,
        "artifact_sha256": artifact_sha256,
        "artifact_kind": artifact_kind,
    }
    values: dict[str, Any] = {
        "status": status,
        "error": error,
        "finished_at": db_now(session),
        "lease_owner": None,
        "lease_expires_at": None,
        **{column: value for column, value in reported.items() if value is not None},
    }
    if status == SUCCEEDED:
        values["progress"] = 1.0
    result = session.execute(
        update(Job)
        .where(*_fenced(claim.job_id, claim.attempt))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if not rowcount(result):
        return False
    if status == SUCCEEDED:
        record_final_metrics(session, claim.job_id, metrics)
    _close_attempt(session, claim, outcome or status, error)
    add_event(session, claim.job_id, claim.attempt, "status", status=status, error=error)
    return True


def final_metrics(metrics: dict[str, Any] | None) -> list[tuple[str, str, float]]:
    """(split, name, value) of every finite final figure: what jobs can be ordered by."""
    final = (metrics or {}).get("final") or {}
    return [
        (split, name, float(value))
        for split, figures in final.items()
        if isinstance(figures, dict)
        for name, value in figures.items()
        if name != "n"
        and isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
    ]


def record_final_metrics(
    session: Session, job_id: uuid.UUID, metrics: dict[str, Any] | None
) -> None:
    """Copy a succeeded job's final figures into job_metrics, beside its status change."""
    rows = final_metrics(metrics)
    if not rows:
        return
    tenant_id = session.scalar(select(Job.tenant_id).where(Job.id == job_id))
    session.execute(
        insert(JobMetric),
        [
            {"job_id": job_id, "tenant_id": tenant_id, "split": s, "name": n, "value": v}
            for s, n, v in rows
        ],
    )


def release(session: Session, claim: Claim, *, reason: str) -> bool:
    """Give a running attempt back to the queue (graceful shutdown) for another worker."""
    result = session.execute(
        update(Job)
        .where(*_fenced(claim.job_id, claim.attempt))
        .values(status=QUEUED, lease_owner=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    if not rowcount(result):
        return False
    _close_attempt(session, claim, "released", reason)
    add_event(session, claim.job_id, claim.attempt, "status", status=QUEUED, reason=reason)
    notify(session)
    return True


def _close_attempt(session: Session, claim: Claim, outcome: str, error: str | None) -> None:
    session.execute(
        update(JobAttempt)
        .where(JobAttempt.job_id == claim.job_id, JobAttempt.attempt == claim.attempt)
        .values(finished_at=db_now(session), outcome=outcome, error=error)
    )


def reap_expired(session: Session) -> list[tuple[uuid.UUID, int, str]]:
    """Requeue (or fail, after max_attempts) every running job whose lease ran out."""
    expired = session.execute(
        select(Job.id, Job.attempt, Job.max_attempts, Job.cancel_requested)
        .where(Job.status == RUNNING, Job.lease_expires_at < db_now(session))
        .with_for_update(skip_locked=True)
    ).all()
    reaped = []
    for job_id, attempt, max_attempts, cancel in expired:
        claim = Claim(job_id, attempt)
        if cancel:
            status, error = CANCELLED, "cancelled (its worker was lost)"
        elif attempt >= max_attempts:
            status, error = FAILED, f"worker lost {attempt} times; giving up"
        else:
            status, error = QUEUED, None
        values: dict[str, Any] = {"status": status, "lease_owner": None, "lease_expires_at": None}
        if status != QUEUED:
            values.update(error=error, finished_at=db_now(session))
        session.execute(
            update(Job)
            .where(*_fenced(job_id, attempt), Job.lease_expires_at < db_now(session))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        _close_attempt(session, claim, "lost", "lease expired: the worker stopped renewing it")
        add_event(session, job_id, attempt, "status", status=status, error=error)
        reaped.append((job_id, attempt, status))
    if any(status == QUEUED for *_, status in reaped):
        notify(session)
    return reaped
