"""Use cases of the catalog: create or update products, read them with live figures."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from backorder.db import products, promises, stock
from backorder.domain.allocation import AllocationStrategy
from backorder.domain.errors import NotFound, UnknownSku, ValidationFailed


async def put_product(
    conn: AsyncConnection, sku: str, values: dict[str, Any]
) -> tuple[bool, dict[str, Any]]:
    """Create the product (True) or update the fields given (False)."""
    if values.get("alternatives"):
        await _check_alternatives(conn, sku, values["alternatives"])
    existing = await products.get(conn, sku, lock=True)
    if existing is None:
        if not values.get("name"):
            raise ValidationFailed(
                "name is required to create a product",
                [{"loc": ["body", "name"], "field": "name", "msg": "required on create"}],
            )
        row = await products.insert(conn, sku, values)
        if row is not None:
            return True, products.view(row)
        existing = await products.get(conn, sku, lock=True)  # created meanwhile: update it
    row = await products.update(conn, sku, values)
    if {"expected_restock_date", "allocation_strategy"} & values.keys() and row.backordered:
        await promises.refresh(conn, sku, AllocationStrategy(row.allocation_strategy))
    if "reorder_point" in values:
        locked = await stock.lock_products(conn, [sku])
        await stock.save_counters(conn, list(locked.values()))
        row = await products.get(conn, sku)
    return False, products.view(row)


async def _check_alternatives(conn: AsyncConnection, sku: str, alternatives: list[str]) -> None:
    """An alternative is offered to a customer instead of this product: it must be another
    product, and one that exists (products are never deleted, so it stays valid)."""
    if sku in alternatives:
        i = alternatives.index(sku)
        raise ValidationFailed(
            f"a product cannot be its own alternative: {sku}",
            [
                {
                    "loc": ["body", "alternatives", i],
                    "field": f"alternatives.{i}",
                    "msg": "is the product itself",
                }
            ],
        )
    unknown = sorted(set(alternatives) - await products.existing_skus(conn, alternatives))
    if unknown:
        raise UnknownSku(f"unknown SKU in alternatives: {', '.join(unknown)}", skus=unknown)


async def get_product(conn: AsyncConnection, sku: str) -> dict[str, Any]:
    row = await products.get(conn, sku)
    if row is None:
        raise NotFound(f"no product with SKU {sku!r}")
    return products.view(row)
