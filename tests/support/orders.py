"""Helpers for order and queue tests: stock moves, reads and shipments through the API."""

from __future__ import annotations

from typing import Any

from httpx import AsyncClient

from tests.support.api import OPS, all_pages


async def restock(client: AsyncClient, sku: str, quantity: int) -> dict[str, Any]:
    r = await client.post(f"/v1/products/{sku}/restocks", json={"quantity": quantity}, headers=OPS)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def get_order(
    client: AsyncClient, order_id: str, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    r = await client.get(f"/v1/orders/{order_id}", headers=headers or OPS)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


async def product(client: AsyncClient, sku: str) -> dict[str, Any]:
    r = await client.get(f"/v1/products/{sku}", headers=OPS)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


async def queue(client: AsyncClient, sku: str | None = None, **params: Any) -> list[dict[str, Any]]:
    """Every row of the backorder queue (all pages)."""
    return await all_pages(client, "/v1/backorders", sku=sku, **params)


def line_units(order: dict[str, Any], index: int = 0) -> tuple[int, int, int, int]:
    line = order["lines"][index]
    return line["allocated"], line["backordered"], line["shipped"], line["cancelled"]
