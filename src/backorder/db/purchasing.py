"""The SQL of purchase orders: rows, their locks, and the product's `incoming` figure."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

COLUMNS = (
    "id, sku, location, quantity, received, expected_date, reference, status, overdue_at, "
    "created_at, updated_at"
)

_INSERT = text(
    "INSERT INTO purchase_order (id, sku, location, quantity, expected_date, reference) "
    f"VALUES (:id, :sku, :location, :quantity, :expected_date, :reference) RETURNING {COLUMNS}"
)
_GET = text(f"SELECT {COLUMNS} FROM purchase_order WHERE id = :id")
_LOCK = text(f"SELECT {COLUMNS} FROM purchase_order WHERE id = :id FOR UPDATE")
_SKU_OF = text("SELECT sku, location FROM purchase_order WHERE id = :id")
_LIST = text(
    f"SELECT {COLUMNS} FROM purchase_order "
    "WHERE (CAST(:sku AS text) IS NULL OR sku = :sku) "
    "AND (CAST(:status AS text) IS NULL OR status = :status) "
    "AND (CAST(:overdue AS boolean) IS NULL "
    "     OR (status = 'open' AND overdue_at IS NOT NULL) = :overdue) "
    "AND (CAST(:after_at AS timestamptz) IS NULL "
    "     OR (created_at, id) > (CAST(:after_at AS timestamptz), CAST(:after_id AS uuid))) "
    "ORDER BY created_at, id LIMIT :limit"
)
# A new date (never in the past: the API refuses one) makes an overdue PO drive dates again;
# should it pass unreceived again, it is announced again.
_SET_EXPECTED_DATE = text(
    "UPDATE purchase_order SET expected_date = :expected_date, overdue_at = NULL, "
    f"updated_at = clock_timestamp() WHERE id = :id RETURNING {COLUMNS}"
)
_CANCEL = text(
    "UPDATE purchase_order SET status = 'cancelled', updated_at = clock_timestamp() "
    f"WHERE id = :id RETURNING {COLUMNS}"
)
_RECEIVE = text(
    "UPDATE purchase_order SET received = received + :quantity, "
    "status = CASE WHEN received + :quantity = quantity THEN 'closed' ELSE status END, "
    f"updated_at = clock_timestamp() WHERE id = :id RETURNING {COLUMNS}"
)
# "Past its date" is by the UTC calendar, as the API's dates are.
_PAST_DUE = (
    "status = 'open' AND overdue_at IS NULL "
    "AND expected_date < CAST(now() AT TIME ZONE 'UTC' AS date)"
)
_SKUS_PAST_DUE = text(
    f"SELECT DISTINCT sku FROM purchase_order WHERE {_PAST_DUE} ORDER BY sku LIMIT :limit"
)
# The claim: the row lock and the re-check of `overdue_at IS NULL` let one transaction only
# mark a PO, so its event is written once however many workers race for it.
_MARK_OVERDUE = text(
    "UPDATE purchase_order SET overdue_at = clock_timestamp(), updated_at = clock_timestamp() "
    f"WHERE sku = :sku AND {_PAST_DUE} RETURNING {COLUMNS}"
)
# Recomputed rather than incremented: `incoming` is by definition what open POs still bring,
# and a SKU has few open POs (read through the partial index of open ones).
_SYNC_INCOMING = text(
    "UPDATE product SET incoming = (SELECT COALESCE(sum(quantity - received), 0) "
    "FROM purchase_order WHERE sku = :sku AND status = 'open'), updated_at = clock_timestamp() "
    "WHERE sku = :sku"
)


async def insert(
    conn: AsyncConnection,
    *,
    po_id: UUID,
    sku: str,
    quantity: int,
    expected_date: date,
    reference: str | None,
    location: str,
) -> Any:
    params = {
        "id": po_id,
        "sku": sku,
        "location": location,
        "quantity": quantity,
        "expected_date": expected_date,
        "reference": reference,
    }
    return (await conn.execute(_INSERT, params)).one()


async def get(conn: AsyncConnection, po_id: UUID) -> Any | None:
    return (await conn.execute(_GET, {"id": po_id})).one_or_none()


async def sku_of(conn: AsyncConnection, po_id: UUID) -> Any | None:
    """The PO's SKU and location (neither ever changes), read without a lock."""
    return (await conn.execute(_SKU_OF, {"id": po_id})).one_or_none()


async def lock(conn: AsyncConnection, po_id: UUID) -> Any:
    """The PO row, locked; take the SKU lock first (a PO's SKU never changes)."""
    return (await conn.execute(_LOCK, {"id": po_id})).one()


async def list_pos(
    conn: AsyncConnection,
    *,
    sku: str | None,
    status: str | None,
    overdue: bool | None = None,
    limit: int,
    after: tuple[datetime, UUID] | None,
) -> list[Any]:
    rows = await conn.execute(
        _LIST,
        {
            "sku": sku,
            "status": status,
            "overdue": overdue,
            "limit": limit,
            "after_at": after[0] if after else None,
            "after_id": after[1] if after else None,
        },
    )
    return list(rows)


async def set_expected_date(conn: AsyncConnection, po_id: UUID, expected_date: date) -> Any:
    return (
        await conn.execute(_SET_EXPECTED_DATE, {"id": po_id, "expected_date": expected_date})
    ).one()


async def cancel(conn: AsyncConnection, po_id: UUID) -> Any:
    return (await conn.execute(_CANCEL, {"id": po_id})).one()


async def add_received(conn: AsyncConnection, po_id: UUID, quantity: int) -> Any:
    """Count received units; the PO closes when all have come."""
    return (await conn.execute(_RECEIVE, {"id": po_id, "quantity": quantity})).one()


async def skus_past_due(conn: AsyncConnection, limit: int) -> list[str]:
    """SKUs with an open PO past its date and not yet marked overdue (read through the partial
    index of exactly those)."""
    return list((await conn.execute(_SKUS_PAST_DUE, {"limit": limit})).scalars())


async def mark_overdue(conn: AsyncConnection, sku: str) -> list[Any]:
    """Mark the SKU's POs that are past their date; only the ones this call marked return."""
    return list(await conn.execute(_MARK_OVERDUE, {"sku": sku}))


async def sync_incoming(conn: AsyncConnection, sku: str) -> None:
    await conn.execute(_SYNC_INCOMING, {"sku": sku})
