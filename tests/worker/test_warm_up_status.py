"""`ridgeline serve` says that its worker is warming up, for about how long, and when it is
ready: in the banner and in /readyz (which answers 200 meanwhile: jobs are accepted and queue)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.conftest import free_port, stop_process, wait_for
from tests.worker.test_interrupt import alive, start_held


def _readyz(base: str) -> dict[str, Any] | None:
    try:
        response = httpx.get(f"{base}/readyz", timeout=5)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def test_banner_and_readyz_say_the_worker_is_warming_then_ready(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process, forkserver = start_held(["serve", "--port", str(port)], tmp_path)
    stdout = tmp_path / "stdout.txt"
    try:
        ready = wait_for(lambda: _readyz(base), timeout=60, message="/readyz")
        assert "Worker:     warming up (first start:" in stdout.read_text()
        (worker,) = ready["workers"]
        assert worker["state"] == "warming" and worker["warming_for_seconds"] >= 0
        assert worker["expected_seconds"] is None  # no warm-up has ended here yet
        assert ready["message"].startswith("the worker is warming up (")
        assert "jobs wait queued until it is ready" in ready["message"]

        with (tmp_path / "hold").open("w"):  # let the warm-up finish
            pass
        wait_for(
            lambda: "Worker:     ready (warmed up in" in stdout.read_text(),
            timeout=120,
            message="the worker's ready line",
        )
        after = _readyz(base)
        assert after is not None and "message" not in after
        assert [w["state"] for w in after["workers"]] == ["ready"]
        assert after["workers"][0]["warm_up_seconds"] > 0
    finally:
        stop_process(process)
    wait_for(lambda: not alive(forkserver), timeout=30, message="the forkserver to end")
    # The next start knows about how long the warm-up takes; the stopped worker's file is gone.
    assert (tmp_path / "data" / "workers" / "last-warm-up.json").exists()
    assert sorted(p.name for p in (tmp_path / "data" / "workers").iterdir()) == [
        "last-warm-up.json"
    ]
