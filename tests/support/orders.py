"""Helpers for order and queue tests: stock moves, reads and shipments through the API."""

from __future__ import annotations

from typing import Any

from httpx import AsyncClient

from tests.support.api import OPS


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
    rows: list[dict[str, Any]] = []
    query: dict[str, Any] = dict(params)
    if sku is not None:
        query["sku"] = sku
    while True:
        r = await client.get("/v1/backorders", params=query, headers=OPS)
        assert r.status_code == 200, r.text
        body = r.json()
        rows.extend(body["data"])
        if body["next_cursor"] is None:
            return rows
        query["cursor"] = body["next_cursor"]


def line_units(order: dict[str, Any], index: int = 0) -> tuple[int, int, int, int]:
    line = order["lines"][index]
    return line["allocated"], line["backordered"], line["shipped"], line["cancelled"]
