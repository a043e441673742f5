"""The fill rule in SQL (`db.stock.settle`) equals the rule in Python
(`domain.allocation.fill`) on random queues; the status rules in SQL equal those in Python.

Everything runs inside a transaction that is rolled back: nothing is left in the database.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from backorder.db import orders as db_orders
from backorder.db import products as db_products
from backorder.db.stock import LockedProduct, Settled, settle
from backorder.domain.allocation import Allocation, AllocationStrategy, WaitingLine, fill
from backorder.domain.orders import Units, status_of
from backorder.domain.products import StockState, product_status

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@asynccontextmanager
async def rolled_back(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as conn:
        trans = await conn.begin()
        try:
            yield conn
        finally:
            await trans.rollback()


@st.composite
def queues(draw: st.DrawFn) -> list[WaitingLine]:
    n = draw(st.integers(0, 10))
    ids = draw(st.lists(st.uuids(), min_size=n, max_size=n, unique=True))
    return [
        WaitingLine(
            line_id=i,
            order_id=uuid4(),
            backordered=draw(st.integers(1, 8)),
            priority=draw(st.integers(0, 3)),
            created_at=T0 + timedelta(microseconds=draw(st.integers(0, 2))),  # ties
        )
        for i in ids
    ]


def _allocations(settled: Settled, sku: str) -> list[Allocation]:
    """The statement's JSON answer for one SKU, as the domain's allocations."""
    return [
        Allocation(UUID(a["order_id"]), UUID(a["line_id"]), a["quantity"])
        for a in json.loads(settled.json(sku))
    ]


async def _insert(conn: AsyncConnection, sku: str, strategy: str, lines: list[WaitingLine]) -> None:
    await conn.execute(
        text(
            "INSERT INTO product (sku, name, allocation_strategy, backordered) "
            "VALUES (:sku, 'x', :strategy, :b)"
        ),
        {"sku": sku, "strategy": strategy, "b": sum(x.backordered for x in lines)},
    )
    for x in lines:
        await conn.execute(
            text(
                "INSERT INTO sales_order (id, channel, customer_id, priority, status, "
                "backordered, created_at) VALUES (:id, 'test', 'c', :p, 'backordered', :q, :at)"
            ),
            {"id": x.order_id, "p": x.priority, "q": x.backordered, "at": x.created_at},
        )
        await conn.execute(
            text(
                "WITH l AS (INSERT INTO order_line (id, order_id, line_no, sku, quantity, "
                "allocated, backordered, created_at, initial_backordered) "
                "VALUES (:id, :o, 1, :sku, :q, 0, :q, :at, :q) RETURNING id) "
                "INSERT INTO backorder_queue (line_id, sku, priority, created_at) "
                "SELECT id, :sku, :p, :at FROM l"
            ),
            {
                "id": x.line_id,
                "o": x.order_id,
                "sku": sku,
                "q": x.backordered,
                "p": x.priority,
                "at": x.created_at,
            },
        )


@st.composite
def skus_to_fill(draw: st.DrawFn) -> list[tuple[list[WaitingLine], int, AllocationStrategy]]:
    """One SKU (a restock's statement) or several (a cancellation's), each with its queue,
    the units it gives and its strategy."""
    return draw(
        st.lists(
            st.tuples(queues(), st.integers(0, 60), st.sampled_from(list(AllocationStrategy))),
            min_size=1,
            max_size=3,
        )
    )


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(wanted=skus_to_fill())
async def test_the_sql_fill_equals_the_python_fill(
    engine: AsyncEngine, wanted: list[tuple[list[WaitingLine], int, AllocationStrategy]]
) -> None:
    async with rolled_back(engine) as conn:
        products = []
        for lines, units, strategy in wanted:
            sku = f"FILL-{uuid4().hex[:8]}"
            await _insert(conn, sku, strategy.value, lines)
            products.append(
                LockedProduct(
                    sku=sku,
                    backorders_allowed=True,
                    backorder_limit=None,
                    allocation_strategy=strategy,
                    discontinued=False,
                    expected_restock_date=None,
                    reorder_point=None,
                    on_hand=units,
                    allocated=0,
                    backordered=sum(x.backordered for x in lines),
                    incoming=0,
                    stock_state=StockState.OUT,
                )
            )
        settled = await settle(conn, products)
        for product, (lines, units, strategy) in zip(products, wanted, strict=True):
            sku = product.sku
            waiting = sum(x.backordered for x in lines)
            expected = fill(lines, units, strategy)
            assert _allocations(settled, sku) == expected
            filled = sum(a.quantity for a in expected)
            assert (product.allocated, product.backordered) == (filled, waiting - filled)
            rows = (
                await conn.execute(
                    text("SELECT id, allocated, backordered FROM order_line WHERE sku = :sku"),
                    {"sku": sku},
                )
            ).all()
            took = {a.line_id: a.quantity for a in expected}
            by_id = {x.line_id: x for x in lines}
            for r in rows:
                assert r.allocated == took.get(r.id, 0)
                assert r.backordered == by_id[r.id].backordered - took.get(r.id, 0)
            queued = (
                await conn.execute(
                    text("SELECT line_id FROM backorder_queue WHERE sku = :sku"), {"sku": sku}
                )
            ).scalars()
            assert set(queued) == {r.id for r in rows if r.backordered > 0}


async def test_the_order_status_sql_equals_the_python_rule(engine: AsyncEngine) -> None:
    grid = list(itertools.product(range(3), repeat=3))  # (o, a, s)
    values = ", ".join(f"({o}, {a}, {s})" for o, a, s in grid)
    sql = (
        f"SELECT o, a, s, {db_orders.STATUS_SQL.format(o='o', a='a', s='s')} AS status "
        f"FROM (VALUES {values}) AS v(o, a, s)"
    )
    async with rolled_back(engine) as conn:
        rows = (await conn.execute(text(sql))).all()
    assert len(rows) == len(grid)
    for r in rows:
        cancelled = 1 if r.o + r.a + r.s == 0 else 0
        units = Units(r.o + r.a + r.s + cancelled, r.a, r.o, r.s, cancelled)
        assert r.status == status_of(units).value, (r.o, r.a, r.s)


async def test_the_product_status_sql_equals_the_python_rule(engine: AsyncEngine) -> None:
    grid = list(
        itertools.product(range(0, 4), range(0, 4), [None, 0, 1, 2], [True, False], [True, False])
    )
    values = ", ".join(
        f"({on_hand}, {allocated}, {'NULL::int' if rp is None else rp}, {ba}, {disc})"
        for on_hand, allocated, rp, ba, disc in grid
    )
    sql = (
        f"SELECT on_hand, allocated, reorder_point, backorders_allowed, discontinued, "
        f"{db_products.STATUS_SQL} AS status FROM (VALUES {values}) "
        "AS v(on_hand, allocated, reorder_point, backorders_allowed, discontinued)"
    )
    async with rolled_back(engine) as conn:
        rows = (await conn.execute(text(sql))).all()
    assert len(rows) == len(grid)
    for r in rows:
        expected = product_status(
            available=r.on_hand - r.allocated,
            reorder_point=r.reorder_point,
            backorders_allowed=r.backorders_allowed,
            discontinued=r.discontinued,
        )
        assert r.status == expected.value, tuple(r)
