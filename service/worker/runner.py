"""One attempt of one job: a child process watched by a thread of the worker.

The thread keeps the lease alive, writes progress, watches cancel and the time limit, and
writes the outcome fenced by attempt number. If it cannot renew the lease it kills the child
before the lease runs out, so a reaped job is never trained twice at the same time.
"""

from __future__ import annotations

import io
import json
import logging
import multiprocessing
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from sqlalchemy import select

from service import blobs
from service.childproc import WarmServer, kill_group
from service.config import Settings
from service.datasets.imports import DatasetChanged, reference_source
from service.datasets.models import Dataset
from service.datasets.service import (
    IMPORT_TRAINER,
    check_quota,
    fail_import,
    finish_import,
)
from service.db import Database
from service.errors import ServiceError
from service.jobs import queue
from service.jobs.engine import spark_uri
from service.jobs.models import CANCELLED, FAILED, SUCCEEDED, Job
from service.observability import job_context, observe_heartbeat, observe_job_finished
from service.worker.cache import DatasetCache
from service.worker.spark_driver import SparkAttempt, driver_for, spark_problem

logger = logging.getLogger("ridgeline.worker")

PROGRESS_FLUSH_SECONDS = 0.25
CANCEL_POLL_SECONDS = 0.5

SIGNAL_REASONS = {
    signal.SIGSEGV: "the training process crashed (segmentation fault)",
    signal.SIGKILL: "the training process was killed (SIGKILL), most likely out of memory",
    signal.SIGABRT: "the training process aborted",
    signal.SIGBUS: "the training process crashed (bus error)",
    signal.SIGFPE: "the training process crashed (floating point exception)",
}


@dataclass
class ChildState:
    result: dict[str, Any] | None = None
    artifact: bytes | None = None
    error: str | None = None
    epochs: list[dict[str, Any]] = field(default_factory=list)
    progress: float | None = None
    phases: dict[str, float] = field(default_factory=dict)


def exit_reason(exitcode: int | None) -> str:
    if exitcode is None:
        return "the training process did not exit"
    if exitcode < 0:
        sig = signal.Signals(-exitcode)
        return SIGNAL_REASONS.get(sig, f"the training process died of signal {sig.name}")
    return f"the training process exited with status {exitcode} without a result"


class Heartbeat(threading.Thread):
    """Renews the lease from the moment of the claim, whatever the attempt is busy with."""

    def __init__(self, runner: AttemptRunner) -> None:
        super().__init__(name=f"heartbeat-{runner.claim.job_id}", daemon=True)
        self.runner = runner
        self.lease = runner.settings.lease_seconds
        # Conservative: the lease was set on the database clock after claimed_at.
        self.valid_until = runner.claimed_at + self.lease
        self.done = threading.Event()

    def expiring(self) -> bool:
        """True once the lease may lapse soon: the child must die before anyone can reap it."""
        return time.monotonic() >= self.valid_until - self.lease / 6

    def run(self) -> None:
        with job_context(self.runner.claim.job_id):
            self._beat()

    def _beat(self) -> None:
        wait = self.lease / 3  # the claim has just taken the lease: a short job renews nothing
        while not self.done.wait(wait):
            asked_at = time.monotonic()
            if self.runner._renew():
                observe_heartbeat()
                self.valid_until = asked_at + self.lease
                wait = self.lease / 3
            else:
                wait = min(1.0, self.lease / 6)


class AttemptRunner(threading.Thread):
    def __init__(
        self,
        *,
        db: Database,
        settings: Settings,
        claim: queue.Claim,
        claimed_at: float,
        worker_id: str,
        server_for: Callable[[dict[str, Any]], WarmServer],
        cache: DatasetCache,
        on_done: threading.Event,
    ) -> None:
        super().__init__(name=f"attempt-{claim.job_id}-{claim.attempt}", daemon=True)
        self.db = db
        self.settings = settings
        self.claim = claim
        self.claimed_at = claimed_at
        self.worker_id = worker_id
        self.server_for = server_for
        self.server: WarmServer | None = None
        self.cache = cache
        self.on_done = on_done
        self.release_requested = threading.Event()
        self.process: multiprocessing.process.BaseProcess | SparkAttempt | None = None
        self.engine = "local"
        self.outcome = "lost"
        self.child_ended: float | None = None
        self.child_phases: dict[str, float] = {}
        self.trainer: str | None = None
        self.dataset_id = uuid.UUID(int=0)
        # Read with the payload, so that finishing costs no extra round trip.
        self.payload_read = False
        self.tenant_id: str | None = None
        self.sweep_id: uuid.UUID | None = None

    def run(self) -> None:
        with job_context(self.claim.job_id):
            self._run_attempt()
        observe_job_finished(self.outcome, time.monotonic() - self.claimed_at, self.claim.attempt)

    def _run_attempt(self) -> None:
        self.heartbeat = Heartbeat(self)
        self.heartbeat.start()
        try:
            self._run()
        except Exception:
            logger.exception("attempt %s/%s failed in the worker", *self._ids())
            self._kill_child()
            self._finish(FAILED, "the worker hit an unexpected error running this job")
        finally:
            self.heartbeat.done.set()
            self._notify_sweep()
            self.on_done.set()

    def _notify_sweep(self) -> None:
        """A trial's end may complete its sweep: rank it and queue the refit."""
        try:
            sweep_id = self.sweep_id
            if not self.payload_read:
                with self.db.transaction(write=False) as session:
                    sweep_id = session.scalar(
                        select(Job.sweep_id).where(Job.id == self.claim.job_id)
                    )
            if sweep_id is not None:
                from service.sweeps.service import after_trial

                after_trial(self.db, sweep_id)
        except Exception:
            logger.exception("could not update the sweep of job %s", self.claim.job_id)

    def _ids(self) -> tuple[str, int]:
        return str(self.claim.job_id), self.claim.attempt

    def _payload(self) -> dict[str, Any]:
        with self.db.transaction(write=False) as session:
            job = session.get_one(Job, self.claim.job_id)
            dataset = session.get_one(Dataset, job.dataset_id)
            spec, trainer, max_seconds, params = job.spec, job.trainer, job.max_seconds, job.params
            self.trainer, self.dataset_id, self.engine = trainer, dataset.id, job.engine
            self.tenant_id, self.sweep_id = job.tenant_id, job.sweep_id
            self.payload_read = True
            blob_id = dataset.blob_id
            blob_sha = dataset.blob.sha256 if dataset.blob is not None else None
            # Spark reads the data from its store URI: it never passes through this process.
            data_uri = spark_uri(dataset) if job.engine == "spark" else None
            if blob_id is None and trainer != IMPORT_TRAINER and data_uri is None:
                source = reference_source(dataset.source_uri or "", dataset.format, dataset.parts)
        if trainer == IMPORT_TRAINER or data_uri is not None:
            data_path = None
        elif blob_id is not None:
            data_path = self.cache.path_for(self.db, blob_id, blob_sha or str(blob_id))
        else:
            data_path = self.cache.path_for_reference(self.settings, source)
        return {
            "job_id": str(self.claim.job_id),
            "attempt": self.claim.attempt,
            "trainer": trainer,
            "spec": spec,
            "max_seconds": max_seconds,
            "data_path": str(data_path) if data_path else None,
            "data_uri": data_uri,
            "work_dir": str(self._work_dir()),
            "threads": self.settings.threads_per_job,
            "memory_limit_mb": self.settings.child_memory_mb,
            "max_classes": self.settings.max_classes,
            "plugins": [*self.settings.plugins, *self.settings.worker_plugins],
            "params": params,
        }

    def _work_dir(self) -> Path:
        """Scratch space of this attempt (an import's staged parts), removed when it ends."""
        path = self.settings.data_dir / "work" / f"{self.claim.job_id}-{self.claim.attempt}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _run(self) -> None:
        began = time.monotonic()
        try:
            payload = self._payload()
        except (DatasetChanged, ServiceError) as exc:
            self._finish(FAILED, getattr(exc, "detail", None) or str(exc))
            return
        if self.engine == "spark":
            self._run_on_spark(payload, began)
            return
        from service.worker.child import child_main

        forking = time.monotonic()
        self.server = server = self.server_for(payload)
        receive, send = server.Pipe(duplex=False)
        alive_r, alive_w = server.Pipe(duplex=False)
        process = server.Process(target=child_main, args=(send, alive_r, payload))
        process.start()
        logger.debug("attempt %s/%s: child %s started", *self._ids(), process.pid)
        self.process = process
        send.close()
        alive_r.close()
        started = time.monotonic()
        try:
            self._supervise(process, receive, started, float(payload["max_seconds"]))
        finally:
            stored = time.monotonic()
            alive_w.close()
            receive.close()
            process.join(timeout=5)
            shutil.rmtree(payload["work_dir"], ignore_errors=True)
        ended = time.monotonic()
        child_ended = self.child_ended or stored
        # bench/worker.py reads these phases (seconds) into its claim-run-finish profile.
        logger.info(
            "attempt %s/%s %s in %.4f s: claim %.4f s, prepare %.4f s, fork %.4f s, "
            "child %.4f s, store %.4f s, reap %.4f s",
            *self._ids(),
            self.outcome,
            ended - self.claimed_at,
            began - self.claimed_at,
            forking - began,
            started - forking,
            child_ended - started,
            stored - child_ended,
            ended - stored,
        )
        if self.child_phases:
            logger.info(
                "attempt %s/%s child phases (s): %s",
                *self._ids(),
                ", ".join(f"{name} {value:g}" for name, value in self.child_phases.items()),
            )

    def _run_on_spark(self, payload: dict[str, Any], began: float) -> None:
        """The attempt on this worker's Spark driver, watched like a child (see spark_driver)."""
        problem = spark_problem(self.settings)
        if problem is not None:
            self._finish(FAILED, problem)
            return
        attempt = driver_for(self.settings).submit(payload)
        self.process = attempt
        started = time.monotonic()
        try:
            self._supervise(attempt, attempt, started, float(payload["max_seconds"]))  # type: ignore[arg-type]
        finally:
            shutil.rmtree(payload["work_dir"], ignore_errors=True)
        logger.info(
            "attempt %s/%s %s on Spark in %.2f s (%.2f s to prepare)",
            *self._ids(),
            self.outcome,
            time.monotonic() - began,
            started - began,
        )

    def _supervise(
        self, process: Any, receive: Connection, started: float, max_seconds: float
    ) -> None:
        next_cancel_poll = started + CANCEL_POLL_SECONDS
        next_flush = started + PROGRESS_FLUSH_SECONDS
        state = ChildState()
        child_done = False
        while True:
            if not child_done:
                child_done = self._drain(receive, state, timeout=0.05)
            now = time.monotonic()
            if child_done and state.result is None and process.is_alive():
                process.join(timeout=2)  # a failed child's exit status says why
            # A result is stored while the child exits: its teardown is no part of the job.
            if child_done and (state.result is not None or not process.is_alive()):
                self.child_ended = time.monotonic()
                self.child_phases = state.phases
                self._flush(state)
                self._complete(process, state)
                return
            if now >= next_flush and (state.epochs or state.progress is not None):
                if not self._flush(state):
                    self._kill_child()
                    logger.warning("attempt %s/%s is no longer current; stopped it", *self._ids())
                    return
                next_flush = now + PROGRESS_FLUSH_SECONDS
            if self.heartbeat.expiring():
                self._kill_child()
                logger.error(
                    "attempt %s/%s could not renew its lease in time; killed its child",
                    *self._ids(),
                )
                return
            if now >= next_cancel_poll:
                next_cancel_poll = now + CANCEL_POLL_SECONDS
                if self._cancel_requested():
                    self._kill_child()
                    self._finish(CANCELLED, "cancelled by request")
                    return
            if now - started > max_seconds:
                self._kill_child()
                self._finish(FAILED, f"time limit exceeded ({max_seconds:g} s)")
                return
            if self.release_requested.is_set():
                self._kill_child()
                with self.db.transaction() as session:
                    queue.release(session, self.claim, reason="worker shutting down")
                self.outcome = "released"
                return

    def _drain(self, receive: Connection, state: ChildState, *, timeout: float) -> bool:
        """Read what the child sent; True once it has nothing more to say."""
        while receive.poll(timeout):
            timeout = 0
            try:
                message = json.loads(receive.recv_bytes())
            except (EOFError, OSError):
                return True
            kind = message["type"]
            if kind == "epoch":
                state.epochs.append(message["epoch"])
            elif kind == "progress":
                state.progress = message["value"]
            elif kind == "result":
                state.result = message["result"]
                state.phases = message.get("phases") or {}
                if message.get("has_artifact"):
                    try:
                        state.artifact = receive.recv_bytes()
                    except (EOFError, OSError):
                        state.result = None
                        state.error = "the training process died while sending its result"
                return True
            elif kind == "error":
                state.error = message["message"]
                return True
        return False

    def _flush(self, state: ChildState) -> bool:
        if not state.epochs and state.progress is None:
            return True
        try:
            with self.db.transaction() as session:
                current = queue.record_progress(
                    session, self.claim, progress=state.progress, epochs=state.epochs
                )
        except Exception as exc:
            logger.warning("could not write progress of %s: %s", self.claim.job_id, exc)
            return True
        state.epochs, state.progress = [], None
        return current

    def _renew(self) -> bool:
        try:
            with self.db.transaction() as session:
                return queue.renew_lease(
                    session,
                    self.claim,
                    worker_id=self.worker_id,
                    lease_seconds=self.settings.lease_seconds,
                )
        except Exception as exc:
            logger.warning("could not renew the lease of %s: %s", self.claim.job_id, exc)
            return False

    def _cancel_requested(self) -> bool:
        try:
            with self.db.transaction(write=False) as session:
                return queue.cancel_requested(session, self.claim)
        except Exception:
            return False

    def _kill_child(self) -> None:
        if isinstance(self.process, SparkAttempt):
            self.process.cancel()  # its job group only: the driver serves other jobs
        elif self.process is not None:
            kill_group(self.process)

    def _complete(self, process: Any, state: ChildState) -> None:
        if state.result is None:
            self._finish(FAILED, state.error or exit_reason(process.exitcode))
            return
        if self.trainer == IMPORT_TRAINER:
            self._complete_import(state.result)
            return
        result, artifact = state.result, state.artifact
        blob_id = None
        if artifact:
            key = blobs.artifact_key(self._tenant(), self.claim.job_id, result.get("artifact_kind"))
            blob = blobs.write_blob(
                self.db, io.BytesIO(artifact), tenant_id=self._tenant(), key=key
            )
            blob_id = blob.id
        written = False
        try:
            with self.db.transaction() as session:
                written = queue.finish(
                    session,
                    self.claim,
                    status=SUCCEEDED,
                    metrics=result.get("metrics"),
                    native_params=result.get("native_params"),
                    versions=result.get("versions"),
                    task=result.get("task"),
                    task_reason=result.get("task_reason"),
                    artifact_blob_id=blob_id,
                    artifact_sha256=result.get("artifact_sha256"),
                    artifact_kind=result.get("artifact_kind"),
                )
                if written and blob_id is not None:
                    blobs.mark_complete(session, blob_id)
        finally:
            if not written and blob_id is not None:
                blobs.delete_blob(self.db, blob_id)
        if written:
            self.outcome = SUCCEEDED
        else:
            logger.warning("attempt %s/%s was superseded; its result was dropped", *self._ids())

    def _complete_import(self, result: dict[str, Any]) -> None:
        """Store a copied import's Parquet, then make the dataset ready as the job ends."""
        blob = None
        tenant = self._tenant()
        if result.get("parquet_path"):
            path = Path(result["parquet_path"])
            try:
                check_quota(self.db, tenant_id=tenant, adding=path.stat().st_size)
                key = blobs.dataset_key(tenant, self.dataset_id)
                blob = blobs.write_blob(self.db, path, tenant_id=tenant, key=key)
            except ServiceError as exc:
                self._finish(FAILED, exc.detail)
                return
        written = False
        try:
            with self.db.transaction() as session:
                written = queue.finish(session, self.claim, status=SUCCEEDED)
                if written:
                    finish_import(session, self.dataset_id, result, blob)
        finally:
            if not written and blob is not None:
                blobs.delete_blob(self.db, blob.id)
        if written:
            self.outcome = SUCCEEDED

    def _tenant(self) -> str:
        if self.tenant_id is None:
            with self.db.transaction(write=False) as session:
                self.tenant_id = session.get_one(Job, self.claim.job_id).tenant_id
        return self.tenant_id

    def _finish(self, status: str, error: str | None) -> None:
        try:
            with self.db.transaction() as session:
                if queue.finish(session, self.claim, status=status, error=error):
                    self.outcome = status
                    if getattr(self, "trainer", None) == IMPORT_TRAINER:
                        fail_import(session, self.dataset_id, error)
        except Exception:
            logger.exception("could not record the end of %s", self.claim.job_id)
