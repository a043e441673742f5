"""The status rules in SQL (for lists and set-based refreshes) equal the Python rules."""

from __future__ import annotations

import itertools
from uuid import uuid4

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backorder.db import orders, products, promises, stock
from backorder.domain.deadlines import at_risk
from backorder.domain.orders import ShipPolicy, Units, ready_to_ship, status_of
from backorder.domain.products import product_status

pytestmark = pytest.mark.usefixtures("clean_db")


async def test_order_status_sql_equals_the_python_rule(engine: AsyncEngine) -> None:
    grid = list(itertools.product(range(3), repeat=3))  # (o, a, s)
    values = ", ".join(f"({o}, {a}, {s})" for o, a, s in grid)
    sql = (
        "SELECT o, a, s, "
        + orders.STATUS_SQL.format(o="o", a="a", s="s")
        + f" AS status FROM (VALUES {values}) AS g(o, a, s)"
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(text(sql))).all()
    assert len(rows) == len(grid)
    for r in rows:
        expected = status_of(Units(r.o + r.a + r.s + 1, r.a, r.o, r.s, 1))
        assert r.status == expected.value, r


async def test_product_status_sql_equals_the_python_rule(engine: AsyncEngine) -> None:
    grid = list(
        itertools.product(
            range(4),  # on_hand
            range(4),  # allocated
            range(3),  # unavailable: unallocated units at inactive locations
            (None, 0, 1, 2),  # reorder_point
            (True, False),  # backorders_allowed
            (True, False),  # discontinued
        )
    )
    grid = [g for g in grid if g[1] + g[2] <= g[0]]
    values = ", ".join(
        f"({h}, {a}, {u}, {'NULL::int' if rp is None else rp}, {str(b).lower()}, {str(d).lower()})"
        for h, a, u, rp, b, d in grid
    )
    sql = (
        "SELECT on_hand, allocated, unavailable, reorder_point, backorders_allowed, "
        "discontinued, "
        + products.STATUS_SQL
        + f" AS status FROM (VALUES {values}) AS g(on_hand, allocated, unavailable, "
        "reorder_point, backorders_allowed, discontinued)"
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(text(sql))).all()
    assert len(rows) == len(grid)
    for r in rows:
        expected = product_status(
            available=r.on_hand - r.allocated - r.unavailable,
            reorder_point=r.reorder_point,
            backorders_allowed=r.backorders_allowed,
            discontinued=r.discontinued,
        )
        assert r.status == expected.value, r


async def test_refreshed_order_status_and_readiness_equal_the_python_rules(
    engine: AsyncEngine,
) -> None:
    """`stock.settle` derives both in one statement from the unit counters of two-line
    orders."""
    skus = ("S1", "S2")
    line_grid = [
        (a, o, s, c) for a, o, s, c in itertools.product(range(2), repeat=4) if a + o + s + c > 0
    ]
    cases = [
        (policy, first, second)
        for policy in ShipPolicy
        for first, second in itertools.product(line_grid, repeat=2)
    ]
    ids = [uuid4() for _ in cases]
    async with engine.connect() as conn, conn.begin() as tx:
        for sku in skus:
            await conn.execute(text("INSERT INTO product (sku, name) VALUES (:s, :s)"), {"s": sku})
        await conn.execute(
            text(
                "INSERT INTO sales_order (id, channel, customer_id, ship_policy, status, "
                "allocated, backordered, shipped, created_at) "
                "VALUES (:id, 't', 'c', :policy, 'backordered', :a, :o, :s, now())"
            ),
            [
                {
                    "id": i,
                    "policy": policy.value,
                    "a": first[0] + second[0],
                    "o": first[1] + second[1],
                    "s": first[2] + second[2],
                }
                for i, (policy, first, second) in zip(ids, cases)
            ],
        )
        await conn.execute(
            text(
                "INSERT INTO order_line (id, order_id, line_no, sku, quantity, allocated, "
                "backordered, shipped, cancelled, created_at, initial_backordered) "
                "VALUES (:id, :order_id, :n, :sku, :a + :o + :s + :c, :a, :o, :s, :c, "
                "now(), 0)"
            ),
            [
                {"id": uuid4(), "order_id": i, "n": n, "sku": sku, "a": a, "o": o, "s": s, "c": c}
                for i, (_, first, second) in zip(ids, cases)
                for n, (sku, (a, o, s, c)) in enumerate(zip(skus, (first, second)), start=1)
            ],
        )
        await stock.settle(conn, [], ids)
        rows = {
            r.id: r
            for r in await conn.execute(
                text("SELECT id, status, ready_to_ship FROM sales_order WHERE id = ANY(:ids)"),
                {"ids": ids},
            )
        }
        seen = set()
        for order_id, (policy, first, second) in zip(ids, cases, strict=True):
            units = Units(sum(first) + sum(second), *(x + y for x, y in zip(first, second)))
            assert rows[order_id].status == status_of(units).value, (policy, first, second)
            assert rows[order_id].ready_to_ship is ready_to_ship(units, policy)
            seen.add(rows[order_id].status)
        assert len(seen) == 6
        await tx.rollback()


async def test_at_risk_sql_equals_the_python_rule(engine: AsyncEngine) -> None:
    """`promises.at_risk_sql` (the queue's flags, the lists) and `domain.deadlines.at_risk`
    (the order's `at_risk`) agree, at the UTC day boundary and across offsets."""
    deadlines = [
        "2026-12-10T00:00:00+00:00",
        "2026-12-10T23:59:59+00:00",
        "2026-12-10T01:00:00+05:00",  # 2026-12-09 in UTC
        "2026-12-10T20:00:00-05:00",  # 2026-12-11 in UTC
    ]
    dates = [None, "2026-12-09", "2026-12-10", "2026-12-11"]
    grid = list(itertools.product(deadlines, dates))
    values = ", ".join(
        f"(CAST('{d}' AS timestamptz), {'NULL::date' if e is None else f'DATE {e!r}'})"
        for d, e in grid
    )
    sql = (
        "SELECT deadline, expected, "
        + promises.at_risk_sql("expected", "deadline")
        + f" AS at_risk FROM (VALUES {values}) AS g(deadline, expected)"
    )
    async with engine.connect() as conn:
        await conn.execute(text("SET TIME ZONE 'Asia/Tokyo'"))  # the session's zone plays no part
        rows = (await conn.execute(text(sql))).all()
    assert len(rows) == len(grid)
    for r in rows:
        assert r.at_risk == at_risk(1, r.expected, r.deadline), r
    assert {r.at_risk for r in rows} == {True, False}
