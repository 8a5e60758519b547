"""The request's dependencies, in one place: the database, its session boundary, the caller.

Every /v1 route is scoped to the caller's key's tenant. Two ways in: ``Authorization: Bearer
<key>`` (clients, scripts, Swagger UI), or the dashboard's session cookie (pages, ``<img>``
plots, ``EventSource``), see service/auth/sessions.py. A bearer header wins when both come. A
state-changing request authenticated by the cookie must carry the session's CSRF token in
``X-CSRF-Token``; bearer requests need none (no browser adds that header on its own).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated

import anyio
from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from service.auth import sessions
from service.auth.service import Principal, hash_key
from service.config import Settings
from service.db import Database
from service.errors import Forbidden, SignInRequired, TooManyRequests, Unauthorized
from service.limits import TokenBucketLimiter
from service.tags import parse_tag_filters


def get_database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def get_session(request: Request) -> AsyncIterator[Session]:
    """The request boundary: commit if the handler returned, roll back if it raised.

    A new Session does no I/O, so it is made here on the event loop; only its end, once a query
    ran, takes a trip to a worker thread (shielded: a dropped client still returns the
    connection to the pool).
    """
    db = get_database(request)
    write = request.method not in ("GET", "HEAD", "OPTIONS")
    session = (db.write_sessions if write else db.read_sessions)()
    try:
        yield session
    except BaseException:
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(_end_session, session, commit=False)
        raise
    with anyio.CancelScope(shield=True):
        await run_in_threadpool(_end_session, session, commit=True)


def _end_session(session: Session, *, commit: bool) -> None:
    try:
        if commit:
            session.commit()
        else:
            session.rollback()
    finally:
        session.close()


async def database_dependency(request: Request) -> Database:
    """Async on purpose: FastAPI runs a plain-def dependency in a worker thread."""
    return get_database(request)


async def settings_dependency(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


DatabaseDep = Annotated[Database, Depends(database_dependency)]
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(settings_dependency)]

#: A list route's `cursor`: the alphabet of the cursors issued (unpadded base64url), or empty.
Cursor = Annotated[
    str,
    Query(
        pattern=r"^[A-Za-z0-9_-]*$",
        max_length=512,
        description="Opaque: pass the `next_cursor` of the previous page (empty or absent: the "
        "first page). Only a cursor this service issued is valid: any other string, even one "
        "of the right alphabet, is a 422.",
    ),
]


def ingest_slots(request: Request) -> anyio.CapacityLimiter:
    """Parsing an uploaded file holds tens of MiB: bound how many run at once per process."""
    state = request.app.state
    if getattr(state, "ingest_slots", None) is None:
        state.ingest_slots = anyio.CapacityLimiter(state.settings.max_concurrent_ingests)
    limiter: anyio.CapacityLimiter = state.ingest_slots
    return limiter


LOCAL_TENANT = "local"

bearer = HTTPBearer(auto_error=False, description="An API key from `ridgeline keys create`.")


def local_principal() -> Principal:
    return Principal(key_name="local", tenant_id=LOCAL_TENANT)


def session_token(request: Request) -> sessions.SessionToken | None:
    """What a valid, unexpired session cookie holds (no database)."""
    token = request.cookies.get(sessions.SESSION_COOKIE)
    if not token:
        return None
    return sessions.read_token(sessions.session_secret(request.app.state.settings), token)


def session_principal(request: Request) -> Principal | None:
    """The session cookie's key if still active and not signed out: the dashboard's pages."""
    token = session_token(request)
    if token is None:
        return None
    app_state = request.app.state
    with app_state.db.read_sessions() as session:
        principal: Principal | None = app_state.key_verifier.verify_digest(
            session, token.key_digest
        )
    return _same_epoch(principal, token)


def _same_epoch(principal: Principal | None, token: sessions.SessionToken) -> Principal | None:
    """The principal, unless the session was signed out (the key's epoch moved on)."""
    return principal if principal is not None and principal.session_epoch == token.epoch else None


async def active_key(request: Request, digest: str) -> Principal | None:
    """The active key with this digest: recently verified, else one read per key at a time."""
    app_state = request.app.state
    verifier = app_state.key_verifier
    principal: Principal | None = await verifier.verify_digest_once(
        digest, lambda d: app_state.db.read(partial(verifier.verify_digest, digest=d))
    )
    return principal


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def failure_wait(request: Request) -> float:
    """Seconds this address must wait before a credential of it is looked up again."""
    limiter: TokenBucketLimiter | None = getattr(request.app.state, "auth_failures", None)
    return 0.0 if limiter is None else limiter.wait(client_address(request))


def count_failure(request: Request) -> float:
    """Count a failed authentication of this address; the seconds to wait if over the limit."""
    limiter: TokenBucketLimiter | None = getattr(request.app.state, "auth_failures", None)
    return 0.0 if limiter is None else limiter.acquire(client_address(request))


def too_many_failures(request: Request, wait: float) -> TooManyRequests:
    seconds = max(1, math.ceil(wait))
    per_minute = request.app.state.settings.auth_failures_per_minute
    return TooManyRequests(
        f"more than {per_minute} failed authentications a minute from this address; retry in "
        f"{seconds} s with a valid API key",
        headers={"Retry-After": str(seconds)},
    )


def _refused(request: Request, error: Unauthorized) -> TooManyRequests | Unauthorized:
    """A failed authentication: 401, or 429 once this address failed too often."""
    wait = count_failure(request)
    return too_many_failures(request, wait) if wait > 0 else error


def _guard(request: Request, digest: str) -> None:
    """An address over its failure limit gets no lookups of keys not verified lately."""
    if request.app.state.key_verifier.cached(digest) is None:
        wait = failure_wait(request)
        if wait > 0:
            raise too_many_failures(request, wait)


def check_csrf(request: Request, presented: str | None) -> None:
    """Refuse a cookie-authenticated state change that lacks the session's CSRF token."""
    token = request.cookies.get(sessions.SESSION_COOKIE) or ""
    secret = sessions.session_secret(request.app.state.settings)
    if not sessions.csrf_matches(secret, token, presented):
        raise Forbidden(
            f"this {request.method} was authenticated by the dashboard's session cookie but "
            f"lacks its CSRF token: echo the '{sessions.CSRF_COOKIE}' cookie in the "
            f"'{sessions.CSRF_HEADER}' header, or send 'Authorization: Bearer <key>' instead"
        )


async def cookie_principal(request: Request) -> Principal | None:
    """The principal of the request's session cookie: valid, key active, not signed out."""
    token = session_token(request)
    if token is None:
        return None
    _guard(request, token.key_digest)
    return _same_epoch(await active_key(request, token.key_digest), token)


async def bearer_principal(request: Request, key: str) -> Principal | None:
    digest = hash_key(key)
    _guard(request, digest)
    return await active_key(request, digest)


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """Async, so a recently verified key (the common case) costs no trip to a worker thread."""
    app_state = request.app.state
    if app_state.settings.auth == "disabled":
        return local_principal()
    has_header = "authorization" in request.headers
    if not has_header and sessions.SESSION_COOKIE in request.cookies:
        principal = await cookie_principal(request)
        if principal is None:
            raise _refused(
                request,
                Unauthorized(
                    "the dashboard session has ended (signed out or expired) or its API key was "
                    "revoked; sign in again at / or send 'Authorization: Bearer <key>'"
                ),
            )
        if request.method not in sessions.SAFE_METHODS:
            check_csrf(request, request.headers.get(sessions.CSRF_HEADER))
        request.state.principal = principal
        request.state.auth_method = "session"
        return principal
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized(
            "send an API key as 'Authorization: Bearer <key>'; create one with "
            "`ridgeline keys create --name NAME`"
        )
    principal = await bearer_principal(request, credentials.credentials)
    if principal is None:
        raise _refused(
            request, Unauthorized("the API key is unknown or revoked; check it or create a new one")
        )
    request.state.principal = principal
    request.state.auth_method = "bearer"
    return principal


async def still_authorized(request: Request) -> bool:
    """Whether the credential this request came with is still good (a long stream's re-check):
    the key not revoked, the session not signed out or expired."""
    if request.app.state.settings.auth == "disabled":
        return True
    if getattr(request.state, "auth_method", None) == "session":
        token = session_token(request)
        return token is not None and (
            _same_epoch(await active_key(request, token.key_digest), token) is not None
        )
    _, _, key = request.headers.get("authorization", "").partition(" ")
    return await active_key(request, hash_key(key.strip())) is not None


PrincipalDep = Annotated[Principal, Depends(authenticate)]


def signed_in_viewer(request: Request) -> Principal | None:
    """Who is looking at the dashboard: the session cookie's key, the local principal, or no one."""
    if request.app.state.settings.auth == "disabled":
        return local_principal()
    return session_principal(request)


def dashboard_viewer(request: Request) -> Principal:
    """A dashboard page's viewer; without one, the page answers with a redirect to sign in."""
    principal = signed_in_viewer(request)
    if principal is None:
        raise SignInRequired
    return principal


ViewerDep = Annotated[Principal, Depends(dashboard_viewer)]


async def tag_filters(
    tag: Annotated[
        list[str] | None,
        Query(
            description="key:value; only what carries that tag (repeat for several, all must "
            "match).",
            max_length=20,
        ),
    ] = None,
) -> dict[str, str]:
    """The list's ``?tag=key:value`` filters, parsed at the boundary (a malformed one is a 422)."""
    return parse_tag_filters(tag)


TagFiltersDep = Annotated[dict[str, str], Depends(tag_filters)]
