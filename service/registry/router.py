"""HTTP routes for registered models: parse, call the service, return; predictions and
artifacts by name go through the same answers as a job's (service/jobs/serving.py)."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Literal

import anyio.to_thread
from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.responses import PlainTextResponse, StreamingResponse
from sqlalchemy.orm import Session

from service.db import Database
from service.deps import DatabaseDep, PrincipalDep, SessionDep, TagFiltersDep
from service.jobs import serving
from service.jobs.schemas import PredictResponse
from service.pagination import MAX_LIMIT, Page
from service.registry import service
from service.registry.cache import ServedVersions
from service.registry.schemas import (
    AliasesRead,
    AliasRead,
    AliasUpdate,
    ModelCreate,
    ModelRead,
    ModelVersionRead,
    VersionCreate,
    alias_read,
    aliases_read,
    version_read,
)

router = APIRouter(prefix="/v1/models", tags=["models"])

VersionNumber = Annotated[int, Path(ge=1, le=2**31 - 1, description="The version's number.")]
Format = Annotated[
    Literal["native", "onnx"], Query(description="native (the kind's format) or onnx.")
]
MODEL_VERSION_HEADER = "X-Model-Version"
VERSION_HEADER_DOC = {
    MODEL_VERSION_HEADER: {
        "description": "The version that answered.",
        "schema": {"type": "integer"},
    }
}


def _model_read(session: Session, principal: PrincipalDep, name: str) -> ModelRead:
    model = service.get_model(session, tenant_id=principal.tenant_id, name=name)
    return service.read_models(session, [model])[0]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ModelRead,
    summary="Create a registered model",
    description="A name, unique in your tenant, that other services call; its versions come "
    "from succeeded jobs (POST /v1/models/{name}/versions). 409 if the name is taken.",
)
def create_model(
    body: ModelCreate, session: SessionDep, principal: PrincipalDep, response: Response
) -> ModelRead:
    model = service.create_model(session, tenant_id=principal.tenant_id, body=body)
    response.headers["Location"] = f"/v1/models/{model.name}"
    return service.read_models(session, [model])[0]


@router.get("", response_model=Page[ModelRead], summary="List registered models, newest first")
def list_models(
    session: SessionDep,
    principal: PrincipalDep,
    tags: TagFiltersDep,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    cursor: str | None = None,
) -> Page[ModelRead]:
    items, next_cursor = service.list_models(
        session, tenant_id=principal.tenant_id, limit=limit, cursor=cursor, tags=tags
    )
    return Page[ModelRead](items=items, next_cursor=next_cursor)


# Before GET /{name}, which would otherwise take "name@alias" for a name.
@router.post(
    "/{name}@{alias}/predict",
    response_model=PredictResponse,
    summary="Predict with the version an alias points at",
    description="The same bodies and answers as POST /v1/jobs/{job_id}/predict, from the "
    "version `alias` points at when the request arrives; `X-Model-Version` says which. "
    + serving.PREDICT_DESCRIPTION,
    openapi_extra=serving.PREDICT_BODY,
    responses={200: {**serving.PREDICT_RESPONSES[200], "headers": VERSION_HEADER_DOC}},
)
async def predict_by_alias(
    name: str, alias: str, request: Request, db: DatabaseDep, principal: PrincipalDep
) -> Response:
    return await _predict(request, db, principal, name, alias)


@router.get(
    "/{name}@{alias}/artifact",
    summary="Download the artifact of the version an alias points at",
    description=serving.ARTIFACT_DESCRIPTION + " `X-Model-Version` says which version it is.",
    response_class=StreamingResponse,
    responses={200: {**serving.ARTIFACT_RESPONSES[200], "headers": VERSION_HEADER_DOC}},
)
async def artifact_by_alias(
    name: str,
    alias: str,
    request: Request,
    db: DatabaseDep,
    principal: PrincipalDep,
    format: Format = "native",
) -> Response:
    served = await _served(request, db, principal, name, alias)
    return await _artifact(request, db, served, format)


@router.get("/{name}", response_model=ModelRead, summary="Get a registered model")
def get_model(name: str, session: SessionDep, principal: PrincipalDep) -> ModelRead:
    return _model_read(session, principal, name)


@router.delete(
    "/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a registered model that has no versions",
    description="409 while it has versions: delete those first.",
)
def delete_model(name: str, session: SessionDep, principal: PrincipalDep) -> Response:
    service.delete_model(session, tenant_id=principal.tenant_id, name=name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{name}/versions",
    status_code=status.HTTP_201_CREATED,
    response_model=ModelVersionRead,
    summary="Register a succeeded job as the model's next version",
    description="Versions are numbered 1, 2, … and never reused. Each records the job, its "
    "artifact, the dataset's sha256, the spec, the metrics summary and the library versions. "
    "422 for a job not in your tenant, 409 for one that has not succeeded.",
)
def register_version(
    name: str,
    body: VersionCreate,
    session: SessionDep,
    principal: PrincipalDep,
    response: Response,
) -> ModelVersionRead:
    version = service.register_version(
        session, tenant_id=principal.tenant_id, name=name, body=body, key_name=principal.key_name
    )
    response.headers["Location"] = f"/v1/models/{name}/versions/{version.version}"
    return version_read(name, version, [])


@router.get(
    "/{name}/versions",
    response_model=Page[ModelVersionRead],
    summary="List a model's versions, newest first",
)
def list_versions(
    name: str,
    session: SessionDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    cursor: str | None = None,
) -> Page[ModelVersionRead]:
    model, items, next_cursor = service.list_versions(
        session, tenant_id=principal.tenant_id, name=name, limit=limit, cursor=cursor
    )
    aliases = service.aliases_by_version(session, model.id)
    return Page[ModelVersionRead](
        items=[version_read(model.name, v, aliases.get(v.version, [])) for v in items],
        next_cursor=next_cursor,
    )


@router.get(
    "/{name}/versions/{version}", response_model=ModelVersionRead, summary="Get a model version"
)
def get_version(
    name: str, version: VersionNumber, session: SessionDep, principal: PrincipalDep
) -> ModelVersionRead:
    model, found = service.get_version(
        session, tenant_id=principal.tenant_id, name=name, version=version
    )
    aliases = service.aliases_by_version(session, model.id).get(version, [])
    return version_read(model.name, found, aliases)


@router.delete(
    "/{name}/versions/{version}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a version no alias points at",
    description="409, naming the alias, while an alias points at it. Its job may be deleted "
    "afterwards.",
)
def delete_version(
    name: str, version: VersionNumber, session: SessionDep, principal: PrincipalDep
) -> Response:
    service.delete_version(session, tenant_id=principal.tenant_id, name=name, version=version)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{name}/versions/{version}/predict",
    response_model=PredictResponse,
    summary="Predict with a version",
    description="The same bodies and answers as POST /v1/jobs/{job_id}/predict, with "
    "`X-Model-Version`. " + serving.PREDICT_DESCRIPTION,
    openapi_extra=serving.PREDICT_BODY,
    responses={200: {**serving.PREDICT_RESPONSES[200], "headers": VERSION_HEADER_DOC}},
)
async def predict_by_version(
    name: str,
    version: VersionNumber,
    request: Request,
    db: DatabaseDep,
    principal: PrincipalDep,
) -> Response:
    return await _predict(request, db, principal, name, version)


@router.get(
    "/{name}/versions/{version}/artifact",
    summary="Download a version's artifact",
    description=serving.ARTIFACT_DESCRIPTION,
    response_class=StreamingResponse,
    responses={200: {**serving.ARTIFACT_RESPONSES[200], "headers": VERSION_HEADER_DOC}},
)
async def artifact_by_version(
    name: str,
    version: VersionNumber,
    request: Request,
    db: DatabaseDep,
    principal: PrincipalDep,
    format: Format = "native",
) -> Response:
    served = await _served(request, db, principal, name, version)
    return await _artifact(request, db, served, format)


@router.get(
    "/{name}/versions/{version}/card",
    summary="A version's model card (Markdown)",
    description="Its data (name, sha256, rows, columns), spec and native parameters, metrics "
    "with the gap and the diagnosis, largest coefficients, links to its training curves, "
    "library versions, and a Python snippet that downloads and loads it as printed.",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/markdown": {"schema": {"type": "string"}}}}},
)
def model_card(
    name: str, version: VersionNumber, session: SessionDep, principal: PrincipalDep
) -> Response:
    card = service.version_card(session, tenant_id=principal.tenant_id, name=name, version=version)
    return Response(card, media_type="text/markdown; charset=utf-8")


@router.put(
    "/{name}/aliases/{alias}",
    response_model=AliasRead,
    summary="Point an alias at a version",
    description="Creates the alias or moves it, atomically: from the commit on, predictions by "
    "`name@alias` on every API process get the new version (each process drops its cached "
    "alias when told; at most RIDGELINE_ALIAS_CACHE_SECONDS otherwise). The move is recorded "
    "(from, to, when, which key).",
)
def set_alias(
    name: str, alias: str, body: AliasUpdate, session: SessionDep, principal: PrincipalDep
) -> AliasRead:
    moved = service.set_alias(
        session,
        tenant_id=principal.tenant_id,
        name=name,
        alias=alias,
        version=body.version,
        key_name=principal.key_name,
    )
    return alias_read(moved)


@router.delete(
    "/{name}/aliases/{alias}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove an alias",
    description="Recorded in the history; predictions by `name@alias` answer 404 afterwards.",
)
def delete_alias(name: str, alias: str, session: SessionDep, principal: PrincipalDep) -> Response:
    service.delete_alias(
        session,
        tenant_id=principal.tenant_id,
        name=name,
        alias=alias,
        key_name=principal.key_name,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{name}/aliases",
    response_model=AliasesRead,
    summary="A model's aliases and their history",
    description=f"Each alias and its version; every move, newest first (the last "
    f"{service.HISTORY_LIMIT}).",
)
def list_aliases(name: str, session: SessionDep, principal: PrincipalDep) -> AliasesRead:
    aliases, history = service.aliases_and_history(
        session, tenant_id=principal.tenant_id, name=name
    )
    return aliases_read(name, aliases, history)


async def _served(
    request: Request, db: Database, principal: PrincipalDep, name: str, ref: str | int
) -> service.ServedVersion:
    """The version to serve, resolved once per request through the process's cache."""
    cache: ServedVersions = request.app.state.served_versions
    tenant_id = principal.tenant_id
    served = await cache.resolve(
        (tenant_id, name, ref),
        lambda: db.read(partial(service.resolve, tenant_id=tenant_id, name=name, ref=ref)),
    )
    if served is None:
        raise await db.read(partial(service.unresolved, tenant_id=tenant_id, name=name, ref=ref))
    return served


async def _predict(
    request: Request, db: Database, principal: PrincipalDep, name: str, ref: str | int
) -> Response:
    """Job predict's answer from the version `ref` names, with the version in a header."""
    served = await _served(request, db, principal, name, ref)
    return await serving.predict_answer(
        request,
        db,
        served,
        tenant_id=principal.tenant_id,
        headers={MODEL_VERSION_HEADER: str(served.version)},
    )


async def _artifact(
    request: Request, db: Database, served: service.ServedVersion, format: str
) -> Response:
    answer = partial(
        serving.artifact_answer,
        request.app.state.model_cache,
        db,
        served,
        format=format,
        filename=f"{served.model}-v{served.version}",
        headers={MODEL_VERSION_HEADER: str(served.version)},
    )
    return await anyio.to_thread.run_sync(answer)
