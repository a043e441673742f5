"""/v1/reports and /v1/replenishment: the backorder situation and what to buy."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from backorder.api import cursors
from backorder.api.deps import OpsKey
from backorder.api.docs import problems
from backorder.api.execute import read
from backorder.api.schemas.common import Page, page
from backorder.db import reports

router = APIRouter(tags=["Reports"])


class TopSku(BaseModel):
    sku: str
    open_units: int
    lines: int


class BackorderReport(BaseModel):
    since: datetime | None
    until: datetime | None
    orders: int
    backordered_orders: int
    backorder_rate: float
    open_backorder_lines: int
    open_backorder_units: int
    oldest_open_backorder_at: datetime | None
    avg_open_backorder_age_hours: float | None
    avg_time_to_fill_hours: float | None
    fill_rate: float
    top_skus: list[TopSku]


class ReplenishmentRow(BaseModel):
    sku: str
    available: int
    backordered: int
    incoming: int
    daily_demand: float
    lead_time_days: int | None
    safety_stock: int | None
    reorder_point: int
    suggested_order_quantity: int


@router.get(
    "/v1/reports/backorders",
    response_model=BackorderReport,
    responses=problems(403),
    summary="Backorder report",
    description="For orders placed in [`since`, `until`) (both optional: all time): how many "
    "had a backordered unit when placed (`backorder_rate`), the share of ordered units "
    "allocated at placement (`fill_rate`), the average hours from placement to a backordered "
    "line being filled, and — among those orders' lines still waiting now — the open lines "
    "and units, the oldest, their average age and the top 10 SKUs by open units.",
)
async def backorder_report(
    request: Request,
    principal: OpsKey,
    since: Annotated[datetime | None, Query(description="RFC 3339, inclusive.")] = None,
    until: Annotated[datetime | None, Query(description="RFC 3339, exclusive.")] = None,
) -> Response:
    return await read(request, lambda conn: reports.backorder_report(conn, since, until))


@router.get(
    "/v1/replenishment",
    response_model=Page[ReplenishmentRow],
    responses=problems(403),
    summary="What to order",
    description="Per SKU: true daily demand over the trailing `days` (all ordered units, "
    "backordered ones too), the reorder point (the product's, or "
    "`ceil(daily_demand * lead_time_days) + safety_stock`), and the suggested order quantity "
    "`max(0, backordered + reorder_point - available - incoming)`. `needs_order=true` keeps "
    "only SKUs with a suggestion above zero.",
)
async def replenishment(
    request: Request,
    principal: OpsKey,
    days: Annotated[int, Query(ge=1, le=365)] = 30,
    needs_order: Annotated[bool, Query()] = False,
    limit: cursors.LimitQuery = 50,
    cursor: cursors.CursorQuery = None,
) -> Response:
    after = cursors.decode(cursor, str)

    async def work(conn: AsyncConnection) -> dict[str, Any]:
        rows = await reports.replenishment(
            conn,
            days=days,
            needs_order=needs_order,
            after=after[0] if after else None,
            limit=limit + 1,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return page(rows, cursors.encode(rows[-1]["sku"]) if more and rows else None)

    return await read(request, work)
