"""Migrations carry existing data forward: a database made by an older release keeps its
queue and its /metrics totals through the upgrade, and a downgrade gives the old layout back."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from alembic import command
from psycopg.types.json import Jsonb

from backorder.db.engine import alembic_config
from backorder.domain.orders import ShipPolicy, Units, ready_to_ship, status_of
from tests.support.invariants import assert_invariants, assert_locations_exercised


def _sa(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def test_the_queue_table_takes_over_the_waiting_lines_of_a_0001_database(
    scratch_url: str,
) -> None:
    config = alembic_config(_sa(scratch_url))
    command.upgrade(config, "0001")
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    # (line backordered, order priority): two wait, one is fully allocated.
    lines = [(3, 2), (0, 5), (1, 7)]
    ids = [uuid.uuid4() for _ in lines]
    with psycopg.connect(scratch_url, autocommit=True) as conn:
        conn.execute("INSERT INTO product (sku, name, backordered) VALUES ('M-1', 'm', 4)")
        for n, (line_id, (backordered, priority)) in enumerate(zip(ids, lines, strict=True)):
            at = t0 + timedelta(minutes=n)
            order_id = uuid.uuid4()
            conn.execute(
                "INSERT INTO sales_order (id, channel, customer_id, priority, status, created_at) "
                "VALUES (%s, 'web', 'c', %s, 'backordered', %s)",
                (order_id, priority, at),
            )
            conn.execute(
                "INSERT INTO order_line (id, order_id, line_no, sku, quantity, allocated, "
                "backordered, priority, created_at, initial_backordered) "
                "VALUES (%s, %s, 1, 'M-1', 3, %s, %s, %s, %s, %s)",
                (line_id, order_id, 3 - backordered, backordered, priority, at, backordered),
            )

        conn.execute(
            "INSERT INTO event (type, data) VALUES ('order.line_allocated', "
            "jsonb_build_object('order_id', gen_random_uuid(), 'line_id', %s::text, "
            "'sku', 'M-1', 'quantity', 2))",
            (str(ids[1]),),
        )

    command.upgrade(config, "head")
    with psycopg.connect(scratch_url) as conn:
        totals = conn.execute(
            "SELECT units_backordered_at_placement, units_filled_from_queue FROM product"
        ).fetchall()
        queued = conn.execute(
            "SELECT line_id, sku, priority, created_at FROM backorder_queue ORDER BY created_at"
        ).fetchall()
        fillfactor = conn.execute(
            "SELECT reloptions FROM pg_class WHERE relname = 'order_line'"
        ).fetchone()
        order_units = conn.execute(
            "SELECT allocated, backordered, shipped FROM sales_order ORDER BY created_at"
        ).fetchall()
        event_indexes = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'event'"
        ).fetchall()
    assert order_units == [(0, 3, 0), (3, 0, 0), (2, 1, 0)]  # the sums of their lines
    assert event_indexes == [("pk_event",)]
    assert queued == [
        (ids[0], "M-1", 2, t0),
        (ids[2], "M-1", 7, t0 + timedelta(minutes=2)),
    ]
    assert fillfactor == (["fillfactor=45"],)  # 0002 made it 50; the locations migration, 45
    assert totals == [(4, 2)]  # the lines' initial_backordered; the event's quantity

    command.downgrade(config, "0001")
    with psycopg.connect(scratch_url) as conn:
        priorities = conn.execute(
            "SELECT id, priority FROM order_line ORDER BY created_at"
        ).fetchall()
        queue_table = conn.execute("SELECT to_regclass('backorder_queue')").fetchone()
    assert priorities == [(i, p) for i, (_, p) in zip(ids, lines, strict=True)]
    assert queue_table == (None,)


def test_order_events_written_before_channels_get_their_orders_channel(scratch_url: str) -> None:
    config = alembic_config(_sa(scratch_url))
    command.upgrade(config, "0006_h6")
    order_id = uuid.uuid4()
    with psycopg.connect(scratch_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO sales_order (id, channel, customer_id, status, created_at) "
            "VALUES (%s, 'web-shop', 'c', 'allocated', now())",
            (order_id,),
        )
        for type_, data in (
            ("order.created", {"order_id": str(order_id)}),
            ("backorder.expected_date_changed", {"order_id": str(order_id), "to": None}),
            ("order.shipped", {"order_id": str(uuid.uuid4())}),  # its order is gone
            ("product.low_stock", {"sku": "A"}),  # not about an order
        ):
            conn.execute("INSERT INTO event (type, data) VALUES (%s, %s)", (type_, Jsonb(data)))
    command.upgrade(config, "head")
    with psycopg.connect(scratch_url, autocommit=True) as conn:
        rows = conn.execute("SELECT type, data->>'channel' FROM event ORDER BY id").fetchall()
    assert rows == [
        ("order.created", "web-shop"),
        ("backorder.expected_date_changed", "web-shop"),
        ("order.shipped", None),
        ("product.low_stock", None),
    ]
    command.downgrade(config, "0006_h6")  # keeps the key: older code ignores it


def _status(allocated: int, backordered: int, shipped: int) -> tuple[str, bool]:
    units = Units(allocated + backordered + shipped, allocated, backordered, shipped, 0)
    return status_of(units).value, ready_to_ship(units, ShipPolicy.PARTIAL)


def test_locations_take_over_the_stock_ledger_and_allocations_of_a_0007_database(
    scratch_url: str,
) -> None:
    """Everything that predates locations is at `main` after the upgrade, the invariants per
    location hold, and the downgrade gives the old layout back with the same figures."""
    config = alembic_config(_sa(scratch_url))
    command.upgrade(config, "20261206_0007")
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    # M-A: 10 restocked, 1 counted away, 2 shipped (on_hand 7); one line of 5 holds 3 and has
    # shipped 2, one of 6 holds 4 and waits for 2. M-B: 4 received, nobody wants them, 5 more
    # on order. M-C: never moved.
    shipment_id, po_id = uuid.uuid4(), uuid.uuid4()
    orders = [(uuid.uuid4(), uuid.uuid4(), 5, 3, 0, 2), (uuid.uuid4(), uuid.uuid4(), 6, 4, 2, 0)]
    with psycopg.connect(scratch_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO product (sku, name, on_hand, allocated, backordered, incoming, "
            "units_backordered_at_placement) VALUES ('M-A', 'a', 7, 7, 2, 0, 2), "
            "('M-B', 'b', 4, 0, 0, 5, 0), ('M-C', 'c', 0, 0, 0, 0, 0)"
        )
        for n, (order_id, line_id, q, a, b, s) in enumerate(orders):
            at = t0 + timedelta(minutes=n)
            status, ready = _status(a, b, s)
            conn.execute(
                "INSERT INTO sales_order (id, channel, customer_id, status, ready_to_ship, "
                "allocated, backordered, shipped, backordered_at_placement, created_at) "
                "VALUES (%s, 'web', 'c', %s, %s, %s, %s, %s, %s, %s)",
                (order_id, status, ready, a, b, s, b > 0, at),
            )
            conn.execute(
                "INSERT INTO order_line (id, order_id, line_no, sku, quantity, allocated, "
                "backordered, shipped, created_at, initial_backordered) "
                "VALUES (%s, %s, 1, 'M-A', %s, %s, %s, %s, %s, %s)",
                (line_id, order_id, q, a, b, s, at, b),
            )
            if b:
                conn.execute(
                    "INSERT INTO backorder_queue (line_id, sku, priority, created_at) "
                    "VALUES (%s, 'M-A', 0, %s)",
                    (line_id, at),
                )
        conn.execute(
            "INSERT INTO shipment (id, order_id, lines) VALUES (%s, %s, %s)",
            (shipment_id, orders[0][0], Jsonb([{"line_id": str(orders[0][1]), "quantity": 2}])),
        )
        conn.execute(
            "INSERT INTO purchase_order (id, sku, quantity, received, expected_date) "
            "VALUES (%s, 'M-B', 9, 4, '2027-01-10')",
            (po_id,),
        )
        conn.execute(
            "INSERT INTO stock_movement (sku, kind, quantity, order_id, shipment_id, "
            "purchase_order_id) VALUES ('M-A', 'restock', 10, NULL, NULL, NULL), "
            "('M-A', 'adjustment', -1, NULL, NULL, NULL), "
            "('M-A', 'shipment', -2, %s, %s, NULL), ('M-B', 'receipt', 4, NULL, NULL, %s)",
            (orders[0][0], shipment_id, po_id),
        )
    product_figures = (
        "SELECT sku, on_hand, allocated, backordered, incoming FROM product ORDER BY sku"
    )
    with psycopg.connect(scratch_url) as conn:
        before = conn.execute(product_figures).fetchall()
        ledger_before = conn.execute(
            "SELECT id, sku, kind, quantity FROM stock_movement ORDER BY id"
        ).fetchall()

    command.upgrade(config, "head")
    with psycopg.connect(scratch_url, autocommit=True) as conn:
        locations = conn.execute("SELECT code, rank, active FROM location").fetchall()
        levels = conn.execute(
            "SELECT sku, location, on_hand, allocated FROM stock_level ORDER BY sku"
        ).fetchall()
        placed = conn.execute(
            "SELECT line_id, location, allocated, shipped FROM line_allocation"
        ).fetchall()
        ledger_at = conn.execute("SELECT DISTINCT location FROM stock_movement").fetchall()
        po_at = conn.execute("SELECT location FROM purchase_order").fetchall()
        shipped_at = conn.execute("SELECT location FROM shipment").fetchall()
        unavailable = conn.execute("SELECT sku, unavailable FROM product ORDER BY sku").fetchall()
    assert locations == [("main", 100, True)]
    assert levels == [("M-A", "main", 7, 7), ("M-B", "main", 4, 0)]  # none for M-C
    assert sorted(placed) == sorted([(orders[0][1], "main", 3, 2), (orders[1][1], "main", 4, 0)])
    assert ledger_at == [("main",)]
    assert (po_at, shipped_at) == ([("main",)], [("main",)])
    assert unavailable == [("M-A", 0), ("M-B", 0), ("M-C", 0)]
    figures = assert_invariants(scratch_url)
    assert (figures["stock_levels"], figures["line_allocations"]) == (2, 2)

    # A second location and a transfer made after the upgrade (as the service writes them):
    # the downgrade takes the transfer's two ledger rows out, which cancel out per SKU.
    with psycopg.connect(scratch_url, autocommit=True) as conn:
        transfer_id = uuid.uuid4()
        conn.execute("INSERT INTO location (code, name) VALUES ('east', 'East')")
        conn.execute("INSERT INTO stock_level (sku, location) VALUES ('M-B', 'east')")
        conn.execute(
            "INSERT INTO transfer (id, sku, from_location, to_location, quantity) "
            "VALUES (%s, 'M-B', 'main', 'east', 3)",
            (transfer_id,),
        )
        conn.execute(
            "INSERT INTO stock_movement (sku, location, kind, quantity, transfer_id) VALUES "
            "('M-B', 'main', 'transfer', -3, %s), ('M-B', 'east', 'transfer', 3, %s)",
            (transfer_id, transfer_id),
        )
        conn.execute(
            "UPDATE stock_level SET on_hand = on_hand - 3 WHERE location = 'main' AND sku = 'M-B'"
        )
        conn.execute("UPDATE stock_level SET on_hand = 3 WHERE location = 'east'")
    assert_locations_exercised(assert_invariants(scratch_url), transfers=1, stocked_locations=2)

    command.downgrade(config, "20261206_0007")
    with psycopg.connect(scratch_url) as conn:
        after = conn.execute(product_figures).fetchall()
        ledger_after = conn.execute(
            "SELECT id, sku, kind, quantity FROM stock_movement ORDER BY id"
        ).fetchall()
        gone = conn.execute(
            "SELECT to_regclass('location'), to_regclass('stock_level'), "
            "to_regclass('line_allocation'), to_regclass('transfer')"
        ).fetchone()
        columns = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE (table_name, column_name) IN (('stock_movement', 'location'), "
            "('stock_movement', 'transfer_id'), ('shipment', 'location'), "
            "('purchase_order', 'location'), ('product', 'unavailable'))"
        ).fetchall()
        kinds = conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conname = 'ck_stock_movement_kind'"
        ).fetchone()
        sums = conn.execute(
            "SELECT p.sku FROM product p LEFT JOIN (SELECT sku, sum(quantity) AS q "
            "FROM stock_movement GROUP BY sku) m ON m.sku = p.sku "
            "WHERE p.on_hand <> COALESCE(m.q, 0)"
        ).fetchall()
    assert after == before
    assert ledger_after == ledger_before  # the transfer's rows gone, the rest as they were
    assert gone == (None, None, None, None)
    assert columns == []
    assert kinds is not None and "transfer" not in kinds[0]
    assert sums == []  # on_hand is still the sum of the ledger
    command.upgrade(config, "head")  # and up again, from the old layout
    assert_invariants(scratch_url)
