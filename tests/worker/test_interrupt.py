"""Ctrl-C while `ridgeline worker` or `ridgeline serve` warms up: one line, no traceback, and
nothing left running (the forkserver in the middle of its preload included).

A terminal's Ctrl-C sends SIGINT to the whole foreground process group, so the tests start each
command in a session of its own and signal its group. The warm-up is held open by a plugin
(tests/worker/hold_warm_up.py) so the signal lands in it for certain.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from service.migrate import upgrade
from tests.conftest import REPO, cli_env, free_port, stop_process, wait_for


def alive(pid: int) -> bool:
    """True while pid runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def start_held(command: list[str], tmp_path: Path, **env: str) -> tuple[subprocess.Popen[str], int]:
    """The command in a new session (output in tmp_path/stdout.txt and stderr.txt), once its
    forkserver is held in its warm-up; the forkserver's pid. Writing to tmp_path/hold lets the
    warm-up go on."""
    hold, warming = tmp_path / "hold", tmp_path / "warming"
    os.mkfifo(hold)
    url = f"sqlite:///{tmp_path}/data/ridgeline.db"
    (tmp_path / "data").mkdir()
    upgrade(url)
    environment = cli_env(
        url,
        **env,
        RIDGELINE_DATA_DIR=str(tmp_path / "data"),
        RIDGELINE_LOG_LEVEL="INFO",
        RIDGELINE_WORKER_PLUGINS='["tests.worker.hold_warm_up"]',
        RIDGELINE_TEST_HOLD_WARM_UP=str(hold),
        RIDGELINE_QUICK_WARM_UP="true",  # the two forkservers these tests hold
        RIDGELINE_TEST_WARMING=str(warming),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", *command],
        env=environment,
        cwd=REPO,
        stdout=(tmp_path / "stdout.txt").open("w"),
        stderr=(tmp_path / "stderr.txt").open("w"),
        text=True,
        start_new_session=True,
    )
    try:
        wait_for(
            lambda: warming.exists() and warming.read_text(),
            timeout=120,
            message="the forkserver's warm-up",
        )
    except BaseException:
        stop_process(process)
        raise
    return process, int(warming.read_text())


def _ctrl_c(process: subprocess.Popen[str], tmp_path: Path) -> str:
    """Ctrl-C as a terminal sends it; what the command wrote to stderr once it has ended."""
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=60)
    finally:
        stop_process(process)
    return (tmp_path / "stderr.txt").read_text()


@pytest.mark.slow  # a process held in its warm-up, 8-11 s
def test_ctrl_c_during_the_workers_warm_up_stops_it_with_one_line(tmp_path: Path) -> None:
    process, forkserver = start_held(["worker"], tmp_path)
    assert alive(forkserver)
    stderr = _ctrl_c(process, tmp_path)
    assert process.returncode == 128 + signal.SIGINT, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert stderr.splitlines()[-1] == "ridgeline worker: interrupted while starting; stopped"
    wait_for(lambda: not alive(forkserver), timeout=10, message="the forkserver to end")


@pytest.mark.slow  # a process held in its warm-up, 8-11 s
def test_ctrl_c_while_serves_worker_warms_up_stops_both_with_one_line(tmp_path: Path) -> None:
    port = free_port()
    process, forkserver = start_held(["serve", "--port", str(port)], tmp_path)
    stderr = _ctrl_c(process, tmp_path)
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    # The worker warms up while the API starts: after the API is up, uvicorn logs its own
    # shutdown too; serve says it was interrupted at most once and nothing else is said.
    assert stderr.count("ridgeline serve: interrupted") <= 1, stderr
    assert "ridgeline worker" not in stderr, stderr
    wait_for(lambda: not alive(forkserver), timeout=10, message="the forkserver to end")
