"""The fill rule in SQL (`db.stock.settle`) equals the rule in Python
(`domain.allocation.fill`) on random queues; the status rules in SQL equal those in Python.

Everything runs inside a transaction that is rolled back: nothing is left in the database.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
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
from backorder.domain.orders import ShipPolicy, Units, ready_to_ship, status_of, total
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


# Realistic states: orders of one to three lines over a few SKUs, each line already partly
# allocated, shipped or cancelled, some waiting; then one settle, as a restock or a
# cancellation runs it, held against a model built from the domain's rules alone.
SKU_NAMES = ("RA", "RB", "RC")


@dataclass
class LineState:
    line_id: UUID
    sku: str
    allocated: int
    backordered: int
    shipped: int
    cancelled: int

    @property
    def quantity(self) -> int:
        return self.allocated + self.backordered + self.shipped + self.cancelled

    @property
    def units(self) -> Units:
        return Units(self.quantity, self.allocated, self.backordered, self.shipped, self.cancelled)


@dataclass
class OrderState:
    order_id: UUID
    priority: int
    policy: ShipPolicy
    created_at: datetime
    lines: list[LineState]
    changed: bool  # the transaction changed it before the settle: its stored status is stale

    @property
    def units(self) -> Units:
        return total([x.units for x in self.lines])


@st.composite
def line_states(draw: st.DrawFn, sku: str) -> LineState:
    parts = draw(st.tuples(*(st.integers(0, 4) for _ in range(4))).filter(lambda p: sum(p) > 0))
    return LineState(uuid4(), sku, *parts)


@st.composite
def order_states(draw: st.DrawFn) -> OrderState:
    skus = draw(st.lists(st.sampled_from(SKU_NAMES), min_size=1, max_size=3, unique=True))
    return OrderState(
        order_id=uuid4(),
        priority=draw(st.integers(0, 3)),
        policy=draw(st.sampled_from(list(ShipPolicy))),
        created_at=T0 + timedelta(microseconds=draw(st.integers(0, 3))),  # ties
        lines=[draw(line_states(sku)) for sku in skus],
        changed=draw(st.booleans()),
    )


@st.composite
def stores(
    draw: st.DrawFn,
) -> tuple[list[OrderState], dict[str, tuple[AllocationStrategy, int]]]:
    orders = draw(st.lists(order_states(), min_size=1, max_size=7))
    # Each SKU: its strategy and the units a restock (or a cancellation) just made available.
    skus = {
        sku: (draw(st.sampled_from(list(AllocationStrategy))), draw(st.integers(0, 14)))
        for sku in SKU_NAMES
    }
    return orders, skus


async def _store(
    conn: AsyncConnection,
    prefix: str,
    orders: list[OrderState],
    skus: dict[str, tuple[AllocationStrategy, int]],
) -> dict[str, LockedProduct]:
    products = {}
    for name, (strategy, units) in skus.items():
        lines = [x for o in orders for x in o.lines if x.sku == name]
        allocated = sum(x.allocated for x in lines)
        backordered = sum(x.backordered for x in lines)
        sku = f"{prefix}-{name}"
        await conn.execute(
            text(
                "INSERT INTO product (sku, name, allocation_strategy, on_hand, allocated, "
                "backordered) VALUES (:sku, 'x', :strategy, :on_hand, :a, :b)"
            ),
            {
                "sku": sku,
                "strategy": strategy.value,
                "on_hand": allocated + units,
                "a": allocated,
                "b": backordered,
            },
        )
        products[name] = LockedProduct(
            sku=sku,
            backorders_allowed=True,
            backorder_limit=None,
            allocation_strategy=strategy,
            discontinued=False,
            expected_restock_date=None,
            reorder_point=None,
            on_hand=allocated + units,
            allocated=allocated,
            backordered=backordered,
            incoming=0,
            stock_state=StockState.OUT,
        )
    for o in orders:
        u = o.units
        # A changed order's stored status and readiness are what they were before the change.
        stale = Units(u.quantity, u.allocated, u.backordered + 1, u.shipped, u.cancelled)
        shown = stale if o.changed else u
        await conn.execute(
            text(
                "INSERT INTO sales_order (id, channel, customer_id, priority, ship_policy, "
                "status, ready_to_ship, allocated, backordered, shipped, created_at) VALUES "
                "(:id, 'test', 'c', :p, :policy, :status, :ready, :a, :b, :s, :at)"
            ),
            {
                "id": o.order_id,
                "p": o.priority,
                "policy": o.policy.value,
                "status": status_of(shown).value,
                "ready": ready_to_ship(shown, o.policy),
                "a": u.allocated,
                "b": u.backordered,
                "s": u.shipped,
                "at": o.created_at,
            },
        )
        for n, x in enumerate(o.lines, start=1):
            await conn.execute(
                text(
                    "INSERT INTO order_line (id, order_id, line_no, sku, quantity, allocated, "
                    "backordered, shipped, cancelled, created_at, initial_backordered, "
                    "expected_date) VALUES (:id, :o, :n, :sku, :q, :a, :b, :s, :c, :at, :b, "
                    "CASE WHEN :b > 0 THEN DATE '2026-02-01' END)"
                ),
                {
                    "id": x.line_id,
                    "o": o.order_id,
                    "n": n,
                    "sku": products[x.sku].sku,
                    "q": x.quantity,
                    "a": x.allocated,
                    "b": x.backordered,
                    "s": x.shipped,
                    "c": x.cancelled,
                    "at": o.created_at,
                },
            )
            if x.backordered:
                await conn.execute(
                    text(
                        "INSERT INTO backorder_queue (line_id, sku, priority, created_at) "
                        "VALUES (:id, :sku, :p, :at)"
                    ),
                    {
                        "id": x.line_id,
                        "sku": products[x.sku].sku,
                        "p": o.priority,
                        "at": o.created_at,
                    },
                )
    return products


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(store=stores())
async def test_a_settle_from_realistic_states_matches_the_model(
    engine: AsyncEngine,
    store: tuple[list[OrderState], dict[str, tuple[AllocationStrategy, int]]],
) -> None:
    """Lines, orders (counters, status, readiness), products and events after one settle
    are what the domain's fill, status and readiness rules say (docs/reference.md, "The
    queue and the fill rule", "Statuses")."""
    orders, skus = store
    prefix = f"R{uuid4().hex[:8]}"
    async with rolled_back(engine) as conn:
        before_events = (
            await conn.execute(text("SELECT coalesce(max(id), 0) FROM event"))
        ).scalar()
        products = await _store(conn, prefix, orders, skus)
        changed = [o.order_id for o in orders if o.changed]
        settled = await settle(conn, [products[s] for s in SKU_NAMES], changed)

        # The model: each SKU's queue filled by the domain's rule, then the orders it reached.
        ready_before = {
            o.order_id: ready_to_ship(
                o.units
                if not o.changed
                else Units(0, o.units.allocated, o.units.backordered + 1, 0, 0),
                o.policy,
            )
            for o in orders
        }
        lines = {x.line_id: (o, x) for o in orders for x in o.lines}
        expected_allocations: dict[str, list[Allocation]] = {}
        for name, (strategy, units) in skus.items():
            queue = [
                WaitingLine(x.line_id, o.order_id, x.backordered, o.priority, o.created_at)
                for o in orders
                for x in o.lines
                if x.sku == name and x.backordered > 0
            ]
            expected_allocations[name] = fill(queue, units, strategy)
        reached = {a.order_id for allocs in expected_allocations.values() for a in allocs}
        for allocs in expected_allocations.values():
            for a in allocs:
                _, line = lines[a.line_id]
                line.allocated += a.quantity
                line.backordered -= a.quantity

        # What the statement answered, and the products' counters it kept in memory.
        for name, product in products.items():
            expected = expected_allocations[name]
            assert _allocations(settled, product.sku) == expected
            filled = sum(a.quantity for a in expected)
            lines_of = [x for o in orders for x in o.lines if x.sku == name]
            assert product.allocated == sum(x.allocated for x in lines_of)
            assert product.backordered == sum(x.backordered for x in lines_of)
            row = (
                await conn.execute(
                    text("SELECT units_filled_from_queue FROM product WHERE sku = :sku"),
                    {"sku": product.sku},
                )
            ).one()
            assert row.units_filled_from_queue == filled

        # Lines and the queue.
        stored_lines = {
            r.id: r
            for r in await conn.execute(
                text(
                    "SELECT id, allocated, backordered, shipped, cancelled, filled_at, "
                    "expected_date FROM order_line WHERE sku LIKE :p"
                ),
                {"p": f"{prefix}-%"},
            )
        }
        assert set(stored_lines) == set(lines)
        took = {a.line_id for allocs in expected_allocations.values() for a in allocs}
        for line_id, (_, x) in lines.items():
            r = stored_lines[line_id]
            assert (r.allocated, r.backordered, r.shipped, r.cancelled) == (
                x.allocated,
                x.backordered,
                x.shipped,
                x.cancelled,
            ), (x, r)
            ended = line_id in took and x.backordered == 0
            assert (r.filled_at is not None) == ended, (x, r)
            assert (r.expected_date is None) == (x.backordered == 0), (x, r)
        queued = set(
            (
                await conn.execute(
                    text("SELECT line_id FROM backorder_queue WHERE sku LIKE :p"),
                    {"p": f"{prefix}-%"},
                )
            ).scalars()
        )
        assert queued == {i for i, (_, x) in lines.items() if x.backordered > 0}

        # Orders: counters, status, readiness; those neither reached nor changed untouched.
        stored_orders = {
            r.id: r
            for r in await conn.execute(
                text(
                    "SELECT id, status, ready_to_ship, allocated, backordered, shipped "
                    "FROM sales_order WHERE id = ANY(:ids)"
                ),
                {"ids": [o.order_id for o in orders]},
            )
        }
        for o in orders:
            r, u = stored_orders[o.order_id], o.units
            assert (r.allocated, r.backordered, r.shipped) == (
                u.allocated,
                u.backordered,
                u.shipped,
            ), (o, r)
            assert r.status == status_of(u).value, (o, r)
            assert r.ready_to_ship == ready_to_ship(u, o.policy), (o, r)

        # Events: one `order.line_allocated` per allocation, SKU by SKU in queue order, then
        # `order.ready_to_ship` for each order that became ready, by order id.
        got = [
            (r.type, r.data)
            for r in await conn.execute(
                text("SELECT type, data FROM event WHERE id > :after ORDER BY id"),
                {"after": before_events},
            )
        ]
        want: list[tuple[str, dict[str, object]]] = [
            (
                "order.line_allocated",
                {
                    "order_id": str(a.order_id),
                    "line_id": str(a.line_id),
                    "sku": products[name].sku,
                    "quantity": a.quantity,
                },
            )
            for name in sorted(SKU_NAMES, key=lambda n: products[n].sku)
            for a in expected_allocations[name]
        ]
        became_ready = sorted(
            o.order_id
            for o in orders
            if (o.order_id in reached or o.changed)
            and ready_to_ship(o.units, o.policy)
            and not ready_before[o.order_id]
        )
        want += [("order.ready_to_ship", {"order_id": str(i)}) for i in became_ready]
        # (Compared on the fields named here: other fields may be added to events.)
        assert len(got) == len(want), (got, want)
        for (t, d), (wt, wd) in zip(got, want, strict=True):
            assert (t, {k: d.get(k) for k in wd}) == (wt, wd), (got, want)
