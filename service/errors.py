"""One error base class for what a client can act on; it knows statuses, never the web framework.

service/exception_handlers.py turns these (and the training core's errors) into responses.
"""

from __future__ import annotations

from typing import Any

PROBLEM_MEDIA_TYPE = "application/problem+json"


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


class SignInRequired(Exception):
    """A dashboard page was asked for without a session: answered with a redirect to sign in."""


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
