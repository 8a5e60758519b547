"""The worker's dataset cache: a blob decoded once into an Arrow file that children map."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from service import blobs
from service.db import Database
from service.worker import cache as cache_mod
from service.worker.cache import DatasetCache, read_cached


def _parquet_blob(db: Database, table: pa.Table, *, row_group_size: int) -> tuple[uuid.UUID, str]:
    """A dataset's Parquet as a complete blob: its id and sha256, what a job's payload names."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=row_group_size)
    blob = blobs.write_blob(
        db, io.BytesIO(buffer.getvalue()), tenant_id="t", key=f"t/datasets/{uuid.uuid4()}"
    )
    with db.transaction() as session:
        blobs.mark_complete(session, blob.id)
    assert blob.sha256 is not None
    return blob.id, blob.sha256


def _table(rows: int) -> pa.Table:
    return pa.table(
        {
            "x": pa.array([i * 0.5 if i % 7 else None for i in range(rows)], pa.float64()),
            "color": pa.array([("red", "green", None)[i % 3] for i in range(rows)]),
            "flag": pa.array([i % 2 == 0 for i in range(rows)]),
            "y": pa.array(range(rows), pa.int64()),
        }
    )


def test_a_blob_is_decoded_once_into_a_mapped_table_equal_to_the_parquet(
    db: Database, tmp_path: Path
) -> None:
    table = _table(1_000)
    blob_id, sha256 = _parquet_blob(db, table, row_group_size=300)  # several row groups
    cache = DatasetCache(tmp_path / "cache", max_bytes=1 << 30)

    path = cache.path_for(db, blob_id, sha256)
    assert path.suffix == ".arrow"
    loaded = read_cached(path)
    assert loaded.schema == pq.read_table(io.BytesIO(blobs.read_blob(db, blob_id))).schema
    assert loaded.equals(table)
    assert not list((tmp_path / "cache").glob("stage-*")), "the staged Parquet is removed"

    # The second job on the dataset neither fetches nor decodes again: the blob may even go.
    blobs.delete_blob(db, blob_id)
    assert cache.path_for(db, blob_id, sha256) == path
    assert read_cached(path).equals(table)


def test_older_parquet_entries_go_and_the_bound_holds(db: Database, tmp_path: Path) -> None:
    root = tmp_path / "cache"
    root.mkdir()
    (root / "old.parquet").write_bytes(b"left by an older version")
    first = _parquet_blob(db, _table(2_000), row_group_size=2_000)
    second = _parquet_blob(db, _table(2_001), row_group_size=2_001)
    probe = DatasetCache(tmp_path / "probe", max_bytes=1 << 30)
    one_entry = probe.path_for(db, *first).stat().st_size
    cache = DatasetCache(root, max_bytes=one_entry + one_entry // 2)  # room for one entry

    kept = cache.path_for(db, *first)
    assert not (root / "old.parquet").exists()
    newer = cache.path_for(db, *second)
    assert newer.exists() and not kept.exists(), "the least recently used entry is evicted"


@pytest.mark.parametrize("in_memory", [True, False], ids=["in-memory", "temp-file"])
def test_a_small_blob_decodes_from_memory_a_big_one_through_a_temp_file_alike(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_memory: bool
) -> None:
    table = _table(1_000)
    blob_id, sha256 = _parquet_blob(db, table, row_group_size=300)
    if not in_memory:
        monkeypatch.setattr(cache_mod, "IN_MEMORY_MAX_BYTES", 100)
    assert read_cached(
        DatasetCache(tmp_path / "cache", 1 << 30).path_for(db, blob_id, sha256)
    ).equals(table)
    assert not list((tmp_path / "cache").glob("stage-*"))


@pytest.mark.parametrize(
    "damage", ["flipped-byte", "flipped-byte-temp-file", "size-short", "size-long"]
)
def test_a_damaged_blob_is_refused_before_anything_is_installed(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    blob_id, sha256 = _parquet_blob(db, _table(1_000), row_group_size=300)
    with db.transaction() as session:
        blob = session.get_one(blobs.Blob, blob_id)
        if damage.startswith("flipped-byte"):  # same length: only the sha256 can tell
            chunk = session.get_one(blobs.BlobChunk, (blob_id, 0))
            data = bytearray(chunk.data)
            data[len(data) // 2] ^= 0xFF
            chunk.data = bytes(data)
        else:
            blob.size_bytes += -1 if damage == "size-short" else 1
    if damage.endswith("temp-file"):
        monkeypatch.setattr(cache_mod, "IN_MEMORY_MAX_BYTES", 100)
    root = tmp_path / "cache"
    with pytest.raises(blobs.BlobIntegrityError):
        DatasetCache(root, 1 << 30).path_for(db, blob_id, sha256)
    assert not list(root.iterdir()), "neither a decoded file nor a staging folder is left"
