"""The rules of datasets: ingest, store, list, read back, delete — always within one tenant."""

from __future__ import annotations

import math
import tempfile
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, cast

import pyarrow as pa
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service import blobs
from service.config import Settings
from service.datasets import export
from service.datasets.growing import GrowingFile
from service.datasets.imports import Source
from service.datasets.ingest import IngestResult, SizeLimits
from service.datasets.isolated import ingest_in_child
from service.datasets.models import FAILED, IMPORTING, READY, Dataset
from service.datasets.schemas import DatasetImport
from service.db import Database, new_id
from service.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge
from service.hooks import InUseCheck, InUseChecks
from service.pagination import page_of, paginate
from service.uploads import ReceivedUpload

MAX_NAME = 255
PREVIEW_CELL_CHARS = 4096
PREVIEW_BYTES = 8 << 20
#: The internal trainer that runs an import in a worker's child.
IMPORT_TRAINER = "import"


def _clean_name(name: str | None, filename: str | None) -> str:
    chosen = (name or "").strip() or Path(filename or "").name.strip() or "dataset"
    if len(chosen) > MAX_NAME:
        raise InvalidInput(
            f"name is {len(chosen)} characters; use at most {MAX_NAME}",
            errors=[{"field": "name", "message": "too long"}],
        )
    return chosen


def _clean_delimiter(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    named = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
    delimiter = named.get(value.lower(), value)
    if len(delimiter) != 1 or delimiter in '\r\n"':
        raise InvalidInput(
            f"delimiter {value!r} must be one character such as ',', ';', '|' or 'tab'",
            errors=[{"field": "delimiter", "message": "not a single character"}],
        )
    return delimiter


def create_dataset(
    db: Database, *, tenant_id: str, upload: ReceivedUpload, tmp_dir: Path | None
) -> Dataset:
    """Validate and convert the upload, store its Parquet in the blob store, then make the row
    visible.

    Runs in a worker thread; it commits in short transactions of its own (the blob store's
    rule), and the dataset row appears only in the last one, beside the blob turning complete.
    """
    name = _clean_name(upload.fields.get("name"), upload.filename)
    delimiter = _clean_delimiter(upload.fields.get("delimiter"))
    dataset_id = new_id()
    with tempfile.TemporaryDirectory(prefix="ridgeline-ingest-", dir=tmp_dir) as work:
        result, blob = _ingest_and_store(
            db,
            upload,
            Path(work) / "data.parquet",
            tenant_id=tenant_id,
            key=blobs.dataset_key(tenant_id, dataset_id),
            delimiter=delimiter,
        )
    try:
        with db.transaction() as session:
            blobs.mark_complete(session, blob.id)
            dataset = Dataset(
                id=dataset_id,
                tenant_id=tenant_id,
                name=name,
                format=result.format,
                size_bytes=upload.size,
                sha256=upload.sha256,
                n_rows=result.n_rows,
                n_columns=result.n_columns,
                columns=[column.to_dict() for column in result.columns],
                delimiter=result.delimiter,
                blob_id=blob.id,
                stored_bytes=blob.size_bytes,
            )
            session.add(dataset)
            session.flush()
            session.refresh(dataset)
        return dataset
    except BaseException:
        blobs.delete_blob(db, blob.id)
        raise


def _ingest_and_store(
    db: Database,
    upload: ReceivedUpload,
    parquet_path: Path,
    *,
    tenant_id: str,
    key: str,
    delimiter: str | None,
) -> tuple[IngestResult, blobs.Blob]:
    """Convert the upload in the child while its Parquet streams to the blob store.

    Storing after the child exits added the whole write to every upload (a second or more on
    s3); a file a later pass rewrote is stored again whole. The quota counts the stored bytes,
    so it is checked once they are known.
    """
    settings = db.settings
    with ThreadPoolExecutor(1, thread_name_prefix="ingest") as pool:
        converting = pool.submit(
            ingest_in_child,
            upload.path,
            parquet_path,
            memory_limit_mb=settings.ingest_memory_mb,
            filename=upload.filename,
            delimiter=delimiter,
            max_columns=settings.max_columns,
            max_rows=settings.max_rows,
            unique_cap=settings.n_unique_cap,
            sizes=SizeLimits.from_settings(settings),
        )
        with GrowingFile(parquet_path, converting) as growing:
            try:
                blob = blobs.write_blob(db, cast("BinaryIO", growing), tenant_id=tenant_id, key=key)
            except BaseException:
                converting.result()  # a bad file's own error before the store's
                raise
            whole = growing.complete()
    try:
        result = converting.result()
        if not whole:
            blobs.delete_blob(db, blob.id)
            blob = blobs.write_blob(db, parquet_path, tenant_id=tenant_id, key=key)
        check_quota(db, tenant_id=tenant_id, adding=blob.size_bytes, stored=blob.id)
    except BaseException:
        blobs.delete_blob(db, blob.id)
        raise
    return result, blob


ImportQueue = Callable[[Session, Settings, Dataset, dict[str, Any]], uuid.UUID]

# The jobs domain queues an import as a job; create_app registers how, so this domain
# imports nothing above it.
_import_queue: list[ImportQueue] = []


def register_import_queue(queue: ImportQueue) -> None:
    """Make imports go through `queue`, which adds the job that runs one and returns its id."""
    _import_queue[:] = [queue]


def create_import(
    session: Session, *, settings: Settings, tenant_id: str, body: DatasetImport, source: Source
) -> Dataset:
    """An `importing` dataset and the import job a worker claims like any other."""
    if not _import_queue:
        raise RuntimeError("no import queue registered (create_app registers the jobs domain's)")
    name = _clean_name(body.name, source.parts[0].key.rsplit("/", 1)[-1])
    dataset = Dataset(
        tenant_id=tenant_id,
        name=name,
        format=source.format,
        size_bytes=sum(p.size for p in source.parts),
        sha256="",
        n_rows=0,
        n_columns=0,
        columns=[],
        stored_bytes=0,
        status=IMPORTING,
        mode=body.mode,
        source_uri=body.uri,
    )
    session.add(dataset)
    session.flush()
    params = {
        "root": source.root,
        "format": source.format,
        "mode": body.mode,
        "parts": [p.to_dict() for p in source.parts],
        "request": body.model_dump(mode="json"),
    }
    dataset.import_job_id = _import_queue[0](session, settings, dataset, params)
    return dataset


def finish_import(
    session: Session, dataset_id: uuid.UUID, result: dict[str, Any], blob: blobs.Blob | None
) -> None:
    """The import's outcome on its dataset row, in the transaction that ends the job."""
    dataset = session.get_one(Dataset, dataset_id)
    ingested = result["ingest"]
    dataset.status = READY
    dataset.format = ingested["format"]
    dataset.sha256 = result["sha256"]
    dataset.size_bytes = result["size_bytes"]
    dataset.n_rows = ingested["n_rows"]
    dataset.n_columns = ingested["n_columns"]
    dataset.columns = ingested["columns"]
    dataset.delimiter = ingested["delimiter"]
    if blob is not None:
        blobs.mark_complete(session, blob.id)
        dataset.blob_id, dataset.stored_bytes = blob.id, blob.size_bytes
    else:
        dataset.parts = result["parts"]


def fail_import(session: Session, dataset_id: uuid.UUID, error: str | None) -> None:
    dataset = session.get(Dataset, dataset_id)
    if dataset is not None and dataset.status == IMPORTING:
        dataset.status, dataset.error = FAILED, error


def require_ready(dataset: Dataset) -> None:
    """Only a ready dataset can be read or trained on."""
    if dataset.status != READY:
        reason = f": {dataset.error}" if dataset.error else ""
        raise Conflict(
            f"dataset {dataset.id} is {dataset.status}{reason}; wait for the import to end, "
            "or register the data again"
        )


def require_stored(dataset: Dataset) -> uuid.UUID:
    """The blob of a dataset Ridgeline stores; data by reference is read where it lies."""
    require_ready(dataset)
    if dataset.blob_id is None:
        raise Conflict(
            f"dataset {dataset.id} is registered by reference and is read where it lies "
            f"({dataset.uri}); register it with mode 'copy' to preview or download it here"
        )
    return dataset.blob_id


def check_quota(
    db: Database, *, tenant_id: str, adding: int, stored: uuid.UUID | None = None
) -> None:
    """Refuse data that would take a tenant past its stored-bytes quota (0: no quota); `stored`
    names the blob of `adding` when it is already written."""
    quota = db.settings.tenant_quota_bytes
    if not quota:
        return
    with db.transaction(write=False) as session:
        used = session.scalar(
            select(func.coalesce(func.sum(blobs.Blob.size_bytes), 0)).where(
                blobs.Blob.tenant_id == tenant_id, blobs.Blob.id != stored
            )
        )
    if (used or 0) + adding > quota:
        raise PayloadTooLarge(
            f"storing this dataset ({adding} bytes as Parquet) would take the tenant to "
            f"{(used or 0) + adding} bytes, over its quota of {quota}; delete datasets or jobs "
            "you no longer need"
        )


def get_dataset(session: Session, *, tenant_id: str, dataset_id: uuid.UUID) -> Dataset:
    dataset = session.scalar(
        select(Dataset).where(Dataset.id == dataset_id, Dataset.tenant_id == tenant_id)
    )
    if dataset is None:
        raise NotFound(f"no dataset with id {dataset_id}")
    return dataset


def dataset_named(session: Session, *, tenant_id: str, dataset_id: uuid.UUID) -> Dataset:
    """The dataset a request body names; unknown is a 422 on the field, not a 404 of the URL."""
    dataset = session.scalar(
        select(Dataset).where(Dataset.id == dataset_id, Dataset.tenant_id == tenant_id)
    )
    if dataset is None:
        raise InvalidInput(
            f"no dataset with id {dataset_id}; upload one with POST /v1/datasets",
            errors=[{"field": "dataset_id", "message": "unknown dataset"}],
        )
    return dataset


def dataset_to_train_on(session: Session, *, tenant_id: str, dataset_id: uuid.UUID) -> Dataset:
    """The dataset a job or sweep names: it must be ready."""
    dataset = dataset_named(session, tenant_id=tenant_id, dataset_id=dataset_id)
    if dataset.status != READY:
        raise InvalidInput(
            f"dataset {dataset_id} is {dataset.status}"
            f"{': ' + dataset.error if dataset.error else ''}; train on a ready dataset",
            errors=[{"field": "dataset_id", "message": f"dataset {dataset.status}"}],
        )
    return dataset


def list_datasets(
    session: Session, *, tenant_id: str, limit: int, cursor: str | None
) -> tuple[list[Dataset], str | None]:
    query = paginate(
        select(Dataset).where(Dataset.tenant_id == tenant_id),
        created_at=Dataset.created_at,
        row_id=Dataset.id,
        limit=limit,
        cursor=cursor,
    )
    return page_of(session.scalars(query).all(), limit)


# The domains above this one say whether they still need a dataset (jobs: a queued or running job
# trains on it) and why; create_app registers them.
_in_use = InUseChecks()


def register_in_use_check(name: str, check: InUseCheck) -> None:
    """Make deletion ask `check`, which returns why the dataset is still needed or None."""
    _in_use.register(name, check)


def delete_dataset(session: Session, *, tenant_id: str, dataset_id: uuid.UUID) -> None:
    dataset = get_dataset(session, tenant_id=tenant_id, dataset_id=dataset_id)
    reason = _in_use.reason(session, dataset.id)
    if reason is not None:
        raise Conflict(f"dataset {dataset_id} is {reason}; cancel or wait for it first")
    blob_id = dataset.blob_id
    session.delete(dataset)
    session.flush()
    # Database chunks go in this transaction; s3 and file objects once it commits. Data
    # registered by reference is never Ridgeline's to delete.
    blobs.forget_blob(session, blob_id)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def preview_rows(db: Database, dataset: Dataset, *, limit: int) -> list[dict[str, Any]]:
    """The first rows, long text cut short, read lazily from the first row group(s) only."""
    parquet = export.open_stored(db, require_stored(dataset), SizeLimits.from_settings(db.settings))
    rows: list[dict[str, Any]] = []
    budget = PREVIEW_BYTES
    for batch in export.bounded_batches(parquet):
        part = export.shorten_text(batch.slice(0, limit - len(rows)), PREVIEW_CELL_CHARS)
        if part.nbytes > budget:  # a preview of wide or long rows stops early, one row at least
            part = part.slice(0, max(0 if rows else 1, part.num_rows * budget // part.nbytes))
            limit = len(rows) + part.num_rows
        budget -= part.nbytes
        rows.extend(part.to_pylist())
        if len(rows) >= limit:
            break
    return [{k: _json_safe(v) for k, v in row.items()} for row in rows]


def iter_parquet(db: Database, dataset: Dataset) -> Iterator[bytes]:
    return blobs.iter_blob(db, require_stored(dataset))


def iter_csv(db: Database, dataset: Dataset, *, escape_formulas: bool) -> Iterator[export.Piece]:
    """The stored Parquet back as CSV, in bounded batches, never holding the whole table."""
    parquet = export.open_stored(db, require_stored(dataset), SizeLimits.from_settings(db.settings))
    tables = (pa.Table.from_batches([batch]) for batch in export.bounded_batches(parquet))
    return export.csv_stream(
        tables,
        parquet.schema_arrow,
        delimiter=dataset.delimiter or ",",
        formulas=escape_formulas,
    )
