"""A stateful model test: random sequences of orders, restocks, adjustments, cancellations,
shipments, reprioritisations, transfers and location changes (a third location opened, one
closed and reopened, ranks moved), driven through the real app on real PostgreSQL, each step
checked against a plain in-memory model and every invariant of docs/reference.md
("Invariants") and API.md ("Wave 2: locations").

The model is deliberately naive: per line its units per location, per SKU and location its
`on_hand`, the queue order of `backorder.domain.allocation` for every unit that becomes
available, and the contract's words for where units are taken (written out here, not
imported from `domain/locations.py`). After each step the database must equal the model line
by line, location by location and SKU by SKU, the queue endpoint must list the model's queue
in the model's order, and the SQL invariants must hold.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

import psycopg
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
from tests.support.inprocess import SyncClient, in_process_client, problem_code
from tests.support.invariants import assert_invariants


def by_line(allocations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A fill's allocations as an answer lists them: one per line, in queue order (its
    location is the call's; a line filled at two locations shows how much in all)."""
    out: list[dict[str, Any]] = []
    for a in allocations:
        if out and out[-1]["line_id"] == a["line_id"]:
            out[-1]["quantity"] += a["quantity"]
        else:
            out.append({k: a[k] for k in ("order_id", "line_id", "quantity")})
    return out


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
# `main` always exists; `east` is opened first, `west` by a rule (until then it is unknown);
# `nowhere` never exists. Ranks are drawn, so ties with `main` (broken by code) happen.
LOCATIONS = ["main", "east", "west"]
NAMED = st.sampled_from([*LOCATIONS, "nowhere"])
RANKS = st.sampled_from([50, 100, 150])


@dataclass
class Site:
    rank: int
    active: bool = True


@dataclass
class Line:
    id: str
    order_id: str
    sku: str
    quantity: int
    backordered: int
    priority: int
    created_at: datetime
    cancelled: int = 0
    # Per location: units allocated there and not shipped; units shipped from there.
    held: Counter[str] = field(default_factory=Counter)
    sent: Counter[str] = field(default_factory=Counter)

    @property
    def allocated(self) -> int:
        return sum(self.held.values())

    @property
    def shipped(self) -> int:
        return sum(self.sent.values())

    @property
    def units(self) -> Units:
        return Units(self.quantity, self.allocated, self.backordered, self.shipped, self.cancelled)

    def allocations(self) -> dict[str, tuple[int, int]]:
        return {
            loc: (self.held[loc], self.sent[loc])
            for loc in set(self.held) | set(self.sent)
            if self.held[loc] + self.sent[loc]
        }


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


class BackorderMachine(RuleBasedStateMachine):
    """Set by the test before running: the in-process client and the database it writes."""

    client: ClassVar[SyncClient]
    database_url: ClassVar[str]
    # What the runs together did with locations (the test demands each happened at least once,
    # so the location rules cannot all have been refused or skipped).
    achieved: ClassVar[Counter[str]] = Counter()

    def __init__(self) -> None:
        super().__init__()
        truncate_all(self.database_url)
        self.sites: dict[str, Site] = {"main": Site(100)}
        # On hand per (SKU, location), from the SKU's first movement there on.
        self.stock: dict[tuple[str, str], int] = {}
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

    def preference(self, loc: str) -> tuple[int, str]:
        return (self.sites[loc].rank, loc)

    def on_hand(self, sku: str) -> int:
        return sum(n for (s, _), n in self.stock.items() if s == sku)

    def allocated_at(self, sku: str, loc: str) -> int:
        return sum(x.held[loc] for x in self.lines.values() if x.sku == sku)

    def allocated(self, sku: str) -> int:
        return sum(x.allocated for x in self.lines.values() if x.sku == sku)

    def backordered(self, sku: str) -> int:
        return sum(line.backordered for line in self.lines.values() if line.sku == sku)

    def spare_at(self, sku: str, loc: str) -> int:
        """Unallocated units at the location, active or not."""
        return self.stock.get((sku, loc), 0) - self.allocated_at(sku, loc)

    def available_at(self, sku: str, loc: str) -> int:
        return self.spare_at(sku, loc) if self.sites[loc].active else 0

    def available(self, sku: str) -> int:
        return sum(self.available_at(sku, loc) for loc in self.sites)

    def unavailable(self, sku: str) -> int:
        return sum(self.spare_at(sku, loc) for loc, s in self.sites.items() if not s.active)

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
        """Give the SKU's available units to its queue, head first (the fill rule): the units
        of the active locations laid end to end by rank, then code, so the head is served from
        the first and a line may take from two."""
        units: list[tuple[str, list[int]]] = [
            (loc, [self.available_at(sku, loc)])
            for loc in sorted(self.sites, key=self.preference)
            if self.available_at(sku, loc) > 0
        ]
        done = []
        for a in fill(self.waiting(sku), sum(n[0] for _, n in units), SPECS[sku].strategy):
            line = self.lines[str(a.line_id)]
            line.backordered -= a.quantity
            want = a.quantity
            for loc, left in units:
                take = min(want, left[0])
                if take == 0:
                    continue
                left[0] -= take
                want -= take
                line.held[loc] += take
                self.events["order.line_allocated"] += 1
                done.append(
                    {
                        "order_id": str(a.order_id),
                        "line_id": str(a.line_id),
                        "quantity": take,
                        "location": loc,
                    }
                )
                if want == 0:
                    break
        if len({d["location"] for d in done}) > 1:
            self.achieved["fill_across_locations"] += 1
        return done

    def take_at_placement(self, sku: str, quantity: int, preferred: str | None) -> Counter[str]:
        """API.md: the preferred location (if active); then, if one active location can cover
        the whole rest of the line, the best-ranked such location; then active locations by
        rank, then code, taking what each has."""
        left = {loc: self.available_at(sku, loc) for loc in self.sites}
        taken: Counter[str] = Counter()
        if preferred in left and left[preferred] > 0:
            taken[preferred] = min(quantity, left.pop(preferred))
        rest = quantity - sum(taken.values())
        covering = sorted((loc for loc, n in left.items() if n >= rest), key=self.preference)
        if rest and covering:
            taken[covering[0]] += rest
            rest = 0
        for loc in sorted(left, key=self.preference):
            take = min(rest, left[loc])
            if take > 0:
                taken[loc] += take
                rest -= take
        return taken

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
            shown = [a["location"] for a in x["allocations"]]
            assert shown == sorted(line.allocations(), key=self.preference), (x, line)
            assert {
                a["location"]: (a["allocated"], a["shipped"]) for a in x["allocations"]
            } == line.allocations(), (x, line)
        units = order.units
        assert body["status"] == status_of(units).value
        assert body["backorder_type"] == backorder_type_of(units, order.ship_policy).value
        assert body["ready_to_ship"] == ready_to_ship(units, order.ship_policy)

    def expect_refusal(self, r: Any, status: int, code: str) -> None:
        assert r.status_code == status, r.text
        assert problem_code(r) == code, r.text

    def refused_location(self, r: Any, loc: str | None, *, new_stock: bool) -> bool:
        """The refusal a write naming `loc` gets for it, if any: unknown, or inactive when the
        write brings new stock there."""
        if loc is not None and loc not in self.sites:
            self.expect_refusal(r, 422, "unknown_location")
            return True
        if new_stock and not self.sites[loc or "main"].active:
            self.expect_refusal(r, 409, "location_inactive")
            return True
        return False

    # -- rules -----------------------------------------------------------------------------

    @initialize(
        rank=RANKS,
        stock=st.lists(
            st.tuples(st.integers(0, 5), st.integers(0, 3)),
            min_size=len(SKUS),
            max_size=len(SKUS),
        ),
    )
    def opening_stock(self, rank: int, stock: list[tuple[int, int]]) -> None:
        self.open_location("east", rank)
        for sku, (at_main, at_east) in zip(SKUS, stock, strict=True):
            if at_main:
                self.restock(sku, at_main, None)
            if at_east:
                self.restock(sku, at_east, "east")

    def open_location(self, code: str, rank: int) -> None:
        r = self.client.put(
            f"/v1/locations/{code}", json={"name": code.title(), "rank": rank}, headers=OPS
        )
        assert r.status_code == 201, r.text
        assert (r.json()["rank"], r.json()["active"]) == (rank, True)
        self.sites[code] = Site(rank)

    @precondition(lambda self: "west" not in self.sites)
    @rule(rank=RANKS)
    def open_west(self, rank: int) -> None:
        self.open_location("west", rank)

    @rule(
        lines=st.lists(
            st.tuples(st.sampled_from(SKUS), st.integers(1, 5)),
            min_size=1,
            max_size=3,
            unique_by=lambda t: t[0],
        ),
        priority=st.integers(0, 9),
        policy=st.sampled_from(list(ShipPolicy)),
        preferred=st.none() | NAMED,
    )
    def place_order(
        self,
        lines: list[tuple[str, int]],
        priority: int,
        policy: ShipPolicy,
        preferred: str | None = None,
    ) -> None:
        split = {sku: take_now(q, self.available(sku)) for sku, q in lines}
        short = [s for s, (_, b) in split.items() if b and not SPECS[s].backorders_allowed]
        over = [
            s
            for s, (_, b) in split.items()
            if b
            and SPECS[s].backorder_limit is not None
            and self.backordered(s) + b > (SPECS[s].backorder_limit or 0)
        ]
        body: dict[str, Any] = {
            "customer_id": f"c-{self.steps}",
            "priority": priority,
            "ship_policy": policy.value,
            "lines": [{"sku": s, "quantity": q} for s, q in lines],
        }
        if preferred is not None:
            body["preferred_location"] = preferred
        r = self.client.post("/v1/orders", json=body, headers=OPS)
        if preferred is not None and preferred not in self.sites:
            self.expect_refusal(r, 422, "unknown_location")
            return
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
            held = self.take_at_placement(sku, a, preferred)
            assert sum(held.values()) == a
            if len(held) > 1:
                self.achieved["line_split_at_placement"] += 1
            line = Line(x["id"], order.id, sku, q, b, priority, created_at, held=held)
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
        preferred=st.none() | st.sampled_from(LOCATIONS),
    )
    def place_one_line_order(
        self, sku: str, quantity: int, priority: int, preferred: str | None
    ) -> None:
        """A second way in, so that queues grow long enough to be worth filling."""
        self.place_order([(sku, quantity)], priority, ShipPolicy.PARTIAL, preferred)

    @rule(sku=st.sampled_from(SKUS), quantity=st.integers(1, 8), location=st.none() | NAMED)
    def restock(self, sku: str, quantity: int, location: str | None) -> None:
        body: dict[str, Any] = {"quantity": quantity}
        if location is not None:
            body["location"] = location
        r = self.client.post(f"/v1/products/{sku}/restocks", json=body, headers=OPS)
        if self.refused_location(r, location, new_stock=True):
            return
        assert r.status_code == 201, r.text
        at = location or "main"
        self.stock[(sku, at)] = self.stock.get((sku, at), 0) + quantity
        expected = self.fill(sku)
        body = r.json()
        assert body["location"] == at
        assert body["allocations"] == by_line(expected)
        assert body["available"] == self.available(sku)

    @rule(
        sku=st.sampled_from(SKUS),
        delta=st.integers(-6, 6).filter(bool),
        location=st.none() | NAMED,
    )
    def adjust(self, sku: str, delta: int, location: str | None) -> None:
        body: dict[str, Any] = {"delta": delta, "reason": "cycle count"}
        if location is not None:
            body["location"] = location
        r = self.client.post(f"/v1/products/{sku}/adjustments", json=body, headers=OPS)
        if self.refused_location(r, location, new_stock=delta > 0):
            return
        at = location or "main"
        if self.stock.get((sku, at), 0) + delta < self.allocated_at(sku, at):
            self.expect_refusal(r, 409, "would_strand_allocations")
            return
        assert r.status_code == 201, r.text
        self.stock[(sku, at)] = self.stock.get((sku, at), 0) + delta
        expected = self.fill(sku) if delta > 0 else []
        assert r.json()["allocations"] == by_line(expected)

    @rule(data=st.data(), to=NAMED)
    def transfer(self, data: st.DataObject, to: str) -> None:
        # Half the time from where some SKU has units to spare (they are rare: queues take
        # them), else from anywhere.
        spares = sorted(k for k in self.stock if self.spare_at(*k) > 0)
        anywhere = st.tuples(st.sampled_from(SKUS), st.sampled_from(LOCATIONS))
        sku, source = data.draw(
            (st.sampled_from(spares) | anywhere) if spares else anywhere, label="from"
        )
        # Mostly what the source can spare; now and then one more (`insufficient_stock`).
        spare = self.spare_at(sku, source) if source in self.sites else 0
        quantity = data.draw(st.integers(1, max(spare, 1) + 1), label="quantity")
        r = self.client.post(
            "/v1/transfers",
            json={"sku": sku, "from": source, "to": to, "quantity": quantity},
            headers=OPS,
        )
        if source == to:
            self.expect_refusal(r, 422, "validation_error")
            return
        # Each location's refusal (either may come first when both apply).
        refusals = {(422, "unknown_location") for loc in (source, to) if loc not in self.sites}
        if to in self.sites and not self.sites[to].active:
            refusals.add((409, "location_inactive"))
        if refusals:
            assert (r.status_code, problem_code(r)) in refusals, (refusals, r.text)
            return
        if quantity > self.spare_at(sku, source):
            self.expect_refusal(r, 409, "insufficient_stock")
            return
        assert r.status_code == 201, r.text
        self.achieved["transfer"] += 1
        self.stock[(sku, source)] -= quantity
        self.stock[(sku, to)] = self.stock.get((sku, to), 0) + quantity
        expected = self.fill(sku)
        assert r.json()["allocations"] == by_line(expected)
        assert r.json()["available"] == self.available(sku)

    @rule(location=st.sampled_from(LOCATIONS), active=st.booleans())
    def set_active(self, location: str, active: bool) -> None:
        r = self.client.put(f"/v1/locations/{location}", json={"active": active}, headers=OPS)
        if location not in self.sites:
            self.expect_refusal(r, 422, "validation_error")  # no name: not created
            return
        assert r.status_code == 200, r.text
        assert r.json()["active"] is active
        was = self.sites[location].active
        self.sites[location].active = active
        if active and not was:
            self.achieved["activation"] += 1
            for sku in SKUS:
                self.fill(sku)
        elif was and not active:
            self.achieved["deactivation"] += 1

    @rule(location=st.sampled_from(LOCATIONS), rank=RANKS)
    def rerank(self, location: str, rank: int) -> None:
        if location not in self.sites:
            return
        r = self.client.put(f"/v1/locations/{location}", json={"rank": rank}, headers=OPS)
        assert r.status_code == 200, r.text
        self.sites[location].rank = rank

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
            line.backordered = 0
            line.held.clear()
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
        line.cancelled += wanted
        # The allocated part is given back from the least preferred location first.
        release = wanted - from_backordered
        for loc in sorted(line.held, key=self.preference, reverse=True):
            take = min(release, line.held[loc])
            line.held[loc] -= take
            release -= take
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
        # None (the one location holding the lines' units, if one), mostly one of those
        # locations, sometimes any.
        holding = sorted({loc for x in picked for loc, n in x.held.items() if n})
        location = data.draw(
            st.none() | st.sampled_from(holding or LOCATIONS) | st.sampled_from(LOCATIONS),
            label="location",
        )
        # Now and then one more than is allocated there, to provoke `not_allocated`.
        wanted = [
            (
                line,
                data.draw(
                    st.integers(1, (line.held[location] if location else line.allocated) + 1),
                    label="quantity",
                ),
            )
            for line in picked
        ]
        body: dict[str, Any] = {"lines": [{"line_id": x.id, "quantity": q} for x, q in wanted]}
        if location is not None:
            body["location"] = location
        r = self.client.post(f"/v1/orders/{order.id}/shipments", json=body, headers=OPS)
        if location is not None and location not in self.sites:
            self.expect_refusal(r, 422, "unknown_location")
            return
        if order.ship_policy == ShipPolicy.COMPLETE and order.units.backordered:
            self.expect_refusal(r, 409, "order_incomplete")
            return
        held = {loc for line in picked for loc, n in line.held.items() if n}
        if location is None and len(held) > 1:
            self.expect_refusal(r, 422, "validation_error")
            assert "location" in r.text
            return
        at = location or next(iter(held), None)
        if at is None or any(q > line.held[at] for line, q in wanted):
            self.expect_refusal(r, 409, "not_allocated")
            return
        assert r.status_code == 201, r.text
        if at != "main":
            self.achieved["shipment_off_main"] += 1
        self.events["order.shipped"] += 1
        for line, q in wanted:
            line.held[at] -= q
            line.sent[at] += q
            self.stock[(line.sku, at)] -= q
        body = r.json()
        assert body["location"] == at
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
            # The model itself keeps the invariants (a sanity check of the test).
            assert self.available(sku) <= 0 or self.backordered(sku) == 0
            for loc in self.sites:
                assert 0 <= self.allocated_at(sku, loc) <= self.stock.get((sku, loc), 0)
        conn = self.db
        products = {
            r[0]: tuple(r[1:])
            for r in conn.execute(
                "SELECT sku, on_hand, allocated, backordered, unavailable FROM product"
            )
        }
        levels = {
            (r[0], r[1]): (r[2], r[3])
            for r in conn.execute("SELECT sku, location, on_hand, allocated FROM stock_level")
        }
        placed = {
            (str(r[0]), r[1]): (r[2], r[3])
            for r in conn.execute(
                "SELECT line_id, location, allocated, shipped FROM line_allocation "
                "WHERE allocated + shipped > 0"
            )
        }
        sites = {
            r[0]: Site(r[1], r[2]) for r in conn.execute("SELECT code, rank, active FROM location")
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
        assert sites == self.sites
        assert products == {
            sku: (
                self.on_hand(sku),
                self.allocated(sku),
                self.backordered(sku),
                self.unavailable(sku),
            )
            for sku in SKUS
        }
        assert levels == {
            (sku, loc): (n, self.allocated_at(sku, loc)) for (sku, loc), n in self.stock.items()
        }
        assert placed == {
            (x.id, loc): units
            for x in self.lines.values()
            for loc, units in x.allocations().items()
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
        # The products as the API shows them: network totals and a figure per location.
        r = self.client.get("/v1/products", params={"limit": 10}, headers=OPS)
        assert r.status_code == 200, r.text
        for p in r.json()["data"]:
            sku = p["sku"]
            held = sorted((loc for s, loc in self.stock if s == sku), key=self.preference)
            assert p["available"] == self.available(sku), p
            assert p["locations"] == [
                {
                    "location": loc,
                    "active": self.sites[loc].active,
                    "on_hand": self.stock[(sku, loc)],
                    "allocated": self.allocated_at(sku, loc),
                    "available": self.available_at(sku, loc),
                }
                for loc in held
            ], p
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
    BackorderMachine.achieved.clear()
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
    # The runs did use the network: lines served from two locations, units moved, a location
    # closed and reopened (with its units then filling the queue), shipments not from `main`.
    achieved = BackorderMachine.achieved
    for what in ("transfer", "deactivation", "activation"):
        assert achieved[what] > 0, achieved
    split = ("line_split_at_placement", "fill_across_locations", "shipment_off_main")
    assert sum(achieved[what] for what in split) > 0, achieved


settings_for_machine = settings(
    max_examples=25,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
