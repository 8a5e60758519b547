"""The predict and artifact answers, shared by the routes that serve a job's model: by job id
(the jobs router) and by model name (the registry router). Request parsing and response
building only; the rules (which model, may it be served) stay with the services.
"""

from __future__ import annotations

import json
import unicodedata
import uuid
from pathlib import Path
from typing import Any

import anyio.to_thread
from fastapi import Request, Response
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from service import blobs
from service.db import Database
from service.deps import ingest_slots
from service.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from service.jobs.schemas import PredictRequest, PredictResponse
from service.jobs.service import ModelCache, StoredModel, score_dataset
from service.scratch import scratch_dir
from service.training.kinds import registry
from service.uploads import receive_upload

MAX_PREDICT_JSON_BYTES = 32 << 20

PREDICT_DESCRIPTION = (
    'Send JSON `{"rows": [...]}` or a CSV file (at most RIDGELINE_MAX_PREDICT_ROWS rows), or JSON '
    '`{"dataset_id": "..."}` to score a whole stored dataset: the answer is then a streamed CSV '
    "(text/csv) of the dataset's rows in order, each with `prediction` and, for classifiers, one "
    "`proba_<label>` column per class. Missing values are imputed as in training; an unseen "
    "category is encoded as none of the known ones."
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

PREDICT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}}
}

ARTIFACT_DESCRIPTION = (
    "`format=native` (the default): the model kind's own format ("
    + "; ".join(f"{k.name}: {k.artifact.description}" for k in registry.kinds())
    + "). `format=onnx`: one ONNX graph, preprocessing included, whose inputs are the raw feature "
    "columns ([N, 1] each: double, or string for categorical columns; NaN and the empty string "
    "mark missing values) and whose outputs are `label` and `probabilities` (classifiers) or "
    "`variable` (regressors); 422 if the model cannot be exported. The sha256 of the bytes sent "
    "is in the X-Artifact-SHA256 header."
)

ARTIFACT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/octet-stream": {}, "application/zip": {}}}
}


async def predict_rows(request: Request, db: Database) -> Any:
    """JSON records, a CSV file whose header names the columns, or a dataset id to score."""
    content_type = (request.headers.get("content-type") or "").lower()
    max_rows = db.settings.max_predict_rows
    if content_type.startswith("application/json"):
        return await _json_rows(request, max_rows)
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


async def _json_rows(request: Request, max_rows: int) -> Any:
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
        raise InvalidInput(f"{len(payload.rows)} rows is over the limit of {max_rows} per request")
    return [{_nfc(name): value for name, value in row.items()} for row in payload.rows]


def _read_csv_rows(path: Path, max_rows: int) -> Any:
    """The CSV's rows, types inferred over the file, once a streamed count kept to the limit."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

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
    import pyarrow as pa
    import pyarrow.csv as pa_csv

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


async def predict_answer(
    request: Request,
    db: Database,
    model: StoredModel,
    *,
    tenant_id: str,
    escape_formulas: bool = True,
    headers: dict[str, str] | None = None,
) -> Response:
    """Score the request's rows with the model (cached per process): JSON, or a streamed CSV."""
    rows = await predict_rows(request, db)
    cache: ModelCache = request.app.state.model_cache
    if isinstance(rows, uuid.UUID):
        dataset_id = rows
        stream = await anyio.to_thread.run_sync(
            lambda: score_dataset(
                db,
                cache,
                model,
                tenant_id=tenant_id,
                dataset_id=dataset_id,
                escape_formulas=escape_formulas,
            )
        )
        filename = f"job-{model.id}-{dataset_id}.csv"
        return StreamingResponse(
            stream,
            media_type="text/csv",
            headers={
                "Content-Disposition": f'attachment; filename="{filename}"',
                **(headers or {}),
            },
        )

    def run() -> bytes:
        result = cache.get(db, model).predict(rows)
        answer = PredictResponse(
            job_id=model.id,
            predictions=result.predictions,
            probabilities=result.probabilities,
            classes=result.classes,
        )
        return answer.model_dump_json().encode()

    body = await anyio.to_thread.run_sync(run)
    return Response(body, media_type="application/json", headers=headers)


def artifact_answer(
    cache: ModelCache,
    db: Database,
    model: StoredModel,
    *,
    format: str,
    filename: str,
    headers: dict[str, str] | None = None,
) -> Response:
    """The model's artifact (verified) or its ONNX export, named `filename` plus a suffix."""
    extra = headers or {}
    if format == "onnx":
        data, sha256 = cache.onnx(db, model)
        return Response(
            data,
            media_type="application/octet-stream",
            headers={
                "Content-Disposition": f'attachment; filename="{filename}.onnx"',
                "X-Artifact-SHA256": sha256,
                **extra,
            },
        )
    assert model.artifact_blob_id is not None and model.artifact_sha256 is not None
    stored = registry.artifact_format(model.artifact_kind or "")
    extension = stored.extension if stored else "bin"
    # Artifacts are small: read and verify the whole file before the first byte goes out.
    data = blobs.read_blob(db, model.artifact_blob_id)
    return Response(
        data,
        media_type=stored.media_type if stored else "application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}.{extension}"',
            "X-Artifact-SHA256": model.artifact_sha256,
            **extra,
        },
    )
