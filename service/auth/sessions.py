"""Browser sessions: a signed cookie that stands for an API key, and its CSRF token.

Pages, ``<img>`` plots and ``EventSource`` streams cannot send an ``Authorization`` header, so
the dashboard's sign-in page exchanges an API key for a session cookie. The cookie never holds
the key: it holds the key's sha256, the key's session epoch and an expiry, signed with
HMAC-SHA256 under the ``session_secret`` setting (or, when that is unset, a random secret of this
process, so sessions end with the process and do not cross API processes). Every request that
presents the cookie looks the digest up again through the KeyVerifier, so revoking the key ends
its sessions, and compares the epoch: signing out increments the key's epoch in the database,
which ends every session of that key (in every API process once its verifier's cache entry
ages out, a few seconds).

CSRF: the session cookie is ``SameSite=Strict`` and ``HttpOnly``; a second cookie, readable by
the dashboard's script, carries a token derived from the session by HMAC (a signed double
submit). State-changing requests authenticated by the cookie must echo it in ``X-CSRF-Token``;
another site can neither read the cookie nor compute the token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

SESSION_COOKIE = "ridgeline_session"
CSRF_COOKIE = "ridgeline_csrf"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FORM_FIELD = "csrf_token"
DEFAULT_SESSION_SECONDS = 12 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_VERSION = "v2"
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
# Used only when no session_secret is configured: sessions then last as long as this process.
_PROCESS_SECRET = secrets.token_bytes(32)


@dataclass(frozen=True)
class SessionToken:
    key_digest: str
    epoch: int
    expires_at: int


def session_secret(settings: Any) -> bytes:
    """The configured ``session_secret`` (str, bytes or SecretStr), else this process's own."""
    configured = getattr(settings, "session_secret", None)
    if configured is not None and hasattr(configured, "get_secret_value"):
        configured = configured.get_secret_value()
    if not configured:
        return _PROCESS_SECRET
    return configured.encode() if isinstance(configured, str) else bytes(configured)


def session_seconds(settings: Any) -> int:
    value = getattr(settings, "session_seconds", None)
    return int(value) if value else DEFAULT_SESSION_SECONDS


def _mac(secret: bytes, message: str) -> str:
    digest = hmac.new(secret, message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def issue_token(
    secret: bytes, key_digest: str, *, lifetime: int, epoch: int = 0, now: float | None = None
) -> str:
    expires = int((time.time() if now is None else now) + lifetime)
    payload = f"{_VERSION}.{key_digest}.{epoch}.{expires}"
    return f"{payload}.{_mac(secret, payload)}"


def read_token(secret: bytes, token: str, *, now: float | None = None) -> SessionToken | None:
    """The token's contents if its signature holds and it has not expired; None otherwise."""
    parts = token.split(".")
    if len(parts) != 5 or parts[0] != _VERSION:
        return None
    _, digest, epoch, expires, signature = parts
    if not _DIGEST.match(digest) or not expires.isdigit() or not epoch.isdigit():
        return None
    payload = f"{_VERSION}.{digest}.{epoch}.{expires}"
    if not hmac.compare_digest(signature, _mac(secret, payload)):
        return None
    if int(expires) <= (time.time() if now is None else now):
        return None
    return SessionToken(key_digest=digest, epoch=int(epoch), expires_at=int(expires))


def csrf_token(secret: bytes, session_token: str) -> str:
    """The CSRF token that belongs to this session (derived, so nothing is stored)."""
    return _mac(secret, f"csrf.{session_token}")


def csrf_matches(secret: bytes, session_token: str, presented: str | None) -> bool:
    if not presented:
        return False
    return hmac.compare_digest(presented.encode(), csrf_token(secret, session_token).encode())


def is_https(request: Request) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def set_session_cookies(
    response: Response,
    request: Request,
    secret: bytes,
    key_digest: str,
    lifetime: int,
    *,
    epoch: int,
) -> None:
    token = issue_token(secret, key_digest, lifetime=lifetime, epoch=epoch)
    secure = is_https(request)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=lifetime,
        path="/",
        httponly=True,
        samesite="strict",
        secure=secure,
    )
    # Readable by the dashboard's script, which echoes it in X-CSRF-Token.
    response.set_cookie(
        CSRF_COOKIE,
        csrf_token(secret, token),
        max_age=lifetime,
        path="/",
        httponly=False,
        samesite="strict",
        secure=secure,
    )


def clear_session_cookies(response: Response, request: Request) -> None:
    secure = is_https(request)
    for name, httponly in ((SESSION_COOKIE, True), (CSRF_COOKIE, False)):
        response.delete_cookie(name, path="/", httponly=httponly, samesite="strict", secure=secure)
