"""The one place errors become responses: every error, ours or a library's, as problem+json."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from service.errors import (
    PROBLEM_MEDIA_TYPE,
    InvalidInput,
    ServiceError,
    SignInRequired,
    problem,
)
from service.training.errors import PredictionInputError, SpecError

logger = logging.getLogger("ridgeline.errors")

DATABASE_RETRY_AFTER_SECONDS = 5
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        body, status_code=body["status"], headers=headers, media_type=PROBLEM_MEDIA_TYPE
    )


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ()) if part not in ("body",)]
        out.append({"field": ".".join(loc) or "body", "message": err.get("msg", "invalid")})
    return out


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return problem_response(exc.to_problem(), exc.headers)


async def _training_problems(request: Request, exc: Exception) -> JSONResponse:
    """A spec or prediction rows that do not fit: the training core's field problems, as a 422."""
    assert isinstance(exc, SpecError | PredictionInputError)
    detail = "; ".join(f"{p['field']}: {p['message']}" for p in exc.problems)
    return problem_response(InvalidInput(detail, errors=list(exc.problems)).to_problem())


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _field_errors(exc)
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return problem_response(problem(422, "Unprocessable Content", detail, "invalid-input", errors))


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app serves on the request's path, in a fixed order."""
    return [
        method
        for method in HTTP_METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL
            for route in request.app.router.routes
        )
    ]


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    title = {404: "Not Found", 405: "Method Not Allowed"}.get(exc.status_code, "Error")
    detail = exc.detail if isinstance(exc.detail, str) else title
    headers = dict(exc.headers or {})
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"No route matches {request.method} {request.url.path}."
    if exc.status_code == 405:
        # The router names the methods of the first route whose path matched; a path served
        # by several routes (GET and DELETE /v1/jobs/{id}) allows all of theirs.
        headers["Allow"] = ", ".join(allowed_methods(request))
        detail = f"{request.method} is not allowed on {request.url.path}; use {headers['Allow']}."
    return problem_response(
        problem(exc.status_code, title, detail, title.lower().replace(" ", "-")), headers
    )


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    logger.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
    return problem_response(
        problem(
            503,
            "Service Unavailable",
            "the database is unavailable or busy right now; retry after a few seconds",
            "unavailable",
        ),
        {"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
    )


async def _sign_in(request: Request, exc: Exception) -> RedirectResponse:
    """A dashboard page without a session: to the sign-in form, and back here afterwards."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/signin?next={quote(target, safe='')}", status_code=303)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(
        problem(
            500,
            "Internal Server Error",
            "The server hit an unexpected error; it has been logged. Retry, and report it "
            "with the X-Request-ID if it persists.",
            "internal",
        )
    )


def install_error_handlers(app: FastAPI) -> None:
    """Route every error, ours or the framework's, through the one problem+json shape."""
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(SpecError, _training_problems)
    app.add_exception_handler(PredictionInputError, _training_problems)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(SQLAlchemyTimeoutError, _database_unavailable)
    app.add_exception_handler(SignInRequired, _sign_in)
    app.add_exception_handler(Exception, _unexpected)
