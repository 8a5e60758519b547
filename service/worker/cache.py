"""A worker-local cache of dataset Parquet files, keyed by content hash, bounded in bytes."""

from __future__ import annotations

import os
import tempfile
import threading
import uuid
from pathlib import Path

from service import blobs
from service.config import Settings
from service.datasets.imports import Source, check_unchanged, fingerprint, materialize
from service.db import Database


class DatasetCache:
    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        root.mkdir(parents=True, exist_ok=True)

    def path_for(self, db: Database, blob_id: uuid.UUID, sha256: str) -> Path:
        """The dataset as a local file, fetched from the blob store the first time."""
        path = self.root / f"{sha256}.parquet"
        with self._lock:
            if path.exists():
                os.utime(path)
                return path
            fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".part")
            try:
                with os.fdopen(fd, "wb") as out:
                    blobs.copy_blob_to(db, blob_id, out)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            self._evict(keep=path)
            return path

    def path_for_reference(self, settings: Settings, source: Source) -> Path:
        """Referenced data, checked unchanged on every use, normalized once per fingerprint."""
        parts = [p.to_dict() for p in source.parts]
        path = self.root / f"ref-{fingerprint(parts)}.parquet"
        with self._lock:
            if path.exists():
                check_unchanged(settings, source.root, source.parts)
                os.utime(path)
                return path
            with tempfile.TemporaryDirectory(dir=self.root, prefix="stage-") as work:
                tmp = Path(work) / "data.parquet"
                materialize(settings, source, tmp, Path(work))
                os.replace(tmp, path)
            self._evict(keep=path)
            return path

    def _evict(self, *, keep: Path) -> None:
        files = sorted(
            (p for p in self.root.glob("*.parquet") if p != keep), key=lambda p: p.stat().st_atime
        )
        total = sum(p.stat().st_size for p in files) + keep.stat().st_size
        for old in files:
            if total <= self.max_bytes:
                break
            total -= old.stat().st_size
            old.unlink(missing_ok=True)
