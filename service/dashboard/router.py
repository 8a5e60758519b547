"""The dashboard: server-rendered pages over the same data and keys as the API.

Signing in exchanges an API key for a session cookie (service/auth/sessions.py); the pages'
script then calls the /v1 API itself with that cookie and the CSRF header, follows a job over
its Server-Sent Events and shows the plots the API renders. Nothing here is in the OpenAPI
schema, and nothing is loaded from outside the service.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any
from urllib.parse import urlsplit

import anyio.to_thread
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session

from service.auth import sessions
from service.auth.service import Principal, end_sessions, hash_key
from service.dashboard import queries
from service.dashboard.templating import (
    ASSETS,
    SECURITY_HEADERS,
    fmt_bytes,
    markdown_html,
    render,
)
from service.deps import SessionDep, ViewerDep, count_failure, failure_wait, signed_in_viewer
from service.errors import NotFound
from service.ids import parse_id
from service.jobs import service as jobs_service
from service.jobs.models import SUCCEEDED, TERMINAL, Job
from service.registry import service as registry_service
from service.registry.schemas import aliases_read, version_read
from service.sweeps import service as sweeps_service
from service.training.kinds import registry
from service.training.kinds.base import ModelKind
from service.training.metrics import METRICS
from service.training.results import (
    Diagnosis,
    FinalMetrics,
    GeneralizationGap,
    JobMetrics,
    WeightStats,
)
from service.training.spec import ModelSpecBase

logger = logging.getLogger("ridgeline.dashboard")

router = APIRouter(include_in_schema=False)

MAX_SIGNIN_BODY = 16 * 1024
TOO_MANY_FAILURES = "Too many failed sign-ins from this address. Wait a minute and try again."
DEFAULT_PAGE = "/jobs"
DIAGNOSIS_EVIDENCE_SKIP = {"thresholds"}
LEADERBOARD_PAGE = 25


# -- who is looking ----------------------------------------------------------------------------


def _auth_disabled(request: Request) -> bool:
    return bool(request.app.state.settings.auth == "disabled")


def _csrf(request: Request) -> str:
    token = request.cookies.get(sessions.SESSION_COOKIE)
    if not token:
        return ""
    return sessions.csrf_token(sessions.session_secret(request.app.state.settings), token)


def _safe_next(value: str | None) -> str:
    """A local path to return to after signing in; anything else goes to the jobs page."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return DEFAULT_PAGE
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return DEFAULT_PAGE
    return value


def _page(
    request: Request, viewer: Principal, template: str, status_code: int = 200, **context: Any
) -> Response:
    return render(
        template,
        status_code=status_code,
        viewer=viewer,
        csrf=_csrf(request),
        auth_disabled=_auth_disabled(request),
        **context,
    )


def _not_found(request: Request, viewer: Principal, detail: str) -> Response:
    return _page(
        request,
        viewer,
        "error.html",
        status_code=404,
        page="error",
        title="Not found",
        detail=detail,
    )


# -- sign in and out ---------------------------------------------------------------------------


def _cross_site(request: Request) -> bool:
    """A form posted from another site (login CSRF): refused before looking at the key."""
    site = request.headers.get("sec-fetch-site")
    if site in ("cross-site", "same-site"):
        return True
    origin = request.headers.get("origin")
    if origin and origin != "null":
        return urlsplit(origin).netloc != request.headers.get("host", "")
    return origin == "null"


def _signin_page(request: Request, next_url: str, error: str | None, status_code: int) -> Response:
    return render(
        "signin.html",
        status_code=status_code,
        viewer=None,
        csrf="",
        auth_disabled=False,
        page="signin",
        title="Sign in",
        next_url=next_url,
        error=error,
    )


@router.get("/signin")
def signin_form(request: Request, next: str | None = None) -> Response:
    next_url = _safe_next(next)
    if signed_in_viewer(request) is not None:
        return RedirectResponse(next_url, status_code=303)
    return _signin_page(request, next_url, None, 200)


@router.post("/signin")
async def signin(request: Request) -> Response:
    if _auth_disabled(request):
        return RedirectResponse(DEFAULT_PAGE, status_code=303)
    if _cross_site(request):
        return _signin_page(request, DEFAULT_PAGE, "Sign in from this page.", 403)
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_SIGNIN_BODY:
        return _signin_page(request, DEFAULT_PAGE, "The form is too large.", 413)
    form = await request.form(max_files=0, max_fields=8)
    key = str(form.get("key") or "").strip()
    next_url = _safe_next(str(form.get("next") or ""))
    if not key:
        return _signin_page(request, next_url, "Paste an API key.", 400)
    state = request.app.state
    if failure_wait(request) > 0 and state.key_verifier.cached(hash_key(key)) is None:
        return _signin_page(request, next_url, TOO_MANY_FAILURES, 429)
    with state.db.read_sessions() as session:
        principal = state.key_verifier.verify(session, key)
    if principal is None:
        logger.info("dashboard sign-in refused: unknown or revoked key")
        if count_failure(request) > 0:
            return _signin_page(request, next_url, TOO_MANY_FAILURES, 429)
        return _signin_page(
            request,
            next_url,
            "That API key is unknown or revoked. Create one with "
            "`ridgeline keys create --name NAME`.",
            401,
        )
    response = RedirectResponse(next_url, status_code=303)
    sessions.set_session_cookies(
        response,
        request,
        sessions.session_secret(state.settings),
        hash_key(key),
        sessions.session_seconds(state.settings),
        epoch=principal.session_epoch,
    )
    return response


@router.post("/signout")
async def signout(request: Request) -> Response:
    """Clear the cookies and end the session server-side, so a copied cookie is refused too."""
    token = request.cookies.get(sessions.SESSION_COOKIE)
    if token:
        form = await request.form(max_files=0, max_fields=8)
        presented = str(form.get(sessions.CSRF_FORM_FIELD) or "")
        secret = sessions.session_secret(request.app.state.settings)
        if not sessions.csrf_matches(secret, token, presented):
            return render(
                "error.html",
                status_code=403,
                viewer=None,
                csrf="",
                auth_disabled=False,
                page="error",
                title="Forbidden",
                detail="Sign out with the button on a dashboard page.",
            )
        session_token = sessions.read_token(secret, token)
        if session_token is not None:
            await anyio.to_thread.run_sync(_end_sessions, request.app.state, session_token)
    response = RedirectResponse("/signin", status_code=303)
    sessions.clear_session_cookies(response, request)
    return response


def _end_sessions(state: Any, token: sessions.SessionToken) -> None:
    with state.db.transaction() as session:
        end_sessions(session, key_digest=token.key_digest, epoch=token.epoch)
    state.key_verifier.forget(token.key_digest)


# -- pages -------------------------------------------------------------------------------------


@router.get("/")
def home(viewer: ViewerDep) -> Response:
    return RedirectResponse(DEFAULT_PAGE, status_code=303)


@router.get("/jobs")
def jobs_page(
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    trials: bool = False,
    status: str | None = None,
) -> Response:
    if status not in (None, "", "queued", "running", "succeeded", "failed", "cancelled"):
        status = None
    jobs = queries.recent_jobs(session, viewer.tenant_id, include_trials=trials, status=status)
    names = queries.dataset_names(session, viewer.tenant_id, (j.dataset_id for j in jobs))
    return _page(
        request,
        viewer,
        "jobs.html",
        page="jobs",
        title="Jobs",
        jobs=[_job_row(job, names) for job in jobs],
        trials=trials,
        n_trials=0 if trials else queries.trial_count(session, viewer.tenant_id),
        status_filter=status or "",
    )


@router.get("/jobs/new")
def new_job_page(
    request: Request, session: SessionDep, viewer: ViewerDep, dataset_id: str | None = None
) -> Response:
    return _page(
        request,
        viewer,
        "new_job.html",
        page="new-job",
        title="New job",
        **_training_form(session, viewer, dataset_id),
    )


@router.get("/sweeps/new")
def new_sweep_page(
    request: Request, session: SessionDep, viewer: ViewerDep, dataset_id: str | None = None
) -> Response:
    return _page(
        request,
        viewer,
        "new_sweep.html",
        page="new-sweep",
        title="New sweep",
        metrics=list(METRICS.values()),
        **_training_form(session, viewer, dataset_id),
    )


def _training_form(session: Session, viewer: Principal, dataset_id: str | None) -> dict[str, Any]:
    """What the job and sweep forms offer: the datasets (with their columns) and model kinds."""
    choices = [
        {
            "id": str(d.id),
            "name": d.name,
            # Identical uploads differ only by when: the picker shows size and time too.
            "label": f"{d.name} · {d.n_rows:,} rows · {fmt_bytes(d.size_bytes)} · "
            f"{d.created_at:%Y-%m-%d %H:%M}",
            "n_rows": d.n_rows,
            "columns": [{"name": c["name"], "dtype": c["dtype"]} for c in d.columns],
        }
        for d in queries.recent_datasets(session, viewer.tenant_id)
    ]
    selected = next((c for c in choices if c["id"] == dataset_id), choices[0] if choices else None)
    return {
        "datasets": choices,
        "selected": selected,
        "default_target": _default_target(selected),
        "kinds": [
            {"name": k.name, "title": k.title, "fields": sorted(_FORM_FIELDS & _settable(k))}
            for k in registry.kinds()
        ],
    }


#: The model and regularization options the new-job form has inputs for.
_FORM_FIELDS = frozenset({"hidden_layers", "epochs", "dropout", "early_stopping"})


def _settable(kind: ModelKind[Any]) -> set[str]:
    """The kind's model fields and the regularization options it honours."""
    return set(kind.spec_class.model_fields) | set(kind.options)


@router.get("/jobs/{job_id}")
def job_page(job_id: str, request: Request, session: SessionDep, viewer: ViewerDep) -> Response:
    try:
        job = jobs_service.get_job(
            session, tenant_id=viewer.tenant_id, job_id=parse_id(job_id, "job")
        )
    except NotFound as exc:
        return _not_found(request, viewer, exc.detail)
    names = queries.dataset_names(session, viewer.tenant_id, [job.dataset_id])
    epochs = jobs_service.epochs_of(session, job)
    attempts = jobs_service.attempts_of(session, job)
    metrics = JobMetrics.model_validate(job.metrics or {})
    spec = job.spec or {}
    kind, model = _model_of(spec)
    has_history = kind is not None and kind.has_history
    last = epochs[-1] if epochs else None
    return _page(
        request,
        viewer,
        "job.html",
        page="job",
        title=job.name or f"Job {str(job.id)[:8]}",
        job=_job_row(job, names),
        spec=spec,
        spec_json=json.dumps(spec, indent=2, sort_keys=True),
        native_params=job.native_params,
        model_details=kind.details(model) if kind is not None and model is not None else None,
        max_epochs=kind.epochs(model) if kind is not None and model is not None else None,
        reg=spec.get("regularization") or {},
        has_history=has_history,
        attempts=attempts,
        epochs=len(epochs),
        last_epoch=last,
        final=_final_table(metrics.final),
        gap=(metrics.generalization_gap or GeneralizationGap()).to_json(),
        weights=(metrics.weights or WeightStats()).to_json(),
        best_epoch=metrics.best_epoch,
        fit_seconds=metrics.fit_seconds,
        diagnosis=_diagnosis(metrics.diagnosis),
        show_loss_curve=has_history,
        loss_curve_ready=bool(epochs or metrics.history),
        show_coefficients=job.status == SUCCEEDED and bool(metrics.coefficients),
        show_learning_curve=job.status in TERMINAL and bool(metrics.learning_curve),
        artifact=job.status == SUCCEEDED and job.artifact_sha256 is not None,
        registered=queries.versions_of_job(session, viewer.tenant_id, job.id),
        model_names=queries.model_names(session, viewer.tenant_id),
        suggested_model=_model_name_for(names.get(job.dataset_id) if job.dataset_id else None),
    )


@router.get("/datasets")
def datasets_page(
    request: Request, session: SessionDep, viewer: ViewerDep, uploaded: str | None = None
) -> Response:
    datasets = queries.recent_datasets(session, viewer.tenant_id)
    return _page(
        request,
        viewer,
        "datasets.html",
        page="datasets",
        title="Datasets",
        datasets=datasets,
        uploaded=uploaded or "",
    )


@router.get("/sweeps")
def sweeps_page(request: Request, session: SessionDep, viewer: ViewerDep) -> Response:
    sweeps = queries.recent_sweeps(session, viewer.tenant_id)
    names = queries.dataset_names(session, viewer.tenant_id, (s.dataset_id for s in sweeps))
    return _page(
        request,
        viewer,
        "sweeps.html",
        page="sweeps",
        title="Sweeps",
        sweeps=sweeps,
        names=names,
        terminal=TERMINAL,
    )


@router.get("/sweeps/{sweep_id}")
def sweep_page(
    sweep_id: str,
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    try:
        sweep = sweeps_service.get_sweep(
            session, tenant_id=viewer.tenant_id, sweep_id=parse_id(sweep_id, "sweep")
        )
    except NotFound as exc:
        return _not_found(request, viewer, exc.detail)
    read = sweeps_service.read_sweep(session, sweep)
    names = queries.dataset_names(session, viewer.tenant_id, [sweep.dataset_id])
    best = read.best or {}
    rows = [row.model_dump() for row in read.leaderboard]
    for row in rows:
        row["is_best"] = bool(best) and all(
            row.get(k) == best.get(k) for k in ("penalty", "strength", "l1_ratio", "dropout")
        )
    return _page(
        request,
        viewer,
        "sweep.html",
        page="sweep",
        title=read.name or f"Sweep {str(read.id)[:8]}",
        sweep=read,
        dataset_name=names.get(sweep.dataset_id) if sweep.dataset_id else None,
        rows=rows,
        board=_leaderboard_page(rows, page),
        best=best,
        best_figures=_best_figures(best, read.metric),
        has_curve=any(row.get("mean") is not None for row in rows),
        terminal=read.status in TERMINAL,
        n_trials=len(sweeps_service.trial_jobs(session, sweep)),
    )


@router.get("/models")
def models_page(request: Request, session: SessionDep, viewer: ViewerDep) -> Response:
    models, _ = registry_service.list_models(
        session, tenant_id=viewer.tenant_id, limit=queries.PAGE_SIZE, cursor=None, tags={}
    )
    return _page(request, viewer, "models.html", page="models", title="Models", models=models)


@router.get("/models/{name}")
def model_page(
    name: str,
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    version: int | None = None,
) -> Response:
    try:
        model, versions, _ = registry_service.list_versions(
            session, tenant_id=viewer.tenant_id, name=name, limit=queries.PAGE_SIZE, cursor=None
        )
    except NotFound as exc:
        return _not_found(request, viewer, exc.detail)
    by_version = registry_service.aliases_by_version(session, model.id)
    aliases = aliases_read(
        name, *registry_service.aliases_and_history(session, tenant_id=viewer.tenant_id, name=name)
    )
    shown = next((v for v in versions if v.version == version), versions[0] if versions else None)
    card = None
    if shown is not None:
        card = markdown_html(
            registry_service.version_card(
                session, tenant_id=viewer.tenant_id, name=name, version=shown.version
            )
        )
    return _page(
        request,
        viewer,
        "model.html",
        page="model",
        title=f"Model {name}",
        model=registry_service.read_models(session, [model])[0],
        versions=[
            {
                **version_read(name, v, by_version.get(v.version, [])).model_dump(),
                "score": _score(v.metrics),
            }
            for v in versions
        ],
        shown=shown,
        card=card,
        aliases=aliases.aliases,
        history=aliases.history,
    )


@router.get("/assets/{name}")
def asset(name: str) -> Response:
    found = ASSETS.get(name)
    if found is None:
        return Response(status_code=404, headers=SECURITY_HEADERS)
    return Response(
        found.body,
        media_type=found.media_type,
        headers={
            **SECURITY_HEADERS,
            "Cache-Control": "public, max-age=86400",
            "ETag": f'"{found.version}"',
        },
    )


# -- view helpers ------------------------------------------------------------------------------


def _best_figures(best: dict[str, Any], metric: str) -> list[tuple[str, Any]]:
    """The winner's scores, labelled: cross-validated, its spread, train, held-out test."""
    labels = (
        (("cv_mean", "mean"), f"validation {metric}"),
        (("cv_std", "std"), "std across folds"),
        (("train_mean",), f"train {metric}"),
        (("test",), f"test {metric} (refit)"),
    )
    out = []
    for keys, text in labels:
        value = next((best[k] for k in keys if best.get(k) is not None), None)
        if isinstance(value, int | float):
            out.append((text, value))
    return out


def _model_name_for(dataset_name: str | None) -> str:
    """A model name to suggest for a job: its dataset's file name without the extension."""
    stem = (dataset_name or "model").rsplit(".", 1)[0]
    cleaned = "".join(c if c.isalnum() or c in "_.-" else "-" for c in stem).strip("-._")
    return cleaned[:128] or "model"


def _score(metrics: dict[str, Any] | None) -> str:
    """A version's headline: its validation accuracy or r2."""
    validation = ((metrics or {}).get("final") or {}).get("validation") or {}
    for name in ("accuracy", "r2"):
        if validation.get(name) is not None:
            return f"{name} {validation[name]:.4g}"
    return "—"


def _leaderboard_page(rows: list[dict[str, Any]], page: int) -> dict[str, Any]:
    """One page of the leaderboard: its rows with their ranks, and where the others are."""
    pages = max(1, -(-len(rows) // LEADERBOARD_PAGE))
    page = min(page, pages)
    first = (page - 1) * LEADERBOARD_PAGE
    shown = rows[first : first + LEADERBOARD_PAGE]
    return {
        "rows": [(first + i + 1, row) for i, row in enumerate(shown)],
        "page": page,
        "pages": pages,
        "first": first + 1,
        "last": first + len(shown),
        "total": len(rows),
    }


def _default_target(dataset: dict[str, Any] | None) -> str:
    if not dataset or not dataset["columns"]:
        return ""
    names = [c["name"] for c in dataset["columns"]]
    for guess in ("target", "label", "y", "class", "outcome"):
        for name in names:
            if name.lower() == guess:
                return str(name)
    return str(names[-1])


def _model_of(spec: dict[str, Any]) -> tuple[ModelKind[Any] | None, ModelSpecBase | None]:
    """The stored spec's model kind and block; (None, None) for a kind this process lacks."""
    block = spec.get("model") or {}
    try:
        kind = registry.get(str(block.get("kind", registry.DEFAULT_KIND)))
        return kind, kind.spec_class.model_validate(block)
    except (KeyError, ValidationError):
        return None, None


def _job_row(job: Job, names: dict[Any, str]) -> dict[str, Any]:
    spec = job.spec or {}
    reg = spec.get("regularization") or {}
    kind, model = _model_of(spec)
    if kind is not None and model is not None:
        model_text = kind.describe(model)
    else:
        model_text = str((spec.get("model") or {}).get("kind", "unknown"))
    penalty = reg.get("penalty", "l2")
    if penalty == "none" or not reg.get("strength"):
        reg_text = "no penalty"
    else:
        reg_text = f"{penalty} {reg.get('strength'):.3g}"
        if penalty == "elasticnet" and reg.get("l1_ratio") is not None:
            reg_text += f" (l1_ratio {reg['l1_ratio']:g})"
    if kind is not None and "dropout" in kind.options and reg.get("dropout"):
        reg_text += f", dropout {reg['dropout']:g}"
    return {
        "id": str(job.id),
        "short_id": str(job.id)[:8],
        "name": job.name,
        "status": job.status,
        "terminal": job.status in TERMINAL,
        "progress": job.progress or 0.0,
        "task": job.task,
        "task_reason": job.task_reason,
        "engine": job.engine,
        "engine_reason": job.engine_reason,
        "target": spec.get("target"),
        "model": model_text,
        "regularization": reg_text,
        "dataset_id": str(job.dataset_id) if job.dataset_id else None,
        "dataset_name": names.get(job.dataset_id) if job.dataset_id else None,
        "sweep_id": str(job.sweep_id) if job.sweep_id else None,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "error": job.error,
        "cancel_requested": job.cancel_requested,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }


def _final_table(final: FinalMetrics | None) -> dict[str, Any] | None:
    """{split: {metric: value}} as a metric-by-split table: column names and rows."""
    if final is None:
        return None
    scores = {
        split: values
        for split, values in (
            ("train", final.train),
            ("validation", final.validation),
            ("test", final.test),
        )
        if values
    }
    if not scores:
        return None
    metrics = list(dict.fromkeys(name for values in scores.values() for name in values))
    rows = [(m, [scores[s].get(m) for s in scores]) for m in metrics]
    return {"splits": list(scores), "rows": rows}


def _diagnosis(diagnosis: Diagnosis | None) -> dict[str, Any] | None:
    if diagnosis is None:
        return None
    suggestions = [
        {
            "text": item.message or f"set {item.field} to {json.dumps(item.value)}",
            "field": item.field,
        }
        for item in diagnosis.suggestions
    ]
    shown = [
        (name, value)
        for name, value in diagnosis.evidence.to_json().items()
        if value is not None
        and name not in DIAGNOSIS_EVIDENCE_SKIP
        and isinstance(value, int | float | str | bool)
    ]
    return {
        "verdict": diagnosis.verdict,
        "css": diagnosis.verdict.replace(" ", "-"),
        "reasons": list(diagnosis.reasons),
        "suggestions": suggestions,
        "evidence": shown,
    }
