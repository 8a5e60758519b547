"""The blob store contract, on the database, file and s3 stores alike (s3: a real SeaweedFS):
write, ranged read, delete after commit, list, sha256, gc and migrate; and the database store's
integrity checks."""

from __future__ import annotations

import hashlib
import io
import os
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

from service import blobs
from service.blobs.stores import BlobIntegrityError, ObjectMissing
from service.config import Settings
from service.db import Database
from service.migrate import upgrade
from tests.conftest import dispose_database_url, new_database_url

CHUNK = 64 * 1024
STORES = ["database", "file", pytest.param("s3", marks=pytest.mark.s3)]


def _count(db: Database, model: type) -> int:
    with db.transaction(write=False) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def store_uri(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if kind == "database":
        return "database"
    if kind == "file":
        return f"file://{tmp_path / 'store'}"
    request.getfixturevalue("seaweed")
    return f"s3://ridgeline/contract-{uuid.uuid4().hex[:8]}"


def with_store(db: Database, uri: str) -> Database:
    """The test database, seen by a process whose RIDGELINE_BLOB_STORE is `uri`."""
    seaweed_env = {}
    if os.environ.get("RIDGELINE_S3_ENDPOINT_URL"):
        seaweed_env = {
            "s3_endpoint_url": os.environ.get("RIDGELINE_S3_ENDPOINT_URL", ""),
            "s3_region": "us-east-1",
        }
    settings = Settings(
        database_url=db.settings.database_url,
        data_dir=db.settings.data_dir,
        blob_store=uri,
        blob_chunk_bytes=CHUNK,
        **seaweed_env,  # type: ignore[arg-type]
    )
    return Database(settings)


@pytest.fixture(params=STORES)
def sdb(
    request: pytest.FixtureRequest, db: Database, tmp_path: Path, seaweed_endpoint: None
) -> Iterator[Database]:
    database = with_store(db, store_uri(request.param, tmp_path, request))
    yield database
    database.dispose()


@pytest.fixture
def seaweed_endpoint(request: pytest.FixtureRequest) -> Iterator[None]:
    """RIDGELINE_S3_ENDPOINT_URL for `with_store` when an s3 test runs (nothing otherwise)."""
    if "s3" not in request.node.callspec.params.values():
        yield
        return
    server: Any = request.getfixturevalue("seaweed")
    os.environ["RIDGELINE_S3_ENDPOINT_URL"] = server.endpoint
    yield
    os.environ.pop("RIDGELINE_S3_ENDPOINT_URL", None)


def _write(db: Database, payload: bytes, key: str | None = None) -> blobs.Blob:
    key = key or f"t/blobs/{uuid.uuid4()}"
    blob = blobs.write_blob(db, io.BytesIO(payload), tenant_id="t", key=key)
    with db.transaction() as session:
        blobs.mark_complete(session, blob.id)
    return blob


def test_round_trip_and_sha256(sdb: Database) -> None:
    payload = os.urandom(CHUNK * 3 + 123)
    blob = _write(sdb, payload)
    assert blob.store == sdb.settings.blob_store
    assert blob.size_bytes == len(payload)
    assert blob.sha256 == hashlib.sha256(payload).hexdigest()
    assert blobs.read_blob(sdb, blob.id) == payload
    store = blobs.store_at(sdb, blob.store)
    assert store.sha256(blob.object_key) == blob.sha256
    assert store.head(blob.object_key).size == len(payload)


def test_ranged_reads_serve_a_parquet_footer(sdb: Database, tmp_path: Path) -> None:
    table = pa.table({"x": list(range(50_000)), "y": [str(i) for i in range(50_000)]})
    path = tmp_path / "t.parquet"
    pq.write_table(table, path, row_group_size=10_000)
    with path.open("rb") as source:
        blob = blobs.write_blob(sdb, source, tenant_id="t", key="t/datasets/x/part-0.parquet")
    assert pq.ParquetFile(blobs.open_blob(sdb, blob.id)).read().equals(table)
    store = blobs.store_at(sdb, blob.store)
    size = path.stat().st_size
    assert store.read_range(blob.object_key, size - 10, size) == path.read_bytes()[-10:]
    assert store.read_range(blob.object_key, 0, 4) == b"PAR1"


def test_list_and_delete_after_commit(sdb: Database) -> None:
    tenant = f"t{uuid.uuid4().hex[:6]}"
    kept = _write(sdb, b"kept", key=f"{tenant}/jobs/a/artifact.skops")
    gone = _write(sdb, b"gone", key=f"{tenant}/jobs/b/artifact.skops")
    store = blobs.store_at(sdb, kept.store)
    prefix = f"{tenant}/" if kept.key else ""
    listed = {info.key for info in store.list(prefix)}
    assert {kept.object_key, gone.object_key} <= listed
    with pytest.raises(RuntimeError), sdb.transaction() as session:
        blobs.forget_blob(session, gone.id)
        raise RuntimeError("rolled back: the object must survive")
    assert blobs.read_blob(sdb, gone.id) == b"gone"
    with sdb.transaction() as session:
        blobs.forget_blob(session, gone.id)
    with pytest.raises(ObjectMissing):
        store.head(gone.object_key)
    assert gone.object_key not in {info.key for info in store.list(prefix)}
    assert blobs.read_blob(sdb, kept.id) == b"kept"


class _FailingSource(io.RawIOBase):
    def __init__(self) -> None:
        self.calls = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.calls += 1
        if self.calls > 2:
            raise OSError("disk went away")
        return b"x" * (size if size > 0 else CHUNK)


def test_failed_write_leaves_nothing(sdb: Database) -> None:
    before = (_count(sdb, blobs.Blob), _count(sdb, blobs.BlobChunk))
    with pytest.raises(Exception, match="disk went away"):
        blobs.write_blob(sdb, _FailingSource(), tenant_id="t", key="t/blobs/failed")  # type: ignore[arg-type]
    assert (_count(sdb, blobs.Blob), _count(sdb, blobs.BlobChunk)) == before
    if sdb.settings.blob_store != "database":
        store = blobs.store_at(sdb, sdb.settings.blob_store)
        assert "t/blobs/failed" not in {info.key for info in store.list("t/")}


def test_gc_removes_what_no_row_claims(sdb: Database) -> None:
    claimed = _write(sdb, b"claimed")
    stale = blobs.write_blob(sdb, io.BytesIO(b"stale"), tenant_id="t", key="t/blobs/stale")
    with sdb.transaction() as session:
        session.get_one(blobs.Blob, stale.id).created_at -= timedelta(hours=2)
    store = blobs.store_at(sdb, sdb.settings.blob_store)
    orphan = None
    if sdb.settings.blob_store != "database":
        orphan = "t/blobs/orphan"
        store.write(orphan, io.BytesIO(b"no row claims me"))
    first = blobs.collect_garbage(sdb, older_than=timedelta(hours=1))
    assert first.incomplete_rows >= 1
    with sdb.transaction(write=False) as session:
        assert session.get(blobs.Blob, stale.id) is None
    assert orphan is None or not first.orphan_objects, "a fresh orphan is kept until stale"
    if orphan is not None:
        store.head(orphan)
    report = blobs.collect_garbage(sdb, older_than=timedelta(0))
    if orphan is not None:
        assert any(uri.endswith(orphan) for uri in report.orphan_objects)
        with pytest.raises(ObjectMissing):
            store.head(orphan)
    assert blobs.read_blob(sdb, claimed.id) == b"claimed"


@pytest.fixture
def fresh_db(backend: str, tmp_path: Path) -> Iterator[Database]:
    """A database of its own: a migration moves every blob in it."""
    url = new_database_url(backend, tmp_path)
    upgrade(url)
    database = Database(Settings(database_url=url, data_dir=tmp_path / "data"))
    yield database
    database.dispose()
    dispose_database_url(url)


@pytest.mark.parametrize("target", ["file", pytest.param("s3", marks=pytest.mark.s3)])
def test_migrate_there_and_back(
    fresh_db: Database, tmp_path: Path, request: pytest.FixtureRequest, target: str
) -> None:
    if target == "s3":
        os.environ["RIDGELINE_S3_ENDPOINT_URL"] = request.getfixturevalue("seaweed").endpoint
    source = with_store(fresh_db, "database")
    uri = store_uri(target, tmp_path, request)
    there = with_store(fresh_db, uri)
    try:
        payloads = {_write(source, os.urandom(CHUNK + n)).id: n for n in range(3)}
        calls = 0

        def key_of(session: Any, blob: blobs.Blob) -> str:
            nonlocal calls
            calls += 1
            if calls == 2:
                raise KeyboardInterrupt  # interrupted mid-run: the rest stays where it was
            return f"t/blobs/{blob.id}"

        with pytest.raises(KeyboardInterrupt):
            blobs.migrate_blobs(source, to=uri, key_of=key_of)
        report = blobs.migrate_blobs(source, to=uri, key_of=key_of)
        with source.transaction(write=False) as session:
            rows = {b.id: b for b in session.scalars(select(blobs.Blob))}
        for blob_id in payloads:
            assert rows[blob_id].store == there.settings.blob_store or rows[blob_id].store == uri
            assert blobs.read_blob(source, blob_id)  # readable, sha256 checked
        assert report.moved >= 2
        assert not any(b.store == "database" for b in rows.values())
        assert _count(source, blobs.BlobChunk) == 0
        back = blobs.migrate_blobs(there, to="database", key_of=key_of)
        assert back.moved >= 3
        for blob_id in payloads:
            assert len(blobs.read_blob(source, blob_id)) >= CHUNK
    finally:
        source.dispose()
        there.dispose()
        os.environ.pop("RIDGELINE_S3_ENDPOINT_URL", None)


# --------------------------------------------------------------------------- database store


def test_corrupted_chunk_fails_the_sha256(db: Database) -> None:
    blob = _write(db, b"a" * 1000)
    with db.transaction() as session:
        session.get_one(blobs.BlobChunk, (blob.id, 0)).data = b"b" * 1000
    with pytest.raises(BlobIntegrityError):
        blobs.read_blob(db, blob.id)


def test_short_chunk_is_an_integrity_error_not_an_endless_read(
    db: Database, tmp_path: Path
) -> None:
    """Issue 12, item 4: a chunk shorter than recorded made preview and CSV download spin."""
    table = pa.table({"x": list(range(40_000))})
    path = tmp_path / "t.parquet"
    pq.write_table(table, path, row_group_size=5_000)
    database = with_store(db, "database")
    try:
        with path.open("rb") as source:
            blob = blobs.write_blob(database, source, tenant_id="t", key=None)
        with database.transaction() as session:
            chunk = session.get_one(blobs.BlobChunk, (blob.id, 0))
            chunk.data = chunk.data[: len(chunk.data) // 2]
        outcome: list[BaseException | None] = []

        def read() -> None:
            try:
                pq.ParquetFile(blobs.open_blob(database, blob.id)).read()
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout=30)
        assert not reader.is_alive(), "the read still spins after 30 s"
        assert isinstance(outcome[0], BlobIntegrityError), outcome
        assert "chunk 0" in str(outcome[0])
    finally:
        database.dispose()
