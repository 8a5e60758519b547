"""Where blob bytes live: one `BlobStore` protocol, three stores (database, s3, file).

The `s3` and `file` stores are obstore (the Rust `object_store` crate): streamed multipart
puts, ranged gets, listing with ETags, and presigned URLs for later; credentials come from the
standard AWS variables (or a profile through boto3's provider when AWS_PROFILE is set). The
`database` store keeps chunks in `blob_chunks` (the embedded default). Store errors become
`ServiceError`s here: unreachable is a 503 with Retry-After, like the database.
"""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol
from urllib.parse import unquote, urlsplit

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from service.blobs.models import DATABASE, Blob, BlobChunk
from service.errors import Forbidden, NotFound, ServiceError, ServiceUnavailable

if TYPE_CHECKING:
    from obstore.store import RetryConfig
else:
    RetryConfig = dict

TransactionFactory = Callable[[], AbstractContextManager[Session]]

STORE_RETRY_AFTER_SECONDS = 5
#: Pieces of a multipart upload, and how many go up at once.
PART_BYTES = 16 << 20
PART_CONCURRENCY = 4
READ_BUFFER = 4 << 20


class BlobIntegrityError(ServiceError):
    """A blob's bytes no longer hash to the sha256 recorded when it was written."""

    status = 500
    title = "Stored Data Corrupted"
    type_slug = "integrity"


class StoreUnavailable(ServiceUnavailable):
    """The blob store did not answer; nothing was registered, retry later."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"Retry-After": str(STORE_RETRY_AFTER_SECONDS)})


class ObjectMissing(NotFound):
    """No object at this key."""


class StoreDenied(Forbidden):
    """The server's credentials may not do this."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str | None
    modified: datetime | None


@dataclass(frozen=True)
class Written:
    size: int
    sha256: str
    etag: str | None


class BlobStore(Protocol):
    """Streamed write, streamed and ranged read, delete, list, sha256: all a store must do."""

    uri: str

    def write(self, key: str, source: BinaryIO) -> Written:
        """Store everything `source` yields under `key`, replacing what was there."""
        ...

    def write_chunks(self, key: str, chunks: Iterator[bytes]) -> Written:
        """Store the chunks (another store's stream: a copy between stores)."""
        ...

    def write_file(self, key: str, path: Path) -> Written:
        """Store a local file (a converted upload): the fastest way in for each store."""
        ...

    def open(self, key: str) -> BinaryIO:
        """A seekable reader whose reads are ranged requests (Parquet footers, row groups)."""
        ...

    def read_range(self, key: str, start: int, end: int) -> bytes: ...

    def iter_bytes(self, key: str) -> Iterator[bytes]: ...

    def head(self, key: str) -> ObjectInfo: ...

    def delete(self, key: str) -> None:
        """Remove the object; a missing one is not an error."""
        ...

    def list(self, prefix: str) -> Iterator[ObjectInfo]: ...

    def sha256(self, key: str) -> str: ...


class _Hashing(io.RawIOBase):
    """Counts and hashes what a store reads from the source, so a write needs one pass."""

    def __init__(self, source: BinaryIO) -> None:
        super().__init__()
        self.source = source
        self.digest = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        self.digest.update(data)
        self.size += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def sha256_of(chunks: Iterator[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------- s3 and file


def _describe(exc: BaseException) -> str:
    return str(exc).split("\n\nDebug source:", 1)[0].strip()[:500]


@contextmanager
def _translated(uri: str, key: str) -> Iterator[None]:
    """obstore's exceptions as the service's: missing, denied, or unavailable (retry)."""
    from obstore.exceptions import (
        AlreadyExistsError,
        BaseError,
        NotFoundError,
        NotSupportedError,
        PermissionDeniedError,
        PreconditionError,
        UnauthenticatedError,
    )

    try:
        yield
    except (FileNotFoundError, NotFoundError) as exc:
        raise ObjectMissing(f"no object {key!r} in {uri}") from exc
    except (PermissionDeniedError, UnauthenticatedError) as exc:
        raise StoreDenied(
            f"the server's credentials may not access {key!r} in {uri}: {_describe(exc)}"
        ) from exc
    except (PreconditionError, AlreadyExistsError, NotSupportedError):
        raise
    except (BaseError, OSError) as exc:  # GenericError: connection refused, timeouts, 5xx
        if "403 Forbidden" in str(exc):  # a listing's 403 is not classified by obstore
            raise StoreDenied(
                f"the server's credentials may not access {key!r} in {uri}: {_describe(exc)}"
            ) from exc
        raise StoreUnavailable(
            f"the blob store {uri} is unreachable or failing ({_describe(exc)}); nothing was "
            "stored, retry after a few seconds"
        ) from exc


class ObjectStoreBlobs:
    """An obstore store (S3-compatible or a local directory) behind the BlobStore protocol."""

    def __init__(self, uri: str, store: Any) -> None:
        self.uri = uri
        self.store = store

    def write(self, key: str, source: BinaryIO) -> Written:
        import obstore

        hashing = _Hashing(source)
        with _translated(self.uri, key):
            result = obstore.put(
                self.store,
                key,
                iter(lambda: hashing.read(PART_BYTES), b""),
                chunk_size=PART_BYTES,
                max_concurrency=PART_CONCURRENCY,
            )
        return Written(hashing.size, hashing.digest.hexdigest(), result.get("e_tag"))

    def write_file(self, key: str, path: Path) -> Written:
        """obstore reads the file itself (its parts in parallel, twice as fast as feeding it
        from Python), while this thread hashes it."""
        import obstore

        with (
            ThreadPoolExecutor(1, thread_name_prefix="blob-put") as pool,
            _translated(self.uri, key),
        ):
            put = pool.submit(
                obstore.put,
                self.store,
                key,
                path,
                chunk_size=PART_BYTES,
                max_concurrency=PART_CONCURRENCY,
            )
            with path.open("rb") as source:
                digest = hashlib.file_digest(source, "sha256")
            result = put.result()
        return Written(path.stat().st_size, digest.hexdigest(), result.get("e_tag"))

    def write_chunks(self, key: str, chunks: Iterator[bytes]) -> Written:
        """Written from this thread (a put that pulled from another obstore stream would
        start a runtime inside the runtime)."""
        import obstore

        digest, size = hashlib.sha256(), 0
        with (
            _translated(self.uri, key),
            obstore.open_writer(
                self.store, key, buffer_size=PART_BYTES, max_concurrency=PART_CONCURRENCY
            ) as writer,
        ):
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                writer.write(chunk)
        return Written(size, digest.hexdigest(), None)

    def open(self, key: str) -> BinaryIO:
        import obstore

        with _translated(self.uri, key):
            reader = obstore.open_reader(self.store, key, buffer_size=READ_BUFFER)
        return _TranslatingReader(reader, self.uri, key)  # type: ignore[return-value]

    def read_range(self, key: str, start: int, end: int) -> bytes:
        import obstore

        with _translated(self.uri, key):
            return bytes(obstore.get_range(self.store, key, start=start, end=end))

    def iter_bytes(self, key: str) -> Iterator[bytes]:
        import obstore

        with _translated(self.uri, key):
            stream = obstore.get(self.store, key).stream(min_chunk_size=READ_BUFFER)
            for chunk in stream:
                yield bytes(chunk)

    def head(self, key: str) -> ObjectInfo:
        import obstore

        with _translated(self.uri, key):
            return _info(obstore.head(self.store, key))

    def delete(self, key: str) -> None:
        import obstore

        try:
            with _translated(self.uri, key):
                obstore.delete(self.store, key)
        except ObjectMissing:
            pass

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        import obstore

        with _translated(self.uri, prefix):
            for batch in obstore.list(self.store, prefix or None):
                for meta in batch:
                    yield _info(meta)

    def sha256(self, key: str) -> str:
        return sha256_of(self.iter_bytes(key))


def _info(meta: Any) -> ObjectInfo:
    return ObjectInfo(meta["path"], int(meta["size"]), meta.get("e_tag"), meta.get("last_modified"))


class _TranslatingReader(io.RawIOBase):
    """obstore's seekable reader, with its errors turned into the service's."""

    def __init__(self, reader: Any, uri: str, key: str) -> None:
        super().__init__()
        self._reader, self._uri, self._key = reader, uri, key

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return int(self._reader.seek(offset, whence))

    def tell(self) -> int:
        return int(self._reader.tell())

    def readinto(self, buffer: Any) -> int:
        with _translated(self._uri, self._key):
            data = self._reader.read(len(buffer))
        view = memoryview(data)
        buffer[: len(view)] = view
        return len(view)

    def close(self) -> None:
        self._reader.close()
        super().close()


# --------------------------------------------------------------------------- database


class DatabaseStore:
    """Chunks in `blob_chunks`, one short transaction per chunk; the key is the blob's id."""

    uri = DATABASE

    def __init__(self, transaction: TransactionFactory, chunk_bytes: int) -> None:
        self.transaction = transaction
        self.chunk_bytes = chunk_bytes

    def write(self, key: str, source: BinaryIO) -> Written:
        blob_id = uuid.UUID(key)
        self.delete(key)
        digest = hashlib.sha256()
        size = seq = 0
        while data := source.read(self.chunk_bytes):
            digest.update(data)
            size += len(data)
            with self.transaction() as session:
                session.add(BlobChunk(blob_id=blob_id, seq=seq, data=data))
            seq += 1
        with self.transaction() as session:
            blob = session.get_one(Blob, blob_id)
            blob.chunk_bytes, blob.n_chunks = self.chunk_bytes, seq
        return Written(size, digest.hexdigest(), None)

    def write_file(self, key: str, path: Path) -> Written:
        with path.open("rb") as source:
            return self.write(key, source)

    def write_chunks(self, key: str, chunks: Iterator[bytes]) -> Written:
        with io.BufferedReader(IterReader(chunks), buffer_size=self.chunk_bytes) as reader:
            return self.write(key, reader)

    def _layout(self, key: str) -> tuple[int, int, int]:
        """(size, chunk_bytes, n_chunks) as recorded when the blob was written."""
        with self.transaction() as session:
            blob = session.get(Blob, uuid.UUID(key))
            if blob is None:
                raise ObjectMissing(f"no blob {key} in the database")
            return blob.size_bytes, blob.chunk_bytes, blob.n_chunks

    def chunk(self, key: str, seq: int) -> bytes:
        """One chunk; a missing one is an integrity error (never an endless read)."""
        with self.transaction() as session:
            data = session.scalar(
                select(BlobChunk.data).where(
                    BlobChunk.blob_id == uuid.UUID(key), BlobChunk.seq == seq
                )
            )
        if data is None:
            raise BlobIntegrityError(f"blob {key} is missing chunk {seq}")
        return bytes(data)

    def open(self, key: str) -> BinaryIO:
        size, chunk_bytes, n_chunks = self._layout(key)
        return io.BufferedReader(
            ChunkReader(self, key, size, chunk_bytes, n_chunks), buffer_size=READ_BUFFER
        )

    def read_range(self, key: str, start: int, end: int) -> bytes:
        with self.open(key) as reader:
            reader.seek(start)
            return reader.read(max(0, end - start))

    def iter_bytes(self, key: str) -> Iterator[bytes]:
        _, _, n_chunks = self._layout(key)
        for seq in range(n_chunks):
            yield self.chunk(key, seq)

    def head(self, key: str) -> ObjectInfo:
        size, _, _ = self._layout(key)
        return ObjectInfo(key, size, None, None)

    def delete(self, key: str) -> None:
        """Chunks go in short transactions of 16 (a big blob must not hold the write lock)."""
        blob_id = uuid.UUID(key)
        while True:
            with self.transaction() as session:
                seqs = session.scalars(
                    select(BlobChunk.seq).where(BlobChunk.blob_id == blob_id).limit(16)
                ).all()
                if not seqs:
                    return
                session.execute(
                    delete(BlobChunk).where(BlobChunk.blob_id == blob_id, BlobChunk.seq.in_(seqs))
                )

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        with self.transaction() as session:
            rows = session.execute(
                select(BlobChunk.blob_id, func.coalesce(func.max(Blob.size_bytes), 0))
                .outerjoin(Blob, Blob.id == BlobChunk.blob_id)
                .group_by(BlobChunk.blob_id)
            ).all()
        for blob_id, size in rows:
            key = str(blob_id)
            if key.startswith(prefix):
                yield ObjectInfo(key, int(size), None, None)

    def sha256(self, key: str) -> str:
        return sha256_of(self.iter_bytes(key))


class ChunkReader(io.RawIOBase):
    """A seekable read-only file over a chunked blob, so pyarrow can read a footer lazily."""

    def __init__(
        self, store: DatabaseStore, key: str, size: int, chunk_bytes: int, n_chunks: int
    ) -> None:
        super().__init__()
        self._store, self._key = store, key
        self._size, self._chunk_bytes, self._n_chunks = size, chunk_bytes, n_chunks
        self._pos = 0
        self._cache: dict[int, bytes] = {}

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def _expected_length(self, seq: int) -> int:
        if seq >= self._n_chunks:
            return 0
        return min(self._chunk_bytes, self._size - seq * self._chunk_bytes)

    def _chunk(self, seq: int) -> bytes:
        if seq not in self._cache:
            if len(self._cache) >= 4:
                self._cache.pop(next(iter(self._cache)))
            data = self._store.chunk(self._key, seq)
            if len(data) != self._expected_length(seq):
                raise BlobIntegrityError(
                    f"blob {self._key} chunk {seq} holds {len(data)} bytes where "
                    f"{self._expected_length(seq)} were written; the stored data is damaged"
                )
            self._cache[seq] = data
        return self._cache[seq]

    def readinto(self, buffer: Any) -> int:
        wanted = min(len(buffer), self._size - self._pos)
        written = 0
        while written < wanted:
            seq, offset = divmod(self._pos, self._chunk_bytes)
            piece = self._chunk(seq)[offset : offset + wanted - written]
            buffer[written : written + len(piece)] = piece
            written += len(piece)
            self._pos += len(piece)
        return max(written, 0)


class IterReader(io.RawIOBase):
    """A file over an iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        super().__init__()
        self._chunks = chunks
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._buffer:
            self._buffer = next(self._chunks, b"")
            if not self._buffer:
                return 0
        n = min(len(buffer), len(self._buffer))
        buffer[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


# --------------------------------------------------------------------------- naming stores


@dataclass(frozen=True)
class StoreLocation:
    """A parsed store URI: scheme ('s3' or 'file'), bucket (s3) and prefix or root path."""

    scheme: str
    bucket: str
    path: str

    @property
    def uri(self) -> str:
        if self.scheme == "s3":
            return f"s3://{self.bucket}/{self.path}".rstrip("/")
        return f"file://{self.path}"


def parse_store_uri(uri: str) -> StoreLocation:
    """'s3://bucket/prefix' or 'file:///abs/path' (or a plain absolute path); ValueError else."""
    parts = urlsplit(uri.strip())
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ValueError(f"{uri!r} names no bucket; write s3://bucket/prefix")
        return StoreLocation("s3", parts.netloc, unquote(parts.path).strip("/"))
    if parts.scheme == "file" or (not parts.scheme and uri.startswith("/")):
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"{uri!r}: a file URI has three slashes, file:///path")
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise ValueError(f"{uri!r} is not an absolute path")
        return StoreLocation("file", "", os.path.normpath(path))
    raise ValueError(f"{uri!r} is neither s3://bucket/prefix nor file:///path")


RETRIES: RetryConfig = {
    "max_retries": 3,
    "retry_timeout": timedelta(seconds=15),
    "backoff": {
        "init_backoff": timedelta(milliseconds=100),
        "max_backoff": timedelta(seconds=2),
        "base": 2,
    },
}


def s3_store(bucket: str, *, endpoint_url: str, region: str, prefix: str = "") -> Any:
    """An obstore S3Store: credentials from AWS_* variables, or AWS_PROFILE through boto3."""
    from obstore.store import S3Store

    config: dict[str, Any] = {"virtual_hosted_style_request": False} if endpoint_url else {}
    if endpoint_url:
        config["endpoint"] = endpoint_url
    if region:
        config["region"] = region
    provider = None
    if os.environ.get("AWS_PROFILE") and not os.environ.get("AWS_ACCESS_KEY_ID"):
        from obstore.auth.boto3 import Boto3CredentialProvider

        provider = Boto3CredentialProvider()
    return S3Store(
        bucket,
        prefix=prefix or None,
        client_options={
            "allow_http": endpoint_url.startswith("http://"),
            "connect_timeout": "5s",
            "timeout": "300s",
        },
        retry_config=RETRIES,
        credential_provider=provider,
        **config,
    )


@lru_cache(maxsize=64)
def object_store(uri: str, endpoint_url: str = "", region: str = "") -> ObjectStoreBlobs:
    """The s3 or file store at `uri` (cached: obstore stores keep connection pools)."""
    from obstore.store import LocalStore

    location = parse_store_uri(uri)
    if location.scheme == "s3":
        store = s3_store(
            location.bucket, endpoint_url=endpoint_url, region=region, prefix=location.path
        )
    else:
        Path(location.path).mkdir(parents=True, exist_ok=True)
        store = LocalStore(location.path, mkdir=True)
    return ObjectStoreBlobs(location.uri, store)
