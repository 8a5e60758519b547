"""The rules of jobs: validate against the dataset, queue, cancel, delete, read back, predict."""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, Protocol

import pyarrow as pa
from sqlalchemy import Connection, Row, bindparam, delete, exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service import blobs
from service.config import Settings
from service.datasets import export
from service.datasets.ingest import SizeLimits
from service.datasets.models import Dataset
from service.datasets.service import (
    IMPORT_TRAINER,
    dataset_named,
    dataset_to_train_on,
    fail_import,
    require_stored,
)
from service.db import Database, rowcount, utcnow
from service.errors import Conflict, InvalidInput, NotFound, TooManyRequests
from service.hooks import InUseCheck, InUseChecks
from service.jobs import callbacks, queue
from service.jobs.engine import choose_engine
from service.jobs.models import (
    ACTIVE,
    CALLBACK_PENDING,
    CANCELLED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    TERMINAL,
    IdempotencyKey,
    Job,
    JobAttempt,
    JobEpoch,
    JobEvent,
    JobMetric,
)
from service.jobs.schemas import JobCreate
from service.pagination import page_of, page_of_ordered, paginate, paginate_by
from service.tags import where_tags
from service.training.kinds import registry
from service.training.metrics import METRICS
from service.training.resolve import resolve_spec, split_sizes
from service.training.spec import ColumnSummary, TrainingSpec

IDEMPOTENCY_TTL = timedelta(hours=24)


def column_summaries(dataset: Dataset) -> list[ColumnSummary]:
    return [
        ColumnSummary(
            name=c["name"], dtype=c["dtype"], n_unique=c["n_unique"], n_missing=c["n_missing"]
        )
        for c in dataset.columns
    ]


def _request_hash(body: JobCreate) -> str:
    # Without empty tags or the default engine, so a body hashes as it did before they existed.
    left_out = {"tags"} if not body.tags else set()
    if body.engine == "auto":
        left_out.add("engine")
    fields = body.model_dump(mode="json", exclude=left_out or None)
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replay(session: Session, *, tenant_id: str, key: str, request_hash: str) -> Job | None:
    """The job a previous request with this Idempotency-Key created, if it is still remembered."""
    record = session.get(IdempotencyKey, (tenant_id, key))
    if record is None:
        return None
    if record.created_at < utcnow() - IDEMPOTENCY_TTL:
        session.delete(record)
        session.flush()
        return None
    if record.request_hash != request_hash:
        raise Conflict(
            f"Idempotency-Key {key!r} was already used with a different request body; "
            "use a new key for a new job"
        )
    return session.get(Job, record.job_id)


def create_job(
    session: Session,
    *,
    settings: Settings,
    tenant_id: str,
    body: JobCreate,
    idempotency_key: str | None = None,
    trainer: str = "default",
) -> tuple[Job, bool]:
    """Validate the spec against its dataset and queue it; (job, created)."""
    request_hash = _request_hash(body)
    if idempotency_key:
        replayed = _replay(
            session, tenant_id=tenant_id, key=idempotency_key, request_hash=request_hash
        )
        if replayed is not None:
            return replayed, False
    dataset = dataset_to_train_on(session, tenant_id=tenant_id, dataset_id=body.dataset_id)
    spec = body.training_spec()
    check_tenant_limits(session, settings, tenant_id=tenant_id, new_jobs=1)
    check_epochs(settings, spec)
    resolved = resolve_spec(
        spec,
        column_summaries(dataset),
        max_classes=settings.max_classes,
        max_mlp_parameters=settings.max_mlp_parameters,
    )
    decision = choose_engine(settings, body.engine, spec, dataset)
    callback_url = None
    if body.callback_url is not None:
        callback_url = callbacks.validate_callback_url(settings, body.callback_url)
    max_seconds = body.max_seconds or settings.default_max_seconds
    if max_seconds > settings.max_job_seconds:
        raise InvalidInput(
            f"max_seconds {max_seconds} is over the limit of {settings.max_job_seconds}",
            errors=[{"field": "max_seconds", "message": "over the limit"}],
        )
    target_missing = next(c["n_missing"] for c in dataset.columns if c["name"] == spec.target)
    n_train, _, _ = split_sizes(dataset.n_rows - target_missing, spec.validation)
    if n_train < 2:
        raise InvalidInput(
            f"only {n_train} rows would be left to train on; lower validation.fraction and "
            "validation.test_fraction or upload more rows",
            errors=[{"field": "validation.fraction", "message": "too few training rows"}],
        )
    job = Job(
        tenant_id=tenant_id,
        name=body.name,
        tags=body.tags or None,
        dataset_id=dataset.id,
        status=QUEUED,
        priority=body.priority,
        spec=spec.model_dump(mode="json"),
        trainer=trainer,
        task=resolved.task,
        task_reason=resolved.task_reason,
        # None until the worker fits it: native_params are computed once, from the real split.
        native_params=None,
        engine=decision.engine,
        engine_reason=decision.reason,
        max_seconds=max_seconds,
        max_attempts=settings.max_attempts,
        callback_url=callback_url,
        callback_status=CALLBACK_PENDING if callback_url else None,
    )
    session.add(job)
    try:
        session.flush()
        if idempotency_key:
            session.add(
                IdempotencyKey(
                    tenant_id=tenant_id,
                    key=idempotency_key,
                    request_hash=request_hash,
                    job_id=job.id,
                )
            )
            session.flush()
    except IntegrityError as exc:
        raise Conflict(
            f"a request with Idempotency-Key {idempotency_key!r} is being processed; retry"
        ) from exc
    queue.add_event(session, job.id, 0, "status", status=QUEUED)
    queue.notify(session)
    return job, True


def check_tenant_limits(
    session: Session, settings: Settings, *, tenant_id: str, new_jobs: int
) -> None:
    """Bound one tenant's queue so its burst cannot bury everyone else's work."""
    queued = session.scalar(
        select(func.count()).where(Job.tenant_id == tenant_id, Job.status == QUEUED)
    )
    limit = settings.max_queued_jobs_per_tenant
    if (queued or 0) + new_jobs > limit:
        raise TooManyRequests(
            f"this tenant has {queued} queued jobs and this request adds {new_jobs}; the limit "
            f"is {limit}. Wait for some to run, or cancel some",
            headers={"Retry-After": "30"},
        )


def check_epochs(settings: Settings, spec: TrainingSpec) -> None:
    epochs = registry.kind_of(spec).epochs(spec.model)
    if epochs is not None and epochs > settings.max_epochs:
        raise InvalidInput(
            f"model.epochs {epochs} is over the limit of {settings.max_epochs}; use fewer epochs "
            "(early stopping ends training when the validation loss stops improving)",
            errors=[{"field": "model.epochs", "message": "over the limit"}],
        )


def get_job(session: Session, *, tenant_id: str, job_id: uuid.UUID) -> Job:
    job = session.scalar(select(Job).where(Job.id == job_id, Job.tenant_id == tenant_id))
    if job is None:
        raise NotFound(f"no job with id {job_id}")
    return job


#: The splits whose final figures a job reports (FinalMetrics).
SPLITS = ("train", "validation", "test")


def order_metric(order_by: str) -> tuple[str, str, bool]:
    """(split, metric, greater_is_better) of ``?order_by=validation.log_loss``, the direction
    from the training core's metric registry; an unknown split or metric is a 422."""
    split, _, name = order_by.partition(".")
    if split not in SPLITS or name not in METRICS:
        raise InvalidInput(
            f"order_by {order_by!r} is not split.metric: write one of {', '.join(SPLITS)}, a dot "
            f"and one of {', '.join(sorted(METRICS))} (validation.log_loss, say)",
            errors=[{"field": "order_by", "message": "unknown split or metric"}],
        )
    return split, name, METRICS[name].greater_is_better


def list_jobs(
    session: Session,
    *,
    tenant_id: str,
    status: str | None,
    dataset_id: uuid.UUID | None,
    limit: int,
    cursor: str | None,
    tags: dict[str, str] | None = None,
    order_by: str | None = None,
    order: str | None = None,
    include_trials: bool = False,
    include_imports: bool = False,
) -> tuple[list[Job], str | None]:
    """Newest first; or, with order_by, the jobs that report that final figure, best first
    unless `order` says asc or desc (ties broken by id, so pages are stable).

    A sweep's trial jobs (dozens of them) and the jobs that import datasets are left out unless
    asked for: the list is the models people trained.
    """
    query = where_tags(select(Job).where(Job.tenant_id == tenant_id), Job.tags, tags or {})
    if not include_trials:
        query = query.where(Job.sweep_id.is_(None))
    if not include_imports:
        query = query.where(Job.trainer != IMPORT_TRAINER)
    if status:
        query = query.where(Job.status == status)
    if dataset_id:
        query = query.where(Job.dataset_id == dataset_id)
    if order_by is None:
        query = paginate(
            query, created_at=Job.created_at, row_id=Job.id, limit=limit, cursor=cursor
        )
        return page_of(session.scalars(query).all(), limit)
    split, name, greater_is_better = order_metric(order_by)
    direction = order or ("desc" if greater_is_better else "asc")
    label = f"{split}.{name}:{direction}"
    query = (
        query.join(JobMetric, JobMetric.job_id == Job.id)
        .where(JobMetric.tenant_id == tenant_id, JobMetric.split == split, JobMetric.name == name)
        .add_columns(JobMetric.value)
    )
    query = paginate_by(
        query,
        key=JobMetric.value,
        row_id=JobMetric.job_id,
        descending=direction == "desc",
        order=label,
        limit=limit,
        cursor=cursor,
    )
    return page_of_ordered(session.execute(query).all(), limit, label)


def attempts_of(session: Session, job: Job) -> list[JobAttempt]:
    return attempts_of_jobs(session, [job.id])[job.id]


def attempts_of_jobs(
    session: Session, job_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[JobAttempt]]:
    """The attempts of many jobs in one query (a page of jobs is not one query per job)."""
    by_job: dict[uuid.UUID, list[JobAttempt]] = {job_id: [] for job_id in job_ids}
    if job_ids:
        query = (
            select(JobAttempt)
            .where(JobAttempt.job_id.in_(job_ids))
            .order_by(JobAttempt.job_id, JobAttempt.attempt)
        )
        for attempt in session.scalars(query):
            by_job[attempt.job_id].append(attempt)
    return by_job


_jobs, _attempts = Job.__table__, JobAttempt.__table__
_ATTEMPT_FIELDS = ("attempt", "worker_id", "started_at", "finished_at", "outcome", "error")
# Built once (building a statement costs more than running it on SQLite), and one statement, so
# the job and its attempts come from one snapshot on either database without a transaction.
_JOB_WITH_ATTEMPTS = (
    select(_jobs, *(_attempts.c[name].label(f"attempt_{name}") for name in _ATTEMPT_FIELDS))
    .outerjoin(_attempts, _attempts.c.job_id == _jobs.c.id)
    .where(_jobs.c.id == bindparam("job_id"), _jobs.c.tenant_id == bindparam("tenant_id"))
    .order_by(_attempts.c.attempt)
)


def read_job(
    connection: Connection, *, tenant_id: str, job_id: uuid.UUID
) -> tuple[Row[Any], list[dict[str, Any]]] | None:
    """A job and its attempts through SQLAlchemy Core: the status poll, the hottest read."""
    rows = connection.execute(_JOB_WITH_ATTEMPTS, {"job_id": job_id, "tenant_id": tenant_id}).all()
    if not rows:
        return None
    attempts = [
        {name: row._mapping[f"attempt_{name}"] for name in _ATTEMPT_FIELDS}
        for row in rows
        if row.attempt_attempt is not None
    ]
    return rows[0], attempts


def epochs_of(session: Session, job: Job) -> list[JobEpoch]:
    """Per-epoch metrics of the latest attempt only."""
    return list(
        session.scalars(
            select(JobEpoch)
            .where(JobEpoch.job_id == job.id, JobEpoch.attempt == job.attempt)
            .order_by(JobEpoch.epoch)
        )
    )


def events_after(db: Database, job_id: uuid.UUID, after: int) -> tuple[list[JobEvent], str]:
    """Events newer than `after`, and the job's status read first, so a terminal status
    read here guarantees that its event is among those returned or already sent."""
    with db.transaction(write=False) as session:
        status = session.scalar(select(Job.status).where(Job.id == job_id)) or CANCELLED
        events = list(
            session.scalars(
                select(JobEvent)
                .where(JobEvent.job_id == job_id, JobEvent.id > after)
                .order_by(JobEvent.id)
                .limit(500)
            )
        )
    return events, status


def cancel_job(session: Session, *, tenant_id: str, job_id: uuid.UUID) -> Job:
    """A queued job is cancelled at once; a running one is stopped by its worker within a second."""
    job = get_job(session, tenant_id=tenant_id, job_id=job_id)
    if job.status in TERMINAL:
        raise Conflict(f"job {job_id} already ended ({job.status}); there is nothing to cancel")
    if job.status == QUEUED:
        result = session.execute(
            update(Job)
            .where(Job.id == job.id, Job.status == QUEUED)
            .values(status=CANCELLED, finished_at=utcnow(), error="cancelled by request")
            .execution_options(synchronize_session=False)
        )
        if rowcount(result):
            queue.add_event(session, job.id, job.attempt, "status", status=CANCELLED)
            if job.trainer == IMPORT_TRAINER and job.dataset_id is not None:
                fail_import(session, job.dataset_id, "cancelled by request")
            session.refresh(job)
            return job
    session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status == RUNNING)
        .values(cancel_requested=True)
        .execution_options(synchronize_session=False)
    )
    session.refresh(job)
    return job


# The domains above this one say whether they still need a job (a registered model version is
# served from it) and why; create_app registers them.
_in_use = InUseChecks()


def register_in_use_check(name: str, check: InUseCheck) -> None:
    """Make job deletion ask `check`, which returns why the job is still needed or None."""
    _in_use.register(name, check)


def delete_job(session: Session, *, tenant_id: str, job_id: uuid.UUID) -> None:
    # Locked, so a registration racing this deletion either sees the job gone or is seen here.
    job = session.scalar(
        select(Job).where(Job.id == job_id, Job.tenant_id == tenant_id).with_for_update()
    )
    if job is None:
        raise NotFound(f"no job with id {job_id}")
    if job.status in ACTIVE:
        raise Conflict(f"job {job_id} is {job.status}; cancel it first, then delete it")
    reason = _in_use.reason(session, job.id)
    if reason is not None:
        raise Conflict(f"job {job_id} is {reason}; delete that first, then the job")
    blob_id = job.artifact_blob_id
    session.execute(delete(Job).where(Job.id == job.id))
    blobs.forget_blob(session, blob_id)


def queue_import(
    session: Session, settings: Settings, dataset: Dataset, params: dict[str, Any]
) -> uuid.UUID:
    """The job that imports a dataset: a worker claims it like any job (task `import`)."""
    check_tenant_limits(session, settings, tenant_id=dataset.tenant_id, new_jobs=1)
    job = Job(
        tenant_id=dataset.tenant_id,
        name=f"import {dataset.name}"[:255],
        dataset_id=dataset.id,
        status=QUEUED,
        spec={"import": params["request"]},
        trainer=IMPORT_TRAINER,
        params=params,
        task="import",
        task_reason=f"import of {len(params['parts'])} part(s) by {params['mode']}",
        max_seconds=settings.default_max_seconds,
        max_attempts=settings.max_attempts,
    )
    return queue.enqueue(session, job)


def dataset_in_use(session: Session, dataset_id: uuid.UUID) -> str | None:
    """Why a dataset cannot be deleted yet, as far as jobs are concerned."""
    active = session.scalar(
        select(exists().where(Job.dataset_id == dataset_id, Job.status.in_(ACTIVE)))
    )
    return "used by a queued or running job" if active else None


class StoredModel(Protocol):
    """A trained model's stored artifact: a job, or a registered version served from its job."""

    @property
    def id(self) -> uuid.UUID:
        """The job that trained it (models are cached by it)."""

    @property
    def artifact_blob_id(self) -> uuid.UUID | None: ...

    @property
    def artifact_sha256(self) -> str | None: ...

    @property
    def artifact_kind(self) -> str | None: ...


class ModelCache:
    """Loaded models by job id, so repeated predictions skip reading and unpacking artifacts;
    and exported ONNX bytes, so a model is converted once per process, not per download."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._items: OrderedDict[uuid.UUID, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._onnx: OrderedDict[uuid.UUID, tuple[bytes, str]] = OrderedDict()
        # One export at a time: it is CPU-bound, and a second request waits for the first's bytes.
        self._export_lock = threading.Lock()

    def onnx(self, db: Database, job: StoredModel) -> tuple[bytes, str]:
        """The job's model as ONNX, preprocessing included, and the sha256 of those bytes."""
        with self._lock:
            if job.id in self._onnx:
                self._onnx.move_to_end(job.id)
                return self._onnx[job.id]
        with self._export_lock:
            with self._lock:
                if job.id in self._onnx:
                    return self._onnx[job.id]
            entry = _export_onnx(self.get(db, job), job)
            with self._lock:
                self._onnx[job.id] = entry
                limit = db.settings.onnx_cache_bytes
                while self._onnx and sum(len(d) for d, _ in self._onnx.values()) > limit:
                    self._onnx.popitem(last=False)
        return entry

    def get(self, db: Database, job: StoredModel) -> Any:
        from service.training.artifacts import load_artifact
        from service.training.errors import ArtifactError

        with self._lock:
            if job.id in self._items:
                self._items.move_to_end(job.id)
                return self._items[job.id]
        if job.artifact_blob_id is None:
            raise Conflict(f"job {job.id} has no model artifact")
        data = blobs.read_blob(db, job.artifact_blob_id)
        try:
            model = load_artifact(data, sha256=job.artifact_sha256)
        except ArtifactError as exc:
            raise blobs.BlobIntegrityError(
                f"the model artifact of job {job.id} failed its integrity check and was not "
                f"loaded ({exc}); retrain the job"
            ) from exc
        with self._lock:
            self._items[job.id] = model
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return model


def _export_onnx(model: Any, job: StoredModel) -> tuple[bytes, str]:
    """Convert with the training core's exporter; a model it cannot express is a 422."""
    from service.training.artifacts import sha256_hex
    from service.training.onnx_export import OnnxExportError, export_onnx

    try:
        data = export_onnx(model, name=f"ridgeline-job-{job.id}")
    except OnnxExportError as exc:
        raise InvalidInput(
            f"the model of job {job.id} cannot be exported to ONNX: {exc}. Download the native "
            "artifact instead (format=native)",
            errors=[{"field": "format", "message": str(exc)}],
        ) from exc
    return data, sha256_hex(data)


#: Rows scored at a time when a whole dataset is scored (the memory bound of a stream).
SCORE_BATCH_ROWS = 16_384


def score_dataset(
    db: Database,
    cache: ModelCache,
    job: StoredModel,
    *,
    tenant_id: str,
    dataset_id: uuid.UUID,
    escape_formulas: bool,
) -> Iterator[export.Piece]:
    """A stored dataset's rows as CSV with the model's predictions, in bounded batches from its
    Parquet; the first batch is scored before this returns, so bad input is still a 4xx."""
    with db.transaction(write=False) as session:
        dataset = dataset_named(session, tenant_id=tenant_id, dataset_id=dataset_id)
        blob_id = require_stored(dataset)
    model = cache.get(db, job)
    parquet = export.open_stored(db, blob_id, SizeLimits.from_settings(db.settings))
    missing = [name for name in model.feature_schema if name not in parquet.schema_arrow.names]
    if missing:
        raise InvalidInput(
            f"dataset {dataset_id} lacks the feature columns {', '.join(map(repr, missing))} "
            "that the model was trained on",
            errors=[{"field": name, "message": "missing column"} for name in missing],
        )
    batches = export.bounded_batches(parquet, max_rows=SCORE_BATCH_ROWS)
    first = next(batches, None)
    head = _scored(
        model, pa.Table.from_batches([first]) if first else parquet.schema_arrow.empty_table()
    )

    def tables() -> Iterator[pa.Table]:
        yield head
        for batch in batches:
            yield _scored(model, pa.Table.from_batches([batch])).cast(head.schema)

    return export.csv_stream(tables(), head.schema, delimiter=",", formulas=escape_formulas)


def _scored(model: Any, table: pa.Table) -> pa.Table:
    """One batch with its columns, then `prediction` and one `proba_<label>` per class."""
    result = model.predict(table.select(list(model.feature_schema)))
    added: dict[str, pa.Array] = {}
    if result.classes is None:
        added["prediction"] = pa.array(result.predictions, pa.float64())
    else:
        added["prediction"] = pa.array(result.predictions, pa.array(result.classes).type)
        for key in (str(c) for c in result.classes):
            column = [row[key] for row in result.probabilities or []]
            added[f"proba_{key}"] = pa.array(column, pa.float64())
    # A dataset column named like an added one (a scored dataset scored again) is replaced.
    out = table.select([name for name in table.column_names if name not in added])
    for name, values in added.items():
        out = out.append_column(name, values)
    return out


def require_servable(job: Job) -> None:
    """A job whose model can be served: succeeded, with its artifact stored."""
    require_succeeded(job)
    if job.artifact_blob_id is None or job.artifact_sha256 is None:
        raise Conflict(f"job {job.id} has no stored artifact")


def require_succeeded(job: Job) -> None:
    if job.status != SUCCEEDED:
        raise Conflict(
            f"job {job.id} is {job.status}; predictions and artifacts exist only once it succeeded"
        )
