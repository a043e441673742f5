"""Shipments at a location, and pick lists: what to ship from where."""

from __future__ import annotations

from typing import Any

from httpx import AsyncClient, Response

from tests.support.api import OPS, assert_problem, error_fields, make_product, place
from tests.support.locations import (
    assert_location_invariants,
    at,
    events,
    movements,
    put_location,
    restock,
    state,
    where,
)
from tests.support.orders import get_order as order
from tests.support.orders import product


async def ship(
    client: AsyncClient, placed: dict[str, Any], units: list[int], location: str | None = None
) -> Response:
    body: dict[str, Any] = {
        "lines": [
            {"line_id": line["id"], "quantity": n}
            for line, n in zip(placed["lines"], units, strict=True)
            if n
        ]
    }
    if location is not None:
        body["location"] = location
    return await client.post(f"/v1/orders/{placed['id']}/shipments", json=body, headers=OPS)


async def split_order(client: AsyncClient, sku: str) -> dict[str, Any]:
    """An order of 5 allocated 2 at leeds (rank 10) and 3 at main."""
    await put_location(client, "leeds", name="Leeds", rank=10)
    await make_product(client, sku, on_hand=3)
    await restock(client, sku, 2, "leeds")
    placed = await place(client, [(sku, 5)])
    assert where(placed["lines"][0]) == {"leeds": (2, 0), "main": (3, 0)}
    return placed


# --- shipments ---------------------------------------------------------------------------------


async def test_location_may_be_left_out_when_all_units_are_at_one(
    client: AsyncClient, database_url: str
) -> None:
    await put_location(client, "leeds", name="Leeds", rank=10)
    await make_product(client, "SH-1")
    await restock(client, "SH-1", 4, "leeds")
    placed = await place(client, [("SH-1", 4)])
    r = await ship(client, placed, [4])
    assert r.status_code == 201, r.text
    shipment = r.json()
    assert shipment["location"] == "leeds"
    assert where(shipment["order"]["lines"][0]) == {"leeds": (0, 4)}
    last = (await movements(client, "SH-1"))[-1]
    assert (last["kind"], last["location"], last["quantity"]) == ("shipment", "leeds", -4)
    shipped = (await events(client, "order.shipped"))[-1]["data"]
    assert (shipped["order_id"], shipped["location"]) == (placed["id"], "leeds")
    assert at(await product(client, "SH-1")) == {"leeds": (0, 0, 0)}
    await assert_location_invariants(client, database_url)


async def test_units_at_two_locations_need_the_location_named(
    client: AsyncClient, database_url: str
) -> None:
    placed = await split_order(client, "SH-2")
    before = await state(client, "SH-2")
    r = await ship(client, placed, [1])
    assert "location" in error_fields(assert_problem(r, 422, "validation_error"))
    assert await state(client, "SH-2") == before
    await assert_location_invariants(client, database_url)


async def test_lines_held_at_different_locations_need_the_location_named(
    client: AsyncClient,
) -> None:
    await put_location(client, "leeds", name="Leeds", rank=10)
    await make_product(client, "SH-3A", on_hand=2)
    await make_product(client, "SH-3B")
    await restock(client, "SH-3B", 2, "leeds")
    placed = await place(client, [("SH-3A", 2), ("SH-3B", 2)])
    r = await ship(client, placed, [2, 2])
    assert "location" in error_fields(assert_problem(r, 422, "validation_error"))
    # Each line alone is at one location: that one.
    r = await ship(client, placed, [2, 0])
    assert (r.status_code, r.json()["location"]) == (201, "main")
    r = await ship(client, placed, [0, 2])
    assert (r.status_code, r.json()["location"]) == (201, "leeds")


async def test_an_order_at_two_locations_ships_in_two_shipments(
    client: AsyncClient, database_url: str
) -> None:
    placed = await split_order(client, "SH-4")
    r = await ship(client, placed, [3], "leeds")
    assert_problem(r, 409, "not_allocated")
    before = await state(client, "SH-4")
    r = await ship(client, placed, [4], "main")
    assert_problem(r, 409, "not_allocated")
    assert await state(client, "SH-4") == before
    first = await ship(client, placed, [2], "leeds")
    assert first.status_code == 201, first.text
    assert first.json()["order"]["status"] == "partially_shipped"
    # Now all that is left is at main: no need to name it.
    second = await ship(client, placed, [3])
    assert (second.status_code, second.json()["location"]) == (201, "main")
    line = (await order(client, placed["id"]))["lines"][0]
    assert (line["shipped"], line["status"]) == (5, "shipped")
    assert where(line) == {"leeds": (0, 2), "main": (0, 3)}
    shipped = [(e["data"]["location"]) for e in await events(client, "order.shipped")]
    assert shipped == ["leeds", "main"]
    ledger = [(m["location"], m["quantity"]) for m in await movements(client, "SH-4")]
    assert ledger[-2:] == [("leeds", -2), ("main", -3)]
    await assert_location_invariants(client, database_url)


async def test_a_shipment_at_an_unknown_location_is_refused(client: AsyncClient) -> None:
    placed = await split_order(client, "SH-5")
    before = await state(client, "SH-5")
    assert_problem(await ship(client, placed, [1], "nowhere"), 422, "unknown_location")
    assert_problem(await ship(client, placed, [1], "a b"), 422, "validation_error")
    assert await state(client, "SH-5") == before


async def test_a_location_holding_none_of_the_line_is_not_allocated(client: AsyncClient) -> None:
    placed = await split_order(client, "SH-6")
    await put_location(client, "york", name="York")
    assert_problem(await ship(client, placed, [1], "york"), 409, "not_allocated")


# --- pick lists --------------------------------------------------------------------------------


async def picks(client: AsyncClient, code: str, **params: Any) -> dict[str, Any]:
    r = await client.get(f"/v1/locations/{code}/pick-list", params=params, headers=OPS)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def rows(page: dict[str, Any]) -> list[tuple[str, int]]:
    return [(p["customer_id"], p["quantity"]) for p in page["data"]]


async def test_a_pick_list_shows_ready_lines_by_priority_then_age(
    client: AsyncClient, database_url: str
) -> None:
    await put_location(client, "leeds", name="Leeds", rank=10)
    await make_product(client, "PK-1")
    await make_product(client, "PK-2")
    await restock(client, "PK-1", 20, "leeds")
    await restock(client, "PK-2", 1, "leeds")
    await place(client, [("PK-1", 2)], customer_id="old-p0")
    await place(client, [("PK-1", 3)], customer_id="new-p5", priority=5)
    await place(client, [("PK-1", 1)], customer_id="mid-p0")
    # Not ready: a `complete` order still waiting for a unit.
    await place(client, [("PK-1", 1), ("PK-2", 2)], customer_id="incomplete",
                ship_policy="complete")  # fmt: skip
    await place(client, [("PK-1", 4)], customer_id="top-p9", priority=9)
    page = await picks(client, "leeds")
    assert rows(page) == [("top-p9", 4), ("new-p5", 3), ("old-p0", 2), ("mid-p0", 1)]
    assert page["next_cursor"] is None
    first = page["data"][0]
    assert first.keys() >= {
        "order_id", "line_id", "sku", "customer_id", "quantity", "priority", "created_at",
    }  # fmt: skip
    assert (first["sku"], first["priority"]) == ("PK-1", 9)
    assert (await picks(client, "main"))["data"] == []
    await assert_location_invariants(client, database_url)


async def test_a_pick_list_pages_with_cursors(client: AsyncClient) -> None:
    await make_product(client, "PK-3", on_hand=10)
    for i in range(5):
        await place(client, [("PK-3", 1)], customer_id=f"c{i}", priority=i % 2)
    expected = ["c1", "c3", "c0", "c2", "c4"]
    seen: list[str] = []
    cursor = None
    while True:
        page = await picks(client, "main", limit=2, **({"cursor": cursor} if cursor else {}))
        seen += [p["customer_id"] for p in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == expected
    for params in ({"limit": 0}, {"cursor": "bad"}, {"sku": "PK-3"}):
        r = await client.get("/v1/locations/main/pick-list", params=params, headers=OPS)
        assert_problem(r, 422, "validation_error")


async def test_a_split_line_shows_its_part_on_each_pick_list(client: AsyncClient) -> None:
    placed = await split_order(client, "PK-4")
    assert [(p["line_id"], p["quantity"]) for p in (await picks(client, "leeds"))["data"]] == [
        (placed["lines"][0]["id"], 2)
    ]
    assert [p["quantity"] for p in (await picks(client, "main"))["data"]] == [3]
    r = await ship(client, placed, [2], "leeds")
    assert r.status_code == 201, r.text
    assert (await picks(client, "leeds"))["data"] == []
    assert [p["quantity"] for p in (await picks(client, "main"))["data"]] == [3]


async def test_a_partly_shipped_line_shows_what_is_left_to_pick(client: AsyncClient) -> None:
    await make_product(client, "PK-5", on_hand=6)
    placed = await place(client, [("PK-5", 6)])
    assert (await ship(client, placed, [4])).status_code == 201
    assert rows(await picks(client, "main")) == [("c-1", 2)]
