"""Locations as a resource (`main`, create and update, list and get, who may do what), stock
put at a named location (restocks, adjustments, receipts) and refused at an unknown or inactive
one, and the product's `locations`."""

from __future__ import annotations

from typing import Any

import pytest
from httpx import AsyncClient

from tests.support.api import OPS, assert_problem, error_fields, make_key, make_product, place
from tests.support.dates import days_ahead
from tests.support.locations import (
    assert_location_invariants,
    at,
    movements,
    put_location,
    restock,
    state,
    where,
)
from tests.support.orders import product

# --- the resource ------------------------------------------------------------------------------


async def test_main_exists_with_rank_100_and_active(client: AsyncClient) -> None:
    r = await client.get("/v1/locations/main", headers=OPS)
    assert r.status_code == 200, r.text
    main = r.json()
    assert (main["code"], main["rank"], main["active"]) == ("main", 100, True)
    assert main.keys() >= {"code", "name", "rank", "active", "created_at", "updated_at"}


async def test_a_caller_naming_no_location_works_at_main_unchanged(
    client: AsyncClient, database_url: str
) -> None:
    await make_product(client, "NOLOC", on_hand=10)
    placed = await place(client, [("NOLOC", 15)])
    line = placed["lines"][0]
    assert (line["allocated"], line["backordered"]) == (10, 5)
    assert where(line) == {"main": (10, 0)}
    refill = await restock(client, "NOLOC", 8)
    assert refill["location"] == "main"
    assert refill["location"] == "main"
    assert [a["quantity"] for a in refill["allocations"]] == [5]
    r = await client.post(
        f"/v1/orders/{placed['id']}/shipments",
        json={"lines": [{"line_id": line["id"], "quantity": 15}]},
        headers=OPS,
    )
    assert r.status_code == 201, r.text
    assert r.json()["location"] == "main"
    p = await product(client, "NOLOC")
    assert (p["on_hand"], p["allocated"], p["available"]) == (3, 0, 3)
    assert at(p) == {"main": (3, 0, 3)}
    assert {m["location"] for m in await movements(client, "NOLOC")} == {"main"}
    await assert_location_invariants(client, database_url)


async def test_put_creates_with_defaults_then_updates_keeping_fields_left_out(
    client: AsyncClient,
) -> None:
    created = await put_location(client, "leeds", name="Leeds DC")
    assert (created["code"], created["name"], created["rank"], created["active"]) == (
        "leeds",
        "Leeds DC",
        100,
        True,
    )
    updated = await put_location(client, "leeds", expect=200, rank=10)
    assert (updated["name"], updated["rank"], updated["active"]) == ("Leeds DC", 10, True)
    assert updated["created_at"] == created["created_at"]
    renamed = await put_location(client, "leeds", expect=200, name="Leeds North")
    assert (renamed["name"], renamed["rank"]) == ("Leeds North", 10)
    r = await client.get("/v1/locations/leeds", headers=OPS)
    assert r.json() == renamed
    closed = await put_location(client, "york", name="York store", rank=5, active=False)
    assert (closed["rank"], closed["active"]) == (5, False)


async def test_a_location_cannot_be_created_without_a_name(client: AsyncClient) -> None:
    r = await client.put("/v1/locations/leeds", json={"rank": 10}, headers=OPS)
    body = assert_problem(r, 422, "validation_error")
    assert "name" in error_fields(body)
    assert (await client.get("/v1/locations/leeds", headers=OPS)).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": None}, "name"),
        ({"rank": None}, "rank"),
        ({"active": None}, "active"),
        ({"name": "X", "rank": -1}, "rank"),
        ({"name": "X", "rank": 1001}, "rank"),
        ({"name": "X", "rank": "10"}, "rank"),
        ({"name": "X", "active": "yes"}, "active"),
        ({"name": "   "}, "name"),
        ({"name": "X", "colour": "red"}, "colour"),
    ],
)
async def test_bad_location_bodies_are_refused_naming_the_field(
    client: AsyncClient, body: dict[str, Any], field: str
) -> None:
    await put_location(client, "leeds", name="Leeds DC", rank=10)
    r = await client.put("/v1/locations/leeds", json=body, headers=OPS)
    assert field in error_fields(assert_problem(r, 422, "validation_error"))
    leeds = (await client.get("/v1/locations/leeds", headers=OPS)).json()
    assert (leeds["name"], leeds["rank"], leeds["active"]) == ("Leeds DC", 10, True)


@pytest.mark.parametrize("code", ["a b", "x" * 65, "caf%C3%A9", "le:eds"])
async def test_a_code_outside_the_sku_rule_is_refused(client: AsyncClient, code: str) -> None:
    r = await client.put(f"/v1/locations/{code}", json={"name": "X"}, headers=OPS)
    assert_problem(r, 422, "validation_error")


async def test_list_is_by_rank_then_code_and_pages_with_cursors(client: AsyncClient) -> None:
    for code, rank in [("b-site", 10), ("a-site", 10), ("z-site", 0), ("c-site", 500)]:
        await put_location(client, code, name=code, rank=rank)
    await put_location(client, "d-site", name="d", rank=100, active=False)
    expected = ["z-site", "a-site", "b-site", "d-site", "main", "c-site"]
    r = await client.get("/v1/locations", headers=OPS)
    assert [loc["code"] for loc in r.json()["data"]] == expected
    assert r.json()["next_cursor"] is None
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        r = await client.get("/v1/locations", params=params, headers=OPS)
        assert r.status_code == 200, r.text
        seen += [loc["code"] for loc in r.json()["data"]]
        pages += 1
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
        # A location inserted before the cursor's place does not shift the pages after it.
        await put_location(client, f"a{pages}", name="late", rank=0)
    assert seen == expected
    assert pages == 3


@pytest.mark.parametrize(
    "params", [{"limit": 0}, {"limit": 201}, {"limit": "x"}, {"cursor": "nope"}, {"rank": 1}]
)
async def test_bad_list_queries_are_refused(client: AsyncClient, params: dict[str, Any]) -> None:
    r = await client.get("/v1/locations", params=params, headers=OPS)
    assert_problem(r, 422, "validation_error")


async def test_an_unknown_location_in_a_path_is_not_found(client: AsyncClient) -> None:
    assert_problem(await client.get("/v1/locations/nowhere", headers=OPS), 404, "not_found")
    r = await client.get("/v1/locations/nowhere/pick-list", headers=OPS)
    assert_problem(r, 404, "not_found")


async def test_a_storefront_reads_locations_but_cannot_write_them(client: AsyncClient) -> None:
    shop = await make_key(client, "web-shop")
    await put_location(client, "leeds", name="Leeds DC", rank=10)
    r = await client.get("/v1/locations", headers=shop)
    assert [loc["code"] for loc in r.json()["data"]] == ["leeds", "main"]
    assert (await client.get("/v1/locations/leeds", headers=shop)).status_code == 200
    r = await client.put("/v1/locations/leeds", json={"rank": 1}, headers=shop)
    assert_problem(r, 403, "forbidden")
    r = await client.put("/v1/locations/shop", json={"name": "Shop"}, headers=shop)
    assert_problem(r, 403, "forbidden")
    assert_problem(await client.get("/v1/locations/main/pick-list", headers=shop), 403, "forbidden")
    assert (await client.get("/v1/locations/leeds", headers=OPS)).json()["rank"] == 10
    assert (await client.get("/v1/locations/shop", headers=OPS)).status_code == 404


# --- stock at a location -----------------------------------------------------------------------


async def test_restock_adjustment_and_receipt_land_at_the_named_location(
    client: AsyncClient, database_url: str
) -> None:
    await put_location(client, "leeds", name="Leeds DC", rank=10)
    await make_product(client, "AT-1")
    answer = await restock(client, "AT-1", 20, "leeds", reference="R-1")
    assert (answer["location"], answer["on_hand"], answer["available"]) == ("leeds", 20, 20)
    r = await client.post(
        "/v1/products/AT-1/adjustments", json={"delta": -3, "location": "leeds"}, headers=OPS
    )
    assert r.status_code == 201, r.text
    assert r.json()["location"] == "leeds"
    r = await client.post(
        "/v1/purchase-orders",
        json={"sku": "AT-1", "quantity": 7, "expected_date": days_ahead(10), "location": "leeds"},
        headers=OPS,
    )
    assert r.status_code == 201, r.text
    assert r.json()["location"] == "leeds"
    r = await client.post(
        f"/v1/purchase-orders/{r.json()['id']}/receive", json={"quantity": 7}, headers=OPS
    )
    assert r.status_code == 201, r.text
    assert r.json()["location"] == "leeds"
    await restock(client, "AT-1", 5)  # no location: main
    p = await product(client, "AT-1")
    assert at(p) == {"leeds": (24, 0, 24), "main": (5, 0, 5)}
    assert (p["on_hand"], p["available"]) == (29, 29)
    ledger = [(m["kind"], m["location"], m["quantity"]) for m in await movements(client, "AT-1")]
    assert ledger == [
        ("restock", "leeds", 20),
        ("adjustment", "leeds", -3),
        ("receipt", "leeds", 7),
        ("restock", "main", 5),
    ]
    await assert_location_invariants(client, database_url)


async def _po(client: AsyncClient, sku: str, location: str) -> str:
    body = {"sku": sku, "quantity": 5, "expected_date": days_ahead(10), "location": location}
    r = await client.post("/v1/purchase-orders", json=body, headers=OPS)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def test_unknown_and_inactive_locations_refuse_new_stock_and_write_nothing(
    client: AsyncClient, database_url: str
) -> None:
    await make_product(client, "REF-1", on_hand=4)
    await place(client, [("REF-1", 6)])  # two units wait: a wrong fill would show
    await put_location(client, "york", name="York", active=True)
    po_id = await _po(client, "REF-1", "york")
    await put_location(client, "york", expect=200, active=False)
    before = await state(client, "REF-1")
    refusals = [
        ("/v1/products/REF-1/restocks", {"quantity": 5, "location": "nowhere"}, 422),
        ("/v1/products/REF-1/restocks", {"quantity": 5, "location": "york"}, 409),
        ("/v1/products/REF-1/adjustments", {"delta": 5, "location": "nowhere"}, 422),
        ("/v1/products/REF-1/adjustments", {"delta": -1, "location": "nowhere"}, 422),
        ("/v1/products/REF-1/adjustments", {"delta": 5, "location": "york"}, 409),
        (f"/v1/purchase-orders/{po_id}/receive", {"quantity": 5}, 409),
    ]
    for path, body, status in refusals:
        r = await client.post(path, json=body, headers=OPS)
        code = "unknown_location" if status == 422 else "location_inactive"
        assert_problem(r, status, code)
    r = await client.post(
        "/v1/purchase-orders",
        json={"sku": "REF-1", "quantity": 5, "expected_date": days_ahead(9), "location": "nope"},
        headers=OPS,
    )
    assert_problem(r, 422, "unknown_location")
    assert await state(client, "REF-1") == before
    po = (await client.get(f"/v1/purchase-orders/{po_id}", headers=OPS)).json()
    assert (po["received"], po["status"]) == (0, "open")
    await assert_location_invariants(client, database_url)


async def test_units_may_be_counted_down_at_an_inactive_location(client: AsyncClient) -> None:
    await put_location(client, "york", name="York")
    await make_product(client, "DOWN-1")
    await restock(client, "DOWN-1", 6, "york")
    await put_location(client, "york", expect=200, active=False)
    r = await client.post(
        "/v1/products/DOWN-1/adjustments", json={"delta": -6, "location": "york"}, headers=OPS
    )
    assert r.status_code == 201, r.text
    assert at(await product(client, "DOWN-1")) == {"york": (0, 0, 0)}


async def test_a_count_below_what_is_allocated_at_the_location_is_refused(
    client: AsyncClient,
) -> None:
    await put_location(client, "leeds", name="Leeds", rank=10)
    await make_product(client, "STRAND-1", on_hand=10)  # main
    await restock(client, "STRAND-1", 4, "leeds")
    await place(client, [("STRAND-1", 4)])  # leeds covers it whole and ranks first
    r = await client.post(
        "/v1/products/STRAND-1/adjustments",
        json={"delta": -1, "location": "leeds"},
        headers=OPS,
    )
    assert_problem(r, 409, "would_strand_allocations")
    r = await client.post(
        "/v1/products/STRAND-1/adjustments",
        json={"delta": -10, "location": "main"},
        headers=OPS,
    )
    assert r.status_code == 201, r.text


# --- the product's locations -------------------------------------------------------------------


async def test_product_locations_list_every_location_that_moved_by_rank_then_code(
    client: AsyncClient, database_url: str
) -> None:
    p = await make_product(client, "LOC-1")
    assert p["locations"] == []
    await put_location(client, "leeds", name="Leeds", rank=10)
    await put_location(client, "bristol", name="Bristol", rank=10)
    await put_location(client, "unused", name="Unused", rank=0)
    await restock(client, "LOC-1", 3)
    await restock(client, "LOC-1", 5, "leeds")
    await restock(client, "LOC-1", 2, "bristol")
    p = await product(client, "LOC-1")
    assert [loc["location"] for loc in p["locations"]] == ["bristol", "leeds", "main"]
    assert p["locations"][0] == {
        "location": "bristol",
        "active": True,
        "on_hand": 2,
        "allocated": 0,
        "available": 2,
    }
    r = await client.post(
        "/v1/products/LOC-1/adjustments", json={"delta": -2, "location": "bristol"}, headers=OPS
    )
    assert r.status_code == 201, r.text
    p = await product(client, "LOC-1")
    assert at(p) == {"bristol": (0, 0, 0), "leeds": (5, 0, 5), "main": (3, 0, 3)}
    listed = (await client.get("/v1/products", headers=OPS)).json()["data"]
    assert listed[0]["locations"] == p["locations"]
    await assert_location_invariants(client, database_url)


async def test_available_leaves_out_inactive_locations(
    client: AsyncClient, database_url: str
) -> None:
    await put_location(client, "york", name="York")
    await make_product(client, "INACT-1", on_hand=3, reorder_point=5)
    await restock(client, "INACT-1", 10, "york")
    assert (await product(client, "INACT-1"))["status"] == "in_stock"
    await put_location(client, "york", expect=200, active=False)
    p = await product(client, "INACT-1")
    assert (p["on_hand"], p["allocated"], p["available"], p["status"]) == (13, 0, 3, "low_stock")
    assert at(p) == {"main": (3, 0, 3), "york": (10, 0, 0)}
    assert [loc["active"] for loc in p["locations"]] == [True, False]
    await assert_location_invariants(client, database_url)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/products/NULL-LOC/restocks", {"quantity": 1}),
        ("/v1/products/NULL-LOC/adjustments", {"delta": 1}),
        ("/v1/purchase-orders", {"sku": "NULL-LOC", "quantity": 1, "expected_date": "PO"}),
    ],
)
async def test_a_location_sent_as_null_is_refused_by_name(
    client: AsyncClient, path: str, body: dict[str, Any]
) -> None:
    """`location` may be left out (it is `main` then) but not sent as null: the schema says
    so, and a null that quietly meant `main` hid a client's bug."""
    await make_product(client, "NULL-LOC")
    if body.get("expected_date") == "PO":
        body["expected_date"] = days_ahead(10)
    r = await client.post(path, json={**body, "location": None}, headers=OPS)
    assert error_fields(assert_problem(r, 422, "validation_error")) == {"location"}
    assert (await product(client, "NULL-LOC"))["on_hand"] == 0
