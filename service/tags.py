"""Tags: free ``{key: value}`` labels on jobs, sweeps and models, and the ``?tag=key:value`` filter.

Stored as a JSON object on the row; a filter compares one key's text on either database
(SQLite ``json_extract``, Postgres ``->>``), within the tenant's rows the list already narrows to.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import Field, StringConstraints
from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute

from service.errors import InvalidInput

MAX_TAGS = 20
TAG_KEY_PATTERN = r"^[A-Za-z0-9_.\-/]{1,64}$"
MAX_TAG_VALUE = 256

TagKey = Annotated[str, StringConstraints(pattern=TAG_KEY_PATTERN)]
TagValue = Annotated[str, StringConstraints(max_length=MAX_TAG_VALUE)]
Tags = Annotated[
    dict[TagKey, TagValue],
    Field(
        max_length=MAX_TAGS,
        description=f"Labels to find it by, at most {MAX_TAGS}: keys of letters, digits and "
        f"`_.-/` (up to 64), text values up to {MAX_TAG_VALUE} characters. Filter lists with "
        "`?tag=key:value`.",
        examples=[{"team": "risk", "stage": "candidate"}],
    ),
]

_KEY = re.compile(TAG_KEY_PATTERN)


def parse_tag_filters(values: list[str] | None) -> dict[str, str]:
    """``["key:value", ...]`` as a dict; a malformed one is a 422 that shows the form."""
    filters: dict[str, str] = {}
    for raw in values or []:
        key, sep, value = raw.partition(":")
        if not sep or not _KEY.match(key):
            raise InvalidInput(
                f"tag filter {raw!r} is not key:value; write ?tag=team:risk (keys: letters, "
                "digits and _.-/ up to 64 characters)",
                errors=[{"field": "tag", "message": "expected key:value"}],
            )
        filters[key] = value
    return filters


def where_tags(
    query: Select[Any], column: InstrumentedAttribute[Any], filters: dict[str, str]
) -> Select[Any]:
    """Keep the rows whose tags hold every given key with exactly that value."""
    for key, value in filters.items():
        query = query.where(column[key].as_string() == value)
    return query
