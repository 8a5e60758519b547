"""Database faults on a Postgres cluster of the test's own, which it stops and restarts.

- While the database is away, DB-backed routes answer 503 problem+json with Retry-After at
  once (no hang, no 500); afterwards the API and both workers recover without a restart, every
  job ends `succeeded` (a second attempt is allowed) and no job stays `running` past its lease.
- A write that fails in the middle of an upload leaves no dataset and no chunk behind; what a
  crash leaves (an incomplete blob) is reaped by a worker's housekeeping.
- Killing the API (SIGKILL) in the middle of an upload leaves nothing in the database.

Each scenario runs once in a module fixture that records what it saw and stops its processes;
the tests then judge the record, so one broken promise does not hide the others.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from service.migrate import upgrade
from service.scratch import LOCK_NAME
from tests.conftest import (
    WORKER_ENV,
    Server,
    insert_job,
    start_server,
    start_worker,
    stop_process,
    upload_tiny,
    wait_for,
)
from tests.hardening.conftest import PgCluster, execute, upload_counts

pytestmark = pytest.mark.slow

LEASE_SECONDS = float(WORKER_ENV["RIDGELINE_LEASE_SECONDS"])
N_JOBS = 20
JOB_SECONDS = 2
OUTAGE_SECONDS = 3.0
SMALL_CHUNK = 64 * 1024  # the smallest chunk the settings allow: many chunks per upload


def _kill(process: subprocess.Popen[str] | None) -> None:
    if process is not None and process.poll() is None:
        process.kill()
        process.wait(timeout=10)


def _client(server: Server, key: str, timeout: float = 15) -> httpx.Client:
    return httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=timeout
    )


def _problem_shape(response: httpx.Response) -> list[str]:
    """What is wrong with an error response as problem+json (empty when nothing)."""
    wrong = []
    if not response.headers.get("content-type", "").startswith("application/problem+json"):
        wrong.append(f"content-type {response.headers.get('content-type')!r}")
    try:
        body = response.json()
    except ValueError:
        return [*wrong, f"body is not JSON: {response.text[:200]!r}"]
    for key in ("type", "title", "status", "detail"):
        if key not in body:
            wrong.append(f"no {key!r} in {body}")
    if body.get("status") != response.status_code:
        wrong.append(f"body status {body.get('status')} != {response.status_code}")
    return wrong


def _csv_bytes(rows: int, seed: int = 0) -> bytes:
    """Random floats: they do not compress, so the stored Parquet spans many small chunks."""
    rng = np.random.default_rng(seed)
    values = rng.random((rows, 4))
    lines = [b"a,b,c,y"] + [b"%.17g,%.17g,%.17g,%.17g" % tuple(row) for row in values]
    return b"\n".join(lines) + b"\n"


SLOW_CHUNKS_SQL = [
    """CREATE OR REPLACE FUNCTION rl_slow_chunk() RETURNS trigger AS $$
       BEGIN PERFORM pg_sleep(0.25); RETURN NEW; END $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER rl_slow_chunk BEFORE INSERT ON blob_chunks
       FOR EACH ROW EXECUTE FUNCTION rl_slow_chunk()""",
]
FAIL_THIRD_CHUNK_SQL = [
    """CREATE OR REPLACE FUNCTION rl_fail_chunk() RETURNS trigger AS $$
       BEGIN
         IF NEW.seq >= 2 THEN RAISE EXCEPTION 'rl: refusing chunk %', NEW.seq; END IF;
         RETURN NEW;
       END $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER rl_fail_chunk BEFORE INSERT ON blob_chunks
       FOR EACH ROW EXECUTE FUNCTION rl_fail_chunk()""",
]


def _install(url: str, statements: list[str]) -> None:
    for sql in statements:
        execute(url, sql)


def _drop_trigger(url: str, name: str) -> None:
    execute(url, f"DROP TRIGGER IF EXISTS {name} ON blob_chunks")


# --- the outage: Postgres goes away under a busy API and two busy workers -------------------


@dataclass
class Probe:
    at: float
    what: str
    status: int | None
    elapsed: float
    retry_after: str | None = None
    problem: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class OutageRecord:
    down_at: float = 0.0
    up_at: float = 0.0
    bounce_at: float = 0.0
    outage_probes: list[Probe] = field(default_factory=list)
    background: list[Probe] = field(default_factory=list)
    recovered_after: float | None = None
    jobs: dict[str, tuple[str, int, str | None]] = field(default_factory=dict)
    stale_running: list[tuple[float, str, int, float]] = field(default_factory=list)
    workers_alive: list[bool] = field(default_factory=list)
    claims_after_restart: dict[int, int] = field(default_factory=dict)
    timed_out: str | None = None
    logs: str = ""


def _call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Probe:
    started = time.monotonic()
    try:
        response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        return Probe(started, f"{method} {path}", None, time.monotonic() - started, error=repr(exc))
    probe = Probe(started, f"{method} {path}", response.status_code, time.monotonic() - started)
    if response.status_code >= 400:
        probe.retry_after = response.headers.get("retry-after")
        probe.problem = _problem_shape(response)
    return probe


class Traffic(threading.Thread):
    """Keeps DB-backed reads going the whole time, recording every answer."""

    def __init__(self, client: httpx.Client, job_ids: list[str]) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.job_ids = job_ids
        self.stop = threading.Event()
        self.probes: list[Probe] = []

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            job_id = self.job_ids[i % len(self.job_ids)]
            path = "/v1/jobs?limit=5" if i % 2 else f"/v1/jobs/{job_id}"
            self.probes.append(_call(self.client, "GET", path))
            i += 1
            self.stop.wait(0.05)


def _db_state(url: str) -> dict[str, tuple[str, int, str | None]]:
    rows = execute(url, "SELECT id, status, attempt, error FROM jobs")
    return {str(r[0]): (r[1], r[2], r[3]) for r in rows}


def _stale_running(url: str, grace: float) -> list[tuple[str, int, float]]:
    """Running jobs whose lease ran out more than `grace` seconds ago (database clock)."""
    rows = execute(
        url,
        "SELECT id, attempt, EXTRACT(EPOCH FROM clock_timestamp() - lease_expires_at) "
        "FROM jobs WHERE status = 'running' AND "
        "lease_expires_at < clock_timestamp() - make_interval(secs => :grace)",
        grace=grace,
    )
    return [(str(r[0]), int(r[1]), float(r[2])) for r in rows]


@pytest.fixture(scope="module")
def outage(pg_cluster: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> OutageRecord:
    record = OutageRecord()
    url = pg_cluster.create_database()
    upgrade(url)
    work = tmp_path_factory.mktemp("outage")
    server: Server | None = None
    workers: list[subprocess.Popen[str]] = []
    traffic: Traffic | None = None
    try:
        # The workers warm up (seconds) while the API starts.
        workers = [start_worker(url, work / f"w{i}", work / f"worker-{i}.log") for i in (1, 2)]
        server = start_server(url, work)
        key, tenant = server.new_tenant()
        client = _client(server, key, timeout=15)
        dataset_id = upload_tiny(client)
        job_ids = [
            insert_job(
                url, tenant=tenant, dataset_id=dataset_id, trainer="test-sleep", seed=JOB_SECONDS
            )
            for _ in range(N_JOBS)
        ]
        wait_for(
            lambda: sum(s == "running" for s, _, _ in _db_state(url).values()) >= 2,
            timeout=90,
            message="both workers to run a job",
        )
        traffic = Traffic(_client(server, key, timeout=15), job_ids)
        traffic.start()
        wait_for(
            lambda: (
                sum(p.status == 200 and p.at < time.monotonic() - 0.6 for p in traffic.probes) >= 5
            ),
            timeout=30,
            message="traffic answered before the outage",
        )

        # 1. A real outage: Postgres stopped for a few seconds.
        pg_cluster.stop(mode="fast")
        record.down_at = time.monotonic()
        probe_client = _client(server, key, timeout=15)
        job_body = {"dataset_id": dataset_id, "target": "y"}
        while time.monotonic() - record.down_at < OUTAGE_SECONDS:
            for method, path, kwargs in (
                ("GET", "/v1/jobs", {}),
                ("GET", f"/v1/jobs/{job_ids[0]}", {}),
                ("GET", "/v1/datasets", {}),
                ("GET", f"/v1/datasets/{dataset_id}", {}),
                ("POST", "/v1/jobs", {"json": job_body}),
                ("GET", "/readyz", {}),
                ("GET", "/healthz", {}),
            ):
                record.outage_probes.append(_call(probe_client, method, path, **kwargs))
        pg_cluster.start()
        record.up_at = time.monotonic()

        def api_back() -> bool:
            return _call(probe_client, "GET", "/v1/jobs").status == 200

        wait_for(api_back, timeout=30, interval=0.2, message="the API to answer again")
        record.recovered_after = time.monotonic() - record.up_at

        # 2. A quick bounce while jobs run, as a failover or a restart looks to clients, once
        # the traffic has been answered again for a while.
        back_at = time.monotonic()
        wait_for(
            lambda: sum(p.status == 200 and p.at > back_at for p in traffic.probes) >= 10,
            timeout=30,
            message="traffic answered again after the outage",
        )
        pg_cluster.stop(mode="fast")
        record.bounce_at = time.monotonic()
        pg_cluster.start()

        def all_jobs_ended() -> bool:
            try:
                for job_id, attempt, overdue in _stale_running(url, LEASE_SECONDS):
                    record.stale_running.append((time.monotonic(), job_id, attempt, overdue))
                state = _db_state(url)
            except Exception:  # the bounce may still be settling
                return False
            return all(s in ("succeeded", "failed", "cancelled") for s, _, _ in state.values())

        try:
            wait_for(all_jobs_ended, timeout=150, interval=0.5, message="every job to end")
        except AssertionError:
            record.timed_out = "jobs still unfinished 150 s after the outage"
        # Keep the traffic going until it has been answered 200 again after the last outage.
        wait_for(
            lambda: (
                sum(p.status == 200 and p.at > record.bounce_at + 10 for p in traffic.probes) >= 5
            ),
            timeout=60,
            message="traffic answered after the bounce",
        )
        record.jobs = _db_state(url)
        record.workers_alive = [w.poll() is None for w in workers]
        rows = execute(
            url,
            "SELECT worker_id, count(*) FROM job_attempts "
            "WHERE started_at > clock_timestamp() - make_interval(secs => :since) "
            "GROUP BY worker_id",
            since=time.monotonic() - record.up_at,
        )
        pids = {w.pid: 0 for w in workers}
        for worker_id, count in rows:
            pid = int(str(worker_id).split(":")[1])
            if pid in pids:
                pids[pid] += int(count)
        record.claims_after_restart = pids
    finally:
        if traffic is not None:
            traffic.stop.set()
            traffic.join(timeout=30)
            record.background = traffic.probes
        for process in workers:
            stop_process(process)
        if server is not None:
            stop_process(server.process)
            record.logs = server.logs()[-6000:]
        if not pg_cluster.running:
            pg_cluster.start()
    return record


DB_ROUTES = ("/v1/jobs", "/v1/datasets")


def test_outage_answers_503_problem_with_retry_after_at_once(outage: OutageRecord) -> None:
    probes = [p for p in outage.outage_probes if p.what.split(" ")[1].startswith(DB_ROUTES)]
    assert len(probes) >= 10, outage.outage_probes
    wrong = [
        p
        for p in probes
        if p.status != 503 or not p.retry_after or p.problem or p.elapsed > 3.0 or p.error
    ]
    assert not wrong, f"{len(wrong)} of {len(probes)} answers during the outage: {wrong[:8]}"
    assert all(p.retry_after and p.retry_after.isdigit() for p in probes)


def test_health_routes_during_the_outage(outage: OutageRecord) -> None:
    health = [p for p in outage.outage_probes if p.what == "GET /healthz"]
    ready = [p for p in outage.outage_probes if p.what == "GET /readyz"]
    assert health and all(p.status == 200 and p.elapsed < 3 for p in health), health
    assert ready and all(p.status == 503 and not p.problem for p in ready), ready


def test_no_500_and_no_hang_at_any_time(outage: OutageRecord) -> None:
    """Around both outages, a busy client sees only 200 or a quick 503, never a 500."""
    probes = outage.background
    assert len(probes) > 50
    wrong = [p for p in probes if p.status not in (200, 503) or p.elapsed > 5.0 or p.problem]
    assert not wrong, f"{len(wrong)} bad answers, e.g. {wrong[:8]}\n{outage.logs[-3000:]}"
    # Before the first outage and after the last one, everything answered 200.
    assert [p.status for p in probes if p.at < outage.down_at - 0.5][-5:] == [200] * 5
    assert [p.status for p in probes if p.at > outage.bounce_at + 10][-5:] == [200] * 5


def test_api_recovers_without_a_restart(outage: OutageRecord) -> None:
    assert outage.recovered_after is not None and outage.recovered_after < 10


def test_every_job_succeeds_after_the_outage(outage: OutageRecord) -> None:
    assert outage.timed_out is None, outage.jobs
    assert len(outage.jobs) == N_JOBS + sum(  # the POST probes could not queue anything
        1 for p in outage.outage_probes if p.what == "POST /v1/jobs" and p.status == 202
    )
    not_ok = {k: v for k, v in outage.jobs.items() if v[0] != "succeeded"}
    assert not not_ok, f"jobs that did not succeed: {not_ok}"
    assert max(attempt for _, attempt, _ in outage.jobs.values()) <= 3


def test_no_job_stays_running_past_its_lease(outage: OutageRecord) -> None:
    assert not outage.stale_running, (
        f"jobs seen running more than a lease after it expired: {outage.stale_running[:5]}"
    )


def test_both_workers_recover_without_a_restart(outage: OutageRecord) -> None:
    assert outage.workers_alive == [True, True]
    idle = [pid for pid, n in outage.claims_after_restart.items() if n == 0]
    assert not idle, f"workers idle after the restart: {outage.claims_after_restart}"


# --- uploads under faults: a failed write, an outage while storing, a SIGKILLed API ----------


class SlowBody:
    """A multipart body the test controls: it sends `first` bytes, then waits to be released."""

    BOUNDARY = "rl-hardening-boundary"

    def __init__(self, payload: bytes, first: int) -> None:
        self.payload = payload
        self.first = first
        self.sent_first = threading.Event()
        self.release = threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        yield (
            f'--{self.BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
            'filename="big.csv"\r\nContent-Type: text/csv\r\n\r\n'
        ).encode()
        step = 64 * 1024
        for offset in range(0, len(self.payload), step):
            if offset >= self.first and not self.sent_first.is_set():
                self.sent_first.set()
                if not self.release.wait(120):
                    return
            yield self.payload[offset : offset + step]
        yield f"\r\n--{self.BOUNDARY}--\r\n".encode()


class Upload(threading.Thread):
    """One POST /v1/datasets in the background, its answer (or transport error) recorded."""

    def __init__(self, server: Server, body: bytes | SlowBody) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.body = body
        self.response: httpx.Response | None = None
        self.error: str | None = None
        self.elapsed = 0.0

    def run(self) -> None:
        started = time.monotonic()
        with _client(self.server, self.server.new_key(), timeout=120) as client:
            try:
                if isinstance(self.body, SlowBody):
                    self.response = client.post(
                        "/v1/datasets",
                        content=iter(self.body),
                        headers={
                            "Content-Type": f"multipart/form-data; boundary={SlowBody.BOUNDARY}"
                        },
                    )
                else:
                    self.response = client.post(
                        "/v1/datasets", files={"file": ("big.csv", self.body)}
                    )
            except httpx.HTTPError as exc:
                self.error = repr(exc)
        self.elapsed = time.monotonic() - started


@dataclass
class Answer:
    status: int | None
    problem: list[str]
    retry_after: str | None
    text: str

    @classmethod
    def of(cls, response: httpx.Response | None) -> Answer:
        if response is None:
            return cls(None, ["no response"], None, "")
        return cls(
            response.status_code,
            _problem_shape(response) if response.status_code >= 400 else [],
            response.headers.get("retry-after"),
            response.text[:500],
        )


EMPTY = {"datasets": 0, "blobs": 0, "blob_chunks": 0}


@dataclass
class UploadRecord:
    # 1. a chunk insert fails (a trigger refuses the third chunk)
    failed_write: Answer | None = None
    after_failed_write: dict[str, int] = field(default_factory=dict)
    temp_after_failed_write: list[str] = field(default_factory=list)
    retry_after_fix: Answer | None = None
    # 2. Postgres stops while an upload's chunks are being stored
    during_outage: Answer | None = None
    outage_answered_in: float | None = None
    after_outage: dict[str, int] = field(default_factory=dict)
    temp_after_outage: list[str] = field(default_factory=list)
    # 3. SIGKILL of the API with one upload streaming in and one being stored
    killed_while_storing: bool = False
    at_kill: dict[str, int] = field(default_factory=dict)
    temp_after_kill: list[str] = field(default_factory=list)
    # 4. a worker with RIDGELINE_STALE_UPLOAD_SECONDS=1 and a new API on the same temp folder
    final: dict[str, int] = field(default_factory=dict)
    reaped_in: float | None = None
    temp_after_restart: list[str] = field(default_factory=list)
    logs: str = ""


def _leftovers(folder: Path) -> list[str]:
    """Files under the API's temp folder, but for the lock a live process holds on its own."""
    return sorted(
        str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != LOCK_NAME
    )


def _incomplete_blobs_with_chunks(url: str, at_least: int) -> set[str]:
    rows = execute(
        url,
        "SELECT b.id FROM blobs b JOIN blob_chunks c ON c.blob_id = b.id "
        "WHERE NOT b.complete GROUP BY b.id HAVING count(*) >= :n",
        n=at_least,
    )
    return {str(r[0]) for r in rows}


@pytest.fixture(scope="module")
def uploads(pg_cluster: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> UploadRecord:
    record = UploadRecord()
    url = pg_cluster.create_database()
    upgrade(url)
    work = tmp_path_factory.mktemp("uploads")
    scratch = Path(tempfile.mkdtemp(prefix="ridgeline-api-tmp-"))
    env = {"RIDGELINE_BLOB_CHUNK_BYTES": str(SMALL_CHUNK), "RIDGELINE_TMP_DIR": str(scratch)}
    big = _csv_bytes(30_000)  # about 1 MB of Parquet: 15 chunks of 64 KiB
    server = start_server(url, work, worker=False, **env)
    second: Server | None = None
    worker: subprocess.Popen[str] | None = None
    stalled: SlowBody | None = None
    try:
        # 1. A failed write in the middle of storing.
        _install(url, FAIL_THIRD_CHUNK_SQL)
        with _client(server, server.new_key()) as client:
            record.failed_write = Answer.of(
                client.post("/v1/datasets", files={"file": ("big.csv", big)})
            )
            record.after_failed_write = upload_counts(url)
            record.temp_after_failed_write = _leftovers(scratch)
            _drop_trigger(url, "rl_fail_chunk")
            retry = client.post("/v1/datasets", files={"file": ("big.csv", big)})
            record.retry_after_fix = Answer.of(retry)
            if retry.status_code == 201:
                client.delete(f"/v1/datasets/{retry.json()['id']}")

        # 2. Postgres stops while chunks are being stored (slowly, thanks to a trigger).
        _install(url, SLOW_CHUNKS_SQL)
        upload = Upload(server, big)
        upload.start()
        wait_for(
            lambda: _incomplete_blobs_with_chunks(url, 2),
            timeout=60,
            message="chunks of the upload to arrive",
        )
        pg_cluster.stop(mode="fast")
        stopped = time.monotonic()
        upload.join(timeout=30)
        if not upload.is_alive():
            record.outage_answered_in = time.monotonic() - stopped
        pg_cluster.start()
        upload.join(timeout=30)
        record.during_outage = Answer.of(upload.response)
        record.after_outage = upload_counts(url)
        record.temp_after_outage = _leftovers(scratch)
        left_by_outage = _incomplete_blobs_with_chunks(url, 1)

        # 3. SIGKILL with one upload half streamed and another one half stored.
        stalled = SlowBody(_csv_bytes(30_000, seed=2), first=512 * 1024)
        streaming, storing = Upload(server, stalled), Upload(server, _csv_bytes(30_000, seed=3))
        streaming.start()
        storing.start()
        assert stalled.sent_first.wait(60)
        wait_for(
            lambda: _incomplete_blobs_with_chunks(url, 2) - left_by_outage,
            timeout=60,
            message="chunks of the second upload to arrive",
        )
        wait_for(
            lambda: any(
                p.is_file() and p.stat().st_size >= 256 * 1024
                for p in scratch.rglob("ridgeline-upload-*")
            ),
            timeout=30,
            message="the API to write the streaming upload to its temp file",
        )
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=10)
        stalled.release.set()
        record.killed_while_storing = bool(_incomplete_blobs_with_chunks(url, 2) - left_by_outage)
        _drop_trigger(url, "rl_slow_chunk")
        record.at_kill = upload_counts(url)
        record.temp_after_kill = _leftovers(scratch)

        # 4. Housekeeping reaps incomplete blobs; a new API starts on the same temp folder.
        worker = start_worker(
            url, work / "w", work / "worker.log", RIDGELINE_STALE_UPLOAD_SECONDS="1", **env
        )
        started = time.monotonic()
        (work / "again").mkdir()
        second = start_server(url, work / "again", worker=False, **env)
        with contextlib.suppress(AssertionError):
            wait_for(lambda: upload_counts(url) == EMPTY, timeout=60, interval=0.5)
            record.reaped_in = time.monotonic() - started
        record.final = upload_counts(url)
        with contextlib.suppress(AssertionError):
            wait_for(lambda: not _leftovers(scratch), timeout=3, interval=0.25)
        record.temp_after_restart = _leftovers(scratch)
    finally:
        if stalled is not None:
            stalled.release.set()
        if not pg_cluster.running:
            pg_cluster.start()
        with contextlib.suppress(Exception):
            _drop_trigger(url, "rl_slow_chunk")
            _drop_trigger(url, "rl_fail_chunk")
        record.logs = server.logs()[-4000:]
        _kill(server.process)
        for process in (worker, second.process if second else None):
            if process is not None:
                stop_process(process)
        shutil.rmtree(scratch, ignore_errors=True)
    return record


def test_a_failed_chunk_write_leaves_no_dataset_and_no_chunk(uploads: UploadRecord) -> None:
    answer = uploads.failed_write
    assert answer is not None and answer.status is not None and answer.status >= 500, answer
    assert not answer.problem, answer
    assert uploads.after_failed_write == EMPTY
    assert uploads.temp_after_failed_write == []
    # Nothing was poisoned: the same upload succeeds once the fault is gone.
    assert uploads.retry_after_fix is not None and uploads.retry_after_fix.status == 201


def test_an_outage_while_storing_answers_503_at_once_and_leaves_no_dataset(
    uploads: UploadRecord,
) -> None:
    answer = uploads.during_outage
    assert uploads.outage_answered_in is not None, "the upload hung while the database was away"
    assert uploads.outage_answered_in < 10
    assert answer is not None and answer.status == 503, answer
    assert not answer.problem and answer.retry_after, answer
    assert uploads.after_outage["datasets"] == 0, uploads.after_outage
    assert uploads.temp_after_outage == []


def test_killing_the_api_mid_upload_leaves_no_rows(uploads: UploadRecord) -> None:
    # The kill really hit an upload being stored: an incomplete blob with chunks was left.
    assert uploads.killed_while_storing, uploads.at_kill
    assert uploads.at_kill["datasets"] == 0 and uploads.at_kill["blob_chunks"] >= 2
    assert uploads.final == EMPTY, f"{uploads.final}\n{uploads.logs}"


def test_housekeeping_reaps_incomplete_blobs_promptly(uploads: UploadRecord) -> None:
    assert uploads.reaped_in is not None and uploads.reaped_in < 30, uploads.final


def test_killing_the_api_mid_upload_leaves_no_temp_files_after_a_restart(
    uploads: UploadRecord,
) -> None:
    assert uploads.temp_after_kill, "the scenario should have left temp files behind"
    assert uploads.temp_after_restart == [], uploads.temp_after_restart
