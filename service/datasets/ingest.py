"""Turn an uploaded CSV or Parquet file into normalized Parquet and column stats, memory-bounded."""

# The upload route streams the body to a temp file and calls `ingest` in a worker thread. Types
# are inferred over the whole file: the first pass streams and writes speculatively with the
# types pyarrow inferred from the first block; when a later block does not fit a column's type,
# the column is widened (null -> integer/float/boolean -> float -> string), the rest of the file
# is checked with the wider types, and a last pass writes. Every bad-file problem becomes an
# `InvalidInput` (422) or `UnsupportedMediaType` (415) saying what is wrong, where, what to do.

from __future__ import annotations

import csv
import io
import math
import mmap
import os
import re
import unicodedata
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from service.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType

if TYPE_CHECKING:
    from service.config import Settings

Dtype = Literal["integer", "float", "boolean", "categorical"]
Format = Literal["csv", "parquet"]

MiB = 1 << 20
HEAD_BYTES = 64 * 1024
# pyarrow parses 1 MiB blocks about twice as fast as 16 MiB ones (cache-sized), so blocks this
# size are read first and `block_size` (the longest row accepted) is used only when a row needs it.
FAST_BLOCK = 1 * MiB
# A written row group gathers parsed batches up to this many bytes of Arrow memory.
CHUNK_BYTES = 32 * MiB
#: A piece of a quote-free CSV that parses on every core while the one before is written.
RANGE_BYTES = 16 * MiB
PARQUET_BATCH_ROWS = 64 * 1024
# A Parquet batch is sized from the footer to hold about this many decompressed bytes.
BATCH_BYTES = 16 * MiB
# Pages stream through a buffer this big, instead of a whole column chunk read at once.
READ_BUFFER = 1 * MiB
GiB = 1 << 30
DEFAULT_MAX_CELL_BYTES = 1 * MiB
DEFAULT_MAX_ROW_GROUP_BYTES = 1 * GiB
DEFAULT_MAX_DECOMPRESSED_BYTES = 8 * GiB
MIN_SKETCH = 16
DELIMITERS = (",", ";", "\t", "|")
TRUE_VALUES = ["true", "True", "TRUE"]
FALSE_VALUES = ["false", "False", "FALSE"]
NULL_VALUES = sorted({*pa_csv.ConvertOptions().null_values, "None"})
ACCEPTED = "Upload a CSV file (UTF-8; comma, semicolon, tab or pipe separated) or a Parquet file."

_RANK = {pa.null(): 0, pa.bool_(): 1, pa.int64(): 1, pa.float64(): 2, pa.string(): 3}
_CONVERSION_ERROR = re.compile(
    r"In CSV column #(\d+): (?:Row #(\d+): )?CSV conversion error to (\w+): (.*)", re.S
)
_INVALID_VALUE = re.compile(r"invalid value '(.*)'\s*$", re.S)
_INT = re.compile(r"[+-]?\d+")
_EOL = re.compile(rb"[\r\n]")
_STRING_INDEX = re.compile(r"at string index (\d+)")

_MAGIC: list[tuple[bytes, str]] = [
    (b"PK\x03\x04", "a ZIP archive (an Excel .xlsx or OpenDocument workbook is one)"),
    (b"PK\x05\x06", "an empty ZIP archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy Microsoft Office file (Excel .xls)"),
    (b"\x1f\x8b", "a gzip-compressed file"),
    (b"\x28\xb5\x2f\xfd", "a zstd-compressed file"),
    (b"\xfd7zXZ\x00", "an xz-compressed file"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"%PDF-", "a PDF document"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"ARROW1", "an Arrow IPC (Feather v2) file"),
    (b"FEA1", "a Feather v1 file"),
    (b"Obj\x01", "an Avro file"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file"),
    (b"\xff\xfe", "UTF-16 text (save it as UTF-8)"),
    (b"\xfe\xff", "UTF-16 text (save it as UTF-8)"),
]
_BZIP2 = re.compile(rb"BZh[1-9]1AY&SY")
_JSON_START = re.compile(rb"\s*(\{\s*(\"|\}|$)|\[\s*(\{|\[|\"|-?\d|\]|true|false|null|$))")
_MARKUP = re.compile(rb"\s*<(\?xml|!doctype|html|svg)", re.I)
_CONTROL = bytes(b for b in range(32) if b not in (9, 10, 13)) + b"\x7f"
# Controls, format characters (zero-width, text-direction) and line/paragraph separators: a
# column name holding one looks like another name, or reorders the text around it.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


@dataclass(frozen=True)
class ColumnStats:
    """What the job validation and the UI need to know about one column, computed while parsing."""

    name: str
    dtype: Dtype
    n_missing: int
    n_unique: int
    n_unique_exact: bool
    min: float | None
    max: float | None
    mean: float | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe record: non-finite numbers become None, since JSON has no NaN or inf."""
        return {
            "name": self.name,
            "dtype": self.dtype,
            "n_missing": self.n_missing,
            "n_unique": self.n_unique,
            "n_unique_exact": self.n_unique_exact,
            "min": _finite(self.min),
            "max": _finite(self.max),
            "mean": _finite(self.mean),
        }


@dataclass(frozen=True)
class IngestResult:
    """What the dataset row records about the converted file."""

    format: Format
    n_rows: int
    n_columns: int
    columns: list[ColumnStats]
    delimiter: str | None

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> IngestResult:
        """The result back from `to_dict`'s JSON (how an ingest child answers)."""
        return cls(
            format=record["format"],
            n_rows=record["n_rows"],
            n_columns=record["n_columns"],
            columns=[ColumnStats(**column) for column in record["columns"]],
            delimiter=record["delimiter"],
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe record of the whole result, for responses and logs."""
        return {
            "format": self.format,
            "n_rows": self.n_rows,
            "n_columns": self.n_columns,
            "columns": [c.to_dict() for c in self.columns],
            "delimiter": self.delimiter,
        }


@dataclass(frozen=True)
class SizeLimits:
    """How big an accepted file may get once decompressed: per cell, per Parquet row group, all."""

    max_cell_bytes: int = DEFAULT_MAX_CELL_BYTES
    max_row_group_bytes: int = DEFAULT_MAX_ROW_GROUP_BYTES
    max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES

    @classmethod
    def from_settings(cls, settings: Settings) -> SizeLimits:
        """The limits the service runs with (RIDGELINE_MAX_CELL_BYTES and the others)."""
        return cls(
            max_cell_bytes=settings.max_cell_bytes,
            max_row_group_bytes=settings.max_row_group_bytes,
            max_decompressed_bytes=settings.max_decompressed_bytes,
        )


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def _size(n: float) -> str:
    """A byte count the way a user reads it: 16 MiB, 1 KiB, 2.3 GiB, 900 bytes."""
    units = (("GiB", GiB), ("MiB", MiB), ("KiB", 1024))
    for unit, scale in units:
        if n >= scale and n % (scale // 16) == 0:
            return f"{n / scale:g} {unit}"
    for unit, scale in units:
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{round(n):,} bytes"


# --------------------------------------------------------------------------- format detection


def detect_format(head: bytes, filename: str | None) -> Format:
    """Decide CSV or Parquet from the first bytes, so a wrong file fails fast with a 415."""
    # The content decides; the filename only sharpens the message. An empty head is a 422.
    if head.startswith(b"PAR1"):
        return "parquet"
    body = head[3:] if head.startswith(b"\xef\xbb\xbf") else head
    if not body.strip():
        raise InvalidInput("the file is empty; upload a CSV with a header row and data rows")
    what = _known_format(head, filename)
    if what is not None:
        raise UnsupportedMediaType(f"the file looks like {what}, not CSV or Parquet. {ACCEPTED}")
    sample = head[:HEAD_BYTES]
    nul = sample.find(b"\x00")
    n_control = sum(sample.count(bytes([c])) for c in _CONTROL)
    text = sample.decode("utf-8", errors="replace")
    if nul >= 0 or n_control > len(sample) // 100 or text.count("\ufffd") > len(text) // 4:
        where = f"a NUL byte at offset {nul}" if nul >= 0 else "binary control bytes"
        raise UnsupportedMediaType(
            f"not a CSV or Parquet file: the first bytes hold binary data ({where}). {ACCEPTED}"
        )
    return "csv"


def _known_format(head: bytes, filename: str | None) -> str | None:
    """Name a recognizable non-tabular format, so the 415 tells the user what they sent."""
    suffix = Path(filename or "").suffix.lower()
    for magic, what in _MAGIC:
        if head.startswith(magic):
            if magic.startswith(b"PK") and suffix in (".xlsx", ".xlsm", ".ods", ".numbers"):
                return f"a spreadsheet ({suffix}; export the sheet as CSV UTF-8)"
            return what
    body = head[3:] if head.startswith(b"\xef\xbb\xbf") else head
    if _BZIP2.match(body):
        return "a bzip2-compressed file"
    if _MARKUP.match(body):
        return "an XML or HTML document"
    if _JSON_START.match(body) or (
        suffix in (".json", ".jsonl", ".ndjson") and body.lstrip()[:1] in (b"{", b"[")
    ):
        return "JSON"
    return None


# --------------------------------------------------------------------------- stats


class _ColumnAcc:
    """Running stats of one column; n_unique keeps the k smallest 64-bit hashes (KMV sketch)."""

    def __init__(self, name: str, dtype: Dtype, unique_cap: int) -> None:
        self.name = name
        self.dtype = dtype
        self.cap = unique_cap
        self.k = max(unique_cap, MIN_SKETCH)
        self.sketch = np.empty(0, dtype=np.uint64)
        self.saturated = False
        self.n_missing = 0
        self.n_values = 0
        self.total = 0.0
        self.min: float | None = None
        self.max: float | None = None

    def update(self, col: pa.ChunkedArray) -> None:
        """Fold one chunk in with vectorized numpy/pyarrow work only, never a loop over rows."""
        n_null = col.null_count
        self.n_missing += n_null
        self.n_values += len(col) - n_null
        if len(col) == n_null:
            return
        if self.dtype in ("integer", "float"):
            values = (col.drop_null() if n_null else col).to_numpy()
            lo, hi = values.min(), values.max()
            with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: the mean is unknown
                self.total += float(values.sum(dtype=np.float64))
            if self.dtype == "integer":
                lo, hi = int(lo), int(hi)
            else:
                lo, hi = float(lo), float(hi)
                values = values + 0.0  # -0.0 and 0.0 are one value
            self.min = lo if self.min is None else min(self.min, lo)
            self.max = hi if self.max is None else max(self.max, hi)
            self._add_hashes(pd.util.hash_array(values))
        else:
            distinct = pc.unique(col).drop_null()
            values = distinct.to_numpy(zero_copy_only=False)
            self._add_hashes(pd.util.hash_array(values, categorize=False))

    def _add_hashes(self, h: np.ndarray) -> None:
        """Keep the k smallest distinct hashes: only a chunk's k + 1 smallest distinct can enter."""
        if self.saturated:
            h = h[h < self.sketch[-1]]
        if h.size == 0:
            return
        k = self.k
        # k + 1 of them tell whether more than k distinct values have been seen.
        candidates = _smallest_distinct(h, k + 1)
        # Two sorted runs: a stable sort (timsort) merges them 4x faster than quicksort sorts.
        merged = _sorted_distinct(np.concatenate((self.sketch, candidates)), kind="stable")
        if merged.size > k:
            merged = merged[:k]
            self.saturated = True
        self.sketch = merged

    def result(self) -> ColumnStats:
        """Exact distinct count while the sketch holds every value, the KMV estimate beyond."""
        if self.saturated:
            kth = float(self.sketch[-1]) + 1.0
            n_unique = round((self.k - 1) * 2.0**64 / kth)
        else:
            n_unique = int(self.sketch.size)
        numeric = self.dtype in ("integer", "float") and self.n_values > 0
        return ColumnStats(
            name=self.name,
            dtype=self.dtype,
            n_missing=self.n_missing,
            n_unique=n_unique,
            n_unique_exact=not self.saturated and n_unique <= self.cap,
            min=self.min if numeric else None,
            max=self.max if numeric else None,
            mean=self.total / self.n_values if numeric else None,
        )


def _sorted_distinct(
    a: np.ndarray, kind: Literal["quicksort", "stable"] = "quicksort"
) -> np.ndarray:
    """`a` sorted in place, repeats dropped: np.unique hashes (numpy 2.3+), 15x slower on uint64."""
    a.sort(kind=kind)
    if a.size < 2:
        return a
    keep = np.empty(a.size, dtype=bool)
    keep[0] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a if keep.all() else a[keep]


def _smallest_distinct(h: np.ndarray, n: int) -> np.ndarray:
    """The n smallest distinct values of `h`, sorted (all of them if fewer), sorting few of h."""
    m = n
    while m < h.size:
        # The m smallest, repeats included, hold every distinct value up to the largest of them.
        distinct = _sorted_distinct(np.partition(h, m - 1)[:m])
        if distinct.size >= n:
            return distinct[:n]
        # Repeats: look as much deeper as their share suggests (few distinct: sort everything).
        m = max(m + n - distinct.size, m * n // max(distinct.size, 1) * 5 // 4)
    return _sorted_distinct(h.copy())[:n]


def _dtype_of(t: pa.DataType) -> Dtype:
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_boolean(t):
        return "boolean"
    return "categorical"


class _Sink:
    """Writes chunks to the Parquet file and folds them into the stats; one per pass."""

    def __init__(
        self,
        dest: Path,
        schema: pa.Schema,
        unique_cap: int,
        max_rows: int | None,
        max_cell_bytes: int,
    ) -> None:
        self.dest = dest
        self.schema = schema
        self.max_rows = max_rows
        self.max_cell_bytes = max_cell_bytes
        self.n_rows = 0
        self.accs = [_ColumnAcc(f.name, _dtype_of(f.type), unique_cap) for f in schema]
        self.writer: pq.ParquetWriter | None = None
        # A chunk's Parquet write (GIL released) runs while its stats fold in on this thread.
        self._writes = ThreadPoolExecutor(1, thread_name_prefix="parquet-write")
        self._writing: Future[None] | None = None

    def _open(self, first: pa.Table | None) -> pq.ParquetWriter:
        # Dictionary encoding of float columns almost never pays and costs ~40 % of write time.
        dictionary = [f.name for f in self.schema if not pa.types.is_floating(f.type)]
        return pq.ParquetWriter(
            str(self.dest),
            self.schema,
            compression=_codecs(first, self.schema),
            use_dictionary=dictionary,
        )

    def consume(self, chunk: pa.Table) -> None:
        """Cast to the output schema, check the row and cell limits, update stats, write."""
        first_row = self.n_rows
        self.n_rows += chunk.num_rows
        _check_rows(self.n_rows, self.max_rows)
        if chunk.column_names != self.schema.names:  # names normalized to NFC
            chunk = chunk.rename_columns(self.schema.names)
        if chunk.schema != self.schema:
            chunk = chunk.cast(self.schema)
        _check_cells(chunk, first_row, self.max_cell_bytes)
        self._written()
        if self.writer is None:
            self.writer = self._open(chunk)
        self._writing = self._writes.submit(
            self.writer.write_table, chunk, row_group_size=max(chunk.num_rows, 1)
        )
        for acc, col in zip(self.accs, chunk.columns, strict=True):
            acc.update(col)

    def _written(self) -> None:
        """Wait for the chunk being written; its error, if any, is raised here."""
        writing, self._writing = self._writing, None
        if writing is not None:
            writing.result()

    def close(self) -> None:
        try:
            self._written()
        finally:
            self._writes.shutdown()
            if self.writer is None:
                self.writer = self._open(None)
            self.writer.close()


#: A float column is stored uncompressed when zstd saves less than this share of a sample: full
#: precision floats barely compress, and zstd costs 40 % of the write and doubles the decode.
MIN_FLOAT_SAVING = 0.1
CODEC_SAMPLE_BYTES = 64 * 1024


def _codecs(first: pa.Table | None, schema: pa.Schema) -> dict[str, str]:
    """zstd for every column but the float ones whose first chunk shows zstd would not pay."""
    codecs = dict.fromkeys(schema.names, "zstd")
    if first is None:
        return codecs
    for name, col in zip(first.column_names, first.columns, strict=True):
        if not pa.types.is_floating(col.type) or not col.num_chunks:
            continue
        chunk = col.chunk(0)
        values = chunk.buffers()[1]
        if values is None:
            continue
        width = chunk.type.byte_width
        sample = values.slice(chunk.offset * width, min(len(chunk) * width, CODEC_SAMPLE_BYTES))
        if sample.size and pa.compress(sample, "zstd").size > (1 - MIN_FLOAT_SAVING) * sample.size:
            codecs[name] = "none"
    return codecs


def _check_cells(chunk: pa.Table, first_row: int, limit: int) -> None:
    """Refuse a text value longer than the per-cell limit, naming its column and row."""
    for name, col in zip(chunk.column_names, chunk.columns, strict=True):
        if not pa.types.is_string(col.type) or len(col) == col.null_count:
            continue
        lengths = pc.binary_length(col)
        if pc.max(lengths).as_py() <= limit:
            continue
        index = pc.index(pc.greater(lengths, limit), True).as_py()
        size = lengths[index].as_py()
        raise PayloadTooLarge(
            f"column {name!r}, data row {first_row + index + 1:,}: a value of {_size(size)} is "
            f"over the {_size(limit)} limit on one cell (RIDGELINE_MAX_CELL_BYTES); shorten "
            "the long values or drop the column"
        )


def _check_rows(n_rows: int, max_rows: int | None) -> None:
    if max_rows is not None and n_rows > max_rows:
        raise InvalidInput(
            f"the file has more than {max_rows:,} data rows, the limit; split it or sample it "
            f"down to at most {max_rows:,} rows"
        )


def _chunks(batches: Iterator[pa.RecordBatch], target: int) -> Iterator[pa.Table]:
    """Group small batches into row-group-sized tables, bounding the memory held at once."""
    buffered: list[pa.RecordBatch] = []
    size = 0
    for batch in batches:
        buffered.append(batch)
        size += batch.nbytes
        if size >= target:
            yield pa.Table.from_batches(buffered)
            buffered, size = [], 0
    if buffered:
        yield pa.Table.from_batches(buffered)


def _pump(chunks: Iterator[pa.Table], consume: Callable[[pa.Table], None]) -> None:
    """Parse the next chunk in a second thread while this one computes stats and compresses."""
    with ThreadPoolExecutor(1, thread_name_prefix="ingest-read") as pool:
        pending = pool.submit(next, chunks, None)
        while True:
            chunk = pending.result()
            if chunk is None:
                return
            pending = pool.submit(next, chunks, None)
            consume(chunk)


# --------------------------------------------------------------------------- entry point


def ingest(
    src: Path,
    dest: Path,
    *,
    filename: str | None = None,
    delimiter: str | None = None,
    max_columns: int = 1000,
    max_rows: int | None = None,
    unique_cap: int = 10_000,
    block_size: int = 16 << 20,
    sizes: SizeLimits | None = None,
) -> IngestResult:
    """Validate `src` and write it to `dest` as zstd Parquet; `dest` never survives a failure."""
    # `block_size` is the longest row (and header) accepted; parsing uses smaller blocks first.
    if unique_cap < 1 or max_columns < 1 or block_size < 1:
        raise ValueError("unique_cap, max_columns and block_size must be positive")
    src, dest = Path(src), Path(dest)
    sizes = sizes or SizeLimits()
    try:
        with src.open("rb") as f:
            head = f.read(HEAD_BYTES)
        fmt = detect_format(head, filename)
        if fmt == "parquet":
            return _ingest_parquet(src, dest, max_columns, max_rows, unique_cap, sizes)
        return _ingest_csv(
            src, dest, head, delimiter, max_columns, max_rows, unique_cap, block_size, sizes
        )
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- parquet


def _ingest_parquet(
    src: Path,
    dest: Path,
    max_columns: int,
    max_rows: int | None,
    unique_cap: int,
    sizes: SizeLimits,
) -> IngestResult:
    """Map each Parquet column to one of the four dtypes and rewrite it batch by batch."""
    fields = parquet_field_count(src)
    if fields is not None and fields - 1 > max_columns:  # the root is a field, not a column
        raise _too_many_columns(fields - 1, max_columns)
    try:
        pf = pq.ParquetFile(src, buffer_size=READ_BUFFER)
        schema = pf.schema_arrow
        n_rows = pf.metadata.num_rows
    except (pa.ArrowException, OSError) as exc:
        if is_out_of_memory(exc):
            raise
        raise InvalidInput(
            f"the Parquet file is corrupt or truncated ({exc}); write it again and re-upload"
        ) from None
    names = _check_header(schema.names, max_columns)
    if n_rows == 0:
        raise InvalidInput("the Parquet file has columns but no rows; upload a file with data")
    _check_rows(n_rows, max_rows)
    check_decompressed_sizes(pf.metadata, names, sizes)
    out = pa.schema(
        [
            pa.field(name, _parquet_target(f, i))
            for i, (name, f) in enumerate(zip(names, schema, strict=True))
        ]
    )
    sink = _Sink(dest, out, unique_cap, max_rows, sizes.max_cell_bytes)
    batch_rows = batch_rows_for(pf.metadata, BATCH_BYTES, PARQUET_BATCH_ROWS)

    def batches() -> Iterator[pa.RecordBatch]:
        done = 0
        reader = pf.iter_batches(batch_size=batch_rows, use_threads=True)
        while True:
            try:
                batch = next(reader)
            except StopIteration:
                return
            except (pa.ArrowException, OSError) as exc:  # only reading errors: bad input
                if is_out_of_memory(exc):
                    raise
                raise InvalidInput(
                    f"the Parquet file is corrupt: reading after row {done:,} failed "
                    f"({' '.join(str(exc).split())}); "
                    "write it again and re-upload"
                ) from None
            yield _normalize_parquet_batch(batch, out, done)
            done += batch.num_rows

    try:
        _pump(_chunks(batches(), CHUNK_BYTES), sink.consume)
    finally:
        sink.close()
    return IngestResult(
        format="parquet",
        n_rows=sink.n_rows,
        n_columns=len(names),
        columns=[acc.result() for acc in sink.accs],
        delimiter=None,
    )


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether an error means memory ran out, however pyarrow or its C++ reported it."""
    # ArrowMemoryError is a MemoryError; Thrift's bad_alloc becomes an OSError, and a thread
    # pool that cannot map a stack under RLIMIT_DATA raises a bare ArrowException.
    # A Thrift message cut at 15 characters (libstdc++'s in-place string) was cut because the
    # allocation that would have held the rest failed.
    message = str(exc).strip()
    return (
        isinstance(exc, MemoryError)
        or any(sign in message for sign in ("bad_alloc", "Failed to launch worker thread"))
        or message == "Couldn't deseri"
    )


def parquet_field_count(path: Path) -> int | None:
    """How many schema fields a Parquet footer declares, read before the footer is parsed.

    pyarrow parses the whole footer (every column of every row group, ~3 KiB of memory per
    column) before it shows the schema, so a 100,000-column file costs hundreds of MiB just to
    be refused. The footer is Thrift compact protocol: FileMetaData begins with field 1
    (version, i32) and field 2 (the schema, a list of structs) whose header holds its length.
    None when the footer does not begin that way; the full parse then decides.
    """
    with Path(path).open("rb") as f:
        size = f.seek(0, io.SEEK_END)
        if size < 12:
            return None
        f.seek(size - 8)
        tail = f.read(8)
        footer = int.from_bytes(tail[:4], "little")
        if tail[4:] != b"PAR1" or footer > size - 12:
            return None
        f.seek(size - 8 - footer)
        data = f.read(min(footer, 32))
    if len(data) < 4 or data[0] != 0x15:  # field 1, type i32
        return None
    version = _varint(data, 1)
    if version is None or version[1] + 1 >= len(data) or data[version[1]] != 0x19:
        return None  # not field 2, type list
    header = data[version[1] + 1]
    if header & 0x0F != 0x0C:  # a list of structs
        return None
    if header >> 4 != 0x0F:
        return header >> 4
    count = _varint(data, version[1] + 2)
    return None if count is None else count[0]


def _varint(data: bytes, pos: int) -> tuple[int, int] | None:
    """An unsigned LEB128 integer at `pos` and the position after it; None if cut off."""
    value = shift = 0
    while pos < len(data):
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    return None


def check_decompressed_sizes(meta: pq.FileMetaData, names: list[str], sizes: SizeLimits) -> None:
    """Refuse, from the footer alone, a file whose cells, row groups or whole decompress too big."""
    groups = meta.num_row_groups
    text = [
        i
        for i in range(meta.num_columns)
        if meta.schema.column(i).physical_type in ("BYTE_ARRAY", "FIXED_LEN_BYTE_ARRAY")
    ]
    total = 0
    for g in range(groups):
        group = meta.row_group(g)
        for i in text:
            chunk = group.column(i)
            average = chunk.total_uncompressed_size / max(chunk.num_values, 1)
            if average > sizes.max_cell_bytes:
                raise PayloadTooLarge(
                    f"column {names[i]!r} (position {i + 1}), row group {g + 1} of {groups}: its "
                    f"values decompress to {_size(average)} each on average, over the "
                    f"{_size(sizes.max_cell_bytes)} limit on one cell "
                    "(RIDGELINE_MAX_CELL_BYTES); shorten the long values or drop the column"
                )
        if group.total_byte_size > sizes.max_row_group_bytes:
            raise PayloadTooLarge(
                f"row group {g + 1} of {groups} decompresses to {_size(group.total_byte_size)}, "
                f"over the {_size(sizes.max_row_group_bytes)} limit on one row group "
                "(RIDGELINE_MAX_ROW_GROUP_BYTES); write the file with smaller row groups "
                "(pyarrow: row_group_size)"
            )
        total += group.total_byte_size
    if total > sizes.max_decompressed_bytes:
        raise PayloadTooLarge(
            f"the file decompresses to {_size(total)}, over the "
            f"{_size(sizes.max_decompressed_bytes)} limit on one upload "
            "(RIDGELINE_MAX_DECOMPRESSED_BYTES); split it into several datasets"
        )


def batch_rows_for(meta: pq.FileMetaData, target_bytes: int, max_rows: int) -> int:
    """Rows per batch so that one batch of the widest row group decompresses to ~target_bytes."""
    widest = max(
        (
            meta.row_group(g).total_byte_size / meta.row_group(g).num_rows
            for g in range(meta.num_row_groups)
            if meta.row_group(g).num_rows
        ),
        default=1.0,
    )
    return int(max(1, min(max_rows, target_bytes // max(widest, 1.0))))


def _parquet_target(f: pa.Field, index: int) -> pa.DataType:
    """The output type of one Parquet column, or a 422 naming the column for types we cannot use."""
    t = f.type.value_type if pa.types.is_dictionary(f.type) else f.type
    if pa.types.is_integer(t):
        return pa.int64()
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return pa.float64()
    if pa.types.is_boolean(t):
        return pa.bool_()
    textual = pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)
    dated = pa.types.is_date(t) or pa.types.is_timestamp(t) or pa.types.is_time(t)
    if textual or dated or pa.types.is_null(t):
        return pa.string()
    raise InvalidInput(
        f"column {f.name!r} (position {index + 1}) has Parquet type {f.type}, which cannot be "
        "used; keep integer, float, boolean, string or date/timestamp columns and drop or "
        "convert the others"
    )


def _normalize_parquet_batch(batch: pa.RecordBatch, out: pa.Schema, start: int) -> pa.RecordBatch:
    """Cast one batch to the output types, checking the UTF-8 the Parquet reader takes on trust."""
    # NaN becomes missing (as in CSV); dates and timestamps become ISO 8601 strings.
    arrays = []
    for i, (col, target) in enumerate(zip(batch.columns, out, strict=True)):
        if pa.types.is_dictionary(col.type):
            col = col.dictionary_decode()
        t = col.type
        if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
            try:
                col.validate(full=True)
            except pa.ArrowInvalid as exc:
                found = _STRING_INDEX.search(str(exc))
                row = f"row {start + int(found[1]) + 1:,}" if found else f"after row {start:,}"
                raise InvalidInput(
                    f"column {target.name!r} (position {i + 1}), {row}: the text is not valid "
                    "UTF-8; write the strings as UTF-8 and upload again"
                ) from None
        elif pa.types.is_timestamp(t):
            fmt = "%Y-%m-%dT%H:%M:%S%z" if t.tz else "%Y-%m-%dT%H:%M:%S"
            col = pc.strftime(col, format=fmt)
        elif pa.types.is_floating(t) and col.null_count < len(col):
            nan = pc.is_nan(col)
            if pc.any(nan).as_py():
                col = pc.if_else(nan, pa.scalar(None, t), col)
        if col.type != target.type:
            try:
                col = col.cast(target.type)
            except pa.ArrowInvalid as exc:
                raise InvalidInput(
                    f"column {target.name!r} (position {i + 1}) does not fit {target.type}: "
                    f"{exc}; store it as a float or string column instead"
                ) from None
        arrays.append(col)
    return pa.RecordBatch.from_arrays(arrays, schema=out)


# --------------------------------------------------------------------------- csv


@dataclass
class _CsvPlan:
    """What one CSV pass needs: the dialect, the pinned column types and where to resume."""

    path: Path
    delimiter: str
    names: list[str]
    types: dict[str, pa.DataType] = field(default_factory=dict)
    block: int = FAST_BLOCK
    bad_row: list[pa_csv.InvalidRow] = field(default_factory=list)

    def open(self, skip: int = 0, *, locate: bool = False) -> pa_csv.CSVStreamingReader:
        """A reader from row `skip` on; `locate` reads serially, all text, to number bad rows."""
        # Threads convert columns in parallel, but then pyarrow cannot number an invalid row.
        return pa_csv.open_csv(
            self.path,
            read_options=pa_csv.ReadOptions(
                block_size=self.block, use_threads=not locate, skip_rows_after_names=skip
            ),
            parse_options=self._parse_options(),
            convert_options=self._convert_options(locate=locate),
        )

    def read_range(self, data: pa.Buffer) -> pa.Table:
        """Rows of the body (no header line) with the pinned types, parsed on every core."""
        return pa_csv.read_csv(
            pa.BufferReader(data),
            read_options=pa_csv.ReadOptions(
                block_size=self.block, use_threads=True, column_names=self.names
            ),
            parse_options=self._parse_options(),
            convert_options=self._convert_options(locate=False),
        )

    def _parse_options(self) -> pa_csv.ParseOptions:
        def on_invalid(row: pa_csv.InvalidRow) -> str:
            self.bad_row.append(row)
            return "error"

        return pa_csv.ParseOptions(
            delimiter=self.delimiter, newlines_in_values=True, invalid_row_handler=on_invalid
        )

    def _convert_options(self, *, locate: bool) -> pa_csv.ConvertOptions:
        return pa_csv.ConvertOptions(
            column_types={n: pa.string() for n in self.names} if locate else self.types,
            null_values=NULL_VALUES,
            true_values=TRUE_VALUES,
            false_values=FALSE_VALUES,
            strings_can_be_null=True,
        )


class _Widened(Exception):
    """A later block did not fit a column's type; the pass must be redone with the wider type."""

    def __init__(self, rows_ok: int) -> None:
        super().__init__(rows_ok)
        self.rows_ok = rows_ok


def _ingest_csv(
    src: Path,
    dest: Path,
    head: bytes,
    delimiter: str | None,
    max_columns: int,
    max_rows: int | None,
    unique_cap: int,
    block_size: int,
    sizes: SizeLimits,
) -> IngestResult:
    """Speculative write pass; on a type surprise, finish discovering types, then write again."""
    if delimiter is not None and (len(delimiter) != 1 or delimiter in '\r\n"'):
        raise InvalidInput(f"delimiter {delimiter!r} must be a single character such as ',' or ';'")
    header_line = _header_line(src, head, block_size, max_columns)
    delim = delimiter or sniff_delimiter(head)
    names = _parse_header(header_line, delim, max_columns)
    plan = _CsvPlan(src, delim, names, block=min(FAST_BLOCK, block_size))
    _pin_types(plan, block_size)

    writing, rows_ok = True, 0
    for _ in range(4 * len(names) + 4):  # every retry widens a column or grows the block
        try:
            if writing:

                def new_sink() -> _Sink:
                    return _Sink(
                        dest, _output_schema(plan), unique_cap, max_rows, sizes.max_cell_bytes
                    )

                sink = new_sink()
                try:
                    if not _ranges_pass(plan, sink.consume):
                        sink.close()  # the serial pass below finds the row and says what to fix
                        sink = new_sink()
                        _csv_pass(plan, 0, max_rows, sink.consume)
                finally:
                    sink.close()
                if sink.n_rows == 0:
                    raise _no_rows()
                return IngestResult(
                    format="csv",
                    n_rows=sink.n_rows,
                    n_columns=len(plan.names),
                    columns=[acc.result() for acc in sink.accs],
                    delimiter=delim,
                )
            _csv_pass(plan, rows_ok, max_rows, None)
            writing = True  # every type now fits the whole file
        except _Widened as widened:
            if writing:
                dest.unlink(missing_ok=True)
                writing = False
            rows_ok = widened.rows_ok
        except _NeedBiggerBlock as bigger:
            if plan.block >= block_size:
                raise _too_long(block_size, bigger.rows_ok) from None
            plan.block = block_size
            dest.unlink(missing_ok=True)
    raise InvalidInput("column types kept changing while reading the file; upload it again")


def _no_rows() -> InvalidInput:
    return InvalidInput("the file has a header row but no data rows; add rows below the header")


class _NeedBiggerBlock(Exception):
    """A row did not fit the parse block; retry with the full `block_size`."""

    def __init__(self, rows_ok: int) -> None:
        super().__init__(rows_ok)
        self.rows_ok = rows_ok


def _too_long(block_size: int, rows_ok: int) -> InvalidInput:
    return InvalidInput(
        f"a row somewhere after row {rows_ok + 1:,} (counting the header as row 1) is longer than "
        f"the {_size(block_size)} parse block, or a quote is never closed and makes the rest of "
        "the file one field; close the quote or shorten the row"
    )


def _body_ranges(path: Path) -> list[tuple[int, int]] | None:
    """The body after the header line cut at newlines into RANGE_BYTES pieces, or None when the
    body holds a quote (a newline may then lie inside a value: only a serial reader can tell)."""
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return None
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as text:
            start = text.find(b"\n") + 1
            # A quoted header is fine as long as its first newline is not inside a quote.
            if start == 0 or text[:start].count(b'"') % 2 or text.find(b'"', start) >= 0:
                return None
            ranges = []
            while start < size:
                end = min(start + RANGE_BYTES, size)
                if end < size:
                    newline = text.find(b"\n", end)
                    end = size if newline < 0 else newline + 1
                ranges.append((start, end))
                start = end
    return ranges


def _ranges_pass(plan: _CsvPlan, consume: Callable[[pa.Table], None]) -> bool:
    """The writing pass over pieces of the file that each parse on every core while the last
    one is written; False (nothing kept) where it cannot run or a piece does not parse.

    pyarrow's streaming reader parses serially (1.3 s of a 110 MB upload's 1.7 s); a file
    without quotes can be cut at any newline. Any surprise is left to the serial pass, which
    widens a type or names the row.
    """
    ranges = _body_ranges(plan.path)
    if ranges is None:
        return False
    with pa.memory_map(str(plan.path)) as source:

        def tables() -> Iterator[pa.Table]:
            for start, end in ranges:
                table = plan.read_range(source.read_at(end - start, start))
                if table.num_rows:
                    yield table

        try:
            _pump(tables(), consume)
        except pa.ArrowInvalid:
            plan.bad_row.clear()
            return False
    return True


def _csv_pass(
    plan: _CsvPlan, skip: int, max_rows: int | None, consume: Callable[[pa.Table], None] | None
) -> None:
    """Stream the file once; `consume` None means only check that every value converts."""
    rows = skip
    plan.bad_row.clear()

    def batches() -> Iterator[pa.RecordBatch]:
        nonlocal rows
        reader = plan.open(skip)
        try:
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                rows += batch.num_rows
                if consume is None:
                    _check_rows(rows, max_rows)
                yield batch
        finally:
            reader.close()

    try:
        if consume is None:
            for _ in batches():
                pass
        else:
            _pump(_chunks(batches(), CHUNK_BYTES), consume)
    except pa.ArrowInvalid as exc:
        _handle_csv_error(plan, exc, rows)


def _handle_csv_error(plan: _CsvPlan, exc: pa.ArrowInvalid, rows_ok: int) -> None:
    """Widen a column (raising _Widened) or turn pyarrow's error into a 422 that says where."""
    msg = str(exc)
    if plan.bad_row:
        raise _ragged(_number_bad_row(plan, rows_ok), plan.delimiter) from None
    if "straddles" in msg or "cannot infer number of columns" in msg:
        raise _NeedBiggerBlock(rows_ok) from None
    m = _CONVERSION_ERROR.match(msg)
    if m is None:
        raise InvalidInput(f"the CSV cannot be parsed after row {rows_ok + 1:,}: {msg}") from None
    index, row, target, rest = int(m[1]), m[2], m[3], m[4]
    name = plan.names[index]
    if "invalid UTF8" in rest:
        raise _not_utf8(plan, name) from None
    value_match = _INVALID_VALUE.search(rest)
    value = value_match[1] if value_match else ""
    wider = _widen(plan.types[name], value)
    if wider is None:
        where = f"row {row}" if row else f"after row {rows_ok + 1:,}"
        raise InvalidInput(
            f"column {name!r} at {where} cannot be read as {target}: {rest}"
        ) from None
    plan.types[name] = wider
    raise _Widened(rows_ok)


def _number_bad_row(plan: _CsvPlan, rows_ok: int) -> pa_csv.InvalidRow:
    """The first invalid row with its row number, re-read serially from where the pass failed."""
    row = plan.bad_row[0]
    if row.number is not None:
        return row
    plan.bad_row.clear()
    try:
        reader = plan.open(rows_ok, locate=True)
        while True:
            reader.read_next_batch()
    except (pa.ArrowInvalid, StopIteration):
        pass
    return plan.bad_row[0] if plan.bad_row else row


def _widen(current: pa.DataType, value: str) -> pa.DataType | None:
    """The next type up that can hold `value` as well as everything seen before, or None."""
    guess = _guess_type(value)
    if current == pa.null():
        wider = guess
    elif current == pa.int64():
        wider = pa.float64() if guess in (pa.int64(), pa.float64()) else pa.string()
    elif current in (pa.bool_(), pa.float64()):
        wider = pa.string()
    else:
        return None
    return wider if _RANK[wider] > _RANK.get(current, 3) else None


def _guess_type(value: str) -> pa.DataType:
    text = value.strip()
    if _INT.fullmatch(text) and -(2**63) <= int(text) < 2**63:
        return pa.int64()
    if text in TRUE_VALUES or text in FALSE_VALUES:
        return pa.bool_()
    try:
        float(text)
    except ValueError:
        return pa.string()
    return pa.float64()


def _pin_types(plan: _CsvPlan, block_size: int) -> None:
    """Fix every column's type from the first block; dates and times are kept as text."""
    while True:
        try:
            reader = plan.open()
        except pa.ArrowInvalid as exc:
            if plan.bad_row:
                raise _ragged(_number_bad_row(plan, 0), plan.delimiter) from None
            msg = str(exc)
            if "straddles" in msg or "cannot infer number of columns" in msg:
                if plan.block >= block_size:
                    raise _too_long(block_size, 0) from None
                plan.block = block_size
                continue
            raise InvalidInput(f"the CSV cannot be parsed: {msg}") from None
        schema = reader.schema
        reader.close()
        break
    try:
        names = schema.names
    except UnicodeDecodeError:
        raise _not_utf8(plan, None) from None
    if names != plan.names:  # a header with quoted newlines: pyarrow's reading is the truth
        plan.names = names
        _check_names(names)
    binary = [f.name for f in schema if pa.types.is_binary(f.type)]
    if binary:
        raise _not_utf8(plan, binary[0])
    for f in schema:
        plan.types[f.name] = f.type if f.type in _RANK else pa.string()


def _output_schema(plan: _CsvPlan) -> pa.Schema:
    """Pinned types as written: a column with no value at all becomes an empty categorical."""
    return pa.schema(
        [
            pa.field(unicodedata.normalize("NFC", n), pa.string() if t == pa.null() else t)
            for n, t in plan.types.items()
        ]
    )


# --------------------------------------------------------------------------- csv header & dialect


def sniff_delimiter(head: bytes) -> str:
    """Pick the candidate that splits the header into most fields consistently across lines."""
    text = head.removeprefix(b"\xef\xbb\xbf").decode("utf-8", errors="replace")
    if len(head) >= HEAD_BYTES and "\n" in text:
        text = text[: text.rindex("\n")]  # the last line may be cut
    best, best_key = ",", (False, 0.0, 0)
    for cand in DELIMITERS:
        try:
            counts = [
                len(r) for r in csv.reader(io.StringIO(text, newline=None), delimiter=cand) if r
            ]
        except csv.Error:
            continue
        if not counts:
            continue
        consistency = sum(c == counts[0] for c in counts) / len(counts)
        key = (counts[0] > 1, consistency, counts[0])
        if key > best_key:
            best, best_key = cand, key
    return best


def _header_line(src: Path, head: bytes, block_size: int, max_columns: int) -> bytes:
    """The raw first line, read without parsing the body so bad headers fail fast."""
    data, at_end = head, len(head) < HEAD_BYTES
    with src.open("rb") as f:
        f.seek(len(head))
        while not _EOL.search(data) and len(data) < block_size and not at_end:
            more = f.read(HEAD_BYTES)
            at_end = len(more) < HEAD_BYTES
            data += more
    data = data.removeprefix(b"\xef\xbb\xbf")
    eol = _EOL.search(data)
    end = eol.start() if eol else -1
    line = data if end < 0 else data[:end]
    if end < 0 and at_end and len(line) < block_size:
        raise _no_rows()
    if len(line) >= block_size:
        n_fields = max(line.count(d.encode()) for d in DELIMITERS) + 1
        if n_fields > max_columns:
            raise _too_many_columns(n_fields, max_columns, at_least=True)
        raise InvalidInput(
            f"the header row is longer than the {_size(block_size)} parse block; "
            "shorten the column names or drop columns"
        )
    return line


def _parse_header(line: bytes, delimiter: str, max_columns: int) -> list[str]:
    """Column names from the header line, checked before any data row is parsed."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"the header row (line 1) is not valid UTF-8: byte 0x{line[exc.start]:02X} at "
            f"character {exc.start + 1}; save the file as UTF-8 and upload it again"
        ) from None
    names = next(csv.reader([text], delimiter=delimiter), [])
    if len(names) > max_columns:
        raise _too_many_columns(len(names), max_columns)
    _check_names(names)
    return names


def _too_many_columns(n: int, limit: int, at_least: bool = False) -> InvalidInput:
    count = f"at least {n:,}" if at_least else f"{n:,}"
    return InvalidInput(
        f"the file has {count} columns; the limit is {limit:,}. Drop columns and upload again"
    )


def _check_header(names: list[str], max_columns: int) -> list[str]:
    """The column names, NFC-normalized, if their number and spelling are acceptable."""
    if len(names) > max_columns:
        raise _too_many_columns(len(names), max_columns)
    if not names:
        raise InvalidInput("the file has no columns; upload a file with at least one column")
    return _check_names(names)


def _check_names(raw: list[str]) -> list[str]:
    """Names NFC-normalized, non-empty, visible and unique, since jobs refer to columns by name."""
    names = [unicodedata.normalize("NFC", n) for n in raw]
    empty = [i + 1 for i, n in enumerate(names) if not n.strip()]
    if empty:
        where = ", ".join(str(i) for i in empty[:10])
        raise InvalidInput(
            f"the header has an empty column name at position {where} (of {len(names)}); "
            "give every column a name"
        )
    seen: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        seen.setdefault(n, []).append(i + 1)
    dups = {n: pos for n, pos in seen.items() if len(pos) > 1}
    if dups:
        listed = "; ".join(f"{n!r} at positions {', '.join(map(str, p))}" for n, p in dups.items())
        raise InvalidInput(
            f"duplicate column names (compared in Unicode NFC form): {listed}. Rename them so "
            "each is unique"
        )
    for i, name in enumerate(names):
        hidden = next((c for c in name if unicodedata.category(c) in _HIDDEN_CATEGORIES), None)
        if hidden is not None:
            what = unicodedata.name(hidden, "a control character")
            raise InvalidInput(
                f"column {name!r} (position {i + 1}) contains U+{ord(hidden):04X} ({what}), an "
                "invisible or text-direction character; rename the column without it",
                errors=[{"field": f"columns[{i}]", "message": f"contains U+{ord(hidden):04X}"}],
            )
    return names


# --------------------------------------------------------------------------- csv error details


def _ragged(row: pa_csv.InvalidRow, delimiter: str) -> InvalidInput:
    where = f"row {row.number:,}" if row.number is not None else "a row"
    text = row.text if len(row.text) <= 80 else row.text[:77] + "..."
    return InvalidInput(
        f"{where} (counting the header as row 1) has {row.actual_columns} fields but the header "
        f"has {row.expected_columns} (delimiter {delimiter!r}): {text!r}. Give every row "
        f"{row.expected_columns} fields, and quote fields that contain the delimiter"
    )


def _not_utf8(plan: _CsvPlan, column: str | None) -> InvalidInput:
    """Locate the first invalid byte by scanning the file, since pyarrow does not say where."""
    found = find_invalid_utf8(plan.path)
    if found is None:
        where = f" in column {column!r}" if column else ""
        return InvalidInput(f"the file is not valid UTF-8{where}; save it as UTF-8 and retry")
    line, byte_col, bad, prefix = found
    if prefix or byte_col == 1:
        text = prefix.decode("utf-8", errors="replace").replace("\r", " ") + "x"
        fields = next(csv.reader([text], delimiter=plan.delimiter), [""])
        if len(fields) <= len(plan.names):
            column = plan.names[len(fields) - 1]
    col = f", column {column!r}" if column else ""
    return InvalidInput(
        f"the file is not valid UTF-8: line {line:,}{col}, byte {byte_col} of the line is "
        f"0x{bad:02X}. Save the file as UTF-8 (e.g. 'CSV UTF-8' in Excel) and upload it again"
    )


def find_invalid_utf8(path: Path, chunk: int = 4 * MiB) -> tuple[int, int, int, bytes] | None:
    """Where the first invalid UTF-8 byte is, since pyarrow only says that there is one."""
    # Returns (line, byte column, the byte, the line up to it, empty beyond 1 MiB) or None.
    with Path(path).open("rb") as f:
        line, pos, line_start = 1, 0, 0
        carry, line_head = b"", b""
        while True:
            more = f.read(chunk)
            data = carry + more
            if not data:
                return None
            error: UnicodeDecodeError | None = None
            try:
                data.decode("utf-8")
                good = len(data)
            except UnicodeDecodeError as exc:
                good = exc.start
                cut_at_end = bool(more) and exc.end == len(data) and "end of data" in exc.reason
                error = None if cut_at_end else exc
            seen = data[:good]
            newlines = seen.count(b"\n")
            if newlines:
                line += newlines
                last = seen.rindex(b"\n")
                line_start = pos + last + 1
                line_head = seen[last + 1 : last + 1 + MiB]
            elif len(line_head) < MiB:
                line_head += seen[: MiB - len(line_head)]
            if error is not None:
                column = pos + good - line_start + 1
                prefix = line_head if column <= MiB else b""
                return line, column, data[good], prefix
            carry, pos = data[good:], pos + good
            if not more:
                return None
