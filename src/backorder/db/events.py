"""The event outbox: rows written in the transaction that caused them (the public feed reads
them, the webhook worker delivers them afterwards)."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_INSERT = text(
    "INSERT INTO event (type, data) SELECT t, CAST(d AS jsonb) "
    "FROM unnest(CAST(:types AS text[]), CAST(:datas AS text[])) WITH ORDINALITY AS x(t, d, n) "
    "ORDER BY n"
)


def to_json(data: Any) -> str:
    return orjson.dumps(data, default=str).decode()


async def emit(conn: AsyncConnection, type_: str, data: dict[str, Any]) -> None:
    await emit_many(conn, [(type_, data)])


async def emit_many(conn: AsyncConnection, events: list[tuple[str, dict[str, Any]]]) -> None:
    if not events:
        return
    await conn.execute(
        _INSERT,
        {
            "types": [t for t, _ in events],
            "datas": [to_json(d) for _, d in events],
        },
    )
