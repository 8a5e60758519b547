"""A scratch folder per API process, so a process killed mid-upload leaves nothing for good.

Each process holds an exclusive ``flock`` on ``.lock`` in its folder for as long as it lives;
the kernel drops the lock however the process ends. A starting process removes every sibling
folder whose lock it can take: their owners are gone, SIGKILL and power loss included.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import IO

from starlette.requests import Request

logger = logging.getLogger("ridgeline.scratch")

PREFIX = "ridgeline-api-"
LOCK_NAME = ".lock"
#: A folder without a lock file yet is a process starting right now, unless it is this old.
UNLOCKED_GRACE_SECONDS = 60.0


class ScratchSpace:
    """This process's folder under ``parent`` (the system's temp folder when None)."""

    def __init__(self, parent: Path | None = None) -> None:
        root = Path(parent) if parent is not None else Path(tempfile.gettempdir())
        root.mkdir(parents=True, exist_ok=True)
        removed = sweep(root)
        if removed:
            logger.info("removed %d scratch folder(s) left by API processes that died", removed)
        self.path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=root))
        self._lock: IO[str] | None = _try_lock(self.path / LOCK_NAME)
        if self._lock is None:  # nobody else knows this fresh folder's name
            raise RuntimeError(f"could not lock the new scratch folder {self.path}")

    def close(self) -> None:
        """Remove the folder (anything still in it is an upload this process abandoned)."""
        shutil.rmtree(self.path, ignore_errors=True)
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def scratch_dir(request: Request) -> Path:
    """Where this API process keeps an upload while it streams in and is checked."""
    scratch: ScratchSpace = request.app.state.scratch
    return scratch.path


def sweep(root: Path) -> int:
    """Remove the scratch folders under root whose owning process has died; how many."""
    removed = 0
    for folder in root.glob(f"{PREFIX}*"):
        if not folder.is_dir():
            continue
        lock_path = folder / LOCK_NAME
        if not lock_path.exists():
            with contextlib.suppress(OSError):
                if time.time() - folder.stat().st_mtime > UNLOCKED_GRACE_SECONDS:
                    shutil.rmtree(folder, ignore_errors=True)
                    removed += 1
            continue
        lock = _try_lock(lock_path)
        if lock is None:
            continue  # a live process holds it
        with lock:
            shutil.rmtree(folder, ignore_errors=True)
        removed += 1
    return removed


def _try_lock(path: Path) -> IO[str] | None:
    """The file open with an exclusive lock held, or None when another process holds it."""
    try:
        handle = open(path, "a")  # noqa: SIM115 (held open for the lock's lifetime)
    except OSError:
        return None
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle
