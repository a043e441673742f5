"""The SQL of CSV imports: many rows per statement, so that a file of 10,000 products is
seconds, not one round trip per cell. The rules stay where they live: a product made here is
the row `products.insert` would make, a stock count is the ledger row `stock.record_movement`
would write (the caller moves the locked product's counters and saves them as usual)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from backorder.db import products
from backorder.db.stock import LockedProduct
from backorder.db.tables import product as product_table

_SETTINGS = text(f"SELECT sku, {', '.join(products.SETTINGS)} FROM product WHERE sku = ANY(:skus)")


async def current_settings(conn: AsyncConnection, skus: list[str]) -> dict[str, dict[str, Any]]:
    """The settings of those of `skus` that exist."""
    rows = await conn.execute(_SETTINGS, {"skus": skus})
    return {r.sku: {k: getattr(r, k) for k in products.SETTINGS} for r in rows}


async def insert_products(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Create products (each dict: `sku` and the same settings); the SKUs created (one made
    meanwhile by someone else is left alone: the caller updates it instead)."""
    if not rows:
        return set()
    statement = (
        insert(product_table)
        .on_conflict_do_nothing(index_elements=["sku"])
        .returning(product_table.c.sku)
    )
    result = await conn.execute(statement, list(rows))
    return set(result.scalars())


_COUNT = text("""
WITH levels AS (
    INSERT INTO stock_level (sku, location)
    SELECT * FROM unnest(CAST(:skus AS text[]), CAST(:locations AS text[]))
    ON CONFLICT (sku, location) DO NOTHING
)
INSERT INTO stock_movement (sku, location, kind, quantity, reference, reason)
SELECT sku, location, 'adjustment', quantity, :reference, :reason
FROM unnest(CAST(:skus AS text[]), CAST(:locations AS text[]), CAST(:quantities AS bigint[]))
    AS m(sku, location, quantity)
""")


async def record_counts(
    conn: AsyncConnection,
    moves: Sequence[tuple[LockedProduct, str, int]],
    *,
    reference: str,
    reason: str,
) -> None:
    """Adjustments to locked products, one ledger row per (product, location, delta), each
    location's level made on its first movement (`product.level` made it in memory)."""
    if not moves:
        return
    await conn.execute(
        _COUNT,
        {
            "skus": [p.sku for p, _, _ in moves],
            "locations": [loc for _, loc, _ in moves],
            "quantities": [q for _, _, q in moves],
            "reference": reference,
            "reason": reason,
        },
    )
    for product, location, quantity in moves:
        product.move(location, on_hand=quantity)


_PO_REFERENCES = text(
    "SELECT DISTINCT sku, reference FROM purchase_order "
    "WHERE sku = ANY(:skus) AND reference = ANY(:references)"
)


async def purchase_order_references(
    conn: AsyncConnection, skus: list[str], references: list[str]
) -> set[tuple[str, str]]:
    """Which (sku, reference) pairs a purchase order already carries."""
    rows = await conn.execute(_PO_REFERENCES, {"skus": skus, "references": references})
    return {(r.sku, r.reference) for r in rows}
