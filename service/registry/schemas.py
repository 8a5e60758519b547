"""What the registered-models API accepts and returns."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from service.jobs.schemas import ArtifactInfo
from service.registry.models import ModelAlias, ModelAliasEvent, ModelVersion, RegisteredModel
from service.tags import Tags

MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
ALIAS_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"

ModelName = Annotated[str, StringConstraints(pattern=MODEL_NAME_PATTERN)]
Description = Annotated[str, StringConstraints(max_length=5000)]


class ModelCreate(BaseModel):
    """A name other services will call, unique within the tenant."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "cancer",
                    "description": "Malignancy from the breast cancer table.",
                    "tags": {"team": "oncology"},
                }
            ]
        },
    )

    name: ModelName = Field(
        description="1-128 letters, digits, '_', '.' or '-', starting with a letter or digit."
    )
    description: Description | None = None
    tags: Tags = Field(default_factory=dict)


class VersionCreate(BaseModel):
    """Register a succeeded job of this tenant as the model's next version."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"job_id": "00000000-0000-0000-0000-000000000000", "description": "L1, 0.05"}
            ]
        },
    )

    job_id: uuid.UUID = Field(description="A succeeded job (GET /v1/jobs/{id}).")
    description: Description | None = None


class AliasUpdate(BaseModel):
    """Point the alias at a version (created if new; moved atomically if not)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"version": 2}]})

    version: int = Field(ge=1, le=2**31 - 1, description="An existing version of the model.")


class DatasetRecord(BaseModel):
    """The dataset a version was trained on, as it was when the version was registered."""

    id: uuid.UUID | None = None
    name: str | None = None
    sha256: str | None = None
    n_rows: int | None = None
    n_columns: int | None = None


class ModelRead(BaseModel):
    name: str
    description: str | None
    tags: dict[str, str]
    latest_version: int | None = Field(description="The highest version that exists, if any.")
    aliases: dict[str, int] = Field(description="Each alias and the version it points at.")
    created_at: datetime
    updated_at: datetime


class ModelVersionRead(BaseModel):
    model: str
    version: int
    job_id: uuid.UUID
    description: str | None
    aliases: list[str] = Field(description="The aliases that point at this version.")
    artifact: ArtifactInfo
    dataset: DatasetRecord | None = Field(description="Null if the job's dataset was deleted.")
    task: str
    spec: dict[str, Any]
    native_params: dict[str, Any] | None
    metrics: dict[str, Any] | None = Field(
        description="The job's summary: final metrics, generalization gap, weights, diagnosis."
    )
    library_versions: dict[str, Any] | None
    card_url: str
    created_by: str = Field(description="The API key that registered it.")
    created_at: datetime


class AliasRead(BaseModel):
    alias: str
    version: int
    updated_at: datetime
    updated_by: str = Field(description="The API key that last moved it.")


class AliasEventRead(BaseModel):
    alias: str
    from_version: int | None = Field(description="Null when the alias was created.")
    to_version: int | None = Field(description="Null when the alias was removed.")
    by: str = Field(description="The API key that moved it.")
    at: datetime


class AliasesRead(BaseModel):
    model: str
    aliases: list[AliasRead]
    history: list[AliasEventRead] = Field(description="Every move, newest first.")


def model_read(model: RegisteredModel, latest: int | None, aliases: dict[str, int]) -> ModelRead:
    return ModelRead(
        name=model.name,
        description=model.description,
        tags=model.tags or {},
        latest_version=latest,
        aliases=aliases,
        created_at=model.created_at,
        updated_at=model.updated_at,
    )


def version_path(model: str, version: int) -> str:
    return f"/v1/models/{model}/versions/{version}"


def version_read(model: str, version: ModelVersion, aliases: list[str]) -> ModelVersionRead:
    path = version_path(model, version.version)
    return ModelVersionRead(
        model=model,
        version=version.version,
        job_id=version.job_id,
        description=version.description,
        aliases=aliases,
        artifact=ArtifactInfo(
            kind=version.artifact_kind, sha256=version.artifact_sha256, url=f"{path}/artifact"
        ),
        dataset=DatasetRecord.model_validate(version.dataset) if version.dataset else None,
        task=version.task,
        spec=version.spec,
        native_params=version.native_params,
        metrics=version.metrics,
        library_versions=version.library_versions,
        card_url=f"{path}/card",
        created_by=version.created_by,
        created_at=version.created_at,
    )


def aliases_read(
    model: str, aliases: list[ModelAlias], history: list[ModelAliasEvent]
) -> AliasesRead:
    return AliasesRead(
        model=model,
        aliases=[alias_read(a) for a in aliases],
        history=[
            AliasEventRead(
                alias=e.alias,
                from_version=e.from_version,
                to_version=e.to_version,
                by=e.key_name,
                at=e.created_at,
            )
            for e in history
        ],
    )


def alias_read(alias: ModelAlias) -> AliasRead:
    return AliasRead(
        alias=alias.alias,
        version=alias.version,
        updated_at=alias.updated_at,
        updated_by=alias.updated_by,
    )
