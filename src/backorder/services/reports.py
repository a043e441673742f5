"""Use cases of ops reporting: the backorder report and what to buy.

The database aggregates; here the rates are divided and the rows shaped. Rates of an empty
window are 0.0 (not null), so a dashboard plots a number for every period.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from backorder.db import reports, trends


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


async def backorder_report(
    conn: AsyncConnection, since: datetime | None, until: datetime | None
) -> dict[str, Any]:
    """For orders placed in [since, until): how often and how much they waited."""
    return _report(await reports.backorder_figures(conn, since, until), since, until)


def _report(
    f: reports.BackorderFigures, since: datetime | None, until: datetime | None
) -> dict[str, Any]:
    return {
        "since": since,
        "until": until,
        "as_of": f.as_of,
        "orders": f.orders,
        "backordered_orders": f.backordered_orders,
        "backorder_rate": _share(f.backordered_orders, f.orders),
        "open_backorder_lines": f.open_lines,
        "open_backorder_units": f.open_units,
        "oldest_open_backorder_at": f.oldest_open_at,
        "avg_open_backorder_age_hours": f.avg_open_age_hours,
        "avg_time_to_fill_hours": f.avg_fill_hours,
        "fill_rate": _share(f.units_allocated_at_placement, f.units_ordered),
        "top_skus": f.top_skus,
    }


async def overview(conn: AsyncConnection, days: int) -> dict[str, Any]:
    """The console's overview: the report over all time (`report`, as `backorder_report`
    answers it), lines opened and filled per UTC day of the last `days` (`daily`), and the
    open lines by age (`ageing`), all as of one moment."""
    o = await trends.overview(conn, days)
    return {"report": _report(o.figures, None, None), "daily": o.daily, "ageing": o.ageing}


async def replenishment(
    conn: AsyncConnection, *, days: int, needs_order: bool, after: str | None, limit: int
) -> list[dict[str, Any]]:
    """Per SKU from `after` on, by SKU: demand, reorder point and the quantity to order."""
    rows = await reports.replenishment(
        conn, days=days, needs_order=needs_order, after=after, limit=limit
    )
    return [
        {
            "sku": r.sku,
            "available": r.available,
            "backordered": r.backordered,
            "incoming": r.incoming,
            "daily_demand": r.units_ordered / days,
            "lead_time_days": r.lead_time_days,
            "safety_stock": r.safety_stock,
            "reorder_point": r.reorder_point,
            "reorder_point_source": "product" if r.product_sets_reorder_point else "computed",
            "suggested_order_quantity": r.suggested_order_quantity,
            "discontinued": r.discontinued,
        }
        for r in rows
    ]
