"""Orders through the HTTP contract: placing, refusing, filling, cancelling, shipping, listing.

Every order answer is checked against the contract's formulas (`assert_follows_contract`), and
the invariants of docs/reference.md ("Invariants") are checked in SQL after every test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from httpx import AsyncClient, Response
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.api import OPS, make_key, make_product, place
from tests.support.invariants import assert_invariants


@pytest.fixture(autouse=True)
async def invariants_hold_after_each_test(
    client: AsyncClient, database_url: str
) -> AsyncIterator[None]:
    yield
    assert_invariants(database_url)


# --- helpers ---------------------------------------------------------------------------------


async def post_order(
    client: AsyncClient,
    lines: list[tuple[str, int]],
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> Response:
    body = {
        "customer_id": fields.pop("customer_id", "c-1"),
        "lines": [{"sku": s, "quantity": q} for s, q in lines],
        **fields,
    }
    return await client.post("/v1/orders", json=body, headers=headers or OPS)


async def restock(client: AsyncClient, sku: str, quantity: int, **fields: Any) -> dict[str, Any]:
    r = await client.post(
        f"/v1/products/{sku}/restocks", json={"quantity": quantity, **fields}, headers=OPS
    )
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def adjust(client: AsyncClient, sku: str, delta: int, reason: str = "count") -> Response:
    return await client.post(
        f"/v1/products/{sku}/adjustments", json={"delta": delta, "reason": reason}, headers=OPS
    )


async def product(client: AsyncClient, sku: str) -> dict[str, Any]:
    r = await client.get(f"/v1/products/{sku}", headers=OPS)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def figures(p: dict[str, Any]) -> tuple[int, int, int, int]:
    return p["on_hand"], p["allocated"], p["available"], p["backordered"]


async def get_order(
    client: AsyncClient, order_id: str, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    r = await client.get(f"/v1/orders/{order_id}", headers=headers or OPS)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    assert_follows_contract(out)
    return out


async def ship(
    client: AsyncClient, order_id: str, lines: list[tuple[str, int]], headers: Any = None
) -> Response:
    return await client.post(
        f"/v1/orders/{order_id}/shipments",
        json={"lines": [{"line_id": i, "quantity": q} for i, q in lines]},
        headers=headers or OPS,
    )


async def cancel(client: AsyncClient, order_id: str, headers: Any = None) -> Response:
    return await client.post(f"/v1/orders/{order_id}/cancel", headers=headers or OPS)


async def cancel_line(
    client: AsyncClient,
    order: dict[str, Any],
    quantity: int | None,
    index: int = 0,
    headers: Any = None,
) -> Response:
    return await client.post(
        f"/v1/orders/{order['id']}/lines/{order['lines'][index]['id']}/cancel",
        json={} if quantity is None else {"quantity": quantity},
        headers=headers or OPS,
    )


async def queue(client: AsyncClient, sku: str) -> list[tuple[str, int, int]]:
    r = await client.get("/v1/backorders", params={"sku": sku, "limit": 200}, headers=OPS)
    assert r.status_code == 200, r.text
    return [(q["order_id"], q["quantity"], q["position"]) for q in r.json()["data"]]


def units(line: dict[str, Any]) -> tuple[int, int, int, int]:
    return line["allocated"], line["backordered"], line["shipped"], line["cancelled"]


def contract_status(o: int, a: int, s: int) -> str:
    if o == a == s == 0:
        return "cancelled"
    if s > 0:
        return "shipped" if o == a == 0 else "partially_shipped"
    if o == 0:
        return "allocated"
    return "partially_backordered" if a > 0 else "backordered"


def assert_follows_contract(order: dict[str, Any]) -> None:
    """Status, backorder_type and ready_to_ship are the contract's formulas of the units."""
    for line in order["lines"]:
        a, o, s, c = units(line)
        assert line["quantity"] == a + o + s + c, line
        assert line["status"] == contract_status(o, a, s), line
        if o == 0:
            assert line["expected_date"] is None, line
    a = sum(x["allocated"] for x in order["lines"])
    o = sum(x["backordered"] for x in order["lines"])
    s = sum(x["shipped"] for x in order["lines"])
    assert order["status"] == contract_status(o, a, s), order
    if o == 0:
        kind = "none"
    elif a + s == 0 or (order["ship_policy"] == "complete" and s == 0):
        kind = "full"
    else:
        kind = "partial"
    assert order["backorder_type"] == kind, order
    assert order["ready_to_ship"] is (a > 0 and (order["ship_policy"] == "partial" or o == 0))


async def placed(client: AsyncClient, lines: list[tuple[str, int]], **fields: Any) -> Any:
    order = await place(client, lines, **fields)
    assert_follows_contract(order)
    return order


def refusal(r: Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["code"] == code, body
    assert body["status"] == status
    return body


async def order_count(client: AsyncClient) -> int:
    r = await client.get("/v1/orders", params={"limit": 200}, headers=OPS)
    return len(r.json()["data"])


# --- placing ---------------------------------------------------------------------------------


async def test_100_ordered_with_80_available_is_a_partial_backorder(client: AsyncClient) -> None:
    await make_product(client, "TRAIL-42", on_hand=80, expected_restock_date="2026-12-01")
    order = await placed(client, [("TRAIL-42", 100)], customer_id="c-1001")
    line = order["lines"][0]
    assert units(line) == (80, 20, 0, 0)
    assert (line["sku"], line["quantity"]) == ("TRAIL-42", 100)
    assert line["status"] == "partially_backordered"
    assert line["expected_date"] == "2026-12-01"
    assert order["status"] == "partially_backordered"
    assert order["backorder_type"] == "partial"
    assert order["ready_to_ship"] is True
    assert (order["customer_id"], order["priority"], order["ship_policy"]) == (
        "c-1001",
        0,
        "partial",
    )
    p = await product(client, "TRAIL-42")
    assert figures(p) == (80, 80, 0, 20)
    assert p["status"] == "backorder"
    # The answer is what the order reads back as.
    assert await get_order(client, order["id"]) == order


async def test_an_order_with_nothing_available_is_a_full_backorder(client: AsyncClient) -> None:
    await make_product(client, "A")
    order = await placed(client, [("A", 5)])
    assert units(order["lines"][0]) == (0, 5, 0, 0)
    assert (order["status"], order["backorder_type"], order["ready_to_ship"]) == (
        "backordered",
        "full",
        False,
    )


async def test_complete_policy_with_some_stock_is_a_full_backorder_not_ready_to_ship(
    client: AsyncClient,
) -> None:
    await make_product(client, "A", on_hand=3)
    order = await placed(client, [("A", 5)], ship_policy="complete")
    assert units(order["lines"][0]) == (3, 2, 0, 0)
    assert (order["status"], order["backorder_type"], order["ready_to_ship"]) == (
        "partially_backordered",
        "full",
        False,
    )
    await restock(client, "A", 2)
    order = await get_order(client, order["id"])
    assert (order["status"], order["backorder_type"], order["ready_to_ship"]) == (
        "allocated",
        "none",
        True,
    )


async def test_an_order_that_fits_in_stock_is_allocated_and_ready(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=10)
    order = await placed(client, [("A", 4)], ship_policy="complete")
    assert (order["status"], order["backorder_type"], order["ready_to_ship"]) == (
        "allocated",
        "none",
        True,
    )
    assert order["lines"][0]["expected_date"] is None
    assert figures(await product(client, "A")) == (10, 4, 6, 0)


async def test_out_of_stock_is_refused_whole_and_reserves_nothing(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=2, backorders_allowed=False)
    await make_product(client, "B", on_hand=9)
    before = [figures(await product(client, s)) for s in ("A", "B")]
    r = await post_order(client, [("B", 4), ("A", 3)])
    body = refusal(r, 409, "insufficient_stock")
    assert body["lines"] == [{"sku": "A", "requested": 3, "available": 2}]
    assert [figures(await product(client, s)) for s in ("A", "B")] == before
    assert await order_count(client) == 0
    # What there is can still be ordered.
    order = await placed(client, [("B", 4), ("A", 2)])
    assert [units(x) for x in order["lines"]] == [(4, 0, 0, 0), (2, 0, 0, 0)]
    assert (await product(client, "A"))["status"] == "out_of_stock"


async def test_backorder_limit_may_be_reached_exactly_but_not_passed(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=2, backorder_limit=5)
    order = await placed(client, [("A", 7)])
    assert units(order["lines"][0]) == (2, 5, 0, 0)
    body = refusal(await post_order(client, [("A", 1)]), 409, "backorder_limit_exceeded")
    assert body["lines"][0] | {"sku": "A", "requested": 1, "available": 0} == body["lines"][0]
    assert figures(await product(client, "A")) == (2, 2, 0, 5)
    # A restock takes units off the queue: room for exactly one more backordered unit.
    await restock(client, "A", 1)
    await placed(client, [("A", 1)])
    refusal(await post_order(client, [("A", 1)]), 409, "backorder_limit_exceeded")
    assert await order_count(client) == 2


async def test_backorder_limit_zero_refuses_any_backorder(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=3, backorder_limit=0)
    refusal(await post_order(client, [("A", 4)]), 409, "backorder_limit_exceeded")
    await placed(client, [("A", 3)])


async def test_an_unknown_sku_refuses_the_order(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=5)
    body = refusal(await post_order(client, [("A", 1), ("NOPE", 1)]), 422, "unknown_sku")
    assert "NOPE" in body["detail"]
    assert figures(await product(client, "A")) == (5, 0, 5, 0)
    assert await order_count(client) == 0


async def test_a_discontinued_product_refuses_the_order(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=5)
    await make_product(client, "OLD", on_hand=5, discontinued=True)
    body = refusal(await post_order(client, [("A", 1), ("OLD", 1)]), 409, "discontinued")
    assert [x["sku"] for x in body["lines"]] == ["OLD"]
    assert figures(await product(client, "A")) == (5, 0, 5, 0)
    assert figures(await product(client, "OLD")) == (5, 0, 5, 0)


async def test_a_repeated_sku_is_a_validation_error(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=5)
    body = refusal(await post_order(client, [("A", 1), ("A", 2)]), 422, "validation_error")
    assert body["errors"]
    assert figures(await product(client, "A")) == (5, 0, 5, 0)


MALFORMED_ORDERS: list[dict[str, Any]] = [
    {"lines": [{"sku": "A", "quantity": 1}]},  # customer_id is required
    {"customer_id": "c", "lines": []},
    {"customer_id": "c", "lines": [{"sku": "A", "quantity": 0}]},
    {"customer_id": "c", "lines": [{"sku": "A", "quantity": 1_000_001}]},
    {"customer_id": "c", "lines": [{"sku": "A", "quantity": "1"}]},
    {"customer_id": "c", "lines": [{"sku": "A", "quantity": 1}], "priority": 10},
    {"customer_id": "c", "lines": [{"sku": "A", "quantity": 1}], "ship_policy": "asap"},
    {"customer_id": "c", "lines": [{"sku": "A", "quantity": 1}], "colour": "red"},
    {"customer_id": "c\x00", "lines": [{"sku": "A", "quantity": 1}]},
    {"customer_id": "c" * 256, "lines": [{"sku": "A", "quantity": 1}]},
    {"customer_id": "c", "lines": [{"sku": "bad sku", "quantity": 1}]},
]


async def test_malformed_orders_are_validation_errors(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=5)
    for body in MALFORMED_ORDERS:
        r = await client.post("/v1/orders", json=body, headers=OPS)
        assert refusal(r, 422, "validation_error")["errors"], body
    assert figures(await product(client, "A")) == (5, 0, 5, 0)
    assert await order_count(client) == 0


async def test_one_bad_line_refuses_a_multi_line_order_whole(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=10)
    await make_product(client, "B", on_hand=1, backorder_limit=2)
    await make_product(client, "C", on_hand=0, backorders_allowed=False)
    refusal(await post_order(client, [("A", 6), ("B", 4)]), 409, "backorder_limit_exceeded")
    body = refusal(await post_order(client, [("A", 6), ("C", 1)]), 409, "insufficient_stock")
    assert body["lines"] == [{"sku": "C", "requested": 1, "available": 0}]
    assert figures(await product(client, "A")) == (10, 0, 10, 0)
    assert figures(await product(client, "B")) == (1, 0, 1, 0)
    assert await order_count(client) == 0
    events = (await client.get("/v1/events", params={"limit": 200}, headers=OPS)).json()["data"]
    assert not [e for e in events if e["type"].startswith("order.")]


async def test_an_order_may_mix_allocated_and_backordered_lines(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=10)
    await make_product(client, "B")
    order = await placed(client, [("A", 3), ("B", 2)])
    assert [units(x) for x in order["lines"]] == [(3, 0, 0, 0), (0, 2, 0, 0)]
    assert [x["status"] for x in order["lines"]] == ["allocated", "backordered"]
    assert (order["status"], order["backorder_type"], order["ready_to_ship"]) == (
        "partially_backordered",
        "partial",
        True,
    )


# --- filling the queue -----------------------------------------------------------------------


async def test_fifo_restock_fills_the_head_first_and_the_last_line_reached_partly(
    client: AsyncClient,
) -> None:
    await make_product(client, "A")
    first = await placed(client, [("A", 3)])
    second = await placed(client, [("A", 4)])
    third = await placed(client, [("A", 2)])
    result = await restock(client, "A", 5)
    assert result["allocations"] == [
        {"order_id": first["id"], "line_id": first["lines"][0]["id"], "quantity": 3},
        {"order_id": second["id"], "line_id": second["lines"][0]["id"], "quantity": 2},
    ]
    assert result["available"] == 0
    assert await queue(client, "A") == [(second["id"], 2, 1), (third["id"], 2, 2)]
    assert (await get_order(client, first["id"]))["status"] == "allocated"
    assert (await get_order(client, second["id"]))["status"] == "partially_backordered"
    # The partly filled head stays at the head.
    result = await restock(client, "A", 10)
    assert [(a["order_id"], a["quantity"]) for a in result["allocations"]] == [
        (second["id"], 2),
        (third["id"], 2),
    ]
    assert result["available"] == 6
    assert await queue(client, "A") == []
    assert figures(await product(client, "A")) == (15, 9, 6, 0)


async def test_a_new_order_waits_behind_the_queue_instead_of_taking_a_restock(
    client: AsyncClient,
) -> None:
    await make_product(client, "A")
    early = await placed(client, [("A", 5)])
    await restock(client, "A", 3)
    late = await placed(client, [("A", 1)])
    assert units(late["lines"][0]) == (0, 1, 0, 0)
    assert await queue(client, "A") == [(early["id"], 2, 1), (late["id"], 1, 2)]


async def test_priority_queue_fills_higher_priority_first_then_by_time(
    client: AsyncClient,
) -> None:
    await make_product(client, "P", allocation_strategy="priority")
    low = await placed(client, [("P", 2)], priority=1)
    high_early = await placed(client, [("P", 2)], priority=5)
    high_late = await placed(client, [("P", 2)], priority=5)
    lowest = await placed(client, [("P", 2)], priority=0)
    assert await queue(client, "P") == [
        (high_early["id"], 2, 1),
        (high_late["id"], 2, 2),
        (low["id"], 2, 3),
        (lowest["id"], 2, 4),
    ]
    result = await restock(client, "P", 5)
    assert [(a["order_id"], a["quantity"]) for a in result["allocations"]] == [
        (high_early["id"], 2),
        (high_late["id"], 2),
        (low["id"], 1),
    ]
    assert await queue(client, "P") == [(low["id"], 1, 1), (lowest["id"], 2, 2)]


async def test_fifo_ignores_priority(client: AsyncClient) -> None:
    await make_product(client, "F")
    low = await placed(client, [("F", 2)], priority=0)
    high = await placed(client, [("F", 2)], priority=9)
    result = await restock(client, "F", 2)
    assert [a["order_id"] for a in result["allocations"]] == [low["id"]]
    assert await queue(client, "F") == [(high["id"], 2, 1)]


async def test_reprioritising_moves_a_line_in_a_priority_queue(client: AsyncClient) -> None:
    await make_product(client, "P", allocation_strategy="priority")
    first = await placed(client, [("P", 2)])
    second = await placed(client, [("P", 2)])
    assert [q[0] for q in await queue(client, "P")] == [first["id"], second["id"]]
    r = await client.patch(f"/v1/orders/{second['id']}", json={"priority": 7}, headers=OPS)
    assert r.status_code == 200, r.text
    assert r.json()["priority"] == 7
    assert_follows_contract(r.json())
    assert await queue(client, "P") == [(second["id"], 2, 1), (first["id"], 2, 2)]
    result = await restock(client, "P", 3)
    assert [(a["order_id"], a["quantity"]) for a in result["allocations"]] == [
        (second["id"], 2),
        (first["id"], 1),
    ]
    # and back down again
    r = await client.patch(f"/v1/orders/{first['id']}", json={"priority": 0}, headers=OPS)
    assert r.status_code == 200, r.text


async def test_only_ops_may_reprioritise(client: AsyncClient) -> None:
    await make_product(client, "P", allocation_strategy="priority")
    shop = await make_key(client, "shop")
    order = await placed(client, [("P", 2)], headers=shop)
    r = await client.patch(f"/v1/orders/{order['id']}", json={"priority": 3}, headers=shop)
    refusal(r, 403, "forbidden")
    assert (await get_order(client, order["id"]))["priority"] == 0
    r = await client.patch(f"/v1/orders/{order['id']}", json={"priority": 10}, headers=OPS)
    refusal(r, 422, "validation_error")
    missing = "00000000-0000-0000-0000-000000000000"
    refusal(
        await client.patch(f"/v1/orders/{missing}", json={"priority": 3}, headers=OPS),
        404,
        "not_found",
    )


async def test_storefronts_may_send_priority_0_to_4_and_ops_up_to_9(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=50)
    shop = await make_key(client, "shop")
    for priority in (5, 9):
        r = await post_order(client, [("A", 1)], headers=shop, priority=priority)
        assert refusal(r, 422, "validation_error")["errors"]
    assert (await placed(client, [("A", 1)], headers=shop, priority=4))["priority"] == 4
    assert (await placed(client, [("A", 1)], priority=9))["priority"] == 9
    assert await order_count(client) == 2


# --- cancelling ------------------------------------------------------------------------------


async def test_cancel_frees_stock_to_the_next_in_line_in_the_same_request(
    client: AsyncClient,
) -> None:
    await make_product(client, "A", on_hand=4)
    holder = await placed(client, [("A", 4)])
    first = await placed(client, [("A", 3)])
    second = await placed(client, [("A", 3)])
    r = await cancel(client, holder["id"])
    assert r.status_code == 200, r.text
    cancelled = r.json()
    assert_follows_contract(cancelled)
    assert cancelled["status"] == "cancelled"
    assert units(cancelled["lines"][0]) == (0, 0, 0, 4)
    assert units((await get_order(client, first["id"]))["lines"][0]) == (3, 0, 0, 0)
    assert units((await get_order(client, second["id"]))["lines"][0]) == (1, 2, 0, 0)
    assert figures(await product(client, "A")) == (4, 4, 0, 2)
    assert await queue(client, "A") == [(second["id"], 2, 1)]


async def test_cancelling_a_waiting_order_leaves_its_place_to_the_next(
    client: AsyncClient,
) -> None:
    await make_product(client, "A")
    first = await placed(client, [("A", 3)])
    second = await placed(client, [("A", 3)])
    assert (await cancel(client, first["id"])).status_code == 200
    assert await queue(client, "A") == [(second["id"], 3, 1)]
    assert figures(await product(client, "A")) == (0, 0, 0, 3)


async def test_a_line_cancel_takes_backordered_units_first(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=3)
    order = await placed(client, [("A", 5)])
    waiter = await placed(client, [("A", 2)])
    r = await cancel_line(client, order, 1)
    assert r.status_code == 200, r.text
    assert_follows_contract(r.json())
    assert units(r.json()["lines"][0]) == (3, 1, 0, 1)
    # 1 more backordered, then 1 allocated: the freed unit goes to the waiter at once
    r = await cancel_line(client, order, 2)
    assert r.status_code == 200, r.text
    assert units(r.json()["lines"][0]) == (2, 0, 0, 3)
    assert r.json()["status"] == "allocated"
    assert units((await get_order(client, waiter["id"]))["lines"][0]) == (1, 1, 0, 0)
    assert figures(await product(client, "A")) == (3, 3, 0, 1)


async def test_a_line_cancel_without_quantity_cancels_every_unshipped_unit(
    client: AsyncClient,
) -> None:
    await make_product(client, "A", on_hand=3)
    await make_product(client, "B", on_hand=3)
    order = await placed(client, [("A", 5), ("B", 1)])
    r = await cancel_line(client, order, None)
    assert r.status_code == 200, r.text
    got = r.json()
    assert [units(x) for x in got["lines"]] == [(0, 0, 0, 5), (1, 0, 0, 0)]
    assert got["status"] == "allocated"
    assert figures(await product(client, "A")) == (3, 0, 3, 0)


async def test_a_line_cancel_of_more_than_remains_is_a_conflict(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=3)
    order = await placed(client, [("A", 5)])
    refusal(await cancel_line(client, order, 6), 409, "conflict")
    line = order["lines"][0]
    r = await ship(client, order["id"], [(line["id"], 3)])
    assert r.status_code == 201, r.text
    refusal(await cancel_line(client, order, 3), 409, "already_shipped")
    assert (await cancel_line(client, order, 2)).status_code == 200
    refusal(await cancel_line(client, order, 1), 409, "already_shipped")
    missing = "00000000-0000-0000-0000-000000000000"
    r = await client.post(
        f"/v1/orders/{order['id']}/lines/{missing}/cancel", json={"quantity": 1}, headers=OPS
    )
    refusal(r, 404, "not_found")


async def test_cancelling_with_nothing_left_is_a_conflict(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=4)
    order = await placed(client, [("A", 2)])
    assert (await cancel(client, order["id"])).status_code == 200
    refusal(await cancel(client, order["id"]), 409, "conflict")
    assert figures(await product(client, "A")) == (4, 0, 4, 0)


async def test_cancelling_after_a_full_shipment_is_already_shipped(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=4)
    order = await placed(client, [("A", 2)])
    assert (await ship(client, order["id"], [(order["lines"][0]["id"], 2)])).status_code == 201
    refusal(await cancel(client, order["id"]), 409, "already_shipped")
    assert (await get_order(client, order["id"]))["status"] == "shipped"


async def test_cancelling_a_partly_shipped_order_cancels_only_what_has_not_shipped(
    client: AsyncClient,
) -> None:
    await make_product(client, "A", on_hand=3)
    order = await placed(client, [("A", 5)])
    assert (await ship(client, order["id"], [(order["lines"][0]["id"], 2)])).status_code == 201
    r = await cancel(client, order["id"])
    assert r.status_code == 200, r.text
    got = r.json()
    assert_follows_contract(got)
    assert units(got["lines"][0]) == (0, 0, 2, 3)
    assert got["status"] == "shipped"
    assert figures(await product(client, "A")) == (1, 0, 1, 0)


async def test_cancelling_an_unknown_order_is_not_found(client: AsyncClient) -> None:
    missing = "00000000-0000-0000-0000-000000000000"
    refusal(await cancel(client, missing), 404, "not_found")
    refusal(await client.get(f"/v1/orders/{missing}", headers=OPS), 404, "not_found")
    r = await client.get("/v1/orders/not-a-uuid", headers=OPS)
    refusal(r, 422, "validation_error")


# --- shipping --------------------------------------------------------------------------------


async def test_a_partial_order_ships_what_is_allocated(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=80)
    order = await placed(client, [("A", 100)])
    line = order["lines"][0]
    refusal(await ship(client, order["id"], [(line["id"], 81)]), 409, "not_allocated")
    r = await ship(client, order["id"], [(line["id"], 80)])
    assert r.status_code == 201, r.text
    shipment = r.json()
    assert shipment["order_id"] == order["id"]
    assert shipment["lines"] == [{"line_id": line["id"], "sku": "A", "quantity": 80}]
    shipped = shipment["order"]
    assert_follows_contract(shipped)
    assert units(shipped["lines"][0]) == (0, 20, 80, 0)
    assert (shipped["status"], shipped["backorder_type"], shipped["ready_to_ship"]) == (
        "partially_shipped",
        "partial",
        False,
    )
    assert figures(await product(client, "A")) == (0, 0, 0, 20)
    refusal(await ship(client, order["id"], [(line["id"], 1)]), 409, "not_allocated")
    await restock(client, "A", 20)
    r = await ship(client, order["id"], [(line["id"], 20)])
    assert r.status_code == 201, r.text
    assert r.json()["order"]["status"] == "shipped"
    assert figures(await product(client, "A")) == (0, 0, 0, 0)


async def test_a_complete_order_ships_only_when_nothing_waits(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=3)
    order = await placed(client, [("A", 5)], ship_policy="complete")
    line = order["lines"][0]
    body = refusal(await ship(client, order["id"], [(line["id"], 3)]), 409, "order_incomplete")
    assert body["detail"]
    assert figures(await product(client, "A")) == (3, 3, 0, 2)
    await restock(client, "A", 2)
    r = await ship(client, order["id"], [(line["id"], 5)])
    assert r.status_code == 201, r.text
    assert r.json()["order"]["status"] == "shipped"


async def test_a_shipment_is_all_or_nothing(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=5)
    await make_product(client, "B", on_hand=2)
    order = await placed(client, [("A", 5), ("B", 3)])
    a, b = (x["id"] for x in order["lines"])
    body = refusal(await ship(client, order["id"], [(a, 5), (b, 3)]), 409, "not_allocated")
    assert body["lines"][0]["sku"] == "B"
    assert figures(await product(client, "A")) == (5, 5, 0, 0)
    assert figures(await product(client, "B")) == (2, 2, 0, 1)
    assert [units(x) for x in (await get_order(client, order["id"]))["lines"]] == [
        (5, 0, 0, 0),
        (2, 1, 0, 0),
    ]
    ledger = (await client.get("/v1/products/A/movements", headers=OPS)).json()["data"]
    assert [m["kind"] for m in ledger] == ["restock"]


async def test_an_order_may_ship_in_several_shipments(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=5)
    await make_product(client, "B", on_hand=2)
    order = await placed(client, [("A", 5), ("B", 2)])
    a, b = (x["id"] for x in order["lines"])
    first = await ship(client, order["id"], [(a, 2)])
    assert first.status_code == 201, first.text
    assert first.json()["order"]["status"] == "partially_shipped"
    second = await ship(client, order["id"], [(a, 3), (b, 2)])
    assert second.status_code == 201, second.text
    assert first.json()["id"] != second.json()["id"]
    final = await get_order(client, order["id"])
    assert [units(x) for x in final["lines"]] == [(0, 0, 5, 0), (0, 0, 2, 0)]
    assert (final["status"], final["backorder_type"], final["ready_to_ship"]) == (
        "shipped",
        "none",
        False,
    )
    ledger = (await client.get("/v1/products/A/movements", headers=OPS)).json()["data"]
    assert [(m["kind"], m["quantity"]) for m in ledger] == [
        ("restock", 5),
        ("shipment", -2),
        ("shipment", -3),
    ]


async def test_shipping_lines_of_another_order_or_twice_in_one_shipment_is_refused(
    client: AsyncClient,
) -> None:
    await make_product(client, "A", on_hand=5)
    one = await placed(client, [("A", 2)])
    other = await placed(client, [("A", 2)])
    line = one["lines"][0]["id"]
    refusal(await ship(client, one["id"], [(other["lines"][0]["id"], 1)]), 422, "validation_error")
    refusal(await ship(client, one["id"], [(line, 1), (line, 1)]), 422, "validation_error")
    shop = await make_key(client, "shop")
    refusal(await ship(client, one["id"], [(line, 1)], headers=shop), 403, "forbidden")
    assert figures(await product(client, "A")) == (5, 4, 1, 0)


# --- the ledger and adjustments --------------------------------------------------------------


async def test_the_ledger_sums_to_on_hand_after_restocks_shipments_and_adjustments(
    client: AsyncClient,
) -> None:
    await make_product(client, "A")
    await restock(client, "A", 10, reference="PO-1")
    assert (await adjust(client, "A", -2, "damaged")).status_code == 201
    order = await placed(client, [("A", 5)])
    assert (await ship(client, order["id"], [(order["lines"][0]["id"], 3)])).status_code == 201
    assert (await adjust(client, "A", 4, "found")).status_code == 201
    r = await client.get("/v1/products/A/movements", headers=OPS)
    assert r.status_code == 200, r.text
    ledger = r.json()["data"]
    assert [(m["kind"], m["quantity"]) for m in ledger] == [
        ("restock", 10),
        ("adjustment", -2),
        ("shipment", -3),
        ("adjustment", 4),
    ]
    assert ledger[0]["reference"] == "PO-1"
    assert all(m["created_at"] for m in ledger)
    p = await product(client, "A")
    assert sum(m["quantity"] for m in ledger) == p["on_hand"] == 9
    assert figures(p) == (9, 2, 7, 0)
    shop = await make_key(client, "shop")
    refusal(await client.get("/v1/products/A/movements", headers=shop), 403, "forbidden")


async def test_a_negative_adjustment_may_not_strand_allocations(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=5)
    await placed(client, [("A", 3)])
    refusal(await adjust(client, "A", -3), 409, "would_strand_allocations")
    assert figures(await product(client, "A")) == (5, 3, 2, 0)
    assert (await adjust(client, "A", -2)).status_code == 201
    assert figures(await product(client, "A")) == (3, 3, 0, 0)
    refusal(await adjust(client, "A", -1), 409, "would_strand_allocations")


async def test_a_negative_adjustment_may_not_take_on_hand_below_zero(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=2)
    refusal(await adjust(client, "A", -3), 409, "would_strand_allocations")
    assert figures(await product(client, "A")) == (2, 0, 2, 0)
    refusal(await adjust(client, "A", 0), 422, "validation_error")


async def test_a_positive_adjustment_fills_the_queue(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=3)
    order = await placed(client, [("A", 4)])
    r = await adjust(client, "A", 2, "found")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["allocations"] == [
        {"order_id": order["id"], "line_id": order["lines"][0]["id"], "quantity": 1}
    ]
    assert body["available"] == 1
    assert (await get_order(client, order["id"]))["status"] == "allocated"
    assert figures(await product(client, "A")) == (5, 4, 1, 0)


# --- channels --------------------------------------------------------------------------------


async def test_storefronts_see_and_cancel_only_their_channels_orders(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=5)
    shop_a = await make_key(client, "shop-a")
    shop_b = await make_key(client, "shop-b")
    mine = await placed(client, [("A", 2)], headers=shop_a)
    theirs = await placed(client, [("A", 1)], headers=shop_b)
    assert mine["channel"] == "shop-a"
    refusal(await client.get(f"/v1/orders/{mine['id']}", headers=shop_b), 404, "not_found")
    refusal(await cancel(client, mine["id"], headers=shop_b), 404, "not_found")
    refusal(await cancel_line(client, mine, 1, headers=shop_b), 404, "not_found")
    assert (await get_order(client, mine["id"]))["status"] == "allocated"
    listed_b = (await client.get("/v1/orders", headers=shop_b)).json()["data"]
    assert [o["id"] for o in listed_b] == [theirs["id"]]
    listed_a = (await client.get("/v1/orders", headers=shop_a)).json()["data"]
    assert [o["id"] for o in listed_a] == [mine["id"]]
    assert await order_count(client) == 2
    # A rotated key (same name) keeps the channel's orders.
    rotated = await make_key(client, "shop-a")
    assert (await get_order(client, mine["id"], headers=rotated))["id"] == mine["id"]
    r = await cancel(client, mine["id"], headers=rotated)
    assert r.status_code == 200, r.text
    assert figures(await product(client, "A")) == (5, 1, 4, 0)


# --- listing ---------------------------------------------------------------------------------


async def list_all(client: AsyncClient, limit: int, **params: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    query: dict[str, Any] = {"limit": limit, **params}
    while True:
        r = await client.get("/v1/orders", params=query, headers=OPS)
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["data"]) <= limit
        rows.extend(body["data"])
        if body["next_cursor"] is None:
            return rows
        query["cursor"] = body["next_cursor"]


async def test_orders_list_by_status_customer_and_sku(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=3)
    await make_product(client, "B")
    allocated = await placed(client, [("A", 3)], customer_id="alice")
    waiting = await placed(client, [("A", 2)], customer_id="bob")
    mixed = await placed(client, [("B", 1)], customer_id="alice")

    async def ids(**params: Any) -> list[str]:
        return [o["id"] for o in await list_all(client, 50, **params)]

    assert await ids() == [mixed["id"], waiting["id"], allocated["id"]]
    assert await ids(status="allocated") == [allocated["id"]]
    assert await ids(status="backordered") == [mixed["id"], waiting["id"]]
    assert await ids(customer_id="alice") == [mixed["id"], allocated["id"]]
    assert await ids(sku="A") == [waiting["id"], allocated["id"]]
    assert await ids(sku="B", customer_id="alice") == [mixed["id"]]
    assert await ids(customer_id="nobody") == []
    # the status filter follows changes made by fills and cancels
    await restock(client, "A", 2)
    await cancel(client, mixed["id"])
    assert await ids(status="allocated") == [waiting["id"], allocated["id"]]
    assert await ids(status="cancelled") == [mixed["id"]]
    assert await ids(status="backordered") == []
    refusal(
        await client.get("/v1/orders", params={"status": "lost"}, headers=OPS),
        422,
        "validation_error",
    )


async def test_orders_pages_have_no_duplicates_or_gaps_even_with_inserts_between_pages(
    client: AsyncClient,
) -> None:
    await make_product(client, "A", on_hand=100)
    answers = [await placed(client, [("A", 1)]) for _ in range(7)]
    newest_first = [o["id"] for o in reversed(answers)]
    # Each listed order is exactly what its placement answered.
    assert await list_all(client, 3) == list(reversed(answers))
    assert [o["id"] for o in await list_all(client, 1)] == newest_first
    assert [o["id"] for o in await list_all(client, 7)] == newest_first

    r = await client.get("/v1/orders", params={"limit": 3}, headers=OPS)
    first_page = r.json()
    await placed(client, [("A", 1)])  # a new order between pages
    rest: list[str] = []
    cursor = first_page["next_cursor"]
    while cursor:
        body = (
            await client.get("/v1/orders", params={"limit": 3, "cursor": cursor}, headers=OPS)
        ).json()
        rest.extend(o["id"] for o in body["data"])
        cursor = body["next_cursor"]
    assert [o["id"] for o in first_page["data"]] + rest == newest_first

    for bad in ({"limit": 0}, {"limit": 201}, {"limit": "x"}, {"cursor": "nonsense"}):
        refusal(await client.get("/v1/orders", params=bad, headers=OPS), 422, "validation_error")


# --- statuses through a whole life -----------------------------------------------------------


async def test_an_orders_status_follows_its_units_through_its_life(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=2)
    await make_product(client, "B")
    order = await placed(client, [("A", 4), ("B", 2)], ship_policy="complete")
    a, b = (x["id"] for x in order["lines"])
    seen = [(order["status"], order["backorder_type"], order["ready_to_ship"])]

    async def step() -> None:
        got = await get_order(client, order["id"])
        seen.append((got["status"], got["backorder_type"], got["ready_to_ship"]))

    await restock(client, "A", 2)  # A whole, B waits
    await step()
    await restock(client, "B", 2)  # all allocated
    await step()
    assert (await ship(client, order["id"], [(a, 4)])).status_code == 201
    await step()
    assert (await ship(client, order["id"], [(b, 2)])).status_code == 201
    await step()
    assert seen == [
        ("partially_backordered", "full", False),
        ("partially_backordered", "full", False),
        ("allocated", "none", True),
        ("partially_shipped", "none", True),
        ("shipped", "none", False),
    ]


async def test_a_partial_order_waiting_on_one_line_is_a_partial_backorder(
    client: AsyncClient,
) -> None:
    await make_product(client, "A", on_hand=4)
    await make_product(client, "B")
    order = await placed(client, [("A", 4), ("B", 2)])
    a = order["lines"][0]["id"]
    assert (order["status"], order["backorder_type"], order["ready_to_ship"]) == (
        "partially_backordered",
        "partial",
        True,
    )
    assert (await ship(client, order["id"], [(a, 4)])).status_code == 201
    got = await get_order(client, order["id"])
    assert (got["status"], got["backorder_type"], got["ready_to_ship"]) == (
        "partially_shipped",
        "partial",
        False,
    )
    assert [x["status"] for x in got["lines"]] == ["shipped", "backordered"]


# --- idempotency of order writes (see also test_idempotency.py) ------------------------------


async def test_a_key_held_by_a_running_request_is_in_use_and_nothing_is_stored(
    client: AsyncClient, engine: AsyncEngine
) -> None:
    await make_product(client, "A", on_hand=3)
    headers = {**OPS, "Idempotency-Key": "held"}
    async with engine.connect() as conn, conn.begin():
        # What a request still running with this key holds (see db/idempotency.py).
        await conn.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 7))"),
            {"k": "master\x1fheld"},
        )
        r = await post_order(client, [("A", 1)], headers=headers)
        refusal(r, 409, "idempotency_key_in_use")
    assert await order_count(client) == 0
    # The refusal was not stored: the retry runs afresh, once.
    r = await post_order(client, [("A", 1)], headers=headers)
    assert r.status_code == 201, r.text
    assert "idempotent-replayed" not in r.headers
    again = await post_order(client, [("A", 1)], headers=headers)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == r.content
    assert figures(await product(client, "A")) == (3, 1, 2, 0)


async def test_a_replayed_shipment_ships_once(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=5)
    order = await placed(client, [("A", 4)])
    body = {"lines": [{"line_id": order["lines"][0]["id"], "quantity": 2}]}
    headers = {**OPS, "Idempotency-Key": "ship-1"}
    url = f"/v1/orders/{order['id']}/shipments"
    first = await client.post(url, json=body, headers=headers)
    again = await client.post(url, json=body, headers=headers)
    assert first.status_code == again.status_code == 201, again.text
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert figures(await product(client, "A")) == (3, 2, 1, 0)
    assert units((await get_order(client, order["id"]))["lines"][0]) == (2, 0, 2, 0)


async def test_a_line_cancel_shrinks_the_lines_open_units_in_the_queue(
    client: AsyncClient,
) -> None:
    await make_product(client, "A", on_hand=1)
    first = await placed(client, [("A", 5)])
    second = await placed(client, [("A", 2)])
    assert await queue(client, "A") == [(first["id"], 4, 1), (second["id"], 2, 2)]
    assert (await cancel_line(client, first, 3)).status_code == 200
    assert await queue(client, "A") == [(first["id"], 1, 1), (second["id"], 2, 2)]
    assert (await cancel_line(client, first, 1)).status_code == 200
    assert await queue(client, "A") == [(second["id"], 2, 1)]
    assert figures(await product(client, "A")) == (1, 1, 0, 2)
