"""`"backorder": "cancel_rest"`: a storefront's "don't backorder". Each line takes what is
available now and the rest is cancelled at once: nothing waits, so no backorder rule refuses
it, and the feed tells the cancelled part with `order.line_cancelled` (`short_stock`)."""

from __future__ import annotations

from typing import Any

from httpx import AsyncClient

from tests.support.api import OPS, assert_problem, error_fields, make_key, make_product, place


async def events_after(client: AsyncClient, after: str) -> list[dict[str, Any]]:
    r = await client.get("/v1/events", params={"after": after, "limit": 200}, headers=OPS)
    assert r.status_code == 200, r.text
    data: list[dict[str, Any]] = r.json()["data"]
    return [e for e in data if not e["type"].startswith("product.")]


async def last_event(client: AsyncClient) -> str:
    r = await client.get("/v1/events", params={"limit": 200}, headers=OPS)
    data = r.json()["data"]
    return str(data[-1]["id"]) if data else "0"


def units(line: dict[str, Any]) -> tuple[int, int, int, int]:
    return (line["allocated"], line["backordered"], line["cancelled"], line["shipped"])


async def test_short_lines_take_what_there_is_and_cancel_the_rest(client: AsyncClient) -> None:
    shop = await make_key(client, "web-shop")
    await make_product(client, "A", on_hand=3)
    await make_product(client, "B", on_hand=10)
    mark = await last_event(client)
    order = await place(client, [("A", 5), ("B", 4)], headers=shop, backorder="cancel_rest")
    a, b = order["lines"]
    assert units(a) == (3, 0, 2, 0) and a["status"] == "allocated"
    assert a["expected_date"] is None
    assert units(b) == (4, 0, 0, 0)
    assert (order["status"], order["backorder_type"], order["ready_to_ship"]) == (
        "allocated",
        "none",
        True,
    )
    assert (order["allocated"], order["backordered"], order["cancelled"]) == (7, 0, 2)
    product = (await client.get("/v1/products/A", headers=OPS)).json()
    assert (product["allocated"], product["backordered"], product["available"]) == (3, 0, 0)
    assert (await client.get("/v1/backorders", headers=OPS)).json()["data"] == []
    assert (await client.get(f"/v1/orders/{order['id']}", headers=shop)).json() == order

    events = await events_after(client, mark)
    assert [e["type"] for e in events] == [
        "order.created",
        "order.line_cancelled",
        "order.ready_to_ship",
    ]
    assert events[1]["data"] == {
        "order_id": order["id"],
        "line_id": a["id"],
        "sku": "A",
        "quantity": 2,
        "reason": "short_stock",
        "note": None,
        "channel": "web-shop",
    }

    # Nothing waits: a restock leaves the order as it is.
    r = await client.post("/v1/products/A/restocks", json={"quantity": 5}, headers=OPS)
    assert r.status_code == 201 and r.json()["allocations"] == []
    assert (await client.get(f"/v1/orders/{order['id']}", headers=OPS)).json()["lines"][0][
        "allocated"
    ] == 3


async def test_no_backorder_refusal_applies_to_the_cancelled_part(client: AsyncClient) -> None:
    await make_product(client, "NOBO", on_hand=2, backorders_allowed=False)
    await make_product(client, "CAP", on_hand=1, backorder_limit=0)
    order = await place(client, [("NOBO", 5), ("CAP", 3)], backorder="cancel_rest")
    assert [units(x) for x in order["lines"]] == [(2, 0, 3, 0), (1, 0, 2, 0)]
    # The same order without it is refused as before.
    r = await client.post(
        "/v1/orders",
        json={"customer_id": "c", "lines": [{"sku": "NOBO", "quantity": 1}]},
        headers=OPS,
    )
    assert_problem(r, 409, "insufficient_stock")


async def test_with_nothing_in_stock_the_order_is_placed_cancelled(client: AsyncClient) -> None:
    await make_product(client, "A")
    mark = await last_event(client)
    order = await place(client, [("A", 4)], backorder="cancel_rest", ship_policy="complete")
    assert order["status"] == "cancelled" and order["ready_to_ship"] is False
    assert units(order["lines"][0]) == (0, 0, 4, 0)
    assert [e["type"] for e in await events_after(client, mark)] == [
        "order.created",
        "order.line_cancelled",
        "order.cancelled",
    ]


async def test_a_complete_order_with_cancel_rest_is_ready_at_once(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=1)
    order = await place(client, [("A", 3)], backorder="cancel_rest", ship_policy="complete")
    assert (order["status"], order["ready_to_ship"]) == ("allocated", True)


async def test_allow_is_the_default_and_keeps_backordering(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=1)
    order = await place(client, [("A", 3)])
    assert units(order["lines"][0]) == (1, 2, 0, 0)
    explicit = await place(client, [("A", 2)], backorder="allow")
    assert units(explicit["lines"][0]) == (0, 2, 0, 0)


async def test_an_unknown_backorder_choice_is_refused_naming_the_field(
    client: AsyncClient,
) -> None:
    await make_product(client, "A", on_hand=1)
    for bad in ("never", None, True, ""):
        r = await client.post(
            "/v1/orders",
            json={"customer_id": "c", "backorder": bad, "lines": [{"sku": "A", "quantity": 1}]},
            headers=OPS,
        )
        assert error_fields(assert_problem(r, 422, "validation_error")) == {"backorder"}
