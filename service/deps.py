"""The request's dependencies, in one place: the database, its session boundary, the caller.

Every /v1 route is scoped to the caller's key's tenant. Two ways in: ``Authorization: Bearer
<key>`` (clients, scripts, Swagger UI), or the dashboard's session cookie (pages, ``<img>``
plots, ``EventSource``), see service/auth/sessions.py. A bearer header wins when both come. A
state-changing request authenticated by the cookie must carry the session's CSRF token in
``X-CSRF-Token``; bearer requests need none (no browser adds that header on its own).
"""

from __future__ import annotations

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
from service.errors import Forbidden, SignInRequired, Unauthorized
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


LOCAL_TENANT = "local"

bearer = HTTPBearer(auto_error=False, description="An API key from `ridgeline keys create`.")


def local_principal() -> Principal:
    return Principal(key_name="local", tenant_id=LOCAL_TENANT)


def session_digest(request: Request) -> str | None:
    """The key digest a valid, unexpired session cookie stands for (no database)."""
    token = request.cookies.get(sessions.SESSION_COOKIE)
    if not token:
        return None
    session_token = sessions.read_token(sessions.session_secret(request.app.state.settings), token)
    return None if session_token is None else session_token.key_digest


def session_principal(request: Request) -> Principal | None:
    """The session cookie's key if still active: the dashboard's pages (a blocking read)."""
    digest = session_digest(request)
    if digest is None:
        return None
    app_state = request.app.state
    with app_state.db.read_sessions() as session:
        principal: Principal | None = app_state.key_verifier.verify_digest(session, digest)
    return principal


async def active_key(request: Request, digest: str) -> Principal | None:
    """The active key with this digest: recently verified, else one read per key at a time."""
    app_state = request.app.state
    verifier = app_state.key_verifier
    principal: Principal | None = await verifier.verify_digest_once(
        digest, lambda d: app_state.db.read(partial(verifier.verify_digest, digest=d))
    )
    return principal


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
        digest = session_digest(request)
        principal = None if digest is None else await active_key(request, digest)
        if principal is None:
            raise Unauthorized(
                "the dashboard session has expired or its API key was revoked; sign in again "
                "at / or send 'Authorization: Bearer <key>'"
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
    principal = await active_key(request, hash_key(credentials.credentials))
    if principal is None:
        raise Unauthorized("the API key is unknown or revoked; check it or create a new one")
    request.state.principal = principal
    request.state.auth_method = "bearer"
    return principal


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
