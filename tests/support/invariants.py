"""The invariants of docs/reference.md ("Invariants"), checked in SQL on the live database.

`check_invariants(database_url)` answers a dict of figures; `assert_invariants` fails a test
with that dict when any violation count is above zero.

Two of the checks restate CHECK constraints of the schema (`SCHEMA_ENFORCED`): a write that
would break them fails in PostgreSQL, so they count 0 by construction. They stay as a second
line of defence (a migration could drop a constraint), but the figures keep them apart:
`evidence_violations` counts only the checks that a wrong but well-formed write could fail.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from backorder.db.orders import READY_SQL, STATUS_SQL


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


# Each query answers offending rows; the key names the invariant.
_CHECKS: dict[str, str] = {
    # 1. 0 <= allocated <= on_hand
    "allocated_out_of_range": """
        SELECT sku, on_hand, allocated FROM product
        WHERE allocated < 0 OR allocated > on_hand OR on_hand < 0 OR backordered < 0
    """,
    # 1. on_hand = sum of the ledger
    "on_hand_not_ledger": """
        SELECT p.sku, p.on_hand, COALESCE(m.total, 0) AS ledger FROM product p
        LEFT JOIN (SELECT sku, SUM(quantity) AS total FROM stock_movement GROUP BY sku) m
          ON m.sku = p.sku
        WHERE p.on_hand <> COALESCE(m.total, 0)
    """,
    # counters = sums over lines
    "counters_not_lines": """
        SELECT p.sku, p.allocated, p.backordered,
               COALESCE(l.allocated, 0) AS line_allocated,
               COALESCE(l.backordered, 0) AS line_backordered
        FROM product p
        LEFT JOIN (SELECT sku, SUM(allocated) AS allocated, SUM(backordered) AS backordered
                   FROM order_line GROUP BY sku) l ON l.sku = p.sku
        WHERE p.allocated <> COALESCE(l.allocated, 0)
           OR p.backordered <> COALESCE(l.backordered, 0)
    """,
    # 2. available > 0 => nobody waits
    "idle_stock_while_waiting": """
        SELECT p.sku, p.on_hand - p.allocated AS available, SUM(l.backordered) AS waiting
        FROM product p JOIN order_line l ON l.sku = p.sku AND l.backordered > 0
        WHERE p.on_hand - p.allocated > 0
        GROUP BY p.sku, p.on_hand, p.allocated
    """,
    # 3. quantity = allocated + backordered + shipped + cancelled, all parts >= 0
    "line_parts_do_not_add_up": """
        SELECT id, sku, quantity, allocated, backordered, shipped, cancelled FROM order_line
        WHERE quantity <> allocated + backordered + shipped + cancelled
           OR allocated < 0 OR backordered < 0 OR shipped < 0 OR cancelled < 0
    """,
    # what waited at placement is part of the line (no constraint says so)
    "initial_backordered_out_of_range": """
        SELECT id, quantity, initial_backordered FROM order_line
        WHERE initial_backordered < 0 OR initial_backordered > quantity
    """,
    # 3'. shipped units match the ledger's shipments
    "shipped_not_ledger": """
        SELECT p.sku, COALESCE(l.shipped, 0) AS line_shipped, COALESCE(m.shipped, 0) AS ledger
        FROM product p
        LEFT JOIN (SELECT sku, SUM(shipped) AS shipped FROM order_line GROUP BY sku) l
          ON l.sku = p.sku
        LEFT JOIN (SELECT sku, -SUM(quantity) AS shipped FROM stock_movement
                   WHERE kind = 'shipment' GROUP BY sku) m ON m.sku = p.sku
        WHERE COALESCE(l.shipped, 0) <> COALESCE(m.shipped, 0)
    """,
    # 4a. (any strategy) a line that still waits has waited since it was placed, so a later
    # line that took stock at placement took it while stock idled beside a waiting customer.
    "placed_past_waiting_line": """
        SELECT w.id AS waiting_line, x.id AS later_line, w.sku
        FROM order_line w JOIN order_line x
          ON x.sku = w.sku AND (x.created_at, x.id) > (w.created_at, w.id)
        WHERE w.backordered > 0 AND x.quantity - x.initial_backordered > 0
    """,
    # 4b. (fifo) a line that still waits was ahead of every later line for its whole life,
    # so no later line can have received units from a fill. A line's allocated + shipped can
    # exceed what it took at placement only through fills (cancellations only lower it), so
    # the test is sound with cancellations too.
    "filled_out_of_fifo_order": """
        SELECT w.id AS waiting_line, x.id AS later_line, w.sku
        FROM order_line w
        JOIN product p ON p.sku = w.sku AND p.allocation_strategy = 'fifo'
        JOIN order_line x
          ON x.sku = w.sku AND (x.created_at, x.id) > (w.created_at, w.id)
        WHERE w.backordered > 0
          AND x.allocated + x.shipped > x.quantity - x.initial_backordered
    """,
    # queue keys copied from the order agree with it
    "line_keys_not_order": """
        SELECT l.id FROM order_line l JOIN sales_order o ON o.id = l.order_id
        LEFT JOIN backorder_queue q ON q.line_id = l.id
        WHERE l.created_at <> o.created_at OR q.priority <> o.priority
           OR q.created_at <> l.created_at OR q.sku <> l.sku
    """,
    # the queue holds exactly the lines that wait
    "queue_not_waiting_lines": """
        SELECT l.id, q.line_id FROM order_line l
        FULL JOIN backorder_queue q ON q.line_id = l.id
        WHERE (l.backordered > 0) IS DISTINCT FROM (q.line_id IS NOT NULL)
    """,
    # the products' totals for /metrics agree with the lines and the events they sum
    "metric_totals_not_history": """
        SELECT p.sku, p.units_backordered_at_placement, p.units_filled_from_queue
        FROM product p
        LEFT JOIN (SELECT sku, SUM(initial_backordered) AS units FROM order_line GROUP BY sku) l
          ON l.sku = p.sku
        LEFT JOIN (SELECT data->>'sku' AS sku, SUM(CAST(data->>'quantity' AS bigint)) AS units
                   FROM event WHERE type = 'order.line_allocated' GROUP BY 1) e
          ON e.sku = p.sku
        WHERE p.units_backordered_at_placement <> COALESCE(l.units, 0)
           OR p.units_filled_from_queue <> COALESCE(e.units, 0)
    """,
    # with no open purchase order, a waiting line is promised the product's own date (what
    # lets a fill skip re-dating the queue: see `promises.refresh_after_fill`)
    "unsupplied_line_not_product_date": """
        SELECT l.id, l.expected_date, p.expected_restock_date
        FROM backorder_queue q JOIN order_line l ON l.id = q.line_id
        JOIN product p ON p.sku = q.sku
        WHERE p.incoming = 0 AND l.expected_date IS DISTINCT FROM p.expected_restock_date
    """,
    # an order's unit counters, status and readiness are what its lines say (a fill of one
    # SKU must not compute them from another SKU's lines as they were before a concurrent fill)
    "order_status_not_lines": f"""
        SELECT o.id, o.status, o.ready_to_ship, s.a, s.o, s.s FROM sales_order o
        JOIN (SELECT order_id, SUM(allocated) AS a, SUM(backordered) AS o, SUM(shipped) AS s
              FROM order_line GROUP BY order_id) s ON s.order_id = o.id
        WHERE o.status <> ({STATUS_SQL.format(o="s.o", a="s.a", s="s.s")})
           OR o.ready_to_ship <> {READY_SQL.format(o="s.o", a="s.a", policy="o.ship_policy")}
           OR (o.allocated, o.backordered, o.shipped) <> (s.a, s.o, s.s)
    """,
    "order_without_lines": """
        SELECT o.id FROM sales_order o
        WHERE NOT EXISTS (SELECT 1 FROM order_line l WHERE l.order_id = o.id)
    """,
}

# Restated CHECK constraints (`db/tables.py`): `allocated_within_on_hand`, `on_hand_nonnegative`,
# `backordered_nonnegative` on product; `parts_add_up`, `parts_nonnegative` on order_line.
SCHEMA_ENFORCED = frozenset({"allocated_out_of_range", "line_parts_do_not_add_up"})

_FIGURES = """
    SELECT
      (SELECT COUNT(*) FROM product) AS products,
      (SELECT COUNT(*) FROM sales_order) AS orders,
      (SELECT COUNT(*) FROM order_line) AS lines,
      (SELECT COALESCE(SUM(on_hand), 0) FROM product) AS on_hand,
      (SELECT COALESCE(SUM(allocated), 0) FROM product) AS allocated,
      (SELECT COALESCE(SUM(backordered), 0) FROM product) AS backordered,
      (SELECT COALESCE(SUM(shipped), 0) FROM order_line) AS shipped,
      (SELECT COALESCE(SUM(cancelled), 0) FROM order_line) AS cancelled,
      (SELECT COALESCE(SUM(GREATEST(allocated - on_hand, 0)), 0) FROM product) AS oversold_units
"""


def check_invariants(database_url: str) -> dict[str, Any]:
    """All figures and violations, read in one REPEATABLE READ snapshot."""
    with psycopg.connect(_plain(database_url), row_factory=dict_row) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        figures = conn.execute(_FIGURES).fetchone()
        assert figures is not None
        out: dict[str, Any] = {k: int(v) for k, v in figures.items()}
        violations: dict[str, int] = {}
        examples: dict[str, list[dict[str, Any]]] = {}
        for name, sql in _CHECKS.items():
            rows = conn.execute(sql).fetchall()
            violations[name] = len(rows)
            if rows:
                examples[name] = [{k: str(v) for k, v in r.items()} for r in rows[:5]]
        conn.rollback()
    out["violations"] = violations
    out["violation_total"] = sum(violations.values())
    out["evidence_violations"] = sum(
        n for name, n in violations.items() if name not in SCHEMA_ENFORCED
    )
    out["examples"] = examples
    return out


def assert_invariants(database_url: str) -> dict[str, Any]:
    figures = check_invariants(database_url)
    assert figures["oversold_units"] == 0, figures
    assert figures["violation_total"] == 0, figures
    return figures
