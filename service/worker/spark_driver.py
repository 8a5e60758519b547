"""Each worker's one long-lived Spark driver, in a child of its own, and the attempts run on it.

The driver child is started lazily (on the first Spark job), is *not* under
RIDGELINE_CHILD_MEMORY_MB (a JVM inherits RLIMIT_DATA and would not start under a small one; its
size is ``spark.driver.memory``), dies with its worker (process group, parent-death signal,
watchdog pipe; the JVM exits when its Python parent goes) and is started again if it died. Every
job runs in a thread of the driver under a Spark job group named after the attempt, so a cancel or
a time limit stops exactly its Spark jobs. The data is read by Spark from its store URI.

For the attempt runner, ``SparkAttempt`` looks like a training child (is_alive, join, exitcode)
with a connection (poll, recv_bytes) that carries the same messages.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import multiprocessing
import queue
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

from service.childproc import isolate, kill_group
from service.config import Settings

logger = logging.getLogger("ridgeline.worker")

#: How long a cancel waits for the driver to confirm that the job group's Spark jobs ended.
CANCEL_WAIT_SECONDS = 5.0
#: How often the driver estimates a running job's progress from Spark's status tracker.
PROGRESS_SECONDS = 0.5
#: Fit progress spans this part of a job's progress (data preparation before, scoring after).
FIT_SPAN = (0.2, 0.8)
#: Spark jobs (about one per solver iteration) at which the fit's estimate reaches half its span.
HALF_WAY_JOBS = 50


def job_group(payload: dict[str, Any]) -> str:
    return f"ridgeline-{payload['job_id']}-{payload['attempt']}"


# --------------------------------------------------------------------------- the driver child


class _Driver:
    """The driver child's state: its session, the running jobs and the shared response pipe."""

    def __init__(self, responses: Connection, spark: Any) -> None:
        self.responses = responses
        self.spark = spark
        self.lock = threading.Lock()
        self.cancelled: set[str] = set()
        self.running: set[str] = set()

    def send(self, message: dict[str, Any], payload: bytes | None = None) -> None:
        with self.lock:
            self.responses.send_bytes(json.dumps(message).encode())
            if payload is not None:
                self.responses.send_bytes(payload)

    def run(self, payload: dict[str, Any]) -> None:
        """One job in this thread, under its job group; its messages go back tagged by group."""
        from service.training.engines.spark_linear import fit_on_spark
        from service.training.spec import TrainingSpec
        from service.training.train import RunControl

        group = job_group(payload)
        self.running.add(group)
        context = self.spark.sparkContext
        context.setJobGroup(group, f"ridgeline job {payload['job_id']}", interruptOnCancel=True)
        phase = {"progress": 0.0}
        done = threading.Event()

        def progress(value: float) -> None:
            phase["progress"] = value
            self.send({"group": group, "type": "progress", "value": value})

        tracker = threading.Thread(
            target=self._track, args=(group, phase, done), name=f"progress-{group}", daemon=True
        )
        tracker.start()
        try:
            spec = TrainingSpec.model_validate(payload["spec"])
            run = RunControl(progress, lambda: group in self.cancelled, "the Spark job")
            fit = fit_on_spark(
                self.spark, payload["data_uri"], spec, max_classes=payload["max_classes"], run=run
            )
            fit.featurized.unpersist()
            result = fit.result
            outcome = {
                "task": result.task,
                "task_reason": result.task_reason,
                "metrics": result.metrics,
                "native_params": result.native_params,
                "versions": result.versions,
                "artifact_sha256": result.artifact_sha256,
                "artifact_kind": result.artifact_kind,
            }
            self.send(
                {"group": group, "type": "result", "result": outcome, "has_artifact": True},
                result.artifact,
            )
        except BaseException as exc:
            if group in self.cancelled:
                message = "cancelled"
            else:
                traceback.print_exc(file=sys.stderr)
                message = (getattr(exc, "detail", None) or f"{type(exc).__name__}: {exc}")[:2000]
            self.send({"group": group, "type": "error", "message": message})
        finally:
            done.set()
            self.running.discard(group)
            self.cancelled.discard(group)
            self.send({"group": group, "type": "ended"})

    def _track(self, group: str, phase: dict[str, float], done: threading.Event) -> None:
        """Live progress during the fit, from the number of the group's Spark jobs that ended."""
        tracker = self.spark.sparkContext.statusTracker()
        start, end = FIT_SPAN
        while not done.wait(PROGRESS_SECONDS):
            if not start <= phase["progress"] < end:
                continue
            ids = tracker.getJobIdsForGroup(group)
            finished = sum(
                1 for i in ids if (info := tracker.getJobInfo(i)) and info.status == "SUCCEEDED"
            )
            estimate = start + (end - start) * finished / (finished + HALF_WAY_JOBS)
            with contextlib.suppress(OSError, ValueError):
                self.send({"group": group, "type": "progress", "value": estimate})

    def cancel(self, group: str) -> None:
        """Cancel the group's Spark jobs until its thread has ended: a job the fit starts
        between two cancels (its next solver iteration) is cancelled by the next one."""
        if group not in self.running or group in self.cancelled:
            return
        self.cancelled.add(group)

        def repeat() -> None:
            while group in self.running:
                self.spark.sparkContext.cancelJobGroup(group)
                time.sleep(0.1)

        threading.Thread(target=repeat, name=f"cancel-{group}", daemon=True).start()


def driver_main(
    requests: Connection,
    responses: Connection,
    alive: Connection,
    master: str,
    conf: dict[str, str],
) -> None:
    """Entry point of the driver child: start Spark, then run and cancel jobs as asked."""
    isolate(alive)
    from service.training.engines.spark_session import start_session

    try:
        spark = start_session(master, conf, app_name=conf.get("spark.app.name", "ridgeline"))
    except BaseException as exc:
        traceback.print_exc(file=sys.stderr)
        responses.send_bytes(json.dumps({"type": "failed", "message": str(exc)[:2000]}).encode())
        return
    driver = _Driver(responses, spark)
    gateway = getattr(spark.sparkContext._gateway, "proc", None)
    driver.send({"type": "ready", "jvm_pid": getattr(gateway, "pid", None)})
    while True:
        try:
            message = json.loads(requests.recv_bytes())
        except (EOFError, OSError):
            break
        if message["type"] == "run":
            payload = message["payload"]
            threading.Thread(target=driver.run, args=(payload,), daemon=True).start()
        elif message["type"] == "cancel":
            driver.cancel(message["group"])
    spark.stop()


# --------------------------------------------------------------------------- the worker's side


class SparkAttempt:
    """One attempt on the driver, shaped like a training child and its pipe for the runner."""

    def __init__(self, driver: SparkDriver, group: str) -> None:
        self.driver = driver
        self.group = group
        self.pid: int | None = None
        self.messages: queue.Queue[tuple[bytes, bytes | None]] = queue.Queue()
        self.ended = threading.Event()
        self.exitcode: int | None = None

    # the process side
    def is_alive(self) -> bool:
        return not self.ended.is_set()

    def join(self, timeout: float | None = None) -> None:
        self.ended.wait(timeout)

    # the connection side
    def poll(self, timeout: float = 0.0) -> bool:
        if not self.messages.empty():
            return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.messages.empty():
                return True
            if self.ended.is_set():
                return not self.messages.empty()
            time.sleep(min(0.01, max(deadline - time.monotonic(), 0)))
        return not self.messages.empty()

    def recv_bytes(self) -> bytes:
        message, artifact = self.messages.queue[0]
        if artifact is None:
            self.messages.get()
            return message
        # A result is followed by its artifact: hand them out one after the other.
        self.messages.queue[0] = (artifact, None)
        return message

    def close(self) -> None:
        """The runner closes its end of the pipe; nothing to release here."""

    def cancel(self) -> None:
        """Cancel the attempt's job group, and wait a little for its Spark jobs to end."""
        self.driver.cancel(self.group)
        if self.ended.wait(CANCEL_WAIT_SECONDS):
            logger.info("spark job group %s cancelled; its Spark jobs ended", self.group)
        else:
            logger.warning(
                "spark job group %s did not end within %.0f s", self.group, CANCEL_WAIT_SECONDS
            )

    def _deliver(self, message: dict[str, Any], artifact: bytes | None) -> None:
        if message["type"] == "ended":
            self.exitcode = 0
            self.ended.set()
            return
        self.messages.put((json.dumps(message).encode(), artifact))

    def _lost(self, reason: str) -> None:
        self.messages.put((json.dumps({"type": "error", "message": reason}).encode(), None))
        self.exitcode = 1
        self.ended.set()


class SparkDriver:
    """The worker's handle on its driver child: started lazily, restarted if it died."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.lock = threading.Lock()
        self.process: multiprocessing.process.BaseProcess | None = None
        self.requests: Connection | None = None
        self.attempts: dict[str, SparkAttempt] = {}
        self.jvm_pid: int | None = None
        self._starter_thread: threading.Thread | None = None
        self._start_requests: queue.Queue[tuple[threading.Event, list[Exception]]] = queue.Queue()

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        requests_r, requests_w = context.Pipe(duplex=False)
        responses_r, responses_w = context.Pipe(duplex=False)
        alive_r, self._alive_w = context.Pipe(duplex=False)
        conf = {"spark.app.name": "ridgeline-worker", **self.settings.spark_conf}
        process = context.Process(
            target=driver_main,
            args=(requests_r, responses_w, alive_r, self.settings.spark_master, conf),
            name="ridgeline-spark-driver",
            # Daemonic: a worker that exits stops it (its JVM follows) instead of waiting on it.
            daemon=True,
        )
        process.start()
        requests_r.close()
        responses_w.close()
        alive_r.close()
        ready = json.loads(responses_r.recv_bytes()) if responses_r.poll(300) else None
        if ready is None or ready["type"] != "ready":
            kill_group(process)
            reason = (ready or {}).get("message", "it did not start within 300 s")
            raise RuntimeError(f"the Spark driver could not start: {reason}")
        self.process, self.requests, self.jvm_pid = process, requests_w, ready.get("jvm_pid")
        logger.info(
            "spark driver ready on %s: pid %s, JVM pid %s",
            self.settings.spark_master,
            process.pid,
            self.jvm_pid,
        )
        threading.Thread(
            target=self._read, args=(process, responses_r), name="spark-driver-reader", daemon=True
        ).start()

    def _read(self, process: multiprocessing.process.BaseProcess, responses: Connection) -> None:
        """Hand each message to its attempt; if the driver dies, fail the attempts it held."""
        try:
            while True:
                message = json.loads(responses.recv_bytes())
                artifact = responses.recv_bytes() if message.get("has_artifact") else None
                attempt = self.attempts.get(message.get("group", ""))
                if attempt is not None:
                    attempt._deliver(message, artifact)
                    if message["type"] == "ended":
                        self.attempts.pop(attempt.group, None)
        except (EOFError, OSError):
            pass
        process.join(timeout=5)
        logger.warning("the spark driver (pid %s) ended: %s", process.pid, process.exitcode)
        with self.lock:
            lost, self.attempts = self.attempts, {}
            if self.process is process:
                self.process = None
        for attempt in lost.values():
            attempt._lost(f"the Spark driver died (exit status {process.exitcode})")

    def _starter(self) -> None:
        """Start drivers from this thread, which lives as long as the worker: a child's
        parent-death signal fires when the *thread* that started it ends, not only the process."""
        while True:
            done, errors = self._start_requests.get()
            try:
                self._start()
            except Exception as exc:
                errors.append(exc)
            done.set()

    def _ensure_started(self) -> None:
        if self.process is not None and self.process.is_alive():
            return
        if self._starter_thread is None:
            self._starter_thread = threading.Thread(
                target=self._starter, name="spark-driver-starter", daemon=True
            )
            self._starter_thread.start()
        done, errors = threading.Event(), list[Exception]()
        self._start_requests.put((done, errors))
        done.wait()
        if errors:
            raise errors[0]

    def submit(self, payload: dict[str, Any]) -> SparkAttempt:
        """Run one attempt on the driver (starting it first if needed)."""
        with self.lock:
            self._ensure_started()
            assert self.requests is not None
            attempt = SparkAttempt(self, job_group(payload))
            attempt.pid = self.process.pid if self.process is not None else None
            self.attempts[attempt.group] = attempt
            self.requests.send_bytes(json.dumps({"type": "run", "payload": payload}).encode())
        return attempt

    def cancel(self, group: str) -> None:
        with self.lock, contextlib.suppress(OSError, ValueError):
            if self.requests is not None:
                self.requests.send_bytes(json.dumps({"type": "cancel", "group": group}).encode())


_drivers: dict[int, SparkDriver] = {}
_drivers_lock = threading.Lock()


def spark_problem(settings: Settings) -> str | None:
    """Why this worker cannot run a Spark job, or None."""
    if not settings.spark_master:
        return "this worker has no Spark master (set RIDGELINE_SPARK_MASTER on the worker too)"
    if importlib.util.find_spec("pyspark") is None:
        return (
            "this worker has no pyspark: install ridgeline[spark] (and a Java 17 runtime), "
            "or run the job with engine 'local'"
        )
    return None


def driver_for(settings: Settings) -> SparkDriver:
    """This worker's driver (one per worker process)."""
    with _drivers_lock:
        key = id(settings)
        if key not in _drivers:
            _drivers[key] = SparkDriver(settings)
        return _drivers[key]
