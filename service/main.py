"""create_app(): lifespan, routers, the one error handler, health, offline docs."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from sqlalchemy import text

from service import __version__
from service.auth.service import KeyVerifier
from service.config import Settings, get_settings
from service.dashboard.router import router as dashboard_router
from service.datasets import isolated
from service.datasets.router import router as datasets_router
from service.datasets.service import register_import_queue, register_in_use_check
from service.db import Database
from service.errors import problem
from service.exception_handlers import install_error_handlers, problem_response
from service.http_observability import install_observability
from service.jobs import service as jobs_service
from service.jobs.event_signal import EventSignal
from service.jobs.gauges import JobGauges
from service.jobs.router import router as jobs_router
from service.jobs.service import ModelCache, dataset_in_use, queue_import
from service.limits import TokenBucketLimiter, install_limits
from service.migrate import check_schema, schema_status
from service.openapi import install_openapi
from service.plots.router import router as plots_router
from service.plugins import import_plugins
from service.registry import service as registry_service
from service.registry.cache import ServedVersions
from service.registry.router import router as registry_router
from service.scratch import ScratchSpace
from service.sweeps.router import router as sweeps_router
from service.worker.status import worker_readiness

logger = logging.getLogger("ridgeline.api")

DESCRIPTION = """
Ridgeline trains regularized models (L1, L2, elastic net, dropout, early stopping) on the
datasets you upload, in a background worker, and serves back metrics that make overfitting
visible, model artifacts and predictions.

Authorize with an API key (`ridgeline keys create --name NAME`) using the **Authorize**
button: every `/v1` route needs `Authorization: Bearer <key>`.
"""


TAGS = [
    {"name": "datasets", "description": "Upload CSV or Parquet tables; read them back."},
    {
        "name": "jobs",
        "description": "Train a model with a regularization spec; metrics, "
        "artifacts, predictions, live events.",
    },
    {"name": "sweeps", "description": "Search penalties and strengths; leaderboard and refit."},
    {
        "name": "models",
        "description": "Registered models: versions from succeeded jobs, aliases that move "
        "atomically, predictions by name@alias, model cards.",
    },
    {"name": "plots", "description": "Loss curves, coefficients, validation curves (SVG/PNG)."},
    {"name": "health", "description": "Liveness and readiness."},
]


def _listen(app: FastAPI, settings: Settings) -> Callable[[], None]:
    """Hear other processes' commits: alias moves (the served-version cache) and job events
    (the event streams). Returns what stops both."""
    app.state.served_versions = served = ServedVersions(settings.alias_cache_seconds)
    if settings.alias_listen:
        served.listen(settings)
    app.state.event_signal = signal = EventSignal()
    if settings.event_listen:
        signal.listen(settings)

    def stop() -> None:
        served.close()
        signal.close()

    return stop


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    import_plugins(settings.plugins)  # before any spec is validated or the OpenAPI is built

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings)
        check_schema(db)
        app.state.db = db
        app.state.key_verifier = KeyVerifier(settings.key_cache_seconds)
        app.state.model_cache = ModelCache()
        stop_listening = _listen(app, settings)
        app.state.scratch = ScratchSpace(settings.tmp_dir)
        isolated.prewarm()
        if settings.auth == "disabled":
            logger.warning(
                "authentication is DISABLED (RIDGELINE_AUTH=disabled); every caller on %s "
                "acts as tenant 'local'",
                settings.host,
            )
        try:
            yield
        finally:
            stop_listening()
            app.state.scratch.close()
            db.dispose()

    app = FastAPIOffline(
        title="Ridgeline",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        swagger_ui_parameters={"persistAuthorization": True},
        openapi_tags=TAGS,
    )
    app.state.settings = settings
    app.state.auth_failures = (
        TokenBucketLimiter(settings.auth_failures_per_minute)
        if settings.auth_failures_per_minute
        else None
    )
    install_error_handlers(app)
    install_limits(app, settings)
    install_observability(app, settings)
    app.state.metrics_registry.register(
        JobGauges(lambda: getattr(app.state, "db", None), lease_seconds=settings.lease_seconds)
    )
    register_in_use_check("jobs", dataset_in_use)
    jobs_service.register_in_use_check("models", registry_service.job_in_use)
    register_import_queue(queue_import)
    install_openapi(app)
    app.include_router(datasets_router)
    app.include_router(jobs_router)
    app.include_router(sweeps_router)
    app.include_router(registry_router)
    app.include_router(plots_router)
    app.include_router(dashboard_router)

    @app.get("/healthz", tags=["health"], summary="Liveness: the process answers")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
        summary="Readiness: the database answers and its schema is at head",
        responses={
            503: {
                "description": "Not ready: the database is unreachable or behind.",
                "content": {
                    "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
                },
            }
        },
    )
    def readyz() -> JSONResponse:
        db: Database = app.state.db
        try:
            with db.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            current, head = schema_status(db.engine, settings.database_url)
        except Exception as exc:
            logger.warning("readiness check failed: %s", exc)
            return problem_response(
                problem(503, "Service Unavailable", "the database is unreachable", "unavailable"),
                {"Retry-After": "5"},
            )
        if current != head:
            return problem_response(
                problem(
                    503,
                    "Service Unavailable",
                    f"schema at {current}, code needs {head}; run `ridgeline migrate`",
                    "unavailable",
                )
            )
        # The API is ready (it takes jobs) while a worker on this machine still warms up.
        return JSONResponse(
            {"status": "ready", "schema": current, **worker_readiness(settings.data_dir)}
        )

    return app
