"""HTTP routes for sweeps: parse, call the service, return."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from sqlalchemy.orm import Session

from service.auth.dependencies import PrincipalDep
from service.db import DatabaseDep, SessionDep
from service.ids import parse_id
from service.jobs.models import TERMINAL
from service.pagination import MAX_LIMIT, Page
from service.sweeps import service
from service.sweeps.models import Sweep
from service.sweeps.schemas import LeaderboardRow, SweepCreate, SweepRead
from service.training.kinds import registry
from service.training.metrics import metric

router = APIRouter(prefix="/v1/sweeps", tags=["sweeps"])


def sweep_read(session: Session, sweep: Sweep) -> SweepRead:
    if sweep.status in TERMINAL and sweep.leaderboard is not None:
        rows, failed = sweep.leaderboard, sweep.failed_trials or []
    else:
        rows, failed = service.leaderboard(sweep, service.trial_jobs(session, sweep))
    return SweepRead(
        id=sweep.id,
        name=sweep.name,
        dataset_id=sweep.dataset_id,
        status=sweep.status,
        progress=sweep.progress,
        task=sweep.task,
        metric=sweep.metric,
        greater_is_better=metric(sweep.metric).greater_is_better,
        lower_is_better=not metric(sweep.metric).greater_is_better,
        n_configs=sweep.n_configs,
        n_jobs=sweep.n_jobs,
        leaderboard=[LeaderboardRow.model_validate(r) for r in rows],
        best=service.best_with_test(session, sweep),
        failed_trials=failed,
        refit_job_id=sweep.refit_job_id,
        error=sweep.error,
        spec=sweep.spec,
        created_at=sweep.created_at,
        finished_at=sweep.finished_at,
    )


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
    return sweep_read(session, sweep)


@router.get("", response_model=Page[SweepRead], summary="List sweeps, newest first")
def list_sweeps(
    session: SessionDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    cursor: str | None = None,
) -> Page[SweepRead]:
    items, next_cursor = service.list_sweeps(
        session, tenant_id=principal.tenant_id, limit=limit, cursor=cursor
    )
    return Page[SweepRead](items=[sweep_read(session, s) for s in items], next_cursor=next_cursor)


@router.get("/{sweep_id}", response_model=SweepRead, summary="A sweep: progress, leaderboard, best")
def get_sweep(sweep_id: str, session: SessionDep, principal: PrincipalDep) -> SweepRead:
    sweep = service.get_sweep(
        session, tenant_id=principal.tenant_id, sweep_id=parse_id(sweep_id, "sweep")
    )
    return sweep_read(session, sweep)


@router.post("/{sweep_id}/cancel", response_model=SweepRead, summary="Cancel a sweep's trials")
def cancel_sweep(sweep_id: str, session: SessionDep, principal: PrincipalDep) -> SweepRead:
    sweep = service.cancel_sweep(
        session, tenant_id=principal.tenant_id, sweep_id=parse_id(sweep_id, "sweep")
    )
    return sweep_read(session, sweep)
