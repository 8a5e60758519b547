"""Creating, listing, revoking and verifying API keys."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, func, select, update
from sqlalchemy.orm import Session

from service.auth.models import ApiKey
from service.db import utcnow
from service.errors import Conflict, InvalidInput, NotFound

KEY_PREFIX = "rl_"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
TENANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name and the tenant every resource is scoped to."""

    key_name: str
    tenant_id: str
    session_epoch: int = 0  # dashboard sessions of an older epoch were signed out


def hash_key(key: str) -> str:
    # Keys carry 256 random bits, so a fast hash is enough; no salt or KDF is needed.
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(session: Session, *, name: str, tenant_id: str | None = None) -> tuple[ApiKey, str]:
    """Store a new key's hash and return the plaintext, which is never stored or shown again."""
    if not NAME_PATTERN.match(name):
        raise InvalidInput(
            f"key name {name!r} must be 1-100 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    if tenant_id is not None and not TENANT_PATTERN.match(tenant_id):
        raise InvalidInput(f"tenant {tenant_id!r} must be 1-64 letters, digits, '_', '.' or '-'")
    if session.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.name == name)):
        raise Conflict(f"a key named {name!r} already exists; pick another name")
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        name=name,
        tenant_id=tenant_id or f"t-{uuid.uuid4().hex[:16]}",
        key_hash=hash_key(plaintext),
        prefix=plaintext[:8],
    )
    session.add(key)
    session.flush()
    return key, plaintext


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.name)))


def count_keys(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(ApiKey)) or 0


def revoke_key(session: Session, *, name: str) -> ApiKey:
    key = session.scalar(select(ApiKey).where(ApiKey.name == name))
    if key is None:
        raise NotFound(f"no key named {name!r}; `ridgeline keys list` shows the names")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
    return key


_keys = ApiKey.__table__
_KEY_BY_DIGEST = select(
    _keys.c.name, _keys.c.tenant_id, _keys.c.key_hash, _keys.c.revoked_at, _keys.c.session_epoch
).where(_keys.c.key_hash == bindparam("digest"))
MAX_CACHED = 10_000


def end_sessions(session: Session, *, key_digest: str, epoch: int) -> None:
    """Sign out: every dashboard session of this key at this epoch (or before) ends."""
    session.execute(
        update(ApiKey)
        .where(ApiKey.key_hash == key_digest, ApiKey.session_epoch == epoch)
        .values(session_epoch=ApiKey.session_epoch + 1)
    )


class KeyVerifier:
    """Checks bearer keys against the database, trusting an answer for a few seconds.

    A key found active is trusted for `cache_seconds`; a digest found unknown or revoked is
    remembered as such for as long, so a client repeating a bad key costs one lookup, not one
    per request."""

    def __init__(self, cache_seconds: float) -> None:
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._unknown: dict[str, float] = {}
        self._lock = threading.Lock()
        self._in_flight: dict[str, asyncio.Future[Principal | None]] = {}

    async def verify_digest_once(
        self, digest: str, lookup: Callable[[str], Awaitable[Principal | None]]
    ) -> Principal | None:
        """Cached, else one `lookup` per key at a time (event loop only): when an entry ages out
        under load, the requests in flight share one database check instead of sending one each."""
        principal = self.cached(digest)
        if principal is not None or self.recently_unknown(digest):
            return principal
        pending = self._in_flight.get(digest)
        if pending is None:
            pending = self._in_flight[digest] = asyncio.ensure_future(lookup(digest))
            pending.add_done_callback(lambda _: self._in_flight.pop(digest, None))
        return await asyncio.shield(pending)  # a caller that goes away leaves it to the others

    def verify(self, session: Session | Connection, plaintext: str) -> Principal | None:
        return self.verify_digest(session, hash_key(plaintext))

    def cached(self, digest: str, *, now: float | None = None) -> Principal | None:
        """The principal of a key verified in the last few seconds, without the database."""
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None and (now or time.monotonic()) - hit[0] < self._cache_seconds:
            return hit[1]
        return None

    def recently_unknown(self, digest: str, *, now: float | None = None) -> bool:
        """Whether this digest was found unknown or revoked in the last few seconds."""
        with self._lock:
            seen = self._unknown.get(digest)
        return seen is not None and (now or time.monotonic()) - seen < self._cache_seconds

    def forget(self, digest: str) -> None:
        """Drop what is cached about a key, so the next request reads it afresh."""
        with self._lock:
            self._cache.pop(digest, None)
            self._unknown.pop(digest, None)

    def verify_digest(self, session: Session | Connection, digest: str) -> Principal | None:
        """The principal of the active key with this sha256, or None (unknown or revoked).

        Session cookies carry the digest, never the key, and come back through here, so a
        revoked key ends its sessions as soon as the cache entry ages out."""
        now = time.monotonic()
        principal = self.cached(digest, now=now)
        if principal is not None or self.recently_unknown(digest, now=now):
            return principal
        key = session.execute(_KEY_BY_DIGEST, {"digest": digest}).first()
        # The index lookup already matched; compare again in constant time all the same.
        if (
            key is None
            or key.revoked_at is not None
            or not hmac.compare_digest(key.key_hash, digest)
        ):
            with self._lock:
                self._cache.pop(digest, None)
                if len(self._unknown) > MAX_CACHED:
                    self._unknown.clear()
                self._unknown[digest] = now
            return None
        principal = Principal(
            key_name=key.name, tenant_id=key.tenant_id, session_epoch=key.session_epoch
        )
        with self._lock:
            if len(self._cache) > MAX_CACHED:
                self._cache.clear()
            self._cache[digest] = (now, principal)
        return principal
