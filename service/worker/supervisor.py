"""The worker process: claims jobs, runs each attempt in a warm child, reaps lost leases."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import exists, select

from service import blobs
from service.childproc import WarmServer, stop_forkservers
from service.config import Settings
from service.datasets.service import IMPORT_TRAINER, fail_import
from service.db import Database
from service.jobs import callbacks, queue
from service.jobs.models import QUEUED, Job
from service.observability import start_worker_metrics
from service.plugins import import_plugins
from service.sweeps.service import after_trial
from service.watch import start_watcher
from service.worker.cache import DatasetCache
from service.worker.forkservers import needs_full, take_servers
from service.worker.late import LATE_KINDS
from service.worker.runner import AttemptRunner
from service.worker.status import WarmUpStatus

logger = logging.getLogger("ridgeline.worker")


class Worker:
    def __init__(self, settings: Settings, *, parent_pid: int | None = None) -> None:
        import_plugins(settings.plugins)  # a finished sweep validates its spec here
        self.settings = settings
        self.parent_pid = parent_pid
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.db = Database(settings)
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.runners: dict[uuid.UUID, AttemptRunner] = {}
        self.cache = DatasetCache(
            settings.data_dir / "cache" / "datasets", settings.dataset_cache_bytes
        )

    def request_stop(self, *_: object) -> None:
        self.stop.set()
        self.wake.set()

    def _parent_alive(self) -> bool:
        return self.parent_pid is None or os.getppid() == self.parent_pid

    def _has_queued(self) -> bool:
        with self.db.transaction(write=False) as session:
            return bool(session.scalar(select(exists().where(Job.status == QUEUED))))

    def _claim_one(self) -> bool:
        if not self._has_queued():
            return False
        claimed_at = time.monotonic()
        with self.db.transaction() as session:
            claim = queue.claim(
                session,
                worker_id=self.worker_id,
                lease_seconds=self.settings.lease_seconds,
                max_running_per_tenant=self.settings.max_running_jobs_per_tenant,
            )
        if claim is None:
            return False
        logger.info("claimed job %s attempt %d", claim.job_id, claim.attempt)
        runner = AttemptRunner(
            db=self.db,
            settings=self.settings,
            claim=claim,
            claimed_at=claimed_at,
            worker_id=self.worker_id,
            server_for=self.server_for,
            cache=self.cache,
            on_done=self.wake,
        )
        self.runners[claim.job_id] = runner
        runner.start()
        return True

    def _reap(self) -> None:
        with self.db.transaction() as session:
            reaped = queue.reap_expired(session)
            ended = [job_id for job_id, _, status in reaped if status != QUEUED]
            sweeps: set[uuid.UUID] = set()
            if ended:
                rows = session.execute(
                    select(Job.sweep_id, Job.trainer, Job.dataset_id, Job.error).where(
                        Job.id.in_(ended)
                    )
                )
                for sweep_id, trainer, dataset_id, error in rows:
                    if sweep_id is not None:
                        sweeps.add(sweep_id)
                    if trainer == IMPORT_TRAINER and dataset_id is not None:
                        fail_import(session, dataset_id, error)
        for job_id, attempt, status in reaped:
            logger.warning("job %s attempt %d lost its worker; now %s", job_id, attempt, status)
        for sweep_id in sweeps:
            after_trial(self.db, sweep_id)

    def _housekeeping(self) -> None:
        """Collect blob garbage; a store that is down must not stop the worker claiming jobs."""
        try:
            report = blobs.collect_garbage(
                self.db, older_than=timedelta(seconds=self.settings.stale_upload_seconds)
            )
        except Exception as exc:
            logger.warning("blob garbage collection failed (will retry): %s", exc)
            return
        if report.incomplete_rows or report.orphan_objects:
            logger.info(
                "removed %d blobs left by interrupted writes and %d objects no row claims",
                report.incomplete_rows,
                len(report.orphan_objects),
            )

    def warm_up(self) -> None:
        """Start the quick forkserver and wait for it (the full one warms up afterwards)."""
        start_worker_metrics(self.settings)
        self.quick, self.full = take_servers(self.settings)
        self.quick.wait()

    def finish_warm_up(self, done: Callable[[float], None]) -> None:
        """Warm the full forkserver in a thread; `done(seconds)` once it is ready."""
        if self.full is self.quick:  # one forkserver, already warm
            return

        def wait() -> None:
            try:
                self.full.start()
                seconds = self.full.wait()
            except Exception:
                if not self.stop.is_set():  # not stopped mid-preload by our own shutdown
                    logger.exception("the full forkserver failed to start; stopping")
                    self.request_stop()
                return
            done(seconds)

        threading.Thread(target=wait, name="full-warm-up", daemon=True).start()

    def server_for(self, payload: dict[str, object]) -> WarmServer:
        """The forkserver an attempt runs on: the full one once ready or when it needs it."""
        if self.full.ready.is_set() or needs_full(payload):
            self.full.ready.wait()
            return self.full
        return self.quick

    def _retire_quick(self) -> None:
        """Stop the quick forkserver once the full one is ready and no attempt runs on it."""
        if self.quick is self.full or self.quick.stopped or not self.full.ready.is_set():
            return
        if not any(r.server is self.quick for r in self.runners.values()):
            self.quick.stop()

    def run(self) -> None:
        start_watcher(self.settings, queue.NOTIFY_CHANNEL, self.wake.set, self.stop)
        idle_wait = self.settings.worker_poll_seconds
        logger.info(
            "worker %s ready: %d slot(s), %d thread(s) per job",
            self.worker_id,
            self.settings.worker_concurrency,
            self.settings.threads_per_job,
        )
        sender = callbacks.start_sender(self.db, self.settings, self.stop)
        reap_every = max(0.5, self.settings.lease_seconds / 4)
        next_reap = next_housekeeping = 0.0
        while not self.stop.is_set() and self._parent_alive():
            now = time.monotonic()
            try:
                if now >= next_reap:
                    self._reap()
                    next_reap = now + reap_every
                if now >= next_housekeeping:
                    next_housekeeping = now + min(60.0, self.settings.stale_upload_seconds / 2)
                    self._housekeeping()
                self.runners = {k: r for k, r in self.runners.items() if r.is_alive()}
                self._retire_quick()
                while (
                    len(self.runners) < self.settings.worker_concurrency and not self.stop.is_set()
                ):
                    if not self._claim_one():
                        break
            except Exception as exc:
                logger.warning("worker loop error (will retry): %s", exc)
            self.wake.wait(min(idle_wait, reap_every))
            self.wake.clear()
        self.stop.set()  # ends the callback sender too (a lost parent ends the loop, not stop)
        if sender is not None:
            sender.join(timeout=self.settings.callback_timeout_seconds)
        self._drain()

    def _drain(self) -> None:
        """Stop claiming; let running attempts finish within the grace period, then release."""
        running = [r for r in self.runners.values() if r.is_alive()]
        if running:
            logger.info(
                "shutting down: waiting up to %.0f s for %d running job(s)",
                self.settings.shutdown_grace_seconds,
                len(running),
            )
        deadline = time.monotonic() + self.settings.shutdown_grace_seconds
        for runner in running:
            runner.join(timeout=max(0.0, deadline - time.monotonic()))
        for runner in running:
            if runner.is_alive():
                runner.release_requested.set()
        for runner in running:
            runner.join(timeout=30)
        self.db.dispose()
        stop_forkservers()
        logger.info("worker %s stopped", self.worker_id)


class StartupInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM while the worker starts: nothing runs yet, so it stops at once."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _interrupt_startup(signum: int, _frame: object) -> None:
    raise StartupInterrupted(signum)


def run_worker(settings: Settings, *, parent_pid: int | None = None) -> None:
    """Warm up (a signal stops that at once, forkserver and all), then run until asked to stop."""
    signal.signal(signal.SIGTERM, _interrupt_startup)
    signal.signal(signal.SIGINT, _interrupt_startup)
    status = WarmUpStatus(settings.data_dir)
    try:
        status.warming()
        worker = Worker(settings, parent_pid=parent_pid)
        worker.warm_up()
    except KeyboardInterrupt:
        stop_forkservers()
        status.remove()
        raise
    signal.signal(signal.SIGTERM, worker.request_stop)
    signal.signal(signal.SIGINT, worker.request_stop)
    late = sorted(LATE_KINDS) if worker.quick is not worker.full else []
    seconds = status.ready(still_warming=late)
    embedded = parent_pid is not None  # in `serve`: finish its banner
    if embedded:
        waiting = f"; {', '.join(late)} jobs wait a little more" if late else ""
        print(f"  Worker:     ready (warmed up in {seconds:.1f} s{waiting})")
        sys.stdout.flush()

    def full_ready(seconds: float) -> None:
        if worker.stop.is_set():
            return
        status.ready(still_warming=[])
        logger.info("worker warm for every kind (the full forkserver took %.1f s)", seconds)
        if embedded:
            print(f"  Worker:     ready for every kind (warmed up in {seconds:.1f} s)", flush=True)

    worker.finish_warm_up(full_ready)
    try:
        worker.run()
    finally:
        status.remove()
