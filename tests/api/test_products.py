"""Products: create and update, live figures and status, lists, alternatives, restocks,
adjustments and the stock ledger."""

from __future__ import annotations

from typing import Any

import pytest
from httpx import AsyncClient, Response

from tests.support.api import OPS, make_product, place

SETTINGS_DEFAULTS = {
    "backorders_allowed": True,
    "backorder_limit": None,
    "allocation_strategy": "fifo",
    "discontinued": False,
    "expected_restock_date": None,
    "reorder_point": None,
    "safety_stock": None,
    "lead_time_days": None,
    "alternatives": [],
}
FULL = {
    "name": "Trail Runner 42",
    "backorders_allowed": False,
    "backorder_limit": 500,
    "allocation_strategy": "priority",
    "discontinued": False,
    "expected_restock_date": "2026-12-01",
    "reorder_point": 20,
    "safety_stock": 10,
    "lead_time_days": 14,
    "alternatives": ["TRAIL-43", "TRAIL-41"],
}


def assert_problem(r: Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert (body["status"], body["code"]) == (status, code)
    return body


async def get(client: AsyncClient, sku: str) -> dict[str, Any]:
    r = await client.get(f"/v1/products/{sku}", headers=OPS)
    assert r.status_code == 200, r.text
    product: dict[str, Any] = r.json()
    return product


async def put(client: AsyncClient, sku: str, body: dict[str, Any], status: int) -> dict[str, Any]:
    r = await client.put(f"/v1/products/{sku}", json=body, headers=OPS)
    assert r.status_code == status, r.text
    product: dict[str, Any] = r.json()
    return product


async def put_full(client: AsyncClient) -> dict[str, Any]:
    """TRAIL-42 created with every setting (its alternatives created first: they must exist)."""
    for sku in ("TRAIL-43", "TRAIL-41"):
        await put(client, sku, {"name": f"Trail {sku}"}, 201)
    return await put(client, "TRAIL-42", FULL, 201)


async def restock(client: AsyncClient, sku: str, quantity: int, **extra: Any) -> dict[str, Any]:
    r = await client.post(
        f"/v1/products/{sku}/restocks", json={"quantity": quantity, **extra}, headers=OPS
    )
    assert r.status_code == 201, r.text
    answer: dict[str, Any] = r.json()
    return answer


async def adjust(client: AsyncClient, sku: str, delta: int, **extra: Any) -> Response:
    return await client.post(
        f"/v1/products/{sku}/adjustments", json={"delta": delta, **extra}, headers=OPS
    )


# --- PUT ------------------------------------------------------------------------------------


async def test_put_creates_with_defaults_then_updates(client: AsyncClient) -> None:
    created = await put(client, "TRAIL-42", {"name": "Trail Runner 42"}, 201)
    assert created["sku"] == "TRAIL-42" and created["name"] == "Trail Runner 42"
    assert {k: created[k] for k in SETTINGS_DEFAULTS} == SETTINGS_DEFAULTS
    figures = ("on_hand", "allocated", "available", "backordered", "incoming")
    assert {k: created[k] for k in figures} == dict.fromkeys(figures, 0)
    assert created["status"] == "backorder"

    updated = await put(client, "TRAIL-42", {"name": "Trail Runner 42 v2"}, 200)
    assert updated["name"] == "Trail Runner 42 v2"
    assert await get(client, "TRAIL-42") == updated


async def test_put_takes_every_setting(client: AsyncClient) -> None:
    created = await put_full(client)
    assert {k: created[k] for k in FULL} == FULL


async def test_fields_left_out_keep_their_values(client: AsyncClient) -> None:
    await put_full(client)
    await restock(client, "TRAIL-42", 7)
    updated = await put(client, "TRAIL-42", {"lead_time_days": 21}, 200)
    assert {k: updated[k] for k in FULL} == {**FULL, "lead_time_days": 21}
    assert updated["on_hand"] == 7
    unchanged = await put(client, "TRAIL-42", {}, 200)
    assert {k: unchanged[k] for k in FULL} == {**FULL, "lead_time_days": 21}


async def test_null_clears_a_nullable_field(client: AsyncClient) -> None:
    await put_full(client)
    updated = await put(
        client,
        "TRAIL-42",
        {"backorder_limit": None, "expected_restock_date": None, "reorder_point": None},
        200,
    )
    assert updated["backorder_limit"] is None
    assert updated["expected_restock_date"] is None
    assert updated["reorder_point"] is None
    assert updated["safety_stock"] == FULL["safety_stock"]


async def test_a_lifted_backorder_limit_lets_orders_wait_again(client: AsyncClient) -> None:
    await make_product(client, "TRAIL-42", backorder_limit=5)
    await place(client, [("TRAIL-42", 5)])
    r = await client.post(
        "/v1/orders",
        json={"customer_id": "c-2", "lines": [{"sku": "TRAIL-42", "quantity": 1}]},
        headers=OPS,
    )
    assert_problem(r, 409, "backorder_limit_exceeded")
    await put(client, "TRAIL-42", {"backorder_limit": None}, 200)
    await place(client, [("TRAIL-42", 1)], customer_id="c-2")
    assert (await get(client, "TRAIL-42"))["backordered"] == 6


@pytest.mark.parametrize(
    "field", ["name", "backorders_allowed", "allocation_strategy", "discontinued", "alternatives"]
)
async def test_a_required_setting_cannot_be_null(client: AsyncClient, field: str) -> None:
    await put_full(client)
    r = await client.put("/v1/products/TRAIL-42", json={field: None}, headers=OPS)
    assert_problem(r, 422, "validation_error")
    assert (await get(client, "TRAIL-42"))[field] == FULL[field]


@pytest.mark.parametrize("body", [{}, {"backorders_allowed": True}, {"name": None}, {"name": ""}])
async def test_a_name_is_required_to_create(client: AsyncClient, body: dict[str, Any]) -> None:
    r = await client.put("/v1/products/TRAIL-42", json=body, headers=OPS)
    problem = assert_problem(r, 422, "validation_error")
    assert "name" in {e.get("field") for e in problem["errors"]}
    assert_problem(await client.get("/v1/products/TRAIL-42", headers=OPS), 404, "not_found")


@pytest.mark.parametrize("sku", ["A", "a.b_c-D", "9" * 64])
async def test_a_sku_may_use_letters_digits_dot_underscore_and_dash(
    client: AsyncClient, sku: str
) -> None:
    assert (await put(client, sku, {"name": "x"}, 201))["sku"] == sku
    assert (await get(client, sku))["sku"] == sku


@pytest.mark.parametrize(
    "path_sku",
    ["S" * 65, "SKU!", "SKU%20ONE", "SKU%2F1", "SKU/1", "caf%C3%A9", "SKU%00", "%20"],
)
async def test_an_invalid_sku_in_the_path_is_a_problem(client: AsyncClient, path_sku: str) -> None:
    for method, suffix, body in [
        ("PUT", "", {"name": "x"}),
        ("GET", "", None),
        ("GET", "/alternatives", None),
        ("GET", "/movements", None),
        ("POST", "/restocks", {"quantity": 1}),
        ("POST", "/adjustments", {"delta": 1}),
    ]:
        r = await client.request(method, f"/v1/products/{path_sku}{suffix}", json=body, headers=OPS)
        assert r.status_code in (404, 405, 422), (method, suffix, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    assert (await client.get("/v1/products", headers=OPS)).json()["data"] == []


async def test_an_unknown_product_is_not_found(client: AsyncClient) -> None:
    for method, suffix, body in [
        ("GET", "", None),
        ("GET", "/alternatives", None),
        ("GET", "/movements", None),
        ("POST", "/restocks", {"quantity": 1}),
        ("POST", "/adjustments", {"delta": 1}),
    ]:
        r = await client.request(method, f"/v1/products/NOPE{suffix}", json=body, headers=OPS)
        assert_problem(r, 404, "not_found")


# --- status ---------------------------------------------------------------------------------


async def status_of(client: AsyncClient, sku: str) -> str:
    status: str = (await get(client, sku))["status"]
    return status


async def test_status_follows_the_reorder_point(client: AsyncClient) -> None:
    await make_product(client, "SKU-1", on_hand=10, reorder_point=5)
    assert await status_of(client, "SKU-1") == "in_stock"  # 10 > 5
    await place(client, [("SKU-1", 4)])
    assert await status_of(client, "SKU-1") == "in_stock"  # 6 > 5
    await place(client, [("SKU-1", 1)])
    assert await status_of(client, "SKU-1") == "low_stock"  # 5, at the reorder point
    await place(client, [("SKU-1", 4)])
    assert await status_of(client, "SKU-1") == "low_stock"  # 1
    await place(client, [("SKU-1", 1)])
    assert await status_of(client, "SKU-1") == "backorder"  # 0, new orders will wait
    await put(client, "SKU-1", {"backorders_allowed": False}, 200)
    assert await status_of(client, "SKU-1") == "out_of_stock"  # 0, new orders are refused
    await put(client, "SKU-1", {"discontinued": True}, 200)
    assert await status_of(client, "SKU-1") == "discontinued"
    await put(client, "SKU-1", {"discontinued": False, "reorder_point": None}, 200)
    await restock(client, "SKU-1", 1)
    assert await status_of(client, "SKU-1") == "in_stock"  # 1 > 0 without a reorder point


async def test_changing_the_reorder_point_changes_the_status(client: AsyncClient) -> None:
    await make_product(client, "SKU-1", on_hand=10)
    assert await status_of(client, "SKU-1") == "in_stock"
    assert (await put(client, "SKU-1", {"reorder_point": 10}, 200))["status"] == "low_stock"
    assert (await put(client, "SKU-1", {"reorder_point": 9}, 200))["status"] == "in_stock"
    assert (await put(client, "SKU-1", {"reorder_point": 0}, 200))["status"] == "in_stock"


async def test_discontinued_wins_over_stock(client: AsyncClient) -> None:
    await make_product(client, "SKU-1", on_hand=10, discontinued=True)
    assert await status_of(client, "SKU-1") == "discontinued"


async def test_figures_add_up(client: AsyncClient) -> None:
    await make_product(client, "SKU-1", on_hand=80)
    await place(client, [("SKU-1", 100)])
    p = await get(client, "SKU-1")
    assert (p["on_hand"], p["allocated"], p["available"], p["backordered"]) == (80, 80, 0, 20)
    assert p["status"] == "backorder"


# --- lists ----------------------------------------------------------------------------------


async def test_products_list_by_sku_with_a_status_filter_and_pages(client: AsyncClient) -> None:
    await make_product(client, "C-IN", on_hand=10)
    await make_product(client, "A-IN", on_hand=10, reorder_point=2)
    await make_product(client, "B-LOW", on_hand=2, reorder_point=5)
    await make_product(client, "D-WAIT")
    await make_product(client, "E-OUT", backorders_allowed=False)
    await make_product(client, "F-GONE", on_hand=3, discontinued=True)
    await make_product(client, "G-IN", on_hand=1)

    everything = (await client.get("/v1/products", headers=OPS)).json()
    assert [p["sku"] for p in everything["data"]] == [
        "A-IN", "B-LOW", "C-IN", "D-WAIT", "E-OUT", "F-GONE", "G-IN",
    ]  # fmt: skip
    assert everything["next_cursor"] is None
    for p in everything["data"]:
        assert p == await get(client, p["sku"])

    expected = {
        "in_stock": ["A-IN", "C-IN", "G-IN"],
        "low_stock": ["B-LOW"],
        "backorder": ["D-WAIT"],
        "out_of_stock": ["E-OUT"],
        "discontinued": ["F-GONE"],
    }
    for status, skus in expected.items():
        r = await client.get("/v1/products", params={"status": status}, headers=OPS)
        assert [p["sku"] for p in r.json()["data"]] == skus, status
        assert all(p["status"] == status for p in r.json()["data"])

    pages, cursor = [], None
    while True:
        params: dict[str, Any] = {"status": "in_stock", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        body = (await client.get("/v1/products", params=params, headers=OPS)).json()
        pages.append([p["sku"] for p in body["data"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == [["A-IN", "C-IN"], ["G-IN"]]

    r = await client.get("/v1/products", params={"status": "sold_out"}, headers=OPS)
    assert_problem(r, 422, "validation_error")


async def test_a_cursor_survives_inserts_before_it(client: AsyncClient) -> None:
    for sku in ("B", "D", "F"):
        await make_product(client, sku)
    first = (await client.get("/v1/products", params={"limit": 2}, headers=OPS)).json()
    assert [p["sku"] for p in first["data"]] == ["B", "D"]
    await make_product(client, "A")
    await make_product(client, "C")
    await make_product(client, "E")
    rest = (
        await client.get(
            "/v1/products", params={"limit": 10, "cursor": first["next_cursor"]}, headers=OPS
        )
    ).json()
    assert [p["sku"] for p in rest["data"]] == ["E", "F"]


# --- alternatives ---------------------------------------------------------------------------


async def test_alternatives_with_stock_most_available_first(client: AsyncClient) -> None:
    await make_product(client, "ALT-SOME", on_hand=5)
    await make_product(client, "ALT-MANY", on_hand=9)
    await make_product(client, "ALT-NONE")
    await make_product(client, "ALT-TAKEN", on_hand=4)
    await place(client, [("ALT-TAKEN", 4)])
    await make_product(client, "UNLISTED", on_hand=100)
    await make_product(
        client,
        "MAIN",
        alternatives=["ALT-NONE", "ALT-SOME", "ALT-TAKEN", "ALT-MANY"],
    )

    r = await client.get("/v1/products/MAIN/alternatives", headers=OPS)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"data", "next_cursor"} and body["next_cursor"] is None
    assert [(p["sku"], p["available"]) for p in body["data"]] == [("ALT-MANY", 9), ("ALT-SOME", 5)]
    assert body["data"][0] == await get(client, "ALT-MANY")


async def test_no_alternatives_is_an_empty_list(client: AsyncClient) -> None:
    await make_product(client, "MAIN")
    r = await client.get("/v1/products/MAIN/alternatives", headers=OPS)
    assert r.json() == {"data": [], "next_cursor": None}


# --- restocks -------------------------------------------------------------------------------


async def test_a_restock_answers_what_it_did(client: AsyncClient) -> None:
    await make_product(client, "SKU-1")
    answer = await restock(client, "SKU-1", 50, reference="PO-1234")
    assert {"id", "sku", "quantity", "allocations", "available"} <= answer.keys()
    assert (answer["sku"], answer["quantity"], answer["allocations"], answer["available"]) == (
        "SKU-1",
        50,
        [],
        50,
    )
    assert isinstance(answer["id"], str) and answer["id"]
    p = await get(client, "SKU-1")
    assert (p["on_hand"], p["available"]) == (50, 50)


async def test_a_restock_fills_the_queue_head_first(client: AsyncClient) -> None:
    await make_product(client, "SKU-1")
    first = await place(client, [("SKU-1", 3)], customer_id="c-1")
    second = await place(client, [("SKU-1", 4)], customer_id="c-2")
    answer = await restock(client, "SKU-1", 5)
    assert answer["allocations"] == [
        {"order_id": first["id"], "line_id": first["lines"][0]["id"], "quantity": 3},
        {"order_id": second["id"], "line_id": second["lines"][0]["id"], "quantity": 2},
    ]
    assert answer["available"] == 0
    p = await get(client, "SKU-1")
    assert (p["on_hand"], p["allocated"], p["backordered"]) == (5, 5, 2)


async def test_reference_is_optional_on_restocks(client: AsyncClient) -> None:
    await make_product(client, "SKU-1")
    await restock(client, "SKU-1", 1)
    await restock(client, "SKU-1", 1, reference=None)


# --- adjustments ----------------------------------------------------------------------------


async def test_a_negative_adjustment_may_take_what_is_available(client: AsyncClient) -> None:
    await make_product(client, "SKU-1", on_hand=10)
    await place(client, [("SKU-1", 4)])
    r = await adjust(client, "SKU-1", -6, reason="cycle count")
    assert r.status_code == 201, r.text
    assert (r.json()["available"], r.json()["allocations"]) == (0, [])
    p = await get(client, "SKU-1")
    assert (p["on_hand"], p["allocated"], p["available"]) == (4, 4, 0)


@pytest.mark.parametrize(("allocated", "delta"), [(4, -7), (4, -10), (0, -11), (4, -1_000_000)])
async def test_a_negative_adjustment_may_not_strand_allocations(
    client: AsyncClient, allocated: int, delta: int
) -> None:
    await make_product(client, "SKU-1", on_hand=10)
    if allocated:
        await place(client, [("SKU-1", allocated)])
    before = await get(client, "SKU-1")
    r = await adjust(client, "SKU-1", delta, reason="damaged")
    assert_problem(r, 409, "would_strand_allocations")
    assert await get(client, "SKU-1") == before
    moves = (await client.get("/v1/products/SKU-1/movements", headers=OPS)).json()["data"]
    assert len(moves) == 1


async def test_a_negative_adjustment_on_an_empty_shelf_is_refused(client: AsyncClient) -> None:
    await make_product(client, "SKU-1")
    assert_problem(await adjust(client, "SKU-1", -1), 409, "would_strand_allocations")


async def test_a_zero_adjustment_is_a_validation_error(client: AsyncClient) -> None:
    await make_product(client, "SKU-1", on_hand=3)
    assert_problem(await adjust(client, "SKU-1", 0), 422, "validation_error")


async def test_a_positive_adjustment_fills_the_queue(client: AsyncClient) -> None:
    await make_product(client, "SKU-1")
    order = await place(client, [("SKU-1", 3)])
    r = await adjust(client, "SKU-1", 5, reason="found in aisle 4")
    assert r.status_code == 201, r.text
    assert r.json()["allocations"] == [
        {"order_id": order["id"], "line_id": order["lines"][0]["id"], "quantity": 3}
    ]
    assert r.json()["available"] == 2


# --- the ledger -----------------------------------------------------------------------------


async def test_the_ledger_sums_to_on_hand(client: AsyncClient) -> None:
    await make_product(client, "SKU-1")
    await restock(client, "SKU-1", 50, reference="PO-1")
    assert (await adjust(client, "SKU-1", -3, reason="cycle count")).status_code == 201
    assert (await adjust(client, "SKU-1", 2, reason="found")).status_code == 201
    order = await place(client, [("SKU-1", 20)])
    r = await client.post(
        f"/v1/orders/{order['id']}/shipments",
        json={"lines": [{"line_id": order["lines"][0]["id"], "quantity": 15}]},
        headers=OPS,
    )
    assert r.status_code == 201, r.text

    moves = (await client.get("/v1/products/SKU-1/movements", headers=OPS)).json()
    assert moves["next_cursor"] is None
    assert [(m["kind"], m["quantity"]) for m in moves["data"]] == [
        ("restock", 50),
        ("adjustment", -3),
        ("adjustment", 2),
        ("shipment", -15),
    ]
    assert moves["data"][0]["reference"] == "PO-1"
    for m in moves["data"]:
        assert {"kind", "quantity", "reference", "created_at"} <= m.keys()
    created = [m["created_at"] for m in moves["data"]]
    assert created == sorted(created)
    p = await get(client, "SKU-1")
    assert p["on_hand"] == sum(m["quantity"] for m in moves["data"]) == 34
    assert p["allocated"] == 5


async def test_the_ledger_pages_oldest_first(client: AsyncClient) -> None:
    await make_product(client, "SKU-1")
    for quantity in range(1, 6):
        await restock(client, "SKU-1", quantity)
    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = (await client.get("/v1/products/SKU-1/movements", params=params, headers=OPS)).json()
        seen += [m["quantity"] for m in body["data"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [1, 2, 3, 4, 5]
