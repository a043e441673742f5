"""Backorder deadlines that pass: the customer waited until then, not longer.

When an order's `backorder_deadline` passes with units still backordered, `expire_order`
cancels what the customer no longer waits for: with `ship_policy: partial` the backordered
units (what is allocated still ships); with `complete` every unshipped unit (the order ships
whole or not at all), its allocated units filling the SKUs' queues in the same transaction,
as a cancel does (`ordering.cancel_units`).

The feed reads cause first: one `order.backorder_expired` naming the lines and units, then
one `order.line_cancelled` per line (`reason: "deadline"`), then `order.cancelled` if the
order thereby became `cancelled`, then what the freed units did for other orders.

It runs under the locks of the order's SKUs and decides afresh under them, so any number of
workers may try the same order at once: the first expires it, the others find nothing
waiting and do nothing (`workers/deadlines.py`).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection

from backorder.db import deadlines, events
from backorder.db.orders import OrderRow
from backorder.domain.errors import NotFound
from backorder.domain.orders import ShipPolicy
from backorder.services import ordering


def units_to_cancel(order: OrderRow) -> dict[UUID, int]:
    """What a passed deadline cancels, per line: the backordered units of a `partial` order,
    every unshipped unit of a `complete` one. Empty when nothing waits any more."""
    if not any(line.backordered for line in order.lines):
        return {}
    if order.ship_policy == ShipPolicy.COMPLETE:
        units = {x.id: x.allocated + x.backordered for x in order.lines}
    else:
        units = {x.id: x.backordered for x in order.lines}
    return {line_id: n for line_id, n in units.items() if n}


async def expire_order(conn: AsyncConnection, order_id: UUID) -> bool:
    """Expire the order's backorders if its deadline has passed and units still wait; True
    when this call did, False when there was nothing to do (no deadline, not yet passed,
    nothing waiting: already expired by another worker, filled, or cancelled)."""
    # The order's SKUs first, then the order read fresh: its lines change only under them.
    try:
        order, locked = await ordering.lock_order(conn, order_id, None)
    except NotFound:
        return False
    if order.backorder_deadline is None:
        return False
    if order.backorder_deadline > await deadlines.clock(conn):
        return False
    units = units_to_cancel(order)
    if not units:
        return False
    lines = [
        {"line_id": line.id, "sku": line.sku, "quantity": units[line.id]}
        for line in order.lines
        if line.id in units
    ]
    await events.emit(conn, "order.backorder_expired", _expired_data(order, lines))
    await ordering.cancel_units(conn, order, locked, units, reason="deadline", note=None)
    return True


def _expired_data(order: OrderRow, lines: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "order_id": order.id,
        "customer_id": order.customer_id,
        "channel": order.channel,
        "backorder_deadline": order.backorder_deadline,
        "ship_policy": order.ship_policy,
        "lines": lines,
    }
