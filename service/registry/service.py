"""The rules of registered models: names, versions from succeeded jobs, aliases that move
atomically with their history, and resolving ``name@alias`` to the model to serve."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.datasets.models import Dataset
from service.db import utcnow
from service.errors import Conflict, InvalidInput, NotFound
from service.jobs.models import SUCCEEDED, Job, summary_of
from service.pagination import page_of, paginate
from service.registry.card import render_card
from service.registry.models import ModelAlias, ModelAliasEvent, ModelVersion, RegisteredModel
from service.registry.schemas import (
    ALIAS_PATTERN,
    MODEL_NAME_PATTERN,
    ModelCreate,
    ModelRead,
    VersionCreate,
    model_read,
)
from service.tags import where_tags
from service.training.results import JobMetrics
from service.watch import notify

#: Every API process LISTENs here (Postgres) and drops the aliases it cached on a NOTIFY.
NOTIFY_CHANNEL = "ridgeline_models"
HISTORY_LIMIT = 500

_NAME = re.compile(MODEL_NAME_PATTERN)
_ALIAS = re.compile(ALIAS_PATTERN)


def get_model(
    session: Session, *, tenant_id: str, name: str, lock: bool = False
) -> RegisteredModel:
    """The tenant's model of that name; `lock` holds its row (Postgres) until the commit, so
    version numbers and alias moves of one model happen one at a time."""
    model = None
    if _NAME.match(name):
        query = select(RegisteredModel).where(
            RegisteredModel.tenant_id == tenant_id, RegisteredModel.name == name
        )
        model = session.scalar(query.with_for_update() if lock else query)
    if model is None:
        raise NotFound(f"no model named {name!r}; create it with POST /v1/models")
    return model


def create_model(session: Session, *, tenant_id: str, body: ModelCreate) -> RegisteredModel:
    taken = select(
        exists().where(RegisteredModel.tenant_id == tenant_id, RegisteredModel.name == body.name)
    )
    conflict = Conflict(
        f"a model named {body.name!r} already exists; register a new version of it with "
        f"POST /v1/models/{body.name}/versions, or pick another name"
    )
    if session.scalar(taken):
        raise conflict
    model = RegisteredModel(
        tenant_id=tenant_id, name=body.name, description=body.description, tags=body.tags or None
    )
    session.add(model)
    try:
        session.flush()
    except IntegrityError as exc:  # created by a concurrent request since the check
        raise conflict from exc
    return model


def list_models(
    session: Session, *, tenant_id: str, limit: int, cursor: str | None, tags: dict[str, str]
) -> tuple[list[ModelRead], str | None]:
    query = where_tags(
        select(RegisteredModel).where(RegisteredModel.tenant_id == tenant_id),
        RegisteredModel.tags,
        tags,
    )
    query = paginate(
        query,
        created_at=RegisteredModel.created_at,
        row_id=RegisteredModel.id,
        limit=limit,
        cursor=cursor,
    )
    models, next_cursor = page_of(session.scalars(query).all(), limit)
    return read_models(session, models), next_cursor


def read_models(session: Session, models: list[RegisteredModel]) -> list[ModelRead]:
    """Models with their latest version and aliases, in two queries for the whole page."""
    ids = [m.id for m in models]
    latest: dict[uuid.UUID, int] = {}
    aliases: dict[uuid.UUID, dict[str, int]] = {i: {} for i in ids}
    if ids:
        rows = session.execute(
            select(ModelVersion.model_id, func.max(ModelVersion.version))
            .where(ModelVersion.model_id.in_(ids))
            .group_by(ModelVersion.model_id)
        )
        latest = {model_id: number for model_id, number in rows}
        for alias in session.scalars(
            select(ModelAlias).where(ModelAlias.model_id.in_(ids)).order_by(ModelAlias.alias)
        ):
            aliases[alias.model_id][alias.alias] = alias.version
    return [model_read(m, latest.get(m.id), aliases[m.id]) for m in models]


def delete_model(session: Session, *, tenant_id: str, name: str) -> None:
    """Only a model without versions goes (its alias history with it)."""
    model = get_model(session, tenant_id=tenant_id, name=name, lock=True)
    count = session.scalar(select(func.count()).where(ModelVersion.model_id == model.id)) or 0
    if count:
        raise Conflict(
            f"model {name!r} still has {count} version(s); delete them first "
            f"(DELETE /v1/models/{name}/versions/{{n}})"
        )
    session.execute(delete(RegisteredModel).where(RegisteredModel.id == model.id))
    notify(session, NOTIFY_CHANNEL)


def register_version(
    session: Session, *, tenant_id: str, name: str, body: VersionCreate, key_name: str
) -> ModelVersion:
    """The job's model as the next version, with what it was trained on frozen beside it."""
    model = get_model(session, tenant_id=tenant_id, name=name, lock=True)
    # Shared lock: a concurrent deletion of the job waits for this registration, then sees it.
    job = session.scalar(
        select(Job)
        .where(Job.id == body.job_id, Job.tenant_id == tenant_id)
        .with_for_update(read=True)
    )
    if job is None:
        raise InvalidInput(
            f"no job with id {body.job_id}; register one of your succeeded jobs",
            errors=[{"field": "job_id", "message": "unknown job"}],
        )
    if job.status != SUCCEEDED or job.artifact_sha256 is None or job.artifact_kind is None:
        raise Conflict(
            f"job {job.id} is {job.status}; only a succeeded job with a stored model can be "
            "registered (wait for it, or pick another)"
        )
    model.last_version += 1
    model.updated_at = utcnow()
    version = ModelVersion(
        model_id=model.id,
        version=model.last_version,
        job_id=job.id,
        description=body.description,
        artifact_sha256=job.artifact_sha256,
        artifact_kind=job.artifact_kind,
        dataset=_dataset_record(session, job),
        spec=job.spec,
        task=job.task,
        native_params=job.native_params,
        metrics=summary_of(job.metrics),
        library_versions=job.versions,
        created_by=key_name,
    )
    session.add(version)
    session.flush()
    return version


def _dataset_record(session: Session, job: Job) -> dict[str, Any] | None:
    """The job's dataset as it is now, and an example row of its features (numeric means)."""
    dataset = session.get(Dataset, job.dataset_id) if job.dataset_id is not None else None
    if dataset is None:
        return None
    target = job.spec.get("target")
    features = job.spec.get("features") or [
        c["name"] for c in dataset.columns if c["name"] != target
    ]
    means = {
        c["name"]: c.get("mean") for c in dataset.columns if c["dtype"] in ("integer", "float")
    }
    return {
        "id": str(dataset.id),
        "name": dataset.name,
        "sha256": dataset.sha256,
        "n_rows": dataset.n_rows,
        "n_columns": dataset.n_columns,
        "example": {name: _round(means.get(name)) for name in features},
    }


def _round(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.4g}")


def list_versions(
    session: Session, *, tenant_id: str, name: str, limit: int, cursor: str | None
) -> tuple[RegisteredModel, list[ModelVersion], str | None]:
    """Newest first."""
    model = get_model(session, tenant_id=tenant_id, name=name)
    query = paginate(
        select(ModelVersion).where(ModelVersion.model_id == model.id),
        created_at=ModelVersion.created_at,
        row_id=ModelVersion.id,
        limit=limit,
        cursor=cursor,
    )
    items, next_cursor = page_of(session.scalars(query).all(), limit)
    return model, items, next_cursor


def get_version(
    session: Session, *, tenant_id: str, name: str, version: int, lock: bool = False
) -> tuple[RegisteredModel, ModelVersion]:
    model = get_model(session, tenant_id=tenant_id, name=name, lock=lock)
    found = session.scalar(
        select(ModelVersion).where(
            ModelVersion.model_id == model.id, ModelVersion.version == version
        )
    )
    if found is None:
        raise NotFound(f"model {name!r} has no version {version}")
    return model, found


def aliases_by_version(session: Session, model_id: uuid.UUID) -> dict[int, list[str]]:
    by_version: dict[int, list[str]] = {}
    for alias in session.scalars(
        select(ModelAlias).where(ModelAlias.model_id == model_id).order_by(ModelAlias.alias)
    ):
        by_version.setdefault(alias.version, []).append(alias.alias)
    return by_version


def delete_version(session: Session, *, tenant_id: str, name: str, version: int) -> None:
    """A version no alias points at; its job may then be deleted too."""
    model, found = get_version(session, tenant_id=tenant_id, name=name, version=version, lock=True)
    pointing = aliases_by_version(session, model.id).get(version)
    if pointing:
        listed = ", ".join(repr(a) for a in pointing)
        raise Conflict(
            f"version {version} of model {name!r} is what alias {listed} points at; move the "
            f"alias (PUT /v1/models/{name}/aliases/{pointing[0]}) or delete it first"
        )
    session.execute(delete(ModelVersion).where(ModelVersion.id == found.id))
    notify(session, NOTIFY_CHANNEL)


def set_alias(
    session: Session, *, tenant_id: str, name: str, alias: str, version: int, key_name: str
) -> ModelAlias:
    """Point the alias at the version in one transaction, recording the move."""
    if not _ALIAS.match(alias):
        raise InvalidInput(
            f"alias {alias!r} must be 1-64 letters, digits, '_' or '-', starting with a letter",
            errors=[{"field": "alias", "message": "invalid alias name"}],
        )
    model = get_model(session, tenant_id=tenant_id, name=name, lock=True)
    target = select(
        exists().where(ModelVersion.model_id == model.id, ModelVersion.version == version)
    )
    if not session.scalar(target):
        raise InvalidInput(
            f"model {name!r} has no version {version}; register it first or pick an existing one",
            errors=[{"field": "version", "message": "no such version"}],
        )
    current = session.get(ModelAlias, (model.id, alias))
    if current is not None and current.version == version:
        return current
    now = utcnow()
    session.add(
        ModelAliasEvent(
            model_id=model.id,
            alias=alias,
            from_version=current.version if current is not None else None,
            to_version=version,
            key_name=key_name,
            created_at=now,
        )
    )
    if current is None:
        current = ModelAlias(model_id=model.id, alias=alias)
        session.add(current)
    current.version, current.updated_at, current.updated_by = version, now, key_name
    model.updated_at = now
    session.flush()
    notify(session, NOTIFY_CHANNEL)
    return current


def delete_alias(session: Session, *, tenant_id: str, name: str, alias: str, key_name: str) -> None:
    model = get_model(session, tenant_id=tenant_id, name=name, lock=True)
    current = session.get(ModelAlias, (model.id, alias)) if _ALIAS.match(alias) else None
    if current is None:
        raise NotFound(f"model {name!r} has no alias {alias!r}")
    session.add(
        ModelAliasEvent(
            model_id=model.id,
            alias=alias,
            from_version=current.version,
            to_version=None,
            key_name=key_name,
        )
    )
    session.delete(current)
    session.flush()
    notify(session, NOTIFY_CHANNEL)


def aliases_and_history(
    session: Session, *, tenant_id: str, name: str
) -> tuple[list[ModelAlias], list[ModelAliasEvent]]:
    model = get_model(session, tenant_id=tenant_id, name=name)
    aliases = session.scalars(
        select(ModelAlias).where(ModelAlias.model_id == model.id).order_by(ModelAlias.alias)
    )
    history = session.scalars(
        select(ModelAliasEvent)
        .where(ModelAliasEvent.model_id == model.id)
        .order_by(ModelAliasEvent.id.desc())
        .limit(HISTORY_LIMIT)
    )
    return list(aliases), list(history)


def version_card(session: Session, *, tenant_id: str, name: str, version: int) -> str:
    """The version's model card (Markdown), from what it froze and its job's full metrics."""
    model, found = get_version(session, tenant_id=tenant_id, name=name, version=version)
    stored = session.scalar(select(Job.metrics).where(Job.id == found.job_id))
    aliases = aliases_by_version(session, model.id).get(version, [])
    return render_card(model.name, found, JobMetrics.model_validate(stored or {}), aliases)


def job_in_use(session: Session, job_id: uuid.UUID) -> str | None:
    """Why a job cannot be deleted, as far as registered models are concerned."""
    row = session.execute(
        select(RegisteredModel.name, ModelVersion.version)
        .join(ModelVersion, ModelVersion.model_id == RegisteredModel.id)
        .where(ModelVersion.job_id == job_id)
        .order_by(RegisteredModel.name, ModelVersion.version)
        .limit(1)
    ).first()
    if row is None:
        return None
    return f"registered as version {row.version} of model {row.name!r}"


# -- serving by name ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServedVersion:
    """What predicting with a version needs: its job's artifact (the model cache's key)."""

    model: str
    version: int
    job_id: uuid.UUID
    artifact_blob_id: uuid.UUID | None
    artifact_sha256: str | None
    artifact_kind: str | None

    @property
    def id(self) -> uuid.UUID:
        """The job's id: loaded models are cached per job, so per version."""
        return self.job_id


_m, _v, _a, _j = (
    RegisteredModel.__table__,
    ModelVersion.__table__,
    ModelAlias.__table__,
    Job.__table__,
)
_SERVED = select(
    _v.c.version, _v.c.job_id, _j.c.artifact_blob_id, _j.c.artifact_sha256, _j.c.artifact_kind
)
_OF_MODEL = and_(_m.c.tenant_id == bindparam("tenant_id"), _m.c.name == bindparam("name"))
# Built once: a name@alias is resolved in one statement (an alias, its version and the job).
_BY_ALIAS = _SERVED.select_from(
    _m.join(_a, _a.c.model_id == _m.c.id)
    .join(_v, and_(_v.c.model_id == _m.c.id, _v.c.version == _a.c.version))
    .join(_j, _j.c.id == _v.c.job_id)
).where(_OF_MODEL, _a.c.alias == bindparam("ref"))
_BY_VERSION = _SERVED.select_from(
    _m.join(_v, _v.c.model_id == _m.c.id).join(_j, _j.c.id == _v.c.job_id)
).where(_OF_MODEL, _v.c.version == bindparam("ref"))
_MODEL_EXISTS = select(_m.c.id).where(_OF_MODEL)


def resolve(
    connection: Connection, *, tenant_id: str, name: str, ref: str | int
) -> ServedVersion | None:
    """The version an alias (a str) points at, or a version by number; None if there is none."""
    statement = _BY_ALIAS if isinstance(ref, str) else _BY_VERSION
    row = connection.execute(statement, {"tenant_id": tenant_id, "name": name, "ref": ref}).first()
    if row is None:
        return None
    return ServedVersion(
        name, row.version, row.job_id, row.artifact_blob_id, row.artifact_sha256, row.artifact_kind
    )


def unresolved(connection: Connection, *, tenant_id: str, name: str, ref: str | int) -> NotFound:
    """The 404 for a name@alias or version that resolve() did not find, saying which part."""
    if not connection.execute(_MODEL_EXISTS, {"tenant_id": tenant_id, "name": name}).first():
        return NotFound(f"no model named {name!r}; create it with POST /v1/models")
    if isinstance(ref, str):
        return NotFound(
            f"model {name!r} has no alias {ref!r}; set it with PUT /v1/models/{name}/aliases/{ref}"
        )
    return NotFound(f"model {name!r} has no version {ref}")
