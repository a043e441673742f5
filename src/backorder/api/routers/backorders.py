"""/v1/backorders: the queue, in the order it will be filled."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from backorder.api import cursors
from backorder.api.csv_export import CsvShape, csv_response_doc, listing
from backorder.api.deps import OpsKey
from backorder.api.docs import problems
from backorder.api.schemas.common import SKU_PATTERN, Page, page
from backorder.api.schemas.orders import BackorderOut
from backorder.db import queue

router = APIRouter(prefix="/v1/backorders", tags=["Backorder queue"])

CSV = CsvShape(
    "backorders",
    (
        "order_id",
        "line_id",
        "sku",
        "customer_id",
        "quantity",
        "priority",
        "created_at",
        "position",
        "expected_date",
    ),
)


@router.get(
    "",
    response_model=Page[BackorderOut],
    responses={**problems(403), **csv_response_doc(CSV)},
    summary="The backorder queue",
    description="Open backordered lines **in the order they will be filled**, SKU by SKU. "
    "`position` is 1 for the next line to be filled within its SKU. `fifo` products fill by "
    "placement time, then line id; `priority` products by priority (higher first), then "
    "placement time, then line id. Filter by `sku` and/or `customer_id`; an unknown query "
    "parameter is 422.\n\nWith `Accept: text/csv`: every page from `cursor` on, as one CSV.",
)
async def list_backorders(
    request: Request,
    principal: OpsKey,
    sku: Annotated[str | None, Query(pattern=SKU_PATTERN)] = None,
    customer_id: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=255,
            description="Only this customer's waiting lines (`position` stays the line's place "
            "in the whole SKU queue).",
            examples=["c-1001"],
        ),
    ] = None,
    limit: cursors.LimitQuery = 50,
    cursor: cursors.CursorQuery = None,
) -> Response:
    async def fetch(conn: AsyncConnection, cursor: str | None, limit: int) -> dict[str, Any]:
        after = cursors.decode(cursor, str, int, datetime.fromisoformat, UUID)
        rows = await queue.list_queue(
            conn, sku=sku, limit=limit + 1, after=after, customer_id=customer_id
        )
        more = len(rows) > limit
        rows = rows[:limit]
        data = [
            {
                "order_id": r.order_id,
                "line_id": r.line_id,
                "sku": r.sku,
                "customer_id": r.customer_id,
                "quantity": r.quantity,
                "priority": r.priority,
                "created_at": r.created_at,
                "position": r.position,
                "expected_date": r.expected_date,
            }
            for r in rows
        ]
        last = rows[-1] if rows else None
        next_cursor = (
            cursors.encode(last.sku, last.rank, last.created_at.isoformat(), last.line_id)
            if more and last
            else None
        )
        return page(data, next_cursor)

    return await listing(request, fetch, cursor, limit, CSV)
