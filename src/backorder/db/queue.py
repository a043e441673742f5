"""Reading the backorder queue: open backordered lines in the order they will be filled."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from backorder.domain.allocation import AllocationStrategy

# Fill order within a SKU, over `backorder_queue`'s columns (its two indexes serve them).
QUEUE_ORDER = {
    AllocationStrategy.FIFO: "created_at, line_id",
    AllocationStrategy.PRIORITY: "priority DESC, created_at, line_id",
}

# Queue key per SKU: `fifo` sorts by (created_at, id); `priority` puts higher priority first.
# Folding the strategy into one leading term lets one keyset cursor walk every SKU's queue.
_RANK = "CASE WHEN p.allocation_strategy = 'priority' THEN -b.priority ELSE 0 END"


async def list_queue(
    conn: AsyncConnection,
    *,
    sku: str | None,
    limit: int,
    after: tuple[Any, ...] | None,
    customer_id: str | None = None,
) -> list[Any]:
    """A page of the queue; `after` is the (sku, rank, created_at, line_id) of the last row.
    `customer_id` keeps that customer's lines, each still with its place in the whole queue."""
    params: dict[str, Any] = {"limit": limit}
    sku_filter = ""
    if sku is not None:
        sku_filter = "AND b.sku = :sku"
        params["sku"] = sku
    keyset = "TRUE"
    if after is not None:
        keyset = "(q.sku, q.rank, q.created_at, q.line_id) > (:c_sku, :c_rank, :c_at, :c_id)"
        params.update(c_sku=after[0], c_rank=after[1], c_at=after[2], c_id=after[3])
    if customer_id is not None:
        keyset += " AND o.customer_id = :customer_id"
        params["customer_id"] = customer_id
    sql = f"""
SELECT q.*, l.order_id, l.backordered AS quantity, l.expected_date, o.customer_id
FROM (
    SELECT b.line_id, b.sku, b.priority, b.created_at, {_RANK} AS rank,
           row_number() OVER (PARTITION BY b.sku ORDER BY {_RANK}, b.created_at, b.line_id)
               AS position
    FROM backorder_queue b JOIN product p ON p.sku = b.sku
    WHERE TRUE {sku_filter}
) q
JOIN order_line l ON l.id = q.line_id
JOIN sales_order o ON o.id = l.order_id
WHERE {keyset}
ORDER BY q.sku, q.rank, q.created_at, q.line_id
LIMIT :limit
"""
    return list((await conn.execute(text(sql), params)).all())


async def list_sku_queue(
    conn: AsyncConnection,
    sku: str,
    strategy: AllocationStrategy,
    *,
    limit: int,
    after: tuple[int, Any, Any, int] | None,
) -> list[Any]:
    """One SKU's queue from a place in it on: a walk of the strategy's index that stops at
    `limit`, whatever the queue's length (`list_queue` numbers the whole queue for its
    positions). `after`: the (priority, created_at, line_id, position) of the last row seen;
    positions go on from it."""
    params: dict[str, Any] = {"sku": sku, "limit": limit}
    keyset = "TRUE"
    if after is not None:
        params.update(c_priority=after[0], c_at=after[1], c_id=after[2])
        keyset = "(b.created_at, b.line_id) > (:c_at, :c_id)"
        if strategy is AllocationStrategy.PRIORITY:
            keyset = f"(b.priority < :c_priority OR (b.priority = :c_priority AND {keyset}))"
    order = ", ".join(f"b.{term}" for term in QUEUE_ORDER[strategy].split(", "))
    sql = f"""
SELECT b.line_id, b.sku, b.priority, b.created_at, l.order_id, l.backordered AS quantity,
       l.expected_date, o.customer_id, :start + row_number() OVER (ORDER BY {order}) AS position
FROM backorder_queue b
JOIN order_line l ON l.id = b.line_id
JOIN sales_order o ON o.id = l.order_id
WHERE b.sku = :sku AND {keyset}
ORDER BY {order}
LIMIT :limit
"""
    params["start"] = after[3] if after is not None else 0
    return list((await conn.execute(text(sql), params)).all())
