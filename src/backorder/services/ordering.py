"""Use cases of orders after placement (`placement.py`): read, cancel (whole or a line), ship,
reprioritise.

Each runs inside one transaction given by the caller and takes the SKU locks of every product
it touches first, in sorted order. Refusals raise before anything is written.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from backorder.db import events, locations, orders, promises, stock
from backorder.db.orders import LineChange, OrderRow
from backorder.db.stock import LockedProduct
from backorder.domain.deadlines import at_risk
from backorder.domain.errors import (
    NotAllocated,
    NotFound,
    OrderIncomplete,
    ValidationFailed,
)
from backorder.domain.locations import release_order
from backorder.domain.orders import (
    ShipPolicy,
    backorder_type_of,
    ready_to_ship,
    status_of,
    total,
)
from backorder.services.cancellations import cancel_refusal, cancellation_events


def line_view(line: orders.LineRow, deadline: datetime | None = None) -> dict[str, Any]:
    """A line as the API shows it; `deadline`, its order's `backorder_deadline`."""
    u = line.units
    expected = line.expected_date if u.backordered else None
    return {
        "id": line.id,
        "sku": line.sku,
        "quantity": u.quantity,
        "allocated": u.allocated,
        "backordered": u.backordered,
        "shipped": u.shipped,
        "cancelled": u.cancelled,
        "status": status_of(u).value,
        "expected_date": expected,
        "at_risk": at_risk(u.backordered, expected, deadline),
        "allocations": [
            {"location": loc, "allocated": allocated, "shipped": shipped}
            for loc, allocated, shipped in line.allocations
        ],
    }


def order_view(order: OrderRow) -> dict[str, Any]:
    policy = ShipPolicy(order.ship_policy)
    units = total([line.units for line in order.lines])
    return {
        "id": order.id,
        "customer_id": order.customer_id,
        "channel": order.channel,
        "priority": order.priority,
        "ship_policy": order.ship_policy,
        "external_ref": order.external_ref,
        "backorder_deadline": order.backorder_deadline,
        "status": status_of(units).value,
        "backorder_type": backorder_type_of(units, policy).value,
        "ready_to_ship": ready_to_ship(units, policy),
        "quantity": units.quantity,
        "allocated": units.allocated,
        "backordered": units.backordered,
        "shipped": units.shipped,
        "cancelled": units.cancelled,
        "created_at": order.created_at,
        "updated_at": order.updated_at,
        "lines": [line_view(line, order.backorder_deadline) for line in order.lines],
    }


async def lock_order(
    conn: AsyncConnection, order_id: UUID, channel: str | None
) -> tuple[OrderRow, dict[str, LockedProduct]]:
    """Lock the order's SKUs, then read the order fresh (its lines only change under them)."""
    skus = await orders.order_skus(conn, order_id)
    locked = await stock.lock_products(conn, skus)
    order = await orders.get_order(conn, order_id, channel=channel)
    if order is None:
        raise NotFound(f"no order {order_id}")
    return order, locked


async def get_order(conn: AsyncConnection, order_id: UUID, channel: str | None) -> dict[str, Any]:
    order = await orders.get_order(conn, order_id, channel=channel)
    if order is None:
        raise NotFound(f"no order {order_id}")
    return order_view(order)


def _release(
    line: orders.LineRow, product: LockedProduct, units: int
) -> tuple[tuple[str, int, int], ...]:
    """Take `units` of the line's allocated units back, least preferred location first
    (`domain/locations.release_order`); the moves per location, for its `LineChange`."""
    held = {loc: allocated for loc, allocated, _ in line.allocations if allocated}
    freed: list[tuple[str, int, int]] = []
    ranks = [(loc, product.levels[loc].rank, n) for loc, n in held.items()]
    for loc in release_order(ranks):
        if units <= 0:
            break
        take = min(units, held[loc])
        product.move(loc, allocated=-take)
        freed.append((loc, -take, 0))
        units -= take
    return tuple(freed)


async def _settle_cancellation(
    conn: AsyncConnection,
    order: OrderRow,
    locked: dict[str, LockedProduct],
    changes: list[LineChange],
    skus_touched: set[str],
) -> None:
    """Apply cancellations, then give freed units to each SKU's queue in this transaction."""
    await orders.apply_line_changes(conn, changes)
    products = [locked[s] for s in sorted(skus_touched)]
    # One settlement for every order this cancellation changed, the cancelled one included:
    # two cancellations refilling the same waiting orders lock them in one order, not a cycle.
    await stock.settle(conn, products, [order.id])
    for product in products:
        await promises.refresh_after_fill(
            conn, product.sku, product.allocation_strategy, incoming=product.incoming
        )
    await stock.save_counters(conn, products)


async def cancel_order(
    conn: AsyncConnection, order_id: UUID, channel: str | None, reason: str | None
) -> dict[str, Any]:
    order, locked = await lock_order(conn, order_id, channel)
    units = {x.id: x.allocated + x.backordered for x in order.lines if x.allocated + x.backordered}
    if not units:
        shipped = sum(line.shipped for line in order.lines)
        raise cancel_refusal(shipped, "nothing left to cancel on this order", "nothing_to_cancel")
    await cancel_units(conn, order, locked, units, reason="request", note=reason)
    return await get_order(conn, order_id, channel)


async def cancel_line(
    conn: AsyncConnection,
    order_id: UUID,
    line_id: UUID,
    quantity: int | None,
    channel: str | None,
    reason: str | None,
) -> dict[str, Any]:
    order, locked = await lock_order(conn, order_id, channel)
    line = next((x for x in order.lines if x.id == line_id), None)
    if line is None:
        raise NotFound(f"no line {line_id} on order {order_id}")
    remaining = line.allocated + line.backordered
    wanted = remaining if quantity is None else quantity
    if wanted == 0 or wanted > remaining:
        raise cancel_refusal(
            line.shipped,
            f"the line has {remaining} unshipped, uncancelled units",
            "nothing_to_cancel" if remaining == 0 else "exceeds_remaining",
            cancellable=remaining,
        )
    await cancel_units(conn, order, locked, {line.id: wanted}, reason="request", note=reason)
    return await get_order(conn, order_id, channel)


def _shipping_location(
    by_id: dict[UUID, orders.LineRow], requested: list[tuple[UUID, int]]
) -> str | None:
    """The location a shipment naming none is made at: the one holding every unshipped
    allocated unit of its lines. None when they hold none (nothing can ship); 422 when they
    are at several."""
    held = {
        loc
        for line_id, _ in requested
        for loc, allocated, _ in by_id[line_id].allocations
        if allocated
    }
    if len(held) > 1:
        raise ValidationFailed(
            f"the lines' allocated units are at {', '.join(sorted(held))}: name the location "
            "to ship from (one shipment per location)",
            [
                {
                    "loc": ["body", "location"],
                    "field": "location",
                    "msg": f"required: units are at {', '.join(sorted(held))}",
                }
            ],
        )
    return next(iter(held), None)


async def ship(
    conn: AsyncConnection,
    order_id: UUID,
    requested: list[tuple[UUID, int]],
    location: str | None = None,
) -> dict[str, Any]:
    if location is not None:
        await locations.require(conn, location)  # an inactive location still ships
    order, locked = await lock_order(conn, order_id, None)
    by_id = {line.id: line for line in order.lines}
    ids = [line_id for line_id, _ in requested]
    if len(set(ids)) != len(ids):
        raise ValidationFailed(
            "a line may appear once per shipment",
            [{"loc": ["body", "lines"], "field": "lines", "msg": "duplicate line_id"}],
        )
    unknown = [str(i) for i in ids if i not in by_id]
    if unknown:
        raise ValidationFailed(
            f"not lines of this order: {', '.join(unknown)}",
            [{"loc": ["body", "lines"], "field": "lines", "msg": "unknown line_id"}],
        )
    open_units = sum(line.backordered for line in order.lines)
    if order.ship_policy == ShipPolicy.COMPLETE and open_units:
        raise OrderIncomplete(
            f"ship_policy is complete and {open_units} units still wait for stock",
            backordered=open_units,
        )
    at = location if location is not None else _shipping_location(by_id, requested)

    def allocated_at(line: orders.LineRow) -> int:
        return sum(units for loc, units, _ in line.allocations if loc == at)

    short = [
        {
            "line_id": line_id,
            "sku": by_id[line_id].sku,
            "requested": q,
            "allocated": allocated_at(by_id[line_id]),
            "location": at,
        }
        for line_id, q in requested
        if q > allocated_at(by_id[line_id])
    ]
    if short:
        where = f" at {at}" if at is not None else ""
        raise NotAllocated(f"cannot ship more than is allocated{where}", lines=short)
    assert at is not None  # every line has units there, so some location holds them
    shipment_id = uuid4()
    changes = []
    shipped_lines: list[dict[str, Any]] = []
    for line_id, q in requested:
        line = by_id[line_id]
        product = locked[line.sku]
        await stock.record_movement(
            conn,
            product,
            "shipment",
            -q,
            location=at,
            reference=str(shipment_id),
            order_id=order.id,
            shipment_id=shipment_id,
            allocated=-q,
        )
        changes.append(LineChange(line_id, allocated=-q, shipped=q, at=((at, -q, q),)))
        shipped_lines.append({"line_id": line_id, "sku": line.sku, "quantity": q})
    await orders.apply_line_changes(conn, changes)
    await stock.settle(conn, [], [order.id])
    await stock.save_counters(conn, [locked[s] for s in sorted({x["sku"] for x in shipped_lines})])
    row = (
        await conn.execute(
            text(
                "INSERT INTO shipment (id, order_id, location, lines) VALUES (:id, :order_id, "
                ":location, CAST(:lines AS jsonb)) RETURNING created_at"
            ),
            {
                "id": shipment_id,
                "order_id": order.id,
                "location": at,
                "lines": events.to_json(shipped_lines),
            },
        )
    ).one()
    await events.emit(
        conn,
        "order.shipped",
        {
            "order_id": order.id,
            "channel": order.channel,
            "shipment_id": shipment_id,
            "location": at,
            "lines": shipped_lines,
        },
    )
    return {
        "id": shipment_id,
        "order_id": order.id,
        "location": at,
        "lines": shipped_lines,
        "created_at": row.created_at,
        "order": await get_order(conn, order_id, None),
    }


async def reprioritise(conn: AsyncConnection, order_id: UUID, priority: int) -> dict[str, Any]:
    order, locked = await lock_order(conn, order_id, None)
    await conn.execute(
        text("UPDATE sales_order SET priority = :p, updated_at = clock_timestamp() WHERE id = :id"),
        {"p": priority, "id": order_id},
    )
    await conn.execute(
        text(
            "UPDATE backorder_queue SET priority = :p "
            "WHERE line_id IN (SELECT id FROM order_line WHERE order_id = :id)"
        ),
        {"p": priority, "id": order_id},
    )
    for line in order.lines:
        product = locked[line.sku]
        if line.backordered and product.allocation_strategy == "priority":
            await promises.refresh(conn, line.sku, product.allocation_strategy)
    return await get_order(conn, order_id, None)


async def cancel_units(
    conn: AsyncConnection,
    order: OrderRow,
    locked: dict[str, LockedProduct],
    units: dict[UUID, int],
    *,
    reason: str,
    note: str | None,
) -> list[dict[str, Any]]:
    """Cancel `units[line_id]` unshipped units of each line named: its backordered units
    first, then its allocated ones, least preferred location first (`_release`). Announces
    it (`cancellation_events`: `reason` why, `note` the caller's words), then gives the freed
    units to each SKU's queue. For a caller holding `lock_order`'s locks, with `order` read
    under them and not yet changed; answers the lines cancelled (`{line_id, sku, quantity}`,
    in line order)."""
    changes: list[LineChange] = []
    cancelled: list[dict[str, Any]] = []
    for line in order.lines:
        wanted = units.get(line.id, 0)
        if wanted <= 0:
            continue
        if wanted > line.allocated + line.backordered:
            raise ValueError(f"line {line.id} has fewer than {wanted} units to cancel")
        product = locked[line.sku]
        from_backordered = min(wanted, line.backordered)
        from_allocated = wanted - from_backordered
        product.backordered -= from_backordered
        freed = _release(line, product, from_allocated)
        changes.append(
            LineChange(line.id, -from_allocated, -from_backordered, cancelled=wanted, at=freed)
        )
        cancelled.append({"line_id": line.id, "sku": line.sku, "quantity": wanted})
    # The order becomes cancelled when this takes its last open unit and none ever shipped.
    left = sum(x.allocated + x.backordered for x in order.lines) - sum(
        x["quantity"] for x in cancelled
    )
    shipped = sum(x.shipped for x in order.lines)
    await events.emit_many(
        conn,
        cancellation_events(
            order.id,
            order.channel,
            cancelled,
            reason=reason,
            note=note,
            order_cancelled=left == 0 and shipped == 0,
        ),
    )
    await _settle_cancellation(conn, order, locked, changes, {x["sku"] for x in cancelled})
    return cancelled
