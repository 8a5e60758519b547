"""Job gauges for Prometheus, read from the database when scraped: jobs per status, queue depth
and age, lease health, retried attempts; cached so a scrape costs a few indexed counts every 5 s."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select, type_coerce

from service.db import Database, UTCDateTime
from service.jobs.models import QUEUED, RUNNING, Job, JobAttempt
from service.jobs.queue import db_now

logger = logging.getLogger("ridgeline.metrics")

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


@dataclass
class _Snapshot:
    up: bool = False
    jobs: dict[str, int] = field(default_factory=dict)
    oldest_queued_age: float = 0.0
    heartbeat_age: float = 0.0
    expired_leases: int = 0
    retried_attempts: int = 0


def read_job_gauges(db: Database, lease_seconds: float) -> _Snapshot:
    """A handful of cheap queries on the jobs tables (the status counts use an index)."""
    snap = _Snapshot(up=True, jobs=dict.fromkeys(JOB_STATUSES, 0))
    with db.transaction(write=False) as session:
        now: datetime = session.scalars(select(type_coerce(db_now(session), UTCDateTime()))).one()
        for status, count in session.execute(select(Job.status, func.count()).group_by(Job.status)):
            snap.jobs[status] = int(count)
        oldest = session.scalar(select(func.min(Job.created_at)).where(Job.status == QUEUED))
        if oldest is not None:
            snap.oldest_queued_age = max(0.0, (now - oldest).total_seconds())
        # A lease is renewed to now + lease_seconds on each heartbeat, so the stalest running
        # lease tells how long ago the slowest heartbeat was.
        expiries = [
            expiry
            for expiry in session.scalars(select(Job.lease_expires_at).where(Job.status == RUNNING))
            if expiry is not None
        ]
        if expiries:
            stalest = min(expiries)
            snap.heartbeat_age = max(0.0, (now - stalest).total_seconds() + lease_seconds)
            snap.expired_leases = sum(1 for expiry in expiries if expiry < now)
        snap.retried_attempts = int(
            session.scalar(
                select(func.count()).select_from(JobAttempt).where(JobAttempt.attempt > 1)
            )
            or 0
        )
    return snap


class JobGauges(Collector):
    """Job gauges read from the database when scraped, cached for `ttl` seconds."""

    def __init__(
        self,
        get_db: Callable[[], Database | None],
        *,
        lease_seconds: float,
        ttl: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.get_db = get_db
        self.lease_seconds = lease_seconds
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._cached: _Snapshot | None = None
        self._taken_at = 0.0

    def snapshot(self) -> _Snapshot | None:
        with self._lock:
            now = self.clock()
            if self._cached is not None and now - self._taken_at < self.ttl:
                return self._cached
            db = self.get_db()
            if db is None:  # not started (no lifespan): nothing to report
                return None
            try:
                snap = read_job_gauges(db, self.lease_seconds)
            except Exception as exc:
                logger.warning("metrics: could not read the job gauges: %s", exc)
                snap = _Snapshot(up=False)
            self._cached, self._taken_at = snap, now
            return snap

    def collect(self) -> Iterable[GaugeMetricFamily]:
        snap = self.snapshot()
        if snap is None:
            return
        yield GaugeMetricFamily(
            "ridgeline_database_up",
            "1 if the last scrape could read the job gauges from the database, else 0.",
            value=1 if snap.up else 0,
        )
        if not snap.up:
            return
        jobs = GaugeMetricFamily(
            "ridgeline_jobs", "Jobs in the database, by status.", labels=["status"]
        )
        for status, count in sorted(snap.jobs.items()):
            jobs.add_metric([status], count)
        yield jobs
        yield GaugeMetricFamily(
            "ridgeline_queue_depth", "Jobs waiting for a worker.", value=snap.jobs.get("queued", 0)
        )
        yield GaugeMetricFamily(
            "ridgeline_queue_oldest_age_seconds",
            "Age of the oldest queued job (0 when none waits).",
            value=snap.oldest_queued_age,
        )
        yield GaugeMetricFamily(
            "ridgeline_running_leases",
            "Running attempts holding a lease.",
            value=snap.jobs.get("running", 0),
        )
        yield GaugeMetricFamily(
            "ridgeline_worker_heartbeat_age_seconds",
            "Seconds since the stalest lease renewal among running jobs (0 when none runs); "
            "renewals come every third of RIDGELINE_LEASE_SECONDS.",
            value=snap.heartbeat_age,
        )
        yield GaugeMetricFamily(
            "ridgeline_expired_leases",
            "Running jobs whose lease has run out: a lost worker, until a worker reaps them.",
            value=snap.expired_leases,
        )
        yield GaugeMetricFamily(
            "ridgeline_job_attempts_retried",
            "Job attempts that were retries (attempt > 1), from the database.",
            value=snap.retried_attempts,
        )
