"""Concurrent orders of one storefront key for one SKU share a transaction on the lean path
(`services/lean_placement.Placer`): one lock, one commit, each order still decided in arrival
order and answered, refused and counted on its own. These tests send the orders at once with
`asyncio.gather` through the in-process app, check that batches really formed (the
`backorder_order_batch_size` histogram), and hold the answers to the contract: no oversell,
stock to the earlier orders, one order per `external_ref`, and the same answer as the
general path gives."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import orjson
import pytest
from httpx import AsyncClient, Response
from prometheus_client.parser import text_string_to_metric_families

from tests.support.api import OPS, all_pages, assert_problem, bearer, make_key, make_product
from tests.support.dates import days_ahead
from tests.support.invariants import assert_invariants
from tests.support.locations import put_location
from tests.support.locations import restock as restock_at
from tests.support.orders import product, queue

BATCH = "backorder_order_batch_size"


@pytest.fixture(autouse=True)
def _invariants_hold_after_each_test(client: AsyncClient, database_url: str) -> Iterator[None]:
    yield
    assert_invariants(database_url)


def order_body(sku: str, quantity: int = 1, **fields: Any) -> dict[str, Any]:
    return {
        "customer_id": fields.pop("customer_id", "c-1"),
        "lines": [{"sku": sku, "quantity": quantity}],
        **fields,
    }


async def at_once(
    client: AsyncClient, bodies: list[dict[str, Any]], headers: dict[str, str]
) -> list[Response]:
    """The orders sent concurrently, answers in the bodies' order."""
    return list(
        await asyncio.gather(*(client.post("/v1/orders", json=b, headers=headers) for b in bodies))
    )


async def batch_sizes(client: AsyncClient) -> dict[str, float]:
    """The batch-size histogram's figures now: `count` (transactions), `sum` (orders in
    them), `single` (transactions of one order). The histogram lives as long as the process,
    so a test compares two readings."""
    r = await client.get("/metrics")
    assert r.status_code == 200, r.text
    figures = {"count": 0.0, "sum": 0.0, "single": 0.0}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            if s.name == f"{BATCH}_count":
                figures["count"] = s.value
            elif s.name == f"{BATCH}_sum":
                figures["sum"] = s.value
            elif s.name == f"{BATCH}_bucket" and float(s.labels["le"]) == 1.0:
                figures["single"] = s.value
    return figures


def batched(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in before}


def instant(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_the_last_units_go_to_exactly_as_many_orders_as_there_are_units(
    client: AsyncClient,
) -> None:
    shop = await make_key(client, "web-shop")
    await make_product(client, "LAST", on_hand=10, backorders_allowed=False)
    before = await batch_sizes(client)
    answers = await at_once(
        client, [order_body("LAST", customer_id=f"c-{i}") for i in range(40)], shop
    )
    placed = [r for r in answers if r.status_code == 201]
    refused = [r for r in answers if r.status_code != 201]
    assert len(placed) == 10, [r.text for r in answers]
    for r in placed:
        line = r.json()["lines"][0]
        assert (line["allocated"], line["backordered"]) == (1, 0)
    assert len(refused) == 30
    for r in refused:
        body = assert_problem(r, 409, "insufficient_stock")
        # Each refusal saw the stock the orders before it in its batch had left: none.
        assert body["lines"] == [{"sku": "LAST", "requested": 1, "available": 0}]
    figures = await product(client, "LAST")
    assert (figures["on_hand"], figures["allocated"], figures["available"]) == (10, 10, 0)
    assert figures["backordered"] == 0
    moved = batched(before, await batch_sizes(client))
    assert moved["sum"] == 40, moved  # every order went through the lean path's batches
    assert moved["count"] - moved["single"] >= 1, f"no batch held more than one order: {moved}"


async def test_a_batch_gives_the_stock_to_its_earliest_orders_and_queues_the_rest_in_order(
    client: AsyncClient,
) -> None:
    shop = await make_key(client, "web-shop")
    await make_product(client, "FIFO", on_hand=5, allocation_strategy="fifo")
    before = await batch_sizes(client)
    answers = await at_once(
        client, [order_body("FIFO", customer_id=f"c-{i}") for i in range(30)], shop
    )
    assert [r.status_code for r in answers] == [201] * 30, [r.text for r in answers]
    orders = [r.json() for r in answers]
    allocated = [o for o in orders if o["lines"][0]["allocated"] == 1]
    waiting = [o for o in orders if o["lines"][0]["backordered"] == 1]
    assert (len(allocated), len(waiting)) == (5, 25)
    # Stock went to the orders in the order they were written: created_at is taken under
    # the lock, so no order that got none is older than one that got a unit.
    latest_served = max(instant(o["created_at"]) for o in allocated)
    earliest_waiting = min(instant(o["created_at"]) for o in waiting)
    assert latest_served < earliest_waiting
    assert len({o["created_at"] for o in orders}) == 30

    rows = await queue(client, "FIFO")
    by_time = sorted(waiting, key=lambda o: instant(o["created_at"]))
    assert [r["order_id"] for r in rows] == [o["id"] for o in by_time]
    assert [r["position"] for r in rows] == list(range(1, 26))
    assert [instant(r["created_at"]) for r in rows] == [instant(o["created_at"]) for o in by_time]
    assert all(r["quantity"] == 1 for r in rows)
    figures = await product(client, "FIFO")
    assert (figures["allocated"], figures["available"], figures["backordered"]) == (5, 0, 25)
    moved = batched(before, await batch_sizes(client))
    assert moved["sum"] == 30, moved
    assert moved["count"] - moved["single"] >= 1, f"no batch held more than one order: {moved}"


async def test_one_external_ref_raced_in_a_batch_places_one_order_and_names_it_to_the_rest(
    client: AsyncClient,
) -> None:
    shop = await make_key(client, "web-shop")
    await make_product(client, "REF", on_hand=20)
    before = await batch_sizes(client)
    answers = await at_once(
        client,
        [order_body("REF", external_ref="web-7", customer_id=f"c-{i}") for i in range(12)],
        shop,
    )
    placed = [r for r in answers if r.status_code == 201]
    assert len(placed) == 1, [r.text for r in answers]
    order_id = placed[0].json()["id"]
    for r in answers:
        if r.status_code != 201:
            body = assert_problem(r, 409, "conflict")
            assert (body["order_id"], body["reason"]) == (order_id, "external_ref_taken")
    # Nothing counted for the orders that were not written.
    figures = await product(client, "REF")
    assert (figures["allocated"], figures["available"], figures["backordered"]) == (1, 19, 0)
    listed = await client.get("/v1/orders", params={"sku": "REF"}, headers=OPS)
    assert [o["id"] for o in listed.json()["data"]] == [order_id]
    created = [e for e in await all_events(client) if e["type"] == "order.created"]
    assert [e["data"]["order_id"] for e in created] == [order_id]
    moved = batched(before, await batch_sizes(client))
    # The batch met its reference taken: rolled back (not counted), its orders redone one by
    # one.
    assert moved["sum"] == 12, moved


async def test_a_batch_that_meets_a_taken_reference_still_places_its_other_orders(
    client: AsyncClient,
) -> None:
    shop = await make_key(client, "web-shop")
    await make_product(client, "REF", on_hand=5)
    bodies = []
    for i in range(15):
        fields: dict[str, Any] = {"customer_id": f"c-{i}"}
        if i % 3 == 0:
            fields["external_ref"] = "web-dup"
        elif i % 3 == 1:
            fields["external_ref"] = f"web-{i}"
        bodies.append(order_body("REF", **fields))
    answers = await at_once(client, bodies, shop)
    dup = [r for b, r in zip(bodies, answers, strict=True) if b.get("external_ref") == "web-dup"]
    others = [r for b, r in zip(bodies, answers, strict=True) if b.get("external_ref") != "web-dup"]
    assert [r.status_code for r in others] == [201] * 10, [r.text for r in others]
    won = [r for r in dup if r.status_code == 201]
    assert len(won) == 1, [r.text for r in dup]
    for r in dup:
        if r is not won[0]:
            body = assert_problem(r, 409, "conflict")
            assert body["order_id"] == won[0].json()["id"]
    placed = [r.json() for r in [*others, *won]]
    served = sum(o["lines"][0]["allocated"] for o in placed)
    waiting = sum(o["lines"][0]["backordered"] for o in placed)
    assert (served, waiting) == (5, 6)
    figures = await product(client, "REF")
    assert (figures["allocated"], figures["available"], figures["backordered"]) == (5, 0, 6)
    # Redone one by one, the orders kept their turns: stock to the earliest written.
    latest_served = max(instant(o["created_at"]) for o in placed if o["lines"][0]["allocated"])
    earliest_waiting = min(instant(o["created_at"]) for o in placed if o["lines"][0]["backordered"])
    assert latest_served < earliest_waiting


async def test_orders_beyond_one_batch_are_served_in_turn_across_batches(
    client: AsyncClient,
) -> None:
    shop = await make_key(client, "web-shop")
    await make_product(client, "BIG", on_hand=70)
    before = await batch_sizes(client)
    answers = await at_once(
        client, [order_body("BIG", customer_id=f"c-{i}") for i in range(100)], shop
    )
    assert [r.status_code for r in answers] == [201] * 100
    orders = [r.json() for r in answers]
    allocated = [o for o in orders if o["lines"][0]["allocated"] == 1]
    waiting = [o for o in orders if o["lines"][0]["backordered"] == 1]
    assert (len(allocated), len(waiting)) == (70, 30)
    latest_served = max(instant(o["created_at"]) for o in allocated)
    earliest_waiting = min(instant(o["created_at"]) for o in waiting)
    assert latest_served < earliest_waiting
    figures = await product(client, "BIG")
    assert (figures["allocated"], figures["available"], figures["backordered"]) == (70, 0, 30)
    moved = batched(before, await batch_sizes(client))
    assert moved["sum"] == 100, moved
    # More orders than one transaction takes: the next batch read what the first left.
    assert moved["count"] >= 2, moved
    assert moved["count"] - moved["single"] >= 1, moved


async def test_refusals_in_a_batch_are_each_orders_own_and_move_no_counter(
    client: AsyncClient,
) -> None:
    shop = await make_key(client, "web-shop")
    await make_product(client, "MIX", on_hand=10, backorder_limit=10)
    bodies = []
    for i in range(36):
        if i % 3 == 1:  # a storefront may not send priority 9: the route's 422
            bodies.append(order_body("MIX", priority=9, customer_id=f"p-{i}"))
        elif i % 6 == 2:  # 40 or more would wait, over the limit of 10: 409
            bodies.append(order_body("MIX", 50, customer_id=f"big-{i}"))
        else:
            bodies.append(order_body("MIX", priority=i % 5, customer_id=f"c-{i}"))
    assert sum(1 for b in bodies if b["customer_id"].startswith("c-")) == 18
    before = await batch_sizes(client)
    answers = await at_once(client, bodies, shop)
    placed = []
    for body, r in zip(bodies, answers, strict=True):
        who = body["customer_id"]
        if who.startswith("p-"):
            problem = assert_problem(r, 422, "validation_error")
            assert [e["field"] for e in problem["errors"]] == ["priority"]
        elif who.startswith("big-"):
            problem = assert_problem(r, 409, "backorder_limit_exceeded")
            assert problem["lines"][0]["sku"] == "MIX"
            assert problem["lines"][0]["requested"] == 50
        else:
            assert r.status_code == 201, r.text
            order = r.json()
            assert (order["customer_id"], order["priority"]) == (who, body["priority"])
            placed.append(order)
    assert len(placed) == 18
    served = sum(o["lines"][0]["allocated"] for o in placed)
    waiting = sum(o["lines"][0]["backordered"] for o in placed)
    assert (served, waiting) == (10, 8)
    figures = await product(client, "MIX")
    assert (figures["allocated"], figures["available"], figures["backordered"]) == (10, 0, 8)
    # Only the placed orders were written and announced.
    created = {
        e["data"]["order_id"] for e in await all_events(client) if e["type"] == "order.created"
    }
    assert created == {o["id"] for o in placed}
    moved = batched(before, await batch_sizes(client))
    assert moved["count"] - moved["single"] >= 1, f"no batch held more than one order: {moved}"


async def test_a_batch_takes_stock_location_by_location_in_turn(client: AsyncClient) -> None:
    shop = await make_key(client, "web-shop")
    await put_location(client, "leeds", name="Leeds DC", rank=10)
    await make_product(client, "LOC", on_hand=3)  # at main, rank 100
    await restock_at(client, "LOC", 3, "leeds")
    answers = await at_once(
        client, [order_body("LOC", customer_id=f"c-{i}") for i in range(10)], shop
    )
    assert [r.status_code for r in answers] == [201] * 10, [r.text for r in answers]
    orders = sorted((r.json() for r in answers), key=lambda o: instant(o["created_at"]))
    # In the order they were written: the best-ranked location while it lasts, then the
    # next, then the queue.
    taken = [[a["location"] for a in o["lines"][0]["allocations"]] for o in orders]
    assert taken == [["leeds"]] * 3 + [["main"]] * 3 + [[]] * 4
    figures = await product(client, "LOC")
    assert (figures["allocated"], figures["available"], figures["backordered"]) == (6, 0, 4)
    levels = {x["location"]: (x["on_hand"], x["allocated"]) for x in figures["locations"]}
    assert levels == {"leeds": (3, 3), "main": (3, 3)}


async def test_batches_of_overlapping_skus_share_the_stock_without_overselling(
    client: AsyncClient,
) -> None:
    shop = await make_key(client, "web-shop")
    await make_product(client, "OA", on_hand=12, backorders_allowed=False)
    await make_product(client, "OB", on_hand=12, backorders_allowed=False)
    # Three groups (OA; OA and OB; OB), each batched on its own, all taking the same rows.
    shapes = [[("OA", 1)], [("OB", 1), ("OA", 1)], [("OB", 1)]]
    bodies = [
        {
            "customer_id": f"c-{i}",
            "lines": [{"sku": s, "quantity": q} for s, q in shapes[i % 3]],
        }
        for i in range(45)
    ]
    answers = await at_once(client, bodies, shop)
    taken = {"OA": 0, "OB": 0}
    for r in answers:
        if r.status_code == 201:
            for line in r.json()["lines"]:
                assert (line["allocated"], line["backordered"]) == (1, 0)
                taken[line["sku"]] += 1
        else:
            assert_problem(r, 409, "insufficient_stock")
    assert taken == {"OA": 12, "OB": 12}, taken
    for sku in taken:
        figures = await product(client, sku)
        assert (figures["allocated"], figures["available"]) == (12, 0)


# --- the lean path and the general path give the same answer -------------------------------


async def all_events(client: AsyncClient) -> list[dict[str, Any]]:
    return await all_pages(client, "/v1/events", limit=200)


def without_ids(value: Any, names: dict[str, str]) -> Any:
    """`value` with every id, SKU and time it names replaced by a placeholder: what two
    orders placed alike must agree on."""
    if isinstance(value, dict):
        return {
            k: "<time>" if k.endswith("_at") and v is not None else without_ids(v, names)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [without_ids(v, names) for v in value]
    if isinstance(value, str):
        return names.get(value, value)
    return value


def names_of(order: dict[str, Any], skus: dict[str, str]) -> dict[str, str]:
    names = {order["id"]: "<order>", **skus}
    names.update({line["id"]: f"<line {n}>" for n, line in enumerate(order["lines"])})
    return names


SHAPES: dict[str, dict[str, Any]] = {
    "partly backordered, partial": {"ship_policy": "partial"},
    # ... and the waiting units dated by a purchase order instead.
    "partly backordered, complete, a purchase order": {"ship_policy": "complete", "priority": 3},
    "short stock cancelled, with a reference": {"backorder": "cancel_rest", "external_ref": ""},
    # The first line also finds 1 unit at a better-ranked location: it takes from both.
    "over two locations": {"ship_policy": "complete"},
    # ... and the order asks for that location first.
    "over two locations, one preferred": {"preferred_location": "leeds"},
}


async def post_order(
    client: AsyncClient, body: dict[str, Any], headers: dict[str, str], *, general: bool
) -> Response:
    """POST an order on the lean path, or (`general`) on the route's: the route reads any
    `application/*+json` body, the lean path only `application/json` and leaves the rest to
    the route."""
    if not general:
        return await client.post("/v1/orders", json=body, headers=headers)
    headers = {**headers, "Content-Type": "application/vnd.backorder+json"}
    return await client.post("/v1/orders", content=orjson.dumps(body), headers=headers)


@pytest.mark.parametrize("shape", SHAPES)
async def test_the_lean_and_the_general_path_place_an_order_alike(
    client: AsyncClient, shape: str
) -> None:
    shop = await make_key(client, "web-shop")
    paths = {"lean": ("A1", "B1"), "general": ("A2", "B2")}
    if "two locations" in shape:
        await put_location(client, "leeds", name="Leeds DC", rank=10)
    for a, b in paths.values():
        # The first line gets 3 of 5 and waits for 2 (dated by the product); the second is
        # served whole and leaves the product low.
        await make_product(client, a, on_hand=3, expected_restock_date="2031-01-15")
        await make_product(client, b, on_hand=4, reorder_point=2)
        if "two locations" in shape:
            await restock_at(client, a, 1, "leeds")
        if "purchase order" in shape:
            po = {"sku": a, "quantity": 10, "expected_date": days_ahead(20), "reference": "PO-1"}
            r = await client.post("/v1/purchase-orders", json=po, headers=OPS)
            assert r.status_code == 201, r.text
    answers: dict[str, dict[str, Any]] = {}
    for path, (a, b) in paths.items():
        body = {
            "customer_id": "c-9",
            "lines": [{"sku": a, "quantity": 5}, {"sku": b, "quantity": 2}],
            **SHAPES[shape],
        }
        if "external_ref" in body:  # one reference per channel: each its own
            body["external_ref"] = f"ref-{path}"
        before = await batch_sizes(client)
        r = await post_order(client, body, shop, general=path == "general")
        assert r.status_code == 201, r.text
        answers[path] = r.json()
        # Each path is the one meant: the lean path counts its orders in batches.
        assert batched(before, await batch_sizes(client))["sum"] == (path == "lean")
    lean, general = answers["lean"], answers["general"]
    lean_names = names_of(lean, {"A1": "<A>", "B1": "<B>", "ref-lean": "<ref>"})
    general_names = names_of(general, {"A2": "<A>", "B2": "<B>", "ref-general": "<ref>"})
    assert without_ids(lean, lean_names) == without_ids(general, general_names)
    for field in ("status", "backorder_type", "ready_to_ship"):
        assert lean[field] == general[field]  # named: the equality above covers them too
    for mine, theirs in zip(lean["lines"], general["lines"], strict=True):
        for field in ("quantity", "allocated", "backordered", "cancelled", "allocations"):
            assert mine[field] == theirs[field]
        assert mine["expected_date"] == theirs["expected_date"]
    if "purchase order" in shape:
        assert lean["lines"][0]["expected_date"] == days_ahead(20)
    # What was written reads back alike, and alike as answered.
    for path, order in answers.items():
        stored = (await client.get(f"/v1/orders/{order['id']}", headers=OPS)).json()
        names = lean_names if path == "lean" else general_names
        assert without_ids(stored, names) == without_ids(lean, lean_names)
    # The same events, in the same order, with the same data.
    events = await all_events(client)
    feeds = {
        path: [
            without_ids({"type": e["type"], "data": e["data"]}, names)
            for e in events
            if e["data"].get("order_id") == order["id"]
        ]
        for (path, order), names in zip(answers.items(), (lean_names, general_names), strict=True)
    }
    assert feeds["lean"], "the lean order announced nothing"
    assert [e["type"] for e in feeds["lean"]] == [e["type"] for e in feeds["general"]]
    assert feeds["lean"] == feeds["general"]
    # And the products moved alike.
    for lean_sku, general_sku in zip(paths["lean"], paths["general"], strict=True):
        mine = await product(client, lean_sku)
        theirs = await product(client, general_sku)
        for field in ("on_hand", "allocated", "available", "backordered", "status", "locations"):
            assert mine[field] == theirs[field], field


# --- keys ---------------------------------------------------------------------------------


async def test_a_revoked_storefront_key_is_refused_on_its_very_next_order(
    client: AsyncClient,
) -> None:
    created = await client.post(
        "/v1/api-keys", json={"name": "web-shop", "role": "storefront"}, headers=OPS
    )
    assert created.status_code == 201, created.text
    shop = bearer(created.json()["key"])
    await make_product(client, "K", on_hand=100)
    r = await client.post("/v1/orders", json=order_body("K"), headers=shop)
    assert r.status_code == 201, r.text
    revoked = await client.delete(f"/v1/api-keys/{created.json()['id']}", headers=OPS)
    assert revoked.status_code == 204, revoked.text
    r = await client.post("/v1/orders", json=order_body("K"), headers=shop)
    assert_problem(r, 401, "unauthorized")
    # Nor does a batch of its orders get through.
    for r in await at_once(client, [order_body("K") for _ in range(8)], shop):
        assert_problem(r, 401, "unauthorized")
    figures = await product(client, "K")
    assert (figures["allocated"], figures["available"]) == (1, 99)


async def test_an_unknown_key_of_a_keys_shape_is_refused_with_401(client: AsyncClient) -> None:
    await make_product(client, "K", on_hand=100)
    unknown = bearer("bo_" + "x" * 43)  # the shape of a key: it reaches the lookup
    r = await client.post("/v1/orders", json=order_body("K"), headers=unknown)
    assert_problem(r, 401, "unauthorized")
    for r in await at_once(client, [order_body("K") for _ in range(8)], unknown):
        assert_problem(r, 401, "unauthorized")
    r = await client.post("/v1/orders", json=order_body("K"), headers=bearer("bo_short"))
    assert_problem(r, 401, "unauthorized")
    assert (await product(client, "K"))["allocated"] == 0


async def test_an_order_refused_for_its_reference_leaves_its_units_to_the_rest_of_its_batch(
    client: AsyncClient,
) -> None:
    shop = await make_key(client, "web-shop")
    await make_product(client, "ONE", on_hand=2, backorders_allowed=False)
    first = await client.post(
        "/v1/orders", json=order_body("ONE", external_ref="dup"), headers=shop
    )
    assert first.status_code == 201, first.text
    bodies = [order_body("ONE", external_ref="dup", customer_id="again")]
    bodies += [order_body("ONE", customer_id=f"c-{i}") for i in range(3)]
    answers = await at_once(client, bodies, shop)
    again = assert_problem(answers[0], 409, "conflict")
    assert again["order_id"] == first.json()["id"]
    # The last unit goes to one of the others: the order with the taken reference wrote
    # nothing, so it took nothing.
    codes = sorted(r.status_code for r in answers[1:])
    assert codes == [201, 409, 409], [r.text for r in answers[1:]]
    figures = await product(client, "ONE")
    assert (figures["allocated"], figures["available"]) == (2, 0)


REFUSALS: dict[str, tuple[dict[str, Any], int, int, str]] = {
    # product settings, on hand, quantity ordered, the refusal
    "no backorders": ({"backorders_allowed": False}, 2, 3, "insufficient_stock"),
    "over the backorder limit": ({"backorder_limit": 1}, 2, 4, "backorder_limit_exceeded"),
    "discontinued": ({"discontinued": True}, 2, 1, "discontinued"),
    "unknown SKU": ({}, 2, 1, "unknown_sku"),
}


@pytest.mark.parametrize("case", REFUSALS)
async def test_the_lean_and_the_general_path_refuse_an_order_alike(
    client: AsyncClient, case: str
) -> None:
    settings, on_hand, quantity, code = REFUSALS[case]
    shop = await make_key(client, "web-shop")
    problems: dict[str, dict[str, Any]] = {}
    for path, sku in (("lean", "R1"), ("general", "R2")):
        await make_product(client, sku, on_hand=on_hand, **settings)
        ordered = "NOPE" if case == "unknown SKU" else sku
        body = {"customer_id": "c-1", "lines": [{"sku": ordered, "quantity": quantity}]}
        r = await post_order(client, body, shop, general=path == "general")
        problem = assert_problem(r, 422 if code == "unknown_sku" else 409, code)
        problem["detail"] = problem["detail"].replace(sku, "<sku>")
        problems[path] = without_ids(problem, {sku: "<sku>", problem["request_id"]: "<id>"})
    assert problems["lean"] == problems["general"]


async def test_the_lean_and_the_general_path_refuse_an_unknown_preferred_location_alike(
    client: AsyncClient,
) -> None:
    shop = await make_key(client, "web-shop")
    await make_product(client, "PREF", on_hand=5)
    body = order_body("PREF", preferred_location="nowhere")
    problems = []
    for general in (False, True):
        r = await post_order(client, body, shop, general=general)
        problem = assert_problem(r, 422, "unknown_location")
        assert (problem["location"], problem["field"]) == ("nowhere", "preferred_location")
        problems.append(without_ids(problem, {problem["request_id"]: "<id>"}))
    assert problems[0] == problems[1]
    assert (await product(client, "PREF"))["allocated"] == 0


# -- Idempotency keys in a batch ------------------------------------------------------------


async def test_keyed_orders_in_one_batch_each_keep_their_answer_under_their_own_key(
    client: AsyncClient,
) -> None:
    shop = await make_key(client, "web-shop")
    await make_product(client, "KEYED", on_hand=3, backorders_allowed=False)
    bodies = [order_body("KEYED", customer_id=f"c-{i}") for i in range(8)]

    async def send(i: int, body: dict[str, Any]) -> Response:
        headers = {**shop, "Idempotency-Key": f"k-{i}"}
        return await client.post("/v1/orders", json=body, headers=headers)

    before = await batch_sizes(client)
    first = await asyncio.gather(*(send(i, b) for i, b in enumerate(bodies)))
    moved = batched(before, await batch_sizes(client))
    assert moved["sum"] == 8 and moved["count"] - moved["single"] >= 1, moved
    assert sorted(r.status_code for r in first) == [201] * 3 + [409] * 5
    # Each retry replays its own first answer, byte for byte, even now that stock is gone.
    again = await asyncio.gather(*(send(i, b) for i, b in enumerate(bodies)))
    for one, two in zip(first, again, strict=True):
        assert two.headers.get("idempotent-replayed") == "true"
        assert "idempotent-replayed" not in one.headers
        assert (two.status_code, two.content) == (one.status_code, one.content)
    figures = await product(client, "KEYED")
    assert (figures["allocated"], figures["available"]) == (3, 0)


async def test_one_key_sent_twice_at_once_places_one_order(client: AsyncClient) -> None:
    shop = await make_key(client, "web-shop")
    await make_product(client, "TWICE", on_hand=10)
    headers = {**shop, "Idempotency-Key": "retry-1"}
    answers = await at_once(client, [order_body("TWICE")] * 6, headers)
    placed = [r for r in answers if r.status_code == 201]
    assert len({r.json()["id"] for r in placed}) == 1, [r.text for r in answers]
    for r in answers:
        if r.status_code != 201:
            assert_problem(r, 409, "idempotency_key_in_use")
    assert (await product(client, "TWICE"))["allocated"] == 1
    # Once it is done, the key replays the one order.
    r = await client.post("/v1/orders", json=order_body("TWICE"), headers=headers)
    assert r.status_code == 201 and r.headers["idempotent-replayed"] == "true"
    assert r.json()["id"] == placed[0].json()["id"]
    # The same key with another body is refused, and places nothing.
    r = await client.post("/v1/orders", json=order_body("TWICE", 2), headers=headers)
    assert_problem(r, 422, "idempotency_key_reused")
    assert (await product(client, "TWICE"))["allocated"] == 1
