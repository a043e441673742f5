"""The promise before ordering: what an order of N units would get now, and when the rest.

Nothing is written and nothing is locked: one statement reads the product, its queue and its
supply (`db/promises.quote`), and the answer is made by the very rules an order follows —
the placement rule (`domain/placement.split_lines`: refusals, and the split into units taken
now and units that wait) and the dating of a new line at the queue's tail
(`db/promises.tail_date`). A new order at priority 0 queues behind every line already
waiting, in a `priority` queue too (they all have a priority of 0 or more and came first).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from backorder.db import promises, stock
from backorder.domain.errors import DomainError, NotFound
from backorder.domain.placement import LineRequest, split_lines


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
    try:
        (line,) = split_lines([LineRequest(sku, quantity)], {sku: product})
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
