"""Placing an order: lock the SKUs, split each line by the placement rule, write the order,
its lines, events and counters in one statement, then date what waits.

Runs inside one transaction given by the caller; refusals raise before anything is written.
The decisions (`plan_order`, `answer`) and the statements are shared with the lean order path
(`lean_placement.py`), which runs them on psycopg directly, batched.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import TextClause
from sqlalchemy.ext.asyncio import AsyncConnection

from backorder.db import locations, orders, promises, stock
from backorder.db.orders import NewLine, OrderRow
from backorder.domain.errors import Conflict, DomainError, RetryLater, UnknownLocation
from backorder.domain.locations import allocate_line, preference
from backorder.domain.orders import ShipPolicy, Units, ready_to_ship, status_of, total
from backorder.domain.placement import LineRequest, split_lines
from backorder.services.cancellations import cancellation_events
from backorder.services.ordering import order_view

# Writes tried again when the order holding the reference vanishes mid-placement (see below).
_REF_RETRIES = 2


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    channel: str
    customer_id: str
    priority: int
    ship_policy: ShipPolicy
    external_ref: str | None
    lines: list[LineRequest]
    # "allow": what stock cannot cover now waits (a backorder); "cancel_rest": it is
    # cancelled at once and the order never waits.
    backorder: str = "allow"
    # Where the order would rather be served from (`domain/locations.allocate_line`).
    preferred_location: str | None = None
    # Until when its backordered units may wait (None: its products' `max_backorder_days`).
    backorder_deadline: datetime | None = None


async def _refuse_reused_ref(conn: AsyncConnection, cmd: PlaceOrder) -> None:
    """409 naming the channel's order already placed with this `external_ref`, if any."""
    if cmd.external_ref is None:
        return
    existing = await orders.order_with_ref(conn, cmd.channel, cmd.external_ref)
    if existing is not None:
        raise ref_taken(cmd, existing)


def unknown_preferred(code: str) -> UnknownLocation:
    """The 422 of a `preferred_location` that names no location."""
    return UnknownLocation(
        f"unknown location {code!r} in preferred_location",
        location=code,
        field="preferred_location",
    )


def ref_taken(cmd: PlaceOrder, existing: UUID) -> Conflict:
    """The 409 of an `external_ref` the channel already used, naming its order."""
    return Conflict(
        f"this channel already has an order with external_ref {cmd.external_ref!r}",
        order_id=str(existing),
        reason="external_ref_taken",
    )


def _by_preference(
    taken: tuple[tuple[str, int], ...], product: stock.LockedProduct
) -> list[tuple[str, int, int]]:
    """A new line's allocations as an order shows them: by rank, then code, none shipped."""
    return [
        (loc, units, 0)
        for loc, units in sorted(taken, key=lambda t: preference(product.levels[t[0]]))
    ]


@dataclass(frozen=True, slots=True)
class PlannedOrder:
    """An order decided under its SKU locks and not yet written: what `plan_order` made."""

    id: UUID
    cmd: PlaceOrder
    lines: list[NewLine]
    status: str
    ready: bool
    # The statement's parameters (`orders.place_order_params`).
    params: dict[str, Any]
    # The SKUs of lines that wait, sorted: their promise dates are refreshed after the write.
    waiting_skus: list[str]
    # With no deadline of its own, an order that waits for products with `max_backorder_days`
    # waits at most the smallest of them, from `created_at` (taken by the write).
    deadline_days: int | None = None

    def deadline(self, created_at: datetime) -> datetime | None:
        """The order's `backorder_deadline`, as the write stores it."""
        if self.cmd.backorder_deadline is not None:
            return self.cmd.backorder_deadline.astimezone(UTC)
        return created_at + timedelta(days=self.deadline_days) if self.deadline_days else None


def plan_order(cmd: PlaceOrder, locked: dict[str, stock.LockedProduct]) -> PlannedOrder:
    """Split each line by the placement rule against the locked products, and move their
    counters as the order takes stock; refusals raise (`DomainError`) before anything is
    decided. Pure: the caller writes `params` (one statement) in the locks' transaction."""
    splits = split_lines(cmd.lines, locked, cmd.backorder)
    new_lines = []
    for x in splits:
        product = locked[x.sku]
        taken = tuple(allocate_line(x.allocated, product.levels.values(), cmd.preferred_location))
        for location, n in taken:
            product.move(location, allocated=n)
        product.backordered += x.backordered
        home = product.levels[taken[0][0]].id if taken else 0
        new_lines.append(
            NewLine(
                uuid4(), x.sku, x.quantity, x.allocated, x.backordered, x.cancelled, taken, home
            )
        )
    units = total(
        [Units(x.quantity, x.allocated, x.backordered, 0, x.cancelled) for x in new_lines]
    )
    status = status_of(units).value
    ready = ready_to_ship(units, cmd.ship_policy)
    order_id = uuid4()
    announced: list[tuple[str, dict[str, Any]]] = [
        (
            "order.created",
            {
                "order_id": order_id,
                "customer_id": cmd.customer_id,
                "channel": cmd.channel,
                "status": status,
                "lines": [
                    {
                        "line_id": x.id,
                        "sku": x.sku,
                        "quantity": x.quantity,
                        "allocated": x.allocated,
                        "backordered": x.backordered,
                        "cancelled": x.cancelled,
                        "allocations": [
                            {"location": loc, "allocated": units} for loc, units in x.allocations
                        ],
                    }
                    for x in new_lines
                ],
            },
        ),
    ]
    waiting = [x for x in new_lines if x.backordered]
    if waiting:
        announced.append(
            (
                "order.backordered",
                {
                    "order_id": order_id,
                    "customer_id": cmd.customer_id,
                    "channel": cmd.channel,
                    "lines": [
                        {"line_id": x.id, "sku": x.sku, "backordered": x.backordered}
                        for x in waiting
                    ],
                },
            )
        )
    short = [x for x in new_lines if x.cancelled]
    if short:
        # `cancel_rest`: what stock could not cover is cancelled now. With nothing in stock
        # at all the order is placed cancelled whole (the answer says what happened).
        announced += cancellation_events(
            order_id,
            cmd.channel,
            [{"line_id": x.id, "sku": x.sku, "quantity": x.cancelled} for x in short],
            reason="short_stock",
            note=None,
            order_cancelled=status == "cancelled",
        )
    if ready:
        announced.append(("order.ready_to_ship", {"order_id": order_id, "channel": cmd.channel}))
    counters, transitions = stock.counters_after_placement([locked[s] for s in sorted(locked)])
    limits = [days for x in waiting if (days := locked[x.sku].max_backorder_days) is not None]
    deadline_days = min(limits) if limits and cmd.backorder_deadline is None else None
    params = orders.place_order_params(
        order_id=order_id,
        channel=cmd.channel,
        customer_id=cmd.customer_id,
        priority=cmd.priority,
        ship_policy=cmd.ship_policy.value,
        external_ref=cmd.external_ref,
        status=status,
        ready=ready,
        lines=new_lines,
        events=announced + transitions,
        counters=counters,
        backorder_deadline=cmd.backorder_deadline,
        deadline_days=deadline_days,
    )
    return PlannedOrder(
        order_id,
        cmd,
        new_lines,
        status,
        ready,
        params,
        sorted({x.sku for x in waiting}),
        deadline_days,
    )


def refresh_statements(
    plan: PlannedOrder, locked: dict[str, stock.LockedProduct]
) -> list[tuple[TextClause, dict[str, Any]]]:
    """What dates the order's waiting lines once it is written (`promises.refresh` per SKU
    that waits); `orders.WAITING_DATES` reads the dates back."""
    return [
        promises.refresh_statement(sku, locked[sku].allocation_strategy, new_order=plan.id)
        for sku in plan.waiting_skus
    ]


def answer(
    plan: PlannedOrder,
    locked: dict[str, stock.LockedProduct],
    created_at: datetime,
    dates: dict[UUID, Any],
) -> dict[str, Any]:
    """The order as the API shows it, from what was written: no read back."""
    cmd = plan.cmd
    order = OrderRow(
        plan.id,
        cmd.channel,
        cmd.customer_id,
        cmd.priority,
        cmd.ship_policy.value,
        cmd.external_ref,
        plan.status,
        created_at,
        created_at,
        plan.deadline(created_at),
        [
            orders.LineRow(
                x.id,
                plan.id,
                n,
                x.sku,
                x.quantity,
                x.allocated,
                x.backordered,
                0,
                x.cancelled,
                dates.get(x.id),
                _by_preference(x.allocations, locked[x.sku]),
            )
            for n, x in enumerate(plan.lines, start=1)
        ],
    )
    return order_view(order)


async def place_order(conn: AsyncConnection, cmd: PlaceOrder) -> dict[str, Any]:
    if cmd.preferred_location is not None and not await locations.exists(
        conn, cmd.preferred_location
    ):
        raise unknown_preferred(cmd.preferred_location)
    locked = await stock.lock_products(conn, [line.sku for line in cmd.lines])
    try:
        plan = plan_order(cmd, locked)
    except DomainError:
        # A retry of an order that was placed should learn that, not that stock ran out
        # since: looked up on the refusal path only, the happy path pays nothing for it.
        await _refuse_reused_ref(conn, cmd)
        raise
    created_at = await orders.place_order(conn, plan.params)
    retries = 0
    while created_at is None:
        await _refuse_reused_ref(conn, cmd)
        # The write found the channel's order with this reference, yet the lookup right after
        # it does not: that order was deleted in between (by hand; the service deletes no
        # order). A twin that rolled back cannot lead here: ON CONFLICT waits for it and then
        # inserts. So the reference is free again, and a 409 naming no order would break the
        # contract: the write wrote nothing and the SKU locks are still held, so make it again.
        if retries == _REF_RETRIES:
            # Orders with this reference keep vanishing under us: let the caller try again.
            raise RetryLater(f"external_ref {cmd.external_ref!r} is changing hands; retry")
        retries += 1
        created_at = await orders.place_order(conn, plan.params)
    dates: dict[UUID, Any] = {}
    if plan.waiting_skus:
        for statement, params in refresh_statements(plan, locked):
            await conn.execute(statement, params)
        rows = await conn.execute(orders.WAITING_DATES, {"id": plan.id})
        dates = {r.id: r.expected_date for r in rows}
    return answer(plan, locked, created_at, dates)
