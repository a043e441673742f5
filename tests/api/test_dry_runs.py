"""`?dry_run=true`: every call that moves stock or orders answers 200 with what it would do now
(`dry_run`, the orders it would change, the promise dates it would move) and writes nothing:
no ledger row, no event, no counter, no idempotency key. Each dry run is checked against the
real call made right after it: the same body (ids of new records aside), and `orders` and
`expected_dates` exactly as the real call then changes the orders."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from httpx import AsyncClient, Response

from tests.support.api import (
    OPS,
    all_pages,
    assert_problem,
    error_fields,
    make_key,
    make_product,
    place,
)
from tests.support.dates import days_ahead
from tests.support.invariants import assert_invariants
from tests.support.locations import movements, put_location, restock, state
from tests.support.orders import product

DRY = {"dry_run": "true"}
DRY_FIELDS = ("dry_run", "orders", "expected_dates")
LATER = days_ahead(300)  # the product's own restock date: every waiting line's promise


@dataclass
class Call:
    """One POST, made as a dry run and for real; `status` (and `code`) is the real answer's."""

    path: str
    body: dict[str, Any] | None
    sku: str = "DR"
    creates: bool = True  # it makes a record whose `id` a dry run shows as null
    status: int = 201
    code: str | None = None
    headers: dict[str, str] = field(default_factory=lambda: OPS)


async def post(client: AsyncClient, call: Call, *, dry: bool = False) -> Response:
    return await client.post(
        call.path, json=call.body, params=DRY if dry else None, headers=call.headers
    )


async def all_orders(client: AsyncClient) -> dict[str, dict[str, Any]]:
    """Every order as ops sees it, by id."""
    return {o["id"]: o for o in await all_pages(client, "/v1/orders", limit=200)}


def _looks(order: dict[str, Any]) -> tuple[Any, ...]:
    """What a change of which puts an order in a dry run's `orders`."""
    units = [
        (x["allocated"], x["backordered"], x["shipped"], x["cancelled"]) for x in order["lines"]
    ]
    return order["status"], order["ready_to_ship"], units


def foretold(
    before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The `orders` and `expected_dates` a dry run must have shown, read off the orders before
    and after the real call: orders whose status, `ready_to_ship` or line units changed (as
    they are after), and waiting lines whose `expected_date` changed."""
    orders, dates = [], []
    for order_id, old in before.items():
        new = after[order_id]
        if _looks(old) != _looks(new):
            status, ready = new["status"], new["ready_to_ship"]
            orders.append({"order_id": order_id, "status": status, "ready_to_ship": ready})
        now = {line["id"]: line["expected_date"] for line in new["lines"]}
        for line in old["lines"]:
            was, will = line["expected_date"], now[line["id"]]
            if line["backordered"] > 0 and was != will:
                dates.append({"line_id": line["id"], "before": was, "after": will})
    return _sorted(orders, dates)


def shown(dry: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A dry run's `orders` and `expected_dates` (the contract sets no order for them)."""
    return _sorted(dry["orders"], dry["expected_dates"])


def _sorted(
    orders: list[dict[str, Any]], dates: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return sorted(orders, key=lambda o: o["order_id"]), sorted(dates, key=lambda d: d["line_id"])


def comparable(body: dict[str, Any]) -> Any:
    """An answer without what a dry run and the real call may not share: the new record's id,
    timestamps, and the dry run's own fields."""
    return _timeless({k: v for k, v in body.items() if k not in (*DRY_FIELDS, "id")})


def _timeless(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _timeless(v) for k, v in value.items() if k not in ("created_at", "updated_at")}
    if isinstance(value, list):
        return [_timeless(v) for v in value]
    return value


async def waiting_product(client: AsyncClient, on_hand: int = 0) -> dict[str, Any]:
    return await make_product(client, "DR", on_hand=on_hand, expected_restock_date=LATER)


async def create_po(client: AsyncClient, quantity: int, expected_date: str) -> dict[str, Any]:
    body = {"sku": "DR", "quantity": quantity, "expected_date": expected_date}
    r = await client.post("/v1/purchase-orders", json=body, headers=OPS)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


# --- the calls, each on a SKU with something for it to do --------------------------------------


async def a_restock(client: AsyncClient) -> Call:
    await waiting_product(client)
    await place(client, [("DR", 3)])
    await place(client, [("DR", 5)])
    return Call("/v1/products/DR/restocks", {"quantity": 5, "reference": "PO-9"})


async def a_positive_adjustment(client: AsyncClient) -> Call:
    await a_restock(client)
    return Call("/v1/products/DR/adjustments", {"delta": 5, "reason": "found"})


async def a_negative_adjustment(client: AsyncClient) -> Call:
    await waiting_product(client, on_hand=5)
    await place(client, [("DR", 2)])
    return Call("/v1/products/DR/adjustments", {"delta": -2, "reason": "damaged"})


async def a_receipt(client: AsyncClient) -> Call:
    await a_restock(client)
    po = await create_po(client, 10, days_ahead(10))
    return Call(f"/v1/purchase-orders/{po['id']}/receive", {"quantity": 6})


async def a_transfer(client: AsyncClient) -> Call:
    await put_location(client, "leeds", name="Leeds", rank=10)
    await put_location(client, "york", name="York")
    await waiting_product(client)
    await restock(client, "DR", 10, "york")
    await put_location(client, "york", expect=200, active=False)
    await place(client, [("DR", 3)])
    await place(client, [("DR", 5)])
    return Call("/v1/transfers", {"sku": "DR", "from": "york", "to": "leeds", "quantity": 7})


async def held_then_waiting(client: AsyncClient) -> list[dict[str, Any]]:
    """5 units all held by one order, two more (of 3 and 4 units) waiting behind it."""
    await waiting_product(client, on_hand=5)
    return [await place(client, [("DR", n)]) for n in (5, 3, 4)]


async def an_order_cancel(client: AsyncClient) -> Call:
    holder = (await held_then_waiting(client))[0]
    return Call(f"/v1/orders/{holder['id']}/cancel", None, creates=False, status=200)


async def a_line_cancel(client: AsyncClient) -> Call:
    holder = (await held_then_waiting(client))[0]
    path = f"/v1/orders/{holder['id']}/lines/{holder['lines'][0]['id']}/cancel"
    return Call(path, {"quantity": 4}, creates=False, status=200)


async def a_shipment(client: AsyncClient) -> Call:
    await waiting_product(client, on_hand=5)
    order = await place(client, [("DR", 8)])
    body = {"lines": [{"line_id": order["lines"][0]["id"], "quantity": 3}]}
    return Call(f"/v1/orders/{order['id']}/shipments", body)


CALLS: dict[str, Callable[[AsyncClient], Awaitable[Call]]] = {
    "restock": a_restock,
    "positive-adjustment": a_positive_adjustment,
    "negative-adjustment": a_negative_adjustment,
    "receipt": a_receipt,
    "transfer": a_transfer,
    "order-cancel": an_order_cancel,
    "line-cancel": a_line_cancel,
    "shipment": a_shipment,
}


@pytest.mark.parametrize("setup", CALLS.values(), ids=CALLS.keys())
async def test_a_dry_run_answers_what_the_real_call_then_does_and_writes_nothing(
    client: AsyncClient, database_url: str, setup: Callable[[AsyncClient], Awaitable[Call]]
) -> None:
    call = await setup(client)
    untouched, orders_before = await state(client, call.sku), await all_orders(client)

    r = await post(client, call, dry=True)
    assert r.status_code == 200, r.text
    dry = r.json()
    assert dry["dry_run"] is True
    assert await state(client, call.sku) == untouched  # product, ledger, queue, events
    assert await all_orders(client) == orders_before

    r = await post(client, call)
    assert r.status_code == call.status, r.text
    real = r.json()
    assert real.get("dry_run") is not True
    if call.creates:
        assert dry["id"] is None and real["id"] is not None
    else:
        assert dry["id"] == real["id"]
    assert comparable(dry) == comparable(real)
    assert shown(dry) == foretold(orders_before, await all_orders(client))
    assert_invariants(database_url)


async def test_a_dry_run_shows_the_orders_and_dates_it_would_change(client: AsyncClient) -> None:
    """The comparison above spelt out once: filled lines lose their date, others keep it."""
    holder, first, second = await held_then_waiting(client)
    r = await client.post(f"/v1/orders/{holder['id']}/cancel", params=DRY, headers=OPS)
    assert r.status_code == 200, r.text
    dry = r.json()
    assert (dry["status"], dry["lines"][0]["cancelled"]) == ("cancelled", 5)
    assert shown(dry) == _sorted(
        [
            {"order_id": holder["id"], "status": "cancelled", "ready_to_ship": False},
            {"order_id": first["id"], "status": "allocated", "ready_to_ship": True},
            {"order_id": second["id"], "status": "partially_backordered", "ready_to_ship": True},
        ],
        [{"line_id": first["lines"][0]["id"], "before": LATER, "after": None}],
    )


async def test_a_dry_run_restock_foretells_the_promise_dates_the_real_one_sets(
    client: AsyncClient,
) -> None:
    soon, later = days_ahead(10), days_ahead(20)
    await make_product(client, "DR")
    queue = [await place(client, [("DR", n)]) for n in (3, 4, 5, 2)]
    await create_po(client, 6, soon)
    await create_po(client, 6, later)
    lines = [o["lines"][0]["id"] for o in queue]

    async def dates() -> list[str | None]:
        orders = await all_orders(client)
        return [orders[o["id"]]["lines"][0]["expected_date"] for o in queue]

    # Running demand 3, 7, 12, 14 against supply 6 by `soon`, 12 by `later`.
    assert await dates() == [soon, later, later, None]
    feed = await client.get("/v1/events", params={"limit": 200}, headers=OPS)

    r = await client.post("/v1/products/DR/restocks", json={"quantity": 4}, params=DRY, headers=OPS)
    assert r.status_code == 200, r.text
    dry = r.json()
    # The first line is filled, the second gets 1 unit: demand is now 3, 8, 10.
    assert [(a["line_id"], a["quantity"]) for a in dry["allocations"]] == [
        (lines[0], 3),
        (lines[1], 1),
    ]
    assert shown(dry) == _sorted(
        [
            {"order_id": queue[0]["id"], "status": "allocated", "ready_to_ship": True},
            {"order_id": queue[1]["id"], "status": "partially_backordered", "ready_to_ship": True},
        ],
        [
            {"line_id": lines[0], "before": soon, "after": None},
            {"line_id": lines[1], "before": later, "after": soon},
            {"line_id": lines[3], "before": None, "after": later},
        ],
    )
    assert await dates() == [soon, later, later, None]
    assert (
        await client.get("/v1/events", params={"limit": 200}, headers=OPS)
    ).json() == feed.json()

    r = await client.post("/v1/products/DR/restocks", json={"quantity": 4}, headers=OPS)
    assert r.status_code == 201, r.text
    assert await dates() == [None, soon, later, later]  # each `after` above, the third unmoved


async def test_a_storefront_dry_run_shows_only_its_own_channels_orders(
    client: AsyncClient,
) -> None:
    shop = await make_key(client, "web-shop")
    await waiting_product(client, on_hand=5)
    mine = await place(client, [("DR", 5)], headers=shop)
    theirs = await place(client, [("DR", 2)])  # the master key's channel
    also_mine = await place(client, [("DR", 2)], headers=shop)
    path = f"/v1/orders/{mine['id']}/cancel"

    r = await client.post(path, params=DRY, headers=OPS)
    assert r.status_code == 200, r.text
    as_ops = r.json()
    assert {o["order_id"] for o in as_ops["orders"]} == {mine["id"], theirs["id"], also_mine["id"]}

    r = await client.post(path, params=DRY, headers=shop)
    assert r.status_code == 200, r.text
    dry = r.json()
    assert shown(dry) == _sorted(
        [
            {"order_id": mine["id"], "status": "cancelled", "ready_to_ship": False},
            {"order_id": also_mine["id"], "status": "allocated", "ready_to_ship": True},
        ],
        [{"line_id": also_mine["lines"][0]["id"], "before": LATER, "after": None}],
    )
    assert theirs["id"] not in r.text and theirs["lines"][0]["id"] not in r.text

    real = await client.post(path, headers=shop)
    assert real.status_code == 200, real.text
    assert comparable(dry) == comparable(real.json())


# --- refusals ----------------------------------------------------------------------------------


async def stranding_adjustment(client: AsyncClient) -> Call:
    await make_product(client, "DR", on_hand=5)
    await place(client, [("DR", 4)])
    body = {"delta": -2, "reason": "count"}
    return Call("/v1/products/DR/adjustments", body, status=409, code="would_strand_allocations")


async def overdrawn_transfer(client: AsyncClient) -> Call:
    await put_location(client, "leeds", name="Leeds", rank=10)
    await make_product(client, "DR", on_hand=5)
    await place(client, [("DR", 3)])
    body = {"sku": "DR", "from": "main", "to": "leeds", "quantity": 3}
    return Call("/v1/transfers", body, status=409, code="insufficient_stock")


async def unknown_sku_restock(client: AsyncClient) -> Call:
    await make_product(client, "DR", on_hand=5)
    return Call("/v1/products/NO-SUCH/restocks", {"quantity": 1}, status=404, code="not_found")


async def storefront_restock(client: AsyncClient) -> Call:
    shop = await make_key(client, "web-shop")
    await make_product(client, "DR")
    body = {"quantity": 1}
    return Call("/v1/products/DR/restocks", body, status=403, code="forbidden", headers=shop)


async def second_order_cancel(client: AsyncClient) -> Call:
    await make_product(client, "DR", on_hand=5)
    order = await place(client, [("DR", 2)])
    r = await client.post(f"/v1/orders/{order['id']}/cancel", headers=OPS)
    assert r.status_code == 200, r.text
    return Call(f"/v1/orders/{order['id']}/cancel", None, status=409, code="conflict")


async def oversized_line_cancel(client: AsyncClient) -> Call:
    await make_product(client, "DR", on_hand=5)
    order = await place(client, [("DR", 2)])
    path = f"/v1/orders/{order['id']}/lines/{order['lines'][0]['id']}/cancel"
    return Call(path, {"quantity": 3}, status=409, code="conflict")


async def oversized_shipment(client: AsyncClient) -> Call:
    await make_product(client, "DR", on_hand=5)
    order = await place(client, [("DR", 2)])
    body = {"lines": [{"line_id": order["lines"][0]["id"], "quantity": 3}]}
    return Call(f"/v1/orders/{order['id']}/shipments", body, status=409, code="not_allocated")


async def oversized_receipt(client: AsyncClient) -> Call:
    await make_product(client, "DR")
    po = await create_po(client, 5, days_ahead(10))
    return Call(
        f"/v1/purchase-orders/{po['id']}/receive", {"quantity": 6}, status=409, code="conflict"
    )


REFUSALS: dict[str, Callable[[AsyncClient], Awaitable[Call]]] = {
    "stranding-adjustment": stranding_adjustment,
    "overdrawn-transfer": overdrawn_transfer,
    "unknown-sku": unknown_sku_restock,
    "storefront-restock": storefront_restock,
    "second-order-cancel": second_order_cancel,
    "oversized-line-cancel": oversized_line_cancel,
    "oversized-shipment": oversized_shipment,
    "oversized-receipt": oversized_receipt,
}


@pytest.mark.parametrize("setup", REFUSALS.values(), ids=REFUSALS.keys())
async def test_a_refused_dry_run_is_the_problem_the_real_call_gives(
    client: AsyncClient, setup: Callable[[AsyncClient], Awaitable[Call]]
) -> None:
    call = await setup(client)
    assert call.code is not None
    untouched = await state(client, call.sku)
    dry = await post(client, call, dry=True)
    assert await state(client, call.sku) == untouched
    real = await post(client, call)
    assert_problem(real, call.status, call.code)
    assert_problem(dry, call.status, call.code)
    assert {**dry.json(), "request_id": None} == {**real.json(), "request_id": None}


# --- what a dry run leaves alone ---------------------------------------------------------------


async def test_a_dry_run_leaves_its_idempotency_key_unused(client: AsyncClient) -> None:
    await waiting_product(client)
    await place(client, [("DR", 3)])
    keyed = {**OPS, "Idempotency-Key": "restock-1"}
    path, body = "/v1/products/DR/restocks", {"quantity": 2}
    for _ in range(2):
        r = await client.post(path, json=body, params=DRY, headers=keyed)
        assert r.status_code == 200, r.text
        assert "idempotent-replayed" not in r.headers
        assert r.json()["dry_run"] is True
    real = await client.post(path, json=body, headers=keyed)
    assert real.status_code == 201, real.text
    assert "idempotent-replayed" not in real.headers
    assert real.json()["id"] is not None
    again = await client.post(path, json=body, headers=keyed)
    assert (again.status_code, again.headers.get("idempotent-replayed")) == (201, "true")
    assert again.json() == real.json()
    assert [m["quantity"] for m in await movements(client, "DR")] == [2]


async def test_a_refused_dry_run_leaves_its_idempotency_key_unused_too(
    client: AsyncClient,
) -> None:
    await make_product(client, "DR", on_hand=5)
    keyed = {**OPS, "Idempotency-Key": "adjust-1"}
    path = "/v1/products/DR/adjustments"
    r = await client.post(path, json={"delta": -9, "reason": "count"}, params=DRY, headers=keyed)
    assert_problem(r, 409, "would_strand_allocations")
    # Refused before the work runs (the route's own check, then the body's validation).
    r = await client.post(path, json={"delta": 0}, params=DRY, headers=keyed)
    assert "delta" in error_fields(assert_problem(r, 422, "validation_error"))
    r = await client.post(path, json={"delta": "x"}, params=DRY, headers=keyed)
    assert "delta" in error_fields(assert_problem(r, 422, "validation_error"))
    real = await client.post(path, json={"delta": -1, "reason": "count"}, headers=keyed)
    assert real.status_code == 201, real.text
    assert "idempotent-replayed" not in real.headers
    assert (await product(client, "DR"))["on_hand"] == 4


async def test_dry_run_false_is_the_real_call(client: AsyncClient) -> None:
    await make_product(client, "DR")
    path = "/v1/products/DR/restocks"
    r = await client.post(path, json={"quantity": 3}, params={"dry_run": "false"}, headers=OPS)
    assert r.status_code == 201, r.text
    assert r.json()["id"] is not None and r.json().get("dry_run") is not True
    assert (await product(client, "DR"))["on_hand"] == 3
    assert [(m["kind"], m["quantity"]) for m in await movements(client, "DR")] == [("restock", 3)]
    r = await client.post(path, json={"quantity": 3}, params={"dry_run": "maybe"}, headers=OPS)
    assert "dry_run" in error_fields(assert_problem(r, 422, "validation_error"))
    assert (await product(client, "DR"))["on_hand"] == 3
