"""Datasets registered from where they lie: an s3:// or file:// object, prefix of parts, or glob.

The API checks the request (scheme, allowlists, the parts exist and agree) and queues an import
job; a worker runs it in a memory-limited child (`run_import`): the parts are staged to local
disk and go through today's `ingest`, so types, stats, limits and errors are those of an upload.
`copy` then stores the normalized Parquet in the blob store; `reference` keeps only each part's
ETag, size and modification time (sha256 for file://), and a job on it first checks them.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from service.blobs.stores import (
    BlobStore,
    ObjectInfo,
    ObjectMissing,
    StoreDenied,
    StoreLocation,
    object_store,
    parse_store_uri,
)
from service.config import Settings
from service.datasets.ingest import IngestResult, ingest
from service.errors import InvalidInput

PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
CSV_SUFFIXES = (".csv", ".tsv", ".txt")
HEADER_BYTES = 64 * 1024
FOOTER_LIMIT = 16 << 20
GLOB = re.compile(r"[*?\[]")
_ROW = re.compile(r"\brow ([\d,]+)")


class DatasetChanged(Exception):
    """The data a referenced dataset points at is not what was registered."""

    @property
    def detail(self) -> str:
        return str(self)


@dataclass(frozen=True)
class Part:
    uri: str
    key: str
    size: int
    etag: str | None
    modified: str | None
    sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "key": self.key,
            "size": self.size,
            "etag": self.etag,
            "modified": self.modified,
            "sha256": self.sha256,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Part:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})  # type: ignore[arg-type]


@dataclass(frozen=True)
class Source:
    root: str  # the store the parts' keys are relative to: s3://bucket or file:///
    format: str
    parts: list[Part]


def _field(message: str, field: str = "uri") -> InvalidInput:
    return InvalidInput(message, errors=[{"field": field, "message": message}])


def _store_of(location: StoreLocation, settings: Settings) -> tuple[str, BlobStore]:
    root = f"s3://{location.bucket}" if location.scheme == "s3" else "file:///"
    return root, object_store(root, settings.s3_endpoint_url, settings.s3_region)


def _under(path: str, prefix: str) -> bool:
    prefix = prefix.rstrip("/")
    return not prefix or path == prefix or path.startswith(prefix + "/")


def check_allowed(settings: Settings, location: StoreLocation, uri: str) -> None:
    """Only under an allowed prefix or root, never under the blob store's own prefix."""
    if location.scheme == "s3":
        allowed = [parse_store_uri(p) for p in settings.import_allowed_s3_prefixes]
        setting = "RIDGELINE_IMPORT_ALLOWED_S3_PREFIXES"
    else:
        # Symbolic links are followed before comparing, so none leads out of an allowed root.
        allowed = [_real(parse_store_uri(p)) for p in settings.import_allowed_roots]
        location = _real(location)
        setting = "RIDGELINE_IMPORT_ALLOWED_ROOTS"
    if not any(a.bucket == location.bucket and _under(location.path, a.path) for a in allowed):
        raise _field(
            f"{uri} is not under a location this server may import from ({setting}"
            f"{': ' + ', '.join(a.uri for a in allowed) if allowed else ' is empty'}); "
            "ask an operator to allow it, or upload the file instead"
        )
    if settings.blob_store != "database":
        own = parse_store_uri(settings.blob_store)
        own = _real(own) if own.scheme == "file" else own
        if (own.scheme, own.bucket) == (location.scheme, location.bucket) and (
            _under(location.path, own.path) or _under(own.path, location.path)
        ):
            raise _field(
                f"{uri} overlaps the blob store's own prefix {own.uri}, where Ridgeline keeps "
                "every tenant's data; import from somewhere else"
            )


def _real(location: StoreLocation) -> StoreLocation:
    return StoreLocation(location.scheme, location.bucket, os.path.realpath(location.path))


def _parts_of(store: BlobStore, root: str, path: str) -> list[ObjectInfo]:
    """One object, every object under a prefix, or the objects a glob matches (sorted)."""
    if GLOB.search(path):
        base = GLOB.split(path, 1)[0].rsplit("/", 1)[0]
        listing = store.list(base + "/" if base else "")
        return sorted((o for o in listing if fnmatch.fnmatchcase(o.key, path)), key=_by_key)
    try:
        return [store.head(path)]
    except (ObjectMissing, StoreDenied, IsADirectoryError):
        pass
    prefix = path.rstrip("/") + "/"
    listed = list(store.list(prefix))
    if not listed:
        # Tell a missing object from a denied one: a listing that lists nothing is either.
        store.head(path)
    return sorted((o for o in listed if not _hidden(o.key[len(prefix) :])), key=_by_key)


def _by_key(info: ObjectInfo) -> str:
    return info.key


def _hidden(relative: str) -> bool:
    """Spark and Hive markers (_SUCCESS, .crc, _temporary/) are not data."""
    return any(piece.startswith(("_", ".")) for piece in relative.split("/"))


def _format_of(requested: str, parts: list[Part], store: BlobStore) -> str:
    if requested != "auto":
        return requested
    names = {Path(p.key).suffix.lower() for p in parts}
    if names and names <= set(PARQUET_SUFFIXES):
        return "parquet"
    if names and names <= set(CSV_SUFFIXES):
        return "csv"
    return "parquet" if store.read_range(parts[0].key, 0, 4) == b"PAR1" else "csv"


def resolve(settings: Settings, *, uri: str, format: str) -> Source:
    """The parts at `uri`, checked: allowed, present, readable, non-empty, agreeing schemas."""
    try:
        location = parse_store_uri(uri)
    except ValueError as exc:
        raise _field(
            f"{exc}. Import from s3://bucket/key (one object, a prefix of parts or a glob) or "
            "file:///path"
        ) from None
    if location.scheme == "s3" and {".", ".."} & set(location.path.split("/")):
        raise _field(f"{uri} has a '.' or '..' segment; name the objects by their full keys")
    check_allowed(settings, location, uri)
    root, store = _store_of(location, settings)
    path = location.path.lstrip("/") if location.scheme == "file" else location.path
    try:
        found = _parts_of(store, root, path)
    except ObjectMissing:
        raise _field(f"nothing at {uri}: no object, and no objects under it as a prefix") from None
    except StoreDenied as exc:
        raise _field(f"access denied to {uri}: {exc.detail}") from None
    parts = [p for p in (_part(root, o) for o in found) if p.size > 0]
    if not parts:
        raise _field(f"{uri} holds no data: the prefix or glob matches no non-empty object")
    if len(parts) > settings.max_import_parts:
        raise _field(
            f"{uri} has {len(parts):,} parts; the limit is {settings.max_import_parts:,}. "
            "Compact the data into fewer, larger files"
        )
    fmt = _format_of(format, parts, store)
    try:
        if fmt == "parquet":
            check_parquet_schemas(store, parts)
        else:
            check_csv_headers(store, parts)
    except StoreDenied as exc:
        raise _field(f"access denied to {uri}: {exc.detail}") from None
    return Source(root=root, format=fmt, parts=parts)


def _part(root: str, info: ObjectInfo) -> Part:
    uri = f"{root.rstrip('/')}/{info.key}" if root.startswith("s3") else f"file:///{info.key}"
    modified = info.modified.isoformat() if info.modified else None
    return Part(uri=uri, key=info.key, size=info.size, etag=info.etag, modified=modified)


# --------------------------------------------------------------------------- schemas


def _kind(t: pa.DataType) -> str:
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "number"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "text"
    if pa.types.is_null(t):
        return "null"
    return str(t)


def _footer_schema(store: BlobStore, part: Part) -> pa.Schema:
    """A part's schema from its footer alone (two ranged reads), bounded in size."""
    tail = store.read_range(part.key, max(0, part.size - 8), part.size)
    if len(tail) < 8 or tail[4:] != b"PAR1":
        raise _field(f"part {part.uri} is not a Parquet file (no PAR1 footer)")
    length = int.from_bytes(tail[:4], "little")
    if length > FOOTER_LIMIT or length + 8 > part.size:
        raise _field(f"part {part.uri} has a Parquet footer of {length:,} bytes; too large")
    footer = store.read_range(part.key, part.size - 8 - length, part.size)
    try:
        return pq.read_schema(pa.BufferReader(b"PAR1" + footer))
    except (pa.ArrowException, OSError) as exc:
        raise _field(f"part {part.uri} has an unreadable Parquet footer ({exc})") from None


def check_parquet_schemas(store: BlobStore, parts: list[Part]) -> list[pa.Schema]:
    """Every part has the first's columns, each of the same kind (integer and float mix)."""
    schemas = [_footer_schema(store, part) for part in parts]
    first = schemas[0]
    kinds = {f.name: _kind(f.type) for f in first}
    for part, schema in zip(parts[1:], schemas[1:], strict=True):
        names = set(schema.names)
        missing = [n for n in first.names if n not in names]
        extra = [n for n in schema.names if n not in kinds]
        if missing or extra:
            column = (missing or extra)[0]
            what = "lacks column" if missing else "has a column the first part lacks:"
            raise _field(
                f"part {part.uri} {what} {column!r}; every part needs the same columns as "
                f"{parts[0].uri}"
            )
        for f in schema:
            if _kind(f.type) not in (kinds[f.name], "null") and kinds[f.name] != "null":
                raise _field(
                    f"part {part.uri}, column {f.name!r}: {f.type} clashes with "
                    f"{first.field(f.name).type} in {parts[0].uri}; write the column with one "
                    "type in every part"
                )
    return schemas


def check_csv_headers(store: BlobStore, parts: list[Part]) -> None:
    first = _header(store, parts[0])
    for part in parts[1:]:
        header = _header(store, part)
        if header != first:
            theirs, ours = header.split(","), first.split(",")
            column = next(
                (a for a, b in zip(theirs, ours, strict=False) if a != b),
                (theirs + ours)[min(len(theirs), len(ours))],
            )
            raise _field(
                f"part {part.uri} has a different header from {parts[0].uri}, at column "
                f"{column!r}; every part needs the same header row"
            )


def _header(store: BlobStore, part: Part) -> str:
    head = store.read_range(part.key, 0, min(part.size, HEADER_BYTES))
    return (
        head.split(b"\n", 1)[0]
        .rstrip(b"\r")
        .removeprefix(b"\xef\xbb\xbf")
        .decode("utf-8", "replace")
    )


# --------------------------------------------------------------------------- staging


@dataclass
class Staged:
    path: Path
    sha256: str
    parts: list[Part]
    # (part uri, first row of the part in the staged file, counting as ingest counts)
    offsets: list[tuple[str, int]]


def stage(
    settings: Settings,
    source: Source,
    work: Path,
    *,
    on_progress: Callable[[float], None] | None = None,
) -> Staged:
    """Bring the parts to one local file that `ingest` reads (bounded memory, streamed)."""
    store = object_store(source.root, settings.s3_endpoint_url, settings.s3_region)
    total = sum(p.size for p in source.parts) or 1
    done = 0
    digest = hashlib.sha256()
    local: list[Path] = []
    parts: list[Part] = []
    for index, part in enumerate(source.parts):
        path = work / f"part-{index:05d}"
        part_digest = hashlib.sha256()
        with path.open("wb") as out:
            for chunk in store.iter_bytes(part.key):
                out.write(chunk)
                part_digest.update(chunk)
                digest.update(chunk)
                done += len(chunk)
                if on_progress is not None:
                    on_progress(0.5 * done / total)
        if path.stat().st_size != part.size:
            raise DatasetChanged(
                f"dataset changed since registration: part {part.uri} is "
                f"{path.stat().st_size:,} bytes, {part.size:,} were recorded"
            )
        sha = part_digest.hexdigest() if part.uri.startswith("file:") else None
        parts.append(Part(**{**part.to_dict(), "sha256": sha}))
        local.append(path)
    if source.format == "parquet":
        staged, offsets = _combine_parquet(local, source.parts, work / "staged.parquet")
    else:
        staged, offsets = _combine_csv(local, source.parts, work / "staged.csv")
    return Staged(staged, digest.hexdigest(), parts, offsets)


def _combine_parquet(
    local: list[Path], parts: list[Part], dest: Path
) -> tuple[Path, list[tuple[str, int]]]:
    if len(local) == 1:
        return local[0], [(parts[0].uri, 1)]
    schemas = [pq.read_schema(p) for p in local]
    unified = pa.unify_schemas([s.remove_metadata() for s in schemas], promote_options="permissive")
    offsets: list[tuple[str, int]] = []
    row = 1
    with pq.ParquetWriter(dest, unified, compression="lz4") as writer:
        for path, part in zip(local, parts, strict=True):
            offsets.append((part.uri, row))
            reader = pq.ParquetFile(path)
            for batch in reader.iter_batches(batch_size=64 * 1024):
                table = pa.Table.from_batches([batch]).select(unified.names).cast(unified)
                writer.write_table(table)
                row += batch.num_rows
            path.unlink()
    return dest, offsets


def _combine_csv(
    local: list[Path], parts: list[Part], dest: Path
) -> tuple[Path, list[tuple[str, int]]]:
    if len(local) == 1:
        return local[0], [(parts[0].uri, 2)]
    offsets: list[tuple[str, int]] = []
    row = 2  # ingest counts the header as row 1
    with dest.open("wb") as out:
        for index, (path, part) in enumerate(zip(local, parts, strict=True)):
            offsets.append((part.uri, row))
            with path.open("rb") as src:
                header = src.readline()
                if index == 0:
                    out.write(header)
                last = b"\n"
                while chunk := src.read(4 << 20):
                    out.write(chunk)
                    row += chunk.count(b"\n")
                    last = chunk[-1:]
                if last != b"\n":
                    out.write(b"\n")
                    row += 1
            path.unlink()
    return dest, offsets


def _locate(message: str, offsets: list[tuple[str, int]], header_rows: int) -> str:
    """Say 'row N of part URI' where ingest said 'row N' of the staged file."""
    if len(offsets) < 2:
        return message if not offsets else f"part {offsets[0][0]}: {message}"

    def replace(match: re.Match[str]) -> str:
        row = int(match[1].replace(",", ""))
        uri, first = next(((u, f) for u, f in reversed(offsets) if f <= row), offsets[0])
        return f"row {row - first + 1 + header_rows:,} of part {uri}"

    return _ROW.sub(replace, message)


# --------------------------------------------------------------------------- the import


def ingest_source(
    settings: Settings,
    source: Source,
    work: Path,
    dest: Path,
    *,
    on_progress: Callable[[float], None] | None = None,
) -> tuple[IngestResult, Staged]:
    """Stage and ingest: what an import and a referenced dataset's first use both do."""
    staged = stage(settings, source, work, on_progress=on_progress)
    try:
        result = ingest(
            staged.path,
            dest,
            filename=staged.path.name,
            max_columns=settings.max_columns,
            max_rows=settings.max_rows,
            unique_cap=settings.n_unique_cap,
        )
    except InvalidInput as exc:
        header_rows = 1 if source.format == "csv" else 0
        raise InvalidInput(
            _locate(exc.detail, staged.offsets, header_rows), errors=exc.errors
        ) from None
    finally:
        staged.path.unlink(missing_ok=True)
    if on_progress is not None:
        on_progress(1.0)
    return result, staged


def run_import(payload: dict[str, Any], on_progress: Callable[[float], None]) -> dict[str, Any]:
    """The child's side of an import job: returns what the dataset row records."""
    settings = Settings()
    params = payload["params"]
    source = Source(
        root=params["root"],
        format=params["format"],
        parts=[Part.from_dict(p) for p in params["parts"]],
    )
    work = Path(payload["work_dir"])
    dest = work / "data.parquet"
    with tempfile.TemporaryDirectory(prefix="stage-", dir=work) as stage_dir:
        result, staged = ingest_source(
            settings, source, Path(stage_dir), dest, on_progress=on_progress
        )
    if params["mode"] == "reference":
        check_unchanged(settings, source.root, staged.parts)
        dest.unlink(missing_ok=True)
    return {
        "ingest": result.to_dict(),
        "sha256": staged.sha256,
        "size_bytes": sum(p.size for p in staged.parts),
        "parts": [p.to_dict() for p in staged.parts],
        "parquet_path": str(dest) if params["mode"] == "copy" else None,
    }


def check_unchanged(settings: Settings, root: str, parts: list[Part]) -> None:
    """Every part still has the size and ETag (s3) or modification time (file) recorded."""
    store = object_store(root, settings.s3_endpoint_url, settings.s3_region)
    for part in parts:
        try:
            now = store.head(part.key)
        except ObjectMissing:
            raise DatasetChanged(
                f"dataset changed since registration: part {part.uri} is gone"
            ) from None
        modified = now.modified.isoformat() if now.modified else None
        if (now.size, now.etag, modified) != (part.size, part.etag, part.modified):
            raise DatasetChanged(
                f"dataset changed since registration: part {part.uri} was rewritten "
                f"(size {part.size:,} -> {now.size:,}, ETag {part.etag} -> {now.etag}); "
                "register the data again"
            )


def reference_source(source_uri: str, format: str, parts: list[dict[str, Any]] | None) -> Source:
    """The recorded parts of a dataset registered by reference, as a Source to read."""
    location = parse_store_uri(source_uri)
    root = f"s3://{location.bucket}" if location.scheme == "s3" else "file:///"
    return Source(root=root, format=format, parts=[Part.from_dict(p) for p in parts or []])


def materialize(settings: Settings, source: Source, dest: Path, work: Path) -> None:
    """Referenced data as the normalized Parquet a training child reads, if unchanged."""
    check_unchanged(settings, source.root, source.parts)
    _, staged = ingest_source(settings, source, work, dest)
    for recorded, seen in zip(source.parts, staged.parts, strict=True):
        if recorded.sha256 is not None and recorded.sha256 != seen.sha256:
            dest.unlink(missing_ok=True)
            raise DatasetChanged(
                f"dataset changed since registration: part {recorded.uri} has new content "
                "(its sha256 differs); register the data again"
            )


def fingerprint(parts: list[dict[str, Any]]) -> str:
    """One hash of what was registered: names the worker's cached copy of referenced data."""
    text = "|".join(f"{p['uri']}:{p['size']}:{p['etag']}:{p['modified']}" for p in parts)
    return hashlib.sha256(text.encode()).hexdigest()
