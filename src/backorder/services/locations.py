"""Use cases of locations: create or change one (activating fills the queue at once), move
units between two (a transfer), and the pick list of what to ship from one.

Locks: the location row(s) first, then the product rows in SKU order (`db/locations.py`).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from backorder.db import locations, stock
from backorder.domain.errors import InsufficientStock, NotFound, UnknownSku, ValidationFailed
from backorder.services import inventory


async def put_location(
    conn: AsyncConnection, code: str, values: dict[str, Any]
) -> tuple[bool, dict[str, Any]]:
    """Create the location (True) or change the fields given (False). A change of `active`
    locks every SKU stocked there: deactivating takes their unallocated units out of
    `available`; activating gives them back and fills the queues with them, head first."""
    existing = await locations.get(conn, code, lock="update")
    if existing is None:
        if not values.get("name"):
            raise ValidationFailed(
                "name is required to create a location",
                [{"loc": ["body", "name"], "field": "name", "msg": "required on create"}],
            )
        row = await locations.insert(conn, code, values)
        if row is not None:
            return True, locations.view(row)
        existing = await locations.get(conn, code, lock="update")  # created meanwhile
    row = await locations.update(conn, code, values)
    if row.active != existing.active:
        await _restate(conn, code)
    return False, locations.view(row)


async def _restate(conn: AsyncConnection, code: str) -> None:
    """Bring every SKU stocked at the location up to its new state, under the SKU locks; an
    activation's units go to the queues (one fill statement for all of them)."""
    skus = await locations.skus_at(conn, code)
    if not skus:
        return
    locked = await stock.lock_products(conn, skus)
    products = [locked[s] for s in sorted(locked)]
    for product in products:
        # The levels were read after the location's row changed: they carry its new state,
        # and the product's count of units held back is what they now hold back.
        product.unavailable = sum(level.unavailable for level in product.levels.values())
    # A deactivation frees no units, so its fill finds nothing to give.
    await inventory.fill_queues(conn, products)


async def get_location(conn: AsyncConnection, code: str) -> dict[str, Any]:
    row = await locations.get(conn, code)
    if row is None:
        raise NotFound(f"no location {code!r}")
    return locations.view(row)


async def transfer(
    conn: AsyncConnection,
    sku: str,
    source: str,
    target: str,
    quantity: int,
    reference: str | None,
) -> dict[str, Any]:
    """Move unallocated units from one location to another: two ledger rows (-q, +q). Units
    may leave an inactive location (closing a store); arriving at an active one they are
    available, and fill the queue there at once."""
    if source == target:
        raise ValidationFailed(
            "from and to are the same location",
            [{"loc": ["body", "to"], "field": "to", "msg": "must differ from `from`"}],
        )
    # Both location rows, in code order (no deadlock between two opposite transfers).
    rows = {}
    for code, field in sorted([(source, "from"), (target, "to")]):
        rows[field] = await (
            locations.require_active(conn, code, field=field)
            if field == "to"
            else locations.require(conn, code, field=field)
        )
    try:
        product = await inventory.lock_one(conn, sku)
    except NotFound:  # a SKU in a body, as for orders and purchase orders
        raise UnknownSku(f"unknown SKU: {sku}", sku=sku) from None
    origin = product.level(rows["from"])
    spare = origin.on_hand - origin.allocated
    if quantity > spare:
        raise InsufficientStock(
            f"{source} holds {spare} unallocated units of {sku}; {quantity} requested",
            lines=[{"sku": sku, "requested": quantity, "available": spare}],
            location=source,
        )
    product.level(rows["to"])
    transfer_id = uuid4()
    created_at = await locations.record_transfer(
        conn, transfer_id, sku, source, target, quantity, reference
    )
    for code, units in ((source, -quantity), (target, quantity)):
        await stock.record_movement(
            conn,
            product,
            "transfer",
            units,
            location=code,
            reference=reference,
            transfer_id=transfer_id,
        )
    settled = await inventory.fill_queues(conn, [product])
    return _transfer_answer(transfer_id, sku, source, target, quantity, reference, created_at) | {
        "allocations": orjson.Fragment(settled.json(sku)),
        "allocated_units": settled.units.get(sku, 0),
        "on_hand": product.on_hand,
        "allocated": product.allocated,
        "available": product.available,
        "backordered": product.backordered,
    }


def _transfer_answer(
    transfer_id: UUID | None,
    sku: str,
    source: str,
    target: str,
    quantity: int,
    reference: str | None,
    created_at: Any,
) -> dict[str, Any]:
    return {
        "id": transfer_id,
        "sku": sku,
        "from": source,
        "to": target,
        "quantity": quantity,
        "reference": reference,
        "created_at": created_at,
    }


async def pick_list(
    conn: AsyncConnection, code: str, *, limit: int, after: tuple[Any, ...] | None
) -> tuple[list[dict[str, Any]], tuple[Any, ...] | None]:
    """A page of the location's pick list, and the key of its last row when more follow."""
    rows = await locations.pick_list(conn, code, limit=limit + 1, after=after)
    more = len(rows) > limit
    rows = rows[:limit]
    items = [
        {
            "order_id": r.order_id,
            "line_id": r.line_id,
            "sku": r.sku,
            "customer_id": r.customer_id,
            "quantity": r.quantity,
            "priority": r.priority,
            "created_at": r.created_at,
        }
        for r in rows
    ]
    last = rows[-1] if rows and more else None
    key = None if last is None else (-last.priority, last.created_at, last.order_id, last.line_no)
    return items, key
