"""`ridgeline serve` says that its worker is warming up, for about how long, and when it is
ready: in the banner and in /readyz (which answers 200 meanwhile: jobs are accepted and queue)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port, stop_process, upload_tiny, wait_for, wait_for_job
from tests.worker.test_interrupt import alive, start_held


def _readyz(base: str) -> dict[str, Any] | None:
    try:
        response = httpx.get(f"{base}/readyz", timeout=5)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


@pytest.mark.slow  # a fresh `serve` and a whole warm-up, 15-20 s
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
    # The next start knows about how long the warm-up takes; the stopped worker's file goes.
    folder = tmp_path / "data" / "workers"
    wait_for(
        lambda: sorted(p.name for p in folder.iterdir()) == ["last-warm-up.json"],
        timeout=30,
        message="only last-warm-up.json left",
    )


@pytest.mark.slow  # a fresh `serve` and a whole warm-up, 15-20 s
def test_a_linear_job_runs_while_the_mlp_warm_up_goes_on(tmp_path: Path) -> None:
    """The full forkserver (MLP warm-up) is held: a linear job still runs, an MLP job waits."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process, _ = start_held(
        ["serve", "--port", str(port)],
        tmp_path,
        RIDGELINE_TEST_HOLD_SERVER="full",
        RIDGELINE_WORKER_CONCURRENCY="2",
    )
    stdout = tmp_path / "stdout.txt"
    try:
        wait_for(
            lambda: "Worker:     ready (warmed up in" in stdout.read_text(),
            timeout=120,
            message="the quick forkserver",
        )
        key = re.search(r"API key:\s+(\S+)", stdout.read_text()).group(1)  # type: ignore[union-attr]
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as client:
            dataset = upload_tiny(client)
            posted = {}
            for kind in ("mlp", "linear"):
                body = {"dataset_id": dataset, "target": "y", "model": {"kind": kind}}
                if kind == "mlp":
                    body["model"] = {"kind": "mlp", "hidden_layers": [2], "epochs": 1}
                response = client.post("/v1/jobs", json=body)
                assert response.status_code == 202, response.text
                posted[kind] = response.json()["id"]
            linear = wait_for_job(client, posted["linear"], timeout=120)
            assert linear["status"] == "succeeded", linear
            # The MLP job cannot have run: its forkserver is still in its warm-up.
            assert client.get(f"/v1/jobs/{posted['mlp']}").json()["status"] in ("queued", "running")
            assert "ready for every kind" not in stdout.read_text()

            with (tmp_path / "hold").open("w"):  # let the MLP warm-up finish
                pass
            mlp = wait_for_job(client, posted["mlp"], timeout=120)
            assert mlp["status"] == "succeeded", mlp
            assert "Worker:     ready for every kind (warmed up in" in stdout.read_text()
    finally:
        stop_process(process)
