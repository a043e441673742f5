"""Every event about an order (`order.*`, `backorder.*`) names the order's channel in its data,
so a storefront's feed and webhooks can be cut to its own orders."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from httpx import AsyncClient

from tests.support.api import OPS, make_key, make_product, place


async def all_events(client: AsyncClient) -> list[dict[str, Any]]:
    r = await client.get("/v1/events", params={"limit": 200}, headers=OPS)
    assert r.status_code == 200, r.text
    data: list[dict[str, Any]] = r.json()["data"]
    return data


def about_orders(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"].startswith(("order.", "backorder."))]


async def test_every_order_event_type_carries_the_channel_of_the_order(
    client: AsyncClient,
) -> None:
    shop = await make_key(client, "web-shop")
    await make_product(client, "A", on_hand=3)
    soon = (date.today() + timedelta(days=10)).isoformat()
    r = await client.post(
        "/v1/purchase-orders",
        json={"sku": "A", "quantity": 5, "expected_date": soon},
        headers=OPS,
    )
    assert r.status_code == 201, r.text
    po = r.json()
    # created, backordered, ready_to_ship (3 of 5 allocated, partial policy)
    order = await place(client, [("A", 5)], headers=shop)
    ops_order = await place(client, [("A", 2)])
    # backorder.expected_date_changed: the PO moves
    later = (date.today() + timedelta(days=20)).isoformat()
    r = await client.patch(
        f"/v1/purchase-orders/{po['id']}", json={"expected_date": later}, headers=OPS
    )
    assert r.status_code == 200, r.text
    # order.line_allocated: a restock fills the queue
    r = await client.post("/v1/products/A/restocks", json={"quantity": 1}, headers=OPS)
    assert r.status_code == 201, r.text
    line = order["lines"][0]
    r = await client.post(
        f"/v1/orders/{order['id']}/shipments",
        json={"lines": [{"line_id": line["id"], "quantity": 1}]},
        headers=OPS,
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        f"/v1/orders/{order['id']}/lines/{line['id']}/cancel", json={"quantity": 1}, headers=shop
    )
    assert r.status_code == 200, r.text
    r = await client.post(f"/v1/orders/{ops_order['id']}/cancel", json={}, headers=OPS)
    assert r.status_code == 200, r.text

    events = about_orders(await all_events(client))
    channel_of = {order["id"]: "web-shop", ops_order["id"]: "master"}
    assert {e["type"] for e in events} >= {
        "order.created",
        "order.backordered",
        "order.ready_to_ship",
        "order.line_allocated",
        "order.shipped",
        "order.cancelled",
        "backorder.expected_date_changed",
    }
    for e in events:
        assert e["data"].get("channel") == channel_of[e["data"]["order_id"]], e
