"""The worker: job start latency, queue throughput on Postgres, overhead per job, a first job.

(a) Start latency on an idle embedded worker (`ridgeline serve`, SQLite, then Postgres): 50 tiny
    jobs, one at a time, each after a random idle gap; started_at - created_at (both database
    timestamps) and POST -> first GET that is no longer `queued` (polled every 5 ms). Target:
    median <= 100 ms on each.
    Baseline: what a naive spawn-per-job pays before it can train, a fresh interpreter importing
    torch, sklearn.linear_model and pyarrow.parquet (5 runs).
(b) Queue throughput: 1,000 no-op jobs (trainer "bench-noop", bench/noop_trainer.py) through 4
    `ridgeline worker` processes on a fresh Postgres database; jobs/s, and that none ran twice
    (each succeeded at attempt 1, exactly one job_attempts row per job).
    Target: >= 100 jobs/s.
(c) Overhead on a ~30 s MLP job: started_at -> finished_at over the child's own fit_seconds.
(d) Overhead per job: POST -> succeeded (read from the job's event stream, as a script waits) of
    a linear job against the same train() in this process (the worker's threads, the table
    already in memory), the first job on a dataset (the worker's dataset cache fill) and then
    jobs back to back, once the worker is warm for every kind ((e) measures the warm-up).
    Targets: back to back <= 1.05 x in-process + 0.1 s; the first job <= 1.2 x. The notes give
    the worker's phases of an attempt (claim, prepare: the payload and the cache, fork, child,
    store, reap: the child's exit) and the child's own (setup, threads, load, train; wall, CPU).
(e) A first job: `ridgeline serve` started on a fresh data dir; from its banner, the README's
    walkthrough (upload the breast cancer CSV, its L1 job) until the job succeeded. Target 5 s.
"""

from __future__ import annotations

import argparse
import importlib
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common
import httpx
from common import Figure, free_port

from service.migrate import upgrade
from tests.support import create_pg_database, drop_pg_database

NAME = "worker"
LATENCY_TARGET_S = 0.100
THROUGHPUT_TARGET = 100.0
FIRST_JOB_TARGET_S = 5.0
BACK_TO_BACK = (1.05, 0.1)  # x in-process + seconds
FIRST_ON_DATASET = 1.2
NAIVE_IMPORT = "import torch, sklearn.linear_model, pyarrow.parquet"
TENANT = "bench"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--latency-jobs", type=int, help="Tiny jobs for (a) (default 50).")
    parser.add_argument("--spawns", type=int, help="Naive spawn baseline runs (default 5).")
    parser.add_argument("--queue-jobs", type=int, help="No-op jobs for (b) (default 1,000).")
    parser.add_argument("--workers", type=int, default=4, help="Worker processes for (b).")
    parser.add_argument("--mlp-rows", type=int, help="Rows of the (c) dataset (default 100,000).")
    parser.add_argument("--mlp-epochs", type=int, help="Epochs of the (c) MLP (default 40).")
    parser.add_argument("--perjob-rows", type=int, help="Rows of the (d) dataset (default 200k).")
    parser.add_argument("--perjob-jobs", type=int, help="Back-to-back jobs of (d) (default 5).")
    parser.add_argument(
        "--only",
        choices=["latency", "queue", "overhead", "perjob", "first"],
        action="append",
        help="Run a part.",
    )


# -- (a) start latency ----------------------------------------------------------------------------


def start_latency(
    client: Any, dataset_id: str, n: int
) -> tuple[list[float], list[float], list[float]]:
    """(db latencies, observed latencies, POST -> succeeded) of n tiny jobs, one at a time."""
    rng = random.Random(0)
    db, observed, total = [], [], []
    for _ in range(n):
        time.sleep(rng.uniform(0.1, 0.5))  # let the worker go idle, at a random poll phase
        started = time.perf_counter()
        job = common.check(client.post("/v1/jobs", json=common.tiny_job(dataset_id)), 202)
        seen = None
        while seen is None:
            status = common.check(client.get(f"/v1/jobs/{job['id']}"), 200)["status"]
            if status != "queued":
                seen = time.perf_counter() - started
            else:
                time.sleep(0.005)
        job = common.wait_job(client, job["id"], interval=0.01, timeout=300)
        total.append(time.perf_counter() - started)
        observed.append(seen)
        db.append(common.seconds_between(job["created_at"], job["started_at"]))
    return db, observed, total


def naive_spawn_seconds(runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", NAIVE_IMPORT], check=True)
        times.append(time.perf_counter() - started)
    return times


def part_latency(args: argparse.Namespace, work: Path) -> list[Figure]:
    figures = latency_on(args, work, "SQLite", common.sqlite_url(work))
    url = create_pg_database("ridgeline_bench")
    try:
        upgrade(url)
        figures += latency_on(args, work / "pg", "Postgres", url)
    finally:
        drop_pg_database(url)
    return figures


def latency_on(args: argparse.Namespace, work: Path, backend: str, url: str) -> list[Figure]:
    n = args.latency_jobs or (10 if args.quick else 50)
    work.mkdir(parents=True, exist_ok=True)
    server = common.Server(url, work, worker=True)
    with common.running(server), server.client(server.new_key()) as client:
        common.log(f"{NAME}: warming up the embedded worker")
        dataset_id = common.warm_up(client, work)
        common.log(f"{NAME}: start latency over {n} tiny jobs on {backend}")
        db, observed, total = start_latency(client, dataset_id, n)
    spawns = args.spawns or (2 if args.quick else 5)
    common.log(f"{NAME}: naive spawn baseline, {spawns} runs")
    spawn = common.median(naive_spawn_seconds(spawns))
    db_median = common.median(db)
    return [
        Figure(
            NAME,
            f"start latency median (started_at-created_at), {backend}",
            db_median * 1000,
            "ms",
            f"<= {LATENCY_TARGET_S * 1000:.0f} ms",
            db_median <= LATENCY_TARGET_S,
            note=f"{n} tiny jobs, idle embedded worker, {backend}",
        ),
        Figure(
            NAME,
            f"start latency p95 (started_at-created_at), {backend}",
            common.percentile(db, 95) * 1000,
            "ms",
            note=f"max {max(db) * 1000:.0f} ms",
        ),
        Figure(
            NAME,
            f"start latency median, POST->running seen, {backend}",
            common.median(observed) * 1000,
            "ms",
            note=f"GET every 5 ms; p95 {common.percentile(observed, 95) * 1000:.0f} ms",
        ),
        Figure(
            NAME,
            f"naive spawn-per-job import cost (median), {backend} run",
            spawn * 1000,
            "ms",
            note=f"python -c '{NAIVE_IMPORT}', {spawns} runs; "
            f"{spawn / db_median:.1f}x the service's median start latency",
        ),
        Figure(
            NAME,
            f"tiny job POST->succeeded median, {backend}",
            common.median(total) * 1000,
            "ms",
            note=f"p95 {common.percentile(total, 95) * 1000:.0f} ms; 200 x 4 linear job",
        ),
    ]


# -- (b) queue throughput -------------------------------------------------------------------------


def insert_noop_jobs(database_url: str, dataset_id: str, n: int) -> float:
    """n jobs of the no-op trainer in one transaction (not creatable over HTTP); its seconds."""
    from service.config import Settings
    from service.db import Database
    from service.jobs.schemas import JobCreate
    from service.jobs.service import create_job

    importlib.import_module("service.models")  # every table, so each foreign key resolves
    settings = Settings(database_url=database_url)
    db = Database(settings)
    body = JobCreate.model_validate(common.tiny_job(dataset_id))
    started = time.perf_counter()
    try:
        with db.transaction() as session:
            for _ in range(n):
                create_job(
                    session, settings=settings, tenant_id=TENANT, body=body, trainer="bench-noop"
                )
    finally:
        db.dispose()
    return time.perf_counter() - started


def queue_state(database_url: str) -> dict[str, Any]:
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            statuses: dict[str, int] = dict(
                conn.execute(text("SELECT status, count(*) FROM jobs GROUP BY 1")).all()
            )
            attempts: dict[int, int] = dict(
                conn.execute(text("SELECT attempt, count(*) FROM jobs GROUP BY 1")).all()
            )
            per_job = conn.execute(
                text(
                    "SELECT count(*), count(DISTINCT job_id), max(n) FROM "
                    "(SELECT job_id, count(*) AS n FROM job_attempts GROUP BY job_id) a"
                )
            ).one()
            rows = conn.execute(text("SELECT count(*) FROM job_attempts")).scalar_one()
            per_worker = [
                int(c)
                for (c,) in conn.execute(
                    text("SELECT count(*) FROM job_attempts GROUP BY worker_id ORDER BY 1")
                )
            ]
            span, ran = conn.execute(
                text(
                    "SELECT EXTRACT(EPOCH FROM max(finished_at) - min(started_at)), "
                    "percentile_cont(0.5) WITHIN GROUP "
                    "(ORDER BY EXTRACT(EPOCH FROM finished_at - started_at)) FROM jobs"
                )
            ).one()
    finally:
        engine.dispose()
    return {
        "statuses": statuses,
        "attempts": attempts,
        "attempt_rows": int(rows),
        "jobs_with_attempts": int(per_job[1]),
        "max_attempt_rows_per_job": int(per_job[2] or 0),
        "per_worker": per_worker,
        "db_span_s": float(span or 0.0),
        "median_ran_s": float(ran or 0.0),
    }


PHASES = ("claim", "prepare", "fork", "child", "store", "reap")
PHASE_LINE = re.compile(", ".join(rf"{name} ([0-9.]+) s" for name in PHASES))


CHILD_LINE = re.compile(r"child phases \(s\): ([^\"\n]*)")


def attempt_phases(logs: list[str]) -> dict[str, float]:
    """Median seconds of each phase of an attempt, from the workers' "attempt ..." log lines."""
    rows = [m.groups() for text in logs for m in PHASE_LINE.finditer(text)]
    if not rows:
        return dict.fromkeys(PHASES, 0.0)
    return {name: common.median([float(r[i]) for r in rows]) for i, name in enumerate(PHASES)}


def format_phases(phases: dict[str, float]) -> str:
    return ", ".join(f"{name} {value * 1000:.1f}" for name, value in phases.items()) + " ms"


def child_phases(logs: list[str]) -> dict[str, float]:
    """Median seconds (and CPU seconds, minor page faults) of the phases inside the child."""
    seen: dict[str, list[float]] = {}
    for text in logs:
        for found in CHILD_LINE.finditer(text):
            for item in found.group(1).split(", "):
                name, _, value = item.partition(" ")
                seen.setdefault(name, []).append(float(value))
    return {name: common.median(values) for name, values in seen.items()}


def format_child_phases(phases: dict[str, float]) -> str:
    """'setup 1.2 (cpu 1.0), ...' in ms, and the child's minor page faults."""
    parts = [
        f"{name} {value * 1000:.1f} (cpu {phases.get(name + '_cpu', 0.0) * 1000:.1f})"
        for name, value in phases.items()
        if not name.endswith("_cpu") and name != "minor_faults"
    ]
    return "child: " + ", ".join(parts) + f" ms; {phases.get('minor_faults', 0):.0f} minor faults"


def cpu_snapshot(server: common.Server, workers: list[common.Worker]) -> dict[str, Any]:
    """CPU seconds so far: the machine's, and per process of the workers, the API and Postgres.

    Per process so that a difference skips one that ended meanwhile (a retired forkserver's
    warm-up is not the run's).
    """
    forkservers = [pid for w in workers for pid in common.children_of(w.pid)]
    return {
        "machine": common.machine_cpu(),
        "workers' own": {w.pid: common.process_cpu(w.pid, reaped=False) for w in workers},
        "forkservers' own": {pid: common.process_cpu(pid, reaped=False) for pid in forkservers},
        "attempt children": {
            pid: common.process_cpu(pid, own=False)
            + sum(common.tree_cpu(child) for child in common.children_of(pid))
            for pid in forkservers
        },
        "API": {server.pid: common.tree_cpu(server.pid)},
        "Postgres": {0: common.named_cpu("postgres")},
    }


def cpu_spent(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    """CPU seconds between two snapshots, by part; a process that ended meanwhile is left out."""
    spent = {"machine": after["machine"] - before["machine"]}
    for part, now in after.items():
        if part != "machine":
            spent[part] = sum(v - before[part].get(pid, 0.0) for pid, v in now.items())
    return spent


def count_done(engine: Any) -> int:
    from sqlalchemy import text

    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM jobs WHERE status IN ('succeeded','failed','cancelled')")
            ).scalar_one()
        )


def part_queue(args: argparse.Namespace, work: Path) -> list[Figure]:
    from sqlalchemy import create_engine

    n = args.queue_jobs or (40 if args.quick else 1000)
    url = create_pg_database("ridgeline_bench")
    try:
        upgrade(url)
        server = common.Server(url, work, worker=False)
        workers = [
            common.Worker(
                url,
                work / f"worker-{i}",
                f"worker-{i}",
                RIDGELINE_WORKER_PLUGINS='["bench.noop_trainer"]',
            )
            for i in range(args.workers)
        ]
        with common.running(server, *workers), server.client(server.new_key(TENANT)) as client:
            dataset = common.upload_csv(client, common.write_tiny_csv(work / "tiny.csv"))
            common.log(f"{NAME}: waiting for {args.workers} workers to preload")
            common.wait_for(  # both forkservers: a warm-up beside the run would slow it
                lambda: all(w.ready() and "warm for every kind" in w.logs() for w in workers),
                timeout=300,
                interval=0.2,
                message="the workers to be ready",
            )
            common.log(f"{NAME}: inserting {n} no-op jobs")
            cpu_before = cpu_snapshot(server, workers)
            insert_s = insert_noop_jobs(url, dataset["id"], n)
            started = time.perf_counter()
            engine = create_engine(url)
            try:
                common.wait_for(
                    lambda: count_done(engine) >= n,
                    timeout=max(600, n),
                    interval=0.05,
                    message=f"{n} jobs to end",
                )
            finally:
                engine.dispose()
            elapsed = time.perf_counter() - started
            cpu = cpu_spent(cpu_before, cpu_snapshot(server, workers))
        state = queue_state(url)
        phases = attempt_phases([w.logs() for w in workers])
        inside = child_phases([w.logs() for w in workers])
    finally:
        drop_pg_database(url)

    once = (
        state["statuses"] == {"succeeded": n}
        and state["attempts"] == {1: n}
        and state["attempt_rows"] == n
        and state["jobs_with_attempts"] == n
        and state["max_attempt_rows_per_job"] == 1
    )
    rate = n / elapsed
    cores = os.cpu_count() or 1
    return [
        Figure(
            NAME,
            f"queue throughput, {args.workers} workers, Postgres",
            rate,
            "jobs/s",
            f">= {THROUGHPUT_TARGET:.0f} jobs/s",
            rate >= THROUGHPUT_TARGET,
            note=f"{n} no-op jobs in {elapsed:.2f} s from the insert's commit; DB span "
            f"first start->last finish {state['db_span_s']:.2f} s; median job ran "
            f"{state['median_ran_s'] * 1000:.0f} ms (started_at->finished_at); per worker "
            f"{state['per_worker']}; insert took {insert_s:.2f} s",
        ),
        Figure(
            NAME,
            "claim-run-finish of one no-op job (median)",
            sum(phases.values()) * 1000,
            "ms",
            note=format_phases(phases)
            + f"; one worker's share of the run: {args.workers / rate * 1000:.1f} ms a job; "
            + format_child_phases(inside),
        ),
        Figure(
            NAME,
            "CPU of one no-op job, whole machine",
            cpu["machine"] / n * 1000,
            "ms",
            note=f"so at most {cores} cores / {cpu['machine'] / n * 1000:.1f} ms = "
            f"{cores / (cpu['machine'] / n):.0f} jobs/s on this machine; per job: "
            + ", ".join(f"{k} {v / n * 1000:.1f}" for k, v in cpu.items() if k != "machine")
            + f", other {(2 * cpu['machine'] - sum(cpu.values())) / n * 1000:.1f} ms (other: this "
            "benchmark, which inserted the jobs and counts the finished ones, and the system)",
        ),
        Figure(
            NAME,
            "each job ran exactly once",
            1.0 if once else 0.0,
            "",
            "all succeeded, attempt 1, 1 attempt row",
            once,
            note=f"statuses {state['statuses']}, attempts {state['attempts']}, "
            f"{state['attempt_rows']} attempt rows for {state['jobs_with_attempts']} jobs",
        ),
    ]


# -- (c) overhead on a long MLP job ---------------------------------------------------------------


def part_overhead(args: argparse.Namespace, work: Path) -> list[Figure]:
    rows = args.mlp_rows or (10_000 if args.quick else 100_000)
    epochs = args.mlp_epochs or (10 if args.quick else 40)
    csv_path = work / "mlp.csv"
    common.write_classification_csv(csv_path, rows, 50, "y")
    server = common.Server(common.sqlite_url(work), work, worker=True)
    with common.running(server), server.client(server.new_key()) as client:
        common.warm_up(client, work)
        dataset = common.upload_csv(client, csv_path)
        body = {
            "dataset_id": dataset["id"],
            "target": "y",
            "model": {
                "kind": "mlp",
                "hidden_layers": [128, 64],
                "epochs": epochs,
                "batch_size": 128,
            },
            "regularization": {"penalty": "l2", "strength": 1e-4},
        }
        common.log(f"{NAME}: MLP job, {rows:,} rows, {epochs} epochs")
        started = time.perf_counter()
        job = common.check(client.post("/v1/jobs", json=body), 202)
        job = common.wait_job(client, job["id"], interval=0.1)
        total = time.perf_counter() - started
        metrics = common.check(client.get(f"/v1/jobs/{job['id']}/metrics"), 200)
    ran = common.seconds_between(job["started_at"], job["finished_at"])
    fit = float(metrics["fit_seconds"])
    return [
        Figure(
            NAME,
            "long MLP job: ran / fit_seconds",
            ran / fit,
            "x",
            note=f"ran {ran:.2f} s (started_at->finished_at), fit {fit:.2f} s, overhead "
            f"{ran - fit:.2f} s; POST->succeeded {total:.2f} s; {rows:,} rows, {epochs} "
            "epochs, [128, 64], batch 128",
        ),
    ]


# -- (d) overhead per job --------------------------------------------------------------------------

PERJOB_SPEC: dict[str, Any] = {
    "target": "y",
    "model": {"kind": "linear"},
    "regularization": {"penalty": "l2", "strength": 1e-3},
}


def in_process_seconds(csv_path: Path, runs: int) -> float:
    """Median seconds of train() on the table in this process, with a worker child's threads."""
    import pyarrow.csv as pa_csv
    import torch
    from threadpoolctl import threadpool_limits

    from service.training.spec import TrainingSpec
    from service.training.train import train

    table = pa_csv.read_csv(csv_path)
    spec = TrainingSpec.model_validate(PERJOB_SPEC)
    threads = common.threads_per_job()
    torch.set_num_threads(threads)
    times = []
    with threadpool_limits(limits=threads):
        for _ in range(runs + 1):  # the first run pays this process's first-use costs
            started = time.perf_counter()
            train(table, spec)
            times.append(time.perf_counter() - started)
    return common.median(times[1:])


def job_seconds(client: Any, dataset_id: str) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    job = common.check(client.post("/v1/jobs", json={"dataset_id": dataset_id, **PERJOB_SPEC}), 202)
    job = common.follow_job(client, job["id"])
    return time.perf_counter() - started, job


def part_perjob(args: argparse.Namespace, work: Path) -> list[Figure]:
    rows = args.perjob_rows or (20_000 if args.quick else 200_000)
    n = args.perjob_jobs or (3 if args.quick else 5)
    csv_path = work / "perjob.csv"
    common.write_classification_csv(csv_path, rows, 50, "y")
    env = {"RIDGELINE_LOG_LEVEL": "INFO"}  # the attempts' phases
    server = common.Server(common.sqlite_url(work), work, worker=True, env=env)
    with common.running(server), server.client(server.new_key()) as client:
        common.warm_up(client, work)  # and the full forkserver's: (e) measures warm-ups
        dataset = common.upload_csv(client, csv_path)
        common.log(f"{NAME}: per-job overhead, {rows:,} x 50, first job then {n} back to back")
        first, first_job = job_seconds(client, dataset["id"])
        walls = [job_seconds(client, dataset["id"])[0] for _ in range(n)]
        logs = server.logs()
    # The last n + 1 attempts are this part's: the first job's, then the others'.
    attempts = [m.group(0) for m in PHASE_LINE.finditer(logs)][-(n + 1) :]
    children = [m.group(0) for m in CHILD_LINE.finditer(logs)][-(n + 1) :]
    first_phases, first_child = attempt_phases(attempts[:1]), child_phases(children[:1])
    later, later_child = attempt_phases(attempts[1:]), child_phases(children[1:])
    common.log(f"{NAME}: the same train() in this process")
    local = in_process_seconds(csv_path, n)
    wall = common.median(walls)
    slope, extra = BACK_TO_BACK
    return [
        Figure(
            NAME,
            "job POST->succeeded / in-process train(), back to back",
            wall / local,
            "x",
            f"<= {slope}x + {extra} s",
            wall <= slope * local + extra,
            note=f"median of {n}: {wall:.2f} s against {local:.2f} s in-process "
            f"(overhead {wall - local:+.2f} s); {rows:,} x 50 L2 logistic, "
            f"{common.threads_per_job()} threads; worker: {format_phases(later)}; "
            + format_child_phases(later_child),
        ),
        Figure(
            NAME,
            "first job on a dataset (cache fill) / in-process train()",
            first / local,
            "x",
            f"<= {FIRST_ON_DATASET}x",
            first <= FIRST_ON_DATASET * local,
            note=f"{first:.2f} s against {local:.2f} s; queued "
            f"{common.seconds_between(first_job['created_at'], first_job['started_at']):.2f} s; "
            f"worker: {format_phases(first_phases)}; " + format_child_phases(first_child),
        ),
    ]


# -- (e) a first job after start ------------------------------------------------------------------


def write_cancer_csv(path: Path) -> Path:
    from sklearn.datasets import load_breast_cancer

    load_breast_cancer(as_frame=True).frame.to_csv(path, index=False)
    return path


def part_first(args: argparse.Namespace, work: Path) -> list[Figure]:
    """The README's walkthrough from the banner of a fresh `serve`: upload, L1 job, succeeded."""
    csv_path = write_cancer_csv(work / "cancer.csv")
    port = free_port()
    env = common.cli_env(common.sqlite_url(work), work, RIDGELINE_LOG_LEVEL="INFO")
    started = time.perf_counter()
    server = common.Process(["serve", "--port", str(port)], env, work / "serve.log")
    try:
        common.wait_for(
            lambda: "API key:" in server.logs(), timeout=300, interval=0.01, message="the banner"
        )
        banner = time.perf_counter()
        key = re.search(r"API key:\s+(\S+)", server.logs()).group(1)  # type: ignore[union-attr]
        base = f"http://127.0.0.1:{port}"
        common.wait_for(lambda: _answers(base), timeout=60, interval=0.01, message="the API")
        answering = time.perf_counter()
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base, headers=headers, timeout=600) as client:
            dataset = common.upload_csv(client, csv_path)
            body = {
                "dataset_id": dataset["id"],
                "target": "target",
                "model": {"kind": "linear"},
                "regularization": {"penalty": "l1", "strength": 0.05},
            }
            job = common.check(client.post("/v1/jobs", json=body), 202)
            job = common.wait_job(client, job["id"], interval=0.02, timeout=600)
        done = time.perf_counter()
        found = re.search(r"ready \(warmed up in ([0-9.]+) s", server.logs())
    finally:
        server.stop()
    total = done - banner
    queued = common.seconds_between(job["created_at"], job["started_at"])
    warm = f"worker warm-up {found.group(1)} s" if found else "warm-up line not seen"
    return [
        Figure(
            NAME,
            "README's first job, banner -> succeeded",
            total,
            "s",
            f"<= {FIRST_JOB_TARGET_S:.0f} s",
            total <= FIRST_JOB_TARGET_S,
            note=f"start -> banner {banner - started:.2f} s, banner -> API answers "
            f"{answering - banner:.2f} s, job queued {queued:.2f} s; {warm}",
        )
    ]


def _answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def run(args: argparse.Namespace) -> list[Figure]:
    parts = {
        "latency": part_latency,
        "queue": part_queue,
        "overhead": part_overhead,
        "perjob": part_perjob,
        "first": part_first,
    }
    figures: list[Figure] = []
    for name, part in parts.items():
        if args.only and name not in args.only:
            continue
        with tempfile.TemporaryDirectory(prefix=f"ridgeline-bench-worker-{name}-") as tmp:
            figures += part(args, Path(tmp))
    return figures


if __name__ == "__main__":
    common.main(NAME, add_arguments, run, __doc__ or NAME)
