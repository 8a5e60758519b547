"""Upload throughput and server memory of POST /v1/datasets on a ~200 MB CSV (or ~1 GB: --big).

Baseline, same run, same file: pyarrow.csv.read_csv + pyarrow.parquet.write_table(zstd).
Targets: upload throughput >= 0.5 x the baseline's; the API process's peak RSS growth (VmHWM)
< 300 MiB; the server's process tree (API, and the ingest child the upload is parsed in) grows
by < 300 MiB of PSS (shared pages of the forked child counted once).
Also: what parsing a tiny upload in a child costs against parsing it in the calling process.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import common
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from common import MB, Figure, MiB

NAME = "ingest"
N_FLOAT, N_INT, N_CAT = 42, 3, 5
CATEGORIES = np.array(
    ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]
)
RATIO_TARGET = 0.5
MEMORY_TARGET_MIB = 300
CHUNK_ROWS = 50_000
OVERHEAD_RUNS = 15


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, help="CSV rows (default 200,000; --big 1,000,000).")
    parser.add_argument("--big", action="store_true", help="A ~1 GB file: memory must stay flat.")


def write_csv(path: Path, rows: int, seed: int = 0) -> int:
    """50 columns (floats, a few ints, 5 categorical strings) written in chunks; the size."""
    rng = np.random.default_rng(seed)
    scales = 10.0 ** rng.uniform(-5, 1, N_FLOAT)  # mixed magnitudes, ~20 characters a value
    with pa_csv.CSVWriter(str(path), _schema()) as writer:
        for start in range(0, rows, CHUNK_ROWS):
            n = min(CHUNK_ROWS, rows - start)
            cols: dict[str, Any] = {
                f"f{i:02d}": rng.standard_normal(n) * scales[i] for i in range(N_FLOAT)
            }
            cols |= {f"i{i}": rng.integers(0, 1_000_000, n) for i in range(N_INT)}
            cols |= {f"c{i}": CATEGORIES[rng.integers(0, len(CATEGORIES), n)] for i in range(N_CAT)}
            writer.write_table(pa.table(cols, schema=_schema()))
    return path.stat().st_size


def _schema() -> pa.Schema:
    return pa.schema(
        [(f"f{i:02d}", pa.float64()) for i in range(N_FLOAT)]
        + [(f"i{i}", pa.int64()) for i in range(N_INT)]
        + [(f"c{i}", pa.string()) for i in range(N_CAT)]
    )


def baseline_seconds(csv_path: Path, parquet_path: Path) -> float:
    started = time.perf_counter()
    table = pa_csv.read_csv(csv_path)
    pq.write_table(table, parquet_path, compression="zstd")
    elapsed = time.perf_counter() - started
    del table
    parquet_path.unlink()
    return elapsed


class TimedReader(io.RawIOBase):
    """The file as httpx reads it, noting when the last byte went out (upload vs processing)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.fh = path.open("rb")
        self.eof_at: float | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self.fh.readinto(buffer)
        if not n and self.eof_at is None:
            self.eof_at = time.perf_counter()
        return n or 0

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.fh.seek(offset, whence)

    def tell(self) -> int:
        return self.fh.tell()

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        self.fh.close()
        super().close()


def run(args: argparse.Namespace) -> list[Figure]:
    rows = args.rows or (1_000_000 if args.big else 20_000 if args.quick else 200_000)
    label = NAME + (" (big)" if args.big else "")
    with tempfile.TemporaryDirectory(prefix="ridgeline-bench-ingest-") as tmp:
        work = Path(tmp)
        csv_path = work / "data.csv"
        common.log(f"{label}: writing a {rows:,} x 50 CSV")
        size = write_csv(csv_path, rows)
        common.log(f"{label}: {size / MB:.0f} MB; baseline read_csv + write_table(zstd)")
        base = baseline_seconds(csv_path, work / "baseline.parquet")
        base_rate = size / MB / base

        server = common.Server(
            common.sqlite_url(work),
            work,
            worker=False,
            env={"RIDGELINE_MAX_UPLOAD_BYTES": str(max(2 * size, 1 << 30))},
        )
        with common.running(server), server.client(server.new_key()) as client:
            common.upload_csv(client, common.write_tiny_csv(work / "tiny.csv"))  # warm
            common.log(f"{label}: uploading over HTTP (server pid {server.pid})")
            reader = TimedReader(csv_path)
            with (
                common.RssSampler(server.pid, proportional=True) as rss,
                common.ProcessRssSampler(server.pid) as api,
            ):
                started = time.perf_counter()
                response = client.post(
                    "/v1/datasets", files={"file": (csv_path.name, reader, "text/csv")}
                )
                elapsed = time.perf_counter() - started
            reader.close()
            dataset = common.check(response, 201)
        child_ms, direct_ms = child_overhead(work)
        if dataset["n_rows"] != rows or dataset["n_columns"] != 50:
            raise RuntimeError(f"unexpected dataset shape: {dataset}")

    rate = size / MB / elapsed
    ratio = rate / base_rate
    sent = (reader.eof_at or started) - started
    growth_mib = rss.growth / MiB
    api_mib = api.growth / MiB
    common.log(
        f"{label}: {elapsed:.2f} s ({sent:.2f} s sending, {elapsed - sent:.2f} s after the last "
        f"byte); tree PSS {rss.baseline / MiB:.0f} -> {rss.peak / MiB:.0f} MiB "
        f"({rss.samples} samples); API process {api.baseline / MiB:.0f} -> "
        f"{api.peak / MiB:.0f} MiB"
    )
    size_note = f"{size / MB:.0f} MB CSV, {rows:,} rows x 50 cols"
    return [
        Figure(
            label,
            "upload throughput",
            rate,
            "MB/s",
            note=f"{size_note}; {elapsed:.2f} s "
            f"POST->201 ({sent:.2f} s sending, {elapsed - sent:.2f} s after the last byte)",
        ),
        Figure(
            label,
            "baseline pyarrow read_csv+parquet(zstd)",
            base_rate,
            "MB/s",
            note=f"{base:.2f} s in-process, same file",
        ),
        Figure(
            label,
            "upload / baseline throughput",
            ratio,
            "x",
            f">= {RATIO_TARGET}",
            ratio >= RATIO_TARGET,
        ),
        Figure(
            label,
            "API process peak RSS growth during upload",
            api_mib,
            "MiB",
            f"< {MEMORY_TARGET_MIB} MiB",
            api_mib < MEMORY_TARGET_MIB,
            note=f"{api.baseline / MiB:.0f} -> {api.peak / MiB:.0f} MiB, VmHWM of the API "
            "process alone",
        ),
        Figure(
            label,
            "server tree PSS growth during upload",
            growth_mib,
            "MiB",
            f"< {MEMORY_TARGET_MIB} MiB",
            growth_mib < MEMORY_TARGET_MIB,
            note=f"{rss.baseline / MiB:.0f} -> {rss.peak / MiB:.0f} MiB, API + ingest child, "
            "sampled every 50 ms",
        ),
        Figure(
            label,
            "tiny upload parsed in a child / in process",
            child_ms / direct_ms,
            "x",
            note=f"{child_ms:.0f} ms against {direct_ms:.0f} ms, median of {OVERHEAD_RUNS} "
            "(a 200-row CSV; the child's start is the difference)",
        ),
    ]


def child_overhead(work: Path) -> tuple[float, float]:
    """Median milliseconds to ingest a tiny CSV in a memory-limited child, and in this process."""
    from service.datasets.ingest import ingest
    from service.datasets.isolated import ingest_in_child

    tiny = common.write_tiny_csv(work / "overhead.csv")
    dest = work / "overhead.parquet"
    ingest_in_child(tiny, dest, memory_limit_mb=2048)  # the forkserver starts here, once
    child, direct = [], []
    for _ in range(OVERHEAD_RUNS):
        started = time.perf_counter()
        ingest_in_child(tiny, dest, memory_limit_mb=2048)
        child.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        ingest(tiny, dest)
        direct.append((time.perf_counter() - started) * 1000)
    return statistics.median(child), statistics.median(direct)


if __name__ == "__main__":
    common.main(NAME, add_arguments, run, __doc__ or NAME)
