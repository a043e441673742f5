"""Two fills reaching one order at once, interleaved by hand on real connections.

A fill's statement takes its snapshot before it waits for the order lock that another fill
holds. The status it writes must still count what that other fill committed while it waited.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backorder.db import stock
from tests.support.pg import wait_until

pytestmark = pytest.mark.usefixtures("clean_db")


async def test_a_fill_that_waited_for_another_fill_of_the_same_order_counts_its_units(
    engine: AsyncEngine, database_url: str
) -> None:
    order_id, at = uuid4(), datetime(2026, 11, 1, tzinfo=UTC)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO product (sku, name, on_hand, backordered) "
                "VALUES ('A', 'a', 1, 1), ('B', 'b', 1, 1)"
            )
        )
        # Their one unit each, at `main` (where the fill hands units out from).
        await conn.execute(
            text(
                "INSERT INTO stock_level (sku, location, on_hand) "
                "VALUES ('A', 'main', 1), ('B', 'main', 1)"
            )
        )
        await conn.execute(
            text(
                "INSERT INTO sales_order (id, channel, customer_id, status, backordered, "
                "created_at) VALUES (:id, 'web', 'c', 'backordered', 2, :at)"
            ),
            {"id": order_id, "at": at},
        )
        for n, sku in enumerate(("A", "B"), start=1):
            await conn.execute(
                text(
                    "WITH l AS (INSERT INTO order_line (id, order_id, line_no, sku, quantity, "
                    "allocated, backordered, created_at, initial_backordered) "
                    "VALUES (:line, :order, :n, :sku, 1, 0, 1, :at, 1) RETURNING id) "
                    "INSERT INTO backorder_queue (line_id, sku, priority, created_at) "
                    "SELECT id, :sku, 0, :at FROM l"
                ),
                {"line": uuid4(), "order": order_id, "n": n, "sku": sku, "at": at},
            )

    async with engine.connect() as first, engine.connect() as second:
        await first.begin()
        await stock.settle(first, list((await stock.lock_products(first, ["A"])).values()))
        # The first fill holds the order's row lock; the second starts its statement (and its
        # snapshot) now, then waits for that lock.
        await second.begin()
        pid = (await second.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        product_b = list((await stock.lock_products(second, ["B"])).values())
        waiting = asyncio.create_task(stock.settle(second, product_b))
        await asyncio.to_thread(
            wait_until,
            database_url,
            "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
            (pid,),
            done=lambda rows: bool(rows) and rows[0]["wait_event_type"] == "Lock",
        )
        await first.commit()
        await waiting
        await second.commit()

    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT status, ready_to_ship, allocated, backordered FROM sales_order "
                    "WHERE id = :id"
                ),
                {"id": order_id},
            )
        ).one()
    assert tuple(row) == ("allocated", True, 2, 0)
