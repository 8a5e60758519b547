"""HTTP routes for jobs: parse, call the service, return."""

from __future__ import annotations

import json
import time
import unicodedata
import uuid
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio.to_thread
import pyarrow as pa
import pyarrow.csv as pa_csv
from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session

from service import blobs
from service.datasets import export
from service.db import Database
from service.deps import (
    Cursor,
    DatabaseDep,
    PrincipalDep,
    SessionDep,
    ingest_slots,
    still_authorized,
)
from service.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from service.ids import parse_id
from service.jobs import service
from service.jobs.models import TERMINAL, Job
from service.jobs.schemas import (
    EpochRead,
    JobCreate,
    JobMetricsRead,
    JobRead,
    JobStatus,
    PredictRequest,
    PredictResponse,
    job_read,
)
from service.pagination import MAX_LIMIT, Page
from service.scratch import scratch_dir
from service.training.kinds import registry
from service.training.results import JobMetrics
from service.uploads import receive_upload

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

MAX_PREDICT_JSON_BYTES = 32 << 20


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


@router.get("", response_model=Page[JobRead], summary="List jobs, newest first")
def list_jobs(
    session: SessionDep,
    principal: PrincipalDep,
    status_filter: Annotated[JobStatus | None, Query(alias="status")] = None,
    dataset_id: uuid.UUID | None = None,
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
    description="`format=native` (the default): the model kind's own format ("
    + "; ".join(f"{k.name}: {k.artifact.description}" for k in registry.kinds())
    + "). `format=onnx`: one ONNX graph, preprocessing included, whose inputs are the raw feature "
    "columns ([N, 1] each: double, or string for categorical columns; NaN and the empty string "
    "mark missing values) and whose outputs are `label` and `probabilities` (classifiers) or "
    "`variable` (regressors); 422 if the model cannot be exported. The sha256 of the bytes sent "
    "is in the X-Artifact-SHA256 header.",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}, "application/zip": {}}}},
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
    service.require_succeeded(job)
    if job.artifact_blob_id is None or job.artifact_sha256 is None:
        raise Conflict(f"job {job.id} has no stored artifact")
    if format == "onnx":
        data, sha256 = request.app.state.model_cache.onnx(db, job)
        return Response(
            data,
            media_type="application/octet-stream",
            headers={
                "Content-Disposition": f'attachment; filename="job-{job.id}.onnx"',
                "X-Artifact-SHA256": sha256,
            },
        )
    stored = registry.artifact_format(job.artifact_kind or "")
    extension = stored.extension if stored else "bin"
    filename = f"job-{job.id}.{extension}"
    # Artifacts are small: read and verify the whole file before the first byte goes out.
    data = blobs.read_blob(db, job.artifact_blob_id)
    return Response(
        data,
        media_type=stored.media_type if stored else "application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "X-Artifact-SHA256": job.artifact_sha256,
        },
    )


PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "A CSV."}
                    },
                }
            },
        },
    }
}


async def _predict_rows(request: Request, db: Database) -> Any:
    """JSON records, a CSV file whose header names the columns, or a dataset id to score."""
    content_type = (request.headers.get("content-type") or "").lower()
    max_rows = db.settings.max_predict_rows
    if content_type.startswith("application/json"):
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_PREDICT_JSON_BYTES:
                raise PayloadTooLarge(
                    f"the JSON body is over {MAX_PREDICT_JSON_BYTES} bytes; send a CSV file "
                    "or fewer rows"
                )
        try:
            payload = PredictRequest.model_validate(json.loads(body))
        except (ValueError, ValidationError) as exc:
            raise InvalidInput(
                'send {"rows": [{"column": value, ...}, ...]} with at least one row, or '
                '{"dataset_id": "..."} to score a stored dataset'
            ) from exc
        if payload.dataset_id is not None:
            return payload.dataset_id
        assert payload.rows is not None
        if len(payload.rows) > max_rows:
            raise InvalidInput(
                f"{len(payload.rows)} rows is over the limit of {max_rows} per request"
            )
        return [{_nfc(name): value for name, value in row.items()} for row in payload.rows]
    if content_type.startswith("multipart/form-data"):
        upload = await receive_upload(
            request.stream(),
            content_type=request.headers.get("content-type"),
            content_length=request.headers.get("content-length"),
            max_bytes=db.settings.max_request_bytes,
            tmp_dir=scratch_dir(request),
            limit_setting="RIDGELINE_MAX_REQUEST_BYTES",
        )
        try:
            return await anyio.to_thread.run_sync(
                lambda: _read_csv_rows(upload.path, max_rows), limiter=ingest_slots(request)
            )
        finally:
            upload.discard()
    raise UnsupportedMediaType("send application/json rows or a multipart/form-data CSV 'file'")


def _read_csv_rows(path: Path, max_rows: int) -> pa.Table:
    """The CSV's rows, types inferred over the file, once a streamed count kept to the limit."""
    try:
        _count_csv_rows(path, max_rows)
        table = pa_csv.read_csv(path)
    except pa.ArrowInvalid as exc:
        raise InvalidInput(f"the CSV could not be parsed: {exc}") from exc
    except UnicodeDecodeError as exc:  # pyarrow decodes the header lazily
        raise InvalidInput("the CSV header is not UTF-8; save the file as UTF-8") from exc
    if table.num_rows == 0:
        raise InvalidInput("the CSV has no rows to score")
    return table.rename_columns([_nfc(name) for name in table.column_names])


def _nfc(name: str) -> str:
    """Column names compare in Unicode NFC form, the form datasets store them in."""
    return unicodedata.normalize("NFC", name)


def _count_csv_rows(path: Path, max_rows: int) -> None:
    """Read the CSV as text block by block, stopping as soon as it passes the row limit."""
    names = pa_csv.open_csv(path).schema.names
    reader = pa_csv.open_csv(
        path, convert_options=pa_csv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()))
    )
    rows = 0
    for batch in reader:
        rows += batch.num_rows
        if rows > max_rows:
            reader.close()
            raise InvalidInput(
                f"the CSV has more than {max_rows} rows, the limit of one request "
                "(RIDGELINE_MAX_PREDICT_ROWS); send fewer rows, or score a stored dataset with "
                '{"dataset_id": ...}'
            )


@router.post(
    "/{job_id}/predict",
    response_model=PredictResponse,
    summary="Predict with a trained model",
    description='Send JSON `{"rows": [...]}` or a CSV file (at most RIDGELINE_MAX_PREDICT_ROWS '
    'rows), or JSON `{"dataset_id": "..."}` to score a whole stored dataset: the answer is then a '
    "streamed CSV (text/csv) of the dataset's rows in order, each with `prediction` and, for "
    "classifiers, one `proba_<label>` column per class. Missing values are imputed as in "
    "training; an unseen category is encoded as none of the known ones.",
    openapi_extra=PREDICT_BODY,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
async def predict(
    job_id: str,
    request: Request,
    db: DatabaseDep,
    principal: PrincipalDep,
    escape_formulas: Annotated[bool, Query(description=export.ESCAPE_FORMULAS_DOC)] = True,
) -> PredictResponse | StreamingResponse:
    job = await anyio.to_thread.run_sync(lambda: _load_job(db, principal, job_id))
    service.require_succeeded(job)
    rows = await _predict_rows(request, db)
    cache: service.ModelCache = request.app.state.model_cache
    if isinstance(rows, uuid.UUID):
        dataset_id = rows
        stream = await anyio.to_thread.run_sync(
            lambda: service.score_dataset(
                db,
                cache,
                job,
                tenant_id=principal.tenant_id,
                dataset_id=dataset_id,
                escape_formulas=escape_formulas,
            )
        )
        return StreamingResponse(
            stream,
            media_type="text/csv",
            headers={
                "Content-Disposition": f'attachment; filename="job-{job.id}-{dataset_id}.csv"'
            },
        )

    def run() -> PredictResponse:
        model = cache.get(db, job)
        result = model.predict(rows)
        return PredictResponse(
            job_id=job.id,
            predictions=result.predictions,
            probabilities=result.probabilities,
            classes=result.classes,
        )

    return await anyio.to_thread.run_sync(run)


def _load_job(db: Database, principal: PrincipalDep, job_id: str) -> Job:
    with db.transaction(write=False) as session:
        return _job(session, principal, job_id)


EVENT_POLL_SECONDS = 0.25
KEEPALIVE_SECONDS = 15.0


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
    recheck = max(db.settings.key_cache_seconds, EVENT_POLL_SECONDS)

    async def stream() -> Any:
        nonlocal after
        idle = 0.0
        checked = time.monotonic()
        while not await request.is_disconnected():
            if time.monotonic() - checked >= recheck:  # the verifier's cadence
                if not await still_authorized(request):
                    yield ": the credential was revoked or signed out; the stream ends\n\n"
                    return
                checked = time.monotonic()
            events, status_now = await anyio.to_thread.run_sync(
                service.events_after, db, job.id, after
            )
            for event in events:
                after = event.id
                data = json.dumps(
                    {"attempt": event.attempt, **event.data, "at": event.created_at.isoformat()}
                )
                yield f"id: {event.id}\nevent: {event.kind}\ndata: {data}\n\n"
            if status_now in TERMINAL and not events:
                return
            if events:
                idle = 0.0
            else:
                idle += EVENT_POLL_SECONDS
                if idle >= KEEPALIVE_SECONDS:
                    idle = 0.0
                    yield ": keep-alive\n\n"
                await anyio.sleep(EVENT_POLL_SECONDS)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


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
