"""`ridgeline datasets list` and the other client commands load only what they need."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: The service's own settings and database layers: the admin commands need them, the client
#: commands talk HTTP and need neither (pydantic-settings alone costs a tenth of a second).
NOT_FOR_CLIENT_COMMANDS = ["pydantic_settings", "service.config", "service.db", "service.errors"]


def _modules_after(statement: str) -> set[str]:
    """The modules a fresh interpreter holds once it has run ``statement``."""
    code = f"{statement}; import json, sys; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout))


def test_the_ridgeline_command_loads_no_settings_or_database_until_a_command_needs_them() -> None:
    loaded = _modules_after("import service.cli")
    assert "service.client.cli" in loaded
    assert loaded.isdisjoint(NOT_FOR_CLIENT_COMMANDS), loaded & set(NOT_FOR_CLIENT_COMMANDS)


def test_an_admin_command_still_finds_its_settings(tmp_path: Path) -> None:
    """The lazy imports still load: `keys list` reads the settings and opens the database."""
    env = {"RIDGELINE_DATABASE_URL": f"sqlite:///{(tmp_path / 'r.db').as_posix()}", "PATH": ""}
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "keys", "list"],
        cwd=REPO, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "name" in result.stdout and "tenant" in result.stdout
