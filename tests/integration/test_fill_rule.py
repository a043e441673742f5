"""The fill rule in SQL (`db.stock.settle`) equals the rule in Python
(`domain.allocation.fill`) on random queues, and hands each line its units at the locations
the contract says (`domain.locations.split_fill`, and a naive unit-by-unit model of it), on
random networks of locations; the status rules in SQL equal those in Python.

Everything runs inside a transaction that is rolled back: nothing is left in the database.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
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
from backorder.domain.locations import LocationStock
from backorder.domain.orders import ShipPolicy, Units, ready_to_ship, status_of, total
from backorder.domain.products import StockState, product_status
from tests.support.network import naive_segments, naive_split

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
    """The statement's JSON answer for one SKU: the domain's allocations, one per line (where
    the units came from is on the lines: `_line_allocations`)."""
    return [
        Allocation(UUID(a["order_id"]), UUID(a["line_id"]), a["quantity"])
        for a in json.loads(settled.json(sku))
    ]


# The network's codes, as rows of `location` (a line names its primary location by its id).
CODES = ("main", "east", "west", "zed")


async def _location_ids(conn: AsyncConnection) -> dict[str, int]:
    await conn.execute(
        text(
            "INSERT INTO location (code, name) SELECT code, code "
            "FROM unnest(CAST(:codes AS text[])) AS c(code) ON CONFLICT (code) DO NOTHING"
        ),
        {"codes": list(CODES)},
    )
    rows = await conn.execute(text("SELECT code, id FROM location"))
    return {r.code: r.id for r in rows}


# A SKU's locations: (code, rank, active, spare units); ranks tie, some are inactive.
Network = list[tuple[str, int, bool, int]]


@st.composite
def networks(draw: st.DrawFn, most: int = 8) -> Network:
    codes = draw(
        st.lists(
            st.sampled_from(["main", "east", "west", "zed"]), min_size=1, max_size=3, unique=True
        )
    )
    return [
        (
            code,
            draw(st.sampled_from([10, 100, 100])),
            draw(st.booleans() | st.just(True)),
            draw(st.integers(0, most)),
        )
        for code in codes
    ]


def _locked(
    sku: str,
    strategy: AllocationStrategy,
    network: Network,
    allocated: int,
    backordered: int,
    ids: dict[str, int],
) -> LockedProduct:
    """The product as `lock_products` reads it: its levels by rank then code, the units
    already allocated at the first location of the network, `spare` more at each."""
    levels = {
        code: LocationStock(
            code,
            rank,
            active,
            spare + (allocated if n == 0 else 0),
            allocated if n == 0 else 0,
            ids[code],
        )
        for n, (code, rank, active, spare) in enumerate(network)
    }
    ranked = dict(sorted(levels.items(), key=lambda kv: (kv[1].rank, kv[0])))
    return LockedProduct(
        sku=sku,
        backorders_allowed=True,
        backorder_limit=None,
        allocation_strategy=strategy,
        discontinued=False,
        expected_restock_date=None,
        reorder_point=None,
        on_hand=sum(x.on_hand for x in levels.values()),
        allocated=allocated,
        backordered=backordered,
        incoming=0,
        stock_state=StockState.OUT,
        unavailable=sum(x.unavailable for x in levels.values()),
        levels=ranked,
    )


def _expected_split(
    expected: list[Allocation], levels: list[LocationStock]
) -> list[tuple[Allocation, str]]:
    """The fill's allocations cut at the locations, as the naive model lays them out."""
    parts = naive_split([a.quantity for a in expected], naive_segments(levels))
    return [
        (Allocation(a.order_id, a.line_id, n), code)
        for a, line_parts in zip(expected, parts, strict=True)
        for code, n in line_parts
    ]


async def _line_allocations(
    conn: AsyncConnection, line_ids: list[UUID]
) -> dict[tuple[UUID, str], int]:
    rows = await conn.execute(
        text(
            "SELECT line_id, location, allocated FROM line_allocation "
            "WHERE line_id = ANY(:ids) AND allocated > 0"
        ),
        {"ids": line_ids},
    )
    return {(r.line_id, r.location): r.allocated for r in rows}


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
def skus_to_fill(draw: st.DrawFn) -> list[tuple[list[WaitingLine], Network, AllocationStrategy]]:
    """One SKU (a restock's statement) or several (a cancellation's), each with its queue,
    the units it gives at each of its locations and its strategy."""
    return draw(
        st.lists(
            st.tuples(queues(), networks(most=25), st.sampled_from(list(AllocationStrategy))),
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
    engine: AsyncEngine, wanted: list[tuple[list[WaitingLine], Network, AllocationStrategy]]
) -> None:
    async with rolled_back(engine) as conn:
        products = []
        ids = await _location_ids(conn)
        for lines, network, strategy in wanted:
            sku = f"FILL-{uuid4().hex[:8]}"
            await _insert(conn, sku, strategy.value, lines)
            waiting = sum(x.backordered for x in lines)
            products.append(_locked(sku, strategy, network, 0, waiting, ids))
        before = [[replace(x) for x in p.levels.values()] for p in products]
        settled = await settle(conn, products)
        for product, levels, (lines, _, strategy) in zip(products, before, wanted, strict=True):
            sku = product.sku
            waiting = sum(x.backordered for x in lines)
            units = sum(x.available for x in levels)
            expected = fill(lines, units, strategy)
            split = _expected_split(expected, levels)
            assert _allocations(settled, sku) == expected
            filled = sum(a.quantity for a in expected)
            assert (product.allocated, product.backordered) == (filled, waiting - filled)
            assert settled.units.get(sku, 0) == filled
            # Each location's allocated grew by what it handed out, and no more than it had.
            given_out: dict[str, int] = {}
            for a, code in split:
                given_out[code] = given_out.get(code, 0) + a.quantity
            for x in levels:
                now = product.levels[x.location]
                assert now.allocated == x.allocated + given_out.get(x.location, 0)
                assert now.allocated <= now.on_hand
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
            placed: dict[tuple[UUID, str], int] = {}
            for a, code in split:
                placed[(a.line_id, code)] = placed.get((a.line_id, code), 0) + a.quantity
            assert await _line_allocations(conn, [x.line_id for x in lines]) == placed
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
    """Units held back at inactive locations (`unavailable`) are not available."""
    grid = list(
        itertools.product(
            range(0, 4), range(0, 4), range(0, 2), [None, 0, 1, 2], [True, False], [True, False]
        )
    )
    values = ", ".join(
        f"({on_hand}, {allocated}, {unavailable}, {'NULL::int' if rp is None else rp}, "
        f"{ba}, {disc})"
        for on_hand, allocated, unavailable, rp, ba, disc in grid
    )
    sql = (
        f"SELECT on_hand, allocated, unavailable, reorder_point, backorders_allowed, "
        f"discontinued, {db_products.STATUS_SQL} AS status FROM (VALUES {values}) "
        "AS v(on_hand, allocated, unavailable, reorder_point, backorders_allowed, discontinued)"
    )
    async with rolled_back(engine) as conn:
        rows = (await conn.execute(text(sql))).all()
    assert len(rows) == len(grid)
    for r in rows:
        expected = product_status(
            available=r.on_hand - r.allocated - r.unavailable,
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
) -> tuple[list[OrderState], dict[str, tuple[AllocationStrategy, Network]]]:
    orders = draw(st.lists(order_states(), min_size=1, max_size=7))
    # Each SKU: its strategy and the units a restock (or a cancellation) just made available
    # at each of its locations.
    skus = {
        sku: (draw(st.sampled_from(list(AllocationStrategy))), draw(networks()))
        for sku in SKU_NAMES
    }
    return orders, skus


async def _store(
    conn: AsyncConnection,
    prefix: str,
    orders: list[OrderState],
    skus: dict[str, tuple[AllocationStrategy, Network]],
) -> dict[str, LockedProduct]:
    products = {}
    ids = await _location_ids(conn)
    for name, (strategy, network) in skus.items():
        lines = [x for o in orders for x in o.lines if x.sku == name]
        allocated = sum(x.allocated for x in lines)
        backordered = sum(x.backordered for x in lines)
        sku = f"{prefix}-{name}"
        product = _locked(sku, strategy, network, allocated, backordered, ids)
        await conn.execute(
            text(
                "INSERT INTO product (sku, name, allocation_strategy, on_hand, allocated, "
                "backordered, unavailable) VALUES (:sku, 'x', :strategy, :on_hand, :a, :b, :u)"
            ),
            {
                "sku": sku,
                "strategy": strategy.value,
                "on_hand": product.on_hand,
                "a": allocated,
                "b": backordered,
                "u": product.unavailable,
            },
        )
        products[name] = product
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
            if x.allocated or x.shipped:
                # What the line holds is at its SKU's first location (where `_locked` put it):
                # its primary location.
                await conn.execute(
                    text(
                        "UPDATE order_line SET location_id = (SELECT id FROM location "
                        "WHERE code = :loc) WHERE id = :id"
                    ),
                    {"id": x.line_id, "loc": skus[x.sku][1][0][0]},
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
    store: tuple[list[OrderState], dict[str, tuple[AllocationStrategy, Network]]],
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
        levels = {name: [replace(x) for x in p.levels.values()] for name, p in products.items()}
        held_before = {
            (x.line_id, skus[x.sku][1][0][0]): x.allocated
            for o in orders
            for x in o.lines
            if x.allocated
        }
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
        for name, (strategy, _) in skus.items():
            units = sum(x.available for x in levels[name])
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
        split = {n: _expected_split(expected_allocations[n], levels[n]) for n in SKU_NAMES}
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

        # Where the lines' units are: what they held, and what the fill gave at each location.
        held = dict(held_before)
        for parts in split.values():
            for a, code in parts:
                held[(a.line_id, code)] = held.get((a.line_id, code), 0) + a.quantity
        assert await _line_allocations(conn, list(lines)) == held

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
                    "location": code,
                },
            )
            for name in sorted(SKU_NAMES, key=lambda n: products[n].sku)
            for a, code in split[name]
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
