"""Resource ids are UUIDs; a malformed id is treated exactly like an unknown one (404)."""

from __future__ import annotations

import uuid

from service.errors import NotFound


def parse_id(value: str, kind: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"no {kind} with id {value!r}") from None
