"""API keys in a rolled-back transaction per test: hashes only, unique names, revocation."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.auth.models import ApiKey
from service.auth.service import KeyVerifier, create_key, hash_key, revoke_key
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
