"""Blob rows and what is done with them: write, read, delete after commit, gc, migrate.

A blob row names its store (`database`, `s3://bucket/prefix`, `file:///path`) and its key in
it, so changing `RIDGELINE_BLOB_STORE` keeps old blobs readable. Bytes are written before the
row turns complete; objects are removed only after the row deletion commits; the collector
removes objects that no row claims.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import event, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from service.blobs.models import DATABASE, Blob, BlobChunk
from service.blobs.stores import (
    BlobIntegrityError,
    BlobStore,
    DatabaseStore,
    ObjectInfo,
    Written,
    object_store,
)
from service.config import Settings, get_settings
from service.db import Database, utcnow
from service.errors import ServiceError

__all__ = ["DATABASE", "Blob", "BlobChunk", "BlobIntegrityError"]

logger = logging.getLogger("ridgeline.blobs")

AFTER_COMMIT = "ridgeline_after_commit"


# --------------------------------------------------------------------------- stores


def store_at(db: Database, uri: str) -> BlobStore:
    """The store a blob row names (or the configured default's URI)."""
    settings = db.settings
    if uri == DATABASE:
        return DatabaseStore(db.transaction, settings.blob_chunk_bytes)
    return object_store(uri, settings.s3_endpoint_url, settings.s3_region)


def default_store(db: Database) -> BlobStore:
    return store_at(db, db.settings.blob_store)


def dataset_key(tenant_id: str, dataset_id: uuid.UUID) -> str:
    """Plain Parquet any program reads: <tenant>/datasets/<id>/part-00000.parquet."""
    return f"{tenant_id}/datasets/{dataset_id}/part-00000.parquet"


def artifact_key(tenant_id: str, job_id: uuid.UUID, kind: str | None) -> str:
    return f"{tenant_id}/jobs/{job_id}/artifact.{kind or 'bin'}"


def _row(db: Database, blob_id: uuid.UUID) -> tuple[str, str]:
    with db.transaction(write=False) as session:
        blob = session.get(Blob, blob_id)
        if blob is None:
            raise BlobIntegrityError(f"blob {blob_id} has no row")
        return blob.store, blob.object_key


# --------------------------------------------------------------------------- write


def write_blob(db: Database, source: BinaryIO | Path, *, tenant_id: str, key: str | None) -> Blob:
    """Stream `source` into the default store; returns an incomplete blob row.

    The caller marks it complete in the transaction that makes its owner row visible, so a
    reader never sees half a blob. On failure the object and the row are removed, then re-raised.
    `key` names the object in an s3 or file store; the database store keys by the row's id.
    """
    store = default_store(db)
    with db.transaction() as session:
        blob = Blob(
            tenant_id=tenant_id,
            store=store.uri,
            key=None if store.uri == DATABASE else key,
            chunk_bytes=0,
            complete=False,
        )
        session.add(blob)
        session.flush()
        blob_id, object_key = blob.id, blob.object_key
    try:
        if isinstance(source, Path):
            written = store.write_file(object_key, source)
        else:
            written = store.write(object_key, source)
        with db.transaction() as session:
            stored = session.get_one(Blob, blob_id)
            stored.size_bytes, stored.sha256 = written.size, written.sha256
            return stored
    except BaseException:
        delete_blob(db, blob_id)
        raise


def mark_complete(session: Session, blob_id: uuid.UUID) -> None:
    session.get_one(Blob, blob_id).complete = True


# --------------------------------------------------------------------------- read


def open_blob(db: Database, blob_id: uuid.UUID) -> BinaryIO:
    """A seekable reader (ranged reads): pyarrow reads a Parquet footer and one row group."""
    uri, key = _row(db, blob_id)
    return store_at(db, uri).open(key)


def iter_blob(db: Database, blob_id: uuid.UUID, *, verify: bool = True) -> Iterator[bytes]:
    """Stream a blob's bytes; the sha256 recorded at write time is checked at the end."""
    with db.transaction(write=False) as session:
        blob = session.get_one(Blob, blob_id)
        uri, key, expected = blob.store, blob.object_key, blob.sha256
    import hashlib

    digest = hashlib.sha256()
    for data in store_at(db, uri).iter_bytes(key):
        digest.update(data)
        yield data
    if verify and digest.hexdigest() != expected:
        raise BlobIntegrityError(f"blob {blob_id} does not match its sha256")


def blob_size(db: Database, blob_id: uuid.UUID) -> int:
    """The byte count recorded at write time, so a reader can size its buffer up front."""
    with db.transaction(write=False) as session:
        return session.get_one(Blob, blob_id).size_bytes


def read_blob(db: Database, blob_id: uuid.UUID) -> bytes:
    """The whole blob in memory, verified: for artifacts, which are small."""
    return b"".join(iter_blob(db, blob_id))


def copy_blob_to(db: Database, blob_id: uuid.UUID, target: BinaryIO) -> None:
    for data in iter_blob(db, blob_id):
        target.write(data)


# --------------------------------------------------------------------------- delete


def delete_blob(db: Database, blob_id: uuid.UUID) -> None:
    """Remove a blob (a failed, superseded or abandoned write).

    An s3 or file object goes after its row, so a row that something still refers to (the
    deletion fails) keeps its bytes; an object left behind is the collector's. Database chunks
    go first, in short transactions (one big one would hold SQLite's write lock).
    """
    with db.transaction() as session:
        blob = session.get(Blob, blob_id)
        if blob is None:
            return
        uri, key = blob.store, blob.object_key
        if uri != DATABASE:
            session.delete(blob)
    try:
        store_at(db, uri).delete(key)
    except Exception as exc:  # the collector removes what is left once the row is gone
        logger.warning("could not delete blob %s from %s: %s", blob_id, uri, exc)
    if uri == DATABASE:
        with db.transaction() as session:
            doomed = session.get(Blob, blob_id)
            if doomed is not None:
                session.delete(doomed)


def forget_blob(session: Session, blob_id: uuid.UUID | None) -> None:
    """Delete the row in the caller's transaction; its object goes once that commits.

    Database chunks go with the row (ON DELETE CASCADE); an s3 or file object is deleted
    after the commit, so a rolled-back deletion never loses bytes.
    """
    if blob_id is None:
        return
    blob = session.get(Blob, blob_id)
    if blob is None:
        return
    if blob.store != DATABASE:
        settings: Settings = session.info.get("settings") or get_settings()
        store = object_store(blob.store, settings.s3_endpoint_url, settings.s3_region)
        session.info.setdefault(AFTER_COMMIT, []).append((store, blob.object_key))
    session.delete(blob)


@event.listens_for(Session, "after_commit")
def _delete_objects(session: Session) -> None:
    for store, key in session.info.pop(AFTER_COMMIT, []):
        try:
            store.delete(key)
        except Exception as exc:
            logger.warning("could not delete %s from %s (gc will): %s", key, store.uri, exc)


@event.listens_for(Session, "after_rollback")
def _keep_objects(session: Session) -> None:
    session.info.pop(AFTER_COMMIT, None)


# --------------------------------------------------------------------------- collect


@dataclass
class GcReport:
    incomplete_rows: int = 0
    orphan_objects: list[str] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)


def reap_incomplete_blobs(db: Database, *, older_than: timedelta) -> int:
    """Delete blobs whose writer died mid-write; returns how many were removed."""
    cutoff = utcnow() - older_than
    with db.transaction(write=False) as session:
        stale = session.scalars(
            select(Blob.id).where(Blob.complete.is_(False), Blob.created_at < cutoff)
        ).all()
    removed = 0
    for blob_id in stale:
        try:
            delete_blob(db, blob_id)
            removed += 1
        except DBAPIError as exc:  # a row refers to it after all: leave it be
            logger.warning("kept incomplete blob %s: %s", blob_id, exc.orig)
    return removed


def collect_garbage(db: Database, *, older_than: timedelta) -> GcReport:
    """Reap stale incomplete rows, then remove objects no row claims from every object store."""
    report = GcReport(incomplete_rows=reap_incomplete_blobs(db, older_than=older_than))
    cutoff = utcnow() - older_than
    with db.transaction(write=False) as session:
        uris = set(session.scalars(select(Blob.store).distinct()))
    uris.add(db.settings.blob_store)
    for uri in sorted(uris - {DATABASE}):
        store = store_at(db, uri)
        try:
            for info in _unclaimed(db, store, store.list("")):
                if info.modified is None or info.modified < cutoff:
                    store.delete(info.key)
                    report.orphan_objects.append(f"{uri}/{info.key}")
        except ServiceError as exc:  # one store down must not stop the others' collection
            logger.warning("could not collect garbage in %s: %s", uri, exc.detail)
            report.unreachable.append(uri)
    return report


def _unclaimed(db: Database, store: BlobStore, listing: Iterator[ObjectInfo]) -> list[ObjectInfo]:
    with db.transaction(write=False) as session:
        claimed = set(session.scalars(select(Blob.key).where(Blob.store == store.uri)))
    # A half-written object of a local store lies under a temporary name beside its key.
    return [info for info in listing if info.key not in claimed]


# --------------------------------------------------------------------------- migrate


@dataclass
class MigrateReport:
    moved: int = 0
    bytes: int = 0
    skipped: int = 0


def migrate_blobs(
    db: Database, *, to: str, key_of: Callable[[Session, Blob], str], progress: Any = None
) -> MigrateReport:
    """Copy every complete blob into the store `to` with its sha256 checked, then flip its row.

    Each blob is copied, checked, flipped in one short transaction (fenced on its old store),
    then removed from the old store. Interrupted, it leaves at most one unclaimed copy (the
    collector removes it) and a rerun carries on with the blobs not yet moved.
    """
    target = store_at(db, to)
    report = MigrateReport()
    while True:
        with db.transaction(write=False) as session:
            blob = session.scalar(
                select(Blob)
                .where(Blob.complete.is_(True), Blob.store != target.uri)
                .order_by(Blob.created_at, Blob.id)
                .limit(1)
            )
            if blob is None:
                return report
            blob_id, old_uri, old_key, expected = blob.id, blob.store, blob.object_key, blob.sha256
            new_key = str(blob.id) if target.uri == DATABASE else key_of(session, blob)
        written = _copy(db, blob_id, old_uri, old_key, target, new_key)
        if written.sha256 != expected:
            target.delete(new_key)
            raise BlobIntegrityError(
                f"blob {blob_id} read back from {old_uri} does not match its sha256; "
                "it was not moved"
            )
        with db.transaction() as session:
            moved = session.get_one(Blob, blob_id)
            if moved.store != old_uri:  # another run moved it meanwhile
                report.skipped += 1
                continue
            moved.store, moved.key = target.uri, None if target.uri == DATABASE else new_key
        store_at(db, old_uri).delete(old_key)
        report.moved += 1
        report.bytes += written.size
        if progress is not None:
            progress(blob_id, written.size)


def _copy(
    db: Database, blob_id: uuid.UUID, uri: str, key: str, target: BlobStore, new_key: str
) -> Written:
    return target.write_chunks(new_key, store_at(db, uri).iter_bytes(key))
