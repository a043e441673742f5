"""What a call would change, for `?dry_run=true`: the waiting lines and orders before and after.

A dry run does the real work in a transaction that is rolled back (`services/rehearsal.py`).
Before the work, the lines it can change are copied into a temporary table (dropped with the
transaction): every line waiting in the SKUs' queues, and every line of the orders the call
names. After the work, the same lines are read again and compared, in PostgreSQL, so a queue
of 100,000 lines is not carried through Python twice.

The calls that take a dry run change only those lines: stock that arrives or is freed fills
waiting lines; a cancel or a shipment changes the order it names; dates move only on
waiting lines (`db/promises.py`).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_SNAPSHOT = text(
    """
CREATE TEMPORARY TABLE dry_run_before ON COMMIT DROP AS
SELECT l.id AS line_id, l.order_id, l.allocated, l.backordered, l.shipped, l.cancelled,
       l.expected_date, o.status, o.ready_to_ship, o.channel
FROM order_line l
JOIN sales_order o ON o.id = l.order_id
WHERE l.id IN (SELECT line_id FROM backorder_queue WHERE sku = ANY(CAST(:skus AS text[])))
   OR l.order_id = ANY(CAST(:orders AS uuid[]))
"""
)

# The orders as they now are, of which a line's units, the status or `ready_to_ship` moved.
_ORDERS = text(
    """
SELECT o.id AS order_id, o.status, o.ready_to_ship
FROM sales_order o
WHERE o.id IN (
    SELECT b.order_id
    FROM dry_run_before b
    JOIN order_line l ON l.id = b.line_id
    JOIN sales_order now ON now.id = b.order_id
    WHERE (b.allocated, b.backordered, b.shipped, b.cancelled, b.status, b.ready_to_ship)
          IS DISTINCT FROM
          (l.allocated, l.backordered, l.shipped, l.cancelled, now.status, now.ready_to_ship)
      AND (CAST(:channel AS text) IS NULL OR b.channel = :channel)
)
ORDER BY o.created_at, o.id
"""
)

# The lines that waited, of which the date moved (to null when the wait ends).
_DATES = text(
    """
SELECT b.line_id, b.expected_date AS before, l.expected_date AS after
FROM dry_run_before b
JOIN order_line l ON l.id = b.line_id
WHERE b.backordered > 0
  AND b.expected_date IS DISTINCT FROM l.expected_date
  AND (CAST(:channel AS text) IS NULL OR b.channel = :channel)
ORDER BY l.created_at, l.id
"""
)


async def snapshot(conn: AsyncConnection, skus: list[str], orders: list[UUID]) -> None:
    """Keep, for this transaction, the lines waiting for `skus` and the lines of `orders`."""
    await conn.execute(_SNAPSHOT, {"skus": skus, "orders": orders})


async def changes(conn: AsyncConnection, channel: str | None) -> dict[str, Any]:
    """What moved since `snapshot`: `orders` and `expected_dates` as the contract shows them;
    with `channel`, only that channel's orders and lines (a storefront sees no other's)."""
    params = {"channel": channel}
    orders = (await conn.execute(_ORDERS, params)).all()
    dates = (await conn.execute(_DATES, params)).all()
    return {
        "orders": [
            {"order_id": r.order_id, "status": r.status, "ready_to_ship": r.ready_to_ship}
            for r in orders
        ],
        "expected_dates": [
            {"line_id": r.line_id, "before": r.before, "after": r.after} for r in dates
        ],
    }
