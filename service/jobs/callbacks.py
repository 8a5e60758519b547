"""Signed callbacks: once a job ends, a worker POSTs its outcome to the job's callback_url.

Signature scheme (what a receiver checks):

    body      = the raw request body (UTF-8 JSON)
    timestamp = the X-Ridgeline-Timestamp header (Unix seconds, when this try was sent)
    expected  = hex(HMAC-SHA256(key=RIDGELINE_CALLBACK_SECRET, msg=timestamp + "." + body))
    valid     = X-Ridgeline-Signature == "sha256=" + expected   (compare in constant time)

and refuses a timestamp more than five minutes away from its own clock, so a captured request
cannot be replayed later. Delivery is at least once: a receiver may see the same job twice (a
worker that dies between sending and recording tries again) and should key on `job_id`.

Delivery state lives on the job row. A job given a callback_url starts `pending`; once the job is
terminal, any worker claims the try with a conditional UPDATE (attempt number unchanged, try due)
that counts the attempt and pushes its next time past the request's timeout, so two workers
never send the same attempt at once. 2xx is `delivered`; a connection error, a timeout, 429 or
5xx is retried after backoff (base, 2·base, 4·base, …) up to callback_max_attempts, then
`failed`; any other answer (redirects included: they are never followed) fails at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from service.config import Settings
from service.db import Database, rowcount
from service.errors import InvalidInput, OutboundRefused, OutboundUnreachable
from service.jobs import queue
from service.jobs.models import (
    CALLBACK_DELIVERED,
    CALLBACK_FAILED,
    CALLBACK_PENDING,
    TERMINAL,
    Job,
)
from service.outbound import DEFAULT_PORTS, OutboundPolicy

logger = logging.getLogger("ridgeline.callbacks")

SIGNATURE_HEADER = "X-Ridgeline-Signature"
TIMESTAMP_HEADER = "X-Ridgeline-Timestamp"
DELIVERY_HEADER = "X-Ridgeline-Delivery"
#: What a receiver should accept between the timestamp and its own clock.
REPLAY_TOLERANCE_SECONDS = 300
#: Figures of the job's metrics sent in the body (those of GET /v1/jobs/{id} `summary`).
POLL_SECONDS = 0.5
CLAIM_BATCH = 20
#: A claimed try is retried by another worker this long after its timeout if never recorded.
CLAIM_MARGIN_SECONDS = 10.0
RETRY_STATUSES = frozenset({408, 429})
MAX_ERROR_CHARS = 500


def _problem(message: str) -> InvalidInput:
    return InvalidInput(message, errors=[{"field": "callback_url", "message": message}])


def validate_callback_url(
    settings: Settings, url: str, *, policy: OutboundPolicy | None = None
) -> str:
    """The URL if callbacks are configured and the outbound policy lets it out; else a 422."""
    if not settings.callback_allowed_hosts:
        raise _problem(
            "callbacks are off on this server: set RIDGELINE_CALLBACK_ALLOWED_HOSTS (a JSON list "
            "of host names) and RIDGELINE_CALLBACK_SECRET on the API and the workers"
        )
    if not settings.callback_secret.get_secret_value():
        raise _problem(
            "callbacks need RIDGELINE_CALLBACK_SECRET (the key that signs them) on the API and "
            "the workers"
        )
    policy = policy or OutboundPolicy.from_settings(settings)
    try:
        parsed = policy.check_url(url, allowed_hosts=settings.callback_allowed_hosts)
        policy.resolve(parsed.host, parsed.port or DEFAULT_PORTS[parsed.scheme])
    except InvalidInput as exc:
        hint = ""
        if "allowed hosts" in exc.detail:
            hint = " (RIDGELINE_CALLBACK_ALLOWED_HOSTS); use an allowed host or ask the operator"
        raise _problem(f"callback_url is refused: {exc.detail}{hint}") from None
    return url


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The X-Ridgeline-Signature value: sha256=<hex HMAC of "timestamp.body">."""
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(
    secret: bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    now: float | None = None,
    tolerance: float = REPLAY_TOLERANCE_SECONDS,
) -> bool:
    """What a receiver does: a fresh timestamp and a matching signature (constant-time)."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - sent) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, sent, body), signature)


def payload(job: Job) -> dict[str, Any]:
    """The JSON body: what ended, how, and the metrics summary."""
    return {
        "event": "job.finished",
        "job_id": str(job.id),
        "name": job.name,
        "status": job.status,
        "error": job.error,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "summary": job.summary,
    }


@dataclass(frozen=True)
class Delivery:
    """One claimed try: the attempt number fences the write of its outcome."""

    job_id: uuid.UUID
    attempt: int
    url: str
    body: bytes


def claim_due(
    session: Session, *, lease_seconds: float, max_attempts: int, limit: int = CLAIM_BATCH
) -> list[Delivery]:
    """Claim the tries that are due; a conditional UPDATE makes each claim exclusive.

    A delivery whose tries are all used up (its sender died before recording the last one)
    is marked failed here instead of being tried again."""
    now = queue.db_now(session)
    session.execute(
        update(Job)
        .where(
            Job.callback_status == CALLBACK_PENDING,
            Job.status.in_(TERMINAL),
            Job.callback_attempts >= max_attempts,
            or_(Job.callback_next_at.is_(None), Job.callback_next_at <= now),
        )
        .values(
            callback_status=CALLBACK_FAILED,
            callback_next_at=None,
            callback_last_error=func.coalesce(
                Job.callback_last_error, f"no outcome was recorded for any of {max_attempts} tries"
            ),
        )
        .execution_options(synchronize_session=False)
    )
    due = session.execute(
        select(Job.id, Job.callback_attempts)
        .where(
            Job.callback_status == CALLBACK_PENDING,
            Job.status.in_(TERMINAL),
            or_(Job.callback_next_at.is_(None), Job.callback_next_at <= now),
        )
        .order_by(Job.callback_next_at, Job.id)
        .limit(limit)
    ).all()
    claimed = []
    for job_id, attempts in due:
        result = session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.callback_status == CALLBACK_PENDING,
                Job.callback_attempts == attempts,
            )
            .values(
                callback_attempts=attempts + 1,
                callback_next_at=queue.db_now_plus(session, lease_seconds),
            )
            .execution_options(synchronize_session=False)
        )
        if not rowcount(result):
            continue  # another worker took it
        job = session.get_one(Job, job_id, populate_existing=True)
        body = json.dumps(payload(job), separators=(",", ":"), sort_keys=True).encode()
        claimed.append(Delivery(job_id, attempts + 1, job.callback_url or "", body))
    return claimed


def record(
    session: Session, delivery: Delivery, *, error: str | None, retry_in: float | None
) -> bool:
    """Write a try's outcome, if no later try took over: delivered, retry later, or failed."""
    values: dict[str, Any]
    if error is None:
        values = {"callback_status": CALLBACK_DELIVERED, "callback_next_at": None}
    elif retry_in is not None:
        values = {"callback_next_at": queue.db_now_plus(session, retry_in)}
    else:
        values = {"callback_status": CALLBACK_FAILED, "callback_next_at": None}
    result = session.execute(
        update(Job)
        .where(
            Job.id == delivery.job_id,
            Job.callback_status == CALLBACK_PENDING,
            Job.callback_attempts == delivery.attempt,
        )
        .values(callback_last_error=error, **values)
        .execution_options(synchronize_session=False)
    )
    return bool(rowcount(result))


def send(
    settings: Settings, client: httpx.Client, policy: OutboundPolicy, delivery: Delivery
) -> tuple[str | None, bool]:
    """POST one signed try: (error or None, whether a failure is worth retrying)."""
    try:
        policy.check_url(delivery.url, allowed_hosts=settings.callback_allowed_hosts)
    except OutboundRefused as exc:
        return f"{exc.detail} (checked again before sending)", False
    timestamp = int(time.time())
    secret = settings.callback_secret.get_secret_value().encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "ridgeline-callbacks",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, timestamp, delivery.body),
        DELIVERY_HEADER: f"{delivery.job_id}/{delivery.attempt}",
    }
    try:
        response = client.post(delivery.url, content=delivery.body, headers=headers)
    except OutboundRefused as exc:  # the address the host resolves to now is refused
        return exc.detail, False
    except (httpx.HTTPError, OutboundUnreachable) as exc:
        return _error_text(exc), True
    if response.is_success:
        return None, False
    error = f"HTTP {response.status_code}"
    if response.is_redirect:
        return f"{error}: redirects are not followed; give the final URL", False
    return error, response.status_code >= 500 or response.status_code in RETRY_STATUSES


def _error_text(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]


def backoff(settings: Settings, attempt: int) -> float:
    """Seconds before the try after `attempt` failed ones: base, 2·base, 4·base, …"""
    return float(settings.callback_backoff_seconds * 2 ** (attempt - 1))


def deliver_due(
    db: Database, settings: Settings, client: httpx.Client, policy: OutboundPolicy
) -> int:
    """Claim what is due, send each, record each outcome; how many were tried."""
    lease = settings.callback_timeout_seconds + CLAIM_MARGIN_SECONDS
    with db.transaction() as session:
        claimed = claim_due(
            session, lease_seconds=lease, max_attempts=settings.callback_max_attempts
        )
    for delivery in claimed:
        try:
            error, retryable = send(settings, client, policy, delivery)
        except Exception as exc:  # one bad delivery never ends the batch
            logger.exception("callback of job %s could not be sent", delivery.job_id)
            error, retryable = _error_text(exc), True
        retry_in = None
        if error is not None and retryable and delivery.attempt < settings.callback_max_attempts:
            retry_in = backoff(settings, delivery.attempt)
        with db.transaction() as session:
            record(session, delivery, error=error, retry_in=retry_in)
        if error is None:
            logger.info("callback of job %s delivered (try %d)", delivery.job_id, delivery.attempt)
        else:
            logger.warning(
                "callback of job %s, try %d: %s%s",
                delivery.job_id,
                delivery.attempt,
                error,
                f"; retrying in {retry_in:g} s" if retry_in is not None else "; giving up",
            )
    return len(claimed)


class CallbackSender(threading.Thread):
    """The worker's delivery loop, beside its claim loop so a slow receiver never delays jobs."""

    def __init__(self, db: Database, settings: Settings, stop: threading.Event) -> None:
        super().__init__(name="callbacks", daemon=True)
        self.db = db
        self.settings = settings
        self.stop = stop

    def run(self) -> None:
        policy = OutboundPolicy.from_settings(self.settings)
        with policy.client(
            follow_redirects=False, timeout=self.settings.callback_timeout_seconds
        ) as client:
            while not self.stop.is_set():
                try:
                    busy = deliver_due(self.db, self.settings, client, policy) >= CLAIM_BATCH
                except Exception as exc:
                    logger.warning("callback loop error (will retry): %s", exc)
                    busy = False
                if not busy:
                    self.stop.wait(POLL_SECONDS)


def start_sender(db: Database, settings: Settings, stop: threading.Event) -> CallbackSender | None:
    """Start delivering if this worker can sign and has hosts to send to; None otherwise."""
    if not settings.callback_allowed_hosts or not settings.callback_secret.get_secret_value():
        logger.info("callbacks are off on this worker (no allowed hosts or no secret)")
        return None
    sender = CallbackSender(db, settings, stop)
    sender.start()
    return sender
