"""POST /v1/transfers: unallocated units from one location to another, two ledger rows, the
queue filled at `to`, refusals that change nothing, idempotent replays."""

from __future__ import annotations

from typing import Any

import pytest
from httpx import AsyncClient

from tests.support.api import OPS, assert_problem, error_fields, make_key, make_product, place
from tests.support.locations import (
    assert_location_invariants,
    at,
    movements,
    put_location,
    restock,
    state,
    where,
)
from tests.support.orders import get_order as order
from tests.support.orders import product


async def transfer(client: AsyncClient, expect: int = 201, **body: Any) -> dict[str, Any]:
    r = await client.post("/v1/transfers", json=body, headers=OPS)
    assert r.status_code == expect, r.text
    out: dict[str, Any] = r.json()
    return out


async def two_sites(client: AsyncClient, sku: str, main: int = 10) -> None:
    await put_location(client, "leeds", name="Leeds", rank=10)
    await make_product(client, sku, on_hand=main)


async def test_a_transfer_moves_units_and_writes_two_ledger_rows(
    client: AsyncClient, database_url: str
) -> None:
    await two_sites(client, "TR-1")
    moved = await transfer(
        client, sku="TR-1", quantity=4, reference="rebalance", **{"from": "main", "to": "leeds"}
    )
    assert moved.keys() >= {"id", "sku", "from", "to", "quantity", "allocations"}
    assert (moved["sku"], moved["from"], moved["to"], moved["quantity"]) == (
        "TR-1",
        "main",
        "leeds",
        4,
    )
    assert moved["allocations"] == []
    assert (moved["on_hand"], moved["available"]) == (10, 10)
    p = await product(client, "TR-1")
    assert at(p) == {"leeds": (4, 0, 4), "main": (6, 0, 6)}
    assert (p["on_hand"], p["available"]) == (10, 10)
    rows = [m for m in await movements(client, "TR-1") if m["kind"] == "transfer"]
    assert [(m["location"], m["quantity"], m["reference"]) for m in rows] == [
        ("main", -4, "rebalance"),
        ("leeds", 4, "rebalance"),
    ]
    assert {m["transfer_id"] for m in rows} == {moved["id"]}
    await assert_location_invariants(client, database_url)


async def test_only_unallocated_units_can_leave(client: AsyncClient, database_url: str) -> None:
    await two_sites(client, "TR-2", main=5)
    await place(client, [("TR-2", 3)])  # 3 of main's 5 allocated
    before = await state(client, "TR-2")
    r = await client.post(
        "/v1/transfers",
        json={"sku": "TR-2", "from": "main", "to": "leeds", "quantity": 3},
        headers=OPS,
    )
    assert_problem(r, 409, "insufficient_stock")
    assert await state(client, "TR-2") == before
    await transfer(client, sku="TR-2", quantity=2, **{"from": "main", "to": "leeds"})
    assert at(await product(client, "TR-2")) == {"leeds": (2, 0, 2), "main": (3, 3, 0)}
    await assert_location_invariants(client, database_url)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"from": "main", "to": "main"}, 422, "validation_error"),
        ({"from": "nowhere", "to": "leeds"}, 422, "unknown_location"),
        ({"from": "main", "to": "nowhere"}, 422, "unknown_location"),
        ({"from": "main", "to": "york"}, 409, "location_inactive"),
        ({"from": "main", "to": "leeds", "sku": "NO-SUCH"}, 422, "unknown_sku"),
        ({"from": "main", "to": "leeds", "quantity": 0}, 422, "validation_error"),
        ({"from": "main", "to": "leeds", "quantity": 11}, 409, "insufficient_stock"),
    ],
)
async def test_refused_transfers_change_nothing(
    client: AsyncClient, body: dict[str, Any], status: int, code: str
) -> None:
    await two_sites(client, "TR-3")
    await put_location(client, "york", name="York", active=False)
    before = await state(client, "TR-3")
    r = await client.post("/v1/transfers", json={"sku": "TR-3", "quantity": 2, **body}, headers=OPS)
    assert_problem(r, status, code)
    assert await state(client, "TR-3") == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"to": "leeds", "quantity": 1}, "from"),
        ({"from_": "main", "to": "leeds", "quantity": 1}, "from_"),
        ({"from": "main", "quantity": 1}, "to"),
        ({"from": "main", "to": "leeds"}, "quantity"),
        ({"from": "main", "to": "leeds", "quantity": 1, "note": "x"}, "note"),
        ({"from": None, "to": "leeds", "quantity": 1}, "from"),
    ],
)
async def test_bad_transfer_bodies_name_the_field(
    client: AsyncClient, body: dict[str, Any], field: str
) -> None:
    await two_sites(client, "TR-4")
    r = await client.post("/v1/transfers", json={"sku": "TR-4", **body}, headers=OPS)
    assert field in error_fields(assert_problem(r, 422, "validation_error"))


async def test_units_may_leave_an_inactive_location(client: AsyncClient, database_url: str) -> None:
    await two_sites(client, "TR-5", main=0)
    await put_location(client, "york", name="York")
    await restock(client, "TR-5", 6, "york")
    await put_location(client, "york", expect=200, active=False)
    assert (await product(client, "TR-5"))["available"] == 0
    await transfer(client, sku="TR-5", quantity=6, **{"from": "york", "to": "leeds"})
    p = await product(client, "TR-5")
    assert at(p) == {"leeds": (6, 0, 6), "york": (0, 0, 0)}
    assert p["available"] == 6
    await assert_location_invariants(client, database_url)


async def test_units_arriving_at_an_active_location_fill_the_queue_there(
    client: AsyncClient, database_url: str
) -> None:
    await two_sites(client, "TR-6", main=0)
    await put_location(client, "york", name="York")
    await restock(client, "TR-6", 10, "york")
    await put_location(client, "york", expect=200, active=False)
    first = await place(client, [("TR-6", 3)])
    second = await place(client, [("TR-6", 5)])
    moved = await transfer(client, sku="TR-6", quantity=7, **{"from": "york", "to": "leeds"})
    # All of it allocated where it arrived (`to`), as the orders show.
    assert [(a["order_id"], a["quantity"]) for a in moved["allocations"]] == [
        (first["id"], 3),
        (second["id"], 4),
    ]
    assert (moved["allocated_units"], moved["backordered"], moved["available"]) == (7, 1, 0)
    line = (await order(client, second["id"]))["lines"][0]
    assert (where(line), line["backordered"]) == ({"leeds": (4, 0)}, 1)
    await assert_location_invariants(client, database_url)


async def test_a_transfer_with_an_idempotency_key_happens_once(client: AsyncClient) -> None:
    await two_sites(client, "TR-7")
    body = {"sku": "TR-7", "from": "main", "to": "leeds", "quantity": 2}
    key = {**OPS, "Idempotency-Key": "move-1"}
    first = await client.post("/v1/transfers", json=body, headers=key)
    assert first.status_code == 201, first.text
    again = await client.post("/v1/transfers", json=body, headers=key)
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert at(await product(client, "TR-7")) == {"leeds": (2, 0, 2), "main": (8, 0, 8)}
    assert len([m for m in await movements(client, "TR-7") if m["kind"] == "transfer"]) == 2
    other = await client.post("/v1/transfers", json={**body, "quantity": 3}, headers=key)
    assert_problem(other, 422, "idempotency_key_reused")
    # A refusal is kept under its key too, and replayed.
    refused_key = {**OPS, "Idempotency-Key": "move-2"}
    too_many = {**body, "quantity": 50}
    r1 = await client.post("/v1/transfers", json=too_many, headers=refused_key)
    assert_problem(r1, 409, "insufficient_stock")
    r2 = await client.post("/v1/transfers", json=too_many, headers=refused_key)
    assert (r2.status_code, r2.headers["idempotent-replayed"]) == (409, "true")


async def test_a_storefront_cannot_transfer(client: AsyncClient) -> None:
    await two_sites(client, "TR-8")
    shop = await make_key(client, "web-shop")
    r = await client.post(
        "/v1/transfers",
        json={"sku": "TR-8", "from": "main", "to": "leeds", "quantity": 1},
        headers=shop,
    )
    assert_problem(r, 403, "forbidden")
    assert at(await product(client, "TR-8")) == {"main": (10, 0, 10)}
