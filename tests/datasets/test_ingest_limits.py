"""Decompressed-size limits of ingest (per cell, per Parquet row group, in all), the width check
made before a Parquet footer is parsed, column names (NFC, nothing invisible), and ingest in a
memory-limited child."""

from __future__ import annotations

import io
import unicodedata
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from service.datasets.ingest import SizeLimits, ingest, parquet_field_count
from service.datasets.isolated import ingest_in_child
from service.errors import InvalidInput, PayloadTooLarge
from tests.datasets.test_ingest import fail, run, write

MiB = 1 << 20


def _repeated(value: str, times: int) -> pa.ChunkedArray:
    """`times` copies of one string sharing one buffer, so a test never holds the expansion."""
    return pa.chunked_array([pa.array([value])] * times)


def _bomb(path: Path) -> Path:
    """The attack: 64 rows of 16 MiB strings, zstd, no dictionary, one row group (34 KB)."""
    table = pa.table({"s": _repeated("a" * (16 * MiB), 64)})
    pq.write_table(table, path, compression="zstd", use_dictionary=False, row_group_size=64)
    return path


def _floats(path: Path, rows: int, row_group_size: int, columns: int = 4) -> Path:
    rng = np.random.default_rng(0)
    table = pa.table({f"f{i}": rng.standard_normal(rows) for i in range(columns)})
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def test_a_parquet_bomb_is_refused_from_its_footer(tmp_path: Path) -> None:
    src = _bomb(tmp_path / "bomb.parquet")
    assert src.stat().st_size < 100_000
    detail = fail(src, PayloadTooLarge)
    assert "column 's' (position 1), row group 1 of 1" in detail
    assert "16.0 MiB each on average, over the 1 MiB limit on one cell" in detail


def test_a_row_group_over_its_limit_is_refused_and_smaller_ones_pass(tmp_path: Path) -> None:
    sizes = SizeLimits(max_row_group_bytes=1 * MiB)
    big = _floats(tmp_path / "big.parquet", 100_000, row_group_size=50_000)  # ~2 MiB each
    detail = fail(big, PayloadTooLarge, sizes=sizes)
    assert "row group 1 of 2 decompresses to 1.9 MiB" in detail
    assert "1 MiB limit on one row group" in detail and "row_group_size" in detail
    small = _floats(tmp_path / "small.parquet", 100_000, row_group_size=20_000)
    result, table = run(small, sizes=sizes)
    assert result.n_rows == table.num_rows == 100_000


def test_a_whole_file_over_the_decompressed_limit_is_refused(tmp_path: Path) -> None:
    src = _floats(tmp_path / "f.parquet", 100_000, row_group_size=10_000)  # ~4 MiB in all
    detail = fail(src, PayloadTooLarge, sizes=SizeLimits(max_decompressed_bytes=2 * MiB))
    assert "decompresses to 3.7 MiB, over the 2 MiB limit on one upload" in detail


def test_a_long_csv_cell_is_refused_naming_its_column_and_row(tmp_path: Path) -> None:
    rows = ["1,short", "2,short", f"3,{'x' * 5000}", "4,short"]
    src = write(tmp_path, "long.csv", ("id,note\n" + "\n".join(rows) + "\n").encode())
    detail = fail(src, PayloadTooLarge, sizes=SizeLimits(max_cell_bytes=4096))
    assert "column 'note', data row 3: a value of 4.9 KiB" in detail
    assert "4 KiB limit on one cell" in detail


def test_a_long_cell_hidden_by_a_dictionary_is_refused_while_reading(tmp_path: Path) -> None:
    """The footer's average is small when one long value repeats through a dictionary."""
    values = ["short"] * 1000 + ["y" * 5000] + ["short"] * 10
    src = tmp_path / "dict.parquet"
    pq.write_table(pa.table({"n": range(1011), "t": values}), src, use_dictionary=True)
    detail = fail(src, PayloadTooLarge, sizes=SizeLimits(max_cell_bytes=4096))
    assert "column 't', data row 1,001" in detail


def test_the_footer_field_count_is_read_without_parsing_the_footer(tmp_path: Path) -> None:
    flat = tmp_path / "flat.parquet"
    pq.write_table(pa.table({f"c{i}": [1, 2] for i in range(7)}), flat)
    assert parquet_field_count(flat) == 8  # the root and seven columns
    nested = tmp_path / "nested.parquet"
    pq.write_table(pa.table({"s": [{"a": 1, "b": "x"}], "n": [1]}), nested)
    assert parquet_field_count(nested) == 5  # root, s, s.a, s.b, n
    n = 100_000
    wide = tmp_path / "wide.parquet"
    table = pa.Table.from_arrays([pa.array([1])] * n, names=[f"c{i}" for i in range(n)])
    pq.write_table(table, wide, write_statistics=False)
    assert parquet_field_count(wide) == n + 1
    assert parquet_field_count(write(tmp_path, "a.csv", b"a,b\n1,2\n")) is None
    assert parquet_field_count(write(tmp_path, "t.parquet", wide.read_bytes()[:1000])) is None


def test_a_100_000_column_parquet_is_refused_before_its_footer_is_parsed(tmp_path: Path) -> None:
    """Under a memory limit that the footer's full parse exceeds, the refusal is still the
    width check's: it came from the field count alone."""
    n = 100_000
    wide = tmp_path / "wide.parquet"
    table = pa.Table.from_arrays([pa.array([1])] * n, names=[f"c{i}" for i in range(n)])
    pq.write_table(table, wide, write_statistics=False)
    small = _floats(tmp_path / "small.parquet", 100, row_group_size=100)
    limit_mb = 384
    dest = tmp_path / "out.parquet"
    assert ingest_in_child(small, dest, memory_limit_mb=limit_mb).n_rows == 100  # the control
    with pytest.raises(PayloadTooLarge):  # parsing the footer does not fit
        ingest_in_child(wide, dest, memory_limit_mb=limit_mb, max_columns=n)
    with pytest.raises(InvalidInput) as refused:
        ingest_in_child(wide, dest, memory_limit_mb=limit_mb, max_columns=1000)
    assert "100,000 columns; the limit is 1,000" in refused.value.detail


# --------------------------------------------------------------------------- column names


def test_column_names_are_stored_in_nfc(tmp_path: Path) -> None:
    decomposed = unicodedata.normalize("NFD", "café")
    assert decomposed != "café"
    result, table = run(write(tmp_path, "n.csv", f"{decomposed},n\nx,1\n".encode()))
    assert [c.name for c in result.columns] == ["café", "n"]
    assert table.column_names == ["café", "n"]
    src = tmp_path / "n.parquet"
    pq.write_table(pa.table({decomposed: ["x"], "n": [1]}), src)
    result, table = run(src)
    assert table.column_names == [c.name for c in result.columns] == ["café", "n"]


def test_names_equal_once_normalized_are_duplicates(tmp_path: Path) -> None:
    header = f"café,{unicodedata.normalize('NFD', 'café')}\n".encode()
    detail = fail(write(tmp_path, "d.csv", header + b"1,2\n"))
    assert "duplicate column names" in detail and "NFC" in detail


@pytest.mark.parametrize(
    ("char", "name"),
    [
        ("\u202e", "RIGHT-TO-LEFT OVERRIDE"),
        ("\u2066", "LEFT-TO-RIGHT ISOLATE"),
        ("\u200b", "ZERO WIDTH SPACE"),
        ("\u00ad", "SOFT HYPHEN"),
        ("\t", "a control character"),
    ],
)
def test_invisible_and_bidi_characters_in_names_are_refused(
    tmp_path: Path, char: str, name: str
) -> None:
    data = f'id,"pri{char}ce"\n1,2\n'.encode()
    detail = fail(write(tmp_path, "h.csv", data))
    assert f"(position 2) contains U+{ord(char):04X} ({name})" in detail, detail
    src = tmp_path / "h.parquet"
    pq.write_table(pa.table({"id": [1], f"pri{char}ce": [2]}), src)
    assert f"U+{ord(char):04X}" in fail(src)


# --------------------------------------------------------------------------- the child


def test_the_child_returns_what_ingest_returns(tmp_path: Path) -> None:
    source = pa.table({"a": [1, 2, None], "b": ["x", "y", "=z"], "c": [0.5, float("inf"), 1.0]})
    buf = io.BytesIO()
    pa_csv.write_csv(source, buf)
    src = write(tmp_path, "t.csv", buf.getvalue())
    direct = ingest(src, tmp_path / "direct.parquet")
    isolated = ingest_in_child(src, tmp_path / "child.parquet", memory_limit_mb=2048)
    assert isolated.to_dict() == direct.to_dict()
    assert pq.read_table(tmp_path / "child.parquet").equals(
        pq.read_table(tmp_path / "direct.parquet")
    )


def test_the_childs_refusals_and_memory_exhaustion_come_back_as_service_errors(
    tmp_path: Path,
) -> None:
    dest = tmp_path / "out.parquet"
    with pytest.raises(InvalidInput) as bad:
        ingest_in_child(write(tmp_path, "e.csv", b"a,a\n1,2\n"), dest, memory_limit_mb=2048)
    assert "duplicate column names" in bad.value.detail
    with pytest.raises(PayloadTooLarge) as bomb:
        ingest_in_child(_bomb(tmp_path / "bomb.parquet"), dest, memory_limit_mb=2048)
    assert "limit on one cell" in bomb.value.detail
    big = _floats(tmp_path / "big.parquet", 1 << 20, row_group_size=1 << 20, columns=16)
    with pytest.raises(PayloadTooLarge) as memory:
        ingest_in_child(big, dest, memory_limit_mb=160)
    assert "more than the 160 MiB of memory one upload may use" in memory.value.detail
    assert not dest.exists()
