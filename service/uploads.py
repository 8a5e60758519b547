"""Streams a multipart upload to a temporary file, enforcing the size limit as bytes arrive."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from python_multipart.multipart import MultipartParser, parse_options_header

from service.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

MAX_FIELD_BYTES = 64 * 1024
MULTIPART_OVERHEAD = 64 * 1024


@dataclass
class ReceivedUpload:
    """The file part on disk (never whole in memory) and the small text fields beside it."""

    path: Path
    filename: str | None
    size: int
    sha256: str
    fields: dict[str, str] = field(default_factory=dict)
    head: bytes = b""

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def _limit_message(limit: int, setting: str) -> str:
    return (
        f"the upload is larger than the limit of {limit} bytes "
        f"({limit / (1 << 20):.0f} MiB); split the data or ask for {setting} to be raised"
    )


class _Receiver:
    """multipart parser callbacks: the file part goes to disk, other parts to a small dict."""

    def __init__(self, file_field: str, out: BinaryIO, max_bytes: int, setting: str) -> None:
        self.file_field = file_field
        self.out = out
        self.max_bytes = max_bytes
        self.setting = setting
        self.digest = hashlib.sha256()
        self.size = 0
        self.head = b""
        self.filename: str | None = None
        self.fields: dict[str, str] = {}
        self.seen_file = False
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._part_name: str | None = None
        self._part_is_file = False
        self._part_data = bytearray()

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
        }

    def on_part_begin(self) -> None:
        self._disposition = b""
        self._part_name = None
        self._part_is_file = False
        self._part_data = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = b""
        self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name")
        if name is None:
            raise BadRequest("every multipart part needs a Content-Disposition name")
        self._part_name = name.decode("utf-8", "replace")
        if self._part_name == self.file_field:
            if self.seen_file:
                raise BadRequest(f"send exactly one '{self.file_field}' part")
            self.seen_file = True
            self._part_is_file = True
            raw = options.get(b"filename")
            self.filename = raw.decode("utf-8", "replace") if raw is not None else None

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._part_is_file:
            self.size += len(chunk)
            if self.size > self.max_bytes:
                raise PayloadTooLarge(_limit_message(self.max_bytes, self.setting))
            if len(self.head) < 65536:
                self.head += chunk[: 65536 - len(self.head)]
            self.digest.update(chunk)
            self.out.write(chunk)
        else:
            self._part_data += chunk
            if len(self._part_data) > MAX_FIELD_BYTES:
                raise PayloadTooLarge(
                    f"form field '{self._part_name}' is over {MAX_FIELD_BYTES} bytes"
                )

    def on_part_end(self) -> None:
        if not self._part_is_file and self._part_name is not None:
            self.fields[self._part_name] = self._part_data.decode("utf-8", "replace")


async def receive_upload(
    stream: AsyncIterator[bytes],
    *,
    content_type: str | None,
    content_length: str | None,
    max_bytes: int,
    tmp_dir: Path | None,
    file_field: str = "file",
    limit_setting: str = "RIDGELINE_MAX_UPLOAD_BYTES",
) -> ReceivedUpload:
    """Parse a multipart/form-data body chunk by chunk; over the limit is a 413 at once."""
    if not content_type or not content_type.lower().startswith("multipart/form-data"):
        raise UnsupportedMediaType(
            "send the file as multipart/form-data with a 'file' field, e.g. curl -F file=@data.csv"
        )
    if (
        content_length
        and content_length.isdigit()
        and int(content_length) > max_bytes + MULTIPART_OVERHEAD
    ):
        raise PayloadTooLarge(_limit_message(max_bytes, limit_setting))
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise BadRequest("the multipart Content-Type has no boundary")

    fd, name = tempfile.mkstemp(prefix="ridgeline-upload-", dir=tmp_dir)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            receiver = _Receiver(file_field, out, max_bytes, limit_setting)
            parser = MultipartParser(boundary, receiver.callbacks())  # type: ignore[arg-type]
            async for chunk in stream:
                parser.write(chunk)
            parser.finalize()
        if not receiver.seen_file:
            raise BadRequest(
                f"no '{file_field}' part in the form; send the data as -F {file_field}=@PATH"
            )
        return ReceivedUpload(
            path=path,
            filename=receiver.filename,
            size=receiver.size,
            sha256=receiver.digest.hexdigest(),
            fields=receiver.fields,
            head=receiver.head,
        )
    except BaseException as exc:
        path.unlink(missing_ok=True)
        if isinstance(exc, ValueError) and not isinstance(exc, BadRequest):
            raise BadRequest(f"the multipart body is malformed: {exc}") from exc
        raise
