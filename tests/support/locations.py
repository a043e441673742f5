"""Helpers for the API tests of locations: locations, stock at a location, the figures a test
compares before and after a refusal, and the per-location invariants read through the API."""

from __future__ import annotations

from typing import Any

from httpx import AsyncClient

from tests.support.api import OPS
from tests.support.invariants import check_invariants
from tests.support.orders import product


async def put_location(
    client: AsyncClient, code: str, expect: int = 201, **body: Any
) -> dict[str, Any]:
    r = await client.put(f"/v1/locations/{code}", json=body, headers=OPS)
    assert r.status_code == expect, r.text
    out: dict[str, Any] = r.json()
    return out


async def restock(
    client: AsyncClient, sku: str, quantity: int, location: str | None = None, **extra: Any
) -> dict[str, Any]:
    body = {"quantity": quantity, **extra}
    if location is not None:
        body["location"] = location
    r = await client.post(f"/v1/products/{sku}/restocks", json=body, headers=OPS)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def at(product_: dict[str, Any]) -> dict[str, tuple[int, int, int]]:
    """The product's stock per location: `{code: (on_hand, allocated, available)}`."""
    return {
        loc["location"]: (loc["on_hand"], loc["allocated"], loc["available"])
        for loc in product_["locations"]
    }


def where(line: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """A line's units per location: `{code: (allocated, shipped)}`."""
    return {a["location"]: (a["allocated"], a["shipped"]) for a in line["allocations"]}


async def movements(client: AsyncClient, sku: str) -> list[dict[str, Any]]:
    r = await client.get(f"/v1/products/{sku}/movements", params={"limit": 200}, headers=OPS)
    assert r.status_code == 200, r.text
    data: list[dict[str, Any]] = r.json()["data"]
    return data


async def events(client: AsyncClient, type_: str) -> list[dict[str, Any]]:
    r = await client.get("/v1/events", params={"type": type_, "limit": 200}, headers=OPS)
    assert r.status_code == 200, r.text
    data: list[dict[str, Any]] = r.json()["data"]
    return data


async def state(client: AsyncClient, sku: str) -> tuple[Any, ...]:
    """What a refusal must leave as it was: the product, its ledger, its queue, the events."""
    queue = await client.get("/v1/backorders", params={"sku": sku}, headers=OPS)
    feed = await client.get("/v1/events", params={"limit": 200}, headers=OPS)
    return (await product(client, sku), await movements(client, sku), queue.json(), feed.json())


async def _all(client: AsyncClient, path: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 200}
        if cursor:
            params["cursor"] = cursor
        r = await client.get(path, params=params, headers=OPS)
        assert r.status_code == 200, r.text
        out += r.json()["data"]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return out


async def assert_location_invariants(client: AsyncClient, database_url: str) -> None:
    """The contract's invariants per SKU and location, through the API, then the network ones
    of `tests/support/invariants.py` (whose check that no stock idles while a customer waits
    leaves out the units inactive locations hold back: `unavailable`)."""
    active = {loc["code"]: loc["active"] for loc in await _all(client, "/v1/locations")}
    for p in await _all(client, "/v1/products"):
        levels = p["locations"]
        for field in ("on_hand", "allocated", "available"):
            assert p[field] == sum(loc[field] for loc in levels), (field, p)
        ranks = [loc["location"] for loc in levels]
        assert len(set(ranks)) == len(ranks), p
        ledger: dict[str, int] = {}
        for m in await movements(client, p["sku"]):
            ledger[m["location"]] = ledger.get(m["location"], 0) + m["quantity"]
        for loc in levels:
            code = loc["location"]
            assert loc["active"] == active[code], (code, p)
            assert 0 <= loc["allocated"] <= loc["on_hand"], (code, p)
            assert loc["on_hand"] == ledger.get(code, 0), (code, p, ledger)
            assert loc["available"] == (loc["on_hand"] - loc["allocated"] if loc["active"] else 0)
            if loc["active"] and loc["available"] > 0:
                assert p["backordered"] == 0, (code, p)
        assert set(ledger) == {loc["location"] for loc in levels}, (p, ledger)
    for o in await _all(client, "/v1/orders"):
        for line in o["lines"]:
            assert line["allocated"] == sum(a["allocated"] for a in line["allocations"]), line
            assert line["shipped"] == sum(a["shipped"] for a in line["allocations"]), line
            assert all(a["allocated"] + a["shipped"] > 0 for a in line["allocations"]), line
    figures = check_invariants(database_url)
    broken = {k: n for k, n in figures["violations"].items() if n}
    assert not broken, figures
    assert figures["oversold_units"] == 0, figures
