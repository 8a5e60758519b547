"""`ridgeline serve` as a new user meets it: first start, offline docs, schema checks."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    REPO,
    cli_env,
    create_pg_database,
    drop_pg_database,
    free_port,
    stop_process,
    wait_for,
)


def test_first_start_prints_docs_url_and_a_working_key(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    env = cli_env(f"sqlite:///{tmp_path}/data/ridgeline.db")
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: "API key:" in log.read_text(), timeout=60, message="the first key")
        output = log.read_text()
        assert f"{base}/docs" in output
        assert f"Dashboard:  {base}/" in output
        key = re.search(r"API key:\s+(\S+)", output).group(1)  # type: ignore[union-attr]
        wait_for(lambda: _ready(base), timeout=60, message="readiness")
        headers = {"Authorization": f"Bearer {key}"}
        assert httpx.get(f"{base}/v1/datasets", headers=headers).status_code == 200

        docs = httpx.get(f"{base}/docs").text
        redoc = httpx.get(f"{base}/redoc").text
        for page in (docs, redoc):
            assert not re.search(r"(src|href)=\"https?://", page), "docs must not use a CDN"
            for asset in re.findall(r"(?:src|href)=\"(/[^\"]+)\"", page):
                assert httpx.get(base + asset).status_code == 200, asset
        assert "fonts.googleapis" not in redoc
        assert httpx.get(f"{base}/openapi.json").json()["info"]["title"] == "Ridgeline"
    finally:
        stop_process(process)
    # Exactly one key was made, and only its hash and prefix are listed.
    second = subprocess.run(
        [sys.executable, "-m", "service.cli", "keys", "list"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.stdout.count("active") == 1 and key not in second.stdout


def test_a_taken_port_is_refused_before_the_first_key_is_made(tmp_path: Path) -> None:
    env = cli_env(f"sqlite:///{tmp_path}/data/ridgeline.db")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = subprocess.run(
            [sys.executable, "-m", "service.cli", "serve", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert refused.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in refused.stderr
    assert "make serve PORT=" in refused.stderr
    assert "API key" not in refused.stdout
    keys = subprocess.run(
        [sys.executable, "-m", "service.cli", "keys", "list"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "active" not in keys.stdout  # the one-time key is still to be made, on a good start


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_postgres_behind_head_refuses_to_start() -> None:
    url = create_pg_database()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "service.cli", "serve", "--port", str(free_port())],
            env=cli_env(url),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode != 0
        assert "ridgeline migrate" in result.stderr + result.stdout
    finally:
        drop_pg_database(url)


@pytest.mark.parametrize("host", ["0.0.0.0"])
def test_auth_disabled_off_loopback_refuses(host: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "serve", "--host", host, "--port", "1"],
        env=cli_env("sqlite:////tmp/unused.db", RIDGELINE_AUTH="disabled"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "loopback" in result.stderr


def test_connections_to_the_listener_send_small_writes_at_once() -> None:
    """Nagle off on accepted connections: with it, a keep-alive response's body waited for the
    client's delayed ACK, 40 ms on every request after a connection's first."""
    import asyncio

    from service.cli import _bind

    listener = _bind("127.0.0.1", 0)
    seen: list[int] = []

    async def main() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(handle, sock=listener)
        async with server:
            port = listener.getsockname()[1]
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            while not seen:
                await asyncio.sleep(0.01)
            writer.close()

    asyncio.run(asyncio.wait_for(main(), timeout=30))
    assert seen and seen[0] != 0
