"""Shared fixtures: a real SQLite file and a real Postgres database, migrations applied, and
real servers (uvicorn on a free loopback port) shared per test session."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session

from service.auth.service import create_key
from service.config import Settings
from service.db import Database
from service.migrate import upgrade
from tests.support import create_pg_database, drop_pg_database, free_port, wait_for

REPO = Path(__file__).resolve().parent.parent
BACKENDS = ["sqlite", "postgres"]


def new_database_url(backend: str, tmp_dir: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{(tmp_dir / f'ridgeline-{uuid.uuid4().hex[:8]}.db').as_posix()}"
    return create_pg_database()


def dispose_database_url(url: str) -> None:
    if url.startswith("postgresql"):
        drop_pg_database(url)


@pytest.fixture(scope="session", autouse=True)
def _schemathesis_keeps_its_cache_in_a_temp_folder(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """schemathesis writes ./.schemathesis by default; a test run leaves the work tree clean."""
    storage = sys.modules.get("schemathesis.core.storage")  # imported at collection, if at all
    if storage is not None:
        storage.DEFAULT_ROOT = tmp_path_factory.mktemp("schemathesis")  # type: ignore[attr-defined]


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def database_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One migrated database per backend for the whole session."""
    url = new_database_url(backend, tmp_path_factory.mktemp(backend))
    upgrade(url)
    yield url
    dispose_database_url(url)


@pytest.fixture(scope="session")
def db(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """A migrated database for direct tests, apart from the shared server's (whose worker would
    otherwise see, claim or reap what these tests write)."""
    url = new_database_url(backend, tmp_path_factory.mktemp(f"direct-{backend}"))
    upgrade(url)
    database = Database(Settings(database_url=url, data_dir=tmp_path_factory.mktemp("data")))
    yield database
    database.dispose()
    dispose_database_url(url)


@pytest.fixture
def session(db: Database) -> Iterator[Session]:
    """A session inside a transaction that is rolled back after the test."""
    with db.engine.connect() as connection:
        outer = connection.begin()
        with Session(bind=connection, join_transaction_mode="create_savepoint") as sess:
            yield sess
        outer.rollback()


def cli_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIDGELINE_")}
    env.update(
        {
            "RIDGELINE_DATABASE_URL": database_url,
            "RIDGELINE_LOG_LEVEL": "WARNING",
            # Tests poll fast from one key on a loaded machine; rate limits have their own tests.
            "RIDGELINE_RATE_LIMIT_PER_MINUTE": "60000",
            "RIDGELINE_AUTH_FAILURES_PER_MINUTE": "60000",
            # One forkserver per worker: the quick one's extra imports cost each start ~5 s of
            # CPU; tests/worker/test_warm_up_status.py turns it back on.
            "RIDGELINE_QUICK_WARM_UP": "false",
        }
    )
    env.update(extra)
    return env


def run_cli(
    database_url: str, *args: str, check: bool = True, **env: str
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        env=cli_env(database_url, **env),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"ridgeline {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        )
    return result


@dataclass
class Server:
    """A real `ridgeline serve` process on a free loopback port."""

    base_url: str
    database_url: str
    process: subprocess.Popen[str]
    log_path: Path

    def new_key(self, tenant: str | None = None) -> str:
        """A key of a fresh tenant (or the one named), made with the code the CLI uses."""
        database = Database(Settings(database_url=self.database_url))
        try:
            with database.transaction() as session:
                _, key = create_key(session, name=f"k-{uuid.uuid4().hex[:10]}", tenant_id=tenant)
        finally:
            database.dispose()
        return key

    def new_tenant(self) -> tuple[str, str]:
        """A key and the id of its fresh tenant."""
        tenant = f"t-{uuid.uuid4().hex[:12]}"
        return self.new_key(tenant), tenant

    def client(self, key: str | None = None, **kwargs) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=60, **kwargs)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(database_url: str, log_dir: Path, *, worker: bool = False, **env: str) -> Server:
    port = free_port()
    log_path = log_dir / f"server-{port}.log"
    log = log_path.open("w")
    args = [sys.executable, "-m", "service.cli", "serve", "--port", str(port)]
    if not worker:
        args.append("--no-worker")
    process = subprocess.Popen(
        args,
        env=cli_env(database_url, **env),
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
    )
    server = Server(f"http://127.0.0.1:{port}", database_url, process, log_path)

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"server exited early:\n{server.logs()}")
        try:
            return httpx.get(f"{server.base_url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, timeout=60, message="the server to become ready")
    return server


def stop_process(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One API server per backend for the session; tests isolate themselves by tenant."""
    srv = start_server(
        database_url,
        tmp_path_factory.mktemp("server"),
        RIDGELINE_MAX_UPLOAD_BYTES=str(8 << 20),
        RIDGELINE_MAX_COLUMNS="200",
    )
    yield srv
    stop_process(srv.process)


@pytest.fixture(scope="session")
def peer(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A second API process on the shared server's database, with the default limits: for what
    several processes must agree on (revoked keys, moved aliases) and for the default limits."""
    srv = start_server(server.database_url, tmp_path_factory.mktemp("peer"))
    yield srv
    stop_process(srv.process)


@pytest.fixture
def api(server: Server) -> Iterator[httpx.Client]:
    """A client authenticated with a key of a fresh tenant."""
    with server.client(server.new_key()) as client:
        yield client


@pytest.fixture(scope="module")
def module_api(server: Server) -> Iterator[httpx.Client]:
    """A client of a fresh tenant shared by one module's tests, for what they train once."""
    with server.client(server.new_key()) as client:
        yield client


WORKER_ENV = {
    "RIDGELINE_LEASE_SECONDS": "4",
    "RIDGELINE_WORKER_POLL_SECONDS": "1",
    "RIDGELINE_SHUTDOWN_GRACE_SECONDS": "2",
    "RIDGELINE_WORKER_PLUGINS": '["tests.worker.fault_trainers"]',
    "RIDGELINE_CHILD_MEMORY_MB": "2048",
}


def start_worker(
    database_url: str, data_dir: Path, log_path: Path, **env: str
) -> subprocess.Popen[str]:
    log = log_path.open("a")
    return subprocess.Popen(
        [sys.executable, "-m", "service.cli", "worker"],
        env=cli_env(database_url, RIDGELINE_DATA_DIR=str(data_dir), **{**WORKER_ENV, **env}),
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
    )


# What the modules of a test-only model kind and of callbacks give their own API process; the
# session worker has it too, so they need no worker of their own (each start costs ~5 s of CPU).
TEST_PLUGINS = '["tests.training.constant_kind"]'
CALLBACK_SECRET = "test-callback-secret"
CALLBACK_ENV: dict[str, Any] = {  # Any: spread into start_server(**env)
    "RIDGELINE_CALLBACK_ALLOWED_HOSTS": '["127.0.0.1"]',
    "RIDGELINE_CALLBACK_SECRET": CALLBACK_SECRET,
    "RIDGELINE_CALLBACK_BACKOFF_SECONDS": "0.3",
    "RIDGELINE_CALLBACK_MAX_ATTEMPTS": "3",
    "RIDGELINE_CALLBACK_TIMEOUT_SECONDS": "5",
    "RIDGELINE_OUTBOUND_ALLOW_LOOPBACK": "true",
}


@pytest.fixture(scope="session")
def worker(
    server: Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[subprocess.Popen[str]]:
    """One real worker per backend for the session, beside the shared server: it trains the
    test-only kind and sends callbacks to loopback (the shared server accepts neither)."""
    work = tmp_path_factory.mktemp("worker")
    process = start_worker(
        server.database_url,
        work,
        work / "worker.log",
        RIDGELINE_PLUGINS=TEST_PLUGINS,
        **CALLBACK_ENV,
    )
    yield process
    stop_process(process)


def wait_for_job(
    client: httpx.Client,
    job_id: str,
    *,
    statuses=("succeeded", "failed", "cancelled"),
    timeout: float = 120,
) -> dict:
    def done():
        job = client.get(f"/v1/jobs/{job_id}").json()
        return job if job["status"] in statuses else None

    return wait_for(
        done, timeout=timeout, interval=0.1, message=f"job {job_id} to reach {statuses}"
    )


def insert_job(
    database_url: str, *, tenant: str, dataset_id: str, trainer: str = "default", **spec: Any
) -> str:
    """Queue a job the way the API does, but with an internal trainer (never reachable by HTTP)."""
    from service.jobs.schemas import JobCreate
    from service.jobs.service import create_job

    settings = Settings(database_url=database_url)
    database = Database(settings)
    try:
        with database.transaction() as session:
            body = JobCreate.model_validate({"dataset_id": dataset_id, "target": "y", **spec})
            job, _ = create_job(
                session, settings=settings, tenant_id=tenant, body=body, trainer=trainer
            )
            return str(job.id)
    finally:
        database.dispose()


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real S3-compatible server (SeaweedFS) for the session, started only when asked for.

    The process's AWS variables are set to the service identity's keys (obstore reads them),
    so stores made in tests and the servers they start reach it like a deployment would.
    """
    from tests.seaweed import SeaweedS3

    server = SeaweedS3(tmp_path_factory.mktemp("seaweed")).start()
    saved = {k: os.environ.get(k) for k in server.service_env()}
    os.environ.update({k: v for k, v in server.service_env().items() if k.startswith("AWS_")})
    yield server
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    server.stop()


TINY_CSV = b"x,y\n" + b"".join(f"{i},{i % 2}\n".encode() for i in range(40))


def upload_tiny(client: httpx.Client) -> str:
    response = client.post("/v1/datasets", files={"file": ("tiny.csv", TINY_CSV)})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])
