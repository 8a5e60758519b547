"""Plot routes: SVG by default, PNG on request, rendered on the server and cached."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.auth.dependencies import PrincipalDep
from service.db import SessionDep
from service.errors import Conflict, InvalidInput, NotFound
from service.ids import parse_id
from service.jobs import service as jobs
from service.jobs.models import SUCCEEDED, TERMINAL, Job
from service.plots import render
from service.sweeps import service as sweeps
from service.sweeps.models import Sweep
from service.training.kinds import registry
from service.training.kinds.base import ModelKind
from service.training.metrics import PRIMARY_METRIC
from service.training.results import EpochRecord, JobMetrics, PathMetrics

router = APIRouter(tags=["plots"])

Format = Literal["svg", "png"]
MEDIA = {"svg": "image/svg+xml", "png": "image/png"}
IMAGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/svg+xml": {}, "image/png": {}}, "description": "The plot."},
    404: {"description": "This plot does not exist for this resource."},
    409: {"description": "The data for this plot does not exist yet."},
}
MAX_OVERLAY = 10


class PlotCache:
    """Rendered plots keyed by what they show, so repeated calls cost a dictionary lookup."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._items: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...], make: Callable[[], bytes]) -> bytes:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        data = make()
        with self._lock:
            self._items[key] = data
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return data


def _cache(request: Request) -> PlotCache:
    cache: PlotCache | None = getattr(request.app.state, "plot_cache", None)
    if cache is None:
        cache = request.app.state.plot_cache = PlotCache()
    return cache


def _image(data: bytes, fmt: Format) -> Response:
    return Response(data, media_type=MEDIA[fmt], headers={"Cache-Control": "private, max-age=5"})


def _history(session: Session, job: Job) -> list[dict[str, Any]]:
    rows = [
        EpochRecord.model_validate(e, from_attributes=True) for e in jobs.epochs_of(session, job)
    ]
    return [
        row.to_json() for row in rows or JobMetrics.model_validate(job.metrics or {}).history or []
    ]


def _kinds_with(has: Callable[[ModelKind[Any]], bool]) -> str:
    """The registered kinds with a property, for a message: "'a' or 'b'"."""
    return " or ".join(f"'{k.name}'" for k in registry.kinds() if has(k)) or "none"


def _job_version(session: Session, job: Job) -> tuple[Any, ...]:
    return (job.id, job.attempt, job.status, len(jobs.epochs_of(session, job)))


@router.get(
    "/v1/jobs/{job_id}/plots/{kind}",
    summary="A job's plot: loss curve, coefficients or learning curve",
    response_class=Response,
    responses=IMAGE_RESPONSES,
)
def job_plot(
    job_id: str,
    kind: Literal["loss-curve", "coefficients", "learning-curve"],
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    format: Format = "svg",
) -> Response:
    job = jobs.get_job(session, tenant_id=principal.tenant_id, job_id=parse_id(job_id, "job"))
    metrics = JobMetrics.model_validate(job.metrics or {})
    title = job.name or f"job {str(job.id)[:8]}"
    make: Callable[[], bytes]
    if kind == "loss-curve":
        history = _history(session, job)
        if not history:
            if job.status == SUCCEEDED:
                raise NotFound(
                    "this job has no per-epoch history: loss curves exist for model kinds "
                    + _kinds_with(lambda k: k.has_history)
                )
            raise Conflict(f"job {job.id} is {job.status} and has no epoch yet; retry later")

        def make() -> bytes:
            return render.loss_curve(history, metrics.best_epoch, title, fmt=format)

    elif kind == "coefficients":
        if job.status not in TERMINAL:
            raise Conflict(f"job {job.id} is {job.status}; coefficients exist once it succeeded")
        coefs = [c.to_json() for c in metrics.coefficients or []]
        if not coefs:
            raise NotFound(
                "this job has no coefficients: they exist for succeeded jobs of model kinds "
                "whose weights are coefficients"
            )

        def make() -> bytes:
            return render.coefficients(coefs, title=title, fmt=format)

    else:
        if job.status not in TERMINAL:
            raise Conflict(f"job {job.id} is {job.status}; its learning curve comes at the end")
        points = [p.to_json() for p in metrics.learning_curve or []]
        if not points:
            raise NotFound(
                'this job recorded no learning curve; ask for one with "learning_curve": '
                '{"sizes": [0.1, 0.25, 0.5, 1.0]} in the spec'
            )
        metric = PRIMARY_METRIC[job.task]

        def make() -> bytes:
            return render.learning_curve(points, metric, title, fmt=format)

    key = ("job", kind, format, *_job_version(session, job))
    return _image(_cache(request).get(key, make), format)


def _sweep_paths(session: Session, sweep: Sweep, penalty: str | None) -> list[dict[str, Any]]:
    """The first fold's warm-started path of the chosen (or best) penalty."""
    wanted = penalty or (sweep.best or {}).get("penalty")
    candidates = session.scalars(
        select(Job).where(
            Job.sweep_id == sweep.id, Job.trainer == "sweep-path", Job.status == SUCCEEDED
        )
    ).all()
    for job in sorted(candidates, key=lambda j: (j.params or {}).get("fold", 0)):
        params = job.params or {}
        if wanted is None or params.get("penalty") == wanted:
            return [p.to_json() for p in PathMetrics.model_validate(job.metrics or {}).path]
    return []


@router.get(
    "/v1/sweeps/{sweep_id}/plots/{kind}",
    summary="A sweep's plot: validation curve or regularization path",
    response_class=Response,
    responses=IMAGE_RESPONSES,
)
def sweep_plot(
    sweep_id: str,
    kind: Literal["validation-curve", "regularization-path"],
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    format: Format = "svg",
    penalty: Annotated[
        str | None, Query(description="Regularization path of this penalty; default: the best.")
    ] = None,
) -> Response:
    sweep = sweeps.get_sweep(
        session, tenant_id=principal.tenant_id, sweep_id=parse_id(sweep_id, "sweep")
    )
    title = sweep.name or f"sweep {str(sweep.id)[:8]}"
    if kind == "validation-curve":
        rows = sweep.leaderboard
        if rows is None:
            rows, _ = sweeps.leaderboard(sweep, sweeps.trial_jobs(session, sweep))
        rows = [r for r in rows if r.get("mean") is not None]
        if not rows:
            raise Conflict(f"sweep {sweep.id} has no finished trial yet; retry later")
        board, best = rows, sweep.best

        def make() -> bytes:
            return render.validation_curve(board, sweep.metric, best, title, fmt=format)

        version: tuple[Any, ...] = (sweep.status, len(rows))
    else:
        path = _sweep_paths(session, sweep, penalty)
        if not path:
            if sweep.status in TERMINAL:
                raise NotFound(
                    "this sweep has no regularization path: paths are fitted for model kinds "
                    + _kinds_with(lambda k: k.supports_path)
                    + (f" with penalty {penalty!r}" if penalty else "")
                )
            raise Conflict(f"sweep {sweep.id} has no finished path yet; retry later")

        def make() -> bytes:
            return render.regularization_path(path, title, fmt=format)

        version = (sweep.status, penalty, len(path))
    key = ("sweep", kind, format, sweep.id, *version)
    return _image(_cache(request).get(key, make), format)


@router.get(
    "/v1/plots/loss-curves",
    summary="Overlay the loss curves of several jobs",
    response_class=Response,
    responses=IMAGE_RESPONSES,
)
def loss_curves(
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    job_ids: Annotated[str, Query(alias="jobs", description="Comma-separated job ids.")],
    format: Format = "svg",
) -> Response:
    ids = [part.strip() for part in job_ids.split(",") if part.strip()]
    if not ids or len(ids) > MAX_OVERLAY:
        raise InvalidInput(
            f"give 1 to {MAX_OVERLAY} comma-separated job ids in 'jobs'",
            errors=[{"field": "jobs", "message": "1 to 10 ids"}],
        )
    series = []
    version: list[Any] = []
    for raw in ids:
        job = jobs.get_job(session, tenant_id=principal.tenant_id, job_id=parse_id(raw, "job"))
        history = _history(session, job)
        if not history:
            raise Conflict(
                f"job {job.id} has no per-epoch history (yet); loss curves need a model kind "
                "that trains by epochs"
            )
        series.append((job.name or str(job.id)[:8], history))
        version.extend(_job_version(session, job))

    def make() -> bytes:
        return render.loss_curves(series, fmt=format)

    return _image(_cache(request).get(("overlay", format, *version), make), format)
