"""Settings come only from here: environment variables prefixed RIDGELINE_, validated at start."""

from __future__ import annotations

import ipaddress
import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

logger = logging.getLogger("ridgeline.config")

GiB = 1 << 30
MiB = 1 << 20

DEFAULT_DATA_DIR = Path("data")


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (the condition for running without auth)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    """Every knob of the service, read once from RIDGELINE_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="RIDGELINE_", env_file=None, extra="ignore")

    data_dir: Path = Field(DEFAULT_DATA_DIR, description="Where the embedded SQLite file lives.")
    database_url: str = Field(
        "",
        description="SQLAlchemy URL; empty means a SQLite file under data_dir. "
        "Postgres: postgresql+psycopg://user@host:5432/db",
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    auth: Literal["required", "disabled"] = "required"

    max_upload_bytes: int = Field(1 * GiB, ge=1)
    max_columns: int = Field(1000, ge=1)
    max_rows: int = Field(50_000_000, ge=1)
    max_concurrent_ingests: int = Field(
        4, ge=1, description="Uploads parsed and stored at once per API process; others wait."
    )
    n_unique_cap: int = Field(10_000, ge=1, description="Distinct values counted exactly.")
    max_cell_bytes: int = Field(
        1 * MiB, ge=1024, description="Longest text value of one cell an upload may hold."
    )
    max_row_group_bytes: int = Field(
        1 * GiB, ge=MiB, description="Largest decompressed size of one Parquet row group."
    )
    max_decompressed_bytes: int = Field(
        8 * GiB, ge=MiB, description="Largest decompressed size of a whole Parquet upload."
    )
    ingest_memory_mb: int = Field(
        2048,
        ge=0,
        description="RLIMIT_DATA of the child process that parses one upload; 0 no limit.",
    )
    blob_chunk_bytes: int = Field(4 * MiB, ge=64 * 1024, le=64 * MiB)
    blob_store: str = Field(
        "database",
        description="Where new blobs go: 'database' (chunked rows), 's3://bucket/prefix' or "
        "'file:///path' (a shared volume). Old blobs stay readable where they were written.",
    )
    s3_endpoint_url: str = Field(
        "", description="S3-compatible endpoint (MinIO, SeaweedFS, Ceph, R2); empty: AWS."
    )
    s3_region: str = Field("", description="S3 region; empty: AWS_DEFAULT_REGION or us-east-1.")
    import_allowed_s3_prefixes: list[str] = Field(
        default_factory=list,
        description="s3://bucket/prefix URIs under which datasets may be imported; empty: none.",
    )
    import_allowed_roots: list[str] = Field(
        default_factory=list,
        description="Directories (file:///path) datasets may be imported from; empty: none.",
    )
    max_import_parts: int = Field(10_000, ge=1, description="Most parts one import may name.")
    tmp_dir: Path | None = Field(
        None,
        description="Scratch space for uploads (system default): each API process keeps a "
        "folder of its own there and, on start, removes those left by processes that died.",
    )

    sqlite_busy_timeout_ms: int = Field(30_000, ge=0)
    key_cache_seconds: float = Field(2.0, ge=0, description="How long a verified key is trusted.")

    worker_concurrency: int = Field(1, ge=1, le=64, description="Jobs one worker runs at once.")
    worker_threads: int = Field(
        0, ge=0, description="BLAS/torch threads per job; 0 shares the cores among the jobs."
    )
    worker_poll_seconds: float = Field(
        5.0,
        gt=0,
        description="Fallback poll of an idle worker; new jobs wake it at once (Postgres "
        "LISTEN/NOTIFY, a commit watch on SQLite).",
    )
    plugins: list[str] = Field(
        default_factory=list,
        description="Modules every API process, worker and training child imports at start: "
        "each may register a model kind (service.training.kinds.registry.register).",
    )
    worker_plugins: list[str] = Field(
        default_factory=list, description="Modules that register extra trainers (tests, bench)."
    )
    lease_seconds: float = Field(30.0, ge=1, description="A running attempt's lease length.")
    max_attempts: int = Field(3, ge=1)
    shutdown_grace_seconds: float = Field(30.0, ge=0)
    child_memory_mb: int = Field(8192, ge=0, description="RLIMIT_DATA of a training child; 0 off.")
    quick_warm_up: bool = Field(
        True,
        description="Start jobs on a quick forkserver (without the warm-up of the kinds whose "
        "first fit is slow) while the full one warms up; off, a worker warms one forkserver and "
        "starts jobs once it is ready (the second server's imports cost ~5 s of CPU per start).",
    )
    spark_master: str = Field(
        "",
        description="Spark master of the 'spark' engine: 'local[N]' or 'spark://host:7077'; "
        "empty turns the engine off (engine 'spark' is then a 422, 'auto' always runs locally).",
    )
    spark_conf: dict[str, str] = Field(
        default_factory=dict,
        description='Extra Spark configuration as a JSON object, e.g. {"spark.driver.memory": '
        '"4g", "spark.hadoop.fs.s3a.endpoint": "http://minio:9000"}.',
    )
    spark_threshold_bytes: int = Field(
        4 * GiB,
        ge=0,
        description="Engine 'auto' runs on Spark (when a master is set) once a dataset's "
        "estimated in-memory size exceeds this or the child memory limit.",
    )
    dataset_cache_bytes: int = Field(10 * GiB, ge=0)

    max_epochs: int = Field(10_000, ge=1)
    max_queued_jobs_per_tenant: int = Field(1000, ge=1)
    max_running_jobs_per_tenant: int = Field(
        0, ge=0, description="Jobs of one tenant running at once across workers; 0 no limit."
    )
    tenant_quota_bytes: int = Field(50 * GiB, ge=0, description="Stored bytes per tenant; 0 off.")
    stale_upload_seconds: float = Field(
        3600, gt=0, description="Age after which a half-written blob (crashed upload) is removed."
    )
    max_sweep_trials: int = Field(500, ge=1)
    max_predict_rows: int = Field(10_000, ge=1)
    max_classes: int = Field(100, ge=2)
    max_mlp_parameters: int = Field(20_000_000, ge=1)
    default_max_seconds: int = Field(3600, ge=1)
    max_job_seconds: int = Field(24 * 3600, ge=1)
    log_level: str = "INFO"
    json_logs: bool = Field(True, description="One JSON object per log line; false: plain text.")
    metrics_token: str = Field(
        "", description="If set, GET /metrics requires 'Authorization: Bearer <token>'."
    )
    worker_metrics_port: int = Field(
        0, ge=0, le=65535, description="Port of a worker's own /metrics; 0 turns it off."
    )
    worker_metrics_host: str = Field("127.0.0.1", description="Address worker metrics bind.")
    rate_limit_per_minute: int = Field(
        600, ge=0, description="Requests a minute per API key on /v1, per API process; 0 off."
    )
    auth_failures_per_minute: int = Field(
        60,
        ge=0,
        description="Failed authentications (unknown, revoked or signed-out credentials) a "
        "minute per client address, per API process, before 429; 0 off.",
    )
    max_request_bytes: int = Field(32 * MiB, ge=1024, description="Largest non-upload body.")
    max_json_depth: int = Field(32, ge=2, le=512, description="Deepest JSON nesting accepted.")
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins CORS allows; empty turns CORS off."
    )
    session_secret: SecretStr = Field(
        SecretStr(""),
        description="Signs dashboard session cookies; set it when several API processes serve "
        "one site, or sessions should outlive a restart.",
    )
    session_seconds: int = Field(43200, ge=60)

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'ridgeline.db').as_posix()}"
        if self.database_url.startswith(("postgres://", "postgresql://")):
            raise ValueError(
                "RIDGELINE_DATABASE_URL must name the psycopg driver: "
                "postgresql+psycopg://user@host:5432/dbname"
            )
        if self.auth == "disabled" and not is_loopback(self.host):
            raise ValueError(
                f"RIDGELINE_AUTH=disabled is allowed only on a loopback address, not {self.host}; "
                "bind to 127.0.0.1 or create a key with `ridgeline keys create`"
            )
        return self

    @property
    def threads_per_job(self) -> int:
        if self.worker_threads:
            return self.worker_threads
        return max(1, (os.cpu_count() or 1) // self.worker_concurrency)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    alias_cache_seconds: float = Field(
        1.0,
        ge=0,
        description="How long an API process may serve name@alias from what it last read; 0 "
        "reads the alias on every request. A move also clears it at once (alias_listen).",
    )
    alias_listen: bool = Field(
        True,
        description="Each API process listens for alias moves (Postgres LISTEN, SQLite commit "
        "watch) and drops its cached aliases; false leaves only the expiry (e.g. behind a "
        "Postgres pooler in transaction mode, where LISTEN does not work).",
    )

    event_listen: bool = Field(
        True,
        description="Each API process listens for job events as they commit (Postgres LISTEN, "
        "SQLite commit watch), so an event stream passes them on at once; false: streams look "
        "every 0.25 s (e.g. behind a Postgres pooler in transaction mode).",
    )

    onnx_cache_bytes: int = Field(
        64 * MiB, ge=0, description="Exported ONNX models kept in memory per API process."
    )
    callback_allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names a job's callback_url may name; empty refuses callbacks.",
    )
    callback_secret: SecretStr = Field(
        SecretStr(""), description="HMAC-SHA256 key that signs every callback."
    )
    callback_max_attempts: int = Field(5, ge=1, le=30)
    callback_backoff_seconds: float = Field(
        1.0, gt=0, description="Wait before the first retry; doubled after each failure."
    )
    callback_timeout_seconds: float = Field(10.0, gt=0, le=300)
    outbound_allow_loopback: bool = Field(
        False,
        description="Let outbound requests (callbacks) reach loopback addresses: for tests and "
        "single-machine set-ups.",
    )
    outbound_allowed_networks: list[str] = Field(
        default_factory=list,
        description="Networks (CIDR) that outbound requests may reach although they are not "
        'public, e.g. ["10.20.0.0/16"]; everything else private, link-local or reserved is '
        "refused.",
    )

    @field_validator("outbound_allowed_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError as exc:
                raise ValueError(
                    f"RIDGELINE_OUTBOUND_ALLOWED_NETWORKS: {network!r} is not a network such "
                    "as 10.20.0.0/16"
                ) from exc
        return value


@lru_cache
def get_settings() -> Settings:
    return Settings()
