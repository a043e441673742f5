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

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

# Two branches, not one `OR`: each is then a join on its own index (the queue's, the lines'
# order), where an `OR` scanned every line of every order.
_SNAPSHOT = text(
    """
CREATE TEMPORARY TABLE dry_run_before ON COMMIT DROP AS
SELECT l.id AS line_id, l.order_id, l.allocated, l.backordered, l.shipped, l.cancelled,
       l.expected_date, o.status, o.ready_to_ship, o.channel
FROM backorder_queue q
JOIN order_line l ON l.id = q.line_id
JOIN sales_order o ON o.id = l.order_id
WHERE q.sku = ANY(CAST(:skus AS text[]))
UNION
SELECT l.id, l.order_id, l.allocated, l.backordered, l.shipped, l.cancelled,
       l.expected_date, o.status, o.ready_to_ship, o.channel
FROM order_line l
JOIN sales_order o ON o.id = l.order_id
WHERE l.order_id = ANY(CAST(:orders AS uuid[]))
"""
)
# A temporary table is never analysed on its own: without its size the comparison below was
# planned for a few rows.
_ANALYZE = text("ANALYZE dry_run_before")

# The orders as they now are, of which a line's units, the status or `ready_to_ship` moved,
# and the waiting lines whose date moved (to null when the wait ends): each list made as JSON
# in PostgreSQL, oldest first (a 100,000-line restock changes 100,000 orders).
_CHANGES = text(
    """
WITH now AS (
    SELECT b.*, l.allocated AS a, l.backordered AS o, l.shipped AS s, l.cancelled AS c,
           l.expected_date AS after, l.created_at, so.status AS status_after,
           so.ready_to_ship AS ready_after, so.created_at AS placed
    FROM dry_run_before b
    JOIN order_line l ON l.id = b.line_id
    JOIN sales_order so ON so.id = b.order_id
    WHERE CAST(:channel AS text) IS NULL OR b.channel = :channel
), orders AS (
    SELECT DISTINCT ON (order_id) order_id, status_after, ready_after, placed
    FROM now
    WHERE (allocated, backordered, shipped, cancelled, status, ready_to_ship)
          IS DISTINCT FROM (a, o, s, c, status_after, ready_after)
)
SELECT
    (SELECT CAST(COALESCE(json_agg(json_build_object('order_id', order_id,
                                                     'status', status_after,
                                                     'ready_to_ship', ready_after)
                                   ORDER BY placed, order_id), '[]') AS text)
     FROM orders) AS orders,
    (SELECT CAST(COALESCE(json_agg(json_build_object('line_id', line_id,
                                                     'before', expected_date, 'after', after)
                                   ORDER BY created_at, line_id), '[]') AS text)
     FROM now WHERE backordered > 0 AND expected_date IS DISTINCT FROM after) AS dates
"""
)


async def snapshot(conn: AsyncConnection, skus: list[str], orders: list[UUID]) -> None:
    """Keep, for this transaction, the lines waiting for `skus` and the lines of `orders`."""
    await conn.execute(_SNAPSHOT, {"skus": skus, "orders": orders})
    await conn.execute(_ANALYZE)


async def changes(conn: AsyncConnection, channel: str | None) -> dict[str, Any]:
    """What moved since `snapshot`: `orders` and `expected_dates` as the contract shows them
    (ready-made JSON); with `channel`, only that channel's (a storefront sees no other's)."""
    row = (await conn.execute(_CHANGES, {"channel": channel})).one()
    return {
        "orders": orjson.Fragment(row.orders),
        "expected_dates": orjson.Fragment(row.dates),
    }
