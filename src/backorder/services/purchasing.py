"""Purchase orders: inbound supply with expected dates. Open POs make a product's `incoming`
and drive the promise dates of its waiting lines; a receipt is a restock (ledger `receipt`)."""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from backorder.db import promises, stock
from backorder.domain.errors import Conflict, NotFound, UnknownSku
from backorder.services import inventory

_COLUMNS = "id, sku, quantity, received, expected_date, reference, status, created_at, updated_at"


def view(row: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    out["remaining"] = row.quantity - row.received if row.status == "open" else 0
    return out


async def _add_incoming(conn: AsyncConnection, sku: str, delta: int) -> None:
    await conn.execute(
        text("UPDATE product SET incoming = incoming + :d WHERE sku = :sku"),
        {"d": delta, "sku": sku},
    )


async def _lock_po(conn: AsyncConnection, po_id: UUID) -> tuple[Any, stock.LockedProduct]:
    """Lock the PO's SKU first (every writer of a SKU's supply takes it), then the PO."""
    sku = await conn.scalar(text("SELECT sku FROM purchase_order WHERE id = :id"), {"id": po_id})
    if sku is None:
        raise NotFound(f"no purchase order {po_id}")
    product = await inventory.lock_one(conn, sku)
    row = (
        await conn.execute(
            text(f"SELECT {_COLUMNS} FROM purchase_order WHERE id = :id FOR UPDATE"), {"id": po_id}
        )
    ).one()
    return row, product


async def create(
    conn: AsyncConnection, sku: str, quantity: int, expected_date: date, reference: str | None
) -> dict[str, Any]:
    locked = await stock.lock_products(conn, [sku])
    if sku not in locked:
        raise UnknownSku(
            f"unknown SKU: {sku}", lines=[{"sku": sku, "requested": quantity, "available": 0}]
        )
    row = (
        await conn.execute(
            text(
                f"INSERT INTO purchase_order (id, sku, quantity, expected_date, reference) "
                f"VALUES (:id, :sku, :q, :d, :ref) RETURNING {_COLUMNS}"
            ),
            {"id": uuid4(), "sku": sku, "q": quantity, "d": expected_date, "ref": reference},
        )
    ).one()
    await _add_incoming(conn, sku, quantity)
    await promises.refresh(conn, sku, locked[sku].allocation_strategy)
    return view(row)


async def get(conn: AsyncConnection, po_id: UUID) -> dict[str, Any]:
    row = (
        await conn.execute(
            text(f"SELECT {_COLUMNS} FROM purchase_order WHERE id = :id"), {"id": po_id}
        )
    ).one_or_none()
    if row is None:
        raise NotFound(f"no purchase order {po_id}")
    return view(row)


async def list_pos(
    conn: AsyncConnection,
    *,
    sku: str | None,
    status: str | None,
    limit: int,
    after: tuple[Any, ...] | None,
) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text(
            f"SELECT {_COLUMNS} FROM purchase_order "
            "WHERE (CAST(:sku AS text) IS NULL OR sku = :sku) "
            "AND (CAST(:status AS text) IS NULL OR status = :status) "
            "AND (CAST(:after_at AS timestamptz) IS NULL "
            "     OR (created_at, id) > (CAST(:after_at AS timestamptz), CAST(:after_id AS uuid))) "
            "ORDER BY created_at, id LIMIT :limit"
        ),
        {
            "sku": sku,
            "status": status,
            "limit": limit,
            "after_at": after[0] if after else None,
            "after_id": after[1] if after else None,
        },
    )
    return [view(r) for r in rows]


async def change_expected_date(
    conn: AsyncConnection, po_id: UUID, expected_date: date
) -> dict[str, Any]:
    row, product = await _lock_po(conn, po_id)
    row = (
        await conn.execute(
            text(
                f"UPDATE purchase_order SET expected_date = :d, updated_at = clock_timestamp() "
                f"WHERE id = :id RETURNING {_COLUMNS}"
            ),
            {"d": expected_date, "id": po_id},
        )
    ).one()
    await promises.refresh(conn, product.sku, product.allocation_strategy)
    return view(row)


async def cancel(conn: AsyncConnection, po_id: UUID) -> dict[str, Any]:
    row, product = await _lock_po(conn, po_id)
    if row.status != "open":
        raise Conflict(f"purchase order is {row.status}")
    await _add_incoming(conn, product.sku, -(row.quantity - row.received))
    row = (
        await conn.execute(
            text(
                f"UPDATE purchase_order SET status = 'cancelled', updated_at = clock_timestamp() "
                f"WHERE id = :id RETURNING {_COLUMNS}"
            ),
            {"id": po_id},
        )
    ).one()
    await promises.refresh(conn, product.sku, product.allocation_strategy)
    return view(row)


async def receive(conn: AsyncConnection, po_id: UUID, quantity: int) -> dict[str, Any]:
    row, product = await _lock_po(conn, po_id)
    remaining = row.quantity - row.received
    if row.status != "open":
        raise Conflict(f"purchase order is {row.status}")
    if quantity > remaining:
        raise Conflict(f"only {remaining} units remain on this purchase order", remaining=remaining)
    movement, allocations = await inventory.add_units(
        conn,
        product,
        "receipt",
        quantity,
        reference=row.reference or str(po_id),
        purchase_order_id=po_id,
    )
    await _add_incoming(conn, product.sku, -quantity)
    po = (
        await conn.execute(
            text(
                "UPDATE purchase_order SET received = received + :q, "
                "status = CASE WHEN received + :q = quantity THEN 'closed' ELSE status END, "
                f"updated_at = clock_timestamp() WHERE id = :id RETURNING {_COLUMNS}"
            ),
            {"q": quantity, "id": po_id},
        )
    ).one()
    await promises.refresh(conn, product.sku, product.allocation_strategy)
    answer = inventory.stock_answer(movement, product, quantity, allocations)
    answer["purchase_order"] = view(po)
    return answer
