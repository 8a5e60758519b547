"""Typed errors: every non-2xx problem+json answer becomes one of these."""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any

import httpx

__all__ = [
    "BadRequest",
    "ChecksumMismatch",
    "Conflict",
    "ConnectionFailed",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "RidgelineError",
    "ServerError",
    "Unauthorized",
    "Unavailable",
    "ValidationFailed",
    "WaitTimeout",
    "error_from_response",
    "parse_retry_after",
]


class RidgelineError(Exception):
    """An error answer of the service (or a failure to reach it).

    ``status`` is the HTTP status (``None`` when no answer came back), ``title`` and ``detail``
    come from the problem+json body (``detail`` says what to change), ``errors`` lists field
    problems as ``{"field": ..., "message": ...}`` and ``type`` is the problem type URI.
    """

    def __init__(
        self,
        status: int | None,
        title: str,
        detail: str,
        errors: list[dict[str, Any]] | None = None,
        type: str | None = None,
        *,
        headers: httpx.Headers | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(f"{status} {title}: {detail}" if status else f"{title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.errors: list[dict[str, Any]] = list(errors or [])
        self.type = type
        self.headers = headers if headers is not None else httpx.Headers()
        self.body = body

    @property
    def request_id(self) -> str | None:
        """The X-Request-ID the server gave the failed request, to quote in a report."""
        return self.headers.get("x-request-id")

    def to_dict(self) -> dict[str, Any]:
        """The problem as JSON-ready data (what the CLI prints with --json)."""
        out: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors:
            out["errors"] = self.errors
        return out


class BadRequest(RidgelineError):
    """400 (and 415): the request itself is malformed."""


class Unauthorized(RidgelineError):
    """401: no API key, or one that is unknown or revoked."""


class Forbidden(RidgelineError):
    """403."""


class NotFound(RidgelineError):
    """404: no such resource for this key's tenant (other tenants' ids are 404 too)."""


class Conflict(RidgelineError):
    """409: the resource is in a state that forbids this (e.g. a dataset a job still uses)."""


class PayloadTooLarge(RidgelineError):
    """413: the upload is over the server's limit."""


class ValidationFailed(RidgelineError):
    """422: the input is inconsistent; ``errors`` names each field and what to change."""


class RateLimited(RidgelineError):
    """429; ``retry_after`` is the number of seconds the server asked to wait, if it said."""

    @property
    def retry_after(self) -> float | None:
        return parse_retry_after(self.headers.get("retry-after"))


class ServerError(RidgelineError):
    """5xx: the server failed; retrying later may help."""


class Unavailable(ServerError):
    """503: the service (or its database) is not ready; ``retry_after`` when it said."""

    @property
    def retry_after(self) -> float | None:
        return parse_retry_after(self.headers.get("retry-after"))


class ConnectionFailed(RidgelineError):
    """The service could not be reached (after the retries); ``status`` is None."""

    def __init__(self, detail: str) -> None:
        super().__init__(None, "Connection failed", detail, type="connection-failed")


class WaitTimeout(RidgelineError, TimeoutError):
    """``wait()`` ran out of time before the job (or sweep) ended."""

    def __init__(self, detail: str) -> None:
        super().__init__(None, "Timed out", detail, type="timeout")


class ChecksumMismatch(RidgelineError):
    """A downloaded artifact's sha256 differs from the X-Artifact-SHA256 the server sent."""

    def __init__(self, detail: str) -> None:
        super().__init__(None, "Checksum mismatch", detail, type="checksum-mismatch")


_BY_STATUS: dict[int, type[RidgelineError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: BadRequest,
    422: ValidationFailed,
    429: RateLimited,
    503: Unavailable,
}


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date (never negative)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    from datetime import datetime

    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def error_from_response(response: httpx.Response) -> RidgelineError:
    """The typed error for a non-2xx answer; the body must already be read."""
    status = response.status_code
    body: Any = None
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        body = None
    reason = response.reason_phrase or "Error"
    if isinstance(body, dict):
        title = str(body.get("title") or reason)
        detail = body.get("detail")
        if not isinstance(detail, str):
            detail = json.dumps(detail) if detail is not None else title
        raw_errors = body.get("errors")
        errors = (
            [e for e in raw_errors if isinstance(e, dict)] if isinstance(raw_errors, list) else []
        )
        problem_type = body.get("type") if isinstance(body.get("type"), str) else None
    else:
        title = reason
        text = response.text.strip() if response.content else ""
        detail = text[:500] or f"the server answered {status} {reason} with no details"
        errors = []
        problem_type = None
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else RidgelineError)
    return cls(status, title, detail, errors, problem_type, headers=response.headers, body=body)
