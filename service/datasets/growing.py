"""Read a file while another process still writes it, so storing overlaps converting.

The ingest child writes its Parquet sequentially (row groups, then the footer), so its bytes can
go to the blob store as they appear instead of after the child exits. A pass that meets a type
surprise deletes the file and writes it again; the reader then holds the old file, and
`complete()` says so: the caller stores the finished file instead.
"""

from __future__ import annotations

import io
import os
from concurrent.futures import Future, wait
from pathlib import Path
from typing import Any, BinaryIO

#: How long a reader waits for the file to grow before looking again (the writer finishing
#: wakes it at once).
POLL_SECONDS = 0.05


class GrowingFile(io.RawIOBase):
    """`path` as `writer` writes it: reads block until `size` bytes exist or the writer is done.

    Reads return full sizes until the end (the database store's chunks must all be full but the
    last). A writer that fails ends the stream early; the caller learns why from the future.
    """

    def __init__(self, path: Path, writer: Future[Any]) -> None:
        super().__init__()
        self.path = path
        self.writer = writer
        self.handle: BinaryIO | None = None
        self.offset = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            size = 1 << 62
        parts: list[bytes] = []
        wanted = size
        while wanted:
            finished = self.writer.done()  # before reading: no byte written later is missed
            data = self._read_some(wanted)
            if data:
                parts.append(data)
                wanted -= len(data)
            elif finished:
                break
            else:
                wait([self.writer], timeout=POLL_SECONDS)
        return b"".join(parts)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _read_some(self, size: int) -> bytes:
        if self.handle is None:
            try:
                self.handle = self.path.open("rb")
            except FileNotFoundError:
                return b""
        data = self.handle.read(size)
        self.offset += len(data)
        return data

    def complete(self) -> bool:
        """Whether what was read is the whole finished file (not one a later pass replaced)."""
        if self.handle is None:
            return False
        try:
            now = self.path.stat()
        except FileNotFoundError:
            return False
        held = os.fstat(self.handle.fileno())
        return (held.st_ino, held.st_dev) == (now.st_ino, now.st_dev) and self.offset == now.st_size

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
        super().close()
