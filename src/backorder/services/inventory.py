"""Use cases that move stock: restock, adjust. New units fill the queue in the same
transaction, under the SKU lock."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection

from backorder.db import orders, promises, stock
from backorder.db.stock import LockedProduct
from backorder.domain.allocation import Allocation
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
) -> tuple[Any, list[Allocation]]:
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
    allocations = await stock.fill_queue(conn, product)
    await orders.refresh_order_statuses(conn, [a.order_id for a in allocations])
    await stock.save_counters(conn, [product])
    if allocations:
        await promises.refresh(conn, product.sku, product.allocation_strategy)
    return movement, allocations


def stock_answer(
    movement: Any, product: LockedProduct, quantity: int, allocations: list[Allocation]
) -> dict[str, Any]:
    return {
        "id": str(movement.id),
        "sku": product.sku,
        "quantity": quantity,
        "allocations": [
            {"order_id": a.order_id, "line_id": a.line_id, "quantity": a.quantity}
            for a in allocations
        ],
        "allocated_units": sum(a.quantity for a in allocations),
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
    movement, allocations = await add_units(conn, product, "restock", quantity, reference=reference)
    return stock_answer(movement, product, quantity, allocations)


async def adjust(
    conn: AsyncConnection, sku: str, delta: int, reason: str | None, reference: str | None
) -> dict[str, Any]:
    product = await lock_one(conn, sku)
    if delta > 0:
        movement, allocations = await add_units(
            conn, product, "adjustment", delta, reference=reference, reason=reason
        )
        answer = stock_answer(movement, product, delta, allocations)
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
        answer = stock_answer(movement, product, delta, [])
    answer["delta"] = delta
    answer["reason"] = reason
    return answer
