"""The SQL of the catalog: products with their live figures."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from backorder.domain.products import product_status

SETTINGS = (
    "name",
    "backorders_allowed",
    "backorder_limit",
    "allocation_strategy",
    "discontinued",
    "expected_restock_date",
    "reorder_point",
    "safety_stock",
    "lead_time_days",
    "max_backorder_days",
    "alternatives",
)
# Stock per location rides along as one JSON column (by rank, then code): the product and
# its locations in one statement, one index probe per location.
_LOCATIONS = """(SELECT COALESCE(json_agg(json_build_object(
        'location', s.location, 'active', l.active, 'on_hand', s.on_hand,
        'allocated', s.allocated,
        'available', CASE WHEN l.active THEN s.on_hand - s.allocated ELSE 0 END)
        ORDER BY l.rank, s.location), '[]')
    FROM stock_level s JOIN location l ON l.code = s.location
    WHERE s.sku = product.sku) AS locations"""
_COLUMNS = ", ".join(
    (
        *SETTINGS,
        "sku",
        "on_hand",
        "allocated",
        "unavailable",
        "backordered",
        "incoming",
        "created_at",
        "updated_at",
        _LOCATIONS,
    )
)
# The columns every product read selects (`db/hot.py` folds them into its own statement).
COLUMNS = _COLUMNS

# The status rule of `domain/products.py` in SQL, for filtering lists (a test keeps them equal).
STATUS_SQL = """CASE
    WHEN discontinued THEN 'discontinued'
    WHEN on_hand - allocated - unavailable > COALESCE(reorder_point, 0) THEN 'in_stock'
    WHEN on_hand - allocated - unavailable > 0 THEN 'low_stock'
    WHEN backorders_allowed THEN 'backorder'
    ELSE 'out_of_stock' END"""


def view(row: Any) -> dict[str, Any]:
    """A product as the API shows it: settings plus live figures and status."""
    return view_of(row._mapping)


def view_of(m: Mapping[str, Any]) -> dict[str, Any]:
    """`view` of a row as a mapping of its columns (a psycopg dict row, `db/hot.py`)."""
    available = m["on_hand"] - m["allocated"] - m["unavailable"]
    out = {"sku": m["sku"]}
    out.update({k: m[k] for k in SETTINGS})
    out["alternatives"] = list(m["alternatives"])
    out.update(
        on_hand=m["on_hand"],
        allocated=m["allocated"],
        available=available,
        backordered=m["backordered"],
        incoming=m["incoming"],
        locations=m["locations"],
        status=product_status(
            available=available,
            reorder_point=m["reorder_point"],
            backorders_allowed=m["backorders_allowed"],
            discontinued=m["discontinued"],
        ).value,
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )
    return out


async def get(conn: AsyncConnection, sku: str, *, lock: bool = False) -> Any:
    sql = f"SELECT {_COLUMNS} FROM product WHERE sku = :sku"
    if lock:
        sql += " FOR UPDATE"
    return (await conn.execute(text(sql), {"sku": sku})).one_or_none()


async def insert(conn: AsyncConnection, sku: str, values: dict[str, Any]) -> Any:
    """Create; concurrent creators of one SKU meet at the primary key (None: it exists now)."""
    cols = ["sku", *values]
    sql = (
        f"INSERT INTO product ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)}) "
        f"ON CONFLICT (sku) DO NOTHING RETURNING {_COLUMNS}"
    )
    return (await conn.execute(text(sql), {"sku": sku, **values})).one_or_none()


async def update(conn: AsyncConnection, sku: str, values: dict[str, Any]) -> Any:
    sets = ", ".join(f"{c} = :{c}" for c in values)
    sql = (
        f"UPDATE product SET {sets}{', ' if sets else ''}updated_at = clock_timestamp() "
        f"WHERE sku = :sku RETURNING {_COLUMNS}"
    )
    return (await conn.execute(text(sql), {"sku": sku, **values})).one()


async def list_products(
    conn: AsyncConnection, *, limit: int, after: str | None, status: str | None
) -> list[Any]:
    where = ["TRUE"]
    params: dict[str, Any] = {"limit": limit}
    if after is not None:
        where.append("sku > :after")
        params["after"] = after
    if status is not None:
        where.append(f"({STATUS_SQL}) = :status")
        params["status"] = status
    sql = f"SELECT {_COLUMNS} FROM product WHERE {' AND '.join(where)} ORDER BY sku LIMIT :limit"
    return list((await conn.execute(text(sql), params)).all())


_EXISTING = text("SELECT sku FROM product WHERE sku = ANY(:skus)")


async def existing_skus(conn: AsyncConnection, skus: list[str]) -> set[str]:
    """Which of `skus` are products."""
    rows = await conn.execute(_EXISTING, {"skus": skus})
    return set(rows.scalars())


async def available_alternatives(conn: AsyncConnection, skus: list[str]) -> list[Any]:
    sql = (
        f"SELECT {_COLUMNS} FROM product WHERE sku = ANY(:skus) "
        "AND on_hand - allocated - unavailable > 0 "
        "ORDER BY on_hand - allocated - unavailable DESC, sku LIMIT 200"
    )
    return list((await conn.execute(text(sql), {"skus": skus})).all())


async def movements(conn: AsyncConnection, sku: str, *, limit: int, after: int | None) -> list[Any]:
    rows = await conn.execute(
        text(
            "SELECT id, sku, location, kind, quantity, reference, reason, order_id, shipment_id, "
            "purchase_order_id, transfer_id, created_at FROM stock_movement "
            "WHERE sku = :sku AND id > :after ORDER BY id LIMIT :limit"
        ),
        {"sku": sku, "after": after or 0, "limit": limit},
    )
    return list(rows.all())
