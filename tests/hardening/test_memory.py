"""The API process's memory stays bounded whatever a client sends: a Parquet decompression bomb,
a 100,000-column footer, a table of about 128 MiB decompressed, a CSV download of long cells, an
oversized or overlong CSV sent to predict. Each is measured on the real server process as the
growth of its peak RSS (VmHWM, reset through /proc/PID/clear_refs just before the request) over
its resident size just before it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from service.migrate import upgrade
from tests.conftest import (
    Server,
    dispose_database_url,
    new_database_url,
    start_server,
    stop_process,
    upload_tiny,
    wait_for_job,
)
from tests.hardening.conftest import upload_counts

MiB = 1 << 20
BOUND = 300 * MiB  # what the API process may grow by for any request
LONG_CELL = 16 * MiB


def _status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


class PeakGrowth:
    """How far a process's peak resident size rose above its resident size at the start."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.bytes = 0
        self.before = 0

    def __enter__(self) -> PeakGrowth:
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # resets VmHWM to VmRSS
        self.before = _status(self.pid, "VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        self.bytes = _status(self.pid, "VmHWM") - self.before

    def __repr__(self) -> str:
        return f"peak growth {self.bytes / MiB:.0f} MiB"


def _repeated_text(value: str, times: int) -> pa.ChunkedArray:
    """`times` copies of one long string that share one buffer (no gigabyte in the test)."""
    return pa.chunked_array([pa.array([value])] * times)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("memory-files")
    paths = {name: folder / f"{name}.parquet" for name in ("bomb", "wide", "table", "long")}
    # The attack: 64 rows of 16 MiB strings, zstd, no dictionary, one row group: 34 KB on disk.
    bomb = pa.table({"s": _repeated_text("a" * LONG_CELL, 64)})
    pq.write_table(bomb, paths["bomb"], compression="zstd", use_dictionary=False, row_group_size=64)
    n = 100_000
    wide = pa.Table.from_arrays([pa.array([1])] * n, names=[f"c{i}" for i in range(n)])
    pq.write_table(wide, paths["wide"], write_statistics=False)
    rng = np.random.default_rng(0)
    rows = 1 << 20
    columns: dict[str, pa.Array] = {
        f"s{i}": pa.array(rng.integers(10**11, 10**12, rows)).cast(pa.string()) for i in range(6)
    }
    columns.update({f"f{i}": pa.array(rng.standard_normal(rows)) for i in range(4)})
    pq.write_table(pa.table(columns), paths["table"], compression="zstd")
    long = pa.table({"id": pa.array(range(8)), "text": _repeated_text("x" * LONG_CELL, 8)})
    pq.write_table(long, paths["long"], compression="zstd", row_group_size=2)
    return paths


@pytest.fixture(scope="module")
def stack(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    """A server of this module's own with the default limits, a key: no other process writes to
    its database, so what an upload leaves is counted exactly."""
    work = tmp_path_factory.mktemp(f"memory-{backend}")
    url = new_database_url(backend, work)
    upgrade(url)
    server = start_server(url, work)
    try:
        yield server, server.new_key()
    finally:
        stop_process(server.process)
        dispose_database_url(url)


def _upload(server: Server, key: str, path: Path) -> tuple[httpx.Response, PeakGrowth]:
    with server.client(key) as client, PeakGrowth(server.process.pid) as growth:
        response = client.post("/v1/datasets", files={"file": (path.name, path.read_bytes())})
    return response, growth


def test_a_parquet_bomb_is_refused_from_its_footer(
    stack: tuple[Server, str], files: dict[str, Path]
) -> None:
    server, key = stack
    assert files["bomb"].stat().st_size < 100_000
    before = upload_counts(server.database_url)
    response, growth = _upload(server, key, files["bomb"])
    assert response.status_code == 413, response.text
    detail = response.json()["detail"]
    assert "'s'" in detail and "row group 1" in detail and "16.0 MiB" in detail, detail
    assert "1 MiB limit on one cell" in detail, detail
    assert upload_counts(server.database_url) == before, "nothing is stored"
    assert growth.bytes < BOUND, growth


def test_a_100_000_column_parquet_is_refused_before_its_footer_is_parsed(
    stack: tuple[Server, str], files: dict[str, Path]
) -> None:
    server, key = stack
    response, growth = _upload(server, key, files["wide"])
    assert response.status_code == 422, response.text
    assert "100,000 columns" in response.json()["detail"]
    assert growth.bytes < 64 * MiB, growth  # parsing its footer in the API cost ~300 MiB


def test_a_128_mib_table_is_ingested_outside_the_api_process(
    stack: tuple[Server, str], files: dict[str, Path]
) -> None:
    server, key = stack
    meta = pq.read_metadata(files["table"])
    decompressed = sum(meta.row_group(g).total_byte_size for g in range(meta.num_row_groups))
    assert 112 * MiB < decompressed < 160 * MiB
    response, growth = _upload(server, key, files["table"])
    assert response.status_code == 201, response.text
    assert response.json()["n_rows"] == 1 << 20
    assert growth.bytes < BOUND, growth


@pytest.fixture(scope="module")
def long_cells_server(
    stack: tuple[Server, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, str]]:
    """A server that admits 16 MiB cells, as every server did before the per-cell limit (on the
    database of the module's server, which has today's limits)."""
    work = tmp_path_factory.mktemp("memory-long")
    server = start_server(stack[0].database_url, work, RIDGELINE_MAX_CELL_BYTES=str(32 * MiB))
    try:
        yield server, server.new_key()
    finally:
        stop_process(server.process)


@pytest.fixture(scope="module")
def long_dataset(long_cells_server: tuple[Server, str], files: dict[str, Path]) -> str:
    server, key = long_cells_server
    response, _ = _upload(server, key, files["long"])
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_a_csv_download_of_long_cells_streams_in_bounded_pieces(
    long_cells_server: tuple[Server, str], long_dataset: str
) -> None:
    server, key = long_cells_server
    received = 0
    with server.client(key) as client, PeakGrowth(server.process.pid) as growth:
        url = f"/v1/datasets/{long_dataset}/download"
        with client.stream("GET", url, params={"format": "csv"}) as download:
            assert download.status_code == 200
            for piece in download.iter_raw():
                received += len(piece)
    assert received > 8 * LONG_CELL  # every byte came
    assert growth.bytes < BOUND, growth


def test_a_preview_cuts_long_text_short(
    long_cells_server: tuple[Server, str], long_dataset: str
) -> None:
    server, key = long_cells_server
    with server.client(key) as client, PeakGrowth(server.process.pid) as growth:
        preview = client.get(f"/v1/datasets/{long_dataset}/preview", params={"limit": 1000})
    assert preview.status_code == 200, preview.text
    texts = [row["text"] for row in preview.json()["rows"]]
    assert len(texts) == 8
    assert all(len(text) == 4096 and text.endswith("\u2026") for text in texts)
    assert growth.bytes < 64 * MiB, growth


def test_a_stored_dataset_over_todays_cell_limit_is_refused_not_expanded(
    stack: tuple[Server, str], long_cells_server: tuple[Server, str], long_dataset: str
) -> None:
    """Data stored under looser limits is refused on the way out by a server with the default
    limits, rather than decompressed in its API process."""
    strict, _ = stack
    _, key = long_cells_server
    with strict.client(key) as client:
        for path in ("download?format=csv", "preview"):
            refused = client.get(f"/v1/datasets/{long_dataset}/{path}")
            assert refused.status_code == 409, refused.text
            assert "Delete it and upload" in refused.json()["detail"]
        parquet = client.get(f"/v1/datasets/{long_dataset}/download?format=parquet")
        assert parquet.status_code == 200  # the stored bytes themselves are not expanded


# ---- predict -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(peer: Server, worker: subprocess.Popen[str]) -> tuple[Server, str, str]:
    """An API process with the default limits, a key, and a succeeded job of that key (trained
    by the shared worker on the tiny table, x -> y)."""
    key = peer.new_key()
    with peer.client(key) as client:
        created = client.post("/v1/jobs", json={"dataset_id": upload_tiny(client), "target": "y"})
        assert created.status_code == 202, created.text
        job = wait_for_job(client, created.json()["id"])
    assert job["status"] == "succeeded", job
    return peer, key, str(job["id"])


def _csv_lines(blocks: int) -> Iterator[bytes]:
    """A one-column CSV of 65,536 rows per block, produced as it is sent."""
    yield b"x\n"
    block = b"1\n" * 65536
    for _ in range(blocks):
        yield block


def test_a_streamed_predict_file_is_cut_off_at_the_body_limit(
    trained: tuple[Server, str, str],
) -> None:
    server, key, job_id = trained
    boundary = b"ridgeline-test"

    def body() -> Iterator[bytes]:
        yield b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; '
        yield b'filename="big.csv"\r\nContent-Type: text/csv\r\n\r\n'
        yield from _csv_lines(1600)  # 200 MiB
        yield b"\r\n--" + boundary + b"--\r\n"

    headers = {"Content-Type": f"multipart/form-data; boundary={boundary.decode()}"}
    status: int | None = None
    with server.client(key) as client, PeakGrowth(server.process.pid) as growth:
        try:
            response = client.post(f"/v1/jobs/{job_id}/predict", content=body(), headers=headers)
            status = response.status_code
        except httpx.TransportError:
            pass  # the server answered 413 and closed while the body was still going out
    assert status in (None, 413)
    assert growth.bytes < 64 * MiB, growth


def test_a_predict_file_over_the_row_limit_stops_at_the_limit(
    trained: tuple[Server, str, str],
) -> None:
    server, key, job_id = trained
    csv = b"".join(_csv_lines(32))  # 4 MiB, two hundred times the row limit
    rows = 32 * 65536
    with server.client(key) as client, PeakGrowth(server.process.pid) as growth:
        response = client.post(f"/v1/jobs/{job_id}/predict", files={"file": ("p.csv", csv)})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "more than 10000 rows" in detail and f"{rows}" not in detail, detail
    assert growth.bytes < 64 * MiB, growth
