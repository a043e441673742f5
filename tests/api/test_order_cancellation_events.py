"""`order.cancelled` means the order is cancelled; any other cancellation of units is told by
`order.line_cancelled`, once per line it touches. A cancel with nothing to cancel says why in
a machine field, `reason`, beside its contract code."""

from __future__ import annotations

from typing import Any

from httpx import AsyncClient

from tests.support.api import OPS, assert_problem, make_key, make_product, place


async def feed_after(client: AsyncClient, after: str) -> list[dict[str, Any]]:
    r = await client.get("/v1/events", params={"after": after, "limit": 200}, headers=OPS)
    assert r.status_code == 200, r.text
    data: list[dict[str, Any]] = r.json()["data"]
    return data


async def mark(client: AsyncClient) -> str:
    data = await feed_after(client, "0")
    return str(data[-1]["id"]) if data else "0"


def cancellations(events: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(e["type"], e["data"]) for e in events if "cancelled" in e["type"]]


async def test_cancelling_part_of_a_line_writes_a_line_cancel_and_no_order_cancel(
    client: AsyncClient,
) -> None:
    shop = await make_key(client, "web-shop")
    await make_product(client, "A", on_hand=1)
    order = await place(client, [("A", 5)], headers=shop)
    line = order["lines"][0]
    at = await mark(client)
    r = await client.post(
        f"/v1/orders/{order['id']}/lines/{line['id']}/cancel",
        json={"quantity": 2, "reason": "customer asked"},
        headers=shop,
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "partially_backordered"
    assert cancellations(await feed_after(client, at)) == [
        (
            "order.line_cancelled",
            {
                "order_id": order["id"],
                "line_id": line["id"],
                "sku": "A",
                "quantity": 2,
                "reason": "request",
                "note": "customer asked",
                "channel": "web-shop",
            },
        )
    ]


async def test_cancelling_the_rest_of_a_partly_shipped_order_is_not_an_order_cancel(
    client: AsyncClient,
) -> None:
    await make_product(client, "A", on_hand=2)
    await make_product(client, "B", on_hand=0)
    order = await place(client, [("A", 3), ("B", 1)])
    a, b = order["lines"]
    r = await client.post(
        f"/v1/orders/{order['id']}/shipments",
        json={"lines": [{"line_id": a["id"], "quantity": 2}]},
        headers=OPS,
    )
    assert r.status_code == 201, r.text
    at = await mark(client)
    r = await client.post(f"/v1/orders/{order['id']}/cancel", json={}, headers=OPS)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "shipped"
    got = cancellations(await feed_after(client, at))
    assert [(t, d["line_id"], d["quantity"]) for t, d in got] == [
        ("order.line_cancelled", a["id"], 1),
        ("order.line_cancelled", b["id"], 1),
    ]


async def test_the_line_cancel_that_empties_an_order_is_followed_by_the_order_cancel(
    client: AsyncClient,
) -> None:
    await make_product(client, "A", on_hand=10)
    await make_product(client, "B", on_hand=10)
    order = await place(client, [("A", 3), ("B", 4)])
    a, b = order["lines"]
    first = await client.post(
        f"/v1/orders/{order['id']}/lines/{a['id']}/cancel", json={}, headers=OPS
    )
    assert first.status_code == 200, first.text
    at = await mark(client)
    r = await client.post(f"/v1/orders/{order['id']}/lines/{b['id']}/cancel", json={}, headers=OPS)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    got = cancellations(await feed_after(client, at))
    assert [t for t, _ in got] == ["order.line_cancelled", "order.cancelled"]
    assert (got[0][1]["line_id"], got[0][1]["quantity"]) == (b["id"], 4)
    assert got[1][1]["order_id"] == order["id"]
    assert got[1][1]["channel"] == "master"


async def test_an_order_cancel_writes_one_line_cancel_per_open_line_then_the_order_cancel(
    client: AsyncClient,
) -> None:
    await make_product(client, "A", on_hand=1)
    await make_product(client, "B", on_hand=5)
    await make_product(client, "C", on_hand=5)
    order = await place(client, [("A", 3), ("B", 2), ("C", 1)])
    c = order["lines"][2]
    r = await client.post(f"/v1/orders/{order['id']}/lines/{c['id']}/cancel", json={}, headers=OPS)
    assert r.status_code == 200, r.text
    at = await mark(client)
    r = await client.post(f"/v1/orders/{order['id']}/cancel", json={}, headers=OPS)
    assert r.status_code == 200, r.text
    got = cancellations(await feed_after(client, at))
    assert [(t, d.get("line_id"), d.get("quantity")) for t, d in got] == [
        ("order.line_cancelled", order["lines"][0]["id"], 3),
        ("order.line_cancelled", order["lines"][1]["id"], 2),
        ("order.cancelled", None, None),
    ]


async def test_an_order_cancel_with_nothing_left_says_nothing_to_cancel(
    client: AsyncClient,
) -> None:
    await make_product(client, "A", on_hand=5)
    order = await place(client, [("A", 2)])
    r = await client.post(f"/v1/orders/{order['id']}/cancel", json={}, headers=OPS)
    assert r.status_code == 200, r.text
    r = await client.post(f"/v1/orders/{order['id']}/cancel", json={}, headers=OPS)
    body = assert_problem(r, 409, "conflict")
    assert body["reason"] == "nothing_to_cancel"


async def test_a_line_cancel_says_whether_nothing_is_left_or_too_much_was_asked(
    client: AsyncClient,
) -> None:
    await make_product(client, "A", on_hand=5)
    order = await place(client, [("A", 3)])
    path = f"/v1/orders/{order['id']}/lines/{order['lines'][0]['id']}/cancel"
    body = assert_problem(
        await client.post(path, json={"quantity": 4}, headers=OPS), 409, "conflict"
    )
    assert (body["reason"], body["cancellable"]) == ("exceeds_remaining", 3)
    assert (await client.post(path, json={}, headers=OPS)).status_code == 200
    body = assert_problem(
        await client.post(path, json={"quantity": 1}, headers=OPS), 409, "conflict"
    )
    assert (body["reason"], body["cancellable"]) == ("nothing_to_cancel", 0)


async def test_shipped_units_in_the_way_keep_already_shipped_with_the_reason(
    client: AsyncClient,
) -> None:
    await make_product(client, "A", on_hand=5)
    order = await place(client, [("A", 2)])
    line_id = order["lines"][0]["id"]
    r = await client.post(
        f"/v1/orders/{order['id']}/shipments",
        json={"lines": [{"line_id": line_id, "quantity": 2}]},
        headers=OPS,
    )
    assert r.status_code == 201, r.text
    r = await client.post(f"/v1/orders/{order['id']}/cancel", json={}, headers=OPS)
    assert assert_problem(r, 409, "already_shipped")["reason"] == "nothing_to_cancel"
