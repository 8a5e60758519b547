"""Serving by name: predictions by `name@alias` against predictions by job id, 50 clients.

One `ridgeline serve` (embedded worker; SQLite, or with --postgres a throwaway Postgres
database), three tiny linear jobs registered as versions 1-3 of model `bench`, alias
`champion` on version 1. 50 concurrent clients (httpx.AsyncClient, one pool) POST 5 rows each
time. Each kind of run below lasts --duration seconds (default 40; --quick 10), cut into
--rounds slices (default 4; --quick 2) that take turns, so a machine that gets busier or
quieter meanwhile weighs on every kind alike (each URL gets a 2 s warm-up first):
  (a) POST /v1/jobs/{id}/predict, version 1's job: the baseline;
  (b) POST /v1/models/bench@champion/predict: requests/s against (a), target >= 0.95, p99;
  (c) the same while a thread moves `champion` on to the next version every second: requests/s
      against (a) (target >= 0.95), zero errors, p99, and staleness: how long after a move was
      answered a request that started later still got the old version (the cache's delay);
  (d) (c) against a second API process that does not listen for moves
      (RIDGELINE_ALIAS_LISTEN=false): the other option, an expiry of RIDGELINE_ALIAS_CACHE_SECONDS
      (1 s) alone; its requests/s and staleness, for comparison.
The load generator, the servers and the worker share this machine's cores.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import common
import httpx
from common import Figure
from load import WARMUP_S, LoadResult, httpx_load

NAME = "registry"
CLIENTS = 50
RATIO_TARGET = 0.95
MOVE_EVERY_S = 1.0
MODEL = "bench"
ROWS = 5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--duration", type=float, help="Seconds per kind of run (default 40; quick 10)."
    )
    parser.add_argument(
        "--rounds", type=int, help="Slices the runs are interleaved in (default 4; quick 2)."
    )
    parser.add_argument("--clients", type=int, default=CLIENTS, help="Concurrent clients.")
    parser.add_argument(
        "--postgres", action="store_true", help="A throwaway Postgres database instead of SQLite."
    )


@dataclass
class Moves:
    """Moves `champion` around the versions every second, from a thread, recording each move."""

    client: httpx.Client
    versions: tuple[int, ...] = (1, 2, 3)
    done: list[tuple[float, float, int]] = field(default_factory=list)  # sent, answered, to
    errors: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        turn = 1
        while not self._stop.wait(MOVE_EVERY_S):
            target = self.versions[turn % len(self.versions)]
            sent = time.perf_counter()
            response = self.client.put(
                f"/v1/models/{MODEL}/aliases/champion", json={"version": target}
            )
            if response.status_code != 200:
                self.errors += 1
                continue
            self.done.append((sent, time.perf_counter(), target))
            turn += 1

    @contextmanager
    def running(self) -> Iterator[Moves]:
        thread = threading.Thread(target=self.run, name="alias-mover", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(timeout=30)


@dataclass
class Answers:
    """(started, ended, version) of every answered prediction."""

    seen: list[tuple[float, float, int]] = field(default_factory=list)

    def record(self, started: float, ended: float, response: httpx.Response | None) -> None:
        version = response.headers.get("x-model-version") if response is not None else None
        if version is not None:  # answered by name (predictions by job id carry none)
            self.seen.append((started, ended, int(version)))

    def staleness(self, moves: list[tuple[float, float, int]]) -> tuple[float, int]:
        """How long after a move was answered a request that started later still got the
        version before it (seconds, the worst case), and how many answers did.

        An answer is stale when its version is neither what the last move answered before the
        request began set, nor what a move that overlapped the request set."""
        worst, stale = 0.0, 0
        for started, ended, version in self.seen:
            before = [(answered, to) for _, answered, to in moves if answered < started]
            during = {to for sent, answered, to in moves if answered >= started and sent < ended}
            if before and before[-1][1] != version and version not in during:
                stale += 1
                worst = max(worst, started - before[-1][0])
        return worst, stale


def _setup(server: common.Server, client: httpx.Client, work: Path) -> tuple[str, list[Any]]:
    """Three tiny jobs as versions 1-3 of the model, champion on 1: version 1's job, and rows."""
    csv = common.write_tiny_csv(work / "tiny.csv")
    dataset = common.upload_csv(client, csv)
    jobs = []
    for strength in (1e-3, 1e-1, 1.0):
        body = {
            **common.tiny_job(dataset["id"]),
            "regularization": {"penalty": "l2", "strength": strength},
        }
        job = common.check(client.post("/v1/jobs", json=body), 202)
        jobs.append(common.wait_job(client, job["id"], interval=0.05, timeout=300)["id"])
    common.check(client.post("/v1/models", json={"name": MODEL}), 201)
    for job_id in jobs:
        common.check(client.post(f"/v1/models/{MODEL}/versions", json={"job_id": job_id}), 201)
    common.check(client.put(f"/v1/models/{MODEL}/aliases/champion", json={"version": 1}), 200)
    rows = [dict(zip("abcd", map(float, line.split(",")[:4]), strict=True))
            for line in csv.read_text().splitlines()[1:ROWS + 1]]  # fmt: skip
    return jobs[0], rows


@dataclass
class Tally:
    """One kind of run, pooled over the rounds: requests, time, errors, every latency."""

    requests: int = 0
    seconds: float = 0.0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    detail: set[str] = field(default_factory=set)

    def add(self, result: LoadResult, latencies: list[float]) -> None:
        self.requests += result.requests
        self.seconds += result.seconds
        self.errors += result.errors
        self.latencies += latencies
        if result.error_detail:
            self.detail.add(result.error_detail)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def p99_ms(self) -> float:
        return common.percentile(self.latencies, 99) * 1e3


def _slice(
    url: str, key: str, rows: list[Any], seconds: float, clients: int, tally: Tally | None = None
) -> Answers:
    """One run into the tally (none: a warm-up); the answers' versions, for the staleness."""
    answers, latencies = Answers(), []

    def on_answer(started: float, ended: float, response: httpx.Response | None) -> None:
        latencies.append(ended - started)
        answers.record(started, ended, response)

    headers = {"Authorization": f"Bearer {key}"}
    result = httpx_load(url, headers, clients, seconds, body={"rows": rows}, on_answer=on_answer)
    if tally is not None:
        tally.add(result, latencies)
    return answers


@dataclass
class Stale:
    """The staleness seen over a kind's slices: the worst delay, stale answers, moves made."""

    worst: float = 0.0
    answers: int = 0
    moves: int = 0


def _moving_slice(
    server: common.Server, key: str, rows: list[Any], args: argparse.Namespace, tally: Tally,
    stale: Stale,
) -> None:  # fmt: skip
    """By alias on `server` while the alias moves every second."""
    url = f"{server.base_url}/v1/models/{MODEL}@champion/predict"
    seconds = args.duration / args.rounds
    with server.client(key) as mover_client, Moves(mover_client).running() as moves:
        answers = _slice(url, key, rows, seconds, args.clients, tally)
    tally.errors += moves.errors
    worst, count = answers.staleness(moves.done)
    stale.worst, stale.answers = max(stale.worst, worst), stale.answers + count
    stale.moves += len(moves.done)


def measure(
    servers: tuple[common.Server, common.Server], key: str, job_id: str, rows: list[Any],
    args: argparse.Namespace,
) -> list[Figure]:  # fmt: skip
    """The four kinds of run interleaved round after round, so a machine that gets busier or
    quieter meanwhile weighs on each of them alike."""
    listening, expiring = servers
    by_job = f"{listening.base_url}/v1/jobs/{job_id}/predict"
    by_alias = f"{listening.base_url}/v1/models/{MODEL}@champion/predict"
    job, alias, moving, expiry = Tally(), Tally(), Tally(), Tally()
    heard, expired = Stale(), Stale()
    seconds = args.duration / args.rounds
    common.log(f"{NAME}: {args.clients} clients, {args.rounds} rounds of {seconds:g} s per "
               "kind of run (+ warm-up)")  # fmt: skip
    for url in (by_job, by_alias, f"{expiring.base_url}/v1/models/{MODEL}@champion/predict"):
        _slice(url, key, rows, WARMUP_S, args.clients)
    for _ in range(args.rounds):
        _slice(by_job, key, rows, seconds, args.clients, job)
        _slice(by_alias, key, rows, seconds, args.clients, alias)
        _moving_slice(listening, key, rows, args, moving, heard)
        _moving_slice(expiring, key, rows, args, expiry, expired)
    for label, tally in (("job", job), ("alias", alias), ("moving", moving), ("expiry", expiry)):
        common.log(f"{NAME}: {label}: {tally.rps:.0f} req/s, p99 {tally.p99_ms:.0f} ms, "
                   f"{tally.errors} errors")  # fmt: skip
    base = job.rps
    setup = (f"{args.clients} clients, {args.rounds} rounds of {seconds:g} s interleaved, "
             f"{ROWS} rows a request, httpx.AsyncClient")  # fmt: skip
    return [
        Figure(NAME, "predict by job id requests/s", base, "req/s",
               note=f"p99 {job.p99_ms:.0f} ms, errors {job.errors}; {setup}"),
        Figure(NAME, "by alias / by job id requests/s", alias.rps / base, "x",
               f">= {RATIO_TARGET:g}, 0 errors", alias.rps / base >= RATIO_TARGET
               and alias.errors == 0,
               note=f"{alias.rps:.0f} req/s; p99 {alias.p99_ms:.0f} ms vs {job.p99_ms:.0f} ms by "
                    f"job id; errors {alias.errors}"),
        Figure(NAME, "by alias, moving every 1 s / by job id", moving.rps / base, "x",
               f">= {RATIO_TARGET:g}, 0 errors", moving.rps / base >= RATIO_TARGET
               and moving.errors == 0,
               note=f"{moving.rps:.0f} req/s, p99 {moving.p99_ms:.0f} ms, {heard.moves} moves, "
                    f"errors {moving.errors} ({'; '.join(sorted(moving.detail)) or 'none'})"),
        Figure(NAME, "staleness after a move (listening)", heard.worst * 1e3, "ms",
               note=f"{heard.answers} of {moving.requests:,} answers came from the version "
                    "before the last move"),
        Figure(NAME, "by alias, moving, expiry only / by job id", expiry.rps / base, "x",
               note=f"RIDGELINE_ALIAS_LISTEN=false, a second API process: {expiry.rps:.0f} "
                    f"req/s, p99 {expiry.p99_ms:.0f} ms, {expired.moves} moves, errors "
                    f"{expiry.errors}"),
        Figure(NAME, "staleness after a move (expiry only)", expired.worst * 1e3, "ms",
               note=f"{expired.answers} of {expiry.requests:,} answers from the version before; "
                    "bounded by RIDGELINE_ALIAS_CACHE_SECONDS (1 s)"),
    ]  # fmt: skip


def run(args: argparse.Namespace) -> list[Figure]:
    args.duration = args.duration or (10.0 if args.quick else 40.0)
    args.rounds = args.rounds or (2 if args.quick else 4)
    with tempfile.TemporaryDirectory(prefix="ridgeline-bench-registry-") as tmp:
        work = Path(tmp)
        url = common.sqlite_url(work)
        if args.postgres:
            from service.migrate import upgrade
            from tests.support import create_pg_database, drop_pg_database

            url = create_pg_database("ridgeline_bench")
            upgrade(url)
        try:
            server = common.Server(url, work / "a", worker=True)
            key = server.new_key()
            with common.running(server), server.client(key) as client:
                job_id, rows = _setup(server, client, work)
                expiring = common.Server(
                    url, work / "b", worker=False, env={"RIDGELINE_ALIAS_LISTEN": "false"}
                )
                with common.running(expiring):
                    return measure((server, expiring), key, job_id, rows, args)
        finally:
            if args.postgres:
                drop_pg_database(url)


if __name__ == "__main__":
    common.main(NAME, add_arguments, run, __doc__ or NAME)
