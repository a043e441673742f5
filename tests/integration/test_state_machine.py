"""A stateful model test: random sequences of orders, restocks, adjustments, cancellations,
shipments and reprioritisations, driven through the real app on real PostgreSQL, each step
checked against a plain in-memory model and every invariant of docs/reference.md ("Invariants").

The model is deliberately naive: per line its units, per SKU its `on_hand`, and the fill rule
of `backorder.domain.allocation` for every unit that becomes available. After each step the
database must equal the model line by line and SKU by SKU, the queue endpoint must list the
model's queue in the model's order, and the SQL invariants must hold.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, ClassVar
from uuid import UUID

import httpx
import psycopg
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from backorder.api.app import create_app
from backorder.config import Settings
from backorder.domain.allocation import AllocationStrategy, WaitingLine, fill, take_now
from backorder.domain.orders import (
    ShipPolicy,
    Units,
    backorder_type_of,
    ready_to_ship,
    status_of,
    total,
)
from tests.conftest import truncate_all
from tests.support.api import OPS
from tests.support.invariants import assert_invariants


@dataclass(frozen=True)
class ProductSpec:
    sku: str
    strategy: AllocationStrategy
    backorders_allowed: bool
    backorder_limit: int | None


PRODUCTS = (
    ProductSpec("SM-FIFO", AllocationStrategy.FIFO, True, None),
    ProductSpec("SM-PRIO", AllocationStrategy.PRIORITY, True, 25),
    ProductSpec("SM-NOBO", AllocationStrategy.FIFO, False, None),
)
SPECS = {p.sku: p for p in PRODUCTS}
SKUS = [p.sku for p in PRODUCTS]


@dataclass
class Line:
    id: str
    order_id: str
    sku: str
    quantity: int
    allocated: int
    backordered: int
    priority: int
    created_at: datetime
    shipped: int = 0
    cancelled: int = 0

    @property
    def units(self) -> Units:
        return Units(self.quantity, self.allocated, self.backordered, self.shipped, self.cancelled)


@dataclass
class Order:
    id: str
    priority: int
    ship_policy: ShipPolicy
    created_at: datetime
    lines: list[Line] = field(default_factory=list)

    @property
    def units(self) -> Units:
        return total([line.units for line in self.lines])


class SyncClient:
    """The app in-process (lifespan included) behind a blocking facade: hypothesis drives
    its state machines synchronously, so the async client runs in a portal thread."""

    def __init__(self, portal: BlockingPortal, http: httpx.AsyncClient) -> None:
        self.portal, self.http = portal, http

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self.portal.call(partial(self.http.request, method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", url, **kwargs)


@contextmanager
def in_process_client(settings: Settings) -> Iterator[SyncClient]:
    app = create_app(settings)
    with ExitStack() as stack:
        portal = stack.enter_context(start_blocking_portal())
        stack.enter_context(portal.wrap_async_context_manager(app.router.lifespan_context(app)))
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
        stack.enter_context(portal.wrap_async_context_manager(http))
        yield SyncClient(portal, http)


def _problem_code(r: Any) -> str | None:
    if r.headers.get("content-type", "").startswith("application/problem+json"):
        code: str = r.json()["code"]
        return code
    return None


class BackorderMachine(RuleBasedStateMachine):
    """Set by the test before running: the in-process client and the database it writes."""

    client: ClassVar[SyncClient]
    database_url: ClassVar[str]

    def __init__(self) -> None:
        super().__init__()
        truncate_all(self.database_url)
        self.on_hand = dict.fromkeys(SKUS, 0)
        self.orders: dict[str, Order] = {}
        self.lines: dict[str, Line] = {}
        self.steps = 0
        # Events the model expects (none lost, none invented), and each order's readiness.
        self.events: Counter[str] = Counter()
        self.ready: dict[str, bool] = {}
        url = self.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
        self.db = psycopg.connect(url, autocommit=True)
        for spec in PRODUCTS:
            r = self.client.put(
                f"/v1/products/{spec.sku}",
                json={
                    "name": spec.sku,
                    "allocation_strategy": spec.strategy.value,
                    "backorders_allowed": spec.backorders_allowed,
                    "backorder_limit": spec.backorder_limit,
                },
                headers=OPS,
            )
            assert r.status_code == 201, r.text

    def teardown(self) -> None:
        self.db.close()

    # -- the model -------------------------------------------------------------------------

    def allocated(self, sku: str) -> int:
        return sum(line.allocated for line in self.lines.values() if line.sku == sku)

    def backordered(self, sku: str) -> int:
        return sum(line.backordered for line in self.lines.values() if line.sku == sku)

    def available(self, sku: str) -> int:
        return self.on_hand[sku] - self.allocated(sku)

    def waiting(self, sku: str) -> list[WaitingLine]:
        return [
            WaitingLine(UUID(x.id), UUID(x.order_id), x.backordered, x.priority, x.created_at)
            for x in self.lines.values()
            if x.sku == sku and x.backordered > 0
        ]

    def queue(self, sku: str) -> list[tuple[str, int]]:
        """The model's queue of a SKU in fill order: everything waiting, as if filled now."""
        big = sum(x.backordered for x in self.lines.values())
        return [
            (str(a.line_id), a.quantity)
            for a in fill(self.waiting(sku), big + 1, SPECS[sku].strategy)
        ]

    def fill(self, sku: str) -> list[dict[str, Any]]:
        """Give the SKU's available units to its queue, head first (the fill rule)."""
        units = self.available(sku)
        if units <= 0:
            return []
        done = []
        for a in fill(self.waiting(sku), units, SPECS[sku].strategy):
            line = self.lines[str(a.line_id)]
            line.allocated += a.quantity
            line.backordered -= a.quantity
            self.events["order.line_allocated"] += 1
            done.append(
                {"order_id": str(a.order_id), "line_id": str(a.line_id), "quantity": a.quantity}
            )
        return done

    def expect_order(self, body: dict[str, Any]) -> None:
        """An order as the API answers it equals the model's order."""
        order = self.orders[body["id"]]
        assert body["priority"] == order.priority
        got = {x["id"]: x for x in body["lines"]}
        assert set(got) == {x.id for x in order.lines}
        for line in order.lines:
            x = got[line.id]
            assert (x["allocated"], x["backordered"], x["shipped"], x["cancelled"]) == (
                line.allocated,
                line.backordered,
                line.shipped,
                line.cancelled,
            ), (x, line)
            assert x["status"] == status_of(line.units).value
        units = order.units
        assert body["status"] == status_of(units).value
        assert body["backorder_type"] == backorder_type_of(units, order.ship_policy).value
        assert body["ready_to_ship"] == ready_to_ship(units, order.ship_policy)

    def expect_refusal(self, r: Any, status: int, code: str) -> None:
        assert r.status_code == status, r.text
        assert _problem_code(r) == code, r.text

    # -- rules -----------------------------------------------------------------------------

    @initialize(stock=st.lists(st.integers(0, 5), min_size=len(SKUS), max_size=len(SKUS)))
    def opening_stock(self, stock: list[int]) -> None:
        for sku, quantity in zip(SKUS, stock, strict=True):
            if quantity:
                self.restock(sku, quantity)

    @rule(
        lines=st.lists(
            st.tuples(st.sampled_from(SKUS), st.integers(1, 5)),
            min_size=1,
            max_size=3,
            unique_by=lambda t: t[0],
        ),
        priority=st.integers(0, 9),
        policy=st.sampled_from(list(ShipPolicy)),
    )
    def place_order(self, lines: list[tuple[str, int]], priority: int, policy: ShipPolicy) -> None:
        split = {sku: take_now(q, self.available(sku)) for sku, q in lines}
        short = [s for s, (_, b) in split.items() if b and not SPECS[s].backorders_allowed]
        over = [
            s
            for s, (_, b) in split.items()
            if b
            and SPECS[s].backorder_limit is not None
            and self.backordered(s) + b > (SPECS[s].backorder_limit or 0)
        ]
        r = self.client.post(
            "/v1/orders",
            json={
                "customer_id": f"c-{self.steps}",
                "priority": priority,
                "ship_policy": policy.value,
                "lines": [{"sku": s, "quantity": q} for s, q in lines],
            },
            headers=OPS,
        )
        if short:
            self.expect_refusal(r, 409, "insufficient_stock")
            assert {x["sku"] for x in r.json()["lines"]} == set(short)
            return
        if over:
            self.expect_refusal(r, 409, "backorder_limit_exceeded")
            assert {x["sku"] for x in r.json()["lines"]} == set(over)
            return
        assert r.status_code == 201, r.text
        body = r.json()
        created_at = datetime.fromisoformat(body["created_at"])
        order = Order(body["id"], priority, policy, created_at)
        for x, (sku, q) in zip(body["lines"], lines, strict=True):
            assert (x["sku"], x["quantity"]) == (sku, q)
            a, b = split[sku]
            line = Line(x["id"], order.id, sku, q, a, b, priority, created_at)
            order.lines.append(line)
            self.lines[line.id] = line
        self.orders[order.id] = order
        self.events["order.created"] += 1
        if order.units.backordered:
            self.events["order.backordered"] += 1
        self.expect_order(body)

    @rule(
        sku=st.sampled_from(["SM-FIFO", "SM-PRIO"]),
        quantity=st.integers(1, 4),
        priority=st.integers(0, 9),
    )
    def place_one_line_order(self, sku: str, quantity: int, priority: int) -> None:
        """A second way in, so that queues grow long enough to be worth filling."""
        self.place_order([(sku, quantity)], priority, ShipPolicy.PARTIAL)

    @rule(sku=st.sampled_from(SKUS), quantity=st.integers(1, 8))
    def restock(self, sku: str, quantity: int) -> None:
        r = self.client.post(
            f"/v1/products/{sku}/restocks", json={"quantity": quantity}, headers=OPS
        )
        assert r.status_code == 201, r.text
        self.on_hand[sku] += quantity
        expected = self.fill(sku)
        body = r.json()
        assert body["allocations"] == expected
        assert body["available"] == self.available(sku)

    @rule(sku=st.sampled_from(SKUS), delta=st.integers(-6, 6).filter(bool))
    def adjust(self, sku: str, delta: int) -> None:
        r = self.client.post(
            f"/v1/products/{sku}/adjustments",
            json={"delta": delta, "reason": "cycle count"},
            headers=OPS,
        )
        if self.on_hand[sku] + delta < self.allocated(sku):
            self.expect_refusal(r, 409, "would_strand_allocations")
            return
        assert r.status_code == 201, r.text
        self.on_hand[sku] += delta
        expected = self.fill(sku) if delta > 0 else []
        assert r.json()["allocations"] == expected

    @precondition(lambda self: self.orders)
    @rule(data=st.data())
    def cancel_order(self, data: st.DataObject) -> None:
        order = self.orders[data.draw(st.sampled_from(list(self.orders)), label="order")]
        r = self.client.post(f"/v1/orders/{order.id}/cancel", headers=OPS)
        if order.units.open_units == 0:
            code = "already_shipped" if order.units.shipped else "conflict"
            self.expect_refusal(r, 409, code)
            return
        assert r.status_code == 200, r.text
        # One `order.line_cancelled` per line with open units; `order.cancelled` only when
        # the order becomes cancelled (nothing of it ever shipped).
        self.events["order.line_cancelled"] += sum(
            1 for line in order.lines if line.allocated + line.backordered
        )
        if not order.units.shipped:
            self.events["order.cancelled"] += 1
        for line in order.lines:
            line.cancelled += line.allocated + line.backordered
            line.allocated = line.backordered = 0
        for sku in sorted({line.sku for line in order.lines}):
            self.fill(sku)
        self.expect_order(r.json())

    @precondition(lambda self: self.lines)
    @rule(data=st.data())
    def cancel_line(self, data: st.DataObject) -> None:
        line = self.lines[data.draw(st.sampled_from(list(self.lines)), label="line")]
        quantity = data.draw(st.none() | st.integers(1, line.quantity + 1), label="quantity")
        r = self.client.post(
            f"/v1/orders/{line.order_id}/lines/{line.id}/cancel",
            json={} if quantity is None else {"quantity": quantity},
            headers=OPS,
        )
        remaining = line.allocated + line.backordered
        wanted = remaining if quantity is None else quantity
        if wanted == 0 or wanted > remaining:
            self.expect_refusal(r, 409, "already_shipped" if line.shipped else "conflict")
            return
        assert r.status_code == 200, r.text
        self.events["order.line_cancelled"] += 1
        from_backordered = min(wanted, line.backordered)
        line.backordered -= from_backordered
        line.allocated -= wanted - from_backordered
        line.cancelled += wanted
        order = self.orders[line.order_id]
        if order.units.open_units == 0 and not order.units.shipped:
            self.events["order.cancelled"] += 1
        self.fill(line.sku)
        self.expect_order(r.json())

    @precondition(lambda self: self.orders)
    @rule(data=st.data())
    def ship(self, data: st.DataObject) -> None:
        order = self.orders[data.draw(st.sampled_from(list(self.orders)), label="order")]
        picked = data.draw(
            st.lists(st.sampled_from(order.lines), min_size=1, unique_by=lambda x: x.id),
            label="lines",
        )
        # Now and then one more than is allocated, to provoke `not_allocated`.
        wanted = [
            (line, data.draw(st.integers(1, line.allocated + 1), label="quantity"))
            for line in picked
        ]
        r = self.client.post(
            f"/v1/orders/{order.id}/shipments",
            json={"lines": [{"line_id": line.id, "quantity": q} for line, q in wanted]},
            headers=OPS,
        )
        if order.ship_policy == ShipPolicy.COMPLETE and order.units.backordered:
            self.expect_refusal(r, 409, "order_incomplete")
            return
        if any(q > line.allocated for line, q in wanted):
            self.expect_refusal(r, 409, "not_allocated")
            return
        assert r.status_code == 201, r.text
        self.events["order.shipped"] += 1
        for line, q in wanted:
            line.allocated -= q
            line.shipped += q
            self.on_hand[line.sku] -= q
        body = r.json()
        assert sorted((x["line_id"], x["quantity"]) for x in body["lines"]) == sorted(
            (line.id, q) for line, q in wanted
        )
        self.expect_order(body["order"])

    @precondition(lambda self: self.orders)
    @rule(data=st.data(), priority=st.integers(0, 9))
    def reprioritise(self, data: st.DataObject, priority: int) -> None:
        order = self.orders[data.draw(st.sampled_from(list(self.orders)), label="order")]
        r = self.client.patch(f"/v1/orders/{order.id}", json={"priority": priority}, headers=OPS)
        assert r.status_code == 200, r.text
        order.priority = priority
        for line in order.lines:
            line.priority = priority
        self.expect_order(r.json())

    # -- after every step ------------------------------------------------------------------

    @invariant()
    def database_equals_model(self) -> None:
        self.steps += 1
        for sku in SKUS:
            # The model itself keeps invariant 2 (a sanity check of the test).
            assert self.available(sku) <= 0 or self.backordered(sku) == 0
        conn = self.db
        products = {
            r[0]: tuple(r[1:])
            for r in conn.execute("SELECT sku, on_hand, allocated, backordered FROM product")
        }
        lines = {
            str(r[0]): tuple(r[1:])
            for r in conn.execute(
                "SELECT l.id, l.allocated, l.backordered, l.shipped, l.cancelled, o.priority "
                "FROM order_line l JOIN sales_order o ON o.id = l.order_id"
            )
        }
        queued = {
            str(r[0]): r[1] for r in conn.execute("SELECT line_id, priority FROM backorder_queue")
        }
        orders = {
            str(r[0]): (r[1], r[2])
            for r in conn.execute("SELECT id, status, ready_to_ship FROM sales_order")
        }
        assert products == {
            sku: (self.on_hand[sku], self.allocated(sku), self.backordered(sku)) for sku in SKUS
        }
        assert lines == {
            x.id: (x.allocated, x.backordered, x.shipped, x.cancelled, x.priority)
            for x in self.lines.values()
        }
        assert queued == {x.id: x.priority for x in self.lines.values() if x.backordered > 0}
        assert orders == {
            o.id: (status_of(o.units).value, ready_to_ship(o.units, o.ship_policy))
            for o in self.orders.values()
        }
        r = self.client.get("/v1/backorders", params={"limit": 200}, headers=OPS)
        assert r.status_code == 200, r.text
        assert r.json()["next_cursor"] is None
        for sku in SKUS:
            rows = [x for x in r.json()["data"] if x["sku"] == sku]
            assert [(x["line_id"], x["quantity"]) for x in rows] == self.queue(sku)
            assert [x["position"] for x in rows] == list(range(1, len(rows) + 1))
        for o in self.orders.values():
            now = ready_to_ship(o.units, o.ship_policy)
            if now and not self.ready.get(o.id, False):
                self.events["order.ready_to_ship"] += 1  # written on entering the state
            self.ready[o.id] = now
        written = {
            r[0]: r[1]
            for r in conn.execute(
                "SELECT type, count(*) FROM event WHERE type LIKE 'order.%' "
                "OR type LIKE 'backorder.%' GROUP BY type"
            )
        }
        assert written == +self.events
        assert_invariants(self.database_url)


def test_the_service_behaves_like_its_model(settings: Settings, database_url: str) -> None:
    with in_process_client(settings) as client:
        BackorderMachine.client = client
        BackorderMachine.database_url = database_url
        try:
            run_state_machine_as_test(
                BackorderMachine,
                settings=settings_for_machine,
            )
        finally:
            truncate_all(database_url)


settings_for_machine = settings(
    max_examples=25,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
