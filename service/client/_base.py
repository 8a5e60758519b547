"""Configuration shared by Client and AsyncClient."""

from __future__ import annotations

import os
from typing import Any, Generic, TypeVar

import httpx

from service.client._core import DEFAULT_URL, RetryPolicy

#: The transport a client takes (httpx.BaseTransport or httpx.AsyncBaseTransport) and its httpx
#: client (httpx.Client or httpx.AsyncClient).
TransportT = TypeVar("TransportT")
HttpT = TypeVar("HttpT")

#: Seconds an SSE read may wait; the server sends a keep-alive comment every 15 s.
SSE_READ_TIMEOUT = 60.0


def _version() -> str:
    try:
        from service import __version__

        return __version__
    except ImportError:  # pragma: no cover - the client copied out of the package
        return "0"


class ClientBase(Generic[TransportT, HttpT]):
    """Base URL, key, timeouts and retry policy; the httpx client comes from ``_open``."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = 30.0,
        upload_timeout: float = 600.0,
        max_retries: int = 3,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        headers: dict[str, str] | None = None,
        transport: TransportT | None = None,
        verify: bool | str = True,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        # An upload's answer comes after the server parsed and stored the whole file.
        self.upload_timeout = httpx.Timeout(
            self.timeout.connect, read=upload_timeout, write=upload_timeout, pool=self.timeout.pool
        )
        self.retry = RetryPolicy(max_retries, backoff_base, backoff_max)
        self.headers = {"User-Agent": f"ridgeline-client/{_version()}", **(headers or {})}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self._http: HttpT = self._open(transport, verify)

    def _open(self, transport: TransportT | None, verify: bool | str) -> HttpT:
        """The httpx client, sync or async, for these settings."""
        raise NotImplementedError

    @property
    def max_retries(self) -> int:
        return self.retry.max_retries

    @classmethod
    def env_settings(cls, **overrides: Any) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "base_url": os.environ.get("RIDGELINE_URL") or DEFAULT_URL,
            "api_key": os.environ.get("RIDGELINE_API_KEY") or None,
        }
        settings.update({k: v for k, v in overrides.items() if v is not None})
        return settings

    def sse_timeout(self, remaining: float | None) -> httpx.Timeout:
        read = (
            SSE_READ_TIMEOUT if remaining is None else max(0.05, min(SSE_READ_TIMEOUT, remaining))
        )
        return httpx.Timeout(self.timeout.connect, read=read, write=self.timeout.write, pool=None)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"
