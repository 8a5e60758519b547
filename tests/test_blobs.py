"""The chunked blob store on a real database: round trips, random access, failure cleanup."""

from __future__ import annotations

import hashlib
import io
import os
from datetime import timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

from service import blobs
from service.db import Database

CHUNK = 64 * 1024


def _count(db: Database, model: type) -> int:
    with db.transaction(write=False) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_round_trip_in_chunks(db: Database) -> None:
    payload = os.urandom(CHUNK * 3 + 123)
    blob = blobs.write_blob(db.transaction, io.BytesIO(payload), tenant_id="t", chunk_bytes=CHUNK)
    assert blob.n_chunks == 4
    assert blob.size_bytes == len(payload)
    assert blob.sha256 == hashlib.sha256(payload).hexdigest()
    assert blobs.read_blob(db.transaction, blob.id) == payload
    blobs.delete_blob(db.transaction, blob.id)
    with db.transaction(write=False) as session:
        assert session.get(blobs.Blob, blob.id) is None
        left = session.scalar(
            select(func.count())
            .select_from(blobs.BlobChunk)
            .where(blobs.BlobChunk.blob_id == blob.id)
        )
    assert left == 0


def test_reader_seeks_like_a_file(db: Database, tmp_path) -> None:  # type: ignore[no-untyped-def]
    table = pa.table({"x": list(range(50_000)), "y": [str(i) for i in range(50_000)]})
    path = tmp_path / "t.parquet"
    pq.write_table(table, path, row_group_size=10_000)
    with path.open("rb") as source:
        blob = blobs.write_blob(db.transaction, source, tenant_id="t", chunk_bytes=CHUNK)
    reader = io.BufferedReader(blobs.BlobReader(db.transaction, blob.id))
    assert pq.ParquetFile(reader).read().equals(table)
    raw = blobs.BlobReader(db.transaction, blob.id)
    raw.seek(-10, io.SEEK_END)
    assert raw.read(10) == path.read_bytes()[-10:]


def test_corrupted_blob_is_detected(db: Database) -> None:
    blob = blobs.write_blob(
        db.transaction, io.BytesIO(b"a" * 1000), tenant_id="t", chunk_bytes=CHUNK
    )
    with db.transaction() as session:
        session.get_one(blobs.BlobChunk, (blob.id, 0)).data = b"b" * 1000
    with pytest.raises(blobs.BlobIntegrityError):
        blobs.read_blob(db.transaction, blob.id)


class _FailingSource(io.RawIOBase):
    def __init__(self) -> None:
        self.calls = 0

    def read(self, size: int = -1) -> bytes:
        self.calls += 1
        if self.calls > 2:
            raise OSError("disk went away")
        return b"x" * size


def test_failed_write_leaves_nothing(db: Database) -> None:
    before = (_count(db, blobs.Blob), _count(db, blobs.BlobChunk))
    with pytest.raises(OSError):
        blobs.write_blob(db.transaction, _FailingSource(), tenant_id="t", chunk_bytes=CHUNK)  # type: ignore[arg-type]
    assert (_count(db, blobs.Blob), _count(db, blobs.BlobChunk)) == before


def test_reaper_removes_only_stale_incomplete_blobs(db: Database) -> None:
    stale = blobs.write_blob(
        db.transaction, io.BytesIO(b"s" * 10), tenant_id="t", chunk_bytes=CHUNK
    )
    done = blobs.write_blob(db.transaction, io.BytesIO(b"d" * 10), tenant_id="t", chunk_bytes=CHUNK)
    with db.transaction() as session:
        blobs.mark_complete(session, done.id)
        session.get_one(blobs.Blob, stale.id).created_at -= timedelta(hours=2)
        session.get_one(blobs.Blob, done.id).created_at -= timedelta(hours=2)
    assert blobs.reap_incomplete_blobs(db.transaction, older_than=timedelta(hours=1)) >= 1
    with db.transaction(write=False) as session:
        assert session.get(blobs.Blob, stale.id) is None
        assert session.get(blobs.Blob, done.id) is not None
