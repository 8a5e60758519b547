"""The rules of sweeps: expand the search into trial jobs, rank them, refit the winner."""

from __future__ import annotations

import itertools
import math
import random
import statistics
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service import watch
from service.config import Settings
from service.datasets.service import dataset_to_train_on
from service.db import Database, rowcount, utcnow
from service.errors import Conflict, InvalidInput, NotFound
from service.jobs import queue
from service.jobs.models import (
    ACTIVE,
    CANCELLED,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    TERMINAL,
    Job,
)
from service.jobs.service import check_epochs, check_tenant_limits, column_summaries
from service.pagination import page_of, paginate
from service.sweeps.models import Sweep
from service.sweeps.schemas import SweepCreate, SweepRead, sweep_read
from service.tags import where_tags
from service.training import metrics as M
from service.training.kinds import registry
from service.training.resolve import resolve_spec
from service.training.results import FinalMetrics, JobMetrics, PathMetrics, TrialMetrics
from service.training.spec import TrainingSpec


@dataclass(frozen=True)
class Config:
    """One point of the search: a trial."""

    penalty: str
    strength: float
    l1_ratio: float | None
    dropout: float | None

    def key(self) -> tuple[str, float, float | None, float | None]:
        return (self.penalty, round(self.strength, 12), self.l1_ratio, self.dropout)

    def as_dict(self) -> dict[str, Any]:
        return {
            "penalty": self.penalty,
            "strength": self.strength,
            "l1_ratio": self.l1_ratio,
            "dropout": self.dropout,
        }


def strengths_of(body: SweepCreate) -> list[float]:
    grid = body.search.strength
    if isinstance(grid, list):
        values = grid
    elif grid.num == 1:
        values = [grid.min]
    elif grid.scale == "log":
        values = list(np.geomspace(grid.min, grid.max, grid.num))
    else:
        values = list(np.linspace(grid.min, grid.max, grid.num))
    return sorted({float(v) for v in values}, reverse=True)


def expand(body: SweepCreate) -> list[Config]:
    """The grid, each axis applied only where it fits (random mode draws from it)."""
    takes_dropout = "dropout" in registry.kind_of(body).options
    dropouts: list[float | None] = [None]
    if takes_dropout and body.search.dropout:
        dropouts = list(body.search.dropout)
    configs: list[Config] = []
    for penalty in dict.fromkeys(body.search.penalty):
        ratios: list[float | None] = [None]
        if penalty == "elasticnet":
            ratios = list(body.search.l1_ratio or [0.5])
        strengths = [0.0] if penalty == "none" else strengths_of(body)
        for strength, ratio, dropout in itertools.product(strengths, ratios, dropouts):
            configs.append(Config(penalty, strength, ratio, dropout))
    if body.search.mode == "random":
        if body.search.max_trials is None:
            raise InvalidInput(
                "random search needs search.max_trials",
                errors=[{"field": "search.max_trials", "message": "required in random mode"}],
            )
        rng = random.Random(body.seed)
        configs = rng.sample(configs, min(body.search.max_trials, len(configs)))
    return configs


def trial_spec(base: TrainingSpec, config: Config) -> TrainingSpec:
    regularization = base.regularization.model_copy(
        update={
            "penalty": config.penalty,
            "strength": config.strength,
            "l1_ratio": config.l1_ratio,
            "dropout": config.dropout
            if config.dropout is not None
            else base.regularization.dropout,
        }
    )
    return base.model_copy(update={"regularization": regularization})


def resolve_metric(metric: str, task: str) -> tuple[str, bool]:
    """The metric to rank by ('auto': the task's selection metric) and whether lower is better."""
    name = M.SELECTION_METRIC[task] if metric == "auto" else metric
    allowed = [m.name for m in M.metrics_for(task)]
    if name not in allowed:
        raise InvalidInput(
            f"metric {metric!r} is not reported for {task}; use one of {sorted(allowed)}",
            errors=[{"field": "metric", "message": "unknown for this task"}],
        )
    return name, not M.metric(name).greater_is_better


def create_sweep(
    session: Session, *, settings: Settings, tenant_id: str, body: SweepCreate
) -> Sweep:
    """Validate every configuration against the dataset, then queue its trial jobs."""
    dataset = dataset_to_train_on(session, tenant_id=tenant_id, dataset_id=body.dataset_id)
    base = body.base_spec()
    configs = expand(body)
    if len(configs) > settings.max_sweep_trials:
        raise InvalidInput(
            f"the search has {len(configs)} configurations, over the limit of "
            f"{settings.max_sweep_trials}; use fewer strengths or random mode with max_trials",
            errors=[{"field": "search", "message": "too many configurations"}],
        )
    check_epochs(settings, base)
    columns = column_summaries(dataset)
    task = None
    for config in configs:
        resolved = resolve_spec(
            trial_spec(base, config),
            columns,
            max_classes=settings.max_classes,
            max_mlp_parameters=settings.max_mlp_parameters,
        )
        task = resolved.task
    assert task is not None
    metric, lower = resolve_metric(body.metric, task)
    folds = body.cv.folds
    n_splits = folds or 1
    max_seconds = body.max_seconds or settings.default_max_seconds
    sweep = Sweep(
        tenant_id=tenant_id,
        name=body.name,
        tags=body.tags or None,
        dataset_id=dataset.id,
        status=QUEUED,
        spec=body.model_dump(mode="json"),
        task=task,
        metric=metric,
        lower_is_better=lower,
        n_configs=len(configs),
        n_jobs=0,
    )
    session.add(sweep)
    session.flush()
    cv = {"folds": folds, "validation_fraction": body.cv.validation_fraction}

    def add_job(spec: TrainingSpec, trainer: str, params: dict[str, Any]) -> None:
        queue.enqueue(
            session,
            Job(
                tenant_id=tenant_id,
                name=f"{body.name or 'sweep'} trial",
                dataset_id=dataset.id,
                status=QUEUED,
                priority=body.priority,
                spec=spec.model_dump(mode="json"),
                trainer=trainer,
                task=task,
                task_reason="set by the sweep",
                max_seconds=max_seconds,
                max_attempts=settings.max_attempts,
                sweep_id=sweep.id,
                params=params,
            ),
        )

    n_jobs = 0
    if registry.kind_of(body).supports_path:
        # One warm-started path per (penalty, l1_ratio, fold): strongest to weakest.
        paths: dict[tuple[str, float | None], list[Config]] = {}
        for config in configs:
            if config.penalty == "none":
                add_job(trial_spec(base, config), "sweep-trial", {**cv, "config": config.as_dict()})
                n_jobs += 1
            else:
                paths.setdefault((config.penalty, config.l1_ratio), []).append(config)
        for (penalty, ratio), members in paths.items():
            strengths = sorted({c.strength for c in members}, reverse=True)
            spec = trial_spec(base, members[0])
            for fold in range(n_splits):
                add_job(
                    spec,
                    "sweep-path",
                    {
                        **cv,
                        "fold": fold,
                        "strengths": strengths,
                        "penalty": penalty,
                        "l1_ratio": ratio,
                    },
                )
                n_jobs += 1
    else:
        for config in configs:
            add_job(trial_spec(base, config), "sweep-trial", {**cv, "config": config.as_dict()})
            n_jobs += 1
    sweep.n_jobs = n_jobs
    check_tenant_limits(session, settings, tenant_id=tenant_id, new_jobs=0)
    session.flush()
    queue.notify(session)
    return sweep


def get_sweep(session: Session, *, tenant_id: str, sweep_id: uuid.UUID) -> Sweep:
    sweep = session.scalar(select(Sweep).where(Sweep.id == sweep_id, Sweep.tenant_id == tenant_id))
    if sweep is None:
        raise NotFound(f"no sweep with id {sweep_id}")
    return sweep


def list_sweeps(
    session: Session,
    *,
    tenant_id: str,
    limit: int,
    cursor: str | None,
    tags: dict[str, str] | None = None,
) -> tuple[list[Sweep], str | None]:
    query = paginate(
        where_tags(select(Sweep).where(Sweep.tenant_id == tenant_id), Sweep.tags, tags or {}),
        created_at=Sweep.created_at,
        row_id=Sweep.id,
        limit=limit,
        cursor=cursor,
    )
    return page_of(session.scalars(query).all(), limit)


def trial_jobs(session: Session, sweep: Sweep) -> list[Job]:
    return list(session.scalars(select(Job).where(Job.sweep_id == sweep.id)))


def cancel_sweep(session: Session, *, tenant_id: str, sweep_id: uuid.UUID) -> Sweep:
    sweep = get_sweep(session, tenant_id=tenant_id, sweep_id=sweep_id)
    if sweep.status in TERMINAL:
        raise Conflict(f"sweep {sweep_id} already ended ({sweep.status})")
    now = utcnow()
    session.execute(
        update(Job)
        .where(Job.sweep_id == sweep.id, Job.status == QUEUED)
        .values(status=CANCELLED, finished_at=now, error="sweep cancelled")
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(Job)
        .where(Job.sweep_id == sweep.id, Job.status == RUNNING)
        .values(cancel_requested=True)
        .execution_options(synchronize_session=False)
    )
    sweep.status = CANCELLED
    sweep.finished_at = now
    sweep.error = "cancelled by request"
    session.flush()
    return sweep


def _scores(final: FinalMetrics | None, metric: str) -> tuple[float | None, float | None]:
    """(validation value, train value) of the metric."""
    if final is None:
        return None, None
    validation, train = final.validation or {}, final.train or {}
    return validation.get(metric), train.get(metric)


def _fold_scores(job: Job, metric: str) -> list[tuple[Config, float | None, float | None]]:
    """(config, validation value, train value) for every fold result a finished job holds."""
    params = job.params or {}
    out: list[tuple[Config, float | None, float | None]] = []
    for point in PathMetrics.model_validate(job.metrics or {}).path:
        penalty = params.get("penalty", point.penalty or "l2")
        config = Config(penalty, float(point.strength), params.get("l1_ratio"), None)
        out.append((config, *_scores(point.final, metric)))
    if "config" in params:
        c = params["config"]
        config = Config(c["penalty"], float(c["strength"]), c.get("l1_ratio"), c.get("dropout"))
        for fold in TrialMetrics.model_validate(job.metrics or {}).folds:
            out.append((config, *_scores(fold.final, metric)))
    return out


def _mean(values: list[float]) -> float | None:
    return float(statistics.fmean(values)) if values else None


def leaderboard(sweep: Sweep, jobs: list[Job]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per configuration: mean and std of the metric across folds, and the train mean."""
    grouped: dict[tuple[Any, ...], tuple[Config, list[float], list[float]]] = {}
    failed = []
    for job in jobs:
        if job.status == FAILED:
            failed.append({"job_id": str(job.id), "params": job.params, "error": job.error})
        if job.status != SUCCEEDED:
            continue
        for config, val, train in _fold_scores(job, sweep.metric):
            entry = grouped.setdefault(config.key(), (config, [], []))
            if val is not None and math.isfinite(val):
                entry[1].append(val)
            if train is not None and math.isfinite(train):
                entry[2].append(train)
    rows = []
    for config, vals, trains in grouped.values():
        rows.append(
            {
                **config.as_dict(),
                "metric": sweep.metric,
                "mean": _mean(vals),
                "std": float(np.std(vals)) if vals else None,
                "train_mean": _mean(trains),
                "n_folds": len(vals),
            }
        )
    sign = -1 if M.metric(sweep.metric).greater_is_better else 1
    rows.sort(key=lambda r: (r["mean"] is None, sign * (r["mean"] or 0.0), -r["strength"]))
    return rows, failed


def after_trial(db: Database, sweep_id: uuid.UUID) -> None:
    """Called when a trial job ends: update progress; when all have, rank and refit."""
    with db.transaction() as session:
        sweep = session.get(Sweep, sweep_id)
        if sweep is None or sweep.status in TERMINAL:
            return
        watch.notify(session, queue.EVENTS_CHANNEL)  # the sweep's event streams hear it at once
        jobs = trial_jobs(session, sweep)
        done = sum(job.status in TERMINAL for job in jobs)
        sweep.progress = done / max(1, len(jobs))
        if any(job.status in ACTIVE for job in jobs):
            sweep.status = RUNNING
            return
        rows, failed = leaderboard(sweep, jobs)
        claimed = session.execute(
            update(Sweep)
            .where(Sweep.id == sweep.id, Sweep.status.in_((QUEUED, RUNNING)))
            .values(status=RUNNING)
            .execution_options(synchronize_session=False)
        )
        if not rowcount(claimed):
            return
        sweep.leaderboard = rows
        sweep.failed_trials = failed
        sweep.finished_at = utcnow()
        ranked = [r for r in rows if r["mean"] is not None]
        if not ranked:
            sweep.status = FAILED
            sweep.error = f"no trial succeeded ({len(failed)} failed)"
            return
        winner = ranked[0]
        sweep.best = {
            **{k: winner[k] for k in ("penalty", "strength", "l1_ratio", "dropout")},
            "metric": sweep.metric,
            "cv_mean": winner["mean"],
            "cv_std": winner["std"],
            "train_mean": winner["train_mean"],
        }
        sweep.status = SUCCEEDED
        body = SweepCreate.model_validate(sweep.spec)
        if body.refit:
            sweep.refit_job_id = _queue_refit(session, db.settings, sweep, body, winner)


def _queue_refit(
    session: Session, settings: Settings, sweep: Sweep, body: SweepCreate, winner: dict[str, Any]
) -> uuid.UUID:
    """The winner trained on all the training data (the test split stays held out)."""
    config = Config(winner["penalty"], winner["strength"], winner["l1_ratio"], winner["dropout"])
    spec = trial_spec(body.base_spec(), config)
    early_stopping = spec.regularization.early_stopping is not None
    fraction = (body.cv.validation_fraction or 0.2) if early_stopping else 0.0
    spec = spec.model_copy(
        update={"validation": spec.validation.model_copy(update={"fraction": fraction})}
    )
    job = Job(
        tenant_id=sweep.tenant_id,
        name=f"{sweep.name or 'sweep'} refit",
        tags=sweep.tags,
        dataset_id=sweep.dataset_id,
        status=QUEUED,
        priority=body.priority,
        spec=spec.model_dump(mode="json"),
        task=sweep.task,
        task_reason="set by the sweep",
        max_seconds=body.max_seconds or settings.default_max_seconds,
        max_attempts=settings.max_attempts,
    )
    return queue.enqueue(session, job)


def best_with_test(session: Session, sweep: Sweep) -> dict[str, Any] | None:
    """The winner, with the refit job's held-out test score beside its CV score when known."""
    if sweep.best is None:
        return None
    best = dict(sweep.best)
    if sweep.refit_job_id is not None:
        refit = session.get(Job, sweep.refit_job_id)
        if refit is not None and refit.metrics:
            final = JobMetrics.model_validate(refit.metrics).final
            test = final.test if final is not None else None
            if test is not None:
                best["test"] = test.get(sweep.metric)
                best["test_metrics"] = test
            best["refit_status"] = refit.status
    return best


@dataclass(frozen=True)
class SweepState:
    """What a sweep's event stream reports: its status, and progress counting running trials."""

    status: str
    progress: float
    trials_done: int
    trials: int
    best: dict[str, Any] | None
    refit_job_id: uuid.UUID | None
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "progress": self.progress,
            "trials_done": self.trials_done,
            "trials": self.trials,
            **(
                {"best": self.best, "refit_job_id": self.refit_job_id, "error": self.error}
                if self.status in TERMINAL
                else {}
            ),
        }


def sweep_state(db: Database, sweep_id: uuid.UUID) -> SweepState:
    """The sweep's row and its trials' status and progress, read in one short transaction."""
    with db.transaction(write=False) as session:
        sweep = session.get_one(Sweep, sweep_id)
        trials = session.execute(
            select(Job.status, Job.progress).where(Job.sweep_id == sweep_id)
        ).all()
        done = sum(status in TERMINAL for status, _ in trials)
        if sweep.status in TERMINAL:
            progress = 1.0
        else:
            running = sum(p or 0.0 for status, p in trials if status not in TERMINAL)
            progress = (done + running) / max(1, len(trials))
        return SweepState(
            status=sweep.status,
            progress=round(progress, 4),
            trials_done=done,
            trials=len(trials),
            best=best_with_test(session, sweep) if sweep.status in TERMINAL else None,
            refit_job_id=sweep.refit_job_id,
            error=sweep.error,
        )


def read_sweep(session: Session, sweep: Sweep) -> SweepRead:
    """A sweep as the API shows it: a finished one's stored leaderboard, else one computed now."""
    if sweep.status in TERMINAL and sweep.leaderboard is not None:
        rows, failed = sweep.leaderboard, sweep.failed_trials or []
    else:
        rows, failed = leaderboard(sweep, trial_jobs(session, sweep))
    return sweep_read(sweep, rows, failed, best_with_test(session, sweep))
