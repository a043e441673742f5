"""Back-in-stock subscriptions: named once by the next `product.back_in_stock`, then used up."""

from __future__ import annotations

from typing import Any

from httpx import AsyncClient

from tests.support.api import OPS, make_key, make_product, place


async def subscribe(
    client: AsyncClient,
    sku: str,
    customer_id: str,
    contact: str | None = None,
    headers: dict[str, str] | None = None,
    expect: int = 201,
) -> Any:
    body: dict[str, Any] = {"customer_id": customer_id}
    if contact is not None:
        body["contact"] = contact
    r = await client.post(f"/v1/products/{sku}/subscriptions", json=body, headers=headers or OPS)
    assert r.status_code == expect, r.text
    return r.json()


async def restock(client: AsyncClient, sku: str, quantity: int) -> None:
    r = await client.post(f"/v1/products/{sku}/restocks", json={"quantity": quantity}, headers=OPS)
    assert r.status_code == 201, r.text


async def back_in_stock(client: AsyncClient) -> list[dict[str, Any]]:
    r = await client.get(
        "/v1/events", params={"type": "product.back_in_stock", "limit": 200}, headers=OPS
    )
    return [e["data"] for e in r.json()["data"]]


async def test_a_storefront_subscribes_a_customer(client: AsyncClient) -> None:
    await make_product(client, "A")
    shop = await make_key(client, "web-shop")
    sub = await subscribe(client, "A", "c-1", "ana@example.com", headers=shop)
    assert sub["sku"] == "A"
    assert (sub["customer_id"], sub["contact"], sub["channel"]) == (
        "c-1",
        "ana@example.com",
        "web-shop",
    )
    assert (sub["status"], sub["notified_at"]) == ("waiting", None)
    assert sub["id"] and sub["created_at"].endswith("Z")


async def test_subscribing_to_an_unknown_product_is_not_found(client: AsyncClient) -> None:
    body = await subscribe(client, "NOPE", "c-1", expect=404)
    assert body["code"] == "not_found"


async def test_bad_subscription_bodies_are_validation_errors(client: AsyncClient) -> None:
    await make_product(client, "A")
    for bad in ({}, {"customer_id": ""}, {"customer_id": 7}, {"customer_id": "c", "x": 1}):
        r = await client.post("/v1/products/A/subscriptions", json=bad, headers=OPS)
        assert (r.status_code, r.json()["code"]) == (422, "validation_error"), bad


async def test_one_back_in_stock_event_names_the_waiting_subscribers_once(
    client: AsyncClient,
) -> None:
    await make_product(client, "A")
    shop = await make_key(client, "web-shop")
    ana = await subscribe(client, "A", "c-ana", "ana@example.com", headers=shop)
    bo = await subscribe(client, "A", "c-bo")
    assert await back_in_stock(client) == []

    await restock(client, "A", 5)
    events = await back_in_stock(client)
    assert len(events) == 1
    assert events[0]["sku"] == "A"
    # (the event does not promise an order among subscribers)
    assert sorted(events[0]["subscribers"], key=lambda s: s["customer_id"]) == [
        {
            "subscription_id": ana["id"],
            "customer_id": "c-ana",
            "contact": "ana@example.com",
            "channel": "web-shop",
        },
        {"subscription_id": bo["id"], "customer_id": "c-bo", "contact": None, "channel": "master"},
    ]
    listed = (await client.get("/v1/products/A/subscriptions", headers=OPS)).json()["data"]
    assert {s["status"] for s in listed} == {"notified"}

    # a second restock while in stock announces nothing
    await restock(client, "A", 5)
    assert len(await back_in_stock(client)) == 1

    # sold out, a new subscriber, back again: only the new subscriber is named
    await place(client, [("A", 10)])
    cy = await subscribe(client, "A", "c-cy")
    await restock(client, "A", 1)
    events = await back_in_stock(client)
    assert len(events) == 2
    assert [s["subscription_id"] for s in events[1]["subscribers"]] == [cy["id"]]


async def test_a_restock_that_only_fills_backorders_keeps_subscribers_waiting(
    client: AsyncClient,
) -> None:
    await make_product(client, "A")
    await place(client, [("A", 5)])
    sub = await subscribe(client, "A", "c-1")
    await restock(client, "A", 5)  # all of it goes to the waiting order: nothing available
    assert await back_in_stock(client) == []
    await restock(client, "A", 1)
    events = await back_in_stock(client)
    assert [s["subscription_id"] for s in events[0]["subscribers"]] == [sub["id"]]


async def test_a_waiting_customer_keeps_one_subscription(client: AsyncClient) -> None:
    await make_product(client, "A")
    first = await subscribe(client, "A", "c-1", "old@example.com")
    again = await subscribe(client, "A", "c-1", "new@example.com")
    assert again["id"] == first["id"]
    assert again["contact"] == "new@example.com"
    await restock(client, "A", 1)
    (event,) = await back_in_stock(client)
    assert event["subscribers"] == [
        {
            "subscription_id": first["id"],
            "customer_id": "c-1",
            "contact": "new@example.com",
            "channel": "master",
        }
    ]


async def test_storefronts_list_only_their_channels_subscriptions(client: AsyncClient) -> None:
    await make_product(client, "A")
    shop = await make_key(client, "web-shop")
    other = await make_key(client, "pos")
    mine = await subscribe(client, "A", "c-1", headers=shop)
    await subscribe(client, "A", "c-2", headers=other)

    async def ids(headers: dict[str, str], **params: Any) -> list[str]:
        r = await client.get("/v1/products/A/subscriptions", params=params, headers=headers)
        assert r.status_code == 200, r.text
        return [s["id"] for s in r.json()["data"]]

    assert await ids(shop) == [mine["id"]]
    assert len(await ids(OPS)) == 2
    assert await ids(OPS, status="notified") == []
    assert len(await ids(OPS, status="waiting", limit=1)) == 1
    r = await client.get("/v1/products/NOPE/subscriptions", headers=OPS)
    assert r.status_code == 404
