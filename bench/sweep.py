"""Choosing the regularization: a sweep through the service against one job, and against workers.

On a 200k x 50 numeric classification table (binary target of a noisy logistic model, the one
bench/train.py uses), through the HTTP API of one `ridgeline serve` (embedded worker, SQLite):
  (a) A 20-point L1 logistic path (strengths 1e-5 .. 1e-1, log scale, one 20 % validation split,
      no refit), POST /v1/sweeps -> sweep succeeded, against ONE job (POST /v1/jobs) at the middle
      strength of that grid with the same validation fraction, POST -> succeeded, measured in the
      same run (before and after the sweep; their mean is the baseline). Target: sweep <= 3 x one
      job; 20 independent fits would cost about 20 x.
  (b) A 5-fold CV sweep over ["l1", "l2"] x 10 strengths (10 path jobs), no refit, with the
      embedded worker alone, then again with a second `ridgeline worker` process on the same
      SQLite database (RIDGELINE_WORKER_CONCURRENCY=1 for both): both wall times and the speed-up.
      Each worker gives its job all the cores, so two workers oversubscribe a small machine.
Every job polls every 20 ms and every sweep every 50 ms; the dataset is in the worker's cache
before anything is timed (one L2 job on it first).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import common
import httpx
import numpy as np
from common import MB, Figure

NAME = "sweep"
N_FEATURES = 50
TARGET = "y"
PATH_GRID = {"min": 1e-5, "max": 1e-1, "num": 20, "scale": "log"}
CV_GRID = {"min": 1e-5, "max": 1e-1, "num": 10, "scale": "log"}
CV_PENALTIES = ["l1", "l2"]
CV_FOLDS = 5
VALIDATION_FRACTION = 0.2
PATH_RATIO_TARGET = 3.0
SWEEP_POLL_S = 0.05
WORKER_ENV = {"RIDGELINE_WORKER_CONCURRENCY": "1"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, help="Rows (default 200,000; --quick 20,000).")
    parser.add_argument(
        "--only", choices=["path", "workers"], action="append", help="Run only these parts."
    )


def grid_values(grid: dict[str, Any]) -> list[float]:
    """The strengths the service expands a log range into (service.sweeps.service.strengths_of)."""
    return [float(v) for v in np.geomspace(grid["min"], grid["max"], grid["num"])]


def middle_strength(grid: dict[str, Any]) -> float:
    return grid_values(grid)[grid["num"] // 2]


def single_job_body(dataset_id: str, strength: float) -> dict[str, Any]:
    return {
        "dataset_id": dataset_id,
        "target": TARGET,
        "model": {"kind": "linear"},
        "regularization": {"penalty": "l1", "strength": strength},
        "validation": {"fraction": VALIDATION_FRACTION},
    }


def path_sweep_body(dataset_id: str) -> dict[str, Any]:
    return {
        "dataset_id": dataset_id,
        "target": TARGET,
        "model": {"kind": "linear"},
        "search": {"penalty": ["l1"], "strength": PATH_GRID},
        "cv": {"validation_fraction": VALIDATION_FRACTION},
        "refit": False,
    }


def cv_sweep_body(dataset_id: str) -> dict[str, Any]:
    return {
        "dataset_id": dataset_id,
        "target": TARGET,
        "model": {"kind": "linear"},
        "search": {"penalty": CV_PENALTIES, "strength": CV_GRID},
        "cv": {"folds": CV_FOLDS},
        "refit": False,
    }


def run_job(client: httpx.Client, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """(POST -> succeeded seconds, the job), polling every 20 ms."""
    started = time.perf_counter()
    job = common.check(client.post("/v1/jobs", json=body), 202)
    job = common.wait_job(client, job["id"], interval=0.02)
    return time.perf_counter() - started, job


def run_sweep(client: httpx.Client, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """(POST -> sweep succeeded seconds, the sweep), polling every 50 ms."""
    started = time.perf_counter()
    sweep = common.check(client.post("/v1/sweeps", json=body), 202)

    def done() -> dict[str, Any] | None:
        current = common.check(client.get(f"/v1/sweeps/{sweep['id']}"), 200)
        return current if current["status"] in common.TERMINAL else None

    sweep = common.wait_for(
        done, timeout=3600, interval=SWEEP_POLL_S, message=f"sweep {sweep['id']} to end"
    )
    elapsed = time.perf_counter() - started
    if sweep["status"] != "succeeded":
        raise RuntimeError(
            f"sweep {sweep['id']} ended {sweep['status']}: {sweep.get('error')}; "
            f"failed trials: {sweep.get('failed_trials')}"
        )
    return elapsed, sweep


def trial_jobs(
    client: httpx.Client, dataset_id: str, sweep: dict[str, Any]
) -> list[dict[str, Any]]:
    """The jobs on the dataset created while the sweep ran: its trials (nothing else runs then)."""
    start, end = common.parse_time(sweep["created_at"]), common.parse_time(sweep["finished_at"])
    out: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"dataset_id": dataset_id, "limit": 200}
        if cursor:
            params["cursor"] = cursor
        page = common.check(client.get("/v1/jobs", params=params), 200)
        out += [j for j in page["items"] if start <= common.parse_time(j["created_at"]) <= end]
        cursor = page.get("next_cursor")
        if not cursor:
            return out


def trial_note(client: httpx.Client, dataset_id: str, sweep: dict[str, Any]) -> str:
    """How many trial jobs ran on how many workers, and their summed run time (busy seconds)."""
    jobs = trial_jobs(client, dataset_id, sweep)
    workers = {a["worker_id"] for j in jobs for a in j.get("attempts") or []}
    busy = sum(
        common.seconds_between(j["started_at"], j["finished_at"])
        for j in jobs
        if j.get("started_at") and j.get("finished_at")
    )
    return f"{len(jobs)} trial jobs on {len(workers)} worker(s), {busy:.1f} s summed run time"


def validation_log_loss(client: httpx.Client, job_id: str) -> float | None:
    metrics = common.check(client.get(f"/v1/jobs/{job_id}/metrics"), 200)
    value = ((metrics.get("final") or {}).get("validation") or {}).get("log_loss")
    return None if value is None else float(value)


def path_breakdown(client: httpx.Client, ds: str, sweep: dict[str, Any]) -> str:
    """Where the path job's time went: its run time, the solver's own time and iterations."""
    notes = []
    for job in trial_jobs(client, ds, sweep):
        metrics = common.check(client.get(f"/v1/jobs/{job['id']}/metrics"), 200)
        points = metrics.get("path") or (metrics.get("extra") or {}).get("path") or []
        solve = sum(p.get("fit_seconds") or 0.0 for p in points)
        iters = sum(p.get("n_iter") or 0 for p in points)
        slowest = max(points, key=lambda p: p.get("fit_seconds") or 0.0, default=None)
        ran = common.seconds_between(job["started_at"], job["finished_at"])
        note = f"path job ran {ran:.2f} s, solver {solve:.2f} s over {iters} iterations"
        if slowest is not None:
            note += (
                f" (slowest: strength {slowest['strength']:.3g}, {slowest['fit_seconds']:.2f} s,"
                f" {slowest.get('n_iter')} it)"
            )
        notes.append(note)
    return "; ".join(notes) or "no trial job found"


def job_phases(client: httpx.Client, job: dict[str, Any]) -> str:
    metrics = common.check(client.get(f"/v1/jobs/{job['id']}/metrics"), 200)
    ran = common.seconds_between(job["started_at"], job["finished_at"])
    return f"ran {ran:.2f} s, fit {metrics.get('fit_seconds', float('nan')):.2f} s"


def path_point(sweep: dict[str, Any], strength: float) -> dict[str, Any] | None:
    for row in sweep["leaderboard"]:
        if abs(row["strength"] - strength) <= 1e-9 * strength:
            return row  # type: ignore[no-any-return]
    return None


def path_vs_job(client: httpx.Client, ds: str, rows_note: str) -> list[Figure]:
    """(a) the 20-point L1 path against one job at its middle strength."""
    mid = middle_strength(PATH_GRID)
    common.log(f"{NAME}: (a) one L1 job at strength {mid:.3g} (before the sweep)")
    single_before, job = run_job(client, single_job_body(ds, mid))
    common.log(f"{NAME}: (a) {PATH_GRID['num']}-point L1 path sweep")
    sweep_s, sweep = run_sweep(client, path_sweep_body(ds))
    common.log(f"{NAME}: (a) one L1 job at strength {mid:.3g} (after the sweep)")
    single_after, _ = run_job(client, single_job_body(ds, mid))
    single = (single_before + single_after) / 2
    ratio = sweep_s / single
    job_loss = validation_log_loss(client, job["id"])
    point = path_point(sweep, mid)
    best = sweep.get("best") or {}
    agree = (
        f"val log_loss at {mid:.3g}: path {point['mean']:.5f}, job {job_loss:.5f}"
        if point and point.get("mean") is not None and job_loss is not None
        else "middle point not found in the leaderboard"
    )
    return [
        Figure(
            NAME,
            "L1 job POST->succeeded (middle strength)",
            single,
            "s",
            note=f"mean of {single_before:.2f} s (before) and {single_after:.2f} s (after); "
            f"strength {mid:.3g}, validation {VALIDATION_FRACTION}; first job "
            f"{job_phases(client, job)}; {rows_note}",
        ),
        Figure(
            NAME,
            f"{PATH_GRID['num']}-point L1 path sweep POST->succeeded",
            sweep_s,
            "s",
            note=f"{sweep['n_jobs']} job(s), {len(sweep['leaderboard'])} leaderboard rows; "
            f"best strength {best.get('strength', float('nan')):.3g}; {agree}; "
            f"{path_breakdown(client, ds, sweep)}",
        ),
        Figure(
            NAME,
            f"L1 path ({PATH_GRID['num']} strengths) / one job",
            ratio,
            "x",
            f"<= {PATH_RATIO_TARGET:g}",
            ratio <= PATH_RATIO_TARGET,
            note=f"{PATH_GRID['num']} independent jobs would cost about "
            f"{PATH_GRID['num'] * single:.1f} s ({PATH_GRID['num']} x)",
        ),
    ]


def one_vs_two_workers(
    client: httpx.Client, ds: str, database_url: str, work: Path, rows_note: str
) -> list[Figure]:
    """(b) the same 5-fold CV sweep with the embedded worker alone, then with a second one."""
    n_configs = len(CV_PENALTIES) * CV_GRID["num"]
    label = f"{CV_FOLDS}-fold CV sweep {len(CV_PENALTIES)} penalties x {CV_GRID['num']} strengths"
    common.log(f"{NAME}: (b) {label}, 1 worker")
    one_s, one = run_sweep(client, cv_sweep_body(ds))
    one_note = trial_note(client, ds, one)
    common.log(f"{NAME}: (b) starting a second `ridgeline worker`")
    second = common.Worker(database_url, work, "worker-2", **WORKER_ENV)
    with common.running(second):
        common.wait_for(second.ready, timeout=180, interval=0.2, message="the second worker")
        common.log(f"{NAME}: (b) {label}, 2 workers")
        two_s, two = run_sweep(client, cv_sweep_body(ds))
        two_note = trial_note(client, ds, two)
    speedup = one_s / two_s
    threads = common.threads_per_job(1)
    return [
        Figure(
            NAME,
            f"{label}, 1 worker",
            one_s,
            "s",
            note=f"{n_configs} configs; {one_note}; {rows_note}",
        ),
        Figure(
            NAME,
            f"{label}, 2 workers",
            two_s,
            "s",
            note=f"{two_note}; the second worker's dataset cache is shared (same data dir)",
        ),
        Figure(
            NAME,
            "CV sweep speed-up, 2 workers / 1",
            speedup,
            "x",
            note=f"{common.machine_info()['cpus']} CPUs; each job uses {threads} thread(s) "
            "(concurrency 1 gives a job all cores), so 2 workers oversubscribe them",
        ),
    ]


def run(args: argparse.Namespace) -> list[Figure]:
    rows = args.rows or (20_000 if args.quick else 200_000)
    parts = args.only or ["path", "workers"]
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="ridgeline-bench-sweep-") as tmp:
        work = Path(tmp)
        csv_path = work / "sweep.csv"
        common.log(f"{NAME}: writing a {rows:,} x {N_FEATURES + 1} CSV")
        size = common.write_classification_csv(csv_path, rows, N_FEATURES, TARGET)
        rows_note = f"{rows:,} x {N_FEATURES}, {size / MB:.0f} MB CSV"
        database_url = common.sqlite_url(work)
        server = common.Server(database_url, work, worker=True, env=WORKER_ENV)
        with common.running(server), server.client(server.new_key()) as client:
            common.log(f"{NAME}: warming up the embedded worker with a tiny job")
            common.warm_up(client, work)
            common.log(f"{NAME}: uploading {size / MB:.0f} MB")
            ds = common.upload_csv(client, csv_path)["id"]
            common.log(f"{NAME}: one L2 job to put the dataset in the worker's cache")
            run_job(
                client,
                {
                    **single_job_body(ds, 1e-4),
                    "regularization": {"penalty": "l2", "strength": 1e-4},
                },
            )
            if "path" in parts:
                figures += path_vs_job(client, ds, rows_note)
            if "workers" in parts:
                figures += one_vs_two_workers(client, ds, database_url, work, rows_note)
    return figures


if __name__ == "__main__":
    common.main(NAME, add_arguments, run, __doc__ or NAME)
