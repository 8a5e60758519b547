"""Settings validate themselves: unsafe or malformed configurations never start."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.config import Settings


def test_auth_can_be_disabled_only_on_loopback() -> None:
    assert Settings(auth="disabled", host="127.0.0.1").auth == "disabled"
    assert Settings(auth="disabled", host="::1").auth == "disabled"
    with pytest.raises(ValidationError, match="loopback"):
        Settings(auth="disabled", host="0.0.0.0")


def test_postgres_url_must_name_the_driver() -> None:
    with pytest.raises(ValidationError, match="psycopg"):
        Settings(database_url="postgresql://u@h/db")


def test_default_is_a_sqlite_file_under_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RIDGELINE_DATABASE_URL", raising=False)
    settings = Settings()
    assert settings.is_sqlite and settings.database_url.endswith("data/ridgeline.db")
    assert settings.max_upload_bytes == 1 << 30


def test_environment_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RIDGELINE_MAX_COLUMNS", "7")
    assert Settings().max_columns == 7
