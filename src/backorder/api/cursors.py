"""Opaque keyset cursors: base64 of the last row's sort key; tampered ones are a 422."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Annotated, Any

import orjson
from fastapi import Query

from backorder.domain.errors import ValidationFailed

LimitQuery = Annotated[int, Query(ge=1, le=200, description="Page size, 1-200.")]
CursorQuery = Annotated[
    str | None,
    Query(max_length=512, description="`next_cursor` of the previous page."),
]


def encode(*parts: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([str(p) for p in parts])).decode().rstrip("=")


def decode(cursor: str | None, *types: Callable[[str], Any]) -> tuple[Any, ...] | None:
    """The cursor's parts, each converted by its type (e.g. `datetime.fromisoformat`, `UUID`)."""
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        parts = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(parts, list) or len(parts) != len(types):
            raise ValueError("wrong arity")
        return tuple(convert(str(part)) for convert, part in zip(types, parts, strict=True))
    except (ValueError, TypeError) as exc:
        raise _bad() from exc


def _bad() -> ValidationFailed:
    return ValidationFailed(
        "cursor is not valid",
        [{"loc": ["query", "cursor"], "field": "cursor", "msg": "not a cursor from this list"}],
    )
