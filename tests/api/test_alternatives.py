"""A product's `alternatives` name other products that exist: never an unknown SKU, never itself."""

from __future__ import annotations

import pytest
from httpx import AsyncClient

from tests.support.api import OPS, assert_problem, make_product


async def alternatives_of(client: AsyncClient, sku: str) -> list[str]:
    r = await client.get(f"/v1/products/{sku}", headers=OPS)
    assert r.status_code == 200, r.text
    listed: list[str] = r.json()["alternatives"]
    return listed


async def test_alternatives_naming_an_unknown_sku_are_refused_on_create(
    client: AsyncClient,
) -> None:
    await make_product(client, "ALT-1")
    body = {"name": "Main", "alternatives": ["ALT-1", "GHOST-2", "GHOST-1"]}
    r = await client.put("/v1/products/MAIN", json=body, headers=OPS)
    problem = assert_problem(r, 422, "unknown_sku")
    assert problem["skus"] == ["GHOST-1", "GHOST-2"]
    assert (await client.get("/v1/products/MAIN", headers=OPS)).status_code == 404


async def test_alternatives_naming_an_unknown_sku_are_refused_on_update(
    client: AsyncClient,
) -> None:
    await make_product(client, "ALT-1")
    await make_product(client, "MAIN", alternatives=["ALT-1"])
    r = await client.put(
        "/v1/products/MAIN", json={"alternatives": ["GHOST"], "name": "Renamed"}, headers=OPS
    )
    assert_problem(r, 422, "unknown_sku")
    product = (await client.get("/v1/products/MAIN", headers=OPS)).json()
    assert (product["alternatives"], product["name"]) == (["ALT-1"], "Product MAIN")


@pytest.mark.parametrize("exists", [False, True], ids=["on create", "on update"])
async def test_a_product_cannot_be_its_own_alternative(client: AsyncClient, exists: bool) -> None:
    await make_product(client, "ALT-1")
    if exists:
        await make_product(client, "MAIN")
    body = {"name": "Main", "alternatives": ["ALT-1", "MAIN"]}
    r = await client.put("/v1/products/MAIN", json=body, headers=OPS)
    problem = assert_problem(r, 422, "validation_error")
    assert [e["field"] for e in problem["errors"]] == ["alternatives.1"]
    after = await client.get("/v1/products/MAIN", headers=OPS)
    assert after.status_code == (200 if exists else 404)
    if exists:
        assert after.json()["alternatives"] == []


async def test_alternatives_that_exist_are_kept_and_can_be_cleared(client: AsyncClient) -> None:
    await make_product(client, "ALT-1")
    await make_product(client, "ALT-2")
    await make_product(client, "MAIN", alternatives=["ALT-2", "ALT-1"])
    assert await alternatives_of(client, "MAIN") == ["ALT-2", "ALT-1"]
    r = await client.put("/v1/products/MAIN", json={"alternatives": []}, headers=OPS)
    assert r.status_code == 200, r.text
    assert await alternatives_of(client, "MAIN") == []
