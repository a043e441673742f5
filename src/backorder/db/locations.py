"""The SQL of locations: the locations themselves, stock per SKU and location, transfers and
pick lists. The fill stays in `db/stock.py`, one statement; this module feeds it the units
per location.

Locks, always in this order: a location row (`FOR SHARE` by a write that puts stock there,
`FOR UPDATE` by an activation or deactivation), then the product rows in SKU order. The
stock levels of a SKU are read after its product lock is held (`stock.lock_products`, whose
function reads them in a statement of its own: a statement that waited for the lock still
reads through the snapshot it started with).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from backorder.domain.errors import LocationInactive, NotFound, UnknownLocation
from backorder.domain.locations import LocationStock

LOCATION_COLUMNS = "code, id, name, rank, active, created_at, updated_at"


def view(row: Any) -> dict[str, Any]:
    return {
        "code": row.code,
        "name": row.name,
        "rank": row.rank,
        "active": row.active,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


async def get(conn: AsyncConnection, code: str, *, lock: str | None = None) -> Any:
    """The location row, or None; `lock`: "share" or "update"."""
    sql = f"SELECT {LOCATION_COLUMNS} FROM location WHERE code = :code"
    if lock == "share":
        sql += " FOR SHARE"
    elif lock == "update":
        sql += " FOR UPDATE"
    return (await conn.execute(text(sql), {"code": code})).one_or_none()


async def require(conn: AsyncConnection, code: str, *, field: str = "location") -> Any:
    """A location named in a body, held `FOR SHARE` until the transaction ends (no
    deactivation slips in between the check and the write), else 422 `unknown_location`."""
    row = await get(conn, code, lock="share")
    if row is None:
        raise UnknownLocation(f"unknown location {code!r} in {field}", location=code, field=field)
    return row


async def require_active(conn: AsyncConnection, code: str, *, field: str = "location") -> Any:
    """As `require`, and 409 `location_inactive` when it takes no new stock."""
    row = await require(conn, code, field=field)
    if not row.active:
        raise LocationInactive(
            f"location {code!r} is inactive and takes no new stock", location=code, field=field
        )
    return row


# The codes among `:codes` that name a location (the lean order path checks its batch's
# preferred locations with it, in the round trip that takes the SKU lock).
KNOWN = text("SELECT code FROM location WHERE code = ANY(CAST(:codes AS text[]))")


async def exists(conn: AsyncConnection, code: str) -> bool:
    rows = await conn.execute(text("SELECT 1 FROM location WHERE code = :code"), {"code": code})
    return rows.first() is not None


async def list_locations(
    conn: AsyncConnection, *, limit: int, after: tuple[int, str] | None
) -> list[Any]:
    where = "TRUE"
    params: dict[str, Any] = {"limit": limit}
    if after is not None:
        where = "(rank, code) > (:rank, :code)"
        params.update(rank=after[0], code=after[1])
    sql = f"SELECT {LOCATION_COLUMNS} FROM location WHERE {where} ORDER BY rank, code LIMIT :limit"
    return list((await conn.execute(text(sql), params)).all())


async def insert(conn: AsyncConnection, code: str, values: dict[str, Any]) -> Any:
    """Create; concurrent creators of one code meet at the primary key (None: it exists)."""
    cols = ["code", *values]
    sql = (
        f"INSERT INTO location ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)}) "
        f"ON CONFLICT (code) DO NOTHING RETURNING {LOCATION_COLUMNS}"
    )
    return (await conn.execute(text(sql), {"code": code, **values})).one_or_none()


async def update(conn: AsyncConnection, code: str, values: dict[str, Any]) -> Any:
    sets = "".join(f"{c} = :{c}, " for c in values)
    sql = (
        f"UPDATE location SET {sets}updated_at = clock_timestamp() WHERE code = :code "
        f"RETURNING {LOCATION_COLUMNS}"
    )
    return (await conn.execute(text(sql), {"code": code, **values})).one()


_LEVELS = text(
    "SELECT s.sku, s.location, l.rank, l.active, s.on_hand, s.allocated, l.id "
    "FROM stock_level s JOIN location l ON l.code = s.location "
    "WHERE s.sku = ANY(:skus) ORDER BY s.sku, l.rank, s.location"
)


async def load_levels(
    conn: AsyncConnection, skus: Iterable[str]
) -> dict[str, dict[str, LocationStock]]:
    """Each SKU's stock per location, by rank then code (read under the SKU locks)."""
    out: dict[str, dict[str, LocationStock]] = {}
    for r in await conn.execute(_LEVELS, {"skus": list(skus)}):
        out.setdefault(r.sku, {})[r.location] = LocationStock(
            r.location, r.rank, r.active, r.on_hand, r.allocated, r.id
        )
    return out


_SAVE_LEVELS = text(
    """
INSERT INTO stock_level (sku, location, on_hand, allocated)
SELECT * FROM unnest(CAST(:skus AS text[]), CAST(:locations AS text[]),
                     CAST(:on_hand AS bigint[]), CAST(:allocated AS bigint[]))
ON CONFLICT (sku, location) DO UPDATE
SET on_hand = EXCLUDED.on_hand, allocated = EXCLUDED.allocated
"""
)


async def save_levels(conn: AsyncConnection, levels: list[tuple[str, LocationStock]]) -> None:
    """Write stock levels as held in memory (under their SKU locks)."""
    if not levels:
        return
    await conn.execute(
        _SAVE_LEVELS,
        {
            "skus": [sku for sku, _ in levels],
            "locations": [s.location for _, s in levels],
            "on_hand": [s.on_hand for _, s in levels],
            "allocated": [s.allocated for _, s in levels],
        },
    )


async def skus_at(conn: AsyncConnection, code: str) -> list[str]:
    """The SKUs with a stock level at the location (an activation locks them all)."""
    rows = await conn.execute(
        text("SELECT sku FROM stock_level WHERE location = :code ORDER BY sku"), {"code": code}
    )
    return list(rows.scalars())


async def record_transfer(
    conn: AsyncConnection,
    transfer_id: UUID,
    sku: str,
    source: str,
    target: str,
    quantity: int,
    reference: str | None,
) -> datetime:
    row = (
        await conn.execute(
            text(
                "INSERT INTO transfer (id, sku, from_location, to_location, quantity, reference) "
                "VALUES (:id, :sku, :source, :target, :quantity, :reference) RETURNING created_at"
            ),
            {
                "id": transfer_id,
                "sku": sku,
                "source": source,
                "target": target,
                "quantity": quantity,
                "reference": reference,
            },
        )
    ).one()
    created_at: datetime = row.created_at
    return created_at


async def get_transfer(conn: AsyncConnection, transfer_id: UUID) -> Any:
    return (
        await conn.execute(
            text(
                "SELECT id, sku, from_location, to_location, quantity, reference, created_at "
                "FROM transfer WHERE id = :id"
            ),
            {"id": transfer_id},
        )
    ).one_or_none()


async def pick_list(
    conn: AsyncConnection, code: str, *, limit: int, after: tuple[Any, ...] | None
) -> list[Any]:
    """Lines of ready-to-ship orders with units allocated and unshipped at the location:
    highest order priority first, then oldest; keyset on (-priority, created_at, order, line)."""
    if await get(conn, code) is None:
        raise NotFound(f"no location {code!r}")
    params: dict[str, Any] = {"code": code, "limit": limit}
    keyset = "TRUE"
    if after is not None:
        keyset = "(-o.priority, o.created_at, o.id, l.line_no) > (:c_rank, :c_at, :c_order, :c_no)"
        params.update(c_rank=after[0], c_at=after[1], c_order=after[2], c_no=after[3])
    # No index leads here: the columns a fill rewrites stay unindexed (their rows are then
    # rewritten in place); the scan reads the ready orders and their lines holding units.
    sql = f"""
SELECT o.id AS order_id, l.id AS line_id, l.sku, o.customer_id, a.allocated AS quantity,
       o.priority, o.created_at, l.line_no
FROM sales_order o
JOIN order_line l ON l.order_id = o.id
JOIN line_allocation a ON a.line_id = l.id
WHERE o.ready_to_ship AND l.allocated > 0 AND a.location = :code AND a.allocated > 0
  AND {keyset}
ORDER BY -o.priority, o.created_at, o.id, l.line_no
LIMIT :limit
"""
    return list((await conn.execute(text(sql), params)).all())
