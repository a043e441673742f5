"""The contract's order and queue scenarios, through the HTTP API."""

from __future__ import annotations

from typing import Any

from httpx import AsyncClient

from tests.support.api import OPS, make_key, make_product, place
from tests.support.dates import years_on


async def restock(client: AsyncClient, sku: str, quantity: int) -> dict[str, Any]:
    r = await client.post(f"/v1/products/{sku}/restocks", json={"quantity": quantity}, headers=OPS)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def product(client: AsyncClient, sku: str) -> dict[str, Any]:
    out: dict[str, Any] = (await client.get(f"/v1/products/{sku}", headers=OPS)).json()
    return out


async def test_full_backorder_waits_whole(client: AsyncClient) -> None:
    await make_product(client, "A")
    order = await place(client, [("A", 5)])
    assert order["status"] == "backordered"
    assert order["backorder_type"] == "full"
    assert order["ready_to_ship"] is False


async def test_complete_policy_with_some_stock_is_a_full_backorder(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=3)
    order = await place(client, [("A", 5)], ship_policy="complete")
    assert (order["allocated"], order["backordered"]) == (3, 2)
    assert order["backorder_type"] == "full"
    assert order["ready_to_ship"] is False


async def test_out_of_stock_is_refused_and_reserves_nothing(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=2, backorders_allowed=False)
    await make_product(client, "B", on_hand=9)
    r = await client.post(
        "/v1/orders",
        headers=OPS,
        json={
            "customer_id": "c",
            "lines": [{"sku": "B", "quantity": 1}, {"sku": "A", "quantity": 3}],
        },
    )
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["code"] == "insufficient_stock"
    assert body["lines"] == [{"sku": "A", "requested": 3, "available": 2}]
    assert (await product(client, "B"))["available"] == 9
    assert (await product(client, "A"))["available"] == 2


async def test_backorder_limit_allows_reaching_it_exactly(client: AsyncClient) -> None:
    await make_product(client, "A", backorder_limit=5)
    await place(client, [("A", 5)])
    r = await client.post(
        "/v1/orders", headers=OPS, json={"customer_id": "c", "lines": [{"sku": "A", "quantity": 1}]}
    )
    assert r.status_code == 409
    assert r.json()["code"] == "backorder_limit_exceeded"


async def test_unknown_discontinued_and_repeated_skus_are_refused(client: AsyncClient) -> None:
    await make_product(client, "OLD", discontinued=True)
    r = await client.post(
        "/v1/orders",
        headers=OPS,
        json={"customer_id": "c", "lines": [{"sku": "NOPE", "quantity": 1}]},
    )
    assert (r.status_code, r.json()["code"]) == (422, "unknown_sku")
    r = await client.post(
        "/v1/orders",
        headers=OPS,
        json={"customer_id": "c", "lines": [{"sku": "OLD", "quantity": 1}]},
    )
    assert (r.status_code, r.json()["code"]) == (409, "discontinued")
    r = await client.post(
        "/v1/orders",
        headers=OPS,
        json={
            "customer_id": "c",
            "lines": [{"sku": "OLD", "quantity": 1}, {"sku": "OLD", "quantity": 2}],
        },
    )
    assert (r.status_code, r.json()["code"]) == (422, "validation_error")


async def test_fifo_restock_fills_the_head_first_and_partly(client: AsyncClient) -> None:
    await make_product(client, "A")
    first = await place(client, [("A", 3)])
    second = await place(client, [("A", 4)])
    third = await place(client, [("A", 2)])
    result = await restock(client, "A", 5)
    assert [(a["order_id"], a["quantity"]) for a in result["allocations"]] == [
        (first["id"], 3),
        (second["id"], 2),
    ]
    r = await client.get("/v1/backorders", params={"sku": "A"}, headers=OPS)
    queue = r.json()["data"]
    assert [(q["order_id"], q["quantity"], q["position"]) for q in queue] == [
        (second["id"], 2, 1),
        (third["id"], 2, 2),
    ]


async def test_priority_queue_fills_higher_priority_first(client: AsyncClient) -> None:
    await make_product(client, "P", allocation_strategy="priority")
    low = await place(client, [("P", 2)], priority=1)
    high = await place(client, [("P", 2)], priority=8)
    result = await restock(client, "P", 2)
    assert [a["order_id"] for a in result["allocations"]] == [high["id"]]
    del low


async def test_reprioritising_moves_a_line_in_the_queue(client: AsyncClient) -> None:
    await make_product(client, "P", allocation_strategy="priority")
    first = await place(client, [("P", 2)])
    second = await place(client, [("P", 2)])
    r = await client.patch(f"/v1/orders/{second['id']}", json={"priority": 7}, headers=OPS)
    assert r.status_code == 200, r.text
    queue = (await client.get("/v1/backorders", params={"sku": "P"}, headers=OPS)).json()["data"]
    assert [q["order_id"] for q in queue] == [second["id"], first["id"]]


async def test_storefront_may_not_send_high_priority_or_patch(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=5)
    shop = await make_key(client, "shop")
    r = await client.post(
        "/v1/orders",
        headers=shop,
        json={"customer_id": "c", "priority": 5, "lines": [{"sku": "A", "quantity": 1}]},
    )
    assert (r.status_code, r.json()["code"]) == (422, "validation_error")
    order = await place(client, [("A", 1)], headers=shop, priority=4)
    r = await client.patch(f"/v1/orders/{order['id']}", json={"priority": 1}, headers=shop)
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")


async def test_cancel_frees_stock_to_the_next_in_line(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=4)
    holder = await place(client, [("A", 4)])
    waiter = await place(client, [("A", 3)])
    r = await client.post(f"/v1/orders/{holder['id']}/cancel", headers=OPS)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    waiting = (await client.get(f"/v1/orders/{waiter['id']}", headers=OPS)).json()
    assert waiting["status"] == "allocated"
    assert (await product(client, "A"))["available"] == 1
    r = await client.post(f"/v1/orders/{holder['id']}/cancel", headers=OPS)
    assert (r.status_code, r.json()["code"]) == (409, "conflict")


async def test_line_cancel_takes_backordered_units_first(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=3)
    order = await place(client, [("A", 5)])
    line = order["lines"][0]
    r = await client.post(
        f"/v1/orders/{order['id']}/lines/{line['id']}/cancel", json={"quantity": 3}, headers=OPS
    )
    assert r.status_code == 200, r.text
    got = r.json()["lines"][0]
    assert (got["allocated"], got["backordered"], got["cancelled"]) == (2, 0, 3)
    assert (await product(client, "A"))["available"] == 1


async def test_ship_partial_and_complete_policies(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=3)
    complete = await place(client, [("A", 5)], ship_policy="complete")
    line = complete["lines"][0]
    r = await client.post(
        f"/v1/orders/{complete['id']}/shipments",
        headers=OPS,
        json={"lines": [{"line_id": line["id"], "quantity": 3}]},
    )
    assert (r.status_code, r.json()["code"]) == (409, "order_incomplete")
    await restock(client, "A", 2)
    r = await client.post(
        f"/v1/orders/{complete['id']}/shipments",
        headers=OPS,
        json={"lines": [{"line_id": line["id"], "quantity": 6}]},
    )
    assert (r.status_code, r.json()["code"]) == (409, "not_allocated")
    for quantity in (2, 3):
        r = await client.post(
            f"/v1/orders/{complete['id']}/shipments",
            headers=OPS,
            json={"lines": [{"line_id": line["id"], "quantity": quantity}]},
        )
        assert r.status_code == 201, r.text
    shipped = r.json()["order"]
    assert shipped["status"] == "shipped"
    figures = await product(client, "A")
    assert (figures["on_hand"], figures["allocated"]) == (0, 0)
    r = await client.post(f"/v1/orders/{complete['id']}/cancel", headers=OPS)
    assert (r.status_code, r.json()["code"]) == (409, "already_shipped")
    ledger = (await client.get("/v1/products/A/movements", headers=OPS)).json()["data"]
    assert [m["quantity"] for m in ledger] == [3, 2, -2, -3]
    assert sum(m["quantity"] for m in ledger) == figures["on_hand"]


async def test_storefronts_see_only_their_channel(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=5)
    shop_a = await make_key(client, "shop-a")
    shop_b = await make_key(client, "shop-b")
    order = await place(client, [("A", 1)], headers=shop_a)
    assert (await client.get(f"/v1/orders/{order['id']}", headers=shop_b)).status_code == 404
    r = await client.post(f"/v1/orders/{order['id']}/cancel", headers=shop_b)
    assert r.status_code == 404
    assert (await client.get("/v1/orders", headers=shop_b)).json()["data"] == []
    assert len((await client.get("/v1/orders", headers=shop_a)).json()["data"]) == 1


async def test_idempotent_order_is_placed_once_and_replayed(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=5)
    body = {"customer_id": "c", "lines": [{"sku": "A", "quantity": 2}]}
    headers = {**OPS, "Idempotency-Key": "k-1"}
    first = await client.post("/v1/orders", json=body, headers=headers)
    again = await client.post("/v1/orders", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert (await product(client, "A"))["available"] == 3
    other = await client.post("/v1/orders", json={**body, "customer_id": "d"}, headers=headers)
    assert (other.status_code, other.json()["code"]) == (422, "idempotency_key_reused")


async def test_purchase_orders_drive_expected_dates_and_receipts(client: AsyncClient) -> None:
    await make_product(client, "A", expected_restock_date=years_on("2027-03-01"))
    first = await place(client, [("A", 4)])
    second = await place(client, [("A", 4)])
    r = await client.post(
        "/v1/purchase-orders",
        headers=OPS,
        json={"sku": "A", "quantity": 5, "expected_date": years_on("2027-01-10")},
    )
    assert r.status_code == 201, r.text
    po = r.json()
    assert (await product(client, "A"))["incoming"] == 5
    dates = {
        o["id"]: (await client.get(f"/v1/orders/{o['id']}", headers=OPS)).json()["lines"][0][
            "expected_date"
        ]
        for o in (first, second)
    }
    assert dates == {first["id"]: years_on("2027-01-10"), second["id"]: years_on("2027-03-01")}
    r = await client.post(
        f"/v1/purchase-orders/{po['id']}/receive", headers=OPS, json={"quantity": 5}
    )
    assert r.status_code == 201, r.text
    assert r.json()["purchase_order"]["status"] == "closed"
    assert [a["quantity"] for a in r.json()["allocations"]] == [4, 1]
    ledger = (await client.get("/v1/products/A/movements", headers=OPS)).json()["data"]
    assert ledger[-1]["kind"] == "receipt"
    r = await client.post(
        f"/v1/purchase-orders/{po['id']}/receive", headers=OPS, json={"quantity": 1}
    )
    assert (r.status_code, r.json()["code"]) == (409, "conflict")


async def test_events_are_written_by_actions_not_by_refusals(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=1, reorder_point=5)
    r = await client.post(
        "/v1/products/A/subscriptions",
        headers=OPS,
        json={"customer_id": "c-9", "contact": "c9@example.com"},
    )
    assert r.status_code == 201, r.text
    order = await place(client, [("A", 3)])
    refused = await client.post(
        "/v1/orders",
        headers=OPS,
        json={"customer_id": "c", "lines": [{"sku": "NOPE", "quantity": 1}]},
    )
    assert refused.status_code == 422
    await restock(client, "A", 10)
    feed = (await client.get("/v1/events", params={"limit": 200}, headers=OPS)).json()
    types = [e["type"] for e in feed["data"]]
    assert feed["next_cursor"] is None
    assert types.count("order.created") == 1
    assert "order.backordered" in types and "order.line_allocated" in types
    # in stock at creation (nobody waiting yet), then again after the order emptied it
    assert types.count("product.back_in_stock") == 2
    back = [e for e in feed["data"] if e["type"] == "product.back_in_stock"]
    assert back[0]["data"]["subscribers"] == []
    assert [s["customer_id"] for s in back[1]["data"]["subscribers"]] == ["c-9"]
    after = feed["data"][0]["id"]
    rest = (await client.get("/v1/events", params={"after": after}, headers=OPS)).json()
    assert [e["id"] for e in rest["data"]] == [e["id"] for e in feed["data"][1:]]
    del order
