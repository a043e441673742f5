"""Reading the backorder queue: open backordered lines in the order they will be filled."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

# Queue key per SKU: `fifo` sorts by (created_at, id); `priority` puts higher priority first.
# Folding the strategy into one leading term lets one keyset cursor walk every SKU's queue.
_RANK = "CASE WHEN p.allocation_strategy = 'priority' THEN -l.priority ELSE 0 END"


async def list_queue(
    conn: AsyncConnection, *, sku: str | None, limit: int, after: tuple[Any, ...] | None
) -> list[Any]:
    """A page of the queue; `after` is the (sku, rank, created_at, line_id) of the last row."""
    params: dict[str, Any] = {"limit": limit}
    sku_filter = ""
    if sku is not None:
        sku_filter = "AND l.sku = :sku"
        params["sku"] = sku
    keyset = "TRUE"
    if after is not None:
        keyset = "(q.sku, q.rank, q.created_at, q.line_id) > (:c_sku, :c_rank, :c_at, :c_id)"
        params.update(c_sku=after[0], c_rank=after[1], c_at=after[2], c_id=after[3])
    sql = f"""
SELECT q.*, o.customer_id
FROM (
    SELECT l.order_id, l.id AS line_id, l.sku, l.backordered AS quantity, l.priority,
           l.created_at, l.expected_date, {_RANK} AS rank,
           row_number() OVER (PARTITION BY l.sku ORDER BY {_RANK}, l.created_at, l.id)
               AS position
    FROM order_line l JOIN product p ON p.sku = l.sku
    WHERE l.backordered > 0 {sku_filter}
) q
JOIN sales_order o ON o.id = q.order_id
WHERE {keyset}
ORDER BY q.sku, q.rank, q.created_at, q.line_id
LIMIT :limit
"""
    return list((await conn.execute(text(sql), params)).all())
