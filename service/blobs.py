"""Chunked blob store in the database: datasets and model artifacts live beside their rows."""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import BinaryIO

from sqlalchemy import BigInteger, ForeignKey, Integer, LargeBinary, String, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from service.db import Base, UTCDateTime, new_id, utcnow
from service.errors import ServiceError

TransactionFactory = Callable[[], AbstractContextManager[Session]]


class Blob(Base):
    __tablename__ = "blobs"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64))
    chunk_bytes: Mapped[int] = mapped_column(Integer)
    n_chunks: Mapped[int] = mapped_column(Integer, default=0)
    # False while chunks are still arriving; such blobs are invisible and reaped when stale.
    complete: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class BlobChunk(Base):
    __tablename__ = "blob_chunks"

    blob_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("blobs.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class BlobIntegrityError(ServiceError):
    """A blob's bytes no longer hash to the sha256 recorded when it was written."""

    status = 500
    title = "Stored Data Corrupted"
    type_slug = "integrity"


def write_blob(
    transaction: TransactionFactory,
    source: BinaryIO,
    *,
    tenant_id: str,
    chunk_bytes: int,
) -> Blob:
    """Stream a file into chunks, one short transaction per chunk; returns an incomplete blob.

    The caller marks it complete in the transaction that makes its owner row visible, so a
    reader never sees half a blob. On failure the partial blob is deleted before re-raising.
    """
    with transaction() as session:
        blob = Blob(tenant_id=tenant_id, chunk_bytes=chunk_bytes, complete=False)
        session.add(blob)
        session.flush()
        blob_id = blob.id
    digest = hashlib.sha256()
    size = 0
    seq = 0
    try:
        while data := source.read(chunk_bytes):
            digest.update(data)
            size += len(data)
            with transaction() as session:
                session.add(BlobChunk(blob_id=blob_id, seq=seq, data=data))
            seq += 1
        with transaction() as session:
            stored = session.get_one(Blob, blob_id)
            stored.size_bytes = size
            stored.sha256 = digest.hexdigest()
            stored.n_chunks = seq
            return stored
    except BaseException:
        delete_blob(transaction, blob_id)
        raise


def delete_blob(transaction: TransactionFactory, blob_id: uuid.UUID) -> None:
    """Remove a blob and its chunks (chunks first, in short transactions, for big blobs)."""
    while True:
        with transaction() as session:
            seqs = session.scalars(
                select(BlobChunk.seq).where(BlobChunk.blob_id == blob_id).limit(16)
            ).all()
            if not seqs:
                session.execute(delete(Blob).where(Blob.id == blob_id))
                return
            session.execute(
                delete(BlobChunk).where(BlobChunk.blob_id == blob_id, BlobChunk.seq.in_(seqs))
            )


def mark_complete(session: Session, blob_id: uuid.UUID) -> None:
    session.get_one(Blob, blob_id).complete = True


def iter_blob(
    transaction: TransactionFactory, blob_id: uuid.UUID, *, verify: bool = True
) -> Iterator[bytes]:
    """Stream a blob's bytes chunk by chunk, each chunk read in its own short transaction."""
    with transaction() as session:
        blob = session.get_one(Blob, blob_id)
        n_chunks, expected = blob.n_chunks, blob.sha256
    digest = hashlib.sha256()
    for seq in range(n_chunks):
        with transaction() as session:
            data = session.scalar(
                select(BlobChunk.data).where(BlobChunk.blob_id == blob_id, BlobChunk.seq == seq)
            )
        if data is None:
            raise BlobIntegrityError(f"blob {blob_id} is missing chunk {seq}")
        digest.update(data)
        yield data
    if verify and digest.hexdigest() != expected:
        raise BlobIntegrityError(f"blob {blob_id} does not match its sha256")


def read_blob(transaction: TransactionFactory, blob_id: uuid.UUID) -> bytes:
    """The whole blob in memory, verified: for artifacts, which are small."""
    return b"".join(iter_blob(transaction, blob_id))


def copy_blob_to(transaction: TransactionFactory, blob_id: uuid.UUID, target: BinaryIO) -> None:
    for data in iter_blob(transaction, blob_id):
        target.write(data)


class BlobReader(io.RawIOBase):
    """A seekable read-only file over a blob, so pyarrow can read a Parquet footer lazily."""

    def __init__(self, transaction: TransactionFactory, blob_id: uuid.UUID) -> None:
        super().__init__()
        self._transaction = transaction
        self._blob_id = blob_id
        with transaction() as session:
            blob = session.get_one(Blob, blob_id)
            self._size, self._chunk_bytes = blob.size_bytes, blob.chunk_bytes
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

    def _chunk(self, seq: int) -> bytes:
        if seq not in self._cache:
            if len(self._cache) >= 4:
                self._cache.pop(next(iter(self._cache)))
            with self._transaction() as session:
                data = session.scalar(
                    select(BlobChunk.data).where(
                        BlobChunk.blob_id == self._blob_id, BlobChunk.seq == seq
                    )
                )
            if data is None:
                raise BlobIntegrityError(f"blob {self._blob_id} is missing chunk {seq}")
            self._cache[seq] = data
        return self._cache[seq]

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        wanted = min(len(buffer), self._size - self._pos)
        written = 0
        while written < wanted:
            seq, offset = divmod(self._pos, self._chunk_bytes)
            piece = self._chunk(seq)[offset : offset + wanted - written]
            buffer[written : written + len(piece)] = piece
            written += len(piece)
            self._pos += len(piece)
        return written


def reap_incomplete_blobs(transaction: TransactionFactory, *, older_than: timedelta) -> int:
    """Delete blobs whose writer died mid-upload; returns how many were removed."""
    cutoff = utcnow() - older_than
    with transaction() as session:
        stale = session.scalars(
            select(Blob.id).where(Blob.complete.is_(False), Blob.created_at < cutoff)
        ).all()
    for blob_id in stale:
        delete_blob(transaction, blob_id)
    return len(stale)
