"""Allocation across locations: the placement rule (preferred location, one location covering
the rest, then rank and code), one backorder queue per SKU across the network, and what
deactivating and activating a location does to it."""

from __future__ import annotations

from typing import Any

import pytest
from httpx import AsyncClient

from tests.support.api import OPS, assert_problem, make_product, place
from tests.support.locations import (
    assert_location_invariants,
    at,
    events,
    put_location,
    restock,
    state,
    where,
)
from tests.support.orders import get_order as order
from tests.support.orders import product

# Four sites, best ranked first: a (10), b (20), c (30), main (100).
SITES = {"a": 10, "b": 20, "c": 30}


def allocated_at(placed: dict[str, Any], index: int = 0) -> dict[str, int]:
    return {code: a for code, (a, _) in where(placed["lines"][index]).items()}


# --- placement ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stock", "quantity", "preferred", "expected"),
    [
        # One location covers the whole line: the best-ranked such, not the best-ranked one.
        ({"a": 3, "b": 10, "c": 20}, 8, None, {"b": 8}),
        ({"a": 3, "b": 10, "c": 20}, 3, None, {"a": 3}),
        # None covers it: by rank, taking what each has (one line at three locations).
        ({"a": 3, "b": 4, "c": 2, "main": 5}, 8, None, {"a": 3, "b": 4, "c": 1}),
        # The preferred location first, then one covering the rest, the best ranked such.
        ({"a": 3, "b": 10, "c": 5}, 9, "c", {"c": 5, "b": 4}),
        ({"a": 3, "b": 10, "c": 5}, 4, "c", {"c": 4}),
        ({"a": 3, "b": 10, "main": 5}, 7, "main", {"main": 5, "a": 2}),
        # The preferred location holding nothing: the rule as if none were named.
        ({"a": 3, "b": 10}, 5, "c", {"b": 5}),
        # Preferred, then no single one covers the rest: by rank.
        ({"a": 2, "b": 2, "c": 2, "main": 1}, 7, "c", {"c": 2, "a": 2, "b": 2, "main": 1}),
    ],
)
async def test_a_line_is_allocated_by_the_rule(
    client: AsyncClient,
    database_url: str,
    stock: dict[str, int],
    quantity: int,
    preferred: str | None,
    expected: dict[str, int],
) -> None:
    for code in ("a", "b", "c"):
        await put_location(client, code, name=code.upper(), rank=SITES[code])
    await make_product(client, "RULE")
    for code, n in stock.items():
        await restock(client, "RULE", n, code)
    extra = {"preferred_location": preferred} if preferred else {}
    placed = await place(client, [("RULE", quantity)], **extra)
    line = placed["lines"][0]
    assert allocated_at(placed) == expected
    assert (
        line["allocated"]
        == sum(expected.values())
        == sum(a["allocated"] for a in line["allocations"])
    )
    # Listed by rank, then code, whatever order they were taken in.
    ranks = {**SITES, "main": 100}
    codes = [a["location"] for a in line["allocations"]]
    assert codes == sorted(codes, key=lambda c: (ranks[c], c))
    assert await order(client, placed["id"]) == placed
    await assert_location_invariants(client, database_url)


async def test_equal_ranks_are_taken_in_code_order(client: AsyncClient) -> None:
    await put_location(client, "x-b", name="XB", rank=10)
    await put_location(client, "x-a", name="XA", rank=10)
    await make_product(client, "TIE")
    await restock(client, "TIE", 5, "x-b")
    await restock(client, "TIE", 5, "x-a")
    first = await place(client, [("TIE", 3)])
    assert allocated_at(first) == {"x-a": 3}
    second = await place(client, [("TIE", 7)])  # x-a has 2, x-b 5: neither covers 7
    assert allocated_at(second) == {"x-a": 2, "x-b": 5}


async def test_a_short_line_takes_everything_active_and_the_rest_waits(
    client: AsyncClient, database_url: str
) -> None:
    await put_location(client, "a", name="A", rank=10)
    await put_location(client, "york", name="York", rank=0)
    await make_product(client, "SHORT")
    await restock(client, "SHORT", 2, "a")
    await restock(client, "SHORT", 1)
    await restock(client, "SHORT", 9, "york")
    await put_location(client, "york", expect=200, active=False)
    placed = await place(client, [("SHORT", 5)], preferred_location="york")
    line = placed["lines"][0]
    assert (line["allocated"], line["backordered"]) == (3, 2)
    assert allocated_at(placed) == {"a": 2, "main": 1}  # inactive york gives nothing
    assert at(await product(client, "SHORT"))["york"] == (9, 0, 0)
    await assert_location_invariants(client, database_url)


async def test_every_line_of_an_order_follows_the_preferred_location(client: AsyncClient) -> None:
    await put_location(client, "a", name="A", rank=10)
    await put_location(client, "shop", name="Shop", rank=50)
    for sku in ("ML-1", "ML-2"):
        await make_product(client, sku)
        await restock(client, sku, 10, "a")
        await restock(client, sku, 10, "shop")
    placed = await place(client, [("ML-1", 4), ("ML-2", 12)], preferred_location="shop")
    assert allocated_at(placed, 0) == {"shop": 4}
    assert allocated_at(placed, 1) == {"shop": 10, "a": 2}


async def test_an_unknown_preferred_location_refuses_the_order_whole(client: AsyncClient) -> None:
    await make_product(client, "PREF-X", on_hand=5)
    before = await state(client, "PREF-X")
    body = {
        "customer_id": "c-1",
        "preferred_location": "nowhere",
        "lines": [{"sku": "PREF-X", "quantity": 2}],
    }
    r = await client.post("/v1/orders", json=body, headers=OPS)
    assert_problem(r, 422, "unknown_location")
    assert await state(client, "PREF-X") == before
    assert (await client.get("/v1/orders", headers=OPS)).json()["data"] == []


# --- one queue across the network ---------------------------------------------------------------


async def test_a_restock_anywhere_fills_the_head_of_the_one_queue(
    client: AsyncClient, database_url: str
) -> None:
    await put_location(client, "leeds", name="Leeds", rank=10)
    await make_product(client, "Q-1")
    first = await place(client, [("Q-1", 3)], customer_id="first")
    second = await place(client, [("Q-1", 2)], customer_id="second", preferred_location="main")
    third = await place(client, [("Q-1", 4)], customer_id="third")
    answer = await restock(client, "Q-1", 4, "leeds")
    assert answer["location"] == "leeds"  # where every unit of the answer is allocated
    assert [(a["order_id"], a["quantity"]) for a in answer["allocations"]] == [
        (first["id"], 3),
        (second["id"], 1),  # the preferred location names placement only
    ]
    answer = await restock(client, "Q-1", 5)
    assert answer["location"] == "main"
    assert [(a["order_id"], a["quantity"]) for a in answer["allocations"]] == [
        (second["id"], 1),
        (third["id"], 4),
    ]
    assert allocated_at(await order(client, first["id"])) == {"leeds": 3}
    assert allocated_at(await order(client, second["id"])) == {"leeds": 1, "main": 1}
    assert allocated_at(await order(client, third["id"])) == {"main": 4}
    fills = [
        (e["data"]["order_id"], e["data"]["quantity"], e["data"]["location"])
        for e in await events(client, "order.line_allocated")
    ]
    assert fills == [
        (first["id"], 3, "leeds"),
        (second["id"], 1, "leeds"),
        (second["id"], 1, "main"),
        (third["id"], 4, "main"),
    ]
    await assert_location_invariants(client, database_url)


async def test_a_new_order_never_takes_stock_past_a_waiting_line(
    client: AsyncClient, database_url: str
) -> None:
    await put_location(client, "leeds", name="Leeds", rank=10)
    await make_product(client, "Q-2")
    waiting = await place(client, [("Q-2", 5)])
    await restock(client, "Q-2", 3, "leeds")  # all to the waiting line
    later = await place(client, [("Q-2", 1)], preferred_location="leeds")
    assert later["lines"][0]["backordered"] == 1
    assert allocated_at(await order(client, waiting["id"])) == {"leeds": 3}
    answer = await restock(client, "Q-2", 3, "leeds")
    assert [(a["order_id"], a["quantity"]) for a in answer["allocations"]] == [
        (waiting["id"], 2),
        (later["id"], 1),
    ]
    await assert_location_invariants(client, database_url)


async def test_units_freed_at_two_locations_fill_the_queue_by_rank(
    client: AsyncClient, database_url: str
) -> None:
    await put_location(client, "b-near", name="Near", rank=10)
    await put_location(client, "a-far", name="Far", rank=20)
    await make_product(client, "FREE")
    await restock(client, "FREE", 2, "b-near")
    await restock(client, "FREE", 3, "a-far")
    split = await place(client, [("FREE", 5)])
    assert allocated_at(split) == {"b-near": 2, "a-far": 3}
    waiting = await place(client, [("FREE", 4)])
    r = await client.post(f"/v1/orders/{split['id']}/cancel", json={}, headers=OPS)
    assert r.status_code == 200, r.text
    # Rank before code: b-near (10) gives its 2 first, then a-far (20) 2 of its 3.
    assert allocated_at(await order(client, waiting["id"])) == {"b-near": 2, "a-far": 2}
    fills = [(e["data"]["quantity"], e["data"]["location"])
             for e in await events(client, "order.line_allocated")]  # fmt: skip
    assert fills[-2:] == [(2, "b-near"), (2, "a-far")]
    assert at(await product(client, "FREE")) == {"b-near": (2, 2, 0), "a-far": (3, 2, 1)}
    await assert_location_invariants(client, database_url)


async def test_units_freed_at_two_locations_of_one_rank_fill_by_code(
    client: AsyncClient, database_url: str
) -> None:
    await put_location(client, "zed", name="Zed", rank=10)
    await put_location(client, "yak", name="Yak", rank=10)
    await make_product(client, "FREE-2")
    await restock(client, "FREE-2", 3, "zed")
    await restock(client, "FREE-2", 3, "yak")
    split = await place(client, [("FREE-2", 6)])
    waiting = await place(client, [("FREE-2", 4)])
    r = await client.post(f"/v1/orders/{split['id']}/cancel", json={}, headers=OPS)
    assert r.status_code == 200, r.text
    assert allocated_at(await order(client, waiting["id"])) == {"yak": 3, "zed": 1}
    await assert_location_invariants(client, database_url)


# --- inactive locations ------------------------------------------------------------------------


async def test_deactivating_hides_unallocated_units_and_activating_fills_the_queue(
    client: AsyncClient, database_url: str
) -> None:
    await put_location(client, "york", name="York", rank=10)
    await make_product(client, "SHUT")
    await restock(client, "SHUT", 8, "york")
    held = await place(client, [("SHUT", 3)])
    await put_location(client, "york", expect=200, active=False)
    p = await product(client, "SHUT")
    assert (p["on_hand"], p["allocated"], p["available"], p["status"]) == (8, 3, 0, "backorder")
    assert at(p) == {"york": (8, 3, 0)}
    # The 5 unallocated units are not available: a new order waits for them.
    waiting = await place(client, [("SHUT", 4)])
    assert waiting["lines"][0]["backordered"] == 4
    await assert_location_invariants(client, database_url)
    # Allocated units there can still ship.
    line = held["lines"][0]
    r = await client.post(
        f"/v1/orders/{held['id']}/shipments",
        json={"lines": [{"line_id": line["id"], "quantity": 3}]},
        headers=OPS,
    )
    assert r.status_code == 201, r.text
    assert r.json()["location"] == "york"
    # Activating again: the waiting line is filled at once, at york.
    await put_location(client, "york", expect=200, active=True)
    assert allocated_at(await order(client, waiting["id"])) == {"york": 4}
    fill = (await events(client, "order.line_allocated"))[-1]["data"]
    assert (fill["order_id"], fill["quantity"], fill["location"]) == (waiting["id"], 4, "york")
    p = await product(client, "SHUT")
    assert (p["on_hand"], p["allocated"], p["available"], p["backordered"]) == (5, 4, 1, 0)
    await assert_location_invariants(client, database_url)


async def test_a_rank_change_changes_where_new_lines_are_served(client: AsyncClient) -> None:
    await put_location(client, "leeds", name="Leeds", rank=200)
    await make_product(client, "RERANK")
    await restock(client, "RERANK", 5, "leeds")
    await restock(client, "RERANK", 5)
    assert allocated_at(await place(client, [("RERANK", 1)])) == {"main": 1}
    await put_location(client, "leeds", expect=200, rank=50)
    assert allocated_at(await place(client, [("RERANK", 1)])) == {"leeds": 1}
    codes = [loc["location"] for loc in (await product(client, "RERANK"))["locations"]]
    assert codes == ["leeds", "main"]
