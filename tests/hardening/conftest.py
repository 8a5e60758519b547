"""Hardening helpers: a throwaway Postgres cluster the tests may stop and restart at will, and
small readers of the database that ask it directly (never through the service's own code)."""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import Server, free_port, upload_tiny, wait_for, wait_for_job


def _pg_bin_dir() -> Path | None:
    """The newest Postgres server binaries on this machine (initdb, pg_ctl), if any."""
    explicit = os.environ.get("RIDGELINE_TEST_PG_BIN")
    if explicit:
        return Path(explicit)
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
    )
    for candidate in reversed(candidates):
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


class PgCluster:
    """A Postgres cluster of the test's own: initdb into a temporary folder, trust auth, a free
    port on 127.0.0.1. Unlike the shared Postgres on 5432, it may be stopped and restarted."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = free_port()
        # Not under pytest's tmp_path: that is private to root, and as root the cluster must run
        # as the postgres OS user, who needs to reach its folder.
        self.root = Path(tempfile.mkdtemp(prefix="ridgeline-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self.running = False

    def _run(self, *args: str, check: bool = True, timeout: float = 60) -> str:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, cwd=self.root
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
                f"\n--- postgres log ---\n{self.server_log()}"
            )
        return result.stdout

    def server_log(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def init(self) -> None:
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--no-sync",
        )  # fmt: skip

    def start(self) -> None:
        options = (
            f"-k {self.root} -p {self.port} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30",
                  "-o", options, "start")  # fmt: skip
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "30", "-m", mode, "stop")
        self.running = False

    def destroy(self) -> None:
        if self.running or (self.data / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "20", "-m", "immediate",
                          "stop", check=False)  # fmt: skip
            self.running = False
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        name = f"rl_{uuid.uuid4().hex[:10]}"
        engine = create_engine(self.url(), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return self.url(name)


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[PgCluster]:
    """One throwaway cluster per module, stopped and removed whatever happens."""
    bin_dir = _pg_bin_dir()
    if bin_dir is None:
        pytest.skip("Postgres server binaries (initdb, pg_ctl) are not installed")
    cluster = PgCluster(bin_dir)
    atexit.register(cluster.destroy)  # even if the session is interrupted
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


def execute(url: str, sql: str, **params: Any) -> list[Any]:
    """Run one statement in its own short transaction, straight on the database."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(sql), params)
            return list(result.all()) if result.returns_rows else []
    finally:
        engine.dispose()


def upload_counts(url: str) -> dict[str, int]:
    """Rows an upload can leave: datasets, blobs (complete or not) and blob chunks."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                table: int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
                for table in ("datasets", "blobs", "blob_chunks")
            }
    finally:
        engine.dispose()


@dataclass
class TenantResources:
    """One tenant's dataset, succeeded linear job and sweep on a live server."""

    key: str
    tenant: str
    dataset_id: str
    job_id: str
    sweep_id: str
    spare_job_id: str  # a second succeeded job, for tests that spoil one

    @property
    def ids(self) -> dict[str, str]:
        return {"dataset_id": self.dataset_id, "job_id": self.job_id, "sweep_id": self.sweep_id}


SWEEP_BODY = {
    "target": "y",
    "search": {"penalty": ["l2"], "strength": [0.1]},
    "cv": {"folds": 2},
}


def make_resources(server: Server, *, wait_for_sweep: bool = False) -> TenantResources:
    """Upload the tiny table, train a linear job on it to success and start a sweep over it
    (needs a worker beside the server)."""
    key, tenant = server.new_tenant()
    with server.client(key) as client:
        dataset_id = upload_tiny(client)
        job = client.post("/v1/jobs", json={"dataset_id": dataset_id, "target": "y"})
        assert job.status_code == 202, job.text
        spare = client.post("/v1/jobs", json={"dataset_id": dataset_id, "target": "y"})
        assert spare.status_code == 202, spare.text
        sweep = client.post("/v1/sweeps", json={"dataset_id": dataset_id, **SWEEP_BODY})
        assert sweep.status_code == 202, sweep.text
        for queued in (job, spare):
            done = wait_for_job(client, queued.json()["id"], timeout=120)
            assert done["status"] == "succeeded", done
        if wait_for_sweep:
            wait_for(
                lambda: (
                    client.get(f"/v1/sweeps/{sweep.json()['id']}").json()["status"]
                    in ("succeeded", "failed", "cancelled")
                ),
                timeout=120,
                interval=0.2,
                message="the sweep to finish",
            )
    return TenantResources(
        key, tenant, dataset_id, job.json()["id"], sweep.json()["id"], spare.json()["id"]
    )
