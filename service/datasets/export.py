"""A stored dataset read back in bounded pieces: CSV downloads, scored CSVs, previews.

Stored Parquet is written by ingest in row groups of about 32 MiB of Arrow memory, but a
dictionary-encoded column decodes to more than the footer says. So reads go one row group at a
time, in batches sized from the footer (about `READ_BATCH_BYTES` each): a batch never spans
two row groups, so none decodes to more than its row group holds, and a CSV answer is
produced and sent batch by batch. A dataset stored before the size limits existed, whose footer
shows cells over the per-cell limit, is refused rather than expanded in the API process.

CSV for spreadsheets: a text cell starting with `=`, `+`, `-`, `@`, a tab or a carriage return
is a formula to Excel, LibreOffice and Google Sheets (CSV injection). With `escape_formulas`,
such cells (and such column names) get a leading `'`, which spreadsheets read as "this is text"
and do not display, OWASP's advice; every text cell is quoted, embedded quotes doubled.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from service import blobs
from service.datasets.ingest import (
    PARQUET_BATCH_ROWS,
    SizeLimits,
    batch_rows_for,
    check_decompressed_sizes,
)
from service.db import Database
from service.errors import Conflict, PayloadTooLarge

MiB = 1 << 20
Piece = bytes | memoryview
READ_BATCH_BYTES = 8 * MiB
PIECE_BYTES = 1 * MiB
FORMULA_START = r"^([=+\-@\t\r])"
FORMULA_CHARACTERS = ("=", "+", "-", "@", "\t", "\r")
ESCAPE_FORMULAS_DOC = (
    "CSV only. True (the default, for spreadsheets): a text cell or column name starting with "
    "=, +, -, @, a tab or a carriage return gets a leading ' so a spreadsheet shows it as text "
    "instead of running it as a formula (CSV injection). False: the exact values, for programs."
)


def open_stored(db: Database, blob_id: uuid.UUID, sizes: SizeLimits) -> pq.ParquetFile:
    """The stored Parquet, read lazily from the blob store, if its footer is within the limits."""
    parquet = pq.ParquetFile(blobs.open_blob(db, blob_id))
    try:
        check_decompressed_sizes(parquet.metadata, parquet.schema_arrow.names, sizes)
    except PayloadTooLarge as exc:
        raise Conflict(
            f"this dataset was stored before the current size limits and is over them: "
            f"{exc.detail}. Delete it and upload the data again"
        ) from None
    return parquet


def bounded_batches(
    parquet: pq.ParquetFile, *, max_rows: int = PARQUET_BATCH_ROWS
) -> Iterator[pa.RecordBatch]:
    """Every row in order, one row group at a time, in batches of about READ_BATCH_BYTES."""
    rows = batch_rows_for(parquet.metadata, READ_BATCH_BYTES, max_rows)
    for group in range(parquet.num_row_groups):
        yield from parquet.iter_batches(batch_size=rows, row_groups=[group])


def shorten_text(batch: pa.RecordBatch, max_chars: int) -> pa.RecordBatch:
    """Text values longer than `max_chars` cut to that many characters, ending in an ellipsis."""
    columns = []
    for col in batch.columns:
        if pa.types.is_string(col.type):
            lengths = pc.utf8_length(col)
            if (pc.max(lengths).as_py() or 0) > max_chars:
                cut = pc.utf8_slice_codeunits(col, 0, max_chars - 1)
                col = pc.if_else(
                    pc.greater(lengths, max_chars),
                    pc.binary_join_element_wise(cut, "\u2026", ""),
                    col,
                )
        columns.append(col)
    return pa.RecordBatch.from_arrays(columns, schema=batch.schema)


def escape_formulas(table: pa.Table) -> pa.Table:
    """Text cells and names that a spreadsheet would run as a formula, prefixed with `'`."""
    names = [_escape_name(name) for name in table.column_names]
    columns = [
        pc.replace_substring_regex(col, pattern=FORMULA_START, replacement=r"'\1")
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
        else col
        for col in table.columns
    ]
    return pa.Table.from_arrays(columns, names=names)


def _escape_name(name: str) -> str:
    return "'" + name if name.startswith(FORMULA_CHARACTERS) else name


class _Drain(io.RawIOBase):
    """A write-only sink whose bytes are handed out as they are produced."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


def csv_stream(
    tables: Iterator[pa.Table], schema: pa.Schema, *, delimiter: str, formulas: bool
) -> Iterator[Piece]:
    """CSV text of each table as it comes (header first), never more than one table at once."""
    if formulas:
        schema = escape_formulas(schema.empty_table()).schema
    sink = _Drain()
    options = pa_csv.WriteOptions(delimiter=delimiter)
    with pa_csv.CSVWriter(sink, schema, write_options=options) as writer:
        yield sink.take()  # the header
        for table in tables:
            writer.write_table(escape_formulas(table) if formulas else table)
            text = memoryview(sink.take())
            for start in range(0, len(text), PIECE_BYTES):  # small writes for the transport
                yield text[start : start + PIECE_BYTES]
