"""/v1/events: the append-only event feed (the transactional outbox, read oldest first)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from backorder.api import cursors
from backorder.api.deps import OpsKey
from backorder.api.docs import problems
from backorder.api.execute import read
from backorder.api.schemas.common import Page, page
from backorder.domain.errors import ValidationFailed

router = APIRouter(prefix="/v1/events", tags=["Events"])

EVENT_TYPES = (
    "order.created", "order.backordered", "order.line_allocated", "order.ready_to_ship",
    "order.shipped", "order.cancelled", "backorder.expected_date_changed",
    "product.low_stock", "product.back_in_stock",
)  # fmt: skip


class EventOut(BaseModel):
    id: str
    type: str
    created_at: datetime
    data: dict[str, Any]


@router.get(
    "",
    response_model=Page[EventOut],
    responses=problems(403),
    summary="The event feed",
    description="Every event, oldest first. Each is written in the transaction that caused it: "
    "none is lost, none is invented (a refused request writes none). Pass the last `id` you "
    "saw as `after` (or `next_cursor` as `cursor`) to read on; `next_cursor` is null at the "
    "end of the feed. Types: " + ", ".join(f"`{t}`" for t in EVENT_TYPES) + ".",
)
async def list_events(
    request: Request,
    principal: OpsKey,
    after: Annotated[
        str | None,
        Query(max_length=20, pattern=r"^\d+$", description="An event id; events after it."),
    ] = None,
    type: Annotated[str | None, Query(max_length=64, description="Only this type.")] = None,
    limit: cursors.LimitQuery = 50,
    cursor: cursors.CursorQuery = None,
) -> Response:
    start = int(after) if after else 0
    if cursor is not None:
        decoded = cursors.decode(cursor, int)
        start = max(start, decoded[0]) if decoded else start
    if start > 2**62:
        raise ValidationFailed(
            "after is out of range",
            [{"loc": ["query", "after"], "field": "after", "msg": "out of range"}],
        )

    async def work(conn: AsyncConnection) -> dict[str, Any]:
        rows = (
            await conn.execute(
                text(
                    "SELECT id, type, created_at, data FROM event WHERE id > :after "
                    "AND (CAST(:type AS text) IS NULL OR type = :type) ORDER BY id LIMIT :limit"
                ),
                {"after": start, "type": type, "limit": limit + 1},
            )
        ).all()
        more = len(rows) > limit
        rows = rows[:limit]
        data = [
            {"id": str(r.id), "type": r.type, "created_at": r.created_at, "data": r.data}
            for r in rows
        ]
        return page(data, cursors.encode(rows[-1].id) if more else None)

    return await read(request, work)
