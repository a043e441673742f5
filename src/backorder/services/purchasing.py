"""Purchase orders: inbound supply with expected dates.

Open POs make a product's `incoming` (what they still bring) and drive the promise dates of
its waiting lines; a receipt is a restock with ledger kind `receipt`. Every PO write takes
the SKU lock first, keeps `incoming` in the same transaction, and refreshes the SKU's
promise dates, so the dates are never computed against supply that is about to change.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy.ext.asyncio import AsyncConnection

from backorder.db import events, locations, promises, purchasing
from backorder.db.stock import LockedProduct
from backorder.domain.errors import Conflict, NotFound, UnknownSku
from backorder.domain.locations import MAIN
from backorder.services import inventory


def view(row: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    out["remaining"] = row.quantity - row.received if row.status == "open" else 0
    out["overdue"] = row.status == "open" and out.pop("overdue_at") is not None
    return out


async def _lock_po(
    conn: AsyncConnection, po_id: UUID, *, receiving: bool = False
) -> tuple[Any, LockedProduct, Any]:
    """Lock the PO's SKU (the lock of its supply and queue), then the PO itself; `receiving`
    first locks its location, which must be active (`db/locations.py`: location first)."""
    found = await purchasing.sku_of(conn, po_id)
    if found is None:
        raise NotFound(f"no purchase order {po_id}")
    place = await locations.require_active(conn, found.location) if receiving else None
    product = await inventory.lock_one(conn, found.sku)
    return await purchasing.lock(conn, po_id), product, place


def _require_open(row: Any) -> None:
    if row.status != "open":
        raise Conflict(f"purchase order {row.id} is {row.status}", purchase_order_status=row.status)


async def create(
    conn: AsyncConnection,
    sku: str,
    quantity: int,
    expected_date: date,
    reference: str | None,
    location: str = MAIN,
) -> dict[str, Any]:
    # Units are expected where they will be received; an inactive location may await
    # supply (a store about to open), its receipt is what it refuses.
    await locations.require(conn, location)
    try:
        product = await inventory.lock_one(conn, sku)
    except NotFound:
        raise UnknownSku(f"unknown SKU: {sku}", sku=sku) from None
    row = await purchasing.insert(
        conn,
        po_id=uuid4(),
        sku=sku,
        quantity=quantity,
        expected_date=expected_date,
        reference=reference,
        location=location,
    )
    await purchasing.sync_incoming(conn, sku)
    await promises.refresh(conn, sku, product.allocation_strategy)
    return view(row)


async def get(conn: AsyncConnection, po_id: UUID) -> dict[str, Any]:
    row = await purchasing.get(conn, po_id)
    if row is None:
        raise NotFound(f"no purchase order {po_id}")
    return view(row)


async def list_pos(
    conn: AsyncConnection,
    *,
    sku: str | None,
    status: str | None,
    overdue: bool | None = None,
    limit: int,
    after: tuple[datetime, UUID] | None,
) -> list[dict[str, Any]]:
    rows = await purchasing.list_pos(
        conn, sku=sku, status=status, overdue=overdue, limit=limit, after=after
    )
    return [view(r) for r in rows]


async def change_expected_date(
    conn: AsyncConnection, po_id: UUID, expected_date: date
) -> dict[str, Any]:
    row, product, _ = await _lock_po(conn, po_id)
    _require_open(row)
    row = await purchasing.set_expected_date(conn, po_id, expected_date)
    await promises.refresh(conn, product.sku, product.allocation_strategy)
    return view(row)


async def cancel(conn: AsyncConnection, po_id: UUID) -> dict[str, Any]:
    row, product, _ = await _lock_po(conn, po_id)
    _require_open(row)
    row = await purchasing.cancel(conn, po_id)
    await purchasing.sync_incoming(conn, product.sku)
    await promises.refresh(conn, product.sku, product.allocation_strategy)
    return view(row)


async def mark_overdue(conn: AsyncConnection, sku: str) -> int:
    """Mark the SKU's open POs whose date has passed as overdue, each with one
    `purchase_order.overdue` event, and date the waiting lines as if those POs were not there
    (each line whose date moves writes `backorder.expected_date_changed`). Under the SKU lock,
    like every other PO write. Returns how many POs this call marked (0 if another did)."""
    product = await inventory.lock_one(conn, sku)
    marked = await purchasing.mark_overdue(conn, sku)
    if not marked:
        return 0
    marked.sort(key=lambda r: (r.expected_date, r.created_at, r.id))  # in cover order
    await events.emit_many(conn, [("purchase_order.overdue", _overdue_data(r)) for r in marked])
    await promises.refresh(conn, sku, product.allocation_strategy)
    return len(marked)


def _overdue_data(row: Any) -> dict[str, Any]:
    return {
        "purchase_order_id": row.id,
        "sku": row.sku,
        "expected_date": row.expected_date,
        "quantity": row.quantity,
        "received": row.received,
        "remaining": row.quantity - row.received,
        "reference": row.reference,
    }


async def receive(conn: AsyncConnection, po_id: UUID, quantity: int) -> dict[str, Any]:
    """Receive units: the PO and `incoming` first, then the restock, so that the one promise
    refresh after the fill sees the supply as it now is (no date moves there and back)."""
    row, product, place = await _lock_po(conn, po_id, receiving=True)
    _require_open(row)
    remaining = row.quantity - row.received
    if quantity > remaining:
        raise Conflict(
            f"only {remaining} units remain on purchase order {po_id}", remaining=remaining
        )
    po = await purchasing.add_received(conn, po_id, quantity)
    await purchasing.sync_incoming(conn, product.sku)
    # `add_units` refreshes the dates when it fills the queue; when it fills nothing the queue
    # is empty (new units always reach a waiting line), so there are no dates to move.
    movement, settled = await inventory.add_units(
        conn,
        product,
        "receipt",
        quantity,
        place,
        reference=row.reference or str(po_id),
        purchase_order_id=po_id,
    )
    answer = inventory.stock_answer(movement, product, quantity, settled)
    answer["purchase_order"] = view(po)
    return answer
