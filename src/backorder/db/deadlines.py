"""The SQL of backorder deadlines that pass: which orders are due, and the database's clock.

An order is due when one of its lines still waits (a `backorder_queue` row) and the deadline
copied onto that row has passed. The queue rows with a deadline have a partial index by
deadline, so a look costs the due rows, not the queue.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

# Oldest deadline first, keyset-paginated on (deadline, order_id): a pass walks the due rows
# once, even past an order it leaves alone (a re-check under the locks may find it filled).
_DUE_ORDERS = text(
    """
WITH after AS (
    SELECT COALESCE(CAST(:after_deadline AS timestamptz), '-infinity') AS deadline,
           COALESCE(CAST(:after_order AS uuid), '00000000-0000-0000-0000-000000000000') AS id
)
SELECT q.deadline, l.order_id
FROM after, backorder_queue q JOIN order_line l ON l.id = q.line_id
WHERE q.deadline IS NOT NULL AND q.deadline >= after.deadline AND q.deadline <= now()
  AND (q.deadline, l.order_id) > (after.deadline, after.id)
GROUP BY q.deadline, l.order_id
ORDER BY q.deadline, l.order_id
LIMIT :limit
"""
)

DueKey = tuple[datetime, UUID]


async def due_orders(
    conn: AsyncConnection, limit: int, after: DueKey | None = None
) -> list[DueKey]:
    """Up to `limit` orders with a waiting line whose deadline has passed, after `after`, as
    `(deadline, order_id)` keys (the last one is the next call's `after`)."""
    after_deadline, after_order = after if after is not None else (None, None)
    rows = await conn.execute(
        _DUE_ORDERS,
        {"after_deadline": after_deadline, "after_order": after_order, "limit": limit},
    )
    return [(r.deadline, r.order_id) for r in rows]


async def clock(conn: AsyncConnection) -> datetime:
    """The database's time now (not the transaction's start: a caller may have waited for
    locks since). Deadlines are compared with it, as the due orders were found by it."""
    now: datetime = (await conn.execute(text("SELECT clock_timestamp()"))).scalar_one()
    return now
