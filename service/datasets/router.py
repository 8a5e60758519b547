"""HTTP routes for datasets: parse, call the service, return."""

from __future__ import annotations

from typing import Annotated, Literal

import anyio
import anyio.to_thread
from fastapi import APIRouter, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from service.datasets import imports, service
from service.datasets.schemas import DatasetImport, DatasetPreview, DatasetRead
from service.db import Database
from service.deps import DatabaseDep, PrincipalDep, SessionDep
from service.ids import parse_id
from service.pagination import MAX_LIMIT, Page
from service.scratch import scratch_dir
from service.uploads import receive_upload

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        # The upload first: Swagger UI's "Try it out" shows the first media type.
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "A CSV (header row required) or Parquet file.",
                        },
                        "name": {
                            "type": "string",
                            "description": "Defaults to the file name.",
                            "example": "my-data",
                        },
                        "delimiter": {
                            "type": "string",
                            "description": "CSV delimiter (',', ';', '|', 'tab'); detected "
                            "when omitted.",
                            "example": ",",
                        },
                    },
                }
            },
            "application/json": {"schema": {"$ref": "#/components/schemas/DatasetImport"}},
        },
    }
}


def _ingest_slots(request: Request) -> anyio.CapacityLimiter:
    """Parsing and storing hold tens of MiB each: bound how many run at once per process."""
    state = request.app.state
    if getattr(state, "ingest_slots", None) is None:
        state.ingest_slots = anyio.CapacityLimiter(state.settings.max_concurrent_ingests)
    limiter: anyio.CapacityLimiter = state.ingest_slots
    return limiter


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetRead,
    summary="Upload a dataset, or import one from s3:// or file://",
    description="multipart/form-data: streams a CSV or Parquet file, infers column types over "
    "the whole file, validates it and stores it as Parquet (201); the dataset is visible only "
    "once fully stored. application/json (`DatasetImport`): registers data where it lies; a "
    "worker imports it (202 + Location), the dataset `importing`, then `ready` or `failed`.",
    openapi_extra=UPLOAD_BODY,
    responses={202: {"model": DatasetRead, "description": "Import queued."}},
)
async def upload_dataset(
    request: Request, principal: PrincipalDep, db: DatabaseDep, response: Response
) -> DatasetRead:
    settings = db.settings
    content_type = request.headers.get("content-type") or ""
    if content_type.lower().startswith("application/json"):
        return await _import_dataset(request, principal.tenant_id, db, response)
    upload = await receive_upload(
        request.stream(),
        content_type=content_type,
        content_length=request.headers.get("content-length"),
        max_bytes=settings.max_upload_bytes,
        tmp_dir=scratch_dir(request),
    )
    try:
        dataset = await anyio.to_thread.run_sync(
            lambda: service.create_dataset(
                db, tenant_id=principal.tenant_id, upload=upload, tmp_dir=scratch_dir(request)
            ),
            limiter=_ingest_slots(request),
        )
    finally:
        upload.discard()
    response.headers["Location"] = f"/v1/datasets/{dataset.id}"
    return DatasetRead.model_validate(dataset)


async def _import_dataset(
    request: Request, tenant_id: str, db: Database, response: Response
) -> DatasetRead:
    try:
        body = DatasetImport.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None

    def register() -> DatasetRead:
        source = imports.resolve(db.settings, uri=body.uri, format=body.format)
        with db.transaction() as session:
            dataset = service.create_import(
                session, settings=db.settings, tenant_id=tenant_id, body=body, source=source
            )
            return DatasetRead.model_validate(dataset)

    dataset = await anyio.to_thread.run_sync(register)
    response.status_code = status.HTTP_202_ACCEPTED
    response.headers["Location"] = f"/v1/datasets/{dataset.id}"
    return dataset


@router.get("", response_model=Page[DatasetRead], summary="List datasets, newest first")
def list_datasets(
    session: SessionDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    cursor: str | None = None,
) -> Page[DatasetRead]:
    items, next_cursor = service.list_datasets(
        session, tenant_id=principal.tenant_id, limit=limit, cursor=cursor
    )
    return Page[DatasetRead](
        items=[DatasetRead.model_validate(d) for d in items], next_cursor=next_cursor
    )


@router.get("/{dataset_id}", response_model=DatasetRead, summary="Get a dataset's schema and stats")
def get_dataset(dataset_id: str, session: SessionDep, principal: PrincipalDep) -> DatasetRead:
    dataset = service.get_dataset(
        session, tenant_id=principal.tenant_id, dataset_id=parse_id(dataset_id, "dataset")
    )
    return DatasetRead.model_validate(dataset)


@router.get(
    "/{dataset_id}/preview", response_model=DatasetPreview, summary="The first rows as JSON records"
)
def preview_dataset(
    dataset_id: str,
    session: SessionDep,
    db: DatabaseDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> DatasetPreview:
    dataset = service.get_dataset(
        session, tenant_id=principal.tenant_id, dataset_id=parse_id(dataset_id, "dataset")
    )
    rows = service.preview_rows(db, dataset, limit=limit)
    return DatasetPreview(
        dataset_id=dataset.id, columns=[c["name"] for c in dataset.columns], rows=rows
    )


@router.get(
    "/{dataset_id}/download",
    summary="Download the data as CSV or Parquet (streamed)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}, "application/vnd.apache.parquet": {}}}},
)
def download_dataset(
    dataset_id: str,
    session: SessionDep,
    db: DatabaseDep,
    principal: PrincipalDep,
    format: Literal["csv", "parquet"] = "csv",
) -> StreamingResponse:
    dataset = service.get_dataset(
        session, tenant_id=principal.tenant_id, dataset_id=parse_id(dataset_id, "dataset")
    )
    if format == "parquet":
        body, media_type = service.iter_parquet(db, dataset), "application/vnd.apache.parquet"
    else:
        body, media_type = service.iter_csv(db, dataset), "text/csv; charset=utf-8"
    filename = f"dataset-{dataset.id}.{format}"
    return StreamingResponse(
        body,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.delete("/{dataset_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a dataset")
def delete_dataset(dataset_id: str, session: SessionDep, principal: PrincipalDep) -> Response:
    service.delete_dataset(
        session, tenant_id=principal.tenant_id, dataset_id=parse_id(dataset_id, "dataset")
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
