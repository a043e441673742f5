"""The promise before ordering: what an order of N units would get now, and when the rest.

Nothing is written and nothing is locked: one statement reads the product, its queue and its
supply (`db/promises.quote`), and the answer is made by the very rules an order follows —
the placement's own check (`ordering._check`: refusals, and the split into units taken
now and units that wait) and the dating of a new line at the queue's tail
(`db/promises.tail_date`). A new order at priority 0 queues behind every line already
waiting, in a `priority` queue too (they all have a priority of 0 or more and came first).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from backorder.db import promises, stock
from backorder.domain.errors import DomainError, NotFound
from backorder.domain.orders import ShipPolicy

# The placement's own check, so that the promise cannot drift from what an order gets.
from backorder.services.ordering import LineRequest, PlaceOrder
from backorder.services.ordering import _check as check_order


async def promise(conn: AsyncConnection, sku: str, quantity: int) -> dict[str, Any]:
    row = await promises.quote(conn, sku, quantity)
    if row is None:
        raise NotFound(f"no product with SKU {sku!r}")
    product = stock.product_of(row)
    answer: dict[str, Any] = {
        "sku": sku,
        "quantity": quantity,
        "available_now": 0,
        "backordered": 0,
        "expected_date": None,
        "lines_ahead": 0,
        "units_ahead": 0,
        "refused": None,
    }
    order = PlaceOrder(
        channel="",
        customer_id="",
        priority=0,
        ship_policy=ShipPolicy.PARTIAL,
        external_ref=None,
        lines=[LineRequest(sku, quantity)],
    )
    try:
        (line,) = check_order(order, {sku: product})
    except DomainError as refusal:  # the order would be refused whole: it would get nothing
        answer["refused"] = refusal.code
        return answer
    answer.update(available_now=line.allocated, backordered=line.backordered)
    if line.backordered:
        answer.update(
            expected_date=row.tail_date,
            lines_ahead=row.lines_waiting,
            units_ahead=product.backordered,
        )
    return answer
