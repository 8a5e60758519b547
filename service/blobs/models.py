"""Blob rows: each names its store and key; database chunks live beside them."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, UTCDateTime, new_id, utcnow

#: The store of chunks in the database itself (the key is the blob's id).
DATABASE = "database"


class Blob(Base):
    __tablename__ = "blobs"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(String(64), index=True)
    # Where the bytes are: "database" (chunks below) or an s3:// or file:// store URI.
    store: Mapped[str] = mapped_column(String(512), default=DATABASE, server_default=DATABASE)
    # The object's key in that store; None in the database store (the key is the id).
    key: Mapped[str | None] = mapped_column(String(1024))
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64))
    chunk_bytes: Mapped[int] = mapped_column(Integer, default=0)
    n_chunks: Mapped[int] = mapped_column(Integer, default=0)
    # False while bytes are still arriving; such blobs are invisible and reaped when stale.
    complete: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def object_key(self) -> str:
        return self.key or str(self.id)


class BlobChunk(Base):
    __tablename__ = "blob_chunks"

    blob_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("blobs.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
