"""Ridgeline's Python client: typed, sync and async, light to import.

Importing this package loads httpx, pydantic and the standard library only; it never imports
the service itself (no FastAPI, SQLAlchemy, numpy, torch ...), so it installs and starts fast
wherever the models are used. See README.md beside this file.
"""

from service.client._async import AsyncClient
from service.client._core import DEFAULT_URL, RetryPolicy, SSEDecoder
from service.client._sync import Client
from service.client.errors import (
    BadRequest,
    ChecksumMismatch,
    Conflict,
    ConnectionFailed,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    RidgelineError,
    ServerError,
    Unauthorized,
    Unavailable,
    ValidationFailed,
    WaitTimeout,
)
from service.client.models import (
    TERMINAL_STATUSES,
    Alias,
    Aliases,
    AliasEvent,
    ArtifactInfo,
    Attempt,
    Column,
    Dataset,
    Epoch,
    Event,
    Job,
    Metrics,
    ModelVersion,
    Page,
    Prediction,
    Preview,
    RegisteredModel,
    Sweep,
)

__all__ = [
    "DEFAULT_URL",
    "TERMINAL_STATUSES",
    "Alias",
    "AliasEvent",
    "Aliases",
    "ArtifactInfo",
    "AsyncClient",
    "Attempt",
    "BadRequest",
    "ChecksumMismatch",
    "Client",
    "Column",
    "Conflict",
    "ConnectionFailed",
    "Dataset",
    "Epoch",
    "Event",
    "Forbidden",
    "Job",
    "Metrics",
    "ModelVersion",
    "NotFound",
    "Page",
    "PayloadTooLarge",
    "Prediction",
    "Preview",
    "RateLimited",
    "RegisteredModel",
    "RetryPolicy",
    "RidgelineError",
    "SSEDecoder",
    "ServerError",
    "Sweep",
    "Unauthorized",
    "Unavailable",
    "ValidationFailed",
    "WaitTimeout",
]
