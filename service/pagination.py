"""Keyset pagination with an opaque cursor, shared by every list route: newest first, or by a
value (a job's final metric) with ties broken by id, so pages stay stable on both databases."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, Select, and_, or_
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


def _after(
    key: Any, row_id: Any, value: Any, last_id: uuid.UUID, *, descending: bool
) -> ColumnElement[bool]:
    """Rows that come after (value, last_id) in the order (key, row_id)."""
    if descending:
        return or_(key < value, and_(key == value, row_id < last_id))
    return or_(key > value, and_(key == value, row_id > last_id))


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
        query = query.where(_after(created_at, row_id, at, last_id, descending=True))
    return query.order_by(created_at.desc(), row_id.desc()).limit(limit + 1)


def encode_ordered_cursor(order: str, value: float, row_id: uuid.UUID) -> str:
    raw = json.dumps([order, value, str(row_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_ordered_cursor(cursor: str, order: str) -> tuple[float, uuid.UUID]:
    """The (value, id) a page ordered by `order` ended at; a cursor of another order is a 422."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        issued_for, value, row_id = json.loads(raw)
        parsed = float(value), uuid.UUID(row_id)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(
            "the cursor is not one this service issued; pass next_cursor from the previous page",
            errors=[{"field": "cursor", "message": "invalid cursor"}],
        ) from exc
    if issued_for != order:
        raise InvalidInput(
            f"the cursor belongs to a list ordered by {issued_for}, not {order}; keep the same "
            "order_by and order while paging, or start again without a cursor",
            errors=[{"field": "cursor", "message": "issued for another order"}],
        )
    return parsed


def paginate_by(
    query: Select[Any],
    *,
    key: InstrumentedAttribute[float],
    row_id: InstrumentedAttribute[uuid.UUID],
    descending: bool,
    order: str,
    limit: int,
    cursor: str | None,
) -> Select[Any]:
    """Order by a value (ties by id, the same way) and start after the cursor; one extra row."""
    if cursor:
        value, last_id = decode_ordered_cursor(cursor, order)
        query = query.where(_after(key, row_id, value, last_id, descending=descending))
    if descending:
        return query.order_by(key.desc(), row_id.desc()).limit(limit + 1)
    return query.order_by(key.asc(), row_id.asc()).limit(limit + 1)


def page_of_ordered(rows: Sequence[Any], limit: int, order: str) -> tuple[list[Any], str | None]:
    """Rows of (item, value) from paginate_by: the items, and the cursor after the last."""
    items = [row[0] for row in rows[:limit]]
    if len(rows) > limit:
        return items, encode_ordered_cursor(order, rows[limit - 1][1], items[-1].id)
    return items, None


def page_of(rows: Sequence[Any], limit: int) -> tuple[list[Any], str | None]:
    items = list(rows[:limit])
    if len(rows) > limit:
        last = items[-1]
        return items, encode_cursor(last.created_at, last.id)
    return items, None
