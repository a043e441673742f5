"""/v1/reports and /v1/replenishment: the backorder situation and what to buy (ops only)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from backorder.api import cursors
from backorder.api.csv_export import CsvShape, csv_response_doc, listing
from backorder.api.deps import OpsKey
from backorder.api.docs import problems
from backorder.api.execute import read
from backorder.api.schemas.common import SKU_PATTERN, Page, page
from backorder.api.schemas.reports import BackorderReportOut, Instant, ReplenishmentRowOut
from backorder.domain.errors import ValidationFailed
from backorder.services import reports

router = APIRouter(tags=["Reports"])

REPLENISHMENT_CSV = CsvShape(
    "replenishment",
    (
        "sku",
        "available",
        "backordered",
        "incoming",
        "daily_demand",
        "lead_time_days",
        "safety_stock",
        "reorder_point",
        "reorder_point_source",
        "suggested_order_quantity",
        "discontinued",
    ),
)

_SKU = re.compile(SKU_PATTERN)


def _sku(value: str) -> str:
    """A cursor's SKU part; anything else (a NUL character, say) is a tampered cursor."""
    if not _SKU.match(value):
        raise ValueError("not a SKU")
    return value


SinceQuery = Annotated[
    Instant | None,
    Query(
        description="RFC 3339 date-time with offset, inclusive. Left out: from the beginning.",
        examples=["2026-11-01T00:00:00Z"],
    ),
]
UntilQuery = Annotated[
    Instant | None,
    Query(
        description="RFC 3339 date-time with offset, exclusive. Left out: up to now.",
        examples=["2026-12-01T00:00:00Z"],
    ),
]


@router.get(
    "/v1/reports/backorders",
    response_model=BackorderReportOut,
    responses=problems(403),
    summary="Backorder report",
    description="Figures for the orders **placed** in [`since`, `until`) (both optional; left "
    "out, all time):\n\n"
    "* `orders`, and `backordered_orders`: those that had at least one backordered unit when "
    "placed; `backorder_rate` is their share (0.0 when the window has no orders).\n"
    "* `fill_rate`: the share of ordered units that were allocated at placement (0.0 when "
    "nothing was ordered). Cancelled orders count: they were placed.\n"
    "* `avg_time_to_fill_hours`: for lines that waited and were then filled completely from "
    "the queue, the mean time from placement to the last unit's allocation (null if none).\n"
    "* `open_backorder_lines`, `open_backorder_units`, `oldest_open_backorder_at` and "
    "`avg_open_backorder_age_hours` (per line): those orders' lines still waiting **now**.\n"
    "* `top_skus`: at most 10 SKUs by open units, most first, ties by SKU.\n\n"
    "A `since` later than `until` is a 422.",
)
async def backorder_report(
    request: Request, principal: OpsKey, since: SinceQuery = None, until: UntilQuery = None
) -> Response:
    if since is not None and until is not None and since > until:
        raise ValidationFailed(
            "since must not be later than until",
            [{"loc": ["query", "since"], "field": "since", "msg": "later than until"}],
        )
    return await read(request, lambda conn: reports.backorder_report(conn, since, until))


@router.get(
    "/v1/replenishment",
    response_model=Page[ReplenishmentRowOut],
    responses={**problems(403), **csv_response_doc(REPLENISHMENT_CSV)},
    summary="Replenishment: what to order",
    description="One row per SKU, by SKU, in the list envelope:\n\n"
    "* `daily_demand`: every unit ordered over the trailing `days` (today, UTC, included), "
    "backordered and later-cancelled units too (true demand, not just sales), divided by "
    "`days`.\n"
    "* `reorder_point`: the product's own, or else `ceil(daily_demand * lead_time_days) + "
    "safety_stock` (an unset lead time or safety stock counts as 0).\n"
    "* `suggested_order_quantity`: `max(0, backordered + reorder_point - available - "
    "incoming)`: enough to serve everyone waiting and get back to the reorder point, after "
    "what is on the shelf and on open purchase orders.\n\n"
    "Discontinued products are left out: they are not to be bought again (their waiting "
    "lines, if any, are still in the backorder report).\n\n"
    "`needs_order=true` keeps only the SKUs with a suggestion above zero.\n\n"
    "With `Accept: text/csv`: every page from `cursor` on, as one CSV.",
)
async def replenishment(
    request: Request,
    principal: OpsKey,
    days: Annotated[
        int, Query(ge=1, le=365, description="Demand window in days, today included.")
    ] = 30,
    needs_order: Annotated[
        bool, Query(description="Only SKUs with `suggested_order_quantity > 0`.")
    ] = False,
    limit: cursors.LimitQuery = 50,
    cursor: cursors.CursorQuery = None,
) -> Response:
    async def fetch(conn: AsyncConnection, cursor: str | None, limit: int) -> dict[str, Any]:
        after = cursors.decode(cursor, _sku)
        rows = await reports.replenishment(
            conn,
            days=days,
            needs_order=needs_order,
            after=after[0] if after else None,
            limit=limit + 1,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return page(rows, cursors.encode(rows[-1]["sku"]) if more else None)

    return await listing(request, fetch, cursor, limit, REPLENISHMENT_CSV)
