"""Settings come only from here: environment variables prefixed RIDGELINE_, validated at start."""

from __future__ import annotations

import ipaddress
import logging
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
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
    n_unique_cap: int = Field(10_000, ge=1, description="Distinct values counted exactly.")
    blob_chunk_bytes: int = Field(4 * MiB, ge=64 * 1024, le=64 * MiB)
    tmp_dir: Path | None = Field(None, description="Scratch space for uploads; system default.")

    sqlite_busy_timeout_ms: int = Field(30_000, ge=0)
    key_cache_seconds: float = Field(2.0, ge=0, description="How long a verified key is trusted.")

    worker_poll_seconds: float = Field(1.0, gt=0)
    log_level: str = "INFO"

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
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    return Settings()
