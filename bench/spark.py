"""Data larger than a worker: an L1 logistic fit on the local engine against the Spark engine.

For each size (default 0.5 M, 1 M and 2 M rows x 50 float columns, a binary target) a Parquet file
is written to a `file` store folder. Each point runs in a process of its own, time-boxed:
- local: what a training child does (read the Parquet, service.training.train.train) under
  RLIMIT_DATA = --child-memory-mb; it may run out of memory, which is printed as such;
- spark: what the worker's driver child does (a session on --master, already started and warmed
  by one fit on a 2,000-row slice, then service.training.engines.spark_linear.fit_on_spark on the
  file:// URI); the Python driver's
  RSS growth during the job (goal < 500 MiB whatever the size) and the JVM's peak RSS.
The figure that matters is Spark's time against the local engine's at 1 M rows (same run).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from common import Figure

NAME = "spark"
N_COLUMNS = 50
SPEC = {
    "target": "y",
    "regularization": {"penalty": "l1", "strength": 0.01},
    "validation": {"fraction": 0.2},
}
RSS_GOAL_MIB = 500
_EXCEPTION_LINE = re.compile(r"^([\w$]+\.)*[\w$]*(Error|Exception)\b")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", type=int, nargs="+", help="Rows per point (default 0.5M 1M 2M).")
    parser.add_argument("--master", default="local[2]", help="Spark master (default local[2]).")
    parser.add_argument("--driver-memory", default="2g", help="spark.driver.memory.")
    parser.add_argument(
        "--child-memory-mb", type=int, default=2048, help="RLIMIT_DATA of the local point (MiB)."
    )
    parser.add_argument("--max-seconds", type=float, default=900, help="Time box per point.")


def write_table(path: Path, rows: int, seed: int = 0) -> int:
    """rows x 50 standard normal columns and a logistic target of 10 of them, in row groups."""
    rng = np.random.default_rng(seed)
    weights = np.zeros(N_COLUMNS)
    weights[:10] = rng.normal(size=10)
    writer = None
    step = 250_000
    for start in range(0, rows, step):
        n = min(step, rows - start)
        X = rng.normal(size=(n, N_COLUMNS))
        y = (rng.random(n) < 1 / (1 + np.exp(-X @ weights))).astype(np.int64)
        table = pa.table({**{f"x{i}": X[:, i] for i in range(N_COLUMNS)}, "y": y})
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()
    return path.stat().st_size


# -- the points, each run in a process of its own ----------------------------------------------


def _rss_mib(pid: int | str = "self", field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def local_point(path: str, limit_mb: int) -> dict[str, Any]:
    import resource

    if limit_mb:
        limit = limit_mb << 20
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    from service.training.spec import TrainingSpec
    from service.training.train import train

    spec = TrainingSpec.model_validate(SPEC)
    started = time.perf_counter()
    try:
        train(pq.read_table(path), spec, with_artifact=False)
    except MemoryError:
        return {"error": f"out of memory under RLIMIT_DATA {limit_mb} MiB"}
    return {"seconds": time.perf_counter() - started}


def spark_point(uri: str, master: str, driver_memory: str) -> dict[str, Any]:
    import threading

    from service.training.engines.spark_linear import fit_on_spark
    from service.training.engines.spark_session import start_session
    from service.training.spec import TrainingSpec

    conf = {"spark.ui.enabled": "false", "spark.driver.memory": driver_memory}
    spark = start_session(master, conf, app_name="ridgeline-bench")
    gateway = spark.sparkContext._gateway.proc  # type: ignore[attr-defined]
    spec = TrainingSpec.model_validate(SPEC)
    # The worker's driver is long-lived: warm it (JIT, code generation) on a small slice first.
    with tempfile.TemporaryDirectory(prefix="ridgeline-bench-warm-") as warm:
        spark.read.parquet(uri).limit(2000).write.parquet(warm + "/slice")
        fit_on_spark(spark, Path(warm, "slice").as_uri(), spec)
    before = _rss_mib()
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            peak[0] = max(peak[0], _rss_mib())

    threading.Thread(target=sample, daemon=True).start()
    started = time.perf_counter()
    fit = fit_on_spark(spark, uri, spec)
    seconds = time.perf_counter() - started
    done.set()
    peak[0] = max(peak[0], _rss_mib())
    out = {
        "seconds": seconds,
        "driver_rss_growth_mib": peak[0] - before,
        "jvm_rss_mib": _rss_mib(gateway.pid, "VmHWM"),
        "n_iter": fit.result.report.to_json().get("convergence", {}).get("n_iter"),
    }
    spark.stop()
    return out


def _failure_line(stderr: str) -> str:
    """The exception that ended a point: a JVM's stack trace ends in frames, not in its cause."""
    lines = [line.strip() for line in stderr.strip().splitlines()] or ["no output"]
    raised = [line for line in lines if _EXCEPTION_LINE.match(line)]
    out_of_memory = [line for line in raised if "OutOfMemoryError" in line]
    return (out_of_memory or raised or lines)[-1]


def _run_point(argv: list[str], max_seconds: float) -> dict[str, Any]:
    """One point in a fresh process; its last output line is its JSON result."""
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--point", *argv],
            capture_output=True,
            text=True,
            timeout=max_seconds,
            env=common.cli_env("sqlite://", Path(tempfile.gettempdir())),
        )
    except subprocess.TimeoutExpired:
        return {"error": f"over the time box of {max_seconds:.0f} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"error": f"exit {done.returncode}: {_failure_line(done.stderr)[:200]}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def run(args: argparse.Namespace) -> list[Figure]:
    sizes = args.sizes or [500_000, 1_000_000, 2_000_000]
    figures: list[Figure] = []
    by_size: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="ridgeline-bench-spark-") as tmp:
        store = Path(tmp) / "blobs"
        store.mkdir()
        for rows in sizes:
            path = store / f"rows-{rows}.parquet"
            size = write_table(path, rows)
            common.log(f"{NAME}: {rows:,} x {N_COLUMNS} ({size / common.MiB:.0f} MiB Parquet)")
            local = _run_point(["local", str(path), str(args.child_memory_mb)], args.max_seconds)
            common.log(f"{NAME}:   local {local}")
            spark = _run_point(
                ["spark", path.as_uri(), args.master, args.driver_memory], args.max_seconds
            )
            common.log(f"{NAME}:   spark {spark}")
            by_size[rows] = (local, spark)
            figures += _figures(rows, local, spark)
    if 1_000_000 in by_size:
        local, spark = by_size[1_000_000]
        ratio = None
        if "seconds" in local and "seconds" in spark:
            ratio = spark["seconds"] / local["seconds"]
        figures.append(
            Figure(NAME, "spark / local seconds at 1M rows", ratio, "x", note=args.master)
        )
    return figures


def _figures(rows: int, local: dict[str, Any], spark: dict[str, Any]) -> list[Figure]:
    label = f"{rows / 1e6:g}M rows"
    growth = spark.get("driver_rss_growth_mib")
    return [
        Figure(
            NAME,
            f"local L1 logistic, {label}",
            local.get("seconds"),
            "s",
            note=local.get("error", ""),
        ),
        Figure(
            NAME,
            f"spark L1 logistic, {label}",
            spark.get("seconds"),
            "s",
            note=spark.get("error", f"{spark.get('n_iter')} iterations"),
        ),
        Figure(
            NAME,
            f"spark driver RSS growth, {label}",
            growth,
            "MiB",
            f"< {RSS_GOAL_MIB}",
            None if growth is None else growth < RSS_GOAL_MIB,
        ),
        Figure(NAME, f"spark JVM peak RSS, {label}", spark.get("jvm_rss_mib"), "MiB"),
    ]


def _point_main(argv: list[str]) -> None:
    kind, *rest = argv
    if kind == "local":
        result = local_point(rest[0], int(rest[1]))
    else:
        result = spark_point(rest[0], rest[1], rest[2])
    print(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--point":
        _point_main(sys.argv[2:])
    else:
        common.main(NAME, add_arguments, run, __doc__ or NAME)
