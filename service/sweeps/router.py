"""HTTP routes for sweeps: parse, call the service, return."""

from __future__ import annotations

import json
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from service.db import Database
from service.deps import Cursor, DatabaseDep, PrincipalDep, SessionDep, TagFiltersDep
from service.ids import parse_id
from service.jobs import event_signal
from service.jobs.models import TERMINAL
from service.pagination import MAX_LIMIT, Page
from service.sweeps import service
from service.sweeps.models import Sweep
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


@router.get(
    "/{sweep_id}/events",
    summary="Live progress (Server-Sent Events) until the sweep ends",
    description="A `status` event now and at every status change, `progress` events as trials "
    "advance (running trials counted by their own progress); the terminal `status` event carries "
    "`best`, `refit_job_id` and `error`, and the stream closes after it. A script waits here "
    "instead of polling the sweep, whose leaderboard is computed on every read while it runs.",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def sweep_events(
    sweep_id: str, request: Request, db: DatabaseDep, principal: PrincipalDep
) -> StreamingResponse:
    sweep = await anyio.to_thread.run_sync(lambda: _load_sweep(db, principal, sweep_id))
    sent: service.SweepState | None = None

    async def poll() -> tuple[list[str], bool]:
        nonlocal sent
        state = await anyio.to_thread.run_sync(service.sweep_state, db, sweep.id)
        frames = []
        if sent is None or state.status != sent.status:
            frames.append(event_signal.frame("status", json.dumps(state.as_dict(), default=str)))
        elif (state.progress, state.trials_done) != (sent.progress, sent.trials_done):
            frames.append(event_signal.frame("progress", json.dumps(state.as_dict(), default=str)))
        sent = state
        return frames, state.status in TERMINAL

    return event_signal.event_stream(request, poll)


def _load_sweep(db: Database, principal: PrincipalDep, sweep_id: str) -> Sweep:
    with db.transaction(write=False) as session:
        return service.get_sweep(
            session, tenant_id=principal.tenant_id, sweep_id=parse_id(sweep_id, "sweep")
        )


@router.post("/{sweep_id}/cancel", response_model=SweepRead, summary="Cancel a sweep's trials")
def cancel_sweep(sweep_id: str, session: SessionDep, principal: PrincipalDep) -> SweepRead:
    sweep = service.cancel_sweep(
        session, tenant_id=principal.tenant_id, sweep_id=parse_id(sweep_id, "sweep")
    )
    return service.read_sweep(session, sweep)
