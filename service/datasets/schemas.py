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


class DatasetRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
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
