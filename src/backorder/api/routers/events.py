"""/v1/events: the append-only event feed (the transactional outbox, read oldest first)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from backorder.api import cursors
from backorder.api.deps import AnyKey
from backorder.api.docs import problems
from backorder.api.execute import read
from backorder.api.schemas.common import ChannelQuery, Page, page
from backorder.api.schemas.events import EVENT_TYPES, EventOut
from backorder.db import feed
from backorder.domain.errors import Forbidden

router = APIRouter(prefix="/v1/events", tags=["Events"])


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
    "never skips one. A filtered read looks through at most 10,000 event ids: a page may "
    "then hold fewer than `limit` events (even none) with a `next_cursor` to read on from."
    "\n\n**A channel's view.** A storefront key reads its channel's view only: the events "
    "of its orders (`data.channel`), `product.low_stock`, and `product.back_in_stock` "
    "naming only its own subscribers (none of its own: the event is not in its view). Ops "
    "read every event, or one channel's view with `channel`.\n\n"
    "`type` filters on one type, or on a family with `order.*`. Types: "
    + ", ".join(f"`{t}`" for t in EVENT_TYPES)
    + ".",
)
async def list_events(
    request: Request,
    principal: AnyKey,
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
    channel: ChannelQuery = None,
    limit: cursors.LimitQuery = 50,
    cursor: cursors.CursorQuery = None,
) -> Response:
    if not principal.is_ops:
        if channel is not None and channel != principal.channel:
            raise Forbidden("a storefront key reads its own channel's events only")
        channel = principal.channel
    start = int(after) if after else 0
    if cursor is not None:
        decoded = cursors.decode(cursor, int)
        if decoded:
            start = max(start, decoded[0])
    start = min(start, feed.MAX_EVENT_ID)
    exact, prefix = (None, type[:-1]) if type and type.endswith(".*") else (type, None)

    async def work(conn: AsyncConnection) -> dict[str, Any]:
        rows, read_on = await feed.read_feed(
            conn, after=start, type_=exact, prefix=prefix, channel=channel, limit=limit
        )
        data = [
            {"id": str(r.id), "type": r.type, "created_at": r.created_at, "data": r.data}
            for r in rows
        ]
        return page(data, cursors.encode(read_on) if read_on is not None else None)

    return await read(request, work)
