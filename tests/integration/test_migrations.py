"""Migrations carry existing data forward: a database made by an older release keeps its
queue and its /metrics totals through the upgrade, and a downgrade gives the old layout back."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from alembic import command
from psycopg.types.json import Jsonb

from backorder.db.engine import alembic_config


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
