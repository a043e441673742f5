"""/v1/events: the append-only event feed (the transactional outbox, read oldest first)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from backorder.api import cursors
from backorder.api.deps import OpsKey
from backorder.api.docs import problems
from backorder.api.execute import read
from backorder.api.schemas.common import Page, page
from backorder.api.schemas.events import EVENT_TYPES, EventOut
from backorder.db import webhooks

router = APIRouter(prefix="/v1/events", tags=["Events"])

MAX_EVENT_ID = 2**63 - 1


@router.get(
    "",
    response_model=Page[EventOut],
    responses=problems(403),
    summary="The event feed",
    description="Every event, oldest first, as `{id, type, created_at, data}`. Each is "
    "written in the transaction that caused it: none is lost, none is invented (a refused "
    "request writes none).\n\nTo follow the feed, pass the last `id` you processed as "
    "`after` (or the `next_cursor` of a page as `cursor`). `next_cursor` is null at the end "
    "of the feed; poll again later with `after`. Events still being committed by concurrent "
    "requests are held back until every lower id is settled, so reading on from `after` "
    "never skips one.\n\n`type` filters on one type, or on a family with `order.*`. Types: "
    + ", ".join(f"`{t}`" for t in EVENT_TYPES)
    + ".",
)
async def list_events(
    request: Request,
    principal: OpsKey,
    after: Annotated[
        str | None,
        Query(
            max_length=19,
            pattern=r"^\d+$",
            description="An event id: answer the events after it.",
            examples=["1234"],
        ),
    ] = None,
    type: Annotated[
        str | None,
        Query(
            max_length=64,
            pattern=r"^[a-z_]+(\.([a-z_]+|\*))?$",
            description="Only this type (`order.backordered`) or family (`order.*`).",
            examples=["order.backordered"],
        ),
    ] = None,
    limit: cursors.LimitQuery = 50,
    cursor: cursors.CursorQuery = None,
) -> Response:
    start = int(after) if after else 0
    if cursor is not None:
        decoded = cursors.decode(cursor, int)
        if decoded:
            start = max(start, decoded[0])
    start = min(start, MAX_EVENT_ID)
    exact, prefix = (None, type[:-1]) if type and type.endswith(".*") else (type, None)

    async def work(conn: AsyncConnection) -> dict[str, Any]:
        rows, more = await webhooks.read_feed(
            conn, after=start, type_=exact, prefix=prefix, limit=limit
        )
        data = [
            {"id": str(r.id), "type": r.type, "created_at": r.created_at, "data": r.data}
            for r in rows
        ]
        return page(data, cursors.encode(rows[-1].id) if more and rows else None)

    return await read(request, work)
