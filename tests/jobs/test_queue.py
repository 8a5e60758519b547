"""The queue's rules on a real database: fencing, reaping, priorities and fairness."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import Iterator
from datetime import timedelta
from functools import partial

import pytest
from sqlalchemy import delete, update

from service import blobs
from service.datasets.models import Dataset
from service.db import Database, utcnow
from service.jobs import queue
from service.jobs import service as jobs_service
from service.jobs.event_signal import EventSignal
from service.jobs.models import FAILED, QUEUED, RUNNING, SUCCEEDED, Job, JobAttempt
from tests.support import wait_for


@pytest.fixture
def empty_queue(db: Database) -> Iterator[uuid.UUID]:
    """A dataset to hang jobs on, and a queue with nothing else in it."""
    with db.transaction() as session:
        session.execute(delete(Job))
    blob = blobs.write_blob(db, io.BytesIO(b"x"), tenant_id="t", key=None)
    with db.transaction() as session:
        blobs.mark_complete(session, blob.id)
        dataset = Dataset(
            tenant_id="t",
            name="d",
            format="csv",
            size_bytes=1,
            sha256="0" * 64,
            n_rows=1,
            n_columns=1,
            columns=[],
            blob_id=blob.id,
            stored_bytes=1,
        )
        session.add(dataset)
        session.flush()
        dataset_id = dataset.id
    yield dataset_id
    with db.transaction() as session:
        session.execute(delete(Job))


def _job(
    db: Database,
    dataset_id: uuid.UUID,
    *,
    tenant: str = "a",
    priority: int = 0,
    max_attempts: int = 3,
    age: float = 0,
) -> uuid.UUID:
    with db.transaction() as session:
        job = Job(
            tenant_id=tenant,
            dataset_id=dataset_id,
            spec={},
            task="classification",
            task_reason="test",
            max_seconds=60,
            max_attempts=max_attempts,
            priority=priority,
            created_at=utcnow() - timedelta(seconds=age),
        )
        session.add(job)
        session.flush()
        return job.id


def _claim(db: Database, worker: str = "w1") -> queue.Claim | None:
    with db.transaction() as session:
        return queue.claim(session, worker_id=worker, lease_seconds=30)


def _expire(db: Database, job_id: uuid.UUID) -> None:
    with db.transaction() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )


def _status(db: Database, job_id: uuid.UUID) -> tuple[str, int, str | None]:
    with db.transaction(write=False) as session:
        job = session.get_one(Job, job_id)
        return job.status, job.attempt, job.error


def test_a_stale_attempt_cannot_write_its_result(db: Database, empty_queue: uuid.UUID) -> None:
    job_id = _job(db, empty_queue)
    stale = _claim(db, "w1")
    assert stale is not None and stale.attempt == 1
    _expire(db, job_id)
    with db.transaction() as session:
        assert [(j, s) for j, _, s in queue.reap_expired(session)] == [(job_id, QUEUED)]
    fresh = _claim(db, "w2")
    assert fresh is not None and fresh.attempt == 2
    with db.transaction() as session:
        assert not queue.renew_lease(session, stale, worker_id="w1", lease_seconds=30)
        assert not queue.record_progress(session, stale, progress=0.5, epochs=[])
        assert not queue.finish(session, stale, status=SUCCEEDED, metrics={"stale": True})
    assert _status(db, job_id)[:2] == (RUNNING, 2)
    with db.transaction() as session:
        assert queue.finish(session, fresh, status=SUCCEEDED, metrics={"fresh": True})
    with db.transaction(write=False) as session:
        job = session.get_one(Job, job_id)
        assert (job.status, job.metrics) == (SUCCEEDED, {"fresh": True})
        outcomes = [
            a.outcome
            for a in session.query(JobAttempt).filter_by(job_id=job_id).order_by(JobAttempt.attempt)
        ]
    assert outcomes == ["lost", SUCCEEDED]


def test_lost_too_often_fails_with_the_reason(db: Database, empty_queue: uuid.UUID) -> None:
    job_id = _job(db, empty_queue, max_attempts=2)
    for _ in range(2):
        assert _claim(db) is not None
        _expire(db, job_id)
        with db.transaction() as session:
            queue.reap_expired(session)
    status, attempt, error = _status(db, job_id)
    assert (status, attempt) == (FAILED, 2)
    assert error is not None and "worker lost 2 times" in error
    assert _claim(db) is None


def test_a_live_lease_is_not_reaped(db: Database, empty_queue: uuid.UUID) -> None:
    job_id = _job(db, empty_queue)
    assert _claim(db) is not None
    with db.transaction() as session:
        assert queue.reap_expired(session) == []
    assert _status(db, job_id)[0] == RUNNING


def test_priority_then_age(db: Database, empty_queue: uuid.UUID) -> None:
    old_low = _job(db, empty_queue, priority=0, age=30)
    new_high = _job(db, empty_queue, priority=5, age=0)
    older_low = _job(db, empty_queue, priority=0, age=60)
    order = [c.job_id for c in iter(lambda: _claim(db), None)]
    assert order == [new_high, older_low, old_low]


def test_a_tenants_burst_does_not_starve_another(db: Database, empty_queue: uuid.UUID) -> None:
    burst = [_job(db, empty_queue, tenant="busy", age=100 - i) for i in range(5)]
    other = _job(db, empty_queue, tenant="quiet", age=1)
    first = _claim(db)
    assert first is not None and first.job_id == burst[0]
    # "busy" now has a running job and "quiet" has none: quiet goes next despite being newer.
    second = _claim(db)
    assert second is not None and second.job_id == other


def test_running_limit_per_tenant(db: Database, empty_queue: uuid.UUID) -> None:
    first = _job(db, empty_queue, tenant="capped", age=30)
    _job(db, empty_queue, tenant="capped", age=20)
    other = _job(db, empty_queue, tenant="free", age=10)

    def claim_capped() -> queue.Claim | None:
        with db.transaction() as session:
            return queue.claim(session, worker_id="w", lease_seconds=30, max_running_per_tenant=1)

    assert [c.job_id for c in iter(claim_capped, None)] == [first, other]


def test_the_status_poll_reads_a_job_with_its_attempts_in_order(
    db: Database, empty_queue: uuid.UUID
) -> None:
    job_id, untried_id = _job(db, empty_queue), _job(db, empty_queue)
    assert _claim(db, "w1") is not None
    _expire(db, job_id)
    with db.transaction() as session:
        queue.reap_expired(session)
    fresh = _claim(db, "w2")
    assert fresh is not None and fresh.job_id == job_id
    with db.transaction() as session:
        assert queue.finish(session, fresh, status=SUCCEEDED, metrics={"final": {"ok": 1}})

    found = asyncio.run(db.read(partial(jobs_service.read_job, tenant_id="a", job_id=job_id)))
    assert found is not None
    job, attempts = found
    assert (job.status, job.attempt, job.metrics) == (SUCCEEDED, 2, {"final": {"ok": 1}})
    assert [(a["attempt"], a["worker_id"], a["outcome"]) for a in attempts] == [
        (1, "w1", "lost"),
        (2, "w2", SUCCEEDED),
    ]
    untried = asyncio.run(db.read(partial(jobs_service.read_job, tenant_id="a", job_id=untried_id)))
    assert untried is not None and untried[1] == []
    other_tenant = partial(jobs_service.read_job, tenant_id="b", job_id=job_id)
    assert asyncio.run(db.read(other_tenant)) is None
    with db.transaction(write=False) as session:
        by_job = jobs_service.attempts_of_jobs(session, [job_id, untried_id])
    assert [a.outcome for a in by_job[job_id]] == ["lost", SUCCEEDED] and by_job[untried_id] == []


def test_a_job_event_wakes_the_api_event_streams(db: Database, empty_queue: uuid.UUID) -> None:
    """An event committed by another process wakes a waiting stream (it waits 60 s otherwise)."""
    job_id = _job(db, empty_queue)
    signal = EventSignal()
    signal.listen(db.settings)
    try:
        wait_for(lambda: signal.generation > 0, timeout=10, message="the watcher's first look")
        seen = signal.generation

        def add_event() -> None:
            with db.transaction() as session:
                queue.add_event(session, job_id, 1, "progress", value=0.5)

        async def wait_while_an_event_commits() -> None:
            waiting = asyncio.create_task(signal.wait(seen, timeout=60))
            await asyncio.to_thread(add_event)
            await asyncio.wait_for(waiting, timeout=30)

        asyncio.run(wait_while_an_event_commits())
        assert signal.generation > seen
    finally:
        signal.close()
