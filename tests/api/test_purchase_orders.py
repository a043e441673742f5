"""Purchase orders: inbound supply, `incoming`, receipts, and the promise dates they drive."""

from __future__ import annotations

import random
from typing import Any

from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backorder.db import promises
from backorder.domain.allocation import AllocationStrategy
from tests.support.api import OPS, make_key, make_product, place
from tests.support.dates import years_on
from tests.support.invariants import assert_invariants

DATE_CHANGED = "backorder.expected_date_changed"

# Dates of "next year", moved on with the calendar (a PO may not be dated in the past).
JAN_01 = years_on("2027-01-01")
JAN_02 = years_on("2027-01-02")
JAN_10 = years_on("2027-01-10")
JAN_11 = years_on("2027-01-11")
JAN_12 = years_on("2027-01-12")
JAN_15 = years_on("2027-01-15")
FEB_01 = years_on("2027-02-01")
FEB_15 = years_on("2027-02-15")
FEB_20 = years_on("2027-02-20")
MAR_01 = years_on("2027-03-01")
JUN_01 = years_on("2027-06-01")
DEC_31 = years_on("2027-12-31")


async def create_po(
    client: AsyncClient, sku: str, quantity: int, expected_date: str, **extra: Any
) -> dict[str, Any]:
    body = {"sku": sku, "quantity": quantity, "expected_date": expected_date, **extra}
    r = await client.post("/v1/purchase-orders", json=body, headers=OPS)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def receive(client: AsyncClient, po_id: str, quantity: int, expect: int = 201) -> Any:
    r = await client.post(
        f"/v1/purchase-orders/{po_id}/receive", json={"quantity": quantity}, headers=OPS
    )
    assert r.status_code == expect, r.text
    return r.json()


async def figures(client: AsyncClient, sku: str) -> dict[str, Any]:
    out: dict[str, Any] = (await client.get(f"/v1/products/{sku}", headers=OPS)).json()
    return out


async def line_date(client: AsyncClient, order: dict[str, Any]) -> str | None:
    got = (await client.get(f"/v1/orders/{order['id']}", headers=OPS)).json()
    value: str | None = got["lines"][0]["expected_date"]
    return value


async def dates(client: AsyncClient, *orders: dict[str, Any]) -> list[str | None]:
    return [await line_date(client, o) for o in orders]


async def date_events(client: AsyncClient) -> list[dict[str, Any]]:
    r = await client.get("/v1/events", params={"type": DATE_CHANGED, "limit": 200}, headers=OPS)
    assert r.status_code == 200, r.text
    return [e["data"] for e in r.json()["data"]]


# --- the resource --------------------------------------------------------------------------


async def test_a_purchase_order_is_created_open_and_counts_as_incoming(
    client: AsyncClient,
) -> None:
    await make_product(client, "A")
    po = await create_po(client, "A", 40, JAN_10, reference="PO-1")
    assert po["status"] == "open"
    assert (po["quantity"], po["received"], po["remaining"]) == (40, 0, 40)
    assert (po["expected_date"], po["reference"]) == (JAN_10, "PO-1")
    await create_po(client, "A", 10, FEB_01)
    assert (await figures(client, "A"))["incoming"] == 50
    got = await client.get(f"/v1/purchase-orders/{po['id']}", headers=OPS)
    assert got.status_code == 200
    assert got.json() == po


async def test_a_purchase_order_for_an_unknown_sku_is_refused(client: AsyncClient) -> None:
    r = await client.post(
        "/v1/purchase-orders",
        json={"sku": "NOPE", "quantity": 1, "expected_date": JAN_01},
        headers=OPS,
    )
    assert (r.status_code, r.json()["code"]) == (422, "unknown_sku")
    listed = (await client.get("/v1/purchase-orders", headers=OPS)).json()
    assert listed["data"] == []


async def test_bad_purchase_order_bodies_are_validation_errors(client: AsyncClient) -> None:
    await make_product(client, "A")
    good = {"sku": "A", "quantity": 1, "expected_date": JAN_01}
    for bad in (
        {**good, "quantity": 0},
        {**good, "quantity": 1_000_001},
        {**good, "quantity": "3"},
        {**good, "expected_date": "soon"},
        {**good, "colour": "red"},
        {"sku": "A", "quantity": 1},
    ):
        r = await client.post("/v1/purchase-orders", json=bad, headers=OPS)
        assert (r.status_code, r.json()["code"]) == (422, "validation_error"), bad


async def test_storefront_keys_may_not_touch_purchase_orders(client: AsyncClient) -> None:
    await make_product(client, "A")
    po = await create_po(client, "A", 5, JAN_10)
    shop = await make_key(client, "web-shop")
    body = {"sku": "A", "quantity": 1, "expected_date": JAN_01}
    for method, path, json in (
        ("POST", "/v1/purchase-orders", body),
        ("GET", "/v1/purchase-orders", None),
        ("GET", f"/v1/purchase-orders/{po['id']}", None),
        ("PATCH", f"/v1/purchase-orders/{po['id']}", {"expected_date": JAN_02}),
        ("POST", f"/v1/purchase-orders/{po['id']}/cancel", None),
        ("POST", f"/v1/purchase-orders/{po['id']}/receive", {"quantity": 1}),
    ):
        r = await client.request(method, path, json=json, headers=shop)
        assert (r.status_code, r.json()["code"]) == (403, "forbidden"), path
    assert (await client.get("/v1/purchase-orders")).status_code == 401


async def test_an_unknown_purchase_order_is_not_found(client: AsyncClient) -> None:
    missing = "/v1/purchase-orders/00000000-0000-4000-8000-000000000000"
    assert (await client.get(missing, headers=OPS)).status_code == 404
    r = await client.post(missing + "/receive", json={"quantity": 1}, headers=OPS)
    assert (r.status_code, r.json()["code"]) == (404, "not_found")
    r = await client.patch(missing, json={"expected_date": JAN_01}, headers=OPS)
    assert r.status_code == 404


async def test_purchase_orders_list_by_sku_and_status_in_pages(client: AsyncClient) -> None:
    await make_product(client, "A")
    await make_product(client, "B")
    a1 = await create_po(client, "A", 5, JAN_10)
    b1 = await create_po(client, "B", 5, JAN_10)
    a2 = await create_po(client, "A", 5, JAN_11)
    a3 = await create_po(client, "A", 5, JAN_12)
    r = await client.post(f"/v1/purchase-orders/{a2['id']}/cancel", headers=OPS)
    assert (r.status_code, r.json()["id"], r.json()["status"]) == (200, a2["id"], "cancelled")

    async def ids(**params: Any) -> list[str]:
        r = await client.get("/v1/purchase-orders", params=params, headers=OPS)
        assert r.status_code == 200, r.text
        return [p["id"] for p in r.json()["data"]]

    assert await ids() == [a1["id"], b1["id"], a2["id"], a3["id"]]
    assert await ids(sku="A") == [a1["id"], a2["id"], a3["id"]]
    assert await ids(sku="A", status="open") == [a1["id"], a3["id"]]
    assert await ids(status="cancelled") == [a2["id"]]
    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/purchase-orders", params=params, headers=OPS)).json()
        seen += [p["id"] for p in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [a1["id"], b1["id"], a2["id"], a3["id"]]
    for bad in ({"status": "lost"}, {"limit": 0}, {"limit": 201}, {"cursor": "garbage!"}):
        r = await client.get("/v1/purchase-orders", params=bad, headers=OPS)
        assert r.status_code == 422, bad


async def test_cancelling_leaves_incoming_and_only_open_orders_cancel(
    client: AsyncClient,
) -> None:
    await make_product(client, "A")
    po = await create_po(client, "A", 8, JAN_10)
    await receive(client, po["id"], 3)
    r = await client.post(f"/v1/purchase-orders/{po['id']}/cancel", headers=OPS)
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["received"], r.json()["remaining"]) == ("cancelled", 3, 0)
    assert (await figures(client, "A"))[("incoming")] == 0
    assert (await figures(client, "A"))["on_hand"] == 3
    again = await client.post(f"/v1/purchase-orders/{po['id']}/cancel", headers=OPS)
    assert (again.status_code, again.json()["code"]) == (409, "conflict")
    late = await client.patch(
        f"/v1/purchase-orders/{po['id']}", json={"expected_date": FEB_01}, headers=OPS
    )
    assert (late.status_code, late.json()["code"]) == (409, "conflict")
    body = await receive(client, po["id"], 1, expect=409)
    assert body["code"] == "conflict"


# --- receipts ------------------------------------------------------------------------------


async def test_a_receipt_is_a_restock_that_fills_the_queue_and_closes_the_po(
    client: AsyncClient,
) -> None:
    await make_product(client, "A")
    first = await place(client, [("A", 4)])
    second = await place(client, [("A", 4)])
    po = await create_po(client, "A", 10, JAN_10, reference="PO-77")
    part = await receive(client, po["id"], 6)
    assert [(a["order_id"], a["quantity"]) for a in part["allocations"]] == [
        (first["id"], 4),
        (second["id"], 2),
    ]
    assert (part["quantity"], part["on_hand"], part["allocated"], part["available"]) == (6, 6, 6, 0)
    assert part["purchase_order"]["status"] == "open"
    assert (part["purchase_order"]["received"], part["purchase_order"]["remaining"]) == (6, 4)
    assert (await figures(client, "A"))["incoming"] == 4

    over = await receive(client, po["id"], 5, expect=409)
    assert over["code"] == "conflict"
    assert (await figures(client, "A"))["on_hand"] == 6

    rest = await receive(client, po["id"], 4)
    assert [(a["order_id"], a["quantity"]) for a in rest["allocations"]] == [(second["id"], 2)]
    assert rest["available"] == 2
    assert rest["purchase_order"]["status"] == "closed"
    assert rest["purchase_order"]["remaining"] == 0
    after = await figures(client, "A")
    assert (after["incoming"], after["on_hand"], after["backordered"]) == (0, 10, 0)

    ledger = (await client.get("/v1/products/A/movements", headers=OPS)).json()["data"]
    receipts = [m for m in ledger if m["kind"] == "receipt"]
    assert [m["quantity"] for m in receipts] == [6, 4]
    assert {m["purchase_order_id"] for m in receipts} == {po["id"]}
    assert {m["reference"] for m in receipts} == {"PO-77"}
    closed = await receive(client, po["id"], 1, expect=409)
    assert closed["code"] == "conflict"


async def test_a_receipt_with_an_idempotency_key_happens_once(client: AsyncClient) -> None:
    await make_product(client, "A")
    po = await create_po(client, "A", 10, JAN_10)
    headers = {**OPS, "Idempotency-Key": "receive-1"}
    path = f"/v1/purchase-orders/{po['id']}/receive"
    first = await client.post(path, json={"quantity": 3}, headers=headers)
    replay = await client.post(path, json={"quantity": 3}, headers=headers)
    assert (first.status_code, replay.status_code) == (201, 201)
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == first.json()
    assert (await figures(client, "A"))["on_hand"] == 3
    other = await client.post(path, json={"quantity": 4}, headers=headers)
    assert (other.status_code, other.json()["code"]) == (422, "idempotency_key_reused")

    create_headers = {**OPS, "Idempotency-Key": "po-1"}
    body = {"sku": "A", "quantity": 2, "expected_date": MAR_01}
    one = await client.post("/v1/purchase-orders", json=body, headers=create_headers)
    two = await client.post("/v1/purchase-orders", json=body, headers=create_headers)
    assert one.json()["id"] == two.json()["id"]
    assert (await figures(client, "A"))["incoming"] == 7 + 2


# --- promise dates -------------------------------------------------------------------------


async def test_open_pos_cover_the_queue_in_expected_date_order(client: AsyncClient) -> None:
    await make_product(client, "A", expected_restock_date=JUN_01)
    o1, o2, o3, o4 = [await place(client, [("A", q)]) for q in (3, 3, 3, 3)]
    # created first but due last: POs cover the queue in expected_date order
    await create_po(client, "A", 4, MAR_01)
    await create_po(client, "A", 5, JAN_15)
    assert await dates(client, o1, o2, o3, o4) == [
        JAN_15,  # units 1-3: the January PO (5)
        MAR_01,  # units 4-6: the 6th unit comes with the March PO (cumulative 9)
        MAR_01,  # units 7-9
        JUN_01,  # units 10-12: no PO covers the last unit: the product's date
    ]
    # a new order is dated on placement (the tail of the queue)
    o5 = await place(client, [("A", 1)])
    assert o5["lines"][0]["expected_date"] == JUN_01


async def test_without_a_covering_po_or_restock_date_the_date_is_null(
    client: AsyncClient,
) -> None:
    await make_product(client, "A")
    o1 = await place(client, [("A", 2)])
    assert o1["lines"][0]["expected_date"] is None
    await create_po(client, "A", 2, JAN_15)
    o2 = await place(client, [("A", 1)])
    assert await dates(client, o1, o2) == [JAN_15, None]
    assert o2["lines"][0]["expected_date"] is None


async def test_a_line_with_nothing_backordered_has_no_date(client: AsyncClient) -> None:
    await make_product(client, "A", on_hand=5, expected_restock_date=JUN_01)
    whole = await place(client, [("A", 5)])
    assert whole["lines"][0]["expected_date"] is None
    waiting = await place(client, [("A", 2)])
    assert waiting["lines"][0]["expected_date"] == JUN_01
    po = await create_po(client, "A", 2, JAN_15)
    await receive(client, po["id"], 2)
    assert await dates(client, whole, waiting) == [None, None]


async def test_a_cancel_moves_later_lines_earlier_and_announces_it(client: AsyncClient) -> None:
    await make_product(client, "A", expected_restock_date=JUN_01)
    o1, o2, o3 = [await place(client, [("A", 4)]) for _ in range(3)]
    await create_po(client, "A", 4, JAN_15)
    await create_po(client, "A", 4, FEB_15)
    assert await dates(client, o1, o2, o3) == [JAN_15, FEB_15, JUN_01]
    before = len(await date_events(client))
    r = await client.post(f"/v1/orders/{o1['id']}/cancel", headers=OPS)
    assert r.status_code == 200, r.text
    assert await dates(client, o2, o3) == [JAN_15, FEB_15]
    moved = (await date_events(client))[before:]
    assert [(e["order_id"], e["from"], e["to"]) for e in moved] == [
        (o2["id"], FEB_15, JAN_15),
        (o3["id"], JUN_01, FEB_15),
    ]
    assert {e["sku"] for e in moved} == {"A"}
    assert moved[0]["line_id"] == o2["lines"][0]["id"]


async def test_changing_a_po_date_moves_its_lines_and_announces_each(
    client: AsyncClient,
) -> None:
    await make_product(client, "A")
    o1, o2 = [await place(client, [("A", 2)]) for _ in range(2)]
    po = await create_po(client, "A", 4, JAN_15)
    before = len(await date_events(client))
    r = await client.patch(
        f"/v1/purchase-orders/{po['id']}", json={"expected_date": FEB_20}, headers=OPS
    )
    assert r.status_code == 200, r.text
    assert r.json()["expected_date"] == FEB_20
    assert await dates(client, o1, o2) == [FEB_20, FEB_20]
    moved = (await date_events(client))[before:]
    assert [(e["order_id"], e["line_id"], e["from"], e["to"]) for e in moved] == [
        (o["id"], o["lines"][0]["id"], JAN_15, FEB_20) for o in (o1, o2)
    ]
    # the same date again moves nothing and says nothing
    r = await client.patch(
        f"/v1/purchase-orders/{po['id']}", json={"expected_date": FEB_20}, headers=OPS
    )
    assert (r.status_code, r.json()["expected_date"], r.json()["status"]) == (
        200,
        FEB_20,
        "open",
    )
    assert len(await date_events(client)) == before + 2


async def test_creating_and_cancelling_pos_announce_the_dates_they_move(
    client: AsyncClient,
) -> None:
    await make_product(client, "A")
    order = await place(client, [("A", 3)])
    po = await create_po(client, "A", 3, JAN_15)
    r = await client.post(f"/v1/purchase-orders/{po['id']}/cancel", headers=OPS)
    assert (r.status_code, r.json()["status"], r.json()["remaining"]) == (200, "cancelled", 0)
    assert await line_date(client, order) is None
    assert [(e["from"], e["to"]) for e in await date_events(client)] == [
        (None, JAN_15),
        (JAN_15, None),
    ]


async def test_placing_orders_announces_no_date_of_their_own(client: AsyncClient) -> None:
    await make_product(client, "F", expected_restock_date=JUN_01)
    await make_product(client, "P", expected_restock_date=JUN_01, allocation_strategy="priority")
    await create_po(client, "F", 2, JAN_15)
    await create_po(client, "P", 2, JAN_15)
    order = await place(client, [("F", 2), ("P", 2)])
    assert [line["expected_date"] for line in order["lines"]] == [JAN_15, JAN_15]
    later = await place(client, [("F", 1), ("P", 1)])
    assert [line["expected_date"] for line in later["lines"]] == [JUN_01, JUN_01]
    assert await date_events(client) == []


async def test_priority_placement_pushes_the_overtaken_lines_later(client: AsyncClient) -> None:
    await make_product(client, "P", allocation_strategy="priority", expected_restock_date=JUN_01)
    first = await place(client, [("P", 2)], priority=1)
    second = await place(client, [("P", 2)], priority=1)
    await create_po(client, "P", 4, JAN_15)
    assert await dates(client, first, second) == [JAN_15, JAN_15]
    urgent = await place(client, [("P", 2)], priority=9)
    assert urgent["lines"][0]["expected_date"] == JAN_15
    assert await dates(client, first, second) == [JAN_15, JUN_01]
    moved = await date_events(client)
    assert [(e["order_id"], e["from"], e["to"]) for e in moved[-1:]] == [
        (second["id"], JAN_15, JUN_01)
    ]
    assert urgent["id"] not in {e["order_id"] for e in moved}


def expected_dates(
    queue: list[dict[str, Any]], pos: list[dict[str, Any]], fallback: str | None
) -> list[str | None]:
    """The promise-date rule in plain Python: running demand against running supply."""
    supply, running = [], 0
    for po in sorted(pos, key=lambda p: (p["expected_date"], p["created_at"], p["id"])):
        running += po["remaining"]
        supply.append((running, po["expected_date"]))
    out, demand = [], 0
    for line in queue:
        demand += line["quantity"]
        out.append(next((d for cum, d in supply if cum >= demand), fallback))
    return out


async def test_promise_dates_follow_the_rule_through_random_changes(
    client: AsyncClient, engine: AsyncEngine, database_url: str
) -> None:
    rnd = random.Random(20261123)
    for strategy in ("fifo", "priority"):
        sku = f"R-{strategy}"
        await make_product(client, sku, allocation_strategy=strategy, expected_restock_date=DEC_31)
        orders: list[dict[str, Any]] = []
        pos: list[dict[str, Any]] = []
        for _ in range(40):
            roll = rnd.random()
            if roll < 0.45 or not orders:
                orders.append(
                    await place(client, [(sku, rnd.randint(1, 6))], priority=rnd.randint(0, 9))
                )
            elif roll < 0.60:
                month, day = rnd.randint(1, 12), rnd.randint(1, 28)
                when = years_on(f"2027-{month:02}-{day:02}")
                pos.append(await create_po(client, sku, rnd.randint(1, 10), when))
            elif roll < 0.67 and pos:
                po = rnd.choice(pos)
                when = years_on(f"2027-{rnd.randint(1, 12):02}-15")
                r = await client.patch(
                    f"/v1/purchase-orders/{po['id']}", json={"expected_date": when}, headers=OPS
                )
                if po["status"] == "open":
                    assert r.status_code == 200, r.text
                    assert (r.json()["expected_date"], r.json()["status"]) == (when, "open")
                    po["expected_date"] = when
                else:  # closed or cancelled: its date is history
                    assert (r.status_code, r.json()["code"]) == (409, "conflict"), r.text
            elif roll < 0.75 and pos:
                po = rnd.choice(pos)
                q = rnd.randint(1, 3)
                r = await client.post(
                    f"/v1/purchase-orders/{po['id']}/receive", json={"quantity": q}, headers=OPS
                )
                if po["status"] == "open" and q <= po["quantity"] - po["received"]:
                    assert r.status_code == 201, r.text
                    po["received"] += q
                    if po["received"] == po["quantity"]:
                        po["status"] = "closed"
                    got = r.json()["purchase_order"]
                    assert (got["received"], got["status"], got["remaining"]) == (
                        po["received"],
                        po["status"],
                        po["quantity"] - po["received"] if po["status"] == "open" else 0,
                    )
                    assert r.json()["quantity"] == q
                else:
                    assert (r.status_code, r.json()["code"]) == (409, "conflict"), r.text
            elif roll < 0.82 and pos:
                po = rnd.choice(pos)
                r = await client.post(f"/v1/purchase-orders/{po['id']}/cancel", headers=OPS)
                if po["status"] == "open":
                    assert r.status_code == 200, r.text
                    assert (r.json()["status"], r.json()["remaining"]) == ("cancelled", 0)
                    assert r.json()["received"] == po["received"]
                    po["status"] = "cancelled"
                else:
                    assert (r.status_code, r.json()["code"]) == (409, "conflict"), r.text
            elif roll < 0.89:
                # with no open PO the fill does not re-date the queue: the rule must still hold
                r = await client.post(
                    f"/v1/products/{sku}/restocks",
                    json={"quantity": rnd.randint(1, 4)},
                    headers=OPS,
                )
                assert r.status_code == 201, r.text
            else:
                order = rnd.choice(orders)
                r = await client.post(f"/v1/orders/{order['id']}/cancel", headers=OPS)
                if order.get("cancelled_here"):  # nothing left to cancel, nothing was shipped
                    assert (r.status_code, r.json()["code"]) == (409, "conflict"), r.text
                else:
                    assert (r.status_code, r.json()["status"]) == (200, "cancelled"), r.text
                    assert r.json()["cancelled"] == r.json()["quantity"]
                    order["cancelled_here"] = True
            queue = (
                await client.get("/v1/backorders", params={"sku": sku, "limit": 200}, headers=OPS)
            ).json()["data"]
            open_pos = (
                await client.get(
                    "/v1/purchase-orders",
                    params={"sku": sku, "status": "open", "limit": 200},
                    headers=OPS,
                )
            ).json()["data"]
            assert [line["expected_date"] for line in queue] == expected_dates(
                queue, open_pos, DEC_31
            )
            assert (await figures(client, sku))["incoming"] == sum(p["remaining"] for p in open_pos)
        assert_invariants(database_url)
        # the cheap FIFO placement path left nothing for a full refresh to correct
        async with engine.begin() as conn:
            before = await conn.scalar(text("SELECT count(*) FROM event"))
            await promises.refresh(conn, sku, AllocationStrategy(strategy))
            assert await conn.scalar(text("SELECT count(*) FROM event")) == before
