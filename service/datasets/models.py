"""A stored dataset: immutable, a normalized Parquet blob (or parts by reference) plus its
schema and statistics."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.blobs import Blob
from service.db import Base, UTCDateTime, new_id, utcnow

IMPORTING, READY, FAILED = "importing", "ready", "failed"
#: How the data came: a multipart upload, or an import by URI that copied it or only refers to it.
UPLOAD, COPY, REFERENCE = "upload", "copy", "reference"


class Dataset(Base):
    __tablename__ = "datasets"
    __table_args__ = (Index("ix_datasets_tenant_created", "tenant_id", "created_at", "id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(255))
    format: Mapped[str] = mapped_column(String(16))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    n_rows: Mapped[int] = mapped_column(BigInteger)
    n_columns: Mapped[int] = mapped_column(Integer)
    columns: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    delimiter: Mapped[str | None] = mapped_column(String(4))
    # None while importing, and for data registered by reference (it stays where it lies).
    blob_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("blobs.id", ondelete="RESTRICT"))
    stored_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default=READY, server_default=READY)
    error: Mapped[str | None] = mapped_column(Text)
    mode: Mapped[str] = mapped_column(String(16), default=UPLOAD, server_default=UPLOAD)
    source_uri: Mapped[str | None] = mapped_column(Text)
    # By reference: each part's URI, size, ETag and modification time (sha256 for file://).
    parts: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    import_job_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)

    blob: Mapped[Blob | None] = relationship(lazy="joined")

    @property
    def uri(self) -> str | None:
        """Where other programs (Spark, pyarrow) read the data; None in the database store."""
        if self.mode == REFERENCE:
            return self.source_uri
        blob = self.blob
        if blob is None or blob.key is None:
            return None
        return f"{blob.store}/{blob.key.rsplit('/', 1)[0]}/"
