"""Promise dates: each backordered line's `expected_date`, kept current per SKU.

Walk the SKU's queue in fill order against its open purchase orders in (expected_date,
created_at) order: a line's date is that of the PO whose cumulative remaining quantity first
covers the line's last unit; lines no PO covers take the product's `expected_restock_date`
(else null). Lines with nothing backordered have no date. One set-based statement per SKU;
lines whose date moves are announced with `backorder.expected_date_changed`.
"""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from backorder.domain.allocation import AllocationStrategy

_QUEUE_ORDER = {
    AllocationStrategy.FIFO: "created_at, id",
    AllocationStrategy.PRIORITY: "priority DESC, created_at, id",
}

_REFRESH = """
WITH q AS (
    SELECT id, order_id, expected_date AS old,
           sum(backordered) OVER (ORDER BY {order} ROWS UNBOUNDED PRECEDING) AS cum
    FROM order_line WHERE sku = :sku AND backordered > 0
), po AS (
    SELECT expected_date,
           sum(quantity - received) OVER (ORDER BY expected_date, created_at, id
                                          ROWS UNBOUNDED PRECEDING) AS cum
    FROM purchase_order WHERE sku = :sku AND status = 'open' AND quantity > received
), dated AS (
    SELECT q.id, q.order_id, q.old,
           COALESCE((SELECT po.expected_date FROM po WHERE po.cum >= q.cum
                     ORDER BY po.cum LIMIT 1),
                    (SELECT expected_restock_date FROM product WHERE sku = :sku)) AS new
    FROM q
), moved AS (
    UPDATE order_line l SET expected_date = d.new
    FROM dated d
    WHERE l.id = d.id AND l.expected_date IS DISTINCT FROM d.new
    RETURNING l.id, l.order_id, d.old, d.new
)
INSERT INTO event (type, data)
SELECT 'backorder.expected_date_changed',
       jsonb_build_object('order_id', order_id, 'line_id', id, 'sku', CAST(:sku AS text),
                          'from', old, 'to', new)
FROM moved
WHERE order_id IS DISTINCT FROM CAST(:new_order AS uuid)
ORDER BY id
"""
_REFRESH_SQL = {s: text(_REFRESH.format(order=o)) for s, o in _QUEUE_ORDER.items()}


async def refresh(
    conn: AsyncConnection,
    sku: str,
    strategy: AllocationStrategy,
    *,
    new_order: UUID | None = None,
) -> None:
    """Recompute the SKU's promise dates; lines of `new_order` get theirs without an event."""
    await conn.execute(_REFRESH_SQL[strategy], {"sku": sku, "new_order": new_order})
