"""Keyset pagination with an opaque cursor, newest first, shared by every list route."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field
from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute

from service.errors import InvalidInput

T = TypeVar("T")

MAX_LIMIT = 200


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` to get the next page; null on the last page."
    )


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(row_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, row_id = json.loads(raw)
        return datetime.fromisoformat(created_at), uuid.UUID(row_id)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(
            "the cursor is not one this service issued; pass next_cursor from the previous page",
            errors=[{"field": "cursor", "message": "invalid cursor"}],
        ) from exc


def paginate(
    query: Select[Any],
    *,
    created_at: InstrumentedAttribute[datetime],
    row_id: InstrumentedAttribute[uuid.UUID],
    limit: int,
    cursor: str | None,
) -> Select[Any]:
    """Order newest first and start after the cursor; fetch one extra row to know if more exist."""
    if cursor:
        at, last_id = decode_cursor(cursor)
        query = query.where(or_(created_at < at, and_(created_at == at, row_id < last_id)))
    return query.order_by(created_at.desc(), row_id.desc()).limit(limit + 1)


def page_of(rows: Sequence[Any], limit: int) -> tuple[list[Any], str | None]:
    items = list(rows[:limit])
    if len(rows) > limit:
        last = items[-1]
        return items, encode_cursor(last.created_at, last.id)
    return items, None
