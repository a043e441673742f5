"""Aggregates for ops, computed in PostgreSQL."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_WINDOW = """
    o.created_at >= COALESCE(CAST(:since AS timestamptz), '-infinity')
    AND o.created_at < COALESCE(CAST(:until AS timestamptz), 'infinity')
"""

_SUMMARY = text(f"""
SELECT
    count(DISTINCT o.id) AS orders,
    count(DISTINCT o.id) FILTER (WHERE o.backordered_at_placement) AS backordered_orders,
    COALESCE(sum(l.quantity), 0) AS units,
    COALESCE(sum(l.quantity - l.initial_backordered), 0) AS units_at_placement,
    count(*) FILTER (WHERE l.backordered > 0) AS open_lines,
    COALESCE(sum(l.backordered), 0) AS open_units,
    min(l.created_at) FILTER (WHERE l.backordered > 0) AS oldest_open,
    avg(extract(epoch FROM clock_timestamp() - l.created_at) / 3600.0)
        FILTER (WHERE l.backordered > 0) AS avg_open_age_hours,
    avg(extract(epoch FROM l.filled_at - l.created_at) / 3600.0)
        FILTER (WHERE l.initial_backordered > 0 AND l.filled_at IS NOT NULL)
        AS avg_fill_hours
FROM sales_order o JOIN order_line l ON l.order_id = o.id
WHERE {_WINDOW}
""")

_TOP = text(f"""
SELECT l.sku, sum(l.backordered) AS open_units, count(*) AS lines
FROM sales_order o JOIN order_line l ON l.order_id = o.id
WHERE l.backordered > 0 AND {_WINDOW}
GROUP BY l.sku ORDER BY open_units DESC, l.sku LIMIT 10
""")


async def backorder_report(
    conn: AsyncConnection, since: datetime | None, until: datetime | None
) -> dict[str, Any]:
    params = {"since": since, "until": until}
    s = (await conn.execute(_SUMMARY, params)).one()
    top = (await conn.execute(_TOP, params)).all()
    orders = int(s.orders)
    units = int(s.units)
    return {
        "since": since,
        "until": until,
        "orders": orders,
        "backordered_orders": int(s.backordered_orders),
        "backorder_rate": round(s.backordered_orders / orders, 6) if orders else 0.0,
        "open_backorder_lines": int(s.open_lines),
        "open_backorder_units": int(s.open_units),
        "oldest_open_backorder_at": s.oldest_open,
        "avg_open_backorder_age_hours": _hours(s.avg_open_age_hours),
        "avg_time_to_fill_hours": _hours(s.avg_fill_hours),
        "fill_rate": round(int(s.units_at_placement) / units, 6) if units else 0.0,
        "top_skus": [
            {"sku": r.sku, "open_units": int(r.open_units), "lines": int(r.lines)} for r in top
        ],
    }


def _hours(value: Any) -> float | None:
    return None if value is None else round(float(value), 4)


_REPLENISHMENT = text("""
WITH demand AS (
    SELECT l.sku, sum(l.quantity) AS units
    FROM order_line l
    WHERE l.created_at >= date_trunc('day', clock_timestamp()) - make_interval(days => :days - 1)
    GROUP BY l.sku
), rows AS (
    SELECT p.sku, p.on_hand - p.allocated AS available, p.backordered, p.incoming,
           COALESCE(d.units, 0)::numeric / :days AS daily_demand,
           p.lead_time_days, p.safety_stock, p.reorder_point AS explicit_reorder_point
    FROM product p LEFT JOIN demand d ON d.sku = p.sku
    WHERE NOT p.discontinued AND p.sku > :after
), computed AS (
    SELECT *, COALESCE(explicit_reorder_point,
                       ceil(daily_demand * COALESCE(lead_time_days, 0))::bigint
                       + COALESCE(safety_stock, 0)) AS reorder_point
    FROM rows
)
SELECT *, GREATEST(0, backordered + reorder_point - available - incoming)
          AS suggested_order_quantity
FROM computed
WHERE NOT :needs_order OR backordered + reorder_point - available - incoming > 0
ORDER BY sku LIMIT :limit
""")


async def replenishment(
    conn: AsyncConnection, *, days: int, needs_order: bool, after: str | None, limit: int
) -> list[dict[str, Any]]:
    rows = await conn.execute(
        _REPLENISHMENT,
        {"days": days, "needs_order": needs_order, "after": after or "", "limit": limit},
    )
    return [
        {
            "sku": r.sku,
            "available": int(r.available),
            "backordered": int(r.backordered),
            "incoming": int(r.incoming),
            "daily_demand": round(float(r.daily_demand), 4),
            "lead_time_days": r.lead_time_days,
            "safety_stock": r.safety_stock,
            "reorder_point": int(r.reorder_point),
            "suggested_order_quantity": int(r.suggested_order_quantity),
        }
        for r in rows
    ]
