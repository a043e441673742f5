"""Promise dates: each backordered line's `expected_date`, kept current per SKU.

The SKU's open purchase orders cover its queue in (expected_date, created_at) order: a line's
date is that of the first PO whose running supply reaches the line's running demand (its
last unit). Overdue POs (past their date unreceived) cover nothing. Lines no PO covers take
the product's `expected_restock_date`, else null; lines with nothing backordered have no date
(the fill and the cancel clear it).

Two ways to keep the dates, both under the SKU lock:

- `refresh` of the whole queue, one set-based statement, after anything that can move
  several lines (a fill, a cancel, a reprioritisation, any purchase-order change, a
  placement in a priority queue). Lines whose date moves are announced, in queue order,
  with `backorder.expected_date_changed`, except the lines of a just-placed order.
- a placement in a FIFO queue only adds lines at the tail: nobody else's running demand
  changes, so only the new line is dated, from the product's `backordered` counter (its
  running demand) and the POs: one cheap statement, whatever the queue's length.

The promise before ordering (`GET /v1/products/{sku}/promise`) dates a would-be tail line
with the same expression (`tail_date`), without writing anything.

Deadlines ride on the same statements: a waiting line whose order has a `backorder_deadline`
carries it on its queue row, with `at_risk`, its state as last announced. Each of the two
statements compares the lines it dates (of those with a deadline: a partial index) with their
deadline (`at_risk_sql`, the rule of `domain/deadlines.py`), flips the ones that changed, and
writes `backorder.deadline_at_risk` for those that became at risk. A line's wait ending deletes
its queue row, state and all; so every change of a date, from any cause, is checked once.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection

from backorder.db.queue import QUEUE_ORDER
from backorder.domain.allocation import AllocationStrategy

# Supply in cover order, with its running total. An overdue PO (past its date, units still to
# come) is left out: its date is no longer a promise anyone can keep.
_OPEN_SUPPLY = """
    SELECT expected_date,
           row_number() OVER w AS n,
           CAST(sum(quantity - received) OVER w AS bigint) AS cum
    FROM purchase_order
    WHERE sku = :sku AND status = 'open' AND quantity > received AND overdue_at IS NULL
    WINDOW w AS (ORDER BY expected_date, created_at, id ROWS UNBOUNDED PRECEDING)
"""


def tail_date(demand: str) -> str:
    """The date of a line at the queue's tail whose running demand (its last unit's place in
    the queue) is the SQL expression `demand`, over a product row `p` of SKU `:sku`: the first
    PO whose running supply reaches it, else the product's own date. Placement (FIFO) and the
    promise before ordering both date a new line with it, so the two cannot disagree."""
    return f"""COALESCE(
    (SELECT po.expected_date FROM ({_OPEN_SUPPLY}) po
     WHERE po.cum >= {demand} ORDER BY po.n LIMIT 1),
    p.expected_restock_date)"""


def at_risk_sql(expected: str, deadline: str) -> str:
    """`domain/deadlines.at_risk` of a waiting line (the caller keeps to lines that wait and
    have a deadline): its date unknown, or after the deadline's UTC date."""
    return f"({expected} IS NULL OR {expected} > CAST(timezone('UTC', {deadline}) AS date))"


def _at_risk_event(line: str) -> str:
    """The `backorder.deadline_at_risk` event of a row `{line}` (line_id, order_id, deadline,
    expected_date) joined to its order `so`."""
    return f"""jsonb_build_object('order_id', {line}.order_id, 'line_id', {line}.line_id,
                          'sku', CAST(:sku AS text), 'backorder_deadline', {line}.deadline,
                          'expected_date', {line}.expected_date, 'customer_id', so.customer_id,
                          'channel', so.channel)"""


# The queue is walked once, in fill order, with its running demand `cum`. A line is covered by
# the first PO whose running supply reaches `cum`, i.e. PO number 1 + (how many POs' running
# supply is below `cum`): `width_bucket` counts that by binary search in the sorted running
# totals, so a long queue costs one pass, not one search of the POs per line. Past the last
# PO the subscript is NULL and the product's date applies. Only lines whose date moves are
# written (and announced, in queue order).
_REFRESH = """
WITH supply AS (
    SELECT array_agg(cum ORDER BY n) AS cums, array_agg(expected_date ORDER BY n) AS dates
    FROM ({supply}) po
), q AS (
    SELECT l.id, l.order_id, l.expected_date AS old,
           CAST(sum(l.backordered) OVER (ORDER BY h.n ROWS UNBOUNDED PRECEDING) AS bigint)
               AS cum
    FROM (SELECT line_id, row_number() OVER (ORDER BY {order}) AS n
          FROM backorder_queue WHERE sku = :sku) h
    JOIN order_line l ON l.id = h.line_id
), dated AS (
    SELECT q.id, q.order_id, q.old, q.cum,
           COALESCE(supply.dates[width_bucket(q.cum - 1, supply.cums) + 1],
                    (SELECT expected_restock_date FROM product WHERE sku = :sku)) AS new
    FROM q CROSS JOIN supply
), changed AS (
    SELECT * FROM dated WHERE old IS DISTINCT FROM new
), moved AS (
    UPDATE order_line l SET expected_date = c.new
    FROM changed c
    WHERE l.id = c.id AND l.expected_date IS DISTINCT FROM c.new
    RETURNING l.id, l.order_id, c.old, c.new, c.cum
), risk AS (
    -- The lines with a deadline (a partial index finds them, not the whole queue), at risk
    -- or not with their new dates; those whose state flips are written, and announced when
    -- they become at risk.
    SELECT b.line_id, d.order_id, b.deadline, d.new AS expected_date, d.cum, b.at_risk AS was,
           {at_risk} AS now
    FROM backorder_queue b JOIN dated d ON d.id = b.line_id
    WHERE b.sku = :sku AND b.deadline IS NOT NULL
), flagged AS (
    UPDATE backorder_queue b SET at_risk = r.now
    FROM risk r
    WHERE b.line_id = r.line_id AND b.at_risk <> r.now
    RETURNING r.line_id, r.order_id, r.deadline, r.expected_date, r.cum, r.now
)
INSERT INTO event (type, data)
SELECT ev.type, ev.data FROM (
    SELECT 'backorder.expected_date_changed' AS type, 0 AS kind, m.cum,
           jsonb_build_object('order_id', m.order_id, 'line_id', m.id,
                              'sku', CAST(:sku AS text), 'from', m.old, 'to', m.new,
                              'channel', so.channel) AS data
    FROM moved m JOIN sales_order so ON so.id = m.order_id
    WHERE m.order_id IS DISTINCT FROM CAST(:new_order AS uuid)
    UNION ALL
    SELECT 'backorder.deadline_at_risk', 1, f.cum, {at_risk_event}
    FROM flagged f JOIN sales_order so ON so.id = f.order_id
    WHERE f.now
) ev
ORDER BY ev.kind, ev.cum
"""
_REFRESH_SQL = {
    s: text(
        _REFRESH.format(
            order=o,
            supply=_OPEN_SUPPLY,
            at_risk=at_risk_sql("d.new", "b.deadline"),
            at_risk_event=_at_risk_event("f"),
        )
    )
    for s, o in QUEUE_ORDER.items()
}

# The new order's line is the FIFO tail, so its running demand is the whole queue's: the
# product's `backordered` counter, already saved by the placement.
# A new line with a deadline is at risk from placement on when its date says so.
_DATE_TAIL = text(
    f"""
WITH dated AS (
    UPDATE order_line l
    SET expected_date = {tail_date("p.backordered")}
    FROM product p
    WHERE p.sku = :sku AND l.order_id = :new_order AND l.sku = :sku AND l.backordered > 0
    RETURNING l.id, l.order_id, l.expected_date
), flagged AS (
    UPDATE backorder_queue b SET at_risk = true
    FROM dated d
    WHERE b.line_id = d.id AND b.deadline IS NOT NULL
      AND {at_risk_sql("d.expected_date", "b.deadline")}
    RETURNING b.line_id, d.order_id, b.deadline, d.expected_date
)
INSERT INTO event (type, data)
SELECT 'backorder.deadline_at_risk', {_at_risk_event("f")}
FROM flagged f JOIN sales_order so ON so.id = f.order_id
"""
)


# What a new line of :quantity units would be promised now: the product's figures (as the
# placement's refusal rules read them), the queue it would join at the tail, and the date of
# its last unit, whose running demand is the queue's plus its own backordered units. One
# statement, so that all of it is read from one snapshot.
# The running demand of the would-be line's last unit: the queue's, plus what it would wait for.
_QUOTE_DEMAND = (
    "p.backordered + CAST(:quantity AS bigint) "
    "- GREATEST(p.on_hand - p.allocated - p.unavailable, 0)"
)
_QUOTE = text(
    f"""
SELECT p.sku, p.backorders_allowed, p.backorder_limit, p.allocation_strategy, p.discontinued,
       p.expected_restock_date, p.reorder_point, p.on_hand, p.allocated, p.backordered,
       p.incoming, p.stock_state, p.unavailable,
       (SELECT count(*) FROM backorder_queue b WHERE b.sku = p.sku) AS lines_waiting,
       CASE WHEN CAST(:quantity AS bigint) > p.on_hand - p.allocated - p.unavailable
            THEN {tail_date(_QUOTE_DEMAND)} END AS tail_date
FROM product p
WHERE p.sku = :sku
"""
)


async def quote(conn: AsyncConnection, sku: str, quantity: int) -> Any | None:
    """The figures of a promise before ordering (None: no such product). Writes nothing."""
    return (await conn.execute(_QUOTE, {"sku": sku, "quantity": quantity})).one_or_none()


async def refresh_after_fill(
    conn: AsyncConnection, sku: str, strategy: AllocationStrategy, *, incoming: int
) -> None:
    """Bring the dates up to date after a fill or a cancellation. With no open purchase order
    (`incoming` 0 when the SKU was locked) every waiting line carries the product's own
    `expected_restock_date`, which neither changes: nothing can move, and a long queue is not
    walked for nothing."""
    if incoming:
        await refresh(conn, sku, strategy)


async def refresh(
    conn: AsyncConnection,
    sku: str,
    strategy: AllocationStrategy,
    *,
    new_order: UUID | None = None,
) -> None:
    """Bring the SKU's promise dates up to date after a change of its queue or supply.

    Call under the SKU lock, after the product's counters are saved. With `new_order` (a
    placement), that order's lines get their date without an event; in a FIFO queue they
    are the tail and nothing else moves, so only they are dated.
    """
    await conn.execute(*refresh_statement(sku, strategy, new_order=new_order))


def refresh_statement(
    sku: str, strategy: AllocationStrategy, *, new_order: UUID | None = None
) -> tuple[TextClause, dict[str, Any]]:
    """The one statement of `refresh`, for a caller that runs it itself (the lean order path
    sends it in a pipeline with the order's write)."""
    if new_order is not None and strategy == AllocationStrategy.FIFO:
        return _DATE_TAIL, {"sku": sku, "new_order": new_order}
    return _REFRESH_SQL[strategy], {"sku": sku, "new_order": new_order}
