"""HTTP routes for sweeps: parse, call the service, return."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from service.deps import Cursor, DatabaseDep, PrincipalDep, SessionDep, TagFiltersDep
from service.ids import parse_id
from service.pagination import MAX_LIMIT, Page
from service.sweeps import service
from service.sweeps.schemas import SweepCreate, SweepRead
from service.training.kinds import registry

router = APIRouter(prefix="/v1/sweeps", tags=["sweeps"])


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SweepRead,
    summary="Search regularization settings",
    description="Expands the search into trials (model kinds that fit warm-started paths, "
    + ", ".join(f"'{k.name}'" for k in registry.kinds() if k.supports_path)
    + ": one path per penalty and fold; other kinds: one job per configuration, folds inside), "
    "runs them on all workers, ranks them by the cross-validated metric and, with refit, trains "
    "the winner.",
)
def create_sweep(
    body: SweepCreate,
    session: SessionDep,
    db: DatabaseDep,
    principal: PrincipalDep,
    response: Response,
) -> SweepRead:
    sweep = service.create_sweep(
        session, settings=db.settings, tenant_id=principal.tenant_id, body=body
    )
    response.headers["Location"] = f"/v1/sweeps/{sweep.id}"
    return service.read_sweep(session, sweep)


@router.get("", response_model=Page[SweepRead], summary="List sweeps, newest first")
def list_sweeps(
    session: SessionDep,
    principal: PrincipalDep,
    tags: TagFiltersDep,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    cursor: Cursor = "",
) -> Page[SweepRead]:
    items, next_cursor = service.list_sweeps(
        session, tenant_id=principal.tenant_id, limit=limit, cursor=cursor, tags=tags
    )
    return Page[SweepRead](
        items=[service.read_sweep(session, s) for s in items], next_cursor=next_cursor
    )


@router.get("/{sweep_id}", response_model=SweepRead, summary="A sweep: progress, leaderboard, best")
def get_sweep(sweep_id: str, session: SessionDep, principal: PrincipalDep) -> SweepRead:
    sweep = service.get_sweep(
        session, tenant_id=principal.tenant_id, sweep_id=parse_id(sweep_id, "sweep")
    )
    return service.read_sweep(session, sweep)


@router.post("/{sweep_id}/cancel", response_model=SweepRead, summary="Cancel a sweep's trials")
def cancel_sweep(sweep_id: str, session: SessionDep, principal: PrincipalDep) -> SweepRead:
    sweep = service.cancel_sweep(
        session, tenant_id=principal.tenant_id, sweep_id=parse_id(sweep_id, "sweep")
    )
    return service.read_sweep(session, sweep)
