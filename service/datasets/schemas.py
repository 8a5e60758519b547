"""What the datasets API returns."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ColumnRead(BaseModel):
    name: str
    dtype: Literal["integer", "float", "boolean", "categorical"] = Field(
        description="integer and float are numeric; categorical holds text."
    )
    n_missing: int
    n_unique: int = Field(description="Distinct non-missing values; exact when n_unique_exact.")
    n_unique_exact: bool
    min: float | None = None
    max: float | None = None
    mean: float | None = None


class DatasetImport(BaseModel):
    """A dataset registered from where it lies, by copy (the default) or by reference."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"uri": "s3://lake/sales/2026/", "name": "sales", "format": "auto", "mode": "copy"}
            ]
        },
    )

    uri: str = Field(
        max_length=2048,
        description="s3://bucket/key (one object), s3://bucket/prefix/ (its parts), "
        "s3://bucket/prefix/*.parquet (a glob), or file:///path (a file, directory or glob), "
        "under the server's allowed prefixes and roots.",
    )
    name: str | None = Field(None, max_length=255, description="Defaults to the first part's name.")
    format: Literal["auto", "csv", "parquet"] = Field(
        "auto", description="auto: by the parts' extensions, else their first bytes."
    )
    mode: Literal["copy", "reference"] = Field(
        "copy",
        description="copy: store the data in Ridgeline's blob store. reference: compute schema "
        "and stats, keep each part's ETag, size and time, copy nothing; a job on data that "
        "changed since fails.",
    )


class DatasetRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    status: Literal["importing", "ready", "failed"] = Field(
        "ready", description="Imports start `importing`; uploads are `ready` at once."
    )
    error: str | None = Field(None, description="Why an import failed.")
    mode: Literal["upload", "copy", "reference"] = Field(
        "upload", description="How the data came: uploaded, or imported by copy or reference."
    )
    source_uri: str | None = Field(None, description="Where an import read the data.")
    uri: str | None = Field(
        None,
        description="Where other programs (pyarrow, Spark) read the data as Parquet: the "
        "dataset's folder in an s3 or file store, or the referenced source; null in the "
        "database store.",
    )
    import_job_id: uuid.UUID | None = Field(
        None, description="The import's job: progress and events at /v1/jobs/{id}/events."
    )
    format: Literal["csv", "parquet"] = Field(description="The format that was uploaded.")
    size_bytes: int = Field(description="Size of the uploaded file.")
    sha256: str = Field(description="sha256 of the uploaded file.")
    n_rows: int
    n_columns: int
    columns: list[ColumnRead]
    delimiter: str | None = Field(None, description="The CSV delimiter detected or given.")
    stored_bytes: int = Field(description="Size of the stored Parquet (zstd) copy.")
    created_at: datetime


class DatasetPreview(BaseModel):
    dataset_id: uuid.UUID
    columns: list[str]
    rows: list[dict[str, object]]
