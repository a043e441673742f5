"""GET /v1/events: every event comes from the action that causes it, none from a refusal, and
the feed can be followed with `after` without ever skipping an event."""

from __future__ import annotations

from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backorder.db import feed as feed_sql
from tests.support.api import OPS, make_key, make_product, place
from tests.support.dates import years_on


async def feed(client: AsyncClient, **params: Any) -> dict[str, Any]:
    r = await client.get("/v1/events", params={"limit": 200, **params}, headers=OPS)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


async def last_id(client: AsyncClient) -> str:
    data = (await feed(client))["data"]
    return str(data[-1]["id"]) if data else "0"


async def since(client: AsyncClient, after: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = (await feed(client, after=after))["data"]
    return data


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


async def post(client: AsyncClient, path: str, body: Any = None, expect: int = 201) -> Any:
    r = await client.post(path, json=body, headers=OPS)
    assert r.status_code == expect, r.text
    return r.json()


# --- each type from its cause --------------------------------------------------------------


async def test_placing_a_partly_backordered_order_announces_it(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=3)
    mark = await last_id(client)
    order = await place(client, [("A", 5)], customer_id="c-7")
    events = await since(client, mark)
    assert types(events) == ["order.created", "order.backordered", "order.ready_to_ship"]
    created, backordered, ready = (e["data"] for e in events)
    assert created["order_id"] == order["id"]
    assert created["customer_id"] == "c-7"
    line = order["lines"][0]
    assert created["lines"] == [
        {
            "line_id": line["id"],
            "sku": "A",
            "quantity": 5,
            "allocated": 3,
            "backordered": 2,
            "cancelled": 0,
            "allocations": [{"location": "main", "allocated": 3}],
        }
    ]
    assert backordered["lines"] == [{"line_id": line["id"], "sku": "A", "backordered": 2}]
    assert ready == {"order_id": order["id"], "channel": "master"}
    assert created["channel"] == backordered["channel"] == "master"
    for e in events:
        assert e["id"].isdigit() and e["created_at"].endswith("Z")


async def test_an_order_in_stock_is_created_and_ready_but_not_backordered(
    client: AsyncClient,
) -> None:
    await make_product(client, "A", on_hand=50)
    mark = await last_id(client)
    await place(client, [("A", 5)])
    assert types(await since(client, mark)) == ["order.created", "order.ready_to_ship"]


async def test_a_restock_allocates_lines_and_makes_a_complete_order_ready(
    client: AsyncClient,
) -> None:
    await make_product(client, "A")
    order = await place(client, [("A", 4)], ship_policy="complete")
    mark = await last_id(client)
    await post(client, "/v1/products/A/restocks", {"quantity": 3})
    events = await since(client, mark)
    allocated = [e["data"] for e in events if e["type"] == "order.line_allocated"]
    assert allocated == [
        {
            "order_id": order["id"],
            "line_id": order["lines"][0]["id"],
            "sku": "A",
            "quantity": 3,
            "location": "main",
            "channel": "master",
        }
    ]
    assert "order.ready_to_ship" not in types(events)  # complete: one unit still waits
    mark = await last_id(client)
    await post(client, "/v1/products/A/restocks", {"quantity": 1})
    events = await since(client, mark)
    assert types(events) == ["order.line_allocated", "order.ready_to_ship"]
    assert events[1]["data"] == {"order_id": order["id"], "channel": "master"}


async def test_a_shipment_is_announced(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=5)
    order = await place(client, [("A", 5)])
    mark = await last_id(client)
    line_id = order["lines"][0]["id"]
    shipment = await post(
        client,
        f"/v1/orders/{order['id']}/shipments",
        {"lines": [{"line_id": line_id, "quantity": 2}]},
    )
    events = await since(client, mark)
    shipped = [e["data"] for e in events if e["type"] == "order.shipped"]
    assert shipped == [
        {
            "order_id": order["id"],
            "channel": "master",
            "shipment_id": shipment["id"],
            "location": "main",
            "lines": [{"line_id": line_id, "sku": "A", "quantity": 2}],
        }
    ]


async def test_a_cancel_is_announced_with_what_it_cancelled(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=1)
    order = await place(client, [("A", 3)])
    mark = await last_id(client)
    await post(client, f"/v1/orders/{order['id']}/cancel", {"reason": "changed mind"}, expect=200)
    events = await since(client, mark)
    assert types(events)[:2] == ["order.line_cancelled", "order.cancelled"]
    assert events[0]["data"] == {
        "order_id": order["id"],
        "line_id": order["lines"][0]["id"],
        "sku": "A",
        "quantity": 3,
        "reason": "request",
        "note": "changed mind",
        "channel": "master",
    }
    cancelled = [e["data"] for e in events if e["type"] == "order.cancelled"]
    assert cancelled == [
        {
            "order_id": order["id"],
            "channel": "master",
            "reason": "changed mind",
            "lines": [{"line_id": order["lines"][0]["id"], "sku": "A", "quantity": 3}],
        }
    ]


async def test_a_purchase_order_announces_the_promise_dates_it_moves(client: AsyncClient) -> None:
    await make_product(client, "A")
    order = await place(client, [("A", 2)])
    mark = await last_id(client)
    await post(
        client,
        "/v1/purchase-orders",
        {"sku": "A", "quantity": 5, "expected_date": years_on("2027-01-15")},
    )
    events = await since(client, mark)
    assert types(events) == ["backorder.expected_date_changed"]
    assert events[0]["data"] == {
        "order_id": order["id"],
        "line_id": order["lines"][0]["id"],
        "sku": "A",
        "from": None,
        "to": years_on("2027-01-15"),
        "channel": "master",
    }


async def test_stock_transitions_are_announced_once_on_entering_a_state(
    client: AsyncClient,
) -> None:
    await make_product(client, "A", reorder_point=5)
    mark = await last_id(client)
    await post(client, "/v1/products/A/restocks", {"quantity": 20})
    back = await since(client, mark)
    assert types(back) == ["product.back_in_stock"]
    assert back[0]["data"]["sku"] == "A"
    assert back[0]["data"]["available"] == 20

    mark = await last_id(client)
    await place(client, [("A", 10)])  # 10 left: still in stock
    await place(client, [("A", 6)])  # 4 left: enters the low band
    await place(client, [("A", 1)])  # 3 left: stays there
    low = [e for e in await since(client, mark) if e["type"].startswith("product.")]
    assert types(low) == ["product.low_stock"]
    assert (low[0]["data"]["available"], low[0]["data"]["reorder_point"]) == (4, 5)

    mark = await last_id(client)
    await place(client, [("A", 3)])  # out
    await post(client, "/v1/products/A/restocks", {"quantity": 2})  # back, and into the band
    await post(client, "/v1/products/A/restocks", {"quantity": 1})  # still low
    assert [t for t in types(await since(client, mark)) if t.startswith("product.")] == [
        "product.back_in_stock",
        "product.low_stock",
    ]


# --- refusals write nothing ----------------------------------------------------------------


async def test_refused_requests_leave_the_feed_unchanged(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=2, backorders_allowed=False)
    await make_product(client, "B", on_hand=5)
    shipped = await place(client, [("B", 5)])
    line_id = shipped["lines"][0]["id"]
    await post(
        client,
        f"/v1/orders/{shipped['id']}/shipments",
        {"lines": [{"line_id": line_id, "quantity": 5}]},
    )
    po = await post(
        client,
        "/v1/purchase-orders",
        {"sku": "B", "quantity": 2, "expected_date": years_on("2027-01-01")},
    )
    before = await feed(client)

    refusals: list[tuple[str, Any, int]] = [
        ("/v1/orders", {"customer_id": "c", "lines": [{"sku": "A", "quantity": 3}]}, 409),
        ("/v1/orders", {"customer_id": "c", "lines": [{"sku": "NOPE", "quantity": 1}]}, 422),
        ("/v1/orders", {"customer_id": "c", "lines": [{"sku": "B", "quantity": 0}]}, 422),
        (f"/v1/orders/{shipped['id']}/cancel", None, 409),
        (
            f"/v1/orders/{shipped['id']}/shipments",
            {"lines": [{"line_id": line_id, "quantity": 1}]},
            409,
        ),
        ("/v1/products/A/adjustments", {"delta": -3}, 409),
        (f"/v1/purchase-orders/{po['id']}/receive", {"quantity": 3}, 409),
    ]
    for path, body, status in refusals:
        await post(client, path, body, expect=status)
    # with an idempotency key too: the stored refusal replays, and still writes nothing
    keyed = {**OPS, "Idempotency-Key": "refused-1"}
    body = {"customer_id": "c", "lines": [{"sku": "A", "quantity": 3}]}
    for _ in range(2):
        r = await client.post("/v1/orders", json=body, headers=keyed)
        assert r.status_code == 409
    assert await feed(client) == before


# --- reading the feed ----------------------------------------------------------------------


async def test_the_feed_pages_oldest_first_and_ends_with_a_null_cursor(
    client: AsyncClient,
) -> None:
    await make_product(client, "A", on_hand=100)
    for _ in range(4):
        await place(client, [("A", 1)])  # created + ready_to_ship each
    whole = (await feed(client))["data"]
    assert len(whole) == 1 + 8
    ids = [int(e["id"]) for e in whole]
    assert ids == sorted(ids)

    seen: list[str] = []
    page = await feed(client, limit=4)
    while True:
        seen += [e["id"] for e in page["data"]]
        if page["next_cursor"] is None:
            break
        page = await feed(client, limit=4, cursor=page["next_cursor"])
    assert seen == [e["id"] for e in whole]

    # `after` is an event id: the rest of the feed, and at its end an empty page
    assert [e["id"] for e in await since(client, whole[3]["id"])] == [e["id"] for e in whole[4:]]
    tail = await feed(client, after=whole[-1]["id"])
    assert tail == {"data": [], "next_cursor": None}
    exact = await feed(client, limit=len(whole))
    assert exact["next_cursor"] is None


async def test_the_feed_filters_by_type_or_family(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=1)
    await place(client, [("A", 3)])
    assert types((await feed(client, type="order.backordered"))["data"]) == ["order.backordered"]
    family = types((await feed(client, type="order.*"))["data"])
    assert family == ["order.created", "order.backordered", "order.ready_to_ship"]
    assert types((await feed(client, type="product.*"))["data"]) == ["product.back_in_stock"]
    assert (await feed(client, type="order.nothing"))["data"] == []


async def test_the_feed_refuses_bad_parameters_and_other_channels(client: AsyncClient) -> None:
    for params in (
        {"after": "-1"},
        {"after": "abc"},
        {"after": "1" * 30},
        {"limit": 0},
        {"limit": 201},
        {"limit": "x"},
        {"type": "ORDER CREATED"},
        {"cursor": "not-a-cursor"},
    ):
        r = await client.get("/v1/events", params=params, headers=OPS)
        assert (r.status_code, r.json()["code"]) == (422, "validation_error"), params
    for params in ({"channel": ""}, {"channel": "x\x00y"}, {"channel": "x" * 256}):
        r = await client.get("/v1/events", params=params, headers=OPS)
        assert (r.status_code, r.json()["code"]) == (422, "validation_error"), params
    shop = await make_key(client, "web-shop")
    assert (await client.get("/v1/events", headers=shop)).status_code == 200
    r = await client.get("/v1/events", params={"channel": "web-shop"}, headers=shop)
    assert r.status_code == 200
    r = await client.get("/v1/events", params={"channel": "pos"}, headers=shop)
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")
    assert (await client.get("/v1/events")).status_code == 401


async def test_an_event_still_committing_holds_back_the_ones_after_it(
    client: AsyncClient, engine: AsyncEngine
) -> None:
    """Ids are taken in one order and committed in another: the feed must not let a reader
    move past an id whose event is not visible yet."""
    await make_product(client, "A", on_hand=10)
    mark = await last_id(client)
    async with engine.connect() as slow:
        trans = await slow.begin()
        await slow.execute(
            text("INSERT INTO event (type, data) VALUES ('order.created', '{\"slow\": true}')")
        )
        await place(client, [("A", 1)])  # commits events with higher ids
        assert await since(client, mark) == []
        await trans.commit()
    events = await since(client, mark)
    assert types(events) == ["order.created", "order.created", "order.ready_to_ship"]
    assert events[0]["data"] == {"slow": True}


# --- a channel's view ----------------------------------------------------------------------


async def walk(client: AsyncClient, headers: dict[str, str], **params: Any) -> list[Any]:
    """Every event the caller's feed holds, following `next_cursor` to the end."""
    out: list[Any] = []
    query: dict[str, Any] = {"limit": 200, **params}
    while True:
        r = await client.get("/v1/events", params=query, headers=headers)
        assert r.status_code == 200, r.text
        out += r.json()["data"]
        if r.json()["next_cursor"] is None:
            return out
        query = {**query, "cursor": r.json()["next_cursor"]}


async def subscribe(
    client: AsyncClient, sku: str, customer_id: str, headers: dict[str, str]
) -> dict[str, Any]:
    body = {"customer_id": customer_id, "contact": f"{customer_id}@example.com"}
    r = await client.post(f"/v1/products/{sku}/subscriptions", json=body, headers=headers)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def test_a_storefront_reads_only_its_channels_view_of_the_feed(
    client: AsyncClient,
) -> None:
    shop = await make_key(client, "web-shop")
    pos = await make_key(client, "pos")
    kiosk = await make_key(client, "kiosk")  # subscribes nobody, orders nothing
    await make_product(client, "A", reorder_point=3)
    mine = await place(client, [("A", 2)], headers=shop, customer_id="c-shop")
    theirs = await place(client, [("A", 1)], headers=pos, customer_id="c-pos")
    await place(client, [("A", 1)], customer_id="c-ops")  # the master key's channel
    sub_shop = await subscribe(client, "A", "c-shop-sub", shop)
    sub_pos = await subscribe(client, "A", "c-pos-sub", pos)
    await post(client, "/v1/products/A/restocks", {"quantity": 6})  # fills 4, 2 left: low
    await post(client, f"/v1/orders/{theirs['id']}/cancel", None, 200)

    everything = await walk(client, OPS)
    assert {e["type"] for e in everything} >= {
        "order.created",
        "order.backordered",
        "order.line_allocated",
        "product.back_in_stock",
        "product.low_stock",
    }
    order_events = [e for e in everything if e["type"].startswith(("order.", "backorder."))]
    assert all("channel" in e["data"] for e in order_events)

    for key, channel, order, sub in (
        (shop, "web-shop", mine, sub_shop),
        (pos, "pos", theirs, sub_pos),
    ):
        seen = await walk(client, key)
        assert seen == await walk(client, OPS, channel=channel)  # ops see the same view
        ours = [e for e in seen if e["type"].startswith(("order.", "backorder."))]
        assert ours, "the view holds the channel's order events (not vacuous)"
        assert {e["data"]["channel"] for e in ours} == {channel}
        assert {e["data"]["order_id"] for e in ours} == {order["id"]}
        expected_ours = [e for e in order_events if e["data"]["channel"] == channel]
        assert [e["id"] for e in ours] == [e["id"] for e in expected_ours]
        assert [e["type"] for e in seen if e["type"] == "product.low_stock"] == [
            "product.low_stock"
        ]
        (back,) = [e for e in seen if e["type"] == "product.back_in_stock"]
        assert back["data"]["subscribers"] == [
            {
                "subscription_id": sub["id"],
                "customer_id": sub["customer_id"],
                "contact": sub["contact"],
                "channel": channel,
            }
        ]
        other = "c-pos" if channel == "web-shop" else "c-shop"
        assert other not in str(seen)  # no other channel's customer ids or contacts

    # a channel with no subscriber of its own gets no back-in-stock event at all
    seen = await walk(client, kiosk)
    assert [e["type"] for e in seen] == ["product.low_stock"]
    ops_back = [e for e in everything if e["type"] == "product.back_in_stock"]
    assert len(ops_back[0]["data"]["subscribers"]) == 2  # ops see every subscriber


async def test_a_filtered_read_goes_on_past_a_window_without_its_events(
    client: AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feed_sql, "SCAN_WINDOW", 5)
    shop = await make_key(client, "web-shop")
    await make_product(client, "A", on_hand=100)
    first = await place(client, [("A", 1)], headers=shop)
    for _ in range(6):
        await place(client, [("A", 1)])  # 2 events each, none of web-shop's
    last = await place(client, [("A", 1)], headers=shop)

    r = await client.get("/v1/events", params={"after": "3"}, headers=shop)
    assert r.json()["data"] == [] and r.json()["next_cursor"] is not None  # a window ran out
    pages = 0
    seen: list[Any] = []
    query: dict[str, Any] = {"limit": 1}
    while True:
        r = await client.get("/v1/events", params=query, headers=shop)
        pages += 1
        seen += r.json()["data"]
        if r.json()["next_cursor"] is None:
            break
        query = {"limit": 1, "cursor": r.json()["next_cursor"]}
    assert [e["data"]["order_id"] for e in seen] == [first["id"]] * 2 + [last["id"]] * 2
    assert pages > 4  # it took windows, never one unbounded scan
