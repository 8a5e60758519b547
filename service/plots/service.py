"""What each plot shows and when it exists: the data gathered, the rules, the rendered bytes."""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

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

Format = Literal["svg", "png"]
JobPlot = Literal["loss-curve", "coefficients", "learning-curve"]
SweepPlot = Literal["validation-curve", "regularization-path"]
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


def _history(session: Session, job: Job) -> list[dict[str, Any]]:
    rows = [
        EpochRecord.model_validate(e, from_attributes=True) for e in jobs.epochs_of(session, job)
    ]
    stored = JobMetrics.model_validate(job.metrics or {}).history or []
    return [row.to_json() for row in rows or stored]


def _kinds_with(has: Callable[[ModelKind[Any]], bool]) -> str:
    """The registered kinds with a property, for a message: "'a' or 'b'"."""
    return " or ".join(f"'{k.name}'" for k in registry.kinds() if has(k)) or "none"


def _job_version(session: Session, job: Job) -> tuple[Any, ...]:
    return (job.id, job.attempt, job.status, len(jobs.epochs_of(session, job)))


def _loss_curve(session: Session, job: Job, title: str, fmt: Format) -> Callable[[], bytes]:
    history = _history(session, job)
    if not history:
        if job.status == SUCCEEDED:
            raise NotFound(
                "this job has no per-epoch history: loss curves exist for model kinds "
                + _kinds_with(lambda k: k.has_history)
            )
        raise Conflict(f"job {job.id} is {job.status} and has no epoch yet; retry later")
    best_epoch = JobMetrics.model_validate(job.metrics or {}).best_epoch
    return lambda: render.as_bytes(render.draw_loss_curve(history, best_epoch, title, fmt=fmt), fmt)


def _coefficients(session: Session, job: Job, title: str, fmt: Format) -> Callable[[], bytes]:
    if job.status not in TERMINAL:
        raise Conflict(f"job {job.id} is {job.status}; coefficients exist once it succeeded")
    coefs = [c.to_json() for c in JobMetrics.model_validate(job.metrics or {}).coefficients or []]
    if not coefs:
        raise NotFound(
            "this job has no coefficients: they exist for succeeded jobs of model kinds whose "
            "weights are coefficients"
        )
    return lambda: render.as_bytes(render.draw_coefficients(coefs, title=title, fmt=fmt), fmt)


def _learning_curve(session: Session, job: Job, title: str, fmt: Format) -> Callable[[], bytes]:
    if job.status not in TERMINAL:
        raise Conflict(f"job {job.id} is {job.status}; its learning curve comes at the end")
    curve = JobMetrics.model_validate(job.metrics or {}).learning_curve or []
    points = [point.to_json() for point in curve]
    if not points:
        raise NotFound(
            'this job recorded no learning curve; ask for one with "learning_curve": '
            '{"sizes": [0.1, 0.25, 0.5, 1.0]} in the spec'
        )
    metric = PRIMARY_METRIC[job.task]
    return lambda: render.as_bytes(render.draw_learning_curve(points, metric, title, fmt=fmt), fmt)


_JOB_PLOTS: dict[str, Callable[[Session, Job, str, Format], Callable[[], bytes]]] = {
    "loss-curve": _loss_curve,
    "coefficients": _coefficients,
    "learning-curve": _learning_curve,
}


def job_plot(
    session: Session,
    cache: PlotCache,
    *,
    tenant_id: str,
    job_id: uuid.UUID,
    kind: JobPlot,
    fmt: Format,
) -> bytes:
    job = jobs.get_job(session, tenant_id=tenant_id, job_id=job_id)
    title = job.name or f"job {str(job.id)[:8]}"
    make = _JOB_PLOTS[kind](session, job, title, fmt)
    return cache.get(("job", kind, fmt, *_job_version(session, job)), make)


def _sweep_paths(
    session: Session, sweep: Sweep, penalty: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """The first fold's warm-started path of the chosen (or best) penalty, and that penalty."""
    wanted = penalty or (sweep.best or {}).get("penalty")
    candidates = session.scalars(
        select(Job).where(
            Job.sweep_id == sweep.id, Job.trainer == "sweep-path", Job.status == SUCCEEDED
        )
    ).all()
    for job in sorted(candidates, key=lambda j: (j.params or {}).get("fold", 0)):
        params = job.params or {}
        if wanted is None or params.get("penalty") == wanted:
            path = PathMetrics.model_validate(job.metrics or {}).path
            return [point.to_json() for point in path], params.get("penalty")
    return [], wanted


def _validation_curve(
    session: Session, sweep: Sweep, title: str, fmt: Format
) -> tuple[Callable[[], bytes], tuple[Any, ...]]:
    rows = sweep.leaderboard
    if rows is None:
        rows, _ = sweeps.leaderboard(sweep, sweeps.trial_jobs(session, sweep))
    rows = [r for r in rows if r.get("mean") is not None]
    if not rows:
        raise Conflict(f"sweep {sweep.id} has no finished trial yet; retry later")
    best = sweep.best

    def make() -> bytes:
        return render.as_bytes(
            render.draw_validation_curve(rows, sweep.metric, best, title, fmt=fmt), fmt
        )

    return make, (sweep.status, len(rows))


def _regularization_path(
    session: Session, sweep: Sweep, title: str, fmt: Format, penalty: str | None
) -> tuple[Callable[[], bytes], tuple[Any, ...]]:
    path, shown = _sweep_paths(session, sweep, penalty)
    if not path:
        if sweep.status in TERMINAL:
            raise NotFound(
                "this sweep has no regularization path: paths are fitted for model kinds "
                + _kinds_with(lambda k: k.supports_path)
                + (f" with penalty {penalty!r}" if penalty else "")
            )
        raise Conflict(f"sweep {sweep.id} has no finished path yet; retry later")
    return (
        lambda: render.as_bytes(
            render.draw_regularization_path(path, title, penalty=shown, fmt=fmt), fmt
        )
    ), (
        sweep.status,
        penalty,
        len(path),
    )


def sweep_plot(
    session: Session,
    cache: PlotCache,
    *,
    tenant_id: str,
    sweep_id: uuid.UUID,
    kind: SweepPlot,
    fmt: Format,
    penalty: str | None,
) -> bytes:
    sweep = sweeps.get_sweep(session, tenant_id=tenant_id, sweep_id=sweep_id)
    title = sweep.name or f"sweep {str(sweep.id)[:8]}"
    if kind == "validation-curve":
        make, version = _validation_curve(session, sweep, title, fmt)
    else:
        make, version = _regularization_path(session, sweep, title, fmt, penalty)
    return cache.get(("sweep", kind, fmt, sweep.id, *version), make)


def overlaid_loss_curves(
    session: Session, cache: PlotCache, *, tenant_id: str, job_ids: str, fmt: Format
) -> bytes:
    """Several jobs' loss curves on one chart; `job_ids` comma-separated, as sent."""
    ids = [part.strip() for part in job_ids.split(",") if part.strip()]
    if not ids or len(ids) > MAX_OVERLAY:
        raise InvalidInput(
            f"give 1 to {MAX_OVERLAY} comma-separated job ids in 'jobs'",
            errors=[{"field": "jobs", "message": f"1 to {MAX_OVERLAY} ids"}],
        )
    series = []
    version: list[Any] = []
    for raw in ids:
        job = jobs.get_job(session, tenant_id=tenant_id, job_id=parse_id(raw, "job"))
        history = _history(session, job)
        if not history:
            raise Conflict(
                f"job {job.id} has no per-epoch history (yet); loss curves need a model kind "
                "that trains by epochs"
            )
        series.append((job.name or str(job.id)[:8], history))
        version.extend(_job_version(session, job))
    return cache.get(
        ("overlay", fmt, *version),
        lambda: render.as_bytes(render.draw_loss_curves(series, fmt=fmt), fmt),
    )
