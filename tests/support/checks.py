"""The invariants of the contract, checked in SQL after a run."""

from __future__ import annotations

import psycopg


def violations(database_url: str) -> dict[str, list[object]]:
    """Every broken invariant, by name; an empty dict means all hold."""
    url = database_url.replace("postgresql+psycopg://", "postgresql://")
    checks = {
        "allocated_within_on_hand": "SELECT sku FROM product "
        "WHERE allocated < 0 OR allocated > on_hand",
        "on_hand_is_ledger_sum": "SELECT p.sku FROM product p LEFT JOIN (SELECT sku, "
        "sum(quantity) s FROM stock_movement GROUP BY sku) m ON m.sku = p.sku "
        "WHERE p.on_hand <> COALESCE(m.s, 0)",
        "counters_match_lines": "SELECT p.sku FROM product p LEFT JOIN (SELECT sku, "
        "sum(allocated) a, sum(backordered) b FROM order_line GROUP BY sku) l ON l.sku = p.sku "
        "WHERE p.allocated <> COALESCE(l.a, 0) OR p.backordered <> COALESCE(l.b, 0)",
        "no_idle_stock_while_waiting": "SELECT p.sku FROM product p WHERE p.on_hand > "
        "p.allocated AND EXISTS (SELECT 1 FROM order_line l WHERE l.sku = p.sku "
        "AND l.backordered > 0)",
        "lines_add_up": "SELECT id FROM order_line "
        "WHERE quantity <> allocated + backordered + shipped + cancelled",
        "queue_is_waiting_lines": "SELECT COALESCE(l.id, q.line_id) FROM order_line l "
        "FULL JOIN backorder_queue q ON q.line_id = l.id "
        "WHERE (l.backordered > 0) IS DISTINCT FROM (q.line_id IS NOT NULL)",
        # FIFO queue order: a line that still waits is never behind (placed after) a line of
        # the same SKU that got units from the queue while never having cancelled any.
        "fifo_order": "SELECT w.id FROM order_line w JOIN product p ON p.sku = w.sku "
        "AND p.allocation_strategy = 'fifo' JOIN order_line f ON f.sku = w.sku "
        "AND (f.created_at, f.id) > (w.created_at, w.id) AND f.cancelled = 0 "
        "AND f.allocated + f.shipped > f.quantity - f.initial_backordered "
        "WHERE w.backordered > 0",
    }
    found: dict[str, list[object]] = {}
    with psycopg.connect(url) as conn:
        for name, sql in checks.items():
            rows = [r[0] for r in conn.execute(sql).fetchall()]
            if rows:
                found[name] = rows
    return found


def count(database_url: str, sql: str) -> int:
    url = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn:
        row = conn.execute(sql).fetchone()
        return int(row[0]) if row else 0
