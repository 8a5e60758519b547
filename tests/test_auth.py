"""API keys in a rolled-back transaction per test: hashes only, unique names, revocation."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from service.auth.models import ApiKey
from service.auth.service import (
    KeyVerifier,
    Principal,
    create_key,
    end_sessions,
    hash_key,
    revoke_key,
)
from service.errors import Conflict, InvalidInput, NotFound


def test_only_the_hash_is_stored(session: Session) -> None:
    key, plaintext = create_key(session, name="alice")
    stored = session.scalar(select(ApiKey).where(ApiKey.name == "alice"))
    assert stored is not None and stored.key_hash == hash_key(plaintext)
    assert plaintext not in (stored.key_hash, stored.prefix)
    assert key.tenant_id.startswith("t-")


def test_names_are_unique_and_tenants_own_by_default(session: Session) -> None:
    first, _ = create_key(session, name="bob")
    with pytest.raises(Conflict):
        create_key(session, name="bob")
    second, _ = create_key(session, name="carol")
    assert first.tenant_id != second.tenant_id
    shared, _ = create_key(session, name="dave", tenant_id=first.tenant_id)
    assert shared.tenant_id == first.tenant_id
    with pytest.raises(InvalidInput):
        create_key(session, name="has space")


def test_revoked_keys_stop_verifying(session: Session) -> None:
    _, plaintext = create_key(session, name="erin", tenant_id="acme")
    verifier = KeyVerifier(cache_seconds=0)
    principal = verifier.verify(session, plaintext)
    assert principal is not None and principal.tenant_id == "acme"
    assert verifier.verify(session, plaintext + "x") is None
    revoke_key(session, name="erin")
    assert verifier.verify(session, plaintext) is None
    with pytest.raises(NotFound):
        revoke_key(session, name="nobody")


def test_requests_in_flight_share_one_lookup_of_a_key() -> None:
    verifier = KeyVerifier(cache_seconds=60)
    calls: list[str] = []
    release = asyncio.Event()

    async def lookup(digest: str) -> Principal | None:
        calls.append(digest)
        await release.wait()
        return Principal(key_name="k", tenant_id="t")

    async def main() -> list[Principal | None]:
        waiting = [
            asyncio.ensure_future(verifier.verify_digest_once("d", lookup)) for _ in range(5)
        ]
        await asyncio.sleep(0)
        waiting[0].cancel()  # a client that went away leaves the lookup to the others
        release.set()
        return await asyncio.gather(*waiting[1:])

    assert asyncio.run(main()) == [Principal(key_name="k", tenant_id="t")] * 4
    assert calls == ["d"]


def test_a_failed_lookup_reaches_every_waiter_and_is_tried_again() -> None:
    verifier = KeyVerifier(cache_seconds=60)
    outcomes = iter([RuntimeError("database down"), None])

    async def lookup(digest: str) -> Principal | None:
        await asyncio.sleep(0)
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def main() -> tuple[list[BaseException | Principal | None], Principal | None]:
        first = await asyncio.gather(
            *(verifier.verify_digest_once("d", lookup) for _ in range(3)), return_exceptions=True
        )
        return first, await verifier.verify_digest_once("d", lookup)

    first, again = asyncio.run(main())
    assert all(isinstance(outcome, RuntimeError) for outcome in first)
    assert again is None


def test_unknown_keys_are_remembered_for_as_long_as_known_ones(session: Session) -> None:
    """A client repeating a bad key costs one lookup per cache period, not one per request."""
    statements: list[str] = []
    connection = session.connection()
    event.listen(connection, "before_cursor_execute", lambda *a: statements.append(a[2]))
    remembering = KeyVerifier(cache_seconds=600)
    assert remembering.verify(session, "rl_unknown") is None
    assert remembering.verify(session, "rl_unknown") is None
    assert remembering.recently_unknown(hash_key("rl_unknown"))
    assert len([s for s in statements if "api_keys" in s]) == 1
    forgetful = KeyVerifier(cache_seconds=0)
    forgetful.verify(session, "rl_unknown")
    forgetful.verify(session, "rl_unknown")
    assert len([s for s in statements if "api_keys" in s]) == 3


def test_signing_out_moves_the_keys_session_epoch(session: Session) -> None:
    _, plaintext = create_key(session, name="frank")
    digest = hash_key(plaintext)
    verifier = KeyVerifier(cache_seconds=600)
    before = verifier.verify(session, plaintext)
    assert before is not None and before.session_epoch == 0
    end_sessions(session, key_digest=digest, epoch=0)
    end_sessions(session, key_digest=digest, epoch=0)  # a second sign-out of that session: no-op
    assert verifier.verify(session, plaintext) == before  # cached until forgotten
    verifier.forget(digest)
    after = verifier.verify(session, plaintext)
    assert after is not None and after.session_epoch == 1
