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
from backorder.db.promises import at_risk_sql


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
    # 2. available > 0 => nobody waits (units held back at inactive locations are not
    # available: `unavailable`, checked against the locations below)
    "idle_stock_while_waiting": """
        SELECT p.sku, p.on_hand - p.allocated - p.unavailable AS available,
               SUM(l.backordered) AS waiting
        FROM product p JOIN order_line l ON l.sku = p.sku AND l.backordered > 0
        WHERE p.on_hand - p.allocated - p.unavailable > 0
        GROUP BY p.sku, p.on_hand, p.allocated, p.unavailable
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
    # a waiting line carries its order's deadline (the expiry watch and the at-risk lists
    # read it there)
    "queue_deadline_not_order": """
        SELECT q.line_id, q.deadline, o.backorder_deadline
        FROM backorder_queue q JOIN order_line l ON l.id = q.line_id
        JOIN sales_order o ON o.id = l.order_id
        WHERE q.deadline IS DISTINCT FROM o.backorder_deadline
    """,
    # its announced state is the at-risk rule over its date now: every change of a date went
    # through a statement that flips it (`db/promises.py`)...
    "queue_at_risk_not_rule": f"""
        SELECT q.line_id, q.at_risk, l.expected_date, q.deadline
        FROM backorder_queue q JOIN order_line l ON l.id = q.line_id
        WHERE q.at_risk <> (q.deadline IS NOT NULL
                            AND {at_risk_sql("l.expected_date", "q.deadline")})
    """,
    # ...and a line at risk was announced
    "at_risk_line_not_announced": """
        SELECT q.line_id FROM backorder_queue q
        WHERE q.at_risk AND CAST(q.line_id AS text) NOT IN (
            SELECT data->>'line_id' FROM event WHERE type = 'backorder.deadline_at_risk')
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

# The invariants per SKU and location (API.md, "Wave 2: locations"). Every product figure
# must be explained by its stock levels and every level by its ledger and its lines'
# allocations, so a database whose levels or allocations were never written fails them: they
# cannot pass by finding nothing to check.
_LOCATION_CHECKS: dict[str, str] = {
    # 0 <= allocated <= on_hand at every location
    "level_allocated_out_of_range": """
        SELECT sku, location, on_hand, allocated FROM stock_level
        WHERE allocated < 0 OR allocated > on_hand OR on_hand < 0
    """,
    # a location's on_hand = the sum of its ledger (and no ledger row without its level)
    "level_on_hand_not_ledger": """
        SELECT COALESCE(s.sku, m.sku) AS sku, COALESCE(s.location, m.location) AS location,
               s.on_hand, m.total AS ledger
        FROM stock_level s
        FULL JOIN (SELECT sku, location, SUM(quantity) AS total FROM stock_movement
                   GROUP BY sku, location) m ON m.sku = s.sku AND m.location = s.location
        WHERE s.sku IS NULL OR s.on_hand <> COALESCE(m.total, 0)
    """,
    # the product's on_hand and allocated are the sums over its locations
    "product_not_level_sums": """
        SELECT p.sku, p.on_hand, p.allocated, s.on_hand AS levels_on_hand,
               s.allocated AS levels_allocated
        FROM product p
        LEFT JOIN (SELECT sku, SUM(on_hand) AS on_hand, SUM(allocated) AS allocated
                   FROM stock_level GROUP BY sku) s ON s.sku = p.sku
        WHERE p.on_hand <> COALESCE(s.on_hand, 0) OR p.allocated <> COALESCE(s.allocated, 0)
    """,
    # `unavailable` = the unallocated units at inactive locations
    "unavailable_not_inactive_levels": """
        SELECT p.sku, p.unavailable, COALESCE(u.units, 0) AS at_inactive_locations
        FROM product p
        LEFT JOIN (SELECT s.sku, SUM(s.on_hand - s.allocated) AS units
                   FROM stock_level s JOIN location l ON l.code = s.location
                   WHERE NOT l.active GROUP BY s.sku) u ON u.sku = p.sku
        WHERE p.unavailable <> COALESCE(u.units, 0)
    """,
    # a line's allocated and shipped are the sums of its allocations
    "line_not_allocations": """
        SELECT l.id, l.allocated, l.shipped, a.allocated AS at_locations,
               a.shipped AS shipped_at_locations
        FROM order_line l
        LEFT JOIN (SELECT line_id, SUM(allocated) AS allocated, SUM(shipped) AS shipped
                   FROM line_allocation GROUP BY line_id) a ON a.line_id = l.id
        WHERE l.allocated <> COALESCE(a.allocated, 0) OR l.shipped <> COALESCE(a.shipped, 0)
    """,
    # a location's allocated = the units the lines of its SKU hold there
    "level_allocated_not_lines": """
        SELECT COALESCE(s.sku, a.sku) AS sku, COALESCE(s.location, a.location) AS location,
               s.allocated, a.units AS lines_allocated
        FROM stock_level s
        FULL JOIN (SELECT l.sku, a.location, SUM(a.allocated) AS units
                   FROM line_allocation a JOIN order_line l ON l.id = a.line_id
                   GROUP BY l.sku, a.location) a ON a.sku = s.sku AND a.location = s.location
        WHERE COALESCE(s.allocated, 0) <> COALESCE(a.units, 0)
    """,
    # a line names a primary location exactly while it holds units; its maps hold only the
    # other locations' units, all positive, and leave the primary a share of 0 or more
    "line_units_malformed": """
        SELECT l.id, l.location_id, l.allocated, l.shipped, l.allocated_at, l.shipped_at
        FROM order_line l
        LEFT JOIN location p ON p.id = l.location_id
        WHERE (l.location_id = 0) <> (l.allocated = 0 AND l.shipped = 0)
           OR (l.location_id <> 0 AND p.code IS NULL)
           OR (l.location_id = 0 AND (l.allocated_at IS NOT NULL OR l.shipped_at IS NOT NULL))
           OR COALESCE(l.allocated_at ? p.code, false) OR COALESCE(l.shipped_at ? p.code, false)
           OR EXISTS (SELECT FROM jsonb_each_text(l.allocated_at) e(k, v)
                      WHERE CAST(v AS bigint) <= 0)
           OR EXISTS (SELECT FROM jsonb_each_text(l.shipped_at) e(k, v)
                      WHERE CAST(v AS bigint) <= 0)
           OR l.allocated < (SELECT COALESCE(SUM(CAST(v AS bigint)), 0)
                             FROM jsonb_each_text(l.allocated_at) e(k, v))
           OR l.shipped < (SELECT COALESCE(SUM(CAST(v AS bigint)), 0)
                           FROM jsonb_each_text(l.shipped_at) e(k, v))
    """,
    # no allocation row without its line, or without a stock level of its SKU there
    "orphan_line_allocation": """
        SELECT a.line_id, a.location FROM line_allocation a
        LEFT JOIN order_line l ON l.id = a.line_id
        LEFT JOIN stock_level s ON s.sku = l.sku AND s.location = a.location
        WHERE l.id IS NULL OR s.sku IS NULL
    """,
    # units shipped from a location are that location's shipment ledger rows
    "shipped_not_ledger_at_location": """
        SELECT COALESCE(a.sku, m.sku) AS sku, COALESCE(a.location, m.location) AS location,
               a.shipped, m.shipped AS ledger
        FROM (SELECT l.sku, a.location, SUM(a.shipped) AS shipped
              FROM line_allocation a JOIN order_line l ON l.id = a.line_id
              GROUP BY l.sku, a.location) a
        FULL JOIN (SELECT sku, location, -SUM(quantity) AS shipped FROM stock_movement
                   WHERE kind = 'shipment' GROUP BY sku, location) m
          ON m.sku = a.sku AND m.location = a.location
        WHERE COALESCE(a.shipped, 0) <> COALESCE(m.shipped, 0)
    """,
    # a shipment's ledger rows are at the location it names
    "shipment_not_at_its_location": """
        SELECT m.id, m.location, s.location AS shipment_location
        FROM stock_movement m JOIN shipment s ON s.id = m.shipment_id
        WHERE m.location <> s.location
    """,
    # an active location with available > 0 => no open backorder for that SKU
    "idle_stock_at_active_location": """
        SELECT s.sku, s.location, s.on_hand - s.allocated AS available, q.waiting
        FROM stock_level s
        JOIN location loc ON loc.code = s.location AND loc.active
        JOIN (SELECT sku, SUM(backordered) AS waiting FROM order_line
              WHERE backordered > 0 GROUP BY sku) q ON q.sku = s.sku
        WHERE s.on_hand - s.allocated > 0
    """,
    # a transfer is two ledger rows of its SKU: -q at `from`, +q at `to` (they sum to zero)
    "transfer_not_its_ledger_rows": """
        SELECT t.id, m.n, m.total FROM transfer t
        LEFT JOIN (SELECT transfer_id, COUNT(*) AS n, SUM(quantity) AS total,
                          MIN(location) FILTER (WHERE quantity < 0) AS source,
                          MIN(location) FILTER (WHERE quantity > 0) AS target,
                          MIN(quantity) AS out_q, MAX(quantity) AS in_q,
                          bool_and(kind = 'transfer') AS kinds,
                          MIN(sku) AS sku_lo, MAX(sku) AS sku_hi
                   FROM stock_movement WHERE transfer_id IS NOT NULL
                   GROUP BY transfer_id) m ON m.transfer_id = t.id
        WHERE m.n IS DISTINCT FROM 2 OR m.total <> 0 OR NOT m.kinds
           OR m.source IS DISTINCT FROM t.from_location
           OR m.target IS DISTINCT FROM t.to_location
           OR m.out_q <> -t.quantity OR m.in_q <> t.quantity
           OR m.sku_lo <> t.sku OR m.sku_hi <> t.sku
    """,
    # and no transfer ledger row without its transfer
    "transfer_row_without_transfer": """
        SELECT m.id, m.transfer_id FROM stock_movement m
        LEFT JOIN transfer t ON t.id = m.transfer_id
        WHERE (m.kind = 'transfer') <> (m.transfer_id IS NOT NULL)
           OR (m.transfer_id IS NOT NULL AND t.id IS NULL)
    """,
}
_CHECKS |= _LOCATION_CHECKS
LOCATION_CHECKS = frozenset(_LOCATION_CHECKS)

# Restated CHECK constraints (`db/tables.py`): `allocated_within_on_hand`, `on_hand_nonnegative`,
# `backordered_nonnegative` on product; `parts_add_up`, `parts_nonnegative` on order_line;
# `allocated_within_on_hand`, `on_hand_nonnegative` on stock_level.
SCHEMA_ENFORCED = frozenset(
    {"allocated_out_of_range", "line_parts_do_not_add_up", "level_allocated_out_of_range"}
)

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
      (SELECT COALESCE(SUM(GREATEST(allocated - on_hand, 0)), 0) FROM product) AS oversold_units,
      (SELECT COALESCE(SUM(GREATEST(allocated - on_hand, 0)), 0) FROM stock_level)
        AS oversold_units_at_locations,
      -- What the location checks had to look at: a test that means to exercise locations
      -- asserts these (see `assert_locations_exercised`).
      (SELECT COUNT(*) FROM location) AS locations,
      (SELECT COUNT(*) FROM location WHERE NOT active) AS inactive_locations,
      (SELECT COUNT(*) FROM stock_level) AS stock_levels,
      (SELECT COUNT(DISTINCT location) FROM stock_level WHERE on_hand > 0) AS stocked_locations,
      (SELECT COUNT(*) FROM line_allocation) AS line_allocations,
      (SELECT COUNT(*) FROM (SELECT line_id FROM line_allocation WHERE allocated + shipped > 0
                             GROUP BY line_id HAVING COUNT(*) > 1) x) AS lines_at_two_locations,
      (SELECT COUNT(*) FROM transfer) AS transfers
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
    assert figures["oversold_units_at_locations"] == 0, figures
    assert figures["violation_total"] == 0, figures
    return figures


def assert_locations_exercised(figures: dict[str, Any], **least: int) -> None:
    """That a run meant to exercise locations did: each named figure of `check_invariants`
    at least the given value (e.g. `stocked_locations=2, transfers=1`), so the per-location
    checks did not pass on a history with one location in it."""
    short = {k: (figures[k], n) for k, n in least.items() if figures[k] < n}
    assert not short, (short, {k: v for k, v in figures.items() if k != "examples"})
