"""Ingest: CSV/Parquet parsing, whole-file type inference, stats, and a clear 4xx for bad files."""

from __future__ import annotations

import datetime as dt
import decimal
import gzip
import io
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from service.datasets import ingest as ingest_mod
from service.datasets.ingest import (
    ColumnStats,
    IngestResult,
    detect_format,
    find_invalid_utf8,
    ingest,
    sniff_delimiter,
)
from service.errors import InvalidInput, ServiceError, UnsupportedMediaType

SMALL_BLOCK = 1024  # so values late in a test file really fall in a later parse block


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def run(src: Path, **kwargs: object) -> tuple[IngestResult, pa.Table]:
    dest = src.parent / "out.parquet"
    result = ingest(src, dest, filename=src.name, **kwargs)  # type: ignore[arg-type]
    return result, pq.read_table(dest)


def fail(src: Path, error: type[ServiceError] = InvalidInput, **kwargs: object) -> str:
    """Ingest must raise `error`, and leave no output file behind; returns the detail."""
    dest = src.parent / "out.parquet"
    dest.write_bytes(b"stale output from an earlier attempt")
    with pytest.raises(ServiceError) as info:
        ingest(src, dest, filename=src.name, **kwargs)  # type: ignore[arg-type]
    assert type(info.value) is error, info.value.detail
    assert not dest.exists()
    return info.value.detail


def col(result: IngestResult, name: str) -> ColumnStats:
    return next(c for c in result.columns if c.name == name)


@pytest.fixture(params=["one piece", "many pieces"])
def pieces(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A quote-free body parses in pieces: one, or many small ones (each a few rows)."""
    if request.param == "many pieces":
        monkeypatch.setattr(ingest_mod, "RANGE_BYTES", 256)
    return str(request.param)


def csv_bytes(header: str, rows: list[str], sep: str = ",", eol: str = "\n") -> bytes:
    return (
        eol.join([header.replace(",", sep), *(r.replace(",", sep) for r in rows)]) + eol
    ).encode()


# --------------------------------------------------------------------------- happy paths


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_csv_delimiter_is_detected(tmp_path: Path, sep: str) -> None:
    data = csv_bytes("id,price,label", ["1,2.5,a", "2,3.5,b", "3,,a"], sep=sep)
    result, table = run(write(tmp_path, "d.csv", data))
    assert result.delimiter == sep
    assert (result.format, result.n_rows, result.n_columns) == ("csv", 3, 3)
    assert [c.dtype for c in result.columns] == ["integer", "float", "categorical"]
    assert table.to_pydict() == {"id": [1, 2, 3], "price": [2.5, 3.5, None], "label": list("aba")}


def test_semicolon_file_with_decimal_commas_is_not_read_as_comma(tmp_path: Path) -> None:
    data = b"a;b;c\n1,5;2;x\n2,5;3;y\n"
    assert sniff_delimiter(data) == ";"
    result, table = run(write(tmp_path, "eu.csv", data))
    assert result.delimiter == ";"
    assert table.column("a").to_pylist() == ["1,5", "2,5"]


def test_given_delimiter_wins_over_detection(tmp_path: Path) -> None:
    result, table = run(write(tmp_path, "d.csv", b"a,b|c\n1,2|3\n"), delimiter="|")
    assert result.delimiter == "|"
    assert table.column_names == ["a,b", "c"]


def test_a_given_delimiter_must_be_one_character(tmp_path: Path) -> None:
    assert "single character" in fail(write(tmp_path, "d.csv", b"a,b\n1,2\n"), delimiter=",;")


def test_quoted_fields_keep_delimiters_quotes_and_newlines(tmp_path: Path) -> None:
    data = b'name,note,n\n"Smith, J","said ""hi""",1\n"x","two\nlines",2\n'
    result, table = run(write(tmp_path, "q.csv", data))
    assert result.n_rows == 2
    assert table.column("name").to_pylist() == ["Smith, J", "x"]
    assert table.column("note").to_pylist() == ['said "hi"', "two\nlines"]
    assert table.column("n").to_pylist() == [1, 2]


@pytest.mark.parametrize("eol", [b"\r\n", b"\r", b"\n"])
def test_bom_line_endings_and_missing_final_newline(
    tmp_path: Path, eol: bytes, pieces: str
) -> None:
    data = b"\xef\xbb\xbfid,score" + eol + b"1,0.5" + eol + b"2,0.25"
    result, table = run(write(tmp_path, "w.csv", data))
    assert [c.name for c in result.columns] == ["id", "score"]
    assert table.to_pydict() == {"id": [1, 2], "score": [0.5, 0.25]}


def test_written_parquet_equals_the_csv_values(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    n = 3000
    source = pa.table(
        {
            "i": pa.array(rng.integers(-(10**12), 10**12, n)),
            "f": pa.array(rng.normal(size=n) * 1e6),
            "b": pa.array(rng.integers(0, 2, n).astype(bool)),
            "s": pa.array([f"cat {k}" for k in rng.integers(0, 50, n)]),
            "m": pa.array([None if k % 7 == 0 else k + 0.5 for k in range(n)]),
        }
    )
    buf = io.BytesIO()
    pa_csv.write_csv(source, buf)
    result, table = run(write(tmp_path, "t.csv", buf.getvalue()), block_size=SMALL_BLOCK)
    assert [c.dtype for c in result.columns] == [
        "integer",
        "float",
        "boolean",
        "categorical",
        "float",
    ]
    assert table.schema.types == [pa.int64(), pa.float64(), pa.bool_(), pa.string(), pa.float64()]
    assert table.equals(source)
    assert pq.ParquetFile(tmp_path / "out.parquet").metadata.row_group(0).column(0).compression == (
        "ZSTD"
    )


def test_floats_that_zstd_cannot_shrink_are_stored_uncompressed(tmp_path: Path) -> None:
    """Full-precision floats save little and cost 40 % of the write; the rest stays zstd."""
    rng = np.random.default_rng(5)
    n = 4000
    source = pa.table(
        {
            "noise": rng.normal(size=n),
            "price": np.round(rng.gamma(2.0, 50.0, n), 1),
            "count": rng.integers(0, 20, n),
            "label": [f"c{k}" for k in rng.integers(0, 5, n)],
        }
    )
    buf = io.BytesIO()
    pa_csv.write_csv(source, buf)
    _, table = run(write(tmp_path, "mixed.csv", buf.getvalue()))
    assert table.equals(source)
    group = pq.ParquetFile(tmp_path / "out.parquet").metadata.row_group(0)
    codecs = {group.column(i).path_in_schema: group.column(i).compression for i in range(4)}
    assert codecs == {"noise": "UNCOMPRESSED", "price": "ZSTD", "count": "ZSTD", "label": "ZSTD"}


def test_a_quote_free_body_in_pieces_gives_what_the_serial_reader_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(3)
    rows = [
        f"{i},{rng.normal():.6f},{'' if i % 11 == 0 else rng.integers(0, 9)},"
        f"{['red', 'green', 'blue'][i % 3]},{'true' if i % 2 else 'false'}"
        for i in range(3000)
    ]
    src = write(tmp_path, "p.csv", ("id,x,n,color,flag\r\n" + "\r\n".join(rows)).encode())
    read = ingest_mod._CsvPlan.read_range
    parsed: list[int] = []

    def counted(plan: ingest_mod._CsvPlan, data: pa.Buffer) -> pa.Table:
        table = read(plan, data)
        parsed.append(table.num_rows)
        return table

    monkeypatch.setattr(ingest_mod._CsvPlan, "read_range", counted)
    monkeypatch.setattr(ingest_mod, "RANGE_BYTES", 4096)
    in_pieces, table = run(src)
    assert len(parsed) > 10 and sum(parsed) == 3000

    monkeypatch.setattr(ingest_mod, "_body_ranges", lambda path: None)
    serial, serial_table = run(src)
    assert table.equals(serial_table) and in_pieces == serial
    assert [c.dtype for c in serial.columns] == [
        "integer",
        "float",
        "integer",
        "categorical",
        "boolean",
    ]


def test_a_body_with_a_quote_is_read_serially(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest_mod, "RANGE_BYTES", 8)
    monkeypatch.setattr(ingest_mod._CsvPlan, "read_range", None)  # must not be called
    result, table = run(write(tmp_path, "q.csv", b'"a","b"\n1,"x\ny"\n2,z\n'))
    assert result.n_rows == 2 and table.column("b").to_pylist() == ["x\ny", "z"]


def test_parquet_types_map_to_the_four_dtypes(tmp_path: Path) -> None:
    source = pa.table(
        {
            "i8": pa.array([1, None, 3], pa.int8()),
            "u32": pa.array([1, 2, 3], pa.uint32()),
            "f32": pa.array([1.5, float("nan"), None], pa.float32()),
            "dec": pa.array([decimal.Decimal("1.25"), None, decimal.Decimal("3.50")]),
            "flag": pa.array([True, None, False]),
            "big": pa.array(["x", "y", None], pa.large_string()),
            "dict": pa.array(["a", "a", "b"]).dictionary_encode(),
            "day": pa.array([dt.date(2020, 1, 2), None, dt.date(2020, 1, 3)]),
            "at": pa.array([dt.datetime(2020, 1, 2, 3, 4, 5), None, None], pa.timestamp("s")),
        }
    )
    src = tmp_path / "in.parquet"
    pq.write_table(source, src)
    result, table = run(src)
    assert result.format == "parquet" and result.delimiter is None
    assert [c.dtype for c in result.columns] == [
        "integer", "integer", "float", "float", "boolean",
        "categorical", "categorical", "categorical", "categorical",
    ]  # fmt: skip
    assert (
        table.schema.types
        == [pa.int64()] * 2 + [pa.float64()] * 2 + [pa.bool_()] + [pa.string()] * 4
    )
    rows = table.to_pydict()
    assert rows["i8"] == [1, None, 3] and rows["dec"] == [1.25, None, 3.5]
    assert rows["f32"] == [1.5, None, None]  # NaN counts as missing, as in CSV
    assert col(result, "f32").n_missing == 2
    assert rows["dict"] == ["a", "a", "b"] and rows["big"] == ["x", "y", None]
    assert rows["day"] == ["2020-01-02", None, "2020-01-03"]
    assert rows["at"] == ["2020-01-02T03:04:05.000", None, None]  # Parquet stores ms


# --------------------------------------------------------------------------- whole-file inference


def test_types_are_inferred_over_the_whole_file_not_its_first_block(
    tmp_path: Path, pieces: str
) -> None:
    early = ["1,1,,,true,5,2020-01-01"] * 400  # ~12 KiB: many 1 KiB blocks before the surprise
    late = ["2,2.5,3,,false,x,2020-01-02", "3,1,4,word,maybe,6,2020-01-03"]
    header = "int_col,turns_float,null_then_int,null_then_text,bool_then_text,turns_text,day"
    src = write(tmp_path, "late.csv", csv_bytes(header, early + late))
    result, table = run(src, block_size=SMALL_BLOCK)
    dtypes = {c.name: c.dtype for c in result.columns}
    assert dtypes == {
        "int_col": "integer",
        "turns_float": "float",
        "null_then_int": "integer",
        "null_then_text": "categorical",
        "bool_then_text": "categorical",
        "turns_text": "categorical",
        "day": "categorical",
    }
    assert result.n_rows == 402
    values = table.to_pydict()
    assert values["turns_float"][0] == 1.0 and values["turns_float"][400] == 2.5
    assert values["null_then_int"][-2:] == [3, 4] and values["null_then_int"][0] is None
    assert values["turns_text"][0] == "5" and values["turns_text"][400] == "x"
    assert values["bool_then_text"][0] == "true" and values["bool_then_text"][-1] == "maybe"
    assert values["day"][-1] == "2020-01-03"
    assert col(result, "turns_float").max == 2.5 and col(result, "null_then_int").n_missing == 400


def test_a_column_with_no_value_at_all_is_an_empty_categorical(tmp_path: Path) -> None:
    result, table = run(write(tmp_path, "e.csv", b"a,b\n1,\n2,NA\n"))
    assert col(result, "b").dtype == "categorical" and col(result, "b").n_missing == 2
    assert table.schema.field("b").type == pa.string()


def test_booleans_accept_the_usual_spellings_and_zero_one_stays_integer(tmp_path: Path) -> None:
    data = b"b,z\ntrue,0\nFALSE,1\nTrue,0\nfalse,\n"
    result, table = run(write(tmp_path, "b.csv", data))
    assert col(result, "b").dtype == "boolean" and col(result, "z").dtype == "integer"
    assert table.column("b").to_pylist() == [True, False, True, False]
    assert col(result, "b").n_unique == 2 and col(result, "b").min is None


def test_missing_value_spellings_count_as_missing_in_every_dtype(tmp_path: Path) -> None:
    rows = ["1,a", ",", "NA,NA", "N/A,N/A", "null,null", "NULL,NULL", "NaN,NaN", "nan,nan"]
    rows += ["None,None", '"",""', "2,b"]
    result, table = run(write(tmp_path, "m.csv", csv_bytes("x,label", rows)))
    assert col(result, "x").dtype == "integer" and col(result, "label").dtype == "categorical"
    assert col(result, "x").n_missing == 9 and col(result, "label").n_missing == 9
    assert table.column("label").to_pylist() == ["a"] + [None] * 9 + ["b"]


# --------------------------------------------------------------------------- stats


def test_stats_are_exact_for_small_columns(tmp_path: Path) -> None:
    data = csv_bytes("n,x,c", ["1,0.5,a", "4,-2.5,b", ",1.0,a", "4,,", "10,3.0,c"])
    result, _ = run(write(tmp_path, "s.csv", data))
    n, x, c = result.columns
    assert (n.n_missing, n.n_unique, n.n_unique_exact) == (1, 3, True)
    assert (n.min, n.max, n.mean) == (1, 10, 19 / 4)
    assert (x.n_missing, x.n_unique, x.min, x.max, x.mean) == (1, 4, -2.5, 3.0, 0.5)
    assert (c.n_missing, c.n_unique, c.n_unique_exact) == (1, 3, True)
    assert (c.min, c.max, c.mean) == (None, None, None)


def test_n_unique_is_estimated_within_5_percent_beyond_the_cap(tmp_path: Path) -> None:
    n = 60_000
    rng = np.random.default_rng(3)
    ints = rng.integers(0, 40_000, n)  # about 31,000 distinct values
    few = rng.integers(0, 1500, n)
    source = pa.table(
        {
            "ints": ints,
            "floats": rng.normal(size=n),
            "text": pa.array([f"id-{k}" for k in ints]),
            "few": few,
        }
    )
    buf = io.BytesIO()
    pa_csv.write_csv(source, buf)
    result, _ = run(write(tmp_path, "u.csv", buf.getvalue()), unique_cap=4096)
    for name, truth in [("ints", len(set(ints))), ("floats", n), ("text", len(set(ints)))]:
        stats = col(result, name)
        assert not stats.n_unique_exact, name
        assert abs(stats.n_unique - truth) / truth < 0.05, (name, stats.n_unique, truth)
    assert col(result, "few").n_unique_exact and col(result, "few").n_unique == len(set(few))


def _sketch_chunks(case: str, k: int, seed: int) -> list[np.ndarray]:
    """Chunks of 64-bit hashes for one sketch case; a pool's values all appear at least once."""
    rng = np.random.default_rng(seed)
    pools = {"few": 5, "k - 1": k - 1, "exactly k": k, "k + 1": k + 1}
    size = pools.get(case, 4 * k + 7)
    pool = np.unique(rng.integers(0, 2**64 - 1, size + 8, dtype=np.uint64))[:size]
    rng.shuffle(pool)
    sizes = [0, 1, k // 2, k, k + 1, 3 * k, 7 * k + 3, 2, 5 * k]
    chunks = [rng.choice(pool, n) for n in sizes]
    for kind, times in [("repeats among the smallest", 3), ("a few smallest repeated", 40)]:
        if case == kind:  # a chunk's k + 1 smallest hashes are fewer distinct ones
            smallest = np.repeat(np.sort(pool)[: k // 2], times)
            chunks[6] = rng.permutation(np.concatenate([smallest, chunks[6]]))
    if case == "saturated, then small chunks":
        chunks += [rng.choice(pool, n) for n in rng.integers(0, 40, 30)]
    chunks.insert(int(rng.integers(0, len(chunks))), rng.permutation(pool))
    return chunks


@pytest.mark.parametrize("k", [16, 50, 10_000])
@pytest.mark.parametrize(
    "case",
    [
        "few",
        "k - 1",
        "exactly k",
        "k + 1",
        "many",
        "repeats among the smallest",
        "a few smallest repeated",
        "saturated, then small chunks",
    ],
)
def test_the_sketch_holds_exactly_the_k_smallest_distinct_hashes(case: str, k: int) -> None:
    for seed in range(3):
        acc = ingest_mod._ColumnAcc("x", "float", unique_cap=k)
        reference = np.empty(0, dtype=np.uint64)  # every distinct hash so far
        for i, chunk in enumerate(_sketch_chunks(case, k, seed)):
            acc._add_hashes(chunk.copy())
            reference = np.unique(np.concatenate([reference, chunk]))
            assert np.array_equal(acc.sketch, reference[:k]), (case, k, seed, i)
            assert acc.saturated == (reference.size > k), (case, k, seed, i)
        stats = acc.result()
        assert stats.n_unique_exact == (reference.size <= k)
        if stats.n_unique_exact:
            assert stats.n_unique == reference.size


def test_the_sketch_of_values_matches_the_hashes_of_their_distinct_values() -> None:
    """-0.0 and 0.0 are one value; text is hashed by its distinct values; nulls are not values."""
    rng = np.random.default_rng(11)
    floats = rng.normal(size=3_000).round(1)  # about 80 distinct values, zeros of both signs
    floats[::7] = -0.0
    words = np.array([f"w{i}" for i in rng.integers(0, 500, 3_000)], dtype=object)
    for dtype, values in [("float", floats), ("categorical", words)]:
        for k in (16, 10_000):
            acc = ingest_mod._ColumnAcc("x", dtype, unique_cap=k)  # type: ignore[arg-type]
            for part in np.array_split(values, 7):
                acc.update(pa.chunked_array([pa.array([*part, None])]))
            distinct = np.unique(values + 0.0 if dtype == "float" else values)
            reference = np.unique(pd.util.hash_array(distinct, categorize=False))
            assert np.array_equal(acc.sketch, reference[:k]), (dtype, k)
            assert acc.saturated == (reference.size > k)
            assert acc.result().n_missing == 7


def test_to_dict_is_json_safe_with_infinities(tmp_path: Path) -> None:
    result, _ = run(write(tmp_path, "inf.csv", b"x\n1.5\ninf\n-inf\n"))
    record = col(result, "x").to_dict()
    assert record["min"] is None and record["max"] is None and record["mean"] is None
    assert record["n_unique"] == 3
    json.dumps(result.to_dict(), allow_nan=False)


def test_stats_from_parquet_span_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest_mod, "PARQUET_BATCH_ROWS", 100)
    monkeypatch.setattr(ingest_mod, "CHUNK_BYTES", 1000)
    values = [float(i) if i % 10 else None for i in range(1000)]
    src = tmp_path / "p.parquet"
    pq.write_table(pa.table({"v": values}), src, row_group_size=250)
    result, table = run(src)
    stats = col(result, "v")
    assert (stats.n_missing, stats.n_unique, stats.min, stats.max) == (100, 900, 1.0, 999.0)
    assert math.isclose(stats.mean or 0, sum(v for v in values if v) / 900)
    assert table.column("v").to_pylist() == values
    assert pq.ParquetFile(tmp_path / "out.parquet").metadata.num_row_groups > 1


# --------------------------------------------------------------------------- format detection


def test_detect_format_trusts_content_over_the_name() -> None:
    assert detect_format(b"PAR1\x15\x04", "data.csv") == "parquet"
    assert detect_format(b"a,b\n1,2\n", "data.parquet") == "csv"
    with pytest.raises(InvalidInput, match="empty"):
        detect_format(b"", "x.csv")


@pytest.mark.parametrize(
    ("name", "data", "says"),
    [
        ("book.xlsx", b"PK\x03\x04" + b"\x14\x00" * 20, "spreadsheet (.xlsx"),
        ("x.zip", b"PK\x03\x04" + b"\x14\x00" * 20, "ZIP"),
        ("x.csv.gz", gzip.compress(b"a,b\n1,2\n"), "gzip"),
        ("x.pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "PDF"),
        ("x.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "PNG"),
        ("x.json", b'[{"a": 1}, {"a": 2}]', "JSON"),
        ("x.txt", b'{"a": 1}\n{"a": 2}\n', "JSON"),
        ("x.csv", "a,b\n1,2\n".encode("utf-16"), "UTF-16"),
    ],
)
def test_known_other_formats_are_415_naming_them(
    tmp_path: Path, name: str, data: bytes, says: str
) -> None:
    detail = fail(write(tmp_path, name, data), UnsupportedMediaType)
    assert says in detail and "CSV" in detail and "Parquet" in detail


def test_real_xlsx_zip_is_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
    detail = fail(write(tmp_path, "sheet.xlsx", buf.getvalue()), UnsupportedMediaType)
    assert "export the sheet as CSV" in detail


@pytest.mark.parametrize(
    "data",
    [
        np.random.default_rng(1).integers(0, 256, 50_000, dtype=np.uint8).tobytes(),
        b"a,b\n1,2\n3,\x00\x00\x004\n",
    ],
    ids=["random-bytes", "nul-bytes"],
)
def test_binary_garbage_is_415(tmp_path: Path, data: bytes) -> None:
    detail = fail(write(tmp_path, "g.csv", data), UnsupportedMediaType)
    assert "not a CSV or Parquet file" in detail


# --------------------------------------------------------------------------- bad CSV files


@pytest.mark.parametrize("data", [b"", b"\n\n  \r\n", b"\xef\xbb\xbf"])
def test_empty_file(tmp_path: Path, data: bytes) -> None:
    assert "the file is empty" in fail(write(tmp_path, "e.csv", data))


@pytest.mark.parametrize("data", [b"a,b,c\n", b"a,b,c", b"a,b,c\r\n\r\n"])
def test_header_without_rows(tmp_path: Path, data: bytes) -> None:
    assert "no data rows" in fail(write(tmp_path, "h.csv", data))


def test_duplicate_column_names_are_named(tmp_path: Path) -> None:
    detail = fail(write(tmp_path, "d.csv", b"a,b,a,c,b\n1,2,3,4,5\n"))
    assert "duplicate column names" in detail
    assert "'a' at positions 1, 3" in detail and "'b' at positions 2, 5" in detail


@pytest.mark.parametrize(("header", "where"), [(b"a,,c", "position 2"), (b"a,b,", "position 3")])
def test_empty_column_name_gives_its_position(tmp_path: Path, header: bytes, where: str) -> None:
    detail = fail(write(tmp_path, "n.csv", header + b"\n1,2,3\n"))
    assert "empty column name" in detail and where in detail


def test_ragged_row_late_in_the_file_gives_row_and_counts(tmp_path: Path, pieces: str) -> None:
    data = csv_bytes("a,b,c", ["1,2,3"] * 2000 + ["4,5"] + ["1,2,3"] * 10)
    detail = fail(write(tmp_path, "r.csv", data), block_size=SMALL_BLOCK)
    assert "row 2,002" in detail and "2 fields" in detail and "header has 3" in detail
    assert "'4,5'" in detail


def test_ragged_row_with_too_many_fields(tmp_path: Path) -> None:
    detail = fail(write(tmp_path, "r.csv", b"a,b\n1,2\n1,2,3\n"))
    assert "row 3" in detail and "3 fields" in detail and "header has 2" in detail


def test_non_utf8_late_in_the_file_gives_line_and_column(tmp_path: Path) -> None:
    data = b"name,city\n" + b"ann,paris\n" * 3000 + "zoe,montr\u00e9al\n".encode("latin-1")
    detail = fail(write(tmp_path, "l.csv", data), block_size=SMALL_BLOCK)
    assert "not valid UTF-8" in detail and "line 3,002" in detail and "'city'" in detail
    assert "0xE9" in detail


def test_non_utf8_in_first_block_and_header(tmp_path: Path) -> None:
    detail = fail(write(tmp_path, "l.csv", "a,b\n1,caf\u00e9\n".encode("cp1252")))
    assert "line 2" in detail and "'b'" in detail
    detail = fail(write(tmp_path, "h.csv", "caf\u00e9,b\n1,2\n".encode("cp1252")))
    assert "header" in detail and "UTF-8" in detail


def test_find_invalid_utf8_across_read_chunks(tmp_path: Path) -> None:
    # a valid two-byte character split by the read chunk boundary must not be reported
    path = write(tmp_path, "x.csv", b"ab\n\xc3\xa9x\n\xffz")
    assert find_invalid_utf8(path, chunk=4) == (3, 1, 0xFF, b"")
    assert find_invalid_utf8(write(tmp_path, "ok.csv", b"\xc3\xa9" * 10), chunk=3) is None


def test_too_many_columns_is_caught_from_the_header(tmp_path: Path) -> None:
    header = ",".join(f"c{i}" for i in range(30))
    data = (header + "\n" + "this body is not even parsed\n").encode()
    detail = fail(write(tmp_path, "w.csv", data), max_columns=10)
    assert "30 columns" in detail and "limit is 10" in detail


def test_too_many_rows(tmp_path: Path) -> None:
    data = csv_bytes("a", [str(i) for i in range(500)])
    detail = fail(write(tmp_path, "r.csv", data), max_rows=100, block_size=SMALL_BLOCK)
    assert "more than 100" in detail
    run(write(tmp_path, "ok.csv", data), max_rows=500)


def test_row_longer_than_the_block(tmp_path: Path) -> None:
    data = b"a,b\n1,2\n3," + b"x" * 5000 + b"\n5,6\n"
    detail = fail(write(tmp_path, "b.csv", data), block_size=SMALL_BLOCK)
    assert "longer than the 1 KiB parse block" in detail
    result, _ = run(write(tmp_path, "ok.csv", data), block_size=16 * 1024)
    assert result.n_rows == 3


def test_a_long_row_is_retried_with_the_full_block_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest_mod, "FAST_BLOCK", SMALL_BLOCK)
    data = csv_bytes("a,b", ["1,2"] * 500 + ["3," + "x" * 5000] + ["5,6"])
    result, table = run(write(tmp_path, "b.csv", data), block_size=16 * 1024)
    assert result.n_rows == 502 and table.column("b")[500].as_py() == "x" * 5000


def test_header_longer_than_the_block(tmp_path: Path) -> None:
    data = b"a" * 3000 + b",b\n1,2\n"
    assert "header row is longer" in fail(write(tmp_path, "h.csv", data), block_size=SMALL_BLOCK)


def test_output_written_before_a_late_error_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest_mod, "CHUNK_BYTES", 512)  # row groups are written early
    data = csv_bytes("a,b", ["1,2"] * 3000 + ["1"])
    assert "row 3,002" in fail(write(tmp_path, "late.csv", data), block_size=SMALL_BLOCK)


# --------------------------------------------------------------------------- bad Parquet files


def test_corrupt_and_truncated_parquet(tmp_path: Path) -> None:
    assert "corrupt" in fail(write(tmp_path, "c.parquet", b"PAR1" + b"\x07" * 500))
    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"a": list(range(10_000))}), good)
    whole = good.read_bytes()
    assert "corrupt" in fail(write(tmp_path, "t.parquet", whole[: len(whole) // 2]))


def test_parquet_with_unusable_column_names_it(tmp_path: Path) -> None:
    src = tmp_path / "n.parquet"
    pq.write_table(pa.table({"ok": [1, 2], "tags": [[1], [2, 3]]}), src)
    detail = fail(src)
    assert "'tags'" in detail and "position 2" in detail


def test_parquet_text_must_be_utf8(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest_mod, "PARQUET_BATCH_ROWS", 100)
    raw = [b"ok"] * 250 + [b"caf\xe9"]
    src = tmp_path / "u.parquet"
    pq.write_table(pa.table({"n": range(251), "s": pa.array(raw).view(pa.string())}), src)
    detail = fail(src)
    assert "'s'" in detail and "row 251" in detail and "UTF-8" in detail


def test_parquet_limits_and_empty(tmp_path: Path) -> None:
    src = tmp_path / "p.parquet"
    pq.write_table(pa.table({f"c{i}": [1] for i in range(12)}), src)
    assert "12 columns" in fail(src, max_columns=5)
    pq.write_table(pa.table({"a": list(range(50))}), src)
    assert "more than 10" in fail(src, max_rows=10)
    pq.write_table(pa.table({"a": pa.array([], pa.int64())}), src)
    assert "no rows" in fail(src)
