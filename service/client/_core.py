"""The I/O-free core shared by Client and AsyncClient.

Requests are described as :class:`Call` values (what to send, whether a retry is safe) and
answers are parsed by plain functions, so the sync and async clients differ only in how they
send bytes and sleep. Also here: the retry policy, a streaming multipart encoder and a
Server-Sent Events decoder.
"""

from __future__ import annotations

import json
import mimetypes
import os
import random
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from service.client.errors import parse_retry_after
from service.client.models import Event

T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:8000"
CHUNK_SIZE = 64 * 1024

#: Statuses worth retrying: the request was refused or the server is briefly away.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: Methods whose repetition has no further effect.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})

Progress = Callable[[int, int], None]


def path_id(value: object) -> str:
    """An id as one safe path segment (never lets a value add path parts)."""
    text = str(value)
    if not text:
        raise ValueError("an id must not be empty")
    return quote(text, safe="")


def new_idempotency_key() -> str:
    return f"rlc-{uuid.uuid4().hex}"


@dataclass(frozen=True)
class Call:
    """One request, described without sending it.

    ``content``/``acontent`` build a fresh streaming body for each attempt (a consumed
    generator cannot be sent twice). ``retry`` says whether repeating the request after an
    answer may have been lost is harmless.
    """

    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content: Callable[[], Iterator[bytes]] | None = None
    acontent: Callable[[], AsyncIterator[bytes]] | None = None
    retry: bool | None = None
    timeout: httpx.Timeout | None = None

    @property
    def idempotent(self) -> bool:
        if self.retry is not None:
            return self.retry
        return self.method.upper() in IDEMPOTENT_METHODS

    def request_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"headers": self.headers}
        if self.params:
            kwargs["params"] = {k: v for k, v in self.params.items() if v is not None}
        if self.json is not None:
            kwargs["json"] = self.json
        if self.timeout is not None:
            kwargs["timeout"] = self.timeout
        return kwargs


@dataclass(frozen=True)
class Op(Generic[T]):
    """A call and how to read its answer into a value."""

    call: Call
    parse: Callable[[httpx.Response], T]


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter; Retry-After wins when the server sends it.

    Idempotent requests (GET, DELETE, and a POST that carries an Idempotency-Key) are retried
    on 429, 502, 503, 504 and on transport errors. Any request is retried when the connection
    could not even be opened, or on 429 (the server refused it before doing anything).
    """

    max_retries: int = 3
    backoff_base: float = 0.5
    backoff_max: float = 30.0

    def backoff(self, attempt: int) -> float:
        """Seconds before retry number ``attempt + 1``: half fixed, half random ("equal jitter")."""
        ceiling = min(self.backoff_max, self.backoff_base * (2**attempt))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def delay_after_response(
        self, call: Call, attempt: int, response: httpx.Response
    ) -> float | None:
        """Seconds to wait before retrying after this answer, or None not to retry."""
        if attempt >= self.max_retries or response.status_code not in RETRY_STATUSES:
            return None
        if not call.idempotent and response.status_code != 429:
            return None
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        return retry_after if retry_after is not None else self.backoff(attempt)

    def delay_after_error(self, call: Call, attempt: int, exc: Exception) -> float | None:
        """Seconds to wait before retrying after a transport error, or None not to retry."""
        if attempt >= self.max_retries or not isinstance(exc, httpx.TransportError):
            return None
        never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
        if not never_sent and not call.idempotent:
            return None
        if isinstance(exc, httpx.UnsupportedProtocol | httpx.ProxyError):
            return None
        return self.backoff(attempt)


def describe_transport_error(exc: Exception, base_url: str) -> str:
    kind = type(exc).__name__
    reason = str(exc) or kind
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return f"cannot connect to {base_url} ({reason}); is the service running there?"
    if isinstance(exc, httpx.TimeoutException):
        return f"{base_url} did not answer in time ({kind})"
    return f"the connection to {base_url} failed: {reason} ({kind})"


# ---------------------------------------------------------------------------------------------
# Streaming multipart/form-data


def _quote_param(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


class MultipartFile:
    """A multipart/form-data body with text fields and one file, streamed from disk.

    The file is read in CHUNK_SIZE pieces as the body is sent (never whole in memory), and the
    exact Content-Length is known up front, so the server can refuse an oversize upload at once.
    ``progress(bytes_sent, total)`` counts the file's bytes.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        field_name: str = "file",
        filename: str | None = None,
        fields: dict[str, str | None] | None = None,
        progress: Progress | None = None,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no such file: {self.path}")
        self.size = self.path.stat().st_size
        self.progress = progress
        self.chunk_size = chunk_size
        self.boundary = uuid.uuid4().hex
        filename = filename or self.path.name
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        head = bytearray()
        for name, value in (fields or {}).items():
            if value is None:
                continue
            head += (
                f"--{self.boundary}\r\n"
                f'Content-Disposition: form-data; name="{_quote_param(name)}"\r\n\r\n'
            ).encode()
            head += value.encode() + b"\r\n"
        head += (
            f"--{self.boundary}\r\n"
            f'Content-Disposition: form-data; name="{_quote_param(field_name)}"; '
            f'filename="{_quote_param(filename)}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        self.head = bytes(head)
        self.tail = f"\r\n--{self.boundary}--\r\n".encode()

    @property
    def content_length(self) -> int:
        return len(self.head) + self.size + len(self.tail)

    @property
    def headers(self) -> dict[str, str]:
        return {
            "Content-Type": f"multipart/form-data; boundary={self.boundary}",
            "Content-Length": str(self.content_length),
        }

    def _report(self, sent: int) -> None:
        if self.progress is not None:
            self.progress(sent, self.size)

    def iter_bytes(self) -> Iterator[bytes]:
        yield self.head
        sent = 0
        self._report(0)
        with self.path.open("rb") as handle:
            while chunk := handle.read(self.chunk_size):
                yield chunk
                sent += len(chunk)
                self._report(sent)
        if sent != self.size:
            raise OSError(f"{self.path} changed size while it was being uploaded")
        yield self.tail

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        # Local-disk reads of one chunk are short; a thread per chunk would cost more.
        for chunk in self.iter_bytes():
            yield chunk

    def call(self, path: str, *, timeout: httpx.Timeout | None = None) -> Call:
        return Call(
            "POST",
            path,
            headers=self.headers,
            content=self.iter_bytes,
            acontent=self.aiter_bytes,
            retry=False,
            timeout=timeout,
        )


# ---------------------------------------------------------------------------------------------
# Server-Sent Events


class SSEDecoder:
    """Feed it lines (without their line ending); it returns an Event at each blank line.

    Follows the WHATWG rules: ``:`` starts a comment (keep-alive), ``field: value`` with one
    optional space after the colon, ``data`` lines join with newlines, ``id`` persists, an
    event with no data is dropped. The data is parsed as JSON (a non-JSON payload is kept as
    ``{"raw": text}``).
    """

    def __init__(self) -> None:
        self.last_event_id: str | None = None
        self.retry_ms: int | None = None
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> Event | None:
        line = line.rstrip("\r\n")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> Event | None:
        kind, data_lines = self._event or "message", self._data
        self._event, self._data = "", []
        if not data_lines:
            return None
        text = "\n".join(data_lines)
        try:
            data = json.loads(text)
        except ValueError:
            data = {"raw": text}
        if not isinstance(data, dict):
            data = {"value": data}
        event_id: int | None = None
        if self.last_event_id is not None and self.last_event_id.isdigit():
            event_id = int(self.last_event_id)
        return Event(id=event_id, event=kind, data=data)


def sse_headers(last_event_id: int | None) -> dict[str, str]:
    headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    return headers


# ---------------------------------------------------------------------------------------------
# Downloads


def filename_from(response: httpx.Response, fallback: str) -> str:
    """The file name in Content-Disposition (its last path part only), or the fallback."""
    disposition = response.headers.get("content-disposition", "")
    for part in disposition.split(";"):
        key, _, value = part.strip().partition("=")
        if key.lower() == "filename" and value:
            name = os.path.basename(value.strip().strip('"'))
            if name and name not in (".", ".."):
                return name
    return fallback


def download_target(
    path: str | os.PathLike[str] | None, response: httpx.Response, fallback: str
) -> Path:
    """Where to write: the path given, or inside it when it is a directory (server's name)."""
    name = filename_from(response, fallback)
    if path is None:
        return Path.cwd() / name
    target = Path(path)
    if target.is_dir():
        return target / name
    return target


def temp_path_for(target: Path) -> Path:
    return target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")


class DownloadSink:
    """Writes a streamed body to a temporary file beside the target, hashing as it goes, and
    moves it into place only when complete (and, with ``expected_sha256``, verified)."""

    def __init__(
        self,
        target: Path,
        *,
        expected_sha256: str | None = None,
        progress: Callable[[int, int | None], None] | None = None,
        total: int | None = None,
    ) -> None:
        import hashlib

        self.target = target
        self.tmp = temp_path_for(target)
        self.expected = expected_sha256.strip().lower() if expected_sha256 else None
        self.progress = progress
        self.total = total
        self.received = 0
        self.digest = hashlib.sha256()
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.tmp.open("wb")

    def write(self, chunk: bytes) -> None:
        self._handle.write(chunk)
        self.digest.update(chunk)
        self.received += len(chunk)
        if self.progress is not None:
            self.progress(self.received, self.total)

    def commit(self) -> Path:
        """Close, check the checksum and move into place; a mismatch leaves nothing behind."""
        from service.client.errors import ChecksumMismatch

        self._handle.close()
        actual = self.digest.hexdigest()
        if self.expected is not None and actual != self.expected:
            self.tmp.unlink(missing_ok=True)
            raise ChecksumMismatch(
                f"the download's sha256 is {actual} but the server announced {self.expected}; "
                "nothing was written, download it again"
            )
        self.tmp.replace(self.target)
        return self.target

    def abort(self) -> None:
        self._handle.close()
        self.tmp.unlink(missing_ok=True)

    @property
    def sha256(self) -> str:
        return self.digest.hexdigest()


def content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length")
    return int(value) if value and value.isdigit() else None
