"""HTTP routes for jobs: parse, call the service, return."""

from __future__ import annotations

import json
import uuid
from functools import partial
from typing import Annotated, Literal

import anyio.to_thread
from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from service.datasets import export
from service.db import Database
from service.deps import (
    Cursor,
    DatabaseDep,
    PrincipalDep,
    SessionDep,
    TagFiltersDep,
)
from service.errors import NotFound
from service.ids import parse_id
from service.jobs import event_signal, service, serving
from service.jobs.models import TERMINAL, Job
from service.jobs.schemas import (
    EpochRead,
    JobCreate,
    JobMetricsRead,
    JobRead,
    JobStatus,
    PredictResponse,
    job_read,
)
from service.pagination import MAX_LIMIT, Page
from service.training.results import JobMetrics

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


def job_read_of(session: Session, job: Job) -> JobRead:
    return job_read(job, service.attempts_of(session, job))


def _job(session: Session, principal: PrincipalDep, job_id: str) -> Job:
    return service.get_job(session, tenant_id=principal.tenant_id, job_id=parse_id(job_id, "job"))


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobRead,
    summary="Queue a training job",
    description="Validates the spec against the dataset and queues it for a worker. "
    "Send an Idempotency-Key header to make retries safe: the same key and body return the "
    "same job (200) for 24 hours; the same key with another body is a 409.",
)
def create_job(
    body: JobCreate,
    session: SessionDep,
    db: DatabaseDep,
    principal: PrincipalDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JobRead:
    job, created = service.create_job(
        session,
        settings=db.settings,
        tenant_id=principal.tenant_id,
        body=body,
        idempotency_key=idempotency_key,
    )
    session.flush()
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    if not created:
        response.status_code = status.HTTP_200_OK
    return job_read_of(session, job)


@router.get(
    "",
    response_model=Page[JobRead],
    summary="List jobs, newest first or by a final metric",
    description="Filters combine: `status`, `dataset_id`, and `tag=key:value` (repeat it to ask "
    "for several tags). `order_by=validation.log_loss` (a split, `train`, `validation` or `test`, "
    "a dot and a metric) lists the jobs that report that figure, best first (lowest loss, highest "
    "accuracy) unless `order` says `asc` or `desc`; ties go by id, so every page follows on from "
    "the last. Sweeps' trial jobs and dataset imports are left out unless `include_trials` or "
    "`include_imports` asks for them.",
)
def list_jobs(
    session: SessionDep,
    principal: PrincipalDep,
    tags: TagFiltersDep,
    status_filter: Annotated[JobStatus | None, Query(alias="status")] = None,
    dataset_id: uuid.UUID | None = None,
    order_by: Annotated[
        str | None, Query(max_length=80, description="split.metric, e.g. validation.log_loss.")
    ] = None,
    order: Annotated[
        Literal["asc", "desc"] | None, Query(description="With order_by; default: best first.")
    ] = None,
    include_trials: Annotated[
        bool, Query(description="Also list the trial jobs sweeps ran (left out by default).")
    ] = False,
    include_imports: Annotated[
        bool, Query(description="Also list the jobs that imported datasets by URI.")
    ] = False,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    cursor: Cursor = "",
) -> Page[JobRead]:
    items, next_cursor = service.list_jobs(
        session,
        tenant_id=principal.tenant_id,
        status=status_filter,
        dataset_id=dataset_id,
        limit=limit,
        cursor=cursor,
        tags=tags,
        order_by=order_by,
        order=order,
        include_trials=include_trials,
        include_imports=include_imports,
    )
    attempts = service.attempts_of_jobs(session, [job.id for job in items])
    return Page[JobRead](
        items=[job_read(job, attempts[job.id]) for job in items], next_cursor=next_cursor
    )


# The status poll: clients call it in a loop, so it skips the ORM, the session and thread trips.
@router.get("/{job_id}", response_model=JobRead, summary="Get a job: status, progress, attempts")
async def get_job(job_id: str, db: DatabaseDep, principal: PrincipalDep) -> Response:
    job_uuid = parse_id(job_id, "job")
    found = await db.read(partial(service.read_job, tenant_id=principal.tenant_id, job_id=job_uuid))
    if found is None:
        raise NotFound(f"no job with id {job_uuid}")
    return Response(job_read(*found).model_dump_json(), media_type="application/json")


@router.get(
    "/{job_id}/metrics",
    response_model=JobMetricsRead,
    response_model_exclude_unset=True,
    summary="Metrics: final train/validation/test, gap, weights, coefficients, per-epoch history",
)
def get_metrics(job_id: str, session: SessionDep, principal: PrincipalDep) -> JobMetricsRead:
    job = _job(session, principal, job_id)
    metrics = JobMetrics.model_validate(job.metrics or {})
    history = [EpochRead.model_validate(e) for e in service.epochs_of(session, job)]
    if not history and metrics.history:
        history = [EpochRead.model_validate(row.to_json()) for row in metrics.history]
    return JobMetricsRead.of(
        job_id=job.id,
        status=job.status,
        attempt=job.attempt,
        task=job.task,
        metrics=metrics,
        history=history,
    )


@router.get(
    "/{job_id}/artifact",
    summary="Download the model artifact",
    description=serving.ARTIFACT_DESCRIPTION,
    response_class=StreamingResponse,
    responses=serving.ARTIFACT_RESPONSES,
)
def download_artifact(
    job_id: str,
    request: Request,
    session: SessionDep,
    db: DatabaseDep,
    principal: PrincipalDep,
    format: Annotated[
        Literal["native", "onnx"], Query(description="native (the kind's format) or onnx.")
    ] = "native",
) -> Response:
    job = _job(session, principal, job_id)
    service.require_servable(job)
    return serving.artifact_answer(
        request.app.state.model_cache, db, job, format=format, filename=f"job-{job.id}"
    )


@router.post(
    "/{job_id}/predict",
    response_model=PredictResponse,
    summary="Predict with a trained model",
    description=serving.PREDICT_DESCRIPTION,
    openapi_extra=serving.PREDICT_BODY,
    responses=serving.PREDICT_RESPONSES,
)
async def predict(
    job_id: str,
    request: Request,
    db: DatabaseDep,
    principal: PrincipalDep,
    escape_formulas: Annotated[bool, Query(description=export.ESCAPE_FORMULAS_DOC)] = True,
) -> Response:
    job = await anyio.to_thread.run_sync(lambda: _load_job(db, principal, job_id))
    service.require_succeeded(job)
    return await serving.predict_answer(
        request, db, job, tenant_id=principal.tenant_id, escape_formulas=escape_formulas
    )


def _load_job(db: Database, principal: PrincipalDep, job_id: str) -> Job:
    with db.transaction(write=False) as session:
        return _job(session, principal, job_id)


@router.get(
    "/{job_id}/events",
    summary="Live events (Server-Sent Events) until the job ends",
    description="Status changes, progress and per-epoch metrics, in order, from the job's start; "
    "the stream closes after the terminal status. Resume with the Last-Event-ID header.",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def job_events(
    job_id: str,
    request: Request,
    db: DatabaseDep,
    principal: PrincipalDep,
    last_event_id: Annotated[
        int,
        Header(ge=0, le=2**63 - 1, description="Resume after this event id (0: from the start)."),
    ] = 0,
) -> StreamingResponse:
    job = await anyio.to_thread.run_sync(lambda: _load_job(db, principal, job_id))
    after = last_event_id

    async def poll() -> tuple[list[str], bool]:
        nonlocal after
        events, status_now = await anyio.to_thread.run_sync(service.events_after, db, job.id, after)
        frames = []
        for event in events:
            after = event.id
            data = {"attempt": event.attempt, **event.data, "at": event.created_at.isoformat()}
            frames.append(event_signal.frame(event.kind, json.dumps(data), event.id))
        return frames, status_now in TERMINAL and not events

    return event_signal.event_stream(request, poll)


@router.post("/{job_id}/cancel", response_model=JobRead, summary="Cancel a queued or running job")
def cancel_job(job_id: str, session: SessionDep, principal: PrincipalDep) -> JobRead:
    job = service.cancel_job(session, tenant_id=principal.tenant_id, job_id=parse_id(job_id, "job"))
    return job_read_of(session, job)


@router.delete(
    "/{job_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a finished job and its artifact",
)
def delete_job(job_id: str, session: SessionDep, principal: PrincipalDep) -> Response:
    service.delete_job(session, tenant_id=principal.tenant_id, job_id=parse_id(job_id, "job"))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
