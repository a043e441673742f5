"""GET /v1/backorders: the queue in the order it will be filled, with positions per SKU."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from httpx import AsyncClient

from tests.support.api import OPS, make_key, make_product, place
from tests.support.invariants import assert_invariants
from tests.support.orders import queue, restock


@pytest.fixture(autouse=True)
def _invariants_hold_after_each_test(client: AsyncClient, database_url: str) -> Iterator[None]:
    yield
    assert_invariants(database_url)


async def test_the_queue_lists_fifo_and_priority_skus_in_fill_order_with_positions(
    client: AsyncClient,
) -> None:
    await make_product(client, "F")
    await make_product(client, "Q", allocation_strategy="priority")
    f1 = await place(client, [("F", 3), ("Q", 1)], priority=2, customer_id="c-1")
    f2 = await place(client, [("F", 2)], priority=9, customer_id="c-2")
    q2 = await place(client, [("Q", 4)], priority=9, customer_id="c-3")
    q3 = await place(client, [("Q", 2)], priority=2, customer_id="c-4")
    rows = await queue(client)
    got = [(r["sku"], r["order_id"], r["quantity"], r["position"]) for r in rows]
    assert got == [
        ("F", f1["id"], 3, 1),
        ("F", f2["id"], 2, 2),
        ("Q", q2["id"], 4, 1),
        ("Q", f1["id"], 1, 2),
        ("Q", q3["id"], 2, 3),
    ]
    first = rows[0]
    assert first["line_id"] == f1["lines"][0]["id"]
    assert first["customer_id"] == "c-1"
    assert first["priority"] == 2
    assert first["created_at"] == f1["created_at"]
    assert "expected_date" in first

    # the queue is what a restock follows
    r = await restock(client, "Q", 5)
    assert [a["order_id"] for a in r["allocations"]] == [q2["id"], f1["id"]]
    rows = await queue(client, "Q")
    assert [(r["order_id"], r["quantity"], r["position"]) for r in rows] == [(q3["id"], 2, 1)]


async def test_a_partly_filled_head_shows_its_open_units(client: AsyncClient) -> None:
    await make_product(client, "F")
    a = await place(client, [("F", 5)])
    b = await place(client, [("F", 5)])
    await restock(client, "F", 3)
    rows = await queue(client, "F")
    assert [(r["order_id"], r["quantity"], r["position"]) for r in rows] == [
        (a["id"], 2, 1),
        (b["id"], 5, 2),
    ]


async def test_queue_pages_cover_every_line_once_across_skus(client: AsyncClient) -> None:
    await make_product(client, "F")
    await make_product(client, "Q", allocation_strategy="priority")
    for i in range(4):
        await place(client, [("F", 1), ("Q", 1)], priority=i % 3)
    whole = await queue(client)
    assert len(whole) == 8
    paged = await queue(client, limit=3)
    assert paged == whole
    per_sku = {sku: [r["position"] for r in whole if r["sku"] == sku] for sku in ("F", "Q")}
    assert per_sku == {"F": [1, 2, 3, 4], "Q": [1, 2, 3, 4]}
    assert [r["priority"] for r in whole if r["sku"] == "Q"] == [2, 1, 0, 0]
    filtered = await queue(client, "Q", limit=1)
    assert filtered == [r for r in whole if r["sku"] == "Q"]


async def test_the_queue_is_empty_when_nobody_waits(client: AsyncClient) -> None:
    await make_product(client, "F", on_hand=5)
    await place(client, [("F", 5)])
    r = await client.get("/v1/backorders", headers=OPS)
    assert r.status_code == 200
    assert r.json() == {"data": [], "next_cursor": None}


async def test_a_storefront_may_not_read_the_queue(client: AsyncClient) -> None:
    shop = await make_key(client, "shop")
    r = await client.get("/v1/backorders", headers=shop)
    assert r.status_code == 403
    assert r.json()["code"] == "forbidden"
    r = await client.get("/v1/backorders")
    assert r.status_code == 401


async def test_queue_list_parameters_are_validated(client: AsyncClient) -> None:
    for params in ({"limit": "0"}, {"limit": "201"}, {"cursor": "nope"}, {"sku": "bad sku"}):
        r = await client.get("/v1/backorders", params=params, headers=OPS)
        assert r.status_code == 422, (params, r.text)
