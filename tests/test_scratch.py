"""Per-process scratch folders: a dead process's folder goes at the next start, a live one stays."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from service.scratch import LOCK_NAME, UNLOCKED_GRACE_SECONDS, ScratchSpace, sweep

HOLD = (
    "import sys; from pathlib import Path; from service.scratch import ScratchSpace; "
    "s = ScratchSpace(Path(sys.argv[1])); (s.path / 'upload.part').write_bytes(b'x'); "
    "print(s.path, flush=True); sys.stdin.read()"
)


def _holder(root: Path) -> tuple[subprocess.Popen[str], Path]:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, Path(process.stdout.readline().strip())


def test_a_live_processs_folder_stays_and_a_killed_ones_goes(tmp_path: Path) -> None:
    alive, alive_dir = _holder(tmp_path)
    killed, killed_dir = _holder(tmp_path)
    try:
        killed.kill()
        killed.wait(timeout=10)
        assert (killed_dir / "upload.part").exists()
        mine = ScratchSpace(tmp_path)  # starting sweeps
        assert not killed_dir.exists()
        assert (alive_dir / "upload.part").exists()
        assert sweep(tmp_path) == 0  # both remaining folders are locked by live processes
        mine.close()
        assert not mine.path.exists()
    finally:
        alive.kill()
        alive.wait(timeout=10)
    assert sweep(tmp_path) == 1 and not alive_dir.exists()


def test_a_folder_without_a_lock_is_left_alone_while_young(tmp_path: Path) -> None:
    starting = tmp_path / "ridgeline-api-starting"
    starting.mkdir()
    assert sweep(tmp_path) == 0 and starting.exists()
    old = time.time() - UNLOCKED_GRACE_SECONDS - 5
    os.utime(starting, (old, old))
    assert sweep(tmp_path) == 1 and not starting.exists()
    assert not list(tmp_path.glob(f"*/{LOCK_NAME}"))
