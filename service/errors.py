"""One error base class; one handler turns every error into application/problem+json."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

logger = logging.getLogger("ridgeline.errors")

PROBLEM_MEDIA_TYPE = "application/problem+json"
DATABASE_RETRY_AFTER_SECONDS = 5
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class ServiceError(Exception):
    """An error a client can act on: a status, a title and a detail that says what to change."""

    status: int = 500
    title: str = "Internal Server Error"
    type_slug: str = "internal"

    def __init__(
        self,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}

    def to_problem(self) -> dict[str, Any]:
        return problem(self.status, self.title, self.detail, self.type_slug, self.errors)


class InvalidInput(ServiceError):
    status = 422
    title = "Unprocessable Content"
    type_slug = "invalid-input"


class BadRequest(ServiceError):
    status = 400
    title = "Bad Request"
    type_slug = "bad-request"


class Unauthorized(ServiceError):
    status = 401
    title = "Unauthorized"
    type_slug = "unauthorized"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ServiceError):
    status = 403
    title = "Forbidden"
    type_slug = "forbidden"


class NotFound(ServiceError):
    status = 404
    title = "Not Found"
    type_slug = "not-found"


class Conflict(ServiceError):
    status = 409
    title = "Conflict"
    type_slug = "conflict"


class PayloadTooLarge(ServiceError):
    status = 413
    title = "Content Too Large"
    type_slug = "payload-too-large"


class UnsupportedMediaType(ServiceError):
    status = 415
    title = "Unsupported Media Type"
    type_slug = "unsupported-media-type"


class TooManyRequests(ServiceError):
    status = 429
    title = "Too Many Requests"
    type_slug = "rate-limited"


class OutboundRefused(InvalidInput):
    """An outbound URL, or an address its host resolves to, is not allowed (service/outbound)."""

    type_slug = "outbound-refused"


class OutboundUnreachable(InvalidInput):
    """An outbound URL's host does not resolve, which may pass."""

    type_slug = "outbound-unreachable"


class ServiceUnavailable(ServiceError):
    status = 503
    title = "Service Unavailable"
    type_slug = "unavailable"


def problem(
    status: int,
    title: str,
    detail: str,
    type_slug: str,
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"https://ridgeline.dev/problems/{type_slug}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    return body


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


def install_error_handlers(app: FastAPI) -> None:
    """Route every error, ours or the framework's, through the one problem+json shape."""

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return problem_response(exc.to_problem(), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _field_errors(exc)
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        return problem_response(
            problem(422, "Unprocessable Content", detail, "invalid-input", errors)
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = {404: "Not Found", 405: "Method Not Allowed"}.get(exc.status_code, "Error")
        detail = exc.detail if isinstance(exc.detail, str) else title
        headers = dict(exc.headers or {})
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"No route matches {request.method} {request.url.path}."
        if exc.status_code == 405:
            # The router names the methods of the first route whose path matched; a path
            # served by several routes (GET and DELETE /v1/jobs/{id}) allows all of theirs.
            allowed = allowed_methods(request)
            headers["Allow"] = ", ".join(allowed)
            detail = (
                f"{request.method} is not allowed on {request.url.path}; use {headers['Allow']}."
            )
        return problem_response(
            problem(exc.status_code, title, detail, title.lower().replace(" ", "-")),
            headers,
        )

    @app.exception_handler(OperationalError)
    @app.exception_handler(SQLAlchemyTimeoutError)
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

    @app.exception_handler(Exception)
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
