"""Use cases that move stock: restock, adjust. New units fill the queue in the same
transaction, under the SKU lock. Each names a location (`main` when the caller names none),
whose row is locked first (`db/locations.py`: location, then product)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from backorder.db import locations, promises, stock
from backorder.db.stock import NOTHING_SETTLED, LockedProduct, Settled
from backorder.domain.errors import NotFound, WouldStrandAllocations
from backorder.domain.locations import MAIN


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
    location: Any,
    *,
    reference: str | None = None,
    reason: str | None = None,
    purchase_order_id: UUID | None = None,
) -> tuple[Any, Settled]:
    """Put units on hand at an active location (a locked row of `db/locations.require_active`)
    and give them to the queue, head first (restock, receipt, +adjust)."""
    product.level(location)
    movement = await stock.record_movement(
        conn,
        product,
        kind,
        quantity,
        location=location.code,
        reference=reference,
        reason=reason,
        purchase_order_id=purchase_order_id,
    )
    return movement, await fill_queues(conn, [product])


async def fill_queues(conn: AsyncConnection, products: list[LockedProduct]) -> Settled:
    """After units became available (added, moved in, or a location activated): give them to
    the products' queues, head first, in one statement; write the counters; and re-date the
    waiting lines of every SKU whose queue moved."""
    settled = await stock.settle(conn, products)
    await stock.save_counters(conn, products)
    for product in products:
        if settled.units.get(product.sku):
            await promises.refresh_after_fill(
                conn, product.sku, product.allocation_strategy, incoming=product.incoming
            )
    return settled


def stock_answer(
    movement: Any, product: LockedProduct, quantity: int, settled: Settled = NOTHING_SETTLED
) -> dict[str, Any]:
    sku = product.sku
    return {
        "id": str(movement.id),
        "sku": sku,
        "location": movement.location,
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
    conn: AsyncConnection, sku: str, quantity: int, reference: str | None, location: str = MAIN
) -> dict[str, Any]:
    place = await locations.require_active(conn, location)
    product = await lock_one(conn, sku)
    movement, settled = await add_units(
        conn, product, "restock", quantity, place, reference=reference
    )
    return stock_answer(movement, product, quantity, settled)


async def adjust(
    conn: AsyncConnection,
    sku: str,
    delta: int,
    reason: str | None,
    reference: str | None,
    location: str = MAIN,
) -> dict[str, Any]:
    # New stock needs an active location; a count that finds fewer units may be booked
    # anywhere (closing a store ends with its shelves counted down).
    if delta > 0:
        place = await locations.require_active(conn, location)
    else:
        place = await locations.require(conn, location)
    product = await lock_one(conn, sku)
    if delta > 0:
        movement, settled = await add_units(
            conn, product, "adjustment", delta, place, reference=reference, reason=reason
        )
        answer = stock_answer(movement, product, delta, settled)
    else:
        level = product.level(place)
        if level.on_hand + delta < level.allocated:
            raise WouldStrandAllocations(
                f"removing {-delta} at {place.code} would leave on_hand {level.on_hand + delta} "
                f"there below the {level.allocated} units allocated there",
                sku=sku,
                location=place.code,
                on_hand=level.on_hand,
                allocated=level.allocated,
                available=level.on_hand - level.allocated,
            )
        movement = await stock.record_movement(
            conn,
            product,
            "adjustment",
            delta,
            location=place.code,
            reference=reference,
            reason=reason,
        )
        await stock.save_counters(conn, [product])
        answer = stock_answer(movement, product, delta)
    answer["delta"] = delta
    answer["reason"] = reason
    return answer
