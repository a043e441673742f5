"""API keys and roles: who may do what, and what a storefront may see."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from httpx import AsyncClient, Response
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.api import MASTER_KEY, OPS, bearer, make_key, make_product, place


def assert_problem(r: Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert (body["status"], body["code"]) == (status, code)
    assert body["request_id"] == r.headers["x-request-id"]


async def create_key(client: AsyncClient, name: str, role: str = "storefront") -> dict[str, Any]:
    r = await client.post("/v1/api-keys", json={"name": name, "role": role}, headers=OPS)
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


# --- 401 ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "test-master-key"},
        {"Authorization": "Bearer bo_not-a-real-key"},
        {"Authorization": "Bearer test-master-key-but-longer"},
        {"Authorization": "Bearer " + "x" * 5000},
        {"X-API-Key": "test-master-key"},
    ],
    ids=[
        "none",
        "bearer-without-key",
        "bearer-blank",
        "basic",
        "no-scheme",
        "unknown-key",
        "master-key-prefix",
        "very-long",
        "other-header",
    ],
)
async def test_no_key_or_an_unknown_key_is_unauthorized(
    client: AsyncClient, headers: dict[str, str]
) -> None:
    await make_product(client, "SKU-1")
    for method, path in [
        ("GET", "/v1/products"),
        ("GET", "/v1/products/SKU-1"),
        ("POST", "/v1/orders"),
        ("GET", "/v1/backorders"),
        ("POST", "/v1/api-keys"),
    ]:
        assert_problem(await client.request(method, path, headers=headers), 401, "unauthorized")


async def test_an_unauthorized_request_is_refused_before_its_body_is_judged(
    client: AsyncClient,
) -> None:
    r = await client.post("/v1/orders", json={"nonsense": True})
    assert_problem(r, 401, "unauthorized")


async def test_the_bearer_scheme_is_case_insensitive(client: AsyncClient) -> None:
    r = await client.get("/v1/products", headers={"Authorization": f"bearer {MASTER_KEY}"})
    assert r.status_code == 200, r.text


async def test_the_probes_need_no_key(client: AsyncClient) -> None:
    for path in ("/healthz", "/readyz", "/docs", "/openapi.json"):
        assert (await client.get(path)).status_code == 200, path


# --- 403 ------------------------------------------------------------------------------------

OPS_ONLY: list[tuple[str, str, dict[str, Any] | None]] = [
    ("PUT", "/v1/products/SKU-1", {"name": "renamed"}),
    ("PUT", "/v1/products/NEW-1", {"name": "new"}),
    ("POST", "/v1/products/SKU-1/restocks", {"quantity": 5}),
    ("POST", "/v1/products/SKU-1/adjustments", {"delta": -1}),
    ("GET", "/v1/products/SKU-1/movements", None),
    ("GET", "/v1/backorders", None),
    ("GET", "/v1/backorders?sku=SKU-1", None),
    ("GET", "/v1/events?channel=another-shop", None),  # its own channel's view only
    ("GET", "/v1/api-keys", None),
    ("POST", "/v1/api-keys", {"name": "sneaky", "role": "ops"}),
    ("DELETE", "/v1/api-keys/{key_id}", None),
    ("PATCH", "/v1/orders/{order_id}", {"priority": 7}),
    (
        "POST",
        "/v1/orders/{order_id}/shipments",
        {"lines": [{"line_id": "{line_id}", "quantity": 1}]},
    ),
]


def fill(template: Any, ids: dict[str, str]) -> Any:
    if isinstance(template, str):
        return template.format(**ids)
    if isinstance(template, dict):
        return {k: fill(v, ids) for k, v in template.items()}
    if isinstance(template, list):
        return [fill(v, ids) for v in template]
    return template


@pytest.mark.parametrize(
    ("method", "path", "body"), OPS_ONLY, ids=[f"{m} {p}" for m, p, _ in OPS_ONLY]
)
async def test_a_storefront_key_is_forbidden_on_ops_routes(
    client: AsyncClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    await make_product(client, "SKU-1", on_hand=10)
    created = await create_key(client, "web-shop")
    shop = bearer(created["key"])
    order = await place(client, [("SKU-1", 3)], headers=shop)
    ids = {"order_id": order["id"], "line_id": order["lines"][0]["id"], "key_id": created["id"]}
    before = (await client.get("/v1/products/SKU-1", headers=OPS)).json()

    r = await client.request(method, fill(path, ids), json=fill(body, ids), headers=shop)
    assert_problem(r, 403, "forbidden")

    assert (await client.get("/v1/products/SKU-1", headers=OPS)).json() == before
    assert (await client.get(f"/v1/orders/{order['id']}", headers=OPS)).json() == order
    assert (await client.get("/v1/products/NEW-1", headers=OPS)).status_code == 404
    keys = (await client.get("/v1/api-keys", headers=OPS)).json()["data"]
    assert [k["name"] for k in keys] == ["web-shop"]


async def test_a_storefront_may_not_set_an_ops_priority(client: AsyncClient) -> None:
    await make_product(client, "SKU-1", on_hand=10)
    shop = await make_key(client, "web-shop")
    await place(client, [("SKU-1", 1)], headers=shop, priority=4)
    r = await client.post(
        "/v1/orders",
        json={"customer_id": "c-1", "priority": 5, "lines": [{"sku": "SKU-1", "quantity": 1}]},
        headers=shop,
    )
    assert_problem(r, 422, "validation_error")
    await place(client, [("SKU-1", 1)], priority=9)


# --- what a storefront may do -----------------------------------------------------------------


async def test_a_storefront_reads_the_catalog(client: AsyncClient) -> None:
    await make_product(client, "SKU-2", on_hand=4)
    await make_product(client, "SKU-1", on_hand=10, alternatives=["SKU-2"])
    shop = await make_key(client, "web-shop")

    r = await client.get("/v1/products/SKU-1", headers=shop)
    assert r.status_code == 200 and r.json()["available"] == 10
    r = await client.get("/v1/products", headers=shop)
    assert [p["sku"] for p in r.json()["data"]] == ["SKU-1", "SKU-2"]
    r = await client.get("/v1/products/SKU-1/alternatives", headers=shop)
    assert [p["sku"] for p in r.json()["data"]] == ["SKU-2"]


async def test_a_storefront_places_reads_and_cancels_its_own_orders(client: AsyncClient) -> None:
    await make_product(client, "SKU-1", on_hand=10)
    shop = await make_key(client, "web-shop")

    order = await place(client, [("SKU-1", 4)], headers=shop)
    assert order["channel"] == "web-shop"
    r = await client.get(f"/v1/orders/{order['id']}", headers=shop)
    assert r.status_code == 200 and r.json()["id"] == order["id"]
    listed = (await client.get("/v1/orders", headers=shop)).json()["data"]
    assert [o["id"] for o in listed] == [order["id"]]

    line = order["lines"][0]
    r = await client.post(
        f"/v1/orders/{order['id']}/lines/{line['id']}/cancel", json={"quantity": 1}, headers=shop
    )
    assert r.status_code == 200, r.text
    assert r.json()["lines"][0]["cancelled"] == 1
    r = await client.post(f"/v1/orders/{order['id']}/cancel", headers=shop)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    assert (await client.get("/v1/products/SKU-1", headers=shop)).json()["available"] == 10


async def test_another_channels_orders_do_not_exist_for_a_storefront(client: AsyncClient) -> None:
    await make_product(client, "SKU-1", on_hand=10)
    web = await make_key(client, "web-shop")
    app = await make_key(client, "mobile-app")
    theirs = await place(client, [("SKU-1", 2)], headers=app)
    from_ops = await place(client, [("SKU-1", 2)])
    mine = await place(client, [("SKU-1", 2)], headers=web)

    for order in (theirs, from_ops):
        oid, lid = order["id"], order["lines"][0]["id"]
        assert_problem(await client.get(f"/v1/orders/{oid}", headers=web), 404, "not_found")
        assert_problem(await client.post(f"/v1/orders/{oid}/cancel", headers=web), 404, "not_found")
        r = await client.post(
            f"/v1/orders/{oid}/lines/{lid}/cancel", json={"quantity": 1}, headers=web
        )
        assert_problem(r, 404, "not_found")
    # ... exactly as an order that does not exist at all
    assert_problem(await client.get(f"/v1/orders/{uuid.uuid4()}", headers=web), 404, "not_found")

    listed = (await client.get("/v1/orders", headers=web)).json()["data"]
    assert [o["id"] for o in listed] == [mine["id"]]
    everything = (await client.get("/v1/orders", headers=OPS)).json()["data"]
    assert {o["id"] for o in everything} == {theirs["id"], from_ops["id"], mine["id"]}
    for order in (theirs, from_ops):
        again = (await client.get(f"/v1/orders/{order['id']}", headers=OPS)).json()
        assert again["status"] == "allocated" and again["lines"][0]["cancelled"] == 0


# --- keys: rotation, revocation, secrets ------------------------------------------------------


async def test_a_rotated_key_keeps_its_channels_orders(client: AsyncClient) -> None:
    await make_product(client, "SKU-1", on_hand=10)
    old = await create_key(client, "web-shop")
    order = await place(client, [("SKU-1", 2)], headers=bearer(old["key"]))

    new = await create_key(client, "web-shop")
    assert new["id"] != old["id"] and new["key"] != old["key"]
    r = await client.delete(f"/v1/api-keys/{old['id']}", headers=OPS)
    assert r.status_code == 204

    shop = bearer(new["key"])
    r = await client.get(f"/v1/orders/{order['id']}", headers=shop)
    assert r.status_code == 200, r.text
    assert [o["id"] for o in (await client.get("/v1/orders", headers=shop)).json()["data"]] == [
        order["id"]
    ]
    r = await client.post(f"/v1/orders/{order['id']}/cancel", headers=shop)
    assert r.status_code == 200, r.text
    assert_problem(
        await client.get(f"/v1/orders/{order['id']}", headers=bearer(old["key"])),
        401,
        "unauthorized",
    )


async def test_a_revoked_key_is_refused_at_once(client: AsyncClient) -> None:
    created = await create_key(client, "ops-team", role="ops")
    staff = bearer(created["key"])
    assert (await client.get("/v1/api-keys", headers=staff)).status_code == 200

    r = await client.delete(f"/v1/api-keys/{created['id']}", headers=staff)
    assert r.status_code == 204
    assert_problem(await client.get("/v1/products", headers=staff), 401, "unauthorized")
    assert_problem(await client.get("/v1/api-keys", headers=staff), 401, "unauthorized")
    r = await client.delete(f"/v1/api-keys/{created['id']}", headers=OPS)
    assert_problem(r, 404, "not_found")
    keys = (await client.get("/v1/api-keys", headers=OPS)).json()["data"]
    assert created["id"] not in {k["id"] for k in keys}


async def test_revoking_an_unknown_key_is_not_found(client: AsyncClient) -> None:
    assert_problem(
        await client.delete(f"/v1/api-keys/{uuid.uuid4()}", headers=OPS), 404, "not_found"
    )
    assert_problem(
        await client.delete("/v1/api-keys/not-a-uuid", headers=OPS), 422, "validation_error"
    )


async def test_an_ops_key_may_do_what_the_master_key_does(client: AsyncClient) -> None:
    staff = await make_key(client, "ops-team", role="ops")
    r = await client.put("/v1/products/SKU-1", json={"name": "x"}, headers=staff)
    assert r.status_code == 201, r.text
    r = await client.post("/v1/api-keys", json={"name": "web", "role": "storefront"}, headers=staff)
    assert r.status_code == 201, r.text
    assert (await client.get("/v1/backorders", headers=staff)).status_code == 200


async def test_a_created_key_is_shown_once_and_stored_as_a_hash(
    client: AsyncClient, engine: AsyncEngine
) -> None:
    created = await create_key(client, "web-shop")
    assert set(created) >= {"id", "name", "role", "key"}
    assert (created["name"], created["role"]) == ("web-shop", "storefront")
    secret = created["key"]
    assert len(secret) >= 32

    listed = await client.get("/v1/api-keys", headers=OPS)
    assert listed.status_code == 200
    assert secret not in listed.text
    [row] = listed.json()["data"]
    assert row["id"] == created["id"] and "key" not in row and "key_hash" not in row
    assert secret not in (await client.get("/openapi.json")).text

    async with engine.connect() as conn:
        stored = (
            await conn.execute(
                text("SELECT * FROM api_key WHERE id = :id"), {"id": uuid.UUID(created["id"])}
            )
        ).one()
    assert stored.key_hash != secret
    assert secret not in stored.key_hash
    assert all(secret != value for value in stored._mapping.values())
    assert stored.key_hash not in listed.text


async def test_keys_may_share_a_name_and_list_in_pages(client: AsyncClient) -> None:
    made = {(await create_key(client, "web-shop"))["id"] for _ in range(3)}
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/api-keys", params=params, headers=OPS)).json()
        seen += [k["id"] for k in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(made) and len(seen) == 3
