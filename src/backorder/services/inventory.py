"""Use cases that move stock: restock, adjust. New units fill the queue in the same
transaction, under the SKU lock."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from backorder.db import promises, stock
from backorder.db.stock import NOTHING_SETTLED, LockedProduct, Settled
from backorder.domain.errors import NotFound, WouldStrandAllocations


async def lock_one(conn: AsyncConnection, sku: str) -> LockedProduct:
    found = await stock.lock_products(conn, [sku])
    if sku not in found:
        raise NotFound(f"no product with SKU {sku!r}")
    return found[sku]


async def add_units(
    conn: AsyncConnection,
    product: LockedProduct,
    kind: str,
    quantity: int,
    *,
    reference: str | None = None,
    reason: str | None = None,
    purchase_order_id: UUID | None = None,
) -> tuple[Any, Settled]:
    """Put units on hand and give them to the queue, head first (restock, receipt, +adjust)."""
    movement = await stock.record_movement(
        conn,
        product,
        kind,
        quantity,
        reference=reference,
        reason=reason,
        purchase_order_id=purchase_order_id,
    )
    settled = await stock.settle(conn, [product])
    await stock.save_counters(conn, [product])
    if settled.units:
        await promises.refresh_after_fill(
            conn, product.sku, product.allocation_strategy, incoming=product.incoming
        )
    return movement, settled


def stock_answer(
    movement: Any, product: LockedProduct, quantity: int, settled: Settled = NOTHING_SETTLED
) -> dict[str, Any]:
    sku = product.sku
    return {
        "id": str(movement.id),
        "sku": sku,
        "quantity": quantity,
        # Already JSON (built by PostgreSQL); the response embeds it as it is.
        "allocations": orjson.Fragment(settled.json(sku)),
        "allocated_units": settled.units.get(sku, 0),
        "on_hand": product.on_hand,
        "allocated": product.allocated,
        "available": product.available,
        "backordered": product.backordered,
        "created_at": movement.created_at,
    }


async def restock(
    conn: AsyncConnection, sku: str, quantity: int, reference: str | None
) -> dict[str, Any]:
    product = await lock_one(conn, sku)
    movement, settled = await add_units(conn, product, "restock", quantity, reference=reference)
    return stock_answer(movement, product, quantity, settled)


async def adjust(
    conn: AsyncConnection, sku: str, delta: int, reason: str | None, reference: str | None
) -> dict[str, Any]:
    product = await lock_one(conn, sku)
    if delta > 0:
        movement, settled = await add_units(
            conn, product, "adjustment", delta, reference=reference, reason=reason
        )
        answer = stock_answer(movement, product, delta, settled)
    else:
        if product.on_hand + delta < product.allocated:
            raise WouldStrandAllocations(
                f"removing {-delta} would leave on_hand {product.on_hand + delta} below "
                f"allocated {product.allocated}",
                sku=sku,
                on_hand=product.on_hand,
                allocated=product.allocated,
                available=product.available,
            )
        movement = await stock.record_movement(
            conn, product, "adjustment", delta, reference=reference, reason=reason
        )
        await stock.save_counters(conn, [product])
        answer = stock_answer(movement, product, delta)
    answer["delta"] = delta
    answer["reason"] = reason
    return answer
